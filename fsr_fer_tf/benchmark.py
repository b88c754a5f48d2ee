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
