r"""Benchmarks the SPD stack CovPool -> BiMap -> ReEig -> LogEig.

Compares, in one run, this package's eigen-layers (Daleckii–Krein gradient,
`fsr_fer_tf.layers.spd`) with the same stack built on `tf.linalg.eigh` and
TensorFlow's own eigh gradient:

1. speed: float32 forward + backward wall time of a traced `tf.function`
   at the paper's shapes (256 channels, 144 positions, BiMap -> 128) and the
   demo's (64 channels -> 32), batch `--batch`; the two implementations run
   interleaved `--repeats` times, and the median and minimum and their
   ratios are printed (the minimum is the robust figure on a shared
   machine);
2. accuracy, in float32 and float64: on one sample of each kind of
   degenerate input (rank-deficient covariances, dead channels, eigenvalues
   clamped by ReEig, a constant map, exactly repeated eigenvalues), the
   number of NaN/Inf gradient entries and the largest error of the gradients
   w.r.t. the BiMap output Y1 (the eigen-layers' input), the BiMap weight W
   and the input map X, against an independent float64 NumPy reference
   (eigendecomposition + Loewner formula + hand-written backprop through
   BiMap and the covariance); once with a random orthonormal W and once with
   W = [I; 0], which hands exactly repeated eigenvalues to the eigen-layers.

CovariancePooling and BiMap (Y1 = Wᵀ S W, W an input tensor so dL/dW is
computed alike) are shared; only ReEig and LogEig differ.

Usage:
  python tools/bench_spd.py
  python tools/bench_spd.py --presets=demo --batch=8 --repeats=3
"""

import os
import time

# First, before TensorFlow: the package's start-up choices (startup.py:
# quiet notices, oneDNN on x86-64) hold for the benchmark as for training.
import fsr_fer_tf  # noqa: E402,F401

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fsr_fer_tf.configs import COVPOOL_PRESETS  # noqa: E402
from fsr_fer_tf.layers.covpool import CovariancePooling  # noqa: E402
from fsr_fer_tf.layers.spd import REEIG_MAX_VALUE  # noqa: E402
from fsr_fer_tf.layers.spd import LogEig  # noqa: E402
from fsr_fer_tf.layers.spd import ReEig  # noqa: E402
from fsr_fer_tf.layers.spd import ReEigLogEig  # noqa: E402

PRESETS = flags.DEFINE_list(
    "presets", ["paper", "demo"], "COVPOOL_PRESETS whose sizes to run."
)
BATCH = flags.DEFINE_integer("batch", 32, "Batch size of the timing runs.")
POSITIONS = flags.DEFINE_integer(
    "positions", 144, "Positions N of the conv map (12x12 = 144)."
)
REPEATS = flags.DEFINE_integer(
    "repeats", 10, "Timed repetitions of each implementation."
)
DTYPES = flags.DEFINE_list(
    "dtypes", ["float32", "float64"], "Compute dtypes of the accuracy check."
)
SEED = flags.DEFINE_integer("seed", 0, "NumPy seed.")

# "loewner": ReEig then LogEig (two eighs, Daleckii-Krein gradients);
# "fused": ReEigLogEig (one eigh, the same values and gradients);
# "tf_eigh": the same stack on tf.linalg.eigh and TensorFlow's gradient.
IMPLS = ("loewner", "fused", "tf_eigh")
COV_EPS = 1e-4
REEIG_EPS = 1e-4


# ---------------------------------------------------------------- stacks --


def _eigh_function(x, f):
    """U f(Λ) Uᵀ through tf.linalg.eigh, differentiated by TensorFlow."""
    eigvals, eigvecs = tf.linalg.eigh(x)
    return tf.matmul(
        eigvecs * f(eigvals)[..., None, :], eigvecs, adjoint_b=True
    )


