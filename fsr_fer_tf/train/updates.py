"""Optimizer updates that never write NaN/Inf into a model."""

import keras
import tensorflow as tf


def apply_if_finite(optimizer, grads, variables):
    """Applies `grads` unless one is NaN/Inf, so a bad step changes nothing.

    A LossScaleOptimizer already skips such steps (and lowers its scale, which
    it must see happen); a plain optimizer would write NaN into the weights
    and its moments. With the update skipped, the training loop can save the
    last good state when it sees the non-finite loss, then stop. (Batch-norm
    moving statistics, updated by the forward pass, are not protected.)

    Returns:
        A scalar bool tensor: whether the gradients were all finite (for a
        LossScaleOptimizer, whose scaled gradients overflow now and then by
        design, this says nothing about the loss).
    """
    finite = tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
    )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer.apply(grads, variables)
        return finite

    def apply():
        optimizer.apply(grads, variables)
        return tf.constant(True)

    return tf.cond(finite, apply, lambda: tf.constant(False))
