"""Pure loss functions of the feature super-resolution GAN (stage 2).

Every function computes in float32, whatever the dtype of its inputs, so the
losses stay float32 under mixed_float16 (float32 island). Functions that feed
the per-sample re-weighting of paper eq. 11 return one value per sample
([B]); `weighted_mean` reduces them.

Sign convention (paper eq. 7-8, the official WGAN-div code's):
    L_gan(G) = E[D(F_sr)]
    L_gan(D) = E[D(F_hr)] - E[D(F_sr)] + k E[||grad D(x_hat)||^p]
Minimising L_gan(D) pushes D(F_hr) down and D(F_sr) up, so a *low* score
means "real"; G then lowers D(F_sr) towards the real scores. (Eq. 5-6 of the
paper state the opposite WGAN signs; eq. 7-8, used here, are the ones of the
training objective.)
"""

import keras
import tensorflow as tf

from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.errors import require

L2_REDUCTIONS = ("mean", "sum")
# Over which elements the WGAN-div gradient norm runs: "all" d x d elements
# of a sample (WGAN-div, the paper) or each column separately, averaged
# (the released code's reduce_sum over axis 1).
PENALTY_NORMS = ("all", "per_column")


def _f32(x):
    return keras.ops.cast(x, "float32")


def _per_sample(x):
    """[B, ...] -> [B] by flattening: scores of shape [B, 1] become [B]."""
    return keras.ops.reshape(_f32(x), (-1,))


def _sample_axes(x):
    return tuple(range(1, len(x.shape)))


def check_wgan_div(k, p):
    """Validates the WGAN-div constants (ConfigError on bad values).

    Args:
        k: penalty weight, >= 0 (paper: 2).
        p: power of the gradient norm, > 0 (paper: 6).
    """
    require(k >= 0, f"WGAN-div k must be >= 0, got {k}")
    require(p > 0, f"WGAN-div p must be > 0, got {p}")


def interpolate(real, fake, epsilon):
    """x_hat = epsilon * real + (1 - epsilon) * fake, per sample.

    Args:
        real: F_hr, [B, ...].
        fake: F_sr, [B, ...].
        epsilon: [B] (or [B, 1, ...]) mixing weights in [0, 1], drawn by the
            caller from U(0, 1) with a seeded generator.

    Returns:
        float32 tensor shaped like `real`.
    """
    real = _f32(real)
    eps = keras.ops.reshape(_f32(epsilon), (-1,) + (1,) * (len(real.shape) - 1))
    return eps * real + (1.0 - eps) * _f32(fake)


def gradient_power(grads, p, norm="all"):
    """Per-sample mean of ||g||^p, the WGAN-div penalty's integrand.

    Args:
        grads: float32 [B, d, d, 1] gradients of the critic at x_hat.
        p: the power.
        norm: "all": ||g|| over all elements of a sample, so the result is
            (sum g^2)^(p / 2), [B]. "per_column": ||g_j|| over each column
            j (the sum over axis 1, as the released code), and the mean of
            ||g_j||^p over the d columns, [B].

    Returns:
        float32 [B].
    """
    if norm not in PENALTY_NORMS:
        raise ConfigError(
            f"penalty norm must be one of {PENALTY_NORMS}, got {norm!r}"
        )
    squared = keras.ops.square(_f32(grads))
    if norm == "all":
        return keras.ops.power(
            keras.ops.sum(squared, axis=_sample_axes(squared)), 0.5 * p
        )
    columns = keras.ops.sum(squared, axis=1)  # (B, d, 1)
    return keras.ops.mean(
        keras.ops.power(columns, 0.5 * p), axis=_sample_axes(columns)
    )