def make_stack(impl, dtype):
    """Returns fn(x [B, N, c], w [c, d]) -> (Y1 = WᵀSW, Y3 = LogEig(ReEig))."""
    cov_pool = CovariancePooling(COV_EPS, dtype=dtype)
    reeig = ReEig(REEIG_EPS, dtype=dtype)
    logeig = LogEig(dtype=dtype)
    fused = ReEigLogEig(REEIG_EPS, dtype=dtype)

    def stack(x, w):
        s = cov_pool(x)  # (B, c, c)
        y1 = tf.matmul(tf.matmul(w, s, transpose_a=True), w)  # (B, d, d)
        if impl == "loewner":
            y3 = logeig(reeig(y1))
        elif impl == "fused":
            y3 = fused(y1)
        else:
            y2 = _eigh_function(
                y1, lambda e: tf.clip_by_value(e, REEIG_EPS, REEIG_MAX_VALUE)
            )
            y3 = _eigh_function(y2, tf.math.log)
        return y1, y3

    return stack


def make_grad_fn(impl, dtype):
    """fn(x, w, g) -> (dL/dY1, dL/dW, dL/dX) for L = Σ g ∘ LogEig(...)."""
    stack = make_stack(impl, dtype)

    @tf.function(reduce_retracing=True)
    def grad_fn(x, w, g):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y1, y3 = stack(x, w)
            loss = tf.reduce_sum(g * y3)
        dy1, dw, dx = tape.gradient(loss, [y1, w, x])
        # tf.linalg.eigh reads only the lower triangle, so TensorFlow's
        # gradient w.r.t. Y1 is lower-triangular; compare symmetric parts.
        return 0.5 * (dy1 + tf.linalg.matrix_transpose(dy1)), dw, dx

    return grad_fn


# ------------------------------------------------------- NumPy reference --


def _sym(a):
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _loewner(lam, f, df, rtol=1e-13):
    li, lj = lam[:, None], lam[None, :]
    gap = li - lj
    repeated = np.abs(gap) <= rtol * np.maximum(np.abs(li), np.abs(lj))
    safe = np.where(repeated, 1.0, gap)
    if f is np.log:
        big, small = np.maximum(li, lj), np.minimum(li, lj)
        ratio = np.where(
            np.abs(safe) < 0.5 * big,
            np.log1p(np.abs(safe) / small),
            np.log(big / small),
        )
        quotient = ratio / np.abs(safe)
    else:
        fl = f(lam)
        quotient = (fl[:, None] - fl[None, :]) / safe
    mean_df = 0.5 * (df(lam)[:, None] + df(lam)[None, :])
    return np.where(repeated, mean_df, quotient)


def _eig_backward(y, dy, f, df):
    lam, u = np.linalg.eigh(_sym(y))
    k = _loewner(lam, f, df)
    return u @ (k * (u.T @ _sym(dy) @ u)) @ u.T, u @ np.diag(f(lam)) @ u.T


