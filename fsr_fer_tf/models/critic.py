"""ESRGAN VGG-style critic D without batch-norm: [B, d, d, 1] -> [B, 1]."""

import dataclasses

import keras

from fsr_fer_tf import configs

from fsr_fer_tf.configs import CriticConfig
from fsr_fer_tf.errors import require

_LEAK = 0.2
_MAX_WIDTH_FACTOR = 8  # ESRGAN / released code: widths stop at 8x base.


def critic_widths(input_size, config):
    """Widths of the stride-2 stages of the critic for a d x d input.

    The stem is stage 0 (width `base_filters`); stage j > 0 has width
    `base_filters * min(2**j, 8)`. A stage is added while the map is larger
    than `min_size`; 'same' padding halves with rounding up, so
    ceil(d / 2**n) is the final side. The stem always halves once.

    Args:
        input_size: d, the side of the square input map.
        config: a `CriticConfig`.

    Returns:
        A list of widths, one per halving, e.g. [8, 16, 32, 64, 64] for
        d = 128 with base 8 and min_size 4 (the released discriminator).

    Example:
    >>> critic_widths(32, CriticConfig(base_filters=8))
    [8, 16, 32]
    """
    size = -(-input_size // 2)  # the stem's halving
    widths = [config.base_filters]
    while size > config.min_size:
        size = -(-size // 2)
        factor = min(2 ** len(widths), _MAX_WIDTH_FACTOR)
        widths.append(config.base_filters * factor)
    return widths


@keras.saving.register_keras_serializable(package="fsr_fer")
class VGGCritic(keras.Model):
    """VGG-style critic of ESRGAN without batch-norm (paper sec. 3.4).

    Stem: conv3x3(base) + LeakyReLU(0.2), conv4x4 stride 2 (base) +
    LeakyReLU. Then blocks of conv3x3 stride 1 + LeakyReLU and conv4x4
    stride 2 + LeakyReLU, widths doubling from 2x base and capped at 8x, until
    the map is `min_size` (4x4): 5 halvings in all for d = 128 (the released
    discriminator: 8, 16, 32, 64, 64), 3 for d = 32. Then flatten ->
    dense(`dense_units`) -> LeakyReLU -> dense(1). The paper removed ESRGAN's
    batch-norm ("it may result in gradient explosion"); without it every
    sample is scored independently, which the per-sample WGAN-div gradient
    penalty relies on.

    Convs use He-normal init and `use_bias` (released code: no bias); the two
    dense layers always have a bias (as in the released code). The score is
    float32 even under mixed_float16 (float32 island: it enters the
    Wasserstein estimate and the gradient penalty). Paper eq. 7-8.

    A d that is not a power of two works too: 'same' padding halves with
    rounding up (d = 100: 50, 25, 13, 7, 4), and halving stops at the first
    side <= `min_size` (d = 12: 6, 3). The input size is fixed at
    construction because of the dense layer.

    Args:
        config: a `CriticConfig` (or its dict); defaults to ESRGAN's sizes.
        input_size: d, the side of the d x d (x 1) input map.
        **kwargs: `keras.Model` arguments (name, trainable).

    Example:
    >>> d = VGGCritic(CriticConfig(base_filters=8), input_size=32)
    >>> d(keras.ops.zeros((2, 32, 32, 1))).shape
    (2, 1)
    """

    def __init__(
        self, config=None, input_size=128, name="vgg_critic", **kwargs
    ):
        config = configs.as_config(CriticConfig, config)
        require(
            config.base_filters >= 1 and config.dense_units >= 1,
            f"CriticConfig needs positive widths, got {config}",
        )
        require(config.min_size >= 1, f"min_size must be >= 1: {config}")
        require(input_size >= 1, f"input_size must be >= 1: {input_size}")

        def conv(width, kernel, strides, name):
            return keras.layers.Conv2D(
                width,
                kernel,
                strides=strides,
                padding="same",
                use_bias=config.use_bias,
                kernel_initializer="he_normal",
                name=name,
            )

        def act(name):
            return keras.layers.LeakyReLU(negative_slope=_LEAK, name=name)

        # === Functional Model ===
        inputs = keras.Input(shape=(input_size, input_size, 1), name="feature")
        x = inputs
        for j, width in enumerate(critic_widths(input_size, config)):
            x = conv(width, 3, 1, f"block{j}_conv1")(x)
            x = act(f"block{j}_act1")(x)
            x = conv(width, 4, 2, f"block{j}_conv2")(x)  # halves the side
            x = act(f"block{j}_act2")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(config.dense_units, name="dense1")(x)
        x = act("dense1_act")(x)
        outputs = keras.layers.Dense(1, dtype="float32", name="score")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.config = config
        self.input_size = int(input_size)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": dataclasses.asdict(self.config),
            "input_size": self.input_size,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["config"] = configs.as_config(CriticConfig, config.get("config"))
        return cls(**config)