def wgan_div_penalty(
    critic,
    real,
    fake,
    epsilon,
    k=2.0,
    p=6.0,
    gradient_scale=None,
    norm="all",
):
    """WGAN-div gradient term k * E[||grad_x D(x_hat)||^p] (paper eq. 8).

    x_hat = epsilon * F_hr + (1 - epsilon) * F_sr per sample (Wu et al. 2018,
    the "P_u" of eq. 8). The gradient of the critic score with respect to
    x_hat is taken with a nested `tf.GradientTape`; when this function runs
    under an outer tape watching the critic's weights, the penalty is
    differentiable with respect to them (double back-propagation). With
    `norm="all"` the norm runs over *all* elements of a sample,
    ||g||^p = (sum g^2)^(p / 2) (WGAN-div, the paper); with "per_column" it
    is the released code's mean over columns of ||g_j||^p (`gradient_power`).

    The per-sample gradients come from one backward pass of sum_i D(x_hat_i),
    which is exact only because the critic scores each sample independently
    (no batch-norm; paper sec. 3.4).

    The released code summed the squared gradient over one spatial axis
    only (`reduce_sum(..., reduction_indices=[1])` on a [B, d, d, 1]
    tensor), i.e. it penalised per-column norms. Spread over d columns, the
    same gradient has a p-th power d^(p/2 - 1) times smaller per column, so
    the critic may grow its slope further before the penalty binds.

    Args:
        critic: a callable `critic(x, training=True) -> [B, 1]` scores.
        real: F_hr, [B, d, d, 1].
        fake: F_sr, [B, d, d, 1] (stop the generator's gradient before).
        epsilon: [B] mixing weights drawn from U(0, 1).
        k: penalty weight (paper: 2).
        p: power (paper: 6).
        gradient_scale: optional scalar S (the critic optimizer's loss
            scale under mixed_float16). The inner backward pass starts from
            S * sum D(x_hat) and its result is divided by S in float32, so
            small gradients do not underflow in the critic's float16
            activations. If S * D overflows, the penalty is Inf and the
            LossScaleOptimizer skips the step and lowers S, as for any loss.
        norm: "all" (paper) or "per_column" (released code).

    Returns:
        float32 scalar.

    Example:
    >>> eps = keras.random.uniform((4,), seed=keras.random.SeedGenerator(0))
    >>> penalty = wgan_div_penalty(critic, f_hr, f_sr, eps, k=2.0, p=6.0)
    """
    check_wgan_div(k, p)
    require(
        norm in PENALTY_NORMS,
        f"penalty norm must be one of {PENALTY_NORMS}, got {norm!r}",
    )
    x_hat = interpolate(real, fake, epsilon)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        scores = _f32(critic(x_hat, training=True))
        total = keras.ops.sum(scores)
        if gradient_scale is not None:
            total = total * _f32(gradient_scale)
    grads = _f32(tape.gradient(total, x_hat))  # (B, d, d, 1)
    if gradient_scale is not None:
        grads = grads / _f32(gradient_scale)
    return k * keras.ops.mean(gradient_power(grads, p, norm))


def critic_loss(d_real, d_fake, penalty, weights=None):
    """Critic loss L_gan(D) = E[w D(F_hr)] - E[w D(F_sr)] + penalty (eq. 8).

    Args:
        d_real: critic scores of F_hr, [B, 1] or [B].
        d_fake: critic scores of F_sr, [B, 1] or [B].
        penalty: scalar from `wgan_div_penalty` (already multiplied by k).
        weights: optional per-sample weights w [B]. The paper leaves the
            critic unweighted (None, i.e. w = 1); the released code weights
            both expectations by the generator's re-weighting w.

    Returns:
        float32 scalar.
    """
    real = _per_sample(d_real)
    fake = _per_sample(d_fake)
    return (
        weighted_mean(real, weights)
        - weighted_mean(fake, weights)
        + _f32(penalty)
    )


def generator_adversarial_loss(d_fake):
    """Per-sample adversarial term of G, L_gan(G)_i = D(F_sr_i) (eq. 7).

    Args:
        d_fake: critic scores of F_sr, [B, 1] or [B].

    Returns:
        float32 [B]; the batch loss is `weighted_mean` of it.
    """
    return _per_sample(d_fake)


def perceptual_loss(embedding_sr, embedding_hr):
    """Per-sample perceptual loss ||C(F_sr_i) - C(F_hr_i)||_2^2 (eq. 9).

    C is the frozen CovPoolFER head up to its 128-d layer (`fc_2`); the
    squared distance is summed over the 128 dims (eq. 9; the released code
    also sums). Eq. 9's 1/m is applied by `weighted_mean`.

    Args:
        embedding_sr: C(F_sr), [B, 128].
        embedding_hr: C(F_hr), [B, 128].

    Returns:
        float32 [B].
    """
    diff = _f32(embedding_sr) - _f32(embedding_hr)
    return keras.ops.sum(keras.ops.square(diff), axis=-1)


