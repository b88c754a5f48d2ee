"""Batch normalization of NHWC conv maps through TensorFlow's fused kernel.

`keras.layers.BatchNormalization` (Keras 3) computes the moments and the
normalisation as separate ops; on CPU that unfused graph was about 23% of a
stage-1 step (README "Speed", `tools/profile_step.py`). `FusedBatchNormalization`
is the same layer (same arguments, weights, names, moving-average update and
saved config) whose call on a 4-D channels-last map runs `FusedBatchNormV3`
and its fused gradient instead. Anything else it does not cover (masks,
`synchronized`, `renorm`, other ranks or axes, epsilon below the kernel's
1.001e-5 floor) goes to the Keras implementation unchanged.
"""

import keras
import tensorflow as tf

# FusedBatchNormV3 refuses a smaller epsilon.
_MIN_EPSILON = 1.001e-5
_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


@keras.saving.register_keras_serializable(package="fsr_fer")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` on TensorFlow's fused kernel.

    Training mode normalises with the batch's biased variance and moves
    the statistics as Keras does: m <- m * momentum + batch * (1 -
    momentum), with the biased variance (the kernel returns the unbiased
    one, rescaled here by (n - 1) / n). Inference uses the moving
    statistics. Under mixed_float16 the kernel takes the float16 map and
    float32 statistics and computes in float32, as Keras' layer upcasts.

    Example:
        >>> bn = FusedBatchNormalization(momentum=0.9, scale=False)
        >>> y = bn(tf.random.normal([8, 12, 12, 16]), training=True)
    """

    def _fused(self, inputs):
        return (
            inputs.shape.rank == 4
            and self.axis in (-1, 3)
            and not self.synchronized
            and not self.renorm
            and self.epsilon >= _MIN_EPSILON
        )

    def call(self, inputs, training=None, mask=None):
        inputs = tf.convert_to_tensor(inputs)
        if mask is not None or not self._fused(inputs):
            return super().call(inputs, training=training, mask=mask)
        x = (
            inputs
            if inputs.dtype in _FUSED_DTYPES
            else tf.cast(inputs, "float32")
        )
        channels = x.shape[-1]
        gamma = (
            tf.cast(self.gamma, tf.float32)
            if self.scale
            else tf.ones([channels])
        )
        beta = (
            tf.cast(self.beta, tf.float32)
            if self.center
            else tf.zeros([channels])
        )
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            # The kernel's variance is the unbiased one; Keras moves the
            # biased one (what the batch was normalised with).
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            variance = variance * tf.maximum(n - 1.0, 0.0) / n
            momentum = self.momentum
            self.moving_mean.assign(
                moving_mean * momentum + tf.stop_gradient(mean) * (1 - momentum)
            )
            self.moving_variance.assign(
                moving_variance * momentum
                + tf.stop_gradient(variance) * (1 - momentum)
            )
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=moving_mean,
                variance=moving_variance,
                epsilon=self.epsilon,
                is_training=False,
            )
        return tf.cast(y, self.compute_dtype)
