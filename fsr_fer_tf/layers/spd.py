"""SPDNet layers: BiMap, ReEig, LogEig and the Stiefel constraint.

The second-order part of CovPoolFER (paper sec. 3.1, eq. 1: "SPD() refers to
the operations of covariance pooling and SPDNet layers"; Huang & Van Gool,
"A Riemannian Network for SPD Matrix Learning", AAAI 2017; Acharya et al.,
CVPRW 2018). Inputs are batches of symmetric matrices [B, d, d].

ReEig and LogEig are both eigen-functions Y = U f(Λ) Uᵀ of a symmetric S =
U Λ Uᵀ. They share one primitive, `eig_function`, whose gradient is the
Daleckii–Krein (Loewner matrix) formula

    ∂L/∂S = U (K ∘ (Uᵀ sym(∂L/∂Y) U)) Uᵀ,
    K_ij = (f(λi) − f(λj)) / (λi − λj),   K_ii = f′(λi),

instead of TensorFlow's gradient of `tf.linalg.eigh`. That gradient goes
through the eigenvectors and multiplies by 1 / (λi − λj): it is Inf/NaN on
exactly repeated eigenvalues and loses all accuracy on nearly repeated ones,
which CovPoolFER meets all the time (a 256-channel covariance of 144 positions
has rank <= 143; ReLU channels that are dead give zero rows; ReEig clamps many
eigenvalues to the same floor). The Loewner form is exact there: U f(Λ) Uᵀ is
differentiable whenever f is, and K does not depend on how an eigen-solver
picks a basis inside a repeated eigenspace.

Float32 islands (STYLE.md sec. 2): every layer here defaults to
`dtype="float32"` whatever the global policy, so under `mixed_float16` Keras
casts its inputs to float32 and `eigh` never runs in float16; pass
`dtype="float64"` for double precision. A half-precision policy is refused.

Non-finite input: a sample whose matrix has any NaN/Inf entry gets an all-NaN
output and an all-NaN gradient (the other samples of the batch are computed
normally). The layers never raise on values, so a traced training step stays
traceable; the non-finite loss that follows is what a training loop (or
`LossScaleOptimizer`, which then skips the step) must detect. The bad matrix is
replaced by the identity before `eigh`, so the eigen-solver never sees NaN.
"""

import keras
import numpy as np
import tensorflow as tf

_SUPPORTED_DTYPES = ("float32", "float64")

# ReEig's upper clamp in the released code (`tf.clip_by_value(s, 1e-4, 1e4)`).
REEIG_MAX_VALUE = 1e4


def default_gap_rtol(dtype):
    """Relative eigen-gap below which K_ij uses (f′(λi) + f′(λj)) / 2.

    The threshold is sqrt(machine epsilon): 3.5e-4 in float32, 1.5e-8 in
    float64. A pair counts as repeated when |λi − λj| <= rtol · max(|λi|,
    |λj|). Why sqrt(eps): for a smooth f, the divided difference at relative
    gap r carries a rounding error of order eps / r (cancellation in
    f(λi) − f(λj)), while the mean of the two derivatives differs from it by
    O(r²); at r = sqrt(eps) the approximation error is O(eps), i.e. at the
    rounding level, and cancellation has cost at most half the digits. (LogEig
    and ReEig avoid even that: see `log_divided_difference`; clipping is
    exact.)
    """
    dtype = tf.as_dtype(dtype)
    return float(np.sqrt(np.finfo(dtype.as_numpy_dtype).eps))


def symmetrize(x):
    """(X + Xᵀ) / 2 over the last two axes."""
    return 0.5 * (x + tf.linalg.matrix_transpose(x))


