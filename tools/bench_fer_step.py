r"""Benchmarks the stage-1 training step (`fsr_fer_tf.train.fer_steps`).

For each preset (`paper`: the released CovPoolFER, 256 channels, 128x128 SPD
feature; `demo`), at batch `--batch` (paper: 128) of 100x100 faces, this
times in one run, on whatever CPU/GPU TensorFlow sees:

1. the baseline: the model's forward pass in inference mode;
2. `ClassifierSteps.train_step` (forward in training mode, cross-entropy +
   weight decay + center loss, backward through the SPD layers, Adam, the
   BiMap retraction, the centre update), with the preset's training
   settings;
3. the same step with the trunk's batch-norms on TensorFlow's fused kernel
   (`CovPoolFERConfig.fused_batch_norm`), and its speed-up over 2;

and prints ms/step (median and minimum of `--repeats` calls after one
warm-up call, which traces), images/s, the ratio of the step to the
forward pass, the FLOPs of a step counted on its graph (forward and
backward; `benchmark.graph_flops`) with the achieved GFLOP/s as a fraction
of a 2048x2048 float32 matmul timed in the same run, and what the preset's
whole schedule would take at that speed on RAF-DB's 12271 training faces.

Usage:
  python tools/bench_fer_step.py --presets=demo
  python tools/bench_fer_step.py --presets=paper --repeats=3
"""

# First, before TensorFlow: the package's start-up choices (startup.py:
# quiet notices, oneDNN on x86-64) hold for the benchmark as for training.
import fsr_fer_tf  # noqa: E402,F401

import dataclasses  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fsr_fer_tf import benchmark  # noqa: E402
from fsr_fer_tf.configs import COVPOOL_PRESETS  # noqa: E402
from fsr_fer_tf.configs import FER_TRAIN_PRESETS  # noqa: E402
from fsr_fer_tf.models.covpool import build_covpoolfer  # noqa: E402
from fsr_fer_tf.train import loop  # noqa: E402
from fsr_fer_tf.train.fer_steps import ClassifierSteps  # noqa: E402

RAFDB_TRAIN_IMAGES = 12271

PRESETS = flags.DEFINE_list(
    "presets", ["demo", "paper"], "Presets to run (COVPOOL_PRESETS names)."
)
BATCH = flags.DEFINE_integer(
    "batch", 128, "Faces per step (the released recipe's 128)."
)
REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
MIXED = flags.DEFINE_bool(
    "mixed_precision", False, "Build the model under mixed_float16."
)
SEED = flags.DEFINE_integer("seed", 0, "Seed of weights and inputs.")


def make_steps(preset, mixed_precision=False, fused_batch_norm=None):
    """ClassifierSteps for a preset's model and training settings
    (`fused_batch_norm`: None keeps the preset's)."""
    cfg = FER_TRAIN_PRESETS[preset]
    model_config = COVPOOL_PRESETS[preset]
    if fused_batch_norm is not None:
        model_config = dataclasses.replace(
            model_config, fused_batch_norm=fused_batch_norm
        )
    with loop.dtype_policy(mixed_precision):
        model = build_covpoolfer(model_config)
        optimizer = keras.optimizers.Adam(1e-3, epsilon=cfg.adam_epsilon)
        if mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    steps = ClassifierSteps(
        model,
        optimizer,
        cfg.weight_decay,
        cfg.center_loss_weight,
        cfg.center_loss_alpha,
    )
    return steps, cfg


def make_batch(preset, batch, seed):
    """(images, labels): `batch` random faces at the preset's input size."""
    size = COVPOOL_PRESETS[preset].image_size
    rng = np.random.default_rng(seed)
    images = tf.constant(
        rng.uniform(0, 255, (batch, size, size, 3)), tf.float32
    )
    labels = tf.constant(rng.integers(0, 7, batch), tf.int32)
    return images, labels


def make_train_step(preset, batch, seed=0, mixed_precision=False):
    """(train_step, (images, labels)): the stage-1 step at a preset's shapes
    and a random batch for it (weights seeded by `seed`)."""
    keras.utils.set_random_seed(seed)
    steps, _ = make_steps(preset, mixed_precision)
    return steps.train_step, make_batch(preset, batch, seed)


def run_preset(preset, peak):
    keras.utils.set_random_seed(SEED.value)
    steps, cfg = make_steps(preset, MIXED.value, fused_batch_norm=False)
    b = BATCH.value
    size = COVPOOL_PRESETS[preset].image_size
    images, labels = make_batch(preset, b, SEED.value)
    forward = tf.function(lambda x: steps.model(x, training=False))
    rows = [
        (
            "forward (inference)",
            benchmark.timed(forward, images, repeats=REPEATS.value),
        )
    ]
    rows.append(
        (
            "train_step",
            benchmark.timed(
                steps.train_step, images, labels, repeats=REPEATS.value
            ),
        )
    )
    keras.utils.set_random_seed(SEED.value)
    fused, _ = make_steps(preset, MIXED.value, fused_batch_norm=True)
    rows.append(
        (
            "train_step, fused BN",
            benchmark.timed(
                fused.train_step, images, labels, repeats=REPEATS.value
            ),
        )
    )
    base = rows[0][1][1]
    print(
        f"\n{preset}: batch {b}, {size}x{size} faces, "
        f"{'mixed_float16' if MIXED.value else 'float32'}"
    )
    print(
        f"{'':24s} {'median ms':>10s} {'min ms':>9s} {'img/s':>8s} "
        f"{'x forward':>10s}"
    )
    for name, (median, minimum) in rows:
        print(
            f"{name:24s} {1e3 * median:10.1f} {1e3 * minimum:9.1f} "
            f"{b / minimum:8.1f} {minimum / base:10.2f}"
        )
    step_s = rows[1][1][1]
    flops = benchmark.graph_flops(steps.train_step, images, labels)
    print("train_step: " + benchmark.peak_line(flops, step_s, peak))
    print(
        "train_step, fused BN: "
        + benchmark.peak_line(flops, rows[2][1][1], peak)
        + f"; {step_s / rows[2][1][1]:.2f}x the Keras-BN step's speed"
        " (CovPoolFERConfig.fused_batch_norm)"
    )
    total = cfg.epochs * (RAFDB_TRAIN_IMAGES // b)
    print(
        f"the {preset} schedule on RAF-DB ({cfg.epochs} epochs x "
        f"{RAFDB_TRAIN_IMAGES // b} steps = {total} steps) would take "
        f"{total * step_s / 3600:.1f} h at this speed"
    )


def main(argv):
    del argv
    print(benchmark.environment())
    peak = benchmark.matmul_peak(repeats=REPEATS.value)
    print(f"float32 2048x2048 matmul: {peak:.1f} GFLOP/s (the peak)")
    for preset in PRESETS.value:
        run_preset(preset, peak)


if __name__ == "__main__":
    app.run(main)
