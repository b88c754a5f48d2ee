r"""Benchmarks the stage-2 training step (`fsr_fer_tf.train.steps.FSRSteps`).

For each preset (`paper`: d = 128, the paper's generator and critic;
`demo`: d = 32, the demo presets), at batch `--batch`, this times in one
run, on whatever CPU/GPU TensorFlow sees:

1. baselines: the generator's forward pass alone (training mode) and the
   frozen CovPoolFER feature extraction SPD(CNN(I)) of one image batch;
2. `pretrain_step` (L2-only generator update);
3. `train_step` for each `--n_critic` (critic updates + one generator
   update in one `tf.function`);

and prints ms/step (median and minimum of `--repeats` calls after one
warm-up call, which traces; the minimum is the robust figure on a shared
machine), ratios against the generator forward pass and against the
first `--n_critic` value, and the FLOPs of a GAN step counted on its
graph (the penalty's double backward included; `benchmark.graph_flops`)
with the achieved GFLOP/s as a fraction of a 2048x2048 float32 matmul
timed in the same run. The frozen parts are the real CovPoolFER
(`build_covpoolfer`, random weights, eigh included) unless
`--frozen=standin` (a conv + a Gram map + a dense head, no eigh).

Usage:
  python tools/bench_fsr_step.py --presets=demo
  python tools/bench_fsr_step.py --presets=paper --repeats=2 --n_critic=1
  python tools/bench_fsr_step.py --presets=demo --jit_compile --mixed_precision
"""

import time

# First, before TensorFlow: the package's start-up choices (startup.py:
# quiet notices, oneDNN on x86-64) hold for the benchmark as for training.
import fsr_fer_tf  # noqa: E402,F401

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fsr_fer_tf import benchmark  # noqa: E402
from fsr_fer_tf.configs import COVPOOL_PRESETS  # noqa: E402
from fsr_fer_tf.configs import CRITIC_PRESETS  # noqa: E402
from fsr_fer_tf.configs import GENERATOR_PRESETS  # noqa: E402
from fsr_fer_tf.models.critic import VGGCritic  # noqa: E402
from fsr_fer_tf.models.generator import RRDBGenerator  # noqa: E402
from fsr_fer_tf.train import loop  # noqa: E402
from fsr_fer_tf.train.steps import FSRSteps  # noqa: E402

PRESETS = flags.DEFINE_list(
    "presets", ["demo", "paper"], "Presets to run (demo: d=32, paper: d=128)."
)
BATCH = flags.DEFINE_integer("batch", 32, "HR/LR pairs per step (paper 32).")
N_CRITIC = flags.DEFINE_list(
    "n_critic", ["1", "5"], "Critic updates per step, one run each."
)
REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
FROZEN = flags.DEFINE_enum(
    "frozen", "real", ["real", "standin"], "Frozen CovPoolFER parts."
)
JIT = flags.DEFINE_bool(
    "jit_compile", False, "XLA-compile the critic and pre-training gradients."
)
MIXED = flags.DEFINE_bool(
    "mixed_precision", False, "Build G and D under mixed_float16."
)
SEED = flags.DEFINE_integer("seed", 0, "Seed of weights and inputs.")
REMAPPING = flags.DEFINE_bool(
    "compare_remapping",
    True,
    "Also time train_step (first --n_critic) with Grappler's remapper off, "
    "as train_fsr runs it (steps.disable_remapper), against on; the "
    "remapper stays off for the presets after.",
)


class _Gram(keras.layers.Layer):
    """Stand-in for CovPool -> ... -> LogEig: X^T X / N (symmetric)."""

    def call(self, x):
        b, c = tf.shape(x)[0], x.shape[-1]
        x = tf.reshape(x, (b, -1, c))
        n = tf.cast(tf.shape(x)[1], x.dtype)
        return tf.matmul(x, x, transpose_a=True) / n


def frozen_parts(preset, frozen="real"):
    """(features, spd, head, image_size) of the real or stand-in CovPoolFER."""
    config = COVPOOL_PRESETS[preset]
    if frozen == "real":
        from fsr_fer_tf.models import covpool

        model = covpool.build_covpoolfer(config)
        features, spd, head = covpool.covpoolfer_parts(model)
        return features, spd, head, config.image_size
    size, d = config.image_size, config.bimap_dim
    images = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(d, 3, strides=8, padding="same")(images)
    features = keras.Model(images, x)
    conv_map = keras.Input(x.shape[1:])
    spd = keras.Model(conv_map, _Gram(dtype="float32")(conv_map))
    f = keras.Input((d, d))
    embedding = keras.layers.Dense(config.fc_units[-1])(
        keras.layers.Flatten()(f)
    )
    logits = keras.layers.Dense(config.num_classes, dtype="float32")(embedding)
    head = keras.Model(f, [embedding, logits])
    return features, spd, head, size


def timed(fn, *args):
    """(median, min) seconds of --repeats calls after one warm-up call."""
    return benchmark.timed(fn, *args, repeats=REPEATS.value)


