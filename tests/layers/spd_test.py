"""Tests for fsr_fer_tf.layers.spd: BiMap, ReEig, LogEig, StiefelConstraint.

Numbers are checked against float64 NumPy references: the eigen-function
forward U f(Λ) Uᵀ and the Daleckii–Krein (Loewner) gradient, plus float64
finite differences (`tf.test.compute_gradient`).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf.layers import spd
from fsr_fer_tf.layers.covpool import CovariancePooling
from fsr_fer_tf.layers.spd import BiMap
from fsr_fer_tf.layers.spd import LogEig
from fsr_fer_tf.layers.spd import ReEig
from fsr_fer_tf.layers.spd import ReEigLogEig
from fsr_fer_tf.layers.spd import StiefelConstraint

D = 5


# ------------------------------------------------------------ references --


def np_sym(a):
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def np_eig_fn(s, f):
    lam, u = np.linalg.eigh(np_sym(s))
    return u @ np.diag(f(lam)) @ u.T


def np_loewner_grad(s, g, f, df, rtol=1e-10):
    """float64 U (K ∘ (Uᵀ sym(G) U)) Uᵀ, the reference gradient."""
    lam, u = np.linalg.eigh(np_sym(s))
    li, lj = lam[:, None], lam[None, :]
    gap = li - lj
    repeated = np.abs(gap) <= rtol * np.maximum(np.abs(li), np.abs(lj))
    safe = np.where(repeated, 1.0, gap)
    if f is np.log:  # log(big/small) via log1p: no cancellation.
        small = np.minimum(li, lj)
        quotient = np.log1p(np.abs(safe) / small) / np.abs(safe)
    else:
        quotient = (f(li) - f(lj)) / safe
    k = np.where(repeated, 0.5 * (df(li) + df(lj)), quotient)
    return u @ (k * (u.T @ np_sym(g) @ u)) @ u.T


def np_clip(eps):
    return lambda lam: np.clip(lam, eps, spd.REEIG_MAX_VALUE)


def np_dclip(eps):
    return lambda lam: ((lam >= eps) & (lam <= spd.REEIG_MAX_VALUE)) * 1.0


def np_dlog(lam):
    return 1.0 / lam


def with_spectrum(rng, eigvals):
    q, _ = np.linalg.qr(rng.normal(size=(len(eigvals), len(eigvals))))
    return np_sym(q @ np.diag(eigvals) @ q.T)


def grad_of(fn, s, g, dtype):
    """∂/∂S Σ G ∘ fn(S) in `dtype`, and whether TF returned it finite."""
    x = tf.constant(s, dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(tf.constant(g, dtype) * y)
    grad = tape.gradient(loss, x).numpy().astype(np.float64)
    return np_sym(grad)  # eigh-based TF grads are lower-triangular


def tf_eigh_function(f):
    """U f(Λ) Uᵀ differentiated through tf.linalg.eigh (the released way)."""

    def fn(x):
        lam, u = tf.linalg.eigh(x)
        return tf.matmul(u * f(lam)[..., None, :], u, adjoint_b=True)

    return fn


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def mats(rng):
    """Named float64 test matrices [D, D] and an upstream gradient G."""
    x = rng.normal(size=(3, 6))  # 3 positions, 6 channels: rank 2
    cov = CovariancePooling(1e-4, dtype="float64")(x[None])[0].numpy()
    return {
        "separated": with_spectrum(rng, [0.3, 0.7, 1.5, 2.6, 4.0]),
        "indefinite": with_spectrum(rng, [-0.8, 0.1, 0.9, 1.7, 3.0]),
        "identity": np.eye(D),
        "two_identity": 2.0 * np.eye(D),
        "rank_deficient_cov": cov,  # eigenvalue 1e-4·trace, 4 times
        "clamped": with_spectrum(rng, [1e-7, 3e-7, -2e-7, 0.5, 2.0]),
        "g": rng.normal(size=(D, D)),
        "g6": rng.normal(size=(6, 6)),
    }


# --------------------------------------------------------------- forward --


@pytest.mark.parametrize("name", ["separated", "indefinite", "clamped"])
def test_reeig_forward_matches_numpy(mats, name):
    s = mats[name]
    y = ReEig(epsilon=0.5)(s[None].astype("float32"))[0].numpy()
    np.testing.assert_allclose(y, np_eig_fn(s, np_clip(0.5)), atol=1e-5)
    np.testing.assert_array_equal(y, y.T)  # exactly symmetric
    assert np.linalg.eigvalsh(y.astype(np.float64)).min() >= 0.5 - 1e-5


def test_reeig_default_floor_holds(mats):
    y = ReEig()(mats["clamped"][None].astype("float32"))[0].numpy()
    lam = np.linalg.eigvalsh(y.astype(np.float64))
    # Three eigenvalues clamped to the 1e-4 floor (float32 reconstruction).
    np.testing.assert_allclose(np.sort(lam)[:3], 1e-4, atol=1e-6)
    assert lam.min() >= 1e-4 - 1e-6


@pytest.mark.parametrize(
    "name, rtol32",
    [
        ("separated", 2e-5),
        ("two_identity", 2e-5),
        # float32 eigh resolves the 1e-4·trace floor eigenvalues of a
        # rank-deficient covariance only to ~1e-3 relative (conditioning).
        ("rank_deficient_cov", 1e-4),
    ],
)
def test_logeig_forward_matches_numpy(mats, name, rtol32):
    s = mats[name]
    y32 = LogEig()(s[None].astype("float32"))[0].numpy()
    y64 = LogEig(dtype="float64")(s[None])[0].numpy()
    want = np_eig_fn(s, np.log)
    scale = np.abs(want).max()
    np.testing.assert_allclose(y64, want, atol=1e-12 * scale)
    np.testing.assert_allclose(y32, want, atol=rtol32 * scale)
    np.testing.assert_array_equal(y32, y32.T)


def test_bimap_forward_is_congruence(rng):
    s = np.stack([with_spectrum(rng, [0.5, 1, 2, 3, 4, 5]) for _ in range(2)])
    layer = BiMap(3, dtype="float64")
    y = layer(s).numpy()
    w = layer.kernel.numpy()
    want = np.einsum("ji,bjk,kl->bil", w, s, w)
    np.testing.assert_allclose(y, want, atol=1e-12)
    np.testing.assert_allclose(w.T @ w, np.eye(3), atol=1e-12)


# ------------------------------------------- gradients, separated spectra --


@pytest.mark.parametrize(
    "layer_fn, name",
    [
        (lambda: ReEig(epsilon=0.5, dtype="float64"), "indefinite"),
        (lambda: ReEig(dtype="float64"), "separated"),
        (lambda: LogEig(dtype="float64"), "separated"),
    ],
)
def test_gradient_matches_finite_differences(mats, layer_fn, name):
    layer = layer_fn()
    s = tf.constant(mats[name][None])
    theoretical, numerical = tf.test.compute_gradient(layer, [s], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-8)


def test_bimap_gradients_match_finite_differences(rng):
    s = with_spectrum(rng, [0.5, 1, 2, 3, 4, 5])[None]
    layer = BiMap(3, dtype="float64")
    layer.build(s.shape)
    w0 = layer.kernel.numpy()

    def of_kernel(w):
        return tf.matmul(tf.matmul(w, s, transpose_a=True), w)

    for fn, arg in ((layer, s), (of_kernel, w0)):
        theo, num = tf.test.compute_gradient(fn, [tf.constant(arg)], 1e-6)
        np.testing.assert_allclose(theo[0], num[0], atol=1e-8)


# ------------------------------------------ gradients, repeated spectra ---

REPEATED = [
    # (matrix, eigen-function, float32 tolerance relative to max|grad|)
    ("identity", "log", 1e-5),
    ("two_identity", "log", 1e-5),
    # K ~ 1/λ on the 1e-4·trace floor, which float32 eigh resolves to
    # ~1e-3 relative: a conditioning limit of float32, not of the formula.
    ("rank_deficient_cov", "log", 1e-3),
    ("identity", "reeig", 1e-5),
    ("clamped", "reeig", 1e-5),
]


def _fns(kind):
    if kind == "log":
        return (lambda dt: LogEig(dtype=dt)), np.log, np_dlog
    return (lambda dt: ReEig(dtype=dt)), np_clip(1e-4), np_dclip(1e-4)


@pytest.mark.parametrize("name, kind, rtol32", REPEATED)
def test_repeated_eigenvalues_match_loewner_reference(mats, name, kind, rtol32):
    make, f, df = _fns(kind)
    s = mats[name]
    g = mats["g6"] if s.shape[0] == 6 else mats["g"]
    want = np_loewner_grad(s, g, f, df)
    scale = np.abs(want).max()
    for dtype, rtol in (("float64", 1e-9), ("float32", rtol32)):
        got = grad_of(make(dtype), s[None], g[None], dtype)[0]
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, atol=rtol * scale)


@pytest.mark.parametrize("name", ["two_identity", "rank_deficient_cov"])
def test_repeated_logeig_gradient_matches_finite_differences(mats, name):
    # U log(Λ) Uᵀ is smooth at repeated eigenvalues: differences agree too.
    s = tf.constant(mats[name][None])
    theo, num = tf.test.compute_gradient(
        LogEig(dtype="float64"), [s], delta=1e-9 * float(np.trace(s[0]))
    )
    scale = np.abs(theo[0]).max()
    np.testing.assert_allclose(theo[0], num[0], atol=1e-5 * scale)


def test_reeig_then_logeig_on_clamped_matrix(mats):
    """The CovPoolFER order: ReEig clamps 3 eigenvalues to 1e-4, so LogEig
    sees a 3-fold repeated eigenvalue; compared with the NumPy chain."""
    s, g = mats["clamped"], mats["g"]
    y2 = np_eig_fn(s, np_clip(1e-4))
    dy2 = np_loewner_grad(y2, g, np.log, np_dlog)
    want = np_loewner_grad(s, dy2, np_clip(1e-4), np_dclip(1e-4))
    scale = np.abs(want).max()
    for dtype, rtol in (("float64", 1e-8), ("float32", 1e-3)):
        reeig, logeig = ReEig(dtype=dtype), LogEig(dtype=dtype)
        got = grad_of(lambda x: logeig(reeig(x)), s[None], g[None], dtype)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got[0], want, atol=rtol * scale)


@pytest.mark.parametrize(
    "name",
    ["separated", "clamped", "rank_deficient_cov", "identity", "indefinite"],
)
def test_fused_reeig_logeig_equals_the_two_layers(mats, name):
    """One eigh (ReEigLogEig) against ReEig then LogEig: values and
    gradients, on repeated, clamped and indefinite spectra; float64 also
    against the NumPy chain."""
    s = mats[name] if name != "rank_deficient_cov" else mats[name][:D, :D]
    g = mats["g"]
    y2 = np_eig_fn(s, np_clip(1e-4))
    want_y = np_eig_fn(y2, np.log)
    dy2 = np_loewner_grad(y2, g, np.log, np_dlog)
    want_g = np_loewner_grad(s, dy2, np_clip(1e-4), np_dclip(1e-4))
    for dtype, rtol in (("float64", 1e-8), ("float32", 2e-3)):
        fused = ReEigLogEig(dtype=dtype)
        reeig, logeig = ReEig(dtype=dtype), LogEig(dtype=dtype)
        x = tf.constant(s[None], dtype)
        y_fused = fused(x).numpy()[0]
        y_pair = logeig(reeig(x)).numpy()[0]
        y_scale = np.abs(want_y).max()
        np.testing.assert_allclose(y_fused, want_y, atol=rtol * y_scale)
        np.testing.assert_allclose(y_fused, y_pair, atol=rtol * y_scale)
        got = grad_of(fused, s[None], g[None], dtype)[0]
        pair = grad_of(lambda v: logeig(reeig(v)), s[None], g[None], dtype)[0]
        g_scale = np.abs(want_g).max()
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want_g, atol=rtol * g_scale)
        np.testing.assert_allclose(got, pair, atol=rtol * g_scale)


def test_fused_gradient_matches_finite_differences(mats):
    s = mats["separated"][None]
    fused = ReEigLogEig(epsilon=0.5, dtype="float64")  # clamps 0.3
    theo, num = tf.test.compute_gradient(fused, [tf.constant(s)])
    scale = np.abs(theo[0]).max()
    np.testing.assert_allclose(theo[0], num[0], atol=1e-6 * scale)


def test_tf_eigh_gradient_is_wrong_where_loewner_is_right():
    """The contrast, with numbers. TF 2.21's eigh gradient uses 1/(λi − λj)
    damped as x / (x² + 1e-20): exactly equal eigenvalues get K_ij = 0 (the
    cross terms vanish), nearly equal ones lose their digits to cancellation
    or to the damping."""
    rng = np.random.default_rng(7)  # own stream: independent of test order
    g = rng.normal(size=(D, D))
    log = np.log

    # 1. Exactly repeated: diag(3, 3, 3, 1, 2), float64. The true gradient
    # of log on the 3-block is sym(G)_ij / 3; TF's is exactly zero there.
    s = np.diag([3.0, 3.0, 3.0, 1.0, 2.0])
    want = np_loewner_grad(s, g, log, np_dlog)
    ours = grad_of(spd.spd_log, s, g, "float64")
    theirs = grad_of(tf_eigh_function(tf.math.log), s, g, "float64")
    block = (slice(0, 3), slice(0, 3))
    off = ~np.eye(3, dtype=bool)
    assert np.abs(want[block][off]).min() > 1e-3
    np.testing.assert_array_equal(theirs[block][off], 0.0)
    np.testing.assert_allclose(ours, want, atol=1e-14)
    assert np.abs(theirs - want).max() > 0.1 * np.abs(want).max()

    # 2. Nearly repeated, float64: diag(5, 5 + 5e-12, ...). The damped
    # reciprocal turns the pair's K = 1/5 into ~5e-4: the cross term is
    # >99% lost (a diagonal input keeps eigh's basis canonical).
    s = np.diag([5.0, 5.0 * (1 + 1e-12), 0.5, 0.2, 9.0])
    want = np_loewner_grad(s, g, log, np_dlog)
    ours = grad_of(spd.spd_log, s, g, "float64")
    theirs = grad_of(tf_eigh_function(tf.math.log), s, g, "float64")
    np.testing.assert_allclose(ours, want, atol=1e-12)
    np.testing.assert_allclose(want[0, 1], np_sym(g)[0, 1] / 5.0, rtol=1e-9)
    assert abs(theirs[0, 1]) < 0.01 * abs(want[0, 1])

    # 3. float32, ReEig clamps four eigenvalues (1e-9..4e-9, resolved only
    # to float32 rounding) to 1e-4 and LogEig then sees a 4-fold cluster.
    # TF divides rounding noise in f(λi)·g_ij − f(λj)·g_ji by gaps of that
    # noise: the gradient is wrong by more than its own size (finite, so a
    # NaN check would not catch it).
    s = with_spectrum(rng, [1e-9, 2e-9, 3e-9, 4e-9, 1e-2])
    y2 = np_eig_fn(s, np_clip(1e-4))
    want = np_loewner_grad(
        s, np_loewner_grad(y2, g, log, np_dlog), np_clip(1e-4), np_dclip(1e-4)
    )
    scale = np.abs(want).max()

    def tf_chain(x):
        clip = tf_eigh_function(lambda e: tf.clip_by_value(e, 1e-4, 1e4))
        return tf_eigh_function(tf.math.log)(clip(x))

    def our_chain(x):
        return spd.spd_log(spd.spd_rectify(x))

    ours = grad_of(our_chain, s, g, "float32")
    theirs = grad_of(tf_chain, s, g, "float32")
    assert np.abs(ours - want).max() < 1e-4 * scale
    assert np.isfinite(theirs).all()
    assert np.abs(theirs - want).max() > 0.5 * scale


# ------------------------------------------------------ non-finite input --


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("layer_cls", [ReEig, LogEig])
def test_non_finite_sample_gives_nan_output_and_gradient(mats, bad, layer_cls):
    s = np.stack([mats["separated"], mats["separated"]]).astype("float32")
    s[1, 2, 3] = s[1, 3, 2] = bad
    layer = layer_cls()
    x = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant(mats["g"], tf.float32))
    grad = tape.gradient(loss, x).numpy()
    y = y.numpy()
    # The bad sample is NaN everywhere; the good one is unaffected.
    assert np.isnan(y[1]).all() and np.isnan(grad[1]).all()
    clean = layer(s[:1]).numpy()
    np.testing.assert_allclose(y[0], clean[0], atol=1e-6)
    assert np.isfinite(grad[0]).all()


# ------------------------------------------------------------- bad input --


@pytest.mark.parametrize("layer_cls", [ReEig, LogEig, lambda: BiMap(2)])
@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 3), (2, 1, 3, 3)])
def test_non_square_or_wrong_rank_raises_at_build(layer_cls, shape):
    with pytest.raises(ValueError, match=r"square matrices \[batch, d, d\]"):
        layer_cls()(keras.Input(shape[1:], batch_size=shape[0]))


def test_bimap_units_larger_than_input_raises():
    with pytest.raises(ValueError, match="units <= input size 3"):
        BiMap(4)(keras.Input((3, 3)))


@pytest.mark.parametrize(
    "layer_cls", [ReEig, LogEig, lambda **k: BiMap(2, **k)]
)
def test_half_precision_policy_is_refused(layer_cls):
    with pytest.raises(ValueError, match="dtype='float32'"):
        layer_cls(dtype="mixed_float16")


# ------------------------------------------------------- Stiefel / BiMap --


def test_stiefel_constraint_is_identity_on_orthonormal_and_continuous(rng):
    constraint = StiefelConstraint()
    w = np.linalg.qr(rng.normal(size=(8, 4)))[0].astype("float32")
    np.testing.assert_allclose(constraint(w).numpy(), w, atol=1e-6)
    # A small step moves W a little (the sign fix: no column flips).
    step = 1e-3 * rng.normal(size=w.shape).astype("float32")
    moved = constraint(w + step).numpy()
    assert np.abs(moved - w).max() < 5e-3
    np.testing.assert_allclose(moved.T @ moved, np.eye(4), atol=1e-6)


def _orthonormality_error(layer):
    w = layer.kernel.numpy().astype(np.float64)
    return np.linalg.norm(w.T @ w - np.eye(w.shape[1]))


def _bimap_problem():
    rng = np.random.default_rng(3)  # own stream: independent of test order
    s = np.stack([with_spectrum(rng, rng.uniform(0.1, 3, 8)) for _ in range(4)])
    target = rng.normal(size=(4, 3, 3))
    return s.astype("float32"), np_sym(target).astype("float32")


def test_bimap_stays_orthonormal_under_large_adam_steps():
    s, target = _bimap_problem()
    layer = BiMap(3)
    layer.build(s.shape)
    w0 = layer.kernel.numpy()
    optimizer = keras.optimizers.Adam(learning_rate=0.1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(s) - target))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    losses = [float(step()) for _ in range(100)]
    assert np.isfinite(losses).all()
    assert _orthonormality_error(layer) < 1e-5
    assert np.abs(layer.kernel.numpy() - w0).max() > 0.1  # it did move


def test_bimap_stays_orthonormal_under_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    s, target = _bimap_problem()
    inputs = keras.Input((8, 8))
    pre = keras.layers.Dense(8, name="pre")(inputs)  # float16 under the policy
    bimap = BiMap(3)
    model = keras.Model(inputs, bimap(pre))
    assert pre.dtype == "float16"
    assert bimap.compute_dtype == "float32"
    assert bimap.kernel.dtype == "float32"
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(learning_rate=0.1)
    )

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = model(x)
            loss = tf.reduce_mean(tf.square(y - target))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    for _ in range(100):
        loss = step(s)
    assert np.isfinite(float(loss))
    assert model(s).dtype == tf.float32
    assert _orthonormality_error(bimap) < 1e-5

    # A non-finite step is skipped, W untouched and still orthonormal.
    before = bimap.kernel.numpy()
    bad = s.copy()
    bad[0, 0, 0] = np.inf
    step(bad)
    np.testing.assert_array_equal(bimap.kernel.numpy(), before)


# -------------------------------------------------- mixed precision dtype --


def test_layers_compute_in_float32_under_mixed_policy():
    keras.config.set_dtype_policy("mixed_float16")
    x16 = tf.cast(tf.eye(4, batch_shape=[2]) * 2.0, tf.float16)
    for layer in (BiMap(3), ReEig(), LogEig()):
        assert layer.compute_dtype == "float32"
        assert layer.variable_dtype == "float32"
        assert layer(x16).dtype == tf.float32
    assert LogEig(dtype="float64")(x16).dtype == tf.float64


# --------------------------------------------------------- KH battery -----

BATTERY = [
    (BiMap, {"units": 3}),
    (ReEig, {"epsilon": 1e-3, "max_value": 1e3}),
    (LogEig, {}),
    (ReEigLogEig, {"epsilon": 1e-3, "max_value": 1e3}),
]


def _spd_batch(rng, n=4, d=6):
    return np.stack(
        [with_spectrum(rng, rng.uniform(0.2, 2.0, d)) for _ in range(n)]
    ).astype("float32")


@pytest.mark.parametrize("cls, kwargs", BATTERY)
def test_config_and_serialization_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="probe")
    config = layer.get_config()
    assert set(config) - {"name", "trainable", "dtype"} == set(kwargs)
    again = cls.from_config(config)
    dumps = json.dumps(config, sort_keys=True)
    assert json.dumps(again.get_config(), sort_keys=True) == dumps
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(revived) is cls
    assert json.dumps(revived.get_config(), sort_keys=True) == dumps


@pytest.mark.parametrize("cls, kwargs", BATTERY)
def test_symbolic_eager_and_fit(rng, cls, kwargs):
    s = _spd_batch(rng)
    d_out = kwargs.get("units", 6)
    # Symbolic call: exact output shape without running eigh.
    symbolic = cls(**kwargs)(keras.Input((6, 6), batch_size=4))
    assert tuple(symbolic.shape) == (4, d_out, d_out)
    # Eager call.
    assert tuple(cls(**kwargs)(s).shape) == (4, d_out, d_out)
    # One fit step through a model that feeds the layer SPD matrices.
    inputs = keras.Input((10, 6))
    x = keras.layers.Dense(6)(inputs)
    x = CovariancePooling()(x)
    layer = cls(**kwargs)
    x = keras.layers.Flatten()(layer(x))
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    data = rng.normal(size=(4, 10, 6)).astype("float32")
    before = [v.numpy() for v in model.trainable_variables]
    history = model.fit(data, np.ones((4, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [v.numpy() for v in model.trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    if cls is BiMap:
        assert _orthonormality_error(layer) < 1e-5


def test_keras_file_round_trip(rng, tmp_path):
    inputs = keras.Input((10, 6))
    x = CovariancePooling(name="cov")(inputs)
    x = BiMap(4, name="bimap")(x)
    x = ReEig(name="reeig")(x)
    model = keras.Model(inputs, LogEig(name="logeig")(x))
    data = rng.normal(size=(2, 10, 6)).astype("float32")
    path = str(tmp_path / "spd.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(data).numpy(), model(data).numpy())
    assert isinstance(loaded.get_layer("bimap"), BiMap)
    constraint = loaded.get_layer("bimap").kernel.constraint
    assert isinstance(constraint, StiefelConstraint)