def feature_l2_loss(f_sr, f_hr, reduction="mean"):
    """Per-sample feature-wise L2 loss between F_sr and F_hr (eq. 10's L_2).

    Args:
        f_sr: [B, d, d, 1] (or any [B, ...]).
        f_hr: same shape.
        reduction: "mean" over the d*d elements of a sample (mean squared
            error; default), or "sum" (the released code's
            `reduce_sum(..., axis=[1, 2, 3])`, d*d times larger).

    Returns:
        float32 [B].
    """
    if reduction not in L2_REDUCTIONS:
        raise ConfigError(
            f"l2 reduction must be one of {L2_REDUCTIONS}, got {reduction!r}"
        )
    sq = keras.ops.square(_f32(f_sr) - _f32(f_hr))
    if reduction == "mean":
        return keras.ops.mean(sq, axis=_sample_axes(sq))
    return keras.ops.sum(sq, axis=_sample_axes(sq))


def true_class_probability(logits, labels):
    """Softmax probability of the true class, p_i of eq. 11.

    Args:
        logits: [B, C] classifier logits (of F_sr, see `reweight`).
        labels: [B] integer class ids.

    Returns:
        float32 [B].
    """
    probs = keras.ops.softmax(_f32(logits), axis=-1)
    onehot = keras.ops.one_hot(
        keras.ops.cast(labels, "int32"), probs.shape[-1], dtype="float32"
    )
    return keras.ops.sum(probs * onehot, axis=-1)


def cross_entropy(logits, labels):
    """Per-sample softmax cross-entropy of the true class, float32 [B].

    Not in the paper: an optional stage-2 term (`ce_weight`) that trains G
    to make the frozen head classify F_sr correctly.
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        keras.ops.cast(labels, "int32"), _f32(logits)
    )


def check_reweight(sigma, r):
    """Validates the re-weighting constants (ConfigError on bad values).

    sigma must exceed 1 so that w = (sigma - p)^r > 0 for every p in [0, 1];
    r must be positive so that hard samples (small p) weigh more. The paper
    asks for "positive parameters larger than 1" but uses r = 1, so r = 1 is
    accepted.
    """
    require(sigma > 1, f"re-weighting sigma must be > 1, got {sigma}")
    require(r > 0, f"re-weighting r must be > 0, got {r}")


def reweight(p_true, sigma=1.5, r=1.0, gradient=False):
    """Classification-aware weights w_i = (sigma - p_i)^r (paper eq. 11).

    p_i is the frozen classifier's softmax probability of the true class;
    like the released code, the training step computes it on the generated
    feature F_sr (`logits_fake`), so samples that G still leaves misclassified
    weigh more. With `gradient=False` the weights carry no gradient
    (stop_gradient): they only re-weight the per-sample losses. With
    `gradient=True` (the released code, which did not stop it) the loss
    sum_i w_i L_i also sends -r (sigma - p_i)^(r - 1) L_i grad p_i to G: a
    push to raise the true-class probability, stronger where L_i is large.

    Args:
        p_true: [B] probabilities in [0, 1].
        sigma: offset > 1 (paper and released: 1.5).
        r: power > 0 (paper: 1; released: 2).
        gradient: let the weights carry p_i's gradient (released code).

    Returns:
        float32 [B] weights in [(sigma - 1)^r, sigma^r].

    Example:
    >>> reweight(keras.ops.array([0.0, 0.5, 1.0]), sigma=1.5, r=2.0)
    # -> [2.25, 1.0, 0.25]
    """
    check_reweight(sigma, r)
    p = _f32(p_true)
    if not gradient:
        p = keras.ops.stop_gradient(p)
    return keras.ops.power(sigma - p, float(r))


def weighted_mean(values, weights=None):
    """(1 / B) sum_i w_i v_i, or the plain mean when `weights` is None.

    Eq. 11 writes the re-weighted loss as a sum over the batch; the mean is
    used instead (as the released code does), so loss scales do not depend
    on the batch size.

    Args:
        values: [B] per-sample losses.
        weights: optional [B] weights.

    Returns:
        float32 scalar.
    """
    values = _per_sample(values)
    if weights is None:
        return keras.ops.mean(values)
    return keras.ops.mean(_per_sample(weights) * values)