def loewner_matrix(eigvals, f, df, divided_difference=None, gap_rtol=None):
    """The Loewner matrix K of f at eigenvalues λ, [..., d] -> [..., d, d].

    K_ij = (f(λi) − f(λj)) / (λi − λj) for separated pairs and
    (f′(λi) + f′(λj)) / 2 where |λi − λj| <= gap_rtol · max(|λi|, |λj|)
    (this includes the diagonal, K_ii = f′(λi)).

    Args:
        eigvals: eigenvalues, [..., d].
        f: the element-wise function, a callable on tensors.
        df: its derivative, a callable on tensors.
        divided_difference: optional callable (λi, λj, gap) -> K_ij for a
            numerically better divided difference than the plain quotient;
            `gap` is λi − λj with the repeated pairs replaced by 1.
        gap_rtol: relative gap threshold; default `default_gap_rtol`.

    Returns:
        K, [..., d, d], symmetric.
    """
    if gap_rtol is None:
        gap_rtol = default_gap_rtol(eigvals.dtype)
    lam_i = eigvals[..., :, None]  # (..., d, 1)
    lam_j = eigvals[..., None, :]  # (..., 1, d)
    gap = lam_i - lam_j  # (..., d, d)
    scale = tf.maximum(tf.abs(lam_i), tf.abs(lam_j))
    repeated = tf.abs(gap) <= gap_rtol * scale
    # Repeated pairs divide by 1 instead of ~0; that branch is discarded.
    safe_gap = tf.where(repeated, tf.ones_like(gap), gap)
    if divided_difference is None:
        f_lam = f(eigvals)
        quotient = (f_lam[..., :, None] - f_lam[..., None, :]) / safe_gap
    else:
        quotient = divided_difference(lam_i, lam_j, safe_gap)
    df_lam = df(eigvals)
    mean_df = 0.5 * (df_lam[..., :, None] + df_lam[..., None, :])
    return tf.where(repeated, mean_df, quotient)


def eig_function(x, f, df, divided_difference=None, gap_rtol=None):
    """Y = U f(Λ) Uᵀ for symmetric X = U Λ Uᵀ, with the Loewner gradient.

    The forward pass symmetrises X (so the gradient is that of f(sym(X))) and
    its output. The gradient is ∂L/∂X = U (K ∘ (Uᵀ sym(∂L/∂Y) U)) Uᵀ with K
    from `loewner_matrix`; it reuses the forward eigen-decomposition, so the
    backward pass costs three matrix products and no eigen-solve. Samples
    with a non-finite entry give NaN in the output and in the gradient (see
    the module docstring).

    Args:
        x: symmetric matrices [..., d, d], float32 or float64.
        f: element-wise function of the eigenvalues.
        df: its derivative (used on repeated eigenvalues and on the diagonal
            of K).
        divided_difference: see `loewner_matrix`.
        gap_rtol: see `loewner_matrix`.

    Returns:
        [..., d, d], symmetric, the dtype of `x`.

    Example:
    >>> s = tf.eye(3, batch_shape=[2], dtype="float64") * 2.0
    >>> y = eig_function(s, tf.math.log, tf.math.reciprocal)
    >>> float(y[0, 0, 0])  # log 2
    0.6931471805599453
    """
    x = tf.convert_to_tensor(x)
    if x.dtype.name not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"eig_function computes in float32 or float64, got {x.dtype.name};"
            " cast the input (the SPD layers do this through their dtype "
            "policy)."
        )

    @tf.custom_gradient
    def _eig_function(a):
        a = symmetrize(a)
        # (..., 1, 1): a per-matrix flag, so one bad sample spoils only itself.
        finite = tf.reduce_all(
            tf.math.is_finite(a), axis=[-2, -1], keepdims=True
        )
        eye = tf.eye(tf.shape(a)[-1], dtype=a.dtype)
        eigvals, eigvecs = tf.linalg.eigh(tf.where(finite, a, eye))
        y = tf.matmul(
            eigvecs * f(eigvals)[..., None, :], eigvecs, adjoint_b=True
        )
        nan = tf.constant(np.nan, dtype=a.dtype)
        y = tf.where(finite, symmetrize(y), nan)

        def grad(dy):
            k = loewner_matrix(
                eigvals, f, df, divided_difference, gap_rtol
            )  # (..., d, d)
            inner = tf.matmul(
                tf.matmul(eigvecs, symmetrize(dy), adjoint_a=True), eigvecs
            )
            dx = tf.matmul(
                tf.matmul(eigvecs, k * inner), eigvecs, adjoint_b=True
            )
            return tf.where(finite, symmetrize(dx), nan)

        return y, grad

    return _eig_function(x)


