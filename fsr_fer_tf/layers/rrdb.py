"""Residual-in-residual dense blocks (ESRGAN) for the feature generator G.

Paper section 3.4: "we employ the residual-in-residual dense block (RRDB) of
ESRGAN [30] as basic blocks. We modified RRDB by reducing its internal
channels". The blocks act on the [B, d, d, filters] trunk of G; every conv is
3x3, stride 1, 'same' padding, so the blocks are fully convolutional.
"""

import keras

from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.errors import require

_LEAK = 0.2  # ESRGAN's LeakyReLU slope (released code: alpha=0.2).

# How the optional batch-norm runs. "batch": batch statistics in training,
# moving averages at inference (Keras' usual). "inference": always inference
# mode on the initial moving statistics (mean 0, variance 1), i.e. a learnt
# per-channel scale and shift; the released TF1 generator called
# tf.layers.BatchNormalization without `training`, which does this.
BATCH_NORM_MODES = ("batch", "inference")


def _dense_block_initializer():
    """He-normal init scaled by 0.1 (ESRGAN; BasicSR `default_init_weights`
    with scale=0.1): the residual branches start small, so a deep stack of
    blocks begins close to the identity and trains stably. Variance scales
    with the square: 0.1**2 * 2 = 0.02."""
    return keras.initializers.VarianceScaling(
        scale=0.02, mode="fan_in", distribution="truncated_normal"
    )


