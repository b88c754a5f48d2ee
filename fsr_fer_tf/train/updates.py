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

    Under a distribution strategy (called in a replica context), the
    decision is global: the non-finite entries are counted over all
    replicas, so every replica applies or skips together. The cond that
    skips runs in the cross-replica context (through `merge_call`) where
    the strategy needs it, as Keras' LossScaleOptimizer does.

    Returns:
        A scalar bool tensor: whether the gradients were all finite on every
        replica (for a LossScaleOptimizer, whose scaled gradients overflow
        now and then by design, this says nothing about the loss).
    """
    from fsr_fer_tf import distribute

    bad = tf.add_n(
        [
            tf.reduce_sum(tf.cast(~tf.math.is_finite(g), tf.float32))
            for g in grads
            if g is not None
        ]
    )
    finite = distribute.all_reduce_sum(bad) == 0
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer.apply(grads, variables)
        return finite
    ctx = tf.distribute.get_replica_context()
    needs_merge = (
        ctx is not None
        and ctx.num_replicas_in_sync > 1
        and not tf.__internal__.distribute.strategy_supports_no_merge_call()
    )
    if not needs_merge:

        def apply():
            optimizer.apply(grads, variables)
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        return finite

    def cross_replica(distribution, finite, grads):
        # Every replica holds the same all-reduced flag: take the first.
        ok = distribution.experimental_local_results(finite)[0]

        def apply():
            distribution.extended.call_for_each_replica(
                optimizer.apply, args=(grads, variables)
            )

        tf.cond(ok, apply, lambda: None)

    ctx.merge_call(cross_replica, args=(finite, grads))
    return finite