def log_divided_difference(lam_i, lam_j, safe_gap):
    """(log λi − log λj) / (λi − λj) without cancellation.

    For close eigenvalues (ratio below 2) log(big / small) is computed as
    log1p(gap / small), accurate to a few ulps however small the gap; far
    apart the plain difference of logs has no cancellation. So LogEig's
    gradient keeps full precision down to the repeated-pair threshold.
    """
    big = tf.maximum(lam_i, lam_j)
    small = tf.minimum(lam_i, lam_j)
    gap = tf.abs(safe_gap)
    near = gap < 0.5 * big
    log_ratio = tf.where(
        near, tf.math.log1p(gap / small), tf.math.log(big / small)
    )
    return log_ratio / gap


def spd_rectify(x, epsilon=1e-4, max_value=REEIG_MAX_VALUE):
    """ReEig: U clip(Λ, epsilon, max_value) Uᵀ (Huang & Van Gool eq. 6).

    f′ is 1 for epsilon <= λ <= max_value and 0 outside (the sub-gradient of
    `tf.clip_by_value`, which the released code differentiates).
    """

    def f(lam):
        return tf.clip_by_value(lam, epsilon, max_value)

    def df(lam):
        inside = tf.logical_and(lam >= epsilon, lam <= max_value)
        return tf.cast(inside, lam.dtype)

    return eig_function(x, f, df)


def spd_log(x):
    """LogEig: U log(Λ) Uᵀ (Huang & Van Gool eq. 8); needs SPD input.

    A non-positive eigenvalue gives NaN (log of a negative number) or -Inf;
    put ReEig in front, as CovPoolFER does.
    """
    return eig_function(
        x, tf.math.log, tf.math.reciprocal, log_divided_difference
    )


def spd_log_rectified(x, epsilon=1e-4, max_value=REEIG_MAX_VALUE):
    """LogEig(ReEig(X)) with one eigen-decomposition: U log(clip(Λ)) Uᵀ.

    ReEig's output U clip(Λ) Uᵀ has the eigenvectors of X, so LogEig's
    second `eigh` recomputes what the first gave. One `eig_function` with
    f = log ∘ clip is exact, values and gradients: its Loewner matrix is
    the product of the two layers' (the divided difference of a composition
    is the product of the divided differences), computed as such, so the
    log part keeps `log_divided_difference`'s precision and a pair clamped
    to the same bound gets 0.
    """
    dtype = tf.as_dtype(x.dtype) if hasattr(x, "dtype") else tf.float32
    rtol = default_gap_rtol(dtype)

    def clip(lam):
        return tf.clip_by_value(lam, epsilon, max_value)

    def f(lam):
        return tf.math.log(clip(lam))

    def df(lam):
        inside = tf.logical_and(lam >= epsilon, lam <= max_value)
        return tf.where(
            inside, tf.math.reciprocal(clip(lam)), tf.zeros_like(lam)
        )

    def divided_difference(lam_i, lam_j, safe_gap):
        c_i, c_j = clip(lam_i), clip(lam_j)
        clip_dd = (c_i - c_j) / safe_gap  # ReEig's K_ij (0 on a shared bound)
        c_gap = c_i - c_j
        # The log's divided difference at the clipped values; where they
        # coincide, its limit 1 / c (multiplied by clip_dd = 0 or used only
        # where the pair is not repeated in λ, see loewner_matrix).
        same = tf.abs(c_gap) <= rtol * tf.maximum(c_i, c_j)
        log_dd = tf.where(
            same,
            tf.math.reciprocal(c_i),
            log_divided_difference(
                c_i, c_j, tf.where(same, tf.ones_like(c_gap), c_gap)
            ),
        )
        return clip_dd * log_dd

    return eig_function(x, f, df, divided_difference)


def _float_island_dtype(kwargs):
    """Defaults `dtype` to float32 so the layer ignores mixed_float16."""
    if kwargs.get("dtype") is None:
        kwargs["dtype"] = "float32"
    return kwargs


def _check_float_island(layer):
    if layer.compute_dtype not in _SUPPORTED_DTYPES:
        raise ValueError(
            f"{type(layer).__name__} computes in float32 or float64 (eigh "
            f"and covariances are unstable in half precision), got dtype "
            f"policy {layer.dtype_policy.name!r}. Create it with "
            "dtype='float32' (the default) or dtype='float64'."
        )


def _check_square(layer, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != input_shape[-2]:
        raise ValueError(
            f"{type(layer).__name__} expects a batch of square matrices "
            f"[batch, d, d], got shape {input_shape}. Put CovariancePooling "
            "in front to turn a feature map into [batch, c, c]."
        )
    if input_shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} needs a known matrix size d, got shape "
            f"{input_shape}."
        )


