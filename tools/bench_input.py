"""Throughput of the paired HR/LR input pipeline, against baselines.

    python tools/bench_input.py --batch_size=32 --steps=60 \
        --scales=2,3,4,5,6,7,8

Measures `pipeline.make_dataset` (training mode: shuffle, flip/shift/rotation,
a random scale per face, MATLAB-bicubic LR synthesis) on 100x100 faces, and,
in the same run and interleaved round by round (so a busy machine slows all
alike), the same pipeline with
  - `tf_bicubic`: LR synthesis by tf.image.resize (bicubic, antialias),
  - `no_lr`: no LR synthesis (lr = hr),
  - `no_aug`: MATLAB LR synthesis without augmentation,
  - `gather_only`: no augmentation, no LR synthesis (the floor).
Prints images/s (best round) and CPU ms per image (all threads, from
getrusage; stabler than wall time when other processes share the cores).
The data flags choose the faces (default: the bundled synthetic set).
"""

import os
import resource
import time

# First, before TensorFlow: the package's start-up choices (startup.py:
# quiet notices, oneDNN on x86-64) hold for the benchmark as for training.
import fsr_fer_tf  # noqa: E402,F401

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from fsr_fer_tf import errors  # noqa: E402
from fsr_fer_tf.data import flags as data_flags  # noqa: E402
from fsr_fer_tf.data import loader  # noqa: E402
from fsr_fer_tf.data import pipeline  # noqa: E402

data_flags.define_data_flags()
BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Faces per batch.")
STEPS = flags.DEFINE_integer(
    "steps", 60, "Batches timed per variant and round (after warm-up)."
)
WARMUP = flags.DEFINE_integer(
    "warmup", 5, "Batches run before timing (tracing, autotuning)."
)
ROUNDS = flags.DEFINE_integer(
    "rounds", 3, "Rounds; each times every variant once, best one is kept."
)
SCALES = flags.DEFINE_list(
    "scales",
    ["2", "3", "4", "5", "6", "7", "8"],
    "LR scales; each face draws one at random.",
)
SPLIT = flags.DEFINE_string("split", "train", "Split to read.")

VARIANTS = {
    "matlab (paper)": dict(),
    "tf_bicubic": dict(lr_synthesis_method="tf_bicubic"),
    "no_lr": dict(lr_synthesis_method="none"),
    "no_aug": dict(augment=False),
    "gather_only": dict(augment=False, lr_synthesis_method="none"),
}


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _batches(split, scales, epoch, **kwargs):
    """Endless batches over successive epochs."""
    while True:
        yield from pipeline.make_dataset(
            split,
            batch_size=BATCH_SIZE.value,
            training=True,
            scales=scales,
            epoch=epoch,
            **kwargs,
        )
        epoch += 1


def time_variant(split, scales, kwargs, epoch):
    """Returns (images/s, CPU ms per image) over --steps batches."""
    batches = _batches(split, scales, epoch, **kwargs)
    for _ in range(WARMUP.value):
        next(batches)
    images = 0
    cpu = _cpu_seconds()
    start = time.perf_counter()
    for _ in range(STEPS.value):
        images += int(next(batches)["hr"].shape[0])
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    return images / wall, 1e3 * cpu / images


def main(argv):
    del argv  # errors.cli_main refuses positional arguments
    try:
        scales = tuple(int(s) for s in SCALES.value)
    except ValueError:
        raise errors.ConfigError(
            f"--scales={','.join(SCALES.value)} must be whole numbers, e.g. "
            "--scales=2,4,8."
        ) from None
    for name in ("batch_size", "steps", "rounds"):
        errors.require(flags.FLAGS[name].value >= 1, f"--{name} must be >= 1.")
    config = data_flags.data_config_from_flags(flags.FLAGS)
    dataset = loader.load_dataset(config)
    split = dataset.split(SPLIT.value)
    pipeline.check_scales(scales, config.image_size)
    start = time.perf_counter()
    pipeline.hr_images(split, config.image_size)
    logging.info(
        "%d faces of %s/%s ready in %.1f s",
        len(split),
        config.data_format,
        SPLIT.value,
        time.perf_counter() - start,
    )

    results = {name: [] for name in VARIANTS}
    for round_ in range(ROUNDS.value):
        for name, kwargs in VARIANTS.items():
            results[name].append(
                time_variant(split, scales, kwargs, epoch=round_)
            )
    best = {name: max(runs) for name, runs in results.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"input pipeline, {config.data_format}/{SPLIT.value} "
        f"({len(split)} faces), {config.image_size}x{config.image_size}, "
        f"batch {BATCH_SIZE.value}, scales {','.join(map(str, scales))}, "
        f"{STEPS.value} steps x {ROUNDS.value} rounds, {os.cpu_count()} "
        f"CPUs, load average {load:.1f}"
    )
    print(f"{'variant':16s} {'images/s':>9s} {'CPU ms/img':>11s}")
    for name, (rate, cpu_ms) in best.items():
        print(f"{name:16s} {rate:9.0f} {cpu_ms:11.3f}")
    paper = best["matlab (paper)"][0]
    print(
        f"ratio matlab / tf_bicubic: {paper / best['tf_bicubic'][0]:.2f}; "
        f"matlab / no_lr: {paper / best['no_lr'][0]:.2f}"
    )


if __name__ == "__main__":
    app.run(errors.cli_main(main), flags_parser=data_flags.parse_flags)
