"""Covariance pooling and per-image standardisation for CovPoolFER.

CovariancePooling turns the trunk's conv map into the second-order feature
of paper eq. 1-2 (Acharya et al., CVPRW 2018, sec. 3.1; released code
`_cal_cov_pooling`). PerImageStandardization is the input normalisation of
the released training and FSR code (`tf.image.per_image_standardization`,
facenet `prewhiten`), kept inside the model so that an exported model takes
raw pixels.
"""

import keras

from fsr_fer_tf.layers.spd import _check_float_island
from fsr_fer_tf.layers.spd import _float_island_dtype


@keras.saving.register_keras_serializable(package="fsr_fer")
class CovariancePooling(keras.layers.Layer):
    """Centred channel covariance of a feature map, regularised to be SPD.

    X [B, h, w, c] (or [B, N, c]) with N = h·w positions:
        Xc = X − mean over positions,
        S0 = Xcᵀ Xc / (N − 1),
        S  = S0 + epsilon · trace(S0) · I,       [B, c, c].
    The trace term (1e-4 in the released code) lifts the zero eigenvalues
    that appear whenever N − 1 < c (144 positions for 256 channels) or a
    channel is dead, and scales with the map so it is a relative floor. If S0
    is exactly zero (a constant map) S is zero too; ReEig's floor then takes
    over. The gradient is TensorFlow's autodiff (products and a mean only).

    Computes in float32 by default even under a mixed policy (float32
    island; dtype="float64" allowed). NaN/Inf in X propagate: that sample's
    S is NaN (see `fsr_fer_tf.layers.spd`).

    Args:
        epsilon: relative diagonal regulariser (released code: 1e-4).
        **kwargs: base layer arguments; `dtype` defaults to "float32".

    Example:
    >>> x = keras.random.normal((2, 12, 12, 8))
    >>> tuple(CovariancePooling()(x).shape)
    (2, 8, 8)
    """

    def __init__(self, epsilon=1e-4, **kwargs):
        super().__init__(**_float_island_dtype(kwargs))
        _check_float_island(self)
        if epsilon < 0:
            raise ValueError(
                f"CovariancePooling epsilon must be >= 0, got {epsilon}."
            )
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) not in (3, 4):
            raise ValueError(
                "CovariancePooling expects a feature map [batch, h, w, c] or "
                f"[batch, positions, c], got shape {input_shape}."
            )
        if input_shape[-1] is None:
            raise ValueError(
                "CovariancePooling needs a known channel count, got shape "
                f"{input_shape}."
            )
        spatial = input_shape[1:-1]
        if None not in spatial and int(_prod(spatial)) < 2:
            raise ValueError(
                "CovariancePooling needs at least 2 positions to estimate a "
                f"covariance, got shape {input_shape}; use a larger input."
            )

    def call(self, inputs):
        channels = inputs.shape[-1]
        x = keras.ops.reshape(
            inputs, (keras.ops.shape(inputs)[0], -1, channels)
        )  # (B, N, c)
        n = keras.ops.cast(keras.ops.shape(x)[1], self.compute_dtype)
        xc = x - keras.ops.mean(x, axis=1, keepdims=True)
        cov = keras.ops.matmul(keras.ops.transpose(xc, (0, 2, 1)), xc) / (
            n - 1.0
        )  # (B, c, c)
        trace = keras.ops.trace(cov, axis1=-2, axis2=-1)  # (B,)
        eye = keras.ops.eye(channels, dtype=self.compute_dtype)
        return cov + (self.epsilon * trace)[:, None, None] * eye

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class PerImageStandardization(keras.layers.Layer):
    """(x − mean) / max(std, 1/sqrt(n)) per image, n = h·w·channels.

    Equals `tf.image.per_image_standardization` and facenet `prewhiten`,
    which the released CovPoolFER (`train.py`) and FSR-FER (`utils.py`) code
    apply to 0..255 pixels; the 1/sqrt(n) floor keeps a flat image finite.
    Statistics run over all non-batch axes, in float32 by default (a
    float32 island: the variance of 0..255 pixels overflows float16).

    Args:
        **kwargs: base layer arguments; `dtype` defaults to "float32".

    Example:
    >>> x = keras.random.uniform((2, 8, 8, 3), maxval=255.0)
    >>> y = PerImageStandardization()(x)
    >>> round(float(keras.ops.std(y[0])), 3)
    1.0
    """

    def __init__(self, **kwargs):
        super().__init__(**_float_island_dtype(kwargs))
        _check_float_island(self)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                "PerImageStandardization expects [batch, ...] images, got "
                f"shape {tuple(input_shape)}."
            )

    def call(self, inputs):
        axes = tuple(range(1, len(inputs.shape)))
        per_image = inputs.shape[1:]
        if None in per_image:
            n = keras.ops.cast(keras.ops.size(inputs[0]), self.compute_dtype)
        else:
            n = keras.ops.cast(_prod(per_image), self.compute_dtype)
        mean = keras.ops.mean(inputs, axis=axes, keepdims=True)
        centred = inputs - mean
        std = keras.ops.sqrt(
            keras.ops.mean(keras.ops.square(centred), axis=axes, keepdims=True)
        )
        return centred / keras.ops.maximum(std, keras.ops.rsqrt(n))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def _prod(values):
    result = 1
    for v in values:
        result *= v
    return result