@keras.saving.register_keras_serializable(package="fsr_fer")
class StiefelConstraint(keras.constraints.Constraint):
    """Keeps a [d_in, d_out] weight on the Stiefel manifold (WᵀW = I).

    A QR retraction: W <- Q · diag(sign(diag(R))) with W = QR (reduced). The
    sign fix makes Q the unique factor with a positive-diagonal R, so the map
    is continuous in W and is the identity on matrices already orthonormal:
    a small step moves W a little instead of flipping columns. Keras 3
    optimizers apply `variable.constraint` after every update
    (`BaseOptimizer.apply`, keras/src/optimizers/base_optimizer.py), also when
    wrapped in `LossScaleOptimizer`, whose `apply` calls the inner
    optimizer's `apply` (and skips both on non-finite gradients).

    Example:
    >>> w = StiefelConstraint()(tf.random.normal((6, 3)))
    >>> bool(tf.reduce_max(tf.abs(tf.transpose(w) @ w - tf.eye(3))) < 1e-5)
    True
    """

    def __call__(self, w):
        q, r = keras.ops.qr(w, mode="reduced")
        signs = keras.ops.sign(keras.ops.diagonal(r))
        # A zero diagonal (rank-deficient W) keeps the column as returned.
        signs = keras.ops.where(signs == 0, keras.ops.ones_like(signs), signs)
        return q * signs[None, :]

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="fsr_fer")
class BiMap(keras.layers.Layer):
    """Bilinear map Y = Wᵀ S W with W ∈ R^{d_in x units}, WᵀW = I.

    Huang & Van Gool eq. 5; CovPoolFER uses one BiMap 256 -> 128. W starts as
    an orthogonal (QR) matrix like the released code (`tf.qr` of a normal
    draw) and, unlike the released code (plain Adam, so W drifts off the
    manifold and Y can lose positive-definiteness), stays orthonormal:

    Retraction choice: a `StiefelConstraint` (sign-fixed QR retraction)
    that the Keras optimizer applies after each update, rather than a
    Riemannian optimizer. Why: it works unchanged with every Keras optimizer
    (the released recipe is Adam), in `fit` and in custom `tf.function`
    steps, and under `LossScaleOptimizer` (tested), with no custom optimizer
    or gradient hook to keep in sync. The update is the optimizer's
    Euclidean step followed by the retraction (Absil, Mahony & Sepulchre,
    "Optimization Algorithms on Matrix Manifolds", 2008, sec. 4.1); the
    gradient is not first projected on the tangent space, so it is not the
    Riemannian gradient step of Huang & Van Gool, but W is exactly (to
    float32 rounding, ~1e-6) orthonormal after every step. Not covered: an
    optimizer's EMA copy (`use_ema`) averages Stiefel points and is not
    retracted.

    Args:
        units: output size d_out <= d_in.
        **kwargs: base layer arguments; `dtype` defaults to "float32"
            (float32 island), "float64" is allowed.

    Example:
    >>> y = BiMap(4)(tf.eye(8, batch_shape=[2]))
    >>> tuple(y.shape)
    (2, 4, 4)
    """

    def __init__(self, units, **kwargs):
        super().__init__(**_float_island_dtype(kwargs))
        _check_float_island(self)
        if int(units) < 1:
            raise ValueError(f"BiMap units must be >= 1, got {units}.")
        self.units = int(units)

    def build(self, input_shape):
        _check_square(self, input_shape)
        d_in = input_shape[-1]
        if self.units > d_in:
            raise ValueError(
                f"BiMap(units={self.units}) needs units <= input size "
                f"{d_in} (W has orthonormal columns); lower units."
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(d_in, self.units),
            initializer=keras.initializers.Orthogonal(),
            constraint=StiefelConstraint(),
        )

    def call(self, inputs):
        # Broadcast W over the batch: (d_out, d_in) @ (B, d_in, d_in) @ ...
        return keras.ops.matmul(
            keras.ops.matmul(keras.ops.transpose(self.kernel), inputs),
            self.kernel,
        )  # (B, units, units)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units, self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class ReEig(keras.layers.Layer):
    """Eigenvalue rectification Y = U clip(Λ, epsilon, max_value) Uᵀ.

    Huang & Van Gool eq. 6 (the SPD analogue of ReLU); epsilon = 1e-4 and the
    1e4 upper clamp are the released CovPoolFER values. Gradient: the
    Daleckii–Krein form of `eig_function` with f′ = 1 on [epsilon, max_value]
    and 0 outside, finite when eigenvalues repeat (e.g. when several are
    clamped to the floor).

    Args:
        epsilon: eigenvalue floor.
        max_value: eigenvalue ceiling.
        **kwargs: base layer arguments; `dtype` defaults to "float32".

    Example:
    >>> s = tf.linalg.diag(tf.constant([[-1.0, 0.5, 2.0]]))
    >>> tf.linalg.diag_part(ReEig(epsilon=0.1)(s)).numpy().tolist()
    [[0.10000000149011612, 0.5, 2.0]]
    """

    def __init__(self, epsilon=1e-4, max_value=REEIG_MAX_VALUE, **kwargs):
        super().__init__(**_float_island_dtype(kwargs))
        _check_float_island(self)
        if not 0 < epsilon < max_value:
            raise ValueError(
                "ReEig needs 0 < epsilon < max_value, got "
                f"epsilon={epsilon}, max_value={max_value}."
            )
        self.epsilon = float(epsilon)
        self.max_value = float(max_value)

    def build(self, input_shape):
        _check_square(self, input_shape)

    def call(self, inputs):
        return spd_rectify(inputs, self.epsilon, self.max_value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "max_value": self.max_value})
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class LogEig(keras.layers.Layer):
    """Matrix logarithm Y = U log(Λ) Uᵀ of an SPD matrix.

    Huang & Van Gool eq. 8: maps the SPD manifold to its (flat) tangent space
    at the identity, the log-Euclidean feature F of paper eq. 1-2 that the
    FSR generator super-resolves. Gradient: Daleckii–Krein form with
    K_ij = (log λi − log λj) / (λi − λj) computed without cancellation.
    Needs positive eigenvalues (use ReEig before it); a non-positive one
    gives NaN/-Inf.

    Args:
        **kwargs: base layer arguments; `dtype` defaults to "float32".

    Example:
    >>> y = LogEig()(tf.eye(3, batch_shape=[1]) * 2.0)
    >>> round(float(y[0, 1, 1]), 4)
    0.6931
    """

    def __init__(self, **kwargs):
        super().__init__(**_float_island_dtype(kwargs))
        _check_float_island(self)

    def build(self, input_shape):
        _check_square(self, input_shape)

    def call(self, inputs):
        return spd_log(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="fsr_fer")