def reference_grads(x, w, g):
    """float64 NumPy gradients (dL/dY1, dL/dW, dL/dX), one sample at a time."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))

    def clip(e):
        return np.clip(e, REEIG_EPS, REEIG_MAX_VALUE)

    def dclip(e):
        return ((e >= REEIG_EPS) & (e <= REEIG_MAX_VALUE)).astype(np.float64)

    dy1s, dxs, dw = [], [], np.zeros_like(w)
    n = x.shape[1]
    for xb, gb in zip(x, g):
        xc = xb - xb.mean(axis=0)
        s0 = xc.T @ xc / (n - 1)
        s = s0 + COV_EPS * np.trace(s0) * np.eye(s0.shape[0])
        y1 = w.T @ s @ w
        y2 = _eig_backward(y1, np.zeros_like(y1), clip, dclip)[1]
        dy2, _ = _eig_backward(y2, gb, np.log, lambda e: 1.0 / e)
        dy1, _ = _eig_backward(y1, dy2, clip, dclip)
        dw += s @ w @ dy1.T + s.T @ w @ dy1
        ds = w @ dy1 @ w.T
        ds0 = ds + COV_EPS * np.trace(ds) * np.eye(ds.shape[0])
        dxs.append(xc @ (ds0 + ds0.T) / (n - 1))
        dy1s.append(dy1)
    return np.stack(dy1s), dw, np.stack(dxs)


# ----------------------------------------------------------------- inputs --


def degenerate_batch(rng, channels, positions):
    """Named degenerate conv maps, [B, N, c] (N = positions, c = channels).

    - relu: ReLU of Gaussians (rank-deficient whenever N - 1 < c);
    - dead_channels: 6 live channels, so Wᵀ S W has the eigenvalue
      1e-4·trace repeated d - 6 times;
    - rank_3: 4 distinct positions, rank(S0) <= 3;
    - clamped: tiny activations: the 1e-4·trace floor is below ReEig's
      1e-4, so ReEig clamps d - 5 eigenvalues to the same value;
    - constant: a constant map, S = 0 exactly, all eigenvalues clamped;
    - orthogonal: 12 orthogonal centred ±1 channel patterns (Hadamard
      columns): S is exactly diagonal with two exactly repeated values.
    """
    n, c = positions, channels
    names, maps = [], []

    def add(name, m):
        names.append(name)
        maps.append(m)

    add("relu", np.maximum(rng.normal(size=(n, c)), 0.0))
    live = np.zeros((n, c))
    live[:, :6] = rng.normal(size=(n, 6))
    add("dead_channels", live)
    add("rank_3", rng.normal(size=(4, c))[rng.integers(0, 4, size=n)])
    small = np.zeros((n, c))
    small[:, :5] = 0.3 * rng.normal(size=(n, 5))
    small += 1e-4 * rng.normal(size=(n, c))
    add("clamped", small)
    add("constant", np.full((n, c), 0.7))
    rows = 2 ** int(np.log2(n))
    had = np.ones((1, 1))
    while had.shape[0] < rows:
        had = np.block([[had, had], [had, -had]])
    ortho = np.zeros((n, c))
    k = min(12, c, rows - 1)
    # Columns 1.. of a Hadamard matrix sum to zero and are orthogonal.
    ortho[:rows, :k] = had[:, 1 : k + 1]
    add("orthogonal", ortho)
    return names, np.stack(maps)


def bimap_weights(rng, channels, dim):
    """W kinds: a random orthonormal W, and the selection W = [I; 0] that
    passes an exactly diagonal S on to the eigen-layers unchanged."""
    random_w = np.linalg.qr(rng.normal(size=(channels, dim)))[0]
    return {"random W": random_w, "W = [I; 0]": np.eye(channels, dim)}


# ------------------------------------------------------------------- main --


def time_impls(channels, dim, batch, positions, repeats, rng):
    """Seconds per float32 fwd+bwd step for each impl: (median, min).

    The implementations run interleaved, so a busy machine slows both
    alike; the minimum is the least disturbed estimate.
    """
    x = tf.constant(rng.normal(size=(batch, positions, channels)), tf.float32)
    w = tf.constant(
        np.linalg.qr(rng.normal(size=(channels, dim)))[0], tf.float32
    )
    g = tf.constant(rng.normal(size=(batch, dim, dim)), tf.float32)
    grad_fns = {impl: make_grad_fn(impl, "float32") for impl in IMPLS}
    # The floor: one bare eigh of a batch of BiMap outputs, forward only.
    y1 = tf.constant(
        np.stack([_sym(m @ m.T) + np.eye(dim) for m in rng.normal(
            size=(batch, dim, dim))]), tf.float32,
    )  # fmt: skip
    grad_fns["eigh (floor)"] = tf.function(lambda *_: tf.linalg.eigh(y1))
    for grad_fn in grad_fns.values():  # trace + warm-up
        for t in grad_fn(x, w, g):
            t.numpy()
    times = {impl: [] for impl in grad_fns}
    for _ in range(repeats):
        for impl, grad_fn in grad_fns.items():
            start = time.perf_counter()
            for t in grad_fn(x, w, g):
                t.numpy()
            times[impl].append(time.perf_counter() - start)
    return {
        impl: (float(np.median(t)), float(np.min(t)))
        for impl, t in times.items()
    }


def accuracy(impl, dtype, x, w, g, ref):
    """Per input: NaN/Inf count and relative errors of dL/dY1 and dL/dX;
    and of dL/dW (summed over the batch)."""
    grads = make_grad_fn(impl, dtype)(
        tf.constant(x, dtype), tf.constant(w, dtype), tf.constant(g, dtype)
    )
    dy1, dw, dx = [t.numpy().astype(np.float64) for t in grads]

    def rel(got, want):
        with np.errstate(invalid="ignore"):
            err = np.abs(got - want).max()
        scale = np.abs(want).max()
        # A zero reference (all eigenvalues clamped) is reported absolute.
        return (err / scale, "") if scale > 1e-20 else (err, "abs ")

    per_input = [
        (
            int(np.sum(~np.isfinite(dy1[i])) + np.sum(~np.isfinite(dx[i]))),
            rel(dy1[i], ref[0][i]),
            rel(dx[i], ref[2][i]),
        )
        for i in range(x.shape[0])
    ]
    return per_input, (int(np.sum(~np.isfinite(dw))), rel(dw, ref[1]))


def main(argv):
    del argv
    # Each (impl, dtype) gets its own tf.function; silence retrace notes.
    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(SEED.value)
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, "
        f"batch {BATCH.value}, {POSITIONS.value} positions"
    )
    for preset in PRESETS.value:
        config = COVPOOL_PRESETS[preset]
        channels, dim = config.conv_filters[-1], config.bimap_dim
        print(f"\n=== {preset}: {channels} channels -> BiMap {dim} ===")
        seconds = time_impls(
            channels, dim, BATCH.value, POSITIONS.value, REPEATS.value, rng
        )
        floor = seconds["eigh (floor)"][1]
        for impl, (med, best) in seconds.items():
            what = "fwd " if impl == "eigh (floor)" else "fwd+bwd"
            print(
                f"{what} float32 {impl:12s} median {1e3 * med:8.1f} ms, "
                f"min {1e3 * best:8.1f} ms, {best / floor:5.2f}x the floor"
            )
        for impl in ("loewner", "fused"):
            ratios = [seconds[impl][i] / seconds["tf_eigh"][i] for i in (0, 1)]
            print(
                f"time ratio {impl} / tf_eigh: {ratios[0]:.2f} (median), "
                f"{ratios[1]:.2f} (min)"
            )

        names, x = degenerate_batch(rng, channels, POSITIONS.value)
        g = rng.normal(size=(len(names), dim, dim))
        combos = [(d, i) for d in DTYPES.value for i in IMPLS]
        for w_name, w in bimap_weights(rng, channels, dim).items():
            ref = reference_grads(x, w, g)
            results = {c: accuracy(c[1], c[0], x, w, g, ref) for c in combos}
            print(
                f"\n{w_name}: gradient error vs float64 NumPy reference, "
                "max|g - ref| / max|ref| as dL/dY1 | dL/dX per input "
                "(Y1 = BiMap output; 'abs': the reference is 0, absolute "
                "error); [n] = NaN/Inf entries"
            )
            print(
                f"{'input':14s}"
                + "".join(f"{d[:3] + d[-2:] + ' ' + i:>28s}" for d, i in combos)
            )
            for row, name in enumerate(names):
                cells = []
                for c in combos:
                    bad, (e_y, a_y), (e_x, a_x) = results[c][0][row]
                    flag = f"[{bad}]" if bad else ""
                    cells.append(f"{flag}{a_y}{e_y:.1e} | {a_x}{e_x:.1e}")
                print(f"{name:14s}" + "".join(f"{t:>28s}" for t in cells))
            cells = []
            for c in combos:
                bad, (e_w, a_w) = results[c][1]
                cells.append((f"[{bad}]" if bad else "") + f"{a_w}{e_w:.1e}")
            row = "".join(f"{t:>28s}" for t in cells)
            print(f"{'dL/dW (batch)':14s}{row}")


if __name__ == "__main__":
    app.run(main)
