"""Timing helpers the benchmark scripts in `tools/` share.

Speed is reported as a ratio against a baseline timed in the same run, so
numbers from a busy or different machine still compare.
"""

import time

import numpy as np


def block(out):
    """Waits for a result: copies every tensor in `out` to the host."""
    import tensorflow as tf

    for value in tf.nest.flatten(out):
        if isinstance(value, tf.Tensor):
            value.numpy()


def timed(fn, *args, repeats=5):
    """(median, min) seconds of `repeats` calls of fn(*args).

    One untimed warm-up call comes first (it traces a tf.function). The
    minimum is the robust figure on a shared machine.
    """
    block(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.min(times))


def environment():
    """One line: TensorFlow and Keras versions and the devices they see."""
    import keras
    import tensorflow as tf

    devices = [d.device_type for d in tf.config.list_logical_devices()]
    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"devices: {devices}"
    )


def graph_flops(fn, *args):
    """FLOPs of one call of the tf.function `fn`, counted on its graph.

    TensorFlow's profiler sums the ops with registered FLOP statistics
    (convolutions and their two gradients, matmuls, element-wise ops, the
    penalty's double backward included); ops without (eigh, gathers) count
    0. Gradient ops the runtime prunes (e.g. a first conv's input gradient)
    are counted, so this is an upper bound of the work done.
    """
    from tensorflow.python.profiler import model_analyzer
    from tensorflow.python.profiler import option_builder

    graph = fn.get_concrete_function(*args).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(model_analyzer.profile(graph, options=options).total_float_ops)


def matmul_peak(n=2048, repeats=5):
    """GFLOP/s of a float32 [n, n] x [n, n] matmul: the practical peak of
    the device TensorFlow puts it on, measured in the same run."""
    import tensorflow as tf

    a = tf.random.stateless_normal((n, n), seed=(1, 2))
    b = tf.random.stateless_normal((n, n), seed=(3, 4))
    product = tf.function(lambda: tf.matmul(a, b))
    _, best = timed(product, repeats=repeats)
    return 2.0 * n**3 / best / 1e9


def peak_line(step_flops, step_seconds, peak_gflops):
    """'F GFLOP a step, G GFLOP/s, P% of the matmul peak' for a report."""
    achieved = step_flops / step_seconds / 1e9
    return (
        f"{step_flops / 1e9:.2f} GFLOP a step (counted), {achieved:.1f} "
        f"GFLOP/s, {100 * achieved / peak_gflops:.0f}% of the {peak_gflops:.0f}"
        " GFLOP/s float32 matmul peak"
    )