class ReEigLogEig(keras.layers.Layer):
    """LogEig(ReEig(S)) in one eigen-decomposition: U log(clip(Λ)) Uᵀ.

    The same values and gradients as `ReEig` followed by `LogEig` (tested on
    degenerate inputs), with one `eigh` instead of two
    (`spd_log_rectified`). CovPoolFER uses it with `fused_spd=True`; the two
    layers stay the default, the paper's structure.

    Args:
        epsilon: ReEig's eigenvalue floor.
        max_value: ReEig's eigenvalue ceiling.
        **kwargs: base layer arguments; `dtype` defaults to "float32".

    Example:
    >>> s = tf.linalg.diag(tf.constant([[-1.0, 0.5, 2.0]]))
    >>> y = ReEigLogEig(epsilon=0.1)(s)
    >>> [round(v, 4) for v in tf.linalg.diag_part(y)[0].numpy().tolist()]
    [-2.3026, -0.6931, 0.6931]
    """

    def __init__(self, epsilon=1e-4, max_value=REEIG_MAX_VALUE, **kwargs):
        super().__init__(**_float_island_dtype(kwargs))
        _check_float_island(self)
        if not 0 < epsilon < max_value:
            raise ValueError(
                "ReEigLogEig needs 0 < epsilon < max_value, got "
                f"epsilon={epsilon}, max_value={max_value}."
            )
        self.epsilon = float(epsilon)
        self.max_value = float(max_value)

    def build(self, input_shape):
        _check_square(self, input_shape)

    def call(self, inputs):
        return spd_log_rectified(inputs, self.epsilon, self.max_value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "max_value": self.max_value})
        return config