def make_models(preset, d, mixed_precision=False):
    """(generator, critic) of a preset at feature size d."""
    with loop.dtype_policy(mixed_precision):
        generator = RRDBGenerator(GENERATOR_PRESETS[preset])
        critic = VGGCritic(CRITIC_PRESETS[preset], input_size=d)
    return generator, critic


def make_batch(rng, batch, size):
    """(hr, lr, labels): random face pairs of size x size."""
    hr = tf.constant(rng.normal(size=(batch, size, size, 3)), tf.float32)
    lr = tf.constant(rng.normal(size=(batch, size, size, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 7, size=batch), tf.int32)
    return hr, lr, labels


def make_fsr_steps(models, n_critic, remapper, jit_compile=False, seed=0):
    """FSRSteps of models = (generator, critic, features, spd, head)."""
    return FSRSteps(
        *models,
        n_critic=n_critic,
        jit_compile=jit_compile,
        seed=seed,
        remapper=remapper,
    )


def make_train_step(preset, batch, n_critic=1, seed=0, frozen="real"):
    """(train_step, (hr, lr, labels)): the GAN step at a preset's shapes
    (real frozen CovPoolFER, float32, no XLA, the remapper off as train_fsr
    runs it) and a random batch for it."""
    keras.utils.set_random_seed(seed)
    features, spd, head, size = frozen_parts(preset, frozen)
    generator, critic = make_models(preset, COVPOOL_PRESETS[preset].bimap_dim)
    rng = np.random.default_rng(seed)
    batch_tensors = make_batch(rng, batch, size)
    steps = make_fsr_steps(
        (generator, critic, features, spd, head),
        n_critic,
        remapper=False,
        seed=seed,
    )
    return steps.train_step, batch_tensors


def run_preset(preset, peak):
    tf.config.optimizer.set_experimental_options({"remapping": True})
    keras.utils.set_random_seed(SEED.value)
    features, spd, head, size = frozen_parts(preset, FROZEN.value)
    d = COVPOOL_PRESETS[preset].bimap_dim
    b = BATCH.value
    rng = np.random.default_rng(SEED.value)
    hr, lr, labels = make_batch(rng, b, size)
    generator, critic = make_models(preset, d, MIXED.value)
    print(
        f"\n== {preset}: d={d}, batch {b}, image {size}, frozen="
        f"{FROZEN.value}, G {generator.count_params():,} params, "
        f"D {critic.count_params():,} params, jit={JIT.value}, "
        f"mixed={MIXED.value}",
        flush=True,
    )

    f_lr = tf.constant(rng.normal(size=(b, d, d, 1)), tf.float32)
    g_forward = tf.function(lambda x: generator(x, training=True))
    extract = tf.function(
        lambda x: spd(features(x, training=False), training=False)
    )
    rows = []
    base = timed(g_forward, f_lr)
    rows.append(("G forward (baseline)", base))
    rows.append(("SPD(CNN(I)) one batch", timed(extract, hr)))

    def make_steps(n, remapper):
        return make_fsr_steps(
            (generator, critic, features, spd, head),
            n,
            remapper,
            jit_compile=JIT.value,
            seed=SEED.value,
        )

    results = {}
    n_critics = [int(v) for v in N_CRITIC.value]
    first_steps = None
    for n in n_critics:
        steps = make_steps(n, remapper=True)  # off below, for the comparison
        first_steps = first_steps or steps
        if n == n_critics[0]:
            rows.append(("pretrain_step", timed(steps.pretrain_step, hr, lr)))
        start = time.perf_counter()
        steps.train_step(hr, lr, labels)  # traces
        print(
            f"  train_step n_critic={n}: first call (trace) "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        results[n] = timed(steps.train_step, hr, lr, labels)
        rows.append((f"train_step n_critic={n}", results[n]))
    remapper = None
    if REMAPPING.value:
        # As train_fsr runs it: a fresh FSRSteps turns the remapper off
        # (for the rest of the process) and traces again.
        steps = make_steps(n_critics[0], remapper=False)
        remapper = timed(steps.train_step, hr, lr, labels)
        rows.append(("  same, remapper off", remapper))

    print(f"  {'what':28s} {'median ms':>10s} {'min ms':>10s} {'/G fwd':>8s}")
    for name, (median, best) in rows:
        print(
            f"  {name:28s} {1e3 * median:10.1f} {1e3 * best:10.1f} "
            f"{best / base[1]:8.2f}"
        )
    first = n_critics[0]
    for n, (_, best) in results.items():
        if n != first:
            print(
                f"  train_step n_critic={n} / n_critic={first} (min): "
                f"{best / results[first][1]:.2f}"
            )
    if remapper is not None:
        print(
            f"  train_step remapper off / on (min): "
            f"{remapper[1] / results[first][1]:.2f}"
        )
    print(
        f"  images/s (train_step n_critic={first}, min): "
        f"{b / results[first][1]:.1f}",
        flush=True,
    )
    flops = benchmark.graph_flops(first_steps.train_step, hr, lr, labels)
    print(
        f"  train_step n_critic={first}: "
        + benchmark.peak_line(flops, results[first][1], peak),
        flush=True,
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
