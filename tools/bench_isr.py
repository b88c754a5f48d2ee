r"""Inference cost per face: feature SR (FSR-FER) against image SR.

The paper argues that super-resolving the d x d SPD feature (FSR-FER) is
cheaper than super-resolving the face itself and classifying the result.
At one scale s (`--scale`), from a batch of native LR faces
(ceil(100 / s) px, MATLAB's `imresize(I, 1/s)` size; random 0..255 pixels
with a fixed seed: the cost does not depend on content), this times in one
run, each route as one `tf.function` from the native faces to the logits:

1. `bicubic` (the baseline): MATLAB bicubic up to 100x100, CovPoolFER;
2. `fsr`: MATLAB bicubic up to 100x100, CovPoolFER's CNN + SPD, the
   generator G on the d x d feature, CovPoolFER's head;
3. one row per `--isr_model` file (train_isr's isr.keras; the method is
   named after the file's stem): the image-SR model (MetaSR or RCAN,
   `isr.super_resolve`) up to 100x100 from the native face, CovPoolFER.
   Models that do not serve `--scale` are skipped with a note.

and prints ms per face (median and minimum of `--repeats` calls of a batch
of `--batch_size` faces after one warm-up call, which traces), the ratio of
the minimum to bicubic's, and the FLOPs per face counted on each route's
graph (`benchmark.graph_flops`), with their ratio to bicubic's. eigh (the
SPD layers' eigendecompositions) counts 0 FLOPs; every route runs it the
same number of times.

Usage:
  python tools/bench_isr.py
  python tools/bench_isr.py --scale=8 --isr_model=RUN/metasr.keras,RUN/rcan.keras
  python tools/bench_isr.py --fer_model=RUN/fer.keras --generator=RUN/g.keras
"""

import os

