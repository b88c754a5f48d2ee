"""RRDB feature generator G: F_lr [B, d, d, 1] -> F_sr [B, d, d, 1]."""

import dataclasses

import keras

from fsr_fer_tf import configs

from fsr_fer_tf.configs import GeneratorConfig
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.layers.rrdb import RRDB

_LEAK = 0.2


@keras.saving.register_keras_serializable(package="fsr_fer")
class SymmetricPart(keras.layers.Layer):
    """Returns (Y + Y^T) / 2 over the two spatial axes of [B, d, d, C].

    F_hr is a LogEig map, i.e. a symmetric matrix; G's output is made
    symmetric the same way (GeneratorConfig.symmetrize_output), so F_sr lies
    in the same space. Spatial dims must be equal.

    Example:
    >>> y = SymmetricPart()(keras.ops.ones((1, 4, 4, 1)))
    """

    def call(self, inputs):
        return 0.5 * (inputs + keras.ops.transpose(inputs, (0, 2, 1, 3)))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="fsr_fer")
class RRDBGenerator(keras.Model):
    """ESRGAN RRDB network on the LogEig map (FSR-FER paper eq. 3, sec. 3.4).

    `F_sr = G(F_lr)`: first 3x3 conv to `filters` channels, `num_blocks`
    RRDBs, a 3x3 trunk conv and a global skip from the first conv, then the
    tail conv(k) -> LeakyReLU(0.2) -> conv(k) to one channel, with
    k = `tail_kernel_size` (ESRGAN 3; released code 8). Unlike ESRGAN there is
    no up-sampling: input and output are both d x d. Optionally the input is
    added to the output (`input_skip`) and the result symmetrised
    (`symmetrize_output`). The output is float32 even under mixed_float16
    (float32 island: it feeds the frozen SPD head, the L2 loss and the
    critic's penalty).

    The network is fully convolutional: one model serves any d. It takes
    [B, d, d, 1]; a [B, d, d] LogEig map is accepted too (Keras' functional
    input standardisation adds the trailing channel axis). The output is
    always [B, d, d, 1].

    Layers take the global dtype policy at construction (and again when a
    `.keras` file is loaded): build under mixed_float16 to train in mixed
    precision.

    Dense-block convs start from He-normal weights scaled by 0.1 (ESRGAN);
    the released code scaled every generator weight by 0.1 before its L2
    pre-training.

    Args:
        config: a `GeneratorConfig` (or its dict); defaults to the paper's.
        **kwargs: `keras.Model` arguments (name, trainable).

    Example:
    >>> from fsr_fer_tf.configs import GENERATOR_PRESETS
    >>> g = RRDBGenerator(GENERATOR_PRESETS["demo"])
    >>> g(keras.ops.zeros((2, 32, 32, 1))).shape
    (2, 32, 32, 1)
    """

    def __init__(self, config=None, name="rrdb_generator", **kwargs):
        config = configs.as_config(GeneratorConfig, config)
        if config.tail_kernel_size < 1 or config.num_blocks < 0:
            raise ConfigError(
                "GeneratorConfig needs tail_kernel_size >= 1 and "
                f"num_blocks >= 0, got {config}"
            )

        # === Layers ===
        he = "he_normal"
        first_conv = keras.layers.Conv2D(
            config.filters,
            3,
            padding="same",
            kernel_initializer=he,
            name="first_conv",
        )
        blocks = [
            RRDB(
                filters=config.filters,
                growth=config.growth,
                dense_convs=config.dense_convs,
                residual_scale=config.residual_scale,
                use_batch_norm=config.use_batch_norm,
                batch_norm_mode=config.batch_norm_mode,
                name=f"rrdb{i + 1}",
            )
            for i in range(config.num_blocks)
        ]
        trunk_conv = keras.layers.Conv2D(
            config.filters,
            3,
            padding="same",
            kernel_initializer=he,
            name="trunk_conv",
        )
        tail_conv1 = keras.layers.Conv2D(
            config.filters,
            config.tail_kernel_size,
            padding="same",
            kernel_initializer=he,
            name="tail_conv1",
        )
        tail_conv2 = keras.layers.Conv2D(
            1,
            config.tail_kernel_size,
            padding="same",
            # With the input skip G learns a residual: a zero last conv makes
            # it start as the identity, F_sr = F_lr (the bicubic baseline).
            kernel_initializer="zeros" if config.input_skip else he,
            name="tail_conv2",
        )

        # === Functional Model ===
        inputs = keras.Input(shape=(None, None, 1), name="feature")
        x = first_conv(inputs)  # (B, d, d, filters)
        trunk = x
        for block in blocks:
            trunk = block(trunk)
        trunk = trunk_conv(trunk)
        x = keras.layers.Add(name="global_skip")([x, trunk])
        x = tail_conv1(x)
        x = keras.layers.LeakyReLU(negative_slope=_LEAK, name="tail_act")(x)
        x = tail_conv2(x)  # (B, d, d, 1)
        # The output stage runs in float32 (under mixed_float16 the input
        # skip adds the float32 F_lr to a float16 residual).
        if config.input_skip:
            x = keras.layers.Add(dtype="float32", name="input_skip")(
                [inputs, x]
            )
        if config.symmetrize_output:
            outputs = SymmetricPart(dtype="float32", name="symmetrize")(x)
        else:
            outputs = keras.layers.Activation(
                "linear", dtype="float32", name="output"
            )(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.config = config

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["config"] = configs.as_config(
            GeneratorConfig, config.get("config")
        )
        return cls(**config)