@keras.saving.register_keras_serializable(package="fsr_fer")
class ResidualDenseBlock(keras.layers.Layer):
    """Residual dense block: densely connected convs with a scaled skip.

    `dense_convs` 3x3 convs; conv j sees the concatenation of the block input
    and the outputs of convs 1..j-1. All but the last conv produce `growth`
    channels and are followed by LeakyReLU(0.2); the last conv maps back to
    `filters` channels and has no activation. The block returns
    `x + residual_scale * conv_last(...)` (ESRGAN eq. in Wang et al. 2018,
    sec. 3.1; BasicSR `ResidualDenseBlock`). The 0.2 residual scale keeps the
    residual branch small so that stacking many blocks stays stable.

    With `use_batch_norm` each conv is followed by batch-normalisation (before
    the activation), as in the authors' released generator; ESRGAN, which the
    paper follows, removed it. `batch_norm_mode="inference"` runs it the way
    the released code did: always in inference mode on its initial moving
    statistics, so it is a learnt per-channel affine map
    gamma * x / sqrt(1 + epsilon) + beta, the same in training and at test.

    Args:
        filters: channels of the block input and output.
        growth: channels produced by each intermediate conv.
        dense_convs: number of convs (ESRGAN: 5); at least 2.
        residual_scale: scale of the residual branch (ESRGAN: 0.2).
        use_batch_norm: batch-norm after every conv.
        batch_norm_mode: "batch" or "inference" (see `BATCH_NORM_MODES`).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> block = ResidualDenseBlock(filters=16, growth=8)
    >>> block(keras.ops.zeros((2, 12, 12, 16))).shape
    (2, 12, 12, 16)
    """

    def __init__(
        self,
        filters=32,
        growth=16,
        dense_convs=5,
        residual_scale=0.2,
        use_batch_norm=False,
        batch_norm_mode="batch",
        **kwargs,
    ):
        super().__init__(**kwargs)
        require(
            batch_norm_mode in BATCH_NORM_MODES,
            f"batch_norm_mode must be one of {BATCH_NORM_MODES}, got "
            f"{batch_norm_mode!r}",
        )
        require(filters >= 1, f"filters must be >= 1, got {filters}")
        require(growth >= 1, f"growth must be >= 1, got {growth}")
        require(
            dense_convs >= 2, f"dense_convs must be >= 2, got {dense_convs}"
        )
        self.filters = int(filters)
        self.growth = int(growth)
        self.dense_convs = int(dense_convs)
        self.residual_scale = float(residual_scale)
        self.use_batch_norm = bool(use_batch_norm)
        self.batch_norm_mode = batch_norm_mode

        # Sub-layers inherit this layer's dtype policy, so a block created
        # with dtype="float32" under mixed_float16 stays float32 throughout.
        # Each sub-layer is its own attribute, not an item of a list: Keras
        # 3 (TF backend) does not expose list items to tf.train.Checkpoint,
        # which would then skip the batch-norm moving statistics.
        policy = self.dtype_policy
        for j in range(self.dense_convs):
            last = j == self.dense_convs - 1
            conv = keras.layers.Conv2D(
                self.filters if last else self.growth,
                3,
                padding="same",
                kernel_initializer=_dense_block_initializer(),
                dtype=policy,
                name=f"conv{j + 1}",
            )
            setattr(self, f"conv{j + 1}", conv)
            if self.use_batch_norm:
                norm = keras.layers.BatchNormalization(
                    dtype=policy, name=f"norm{j + 1}"
                )
                setattr(self, f"norm{j + 1}", norm)
        self.concat = keras.layers.Concatenate(axis=-1, dtype=policy)
        self.act = keras.layers.LeakyReLU(negative_slope=_LEAK, dtype=policy)

    @property
    def convs(self):
        return [getattr(self, f"conv{j + 1}") for j in range(self.dense_convs)]

    @property
    def norms(self):
        if not self.use_batch_norm:
            return []
        return [getattr(self, f"norm{j + 1}") for j in range(self.dense_convs)]

    def _norm_training(self, training):
        return training if self.batch_norm_mode == "batch" else False

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels != self.filters:
            raise ConfigError(
                f"ResidualDenseBlock expects {self.filters} input channels "
                f"(its `filters`), got {channels}: the residual add needs "
                "equal widths."
            )
        prefix = tuple(input_shape[:-1])
        norms = self.norms
        for j, conv in enumerate(self.convs):
            conv.build(prefix + (self.filters + j * self.growth,))
            if norms:
                last = j == self.dense_convs - 1
                width = self.filters if last else self.growth
                norms[j].build(prefix + (width,))

    def call(self, inputs, training=None):
        features = [inputs]
        out = None
        norms = self.norms
        for j, conv in enumerate(self.convs):
            x = features[0] if j == 0 else self.concat(features)
            out = conv(x)  # (B, h, w, growth) or (B, h, w, filters) at the end
            if norms:
                out = norms[j](out, training=self._norm_training(training))
            if j < self.dense_convs - 1:
                out = self.act(out)
                features.append(out)
        return inputs + self.residual_scale * out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "growth": self.growth,
                "dense_convs": self.dense_convs,
                "residual_scale": self.residual_scale,
                "use_batch_norm": self.use_batch_norm,
                "batch_norm_mode": self.batch_norm_mode,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class RRDB(keras.layers.Layer):
    """Residual-in-residual dense block: three dense blocks and a scaled skip.

    `RRDB(x) = x + residual_scale * RDB3(RDB2(RDB1(x)))` (ESRGAN, Wang et al.
    2018, Fig. 4; FSR-FER paper sec. 3.4; identical to the released code's
    `_RRDB`, whose `x_branch` starts as `x`). Since each RDB carries its own
    skip, the identity path through an RRDB has gain 1 + residual_scale.

    Args:
        filters: channels of the block input and output.
        growth: channels of each intermediate dense-block conv.
        dense_convs: convs per dense block (ESRGAN: 5).
        residual_scale: scale of the dense-block and RRDB residuals (0.2).
        use_batch_norm: batch-norm after every dense-block conv (released
            code).
        batch_norm_mode: "batch" or "inference" (see `BATCH_NORM_MODES`).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> block = RRDB(filters=16, growth=8)
    >>> block(keras.ops.zeros((2, 12, 12, 16))).shape
    (2, 12, 12, 16)
    """

    def __init__(
        self,
        filters=32,
        growth=16,
        dense_convs=5,
        residual_scale=0.2,
        use_batch_norm=False,
        batch_norm_mode="batch",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.growth = int(growth)
        self.dense_convs = int(dense_convs)
        self.residual_scale = float(residual_scale)
        self.use_batch_norm = bool(use_batch_norm)
        self.batch_norm_mode = batch_norm_mode
        # Attributes rather than a list, for tf.train.Checkpoint (see
        # ResidualDenseBlock).
        for i in range(3):
            block = ResidualDenseBlock(
                filters=self.filters,
                growth=self.growth,
                dense_convs=self.dense_convs,
                residual_scale=self.residual_scale,
                use_batch_norm=self.use_batch_norm,
                batch_norm_mode=self.batch_norm_mode,
                dtype=self.dtype_policy,
                name=f"rdb{i + 1}",
            )
            setattr(self, f"rdb{i + 1}", block)

    @property
    def blocks(self):
        return [self.rdb1, self.rdb2, self.rdb3]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)

    def call(self, inputs, training=None):
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return inputs + self.residual_scale * x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "growth": self.growth,
                "dense_convs": self.dense_convs,
                "residual_scale": self.residual_scale,
                "use_batch_norm": self.use_batch_norm,
                "batch_norm_mode": self.batch_norm_mode,
            }
        )
        return config