# First, before TensorFlow: the package's start-up choices (startup.py:
# quiet notices, oneDNN on x86-64) hold for the benchmark as for evaluation.
import fsr_fer_tf  # noqa: E402,F401

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fsr_fer_tf import benchmark  # noqa: E402
from fsr_fer_tf import errors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT_IN = ("bicubic", "fsr")
EIGH_OPS = ("SelfAdjointEigV2",)

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines the tool's flags (called under __main__, so that importing
    the module, e.g. in tests beside the package's entry points, defines
    none)."""
    flags.DEFINE_string(
        "fer_model",
        "checkpoints/fer2013/fer.keras",
        "Stage-1 CovPoolFER .keras file (relative paths that do not exist "
        "from the working directory are read from the repository).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "generator",
        "checkpoints/fer2013/generator.keras",
        "Stage-2 generator .keras file for --fer_model's feature size.",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "isr_model",
        [],
        "Comma-separated image-SR .keras files (MetaSR / RCAN, train_isr's "
        "isr.keras); one row each, named after the file's stem.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "scale",
        4,
        "Scale s >= 2: the native LR faces are ceil(100 / s) px.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "batch_size", 64, "Faces per timed call.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "repeats", 5, "Timed calls per measurement.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "seed", 0, "Seed of the random input faces.", flag_values=flag_values
    )


def resolve(path):
    """`path`, or the repository's file of that relative path if only that
    exists (so the defaults work from any working directory)."""
    if path and not os.path.isabs(path) and not os.path.exists(path):
        in_repo = os.path.join(REPO, path)
        if os.path.exists(in_repo):
            return in_repo
    return path


def method_names(paths):
    """Row names of image-SR files: each file's stem, distinct and not a
    built-in row (ConfigError otherwise)."""
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    for name, path in zip(names, paths):
        errors.require(
            name not in BUILT_IN,
            f"--isr_model {path}: its row would be named '{name}', like a "
            "built-in row; rename the file (e.g. metasr.keras).",
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    errors.require(
        not dupes,
        f"--isr_model files must have distinct stems (the row names), got "
        f"{', '.join(dupes)} twice; rename one.",
    )
    return names


def check_arguments(scale, batch_size, repeats, isr_paths):
    """ConfigError for a bad number or a missing --isr_model file, before
    any model is loaded."""
    errors.require(
        2 <= scale <= 100,
        f"--scale must be a whole number in 2..100 (the paper uses 2..8), "
        f"got {scale}.",
    )
    errors.require(
        batch_size > 0, f"--batch_size must be > 0, got {batch_size}."
    )
    errors.require(repeats > 0, f"--repeats must be > 0, got {repeats}.")
    for path in isr_paths:
        errors.require(
            os.path.isfile(path),
            f"--isr_model {path} does not exist; train one with `python -m "
            "fsr_fer_tf.train_isr`, which writes MODEL_DIR/isr.keras.",
        )
    method_names(isr_paths)


def load_models(fer_path, generator_path, isr_paths):
    """(CovPoolFER, generator, ((name, image-SR model), ...)), each checked.

    Raises:
        ConfigError: a missing or unloadable file, a model that is not
            what its flag expects, a generator for another feature size,
            or an image-SR model whose faces are not CovPoolFER's size.
    """
    from fsr_fer_tf import eval_lib
    from fsr_fer_tf.models import isr
    from fsr_fer_tf.train import fsr_loop

    fer_model = fsr_loop.load_fer_model(fer_path)
    errors.require(
        os.path.isfile(generator_path or ""),
        f"--generator {generator_path} does not exist; train one with "
        "`python -m fsr_fer_tf.train_fsr` (it writes "
        "MODEL_DIR/generator.keras).",
    )
    try:
        generator = eval_lib.load_generator(
            generator_path, fsr_loop.feature_size(fer_model)
        )
    except errors.ConfigError as e:  # It names eval's flag, --fsr_model.
        raise errors.ConfigError(
            str(e).replace("--fsr_model", "--generator")
        ) from None
    size = eval_lib.input_size(fer_model)
    isr_models = []
    for name, path in zip(method_names(isr_paths), isr_paths):
        model = isr.load_isr(path, "--isr_model")
        errors.require(
            model.out_size == size and model.image_channels == 3,
            f"--isr_model {path} makes {model.out_size}x{model.out_size}x"
            f"{model.image_channels} faces but --fer_model takes "
            f"{size}x{size}x3; pass an SR model trained for them.",
        )
        isr_models.append((name, model))
    return fer_model, generator, tuple(isr_models)


def make_routes(fer_model, generator, isr_models, scale):
    """The routes at `scale` and the notes on skipped image-SR models.

    Returns:
        routes: [(name, description, fn, count_fn)]: `fn` (a tf.function,
            native LR faces [B, n, n, 3] float32 -> logits) is timed;
            `count_fn` is the same computation for `graph_flops` (see
            `_static_sr`).
        notes: one line per skipped model.
    """
    from fsr_fer_tf.data import imresize as imresize_lib
    from fsr_fer_tf.models import covpool
    from fsr_fer_tf.models import isr

    features, spd, head = covpool.covpoolfer_parts(fer_model)
    size = int(fer_model.input_shape[1])

    def bicubic_up(lr):
        return imresize_lib.imresize(lr, output_size=(size, size))

    def covpoolfer(image):
        return head(spd(features(image, training=False)), training=False)[1]

    def fsr(lr):
        f_lr = spd(features(bicubic_up(lr), training=False), training=False)
        f_sr = generator(f_lr[..., None], training=False)  # (B, d, d, 1)
        return head(tf.cast(f_sr[..., 0], f_lr.dtype), training=False)[1]

    d = int(spd.output_shape[-1])
    bicubic_fn = tf.function(lambda lr: covpoolfer(bicubic_up(lr)))
    fsr_fn = tf.function(fsr)
    up = f"MATLAB bicubic to {size}x{size}"
    g = f"{up}, CNN + SPD, G on the {d}x{d} feature, head"
    routes = [
        ("bicubic", f"{up}, CovPoolFER", bicubic_fn, bicubic_fn),
        ("fsr", g, fsr_fn, fsr_fn),
    ]
    notes = []
    for name, model in isr_models:
        served = isr.served_scales(model)
        kind = type(model).__name__
        if scale not in served:
            notes.append(
                f"note: {name} ({kind}) serves x{','.join(map(str, served))}"
                f", not x{scale}: skipped."
            )
            continue
        run = tf.function(
            lambda lr, m=model: covpoolfer(isr.super_resolve(m, lr, scale))
        )
        count = tf.function(
            lambda lr, m=model: covpoolfer(_static_sr(m, lr, scale))
        )
        routes.append(
            (name, f"{kind} to {size}x{size}, CovPoolFER", run, count)
        )
    return routes, notes


def _static_sr(model, lr_native, scale):
    """`isr.super_resolve`'s computation with static shapes, for counting.

    MetaSR's call partitions the batch by scale and runs each group in a
    `tf.cond` branch: the profiler sees neither the branch functions nor
    the groups' batch size, so it would count its convolutions as 0. For a
    batch of one scale its call is `super_resolve_native` on the whole
    batch (the partition and stitch are gathers, 0 FLOPs).
    """
    from fsr_fer_tf.models import isr

    if isinstance(model, isr.MetaSR):
        y = model.super_resolve_native(lr_native, scale)
        return tf.clip_by_value(tf.cast(y, tf.float32), 0.0, 255.0)
    return isr.super_resolve(model, lr_native, scale)


def _flops(fn, *args):
    # The profiler calls a TF1 shape helper whose deprecation notice would
    # land amid the table.
    from tensorflow.python.util import deprecation

    with deprecation.silence():
        return benchmark.graph_flops(fn, *args)


def eigh_ops(fn, *args):
    """How many eigendecompositions the graph of `fn` runs."""
    graph = fn.get_concrete_function(*args).graph
    return sum(op.type in EIGH_OPS for op in graph.get_operations())


def random_faces(batch_size, side, seed):
    """[B, side, side, 3] float32 integer pixels 0..255 (fixed seed)."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (batch_size, side, side, 3))
    return tf.constant(faces, tf.float32)


def measure(routes, lr, repeats):
    """[{name, description, median, min, flops, eigh}], seconds and FLOPs
    per face, in the order of `routes`."""
    b = int(lr.shape[0])
    rows = []
    for name, description, fn, count_fn in routes:
        median, best = benchmark.timed(fn, lr, repeats=repeats)
        rows.append(
            {
                "name": name,
                "description": description,
                "median": median / b,
                "min": best / b,
                "flops": _flops(count_fn, lr) / b,
                "eigh": eigh_ops(count_fn, lr),
            }
        )
    return rows


def table(rows):
    """The printed table: ms per face, MFLOP per face, ratios to row 0."""
    base = rows[0]
    width = max(12, *(len(r["name"]) for r in rows))
    lines = [
        f"{'method':{width}s} {'median ms':>10s} {'min ms':>9s} "
        f"{'x bicubic':>10s} {'MFLOP':>10s} {'x bicubic':>10s}  route"
    ]
    for r in rows:
        lines.append(
            f"{r['name']:{width}s} {1e3 * r['median']:10.3f} "
            f"{1e3 * r['min']:9.3f} {r['min'] / base['min']:9.2f}x "
            f"{r['flops'] / 1e6:10.1f} {r['flops'] / base['flops']:9.2f}x  "
            f"{r['description']}"
        )
    return lines


def run(fer_path, generator_path, isr_paths, scale, batch_size, repeats, seed):
    """Checks the arguments, loads the models and prints the benchmark."""
    from fsr_fer_tf.models import covpool
    from fsr_fer_tf.models import isr

    isr_paths = [p for p in (p.strip() for p in isr_paths) if p]
    check_arguments(scale, batch_size, repeats, isr_paths)
    print(benchmark.environment())
    fer_model, generator, isr_models = load_models(
        resolve(fer_path), resolve(generator_path), isr_paths
    )
    size = int(fer_model.input_shape[1])
    n = isr.native_size(scale, size)
    routes, notes = make_routes(fer_model, generator, isr_models, scale)
    d = int(covpool.covpoolfer_parts(fer_model)[1].output_shape[-1])
    lr = random_faces(batch_size, n, seed)
    rows = measure(routes, lr, repeats)
    print(
        f"\nx{scale}: native {n}x{n} LR faces (random 0..255, seed {seed}) "
        f"to logits; batch {batch_size}, {repeats} timed call(s) after one "
        "warm-up; per face; x bicubic: ratio of the minima"
    )
    for line in table(rows):
        print(line)
    for line in notes:
        print(line)
    eigh = "/".join(map(str, sorted({r["eigh"] for r in rows})))
    print(
        "FLOPs: counted on each route's graph (benchmark.graph_flops); eigh "
        f"counts 0: each route runs {eigh} batched eigh op(s) on the {d}x{d} "
        "SPD feature (ReEig, LogEig), left out of every row."
    )
    if not isr_paths:
        print(
            "no image-SR rows: add them with --isr_model=A.keras,B.keras "
            "(MetaSR / RCAN files from `python -m fsr_fer_tf.train_isr`)."
        )
    return rows, notes


def main(argv, flag_values=FLAGS):
    del argv  # errors.cli_main refuses positional arguments
    f = flag_values
    run(
        f.fer_model,
        f.generator,
        f.isr_model,
        f.scale,
        f.batch_size,
        f.repeats,
        f.seed,
    )


if __name__ == "__main__":
    define_flags()
    app.run(errors.cli_main(main))
