"""Image super-resolution baselines of the paper's Table 1: Meta-SR and RCAN.

Both models super-resolve the low-resolution face itself (not the LogEig
feature, as G does); their output is classified by the HR CovPoolFER.

Input, for both: a dict {"lr": [B, P, P, C] raw 0..255 pixels, "scale":
int32 [B]}. Sample b's native LR face, side n_s = ceil(S / s) for
s = scale[b] (MATLAB's `imresize` size, `native_size`), sits in the top-left
corner of the P x P array; the rest is padding, which never reaches the
output (each face is cropped to its native size first). `pad_native` builds
such a batch; `input_size(model)` is the P a model needs.

Output: float32 [B, S, S, C], S = `out_size`, raw 0..255 (unclipped;
`super_resolve` clips). Geometry: MATLAB's `imresize` by 1/s maps LR pixel j
to HR pixels [j*s, (j+1)*s) for integer s, so the s-times upsampled native
face, (n_s*s) x (n_s*s), cropped to its top-left S x S is aligned with the HR
face.

- `MetaSR` (Hu et al., CVPR 2019): one model for all scales in `scales`,
  mixed scales in one batch.
- `RCAN` (Zhang et al., ECCV 2018): one model per scale.

Convs and dense layers start from PyTorch's default initialisation (the
originals were trained with it): He-uniform / sqrt(6) kernels, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and zero biases.
"""

import keras
import numpy as np
import tensorflow as tf

from fsr_fer_tf.data.imresize import output_size_and_scale
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.errors import require
from fsr_fer_tf.models import files

_PIXEL_CENTRE = 127.5  # x -> (x - 127.5) / 127.5 in, the inverse out.

METASR_PRESETS = {
    "slim": {"channels": 32, "blocks": 6, "meta_hidden": 64},
    # Meta-SR paper (Meta-EDSR: EDSR-baseline encoder, Pos2Weight 256 units).
    "paper": {"channels": 64, "blocks": 16, "meta_hidden": 256},
}
RCAN_PRESETS = {
    "slim": {"channels": 32, "groups": 2, "blocks": 4, "reduction": 8},
    # RCAN paper: 10 residual groups of 20 RCABs, 64 channels, reduction 16.
    "paper": {
        "channels": 64,
        "groups": 10,
        "blocks": 20,
        "reduction": 16,
    },
}


def native_size(scale, out_size=100):
    """Side of the native LR face of an `out_size` face at integer `scale`.

    MATLAB's `imresize(x, 1/scale)` size: ceil(out_size / scale) (but for
    rare exact multiples, where 1/scale rounds).
    """
    return int(
        output_size_and_scale((out_size, out_size), scale=1.0 / scale)[0][0]
    )


def _initializer():
    # PyTorch's Conv2d/Linear default (kaiming_uniform, a=sqrt(5)).
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    )


def _conv(filters, kernel_size=3, name=None, dtype=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        kernel_initializer=_initializer(),
        name=name,
        dtype=dtype,
    )


def _check_scale(scale, name):
    require(
        isinstance(scale, (int, np.integer))
        and not isinstance(scale, bool)
        and scale >= 2,
        f"{name}: scales must be integers >= 2, got {scale!r}.",
    )
    return int(scale)


def _check_native(out_size, scale, name):
    n = native_size(scale, out_size)
    require(
        n * scale >= out_size,
        f"{name}: x{scale} native size {n} upsampled is {n * scale} < "
        f"out_size {out_size}.",
    )
    return n


def _lr_and_scale(inputs, name):
    if not isinstance(inputs, dict) or "lr" not in inputs:
        raise ConfigError(
            f'{name} takes a dict {{"lr": [B, P, P, C], "scale": [B]}}; '
            "build it with pad_native or call super_resolve."
        )
    return inputs["lr"], inputs.get("scale")


def _crop_native(lr, n, name):
    """lr [B, P, P, C] -> its top-left [B, n, n, C] (asserting P >= n)."""
    side = lr.shape[1]
    if side is not None:
        require(
            side >= n,
            f"{name}: input faces are {side} x {side}, smaller than the "
            f"native size {n} they must hold; pad to input_size(model).",
        )
        return lr[:, :n, :n, :]
    check = tf.debugging.assert_greater_equal(
        tf.shape(lr)[1],
        n,
        message=f"{name}: input faces smaller than the native size {n}",
    )
    with tf.control_dependencies([check]):
        # Static n x n from here on (bicubic_skip's resize needs it).
        return tf.ensure_shape(lr[:, :n, :n, :], [None, n, n, lr.shape[-1]])


@keras.saving.register_keras_serializable(package="fsr_fer")
class ResidualBlock(keras.layers.Layer):
    """EDSR residual block: `x + res_scale * conv(ReLU(conv(x)))`.

    No batch-norm (EDSR, Lim et al. 2017, Fig. 2; Meta-SR's Meta-EDSR
    encoder). EDSR-baseline uses `res_scale` 1; the large EDSR 0.1.

    Args:
        channels: channels of the block input and output.
        res_scale: scale of the residual branch.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> block = ResidualBlock(channels=8)
    >>> tuple(block(keras.ops.zeros((2, 12, 12, 8))).shape)
    (2, 12, 12, 8)
    """

    def __init__(self, channels=64, res_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.res_scale = float(res_scale)
        policy = self.dtype_policy
        self.conv1 = _conv(self.channels, name="conv1", dtype=policy)
        self.conv2 = _conv(self.channels, name="conv2", dtype=policy)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(tuple(input_shape[:-1]) + (self.channels,))

    def call(self, inputs):
        x = self.conv2(keras.ops.relu(self.conv1(inputs)))
        return inputs + self.res_scale * x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "res_scale": self.res_scale})
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class ChannelAttention(keras.layers.Layer):
    """RCAN channel attention: x * sigmoid(W_U ReLU(W_D GAP(x))).

    Global average pool -> 1x1 conv to channels / reduction -> ReLU -> 1x1
    conv back to channels -> sigmoid, scaling each channel (Zhang et al.
    2018, sec. 3.3, eq. 7-9).

    Args:
        channels: channels of the input and output.
        reduction: the channel-reduction ratio r (paper: 16).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> ca = ChannelAttention(channels=16, reduction=4)
    >>> tuple(ca(keras.ops.zeros((2, 12, 12, 16))).shape)
    (2, 12, 12, 16)
    """

    def __init__(self, channels=64, reduction=16, **kwargs):
        super().__init__(**kwargs)
        require(reduction >= 1, f"reduction must be >= 1, got {reduction}")
        self.channels = int(channels)
        self.reduction = int(reduction)
        policy = self.dtype_policy
        self.down = _conv(
            max(1, self.channels // self.reduction), 1, "down", policy
        )
        self.up = _conv(self.channels, 1, "up", policy)

    def build(self, input_shape):
        self.down.build((None, 1, 1, self.channels))
        self.up.build((None, 1, 1, max(1, self.channels // self.reduction)))

    def call(self, inputs):
        y = keras.ops.mean(inputs, axis=(1, 2), keepdims=True)  # (B, 1, 1, c)
        y = keras.ops.sigmoid(self.up(keras.ops.relu(self.down(y))))
        return inputs * y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "reduction": self.reduction})
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class RCAB(keras.layers.Layer):
    """Residual channel-attention block: x + CA(conv(ReLU(conv(x)))).

    Zhang et al. 2018, sec. 3.4, eq. 10-11 (no residual scaling, no
    batch-norm).

    Args:
        channels: channels of the block input and output.
        reduction: channel-attention reduction ratio.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> block = RCAB(channels=16, reduction=4)
    >>> tuple(block(keras.ops.zeros((2, 12, 12, 16))).shape)
    (2, 12, 12, 16)
    """

    def __init__(self, channels=64, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        policy = self.dtype_policy
        self.conv1 = _conv(self.channels, name="conv1", dtype=policy)
        self.conv2 = _conv(self.channels, name="conv2", dtype=policy)
        self.attention = ChannelAttention(
            self.channels, self.reduction, dtype=policy, name="attention"
        )

    def build(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.channels,)
        self.conv1.build(input_shape)
        self.conv2.build(shape)
        self.attention.build(shape)

    def call(self, inputs):
        x = self.conv2(keras.ops.relu(self.conv1(inputs)))
        return inputs + self.attention(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "reduction": self.reduction})
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class ResidualGroup(keras.layers.Layer):
    """RCAN residual group: x + conv(RCAB_B(...RCAB_1(x))).

    Zhang et al. 2018, sec. 3.2, eq. 5 (the short skip connection).

    Args:
        channels: channels of the group input and output.
        blocks: RCABs in the group (paper: 20).
        reduction: channel-attention reduction ratio.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> group = ResidualGroup(channels=16, blocks=2, reduction=4)
    >>> tuple(group(keras.ops.zeros((2, 12, 12, 16))).shape)
    (2, 12, 12, 16)
    """

    def __init__(self, channels=64, blocks=20, reduction=16, **kwargs):
        super().__init__(**kwargs)
        require(blocks >= 0, f"blocks must be >= 0, got {blocks}")
        self.channels = int(channels)
        self.blocks = int(blocks)
        self.reduction = int(reduction)
        policy = self.dtype_policy
        # Attributes rather than a list, for tf.train.Checkpoint (see
        # layers/rrdb.py).
        for i in range(self.blocks):
            block = RCAB(
                self.channels, self.reduction, dtype=policy, name=f"rcab{i + 1}"
            )
            setattr(self, f"rcab{i + 1}", block)
        self.conv = _conv(self.channels, name="conv", dtype=policy)

    @property
    def rcabs(self):
        return [getattr(self, f"rcab{i + 1}") for i in range(self.blocks)]

    def build(self, input_shape):
        for block in self.rcabs:
            block.build(input_shape)
        self.conv.build(input_shape)

    def call(self, inputs):
        x = inputs
        for block in self.rcabs:
            x = block(x)
        return inputs + self.conv(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "blocks": self.blocks,
                "reduction": self.reduction,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="fsr_fer")
class MetaUpscale(keras.layers.Layer):
    """Meta-SR's Meta-Upscale module at an integer scale.

    Output pixel (i, j) at scale s is `W(i, j) @ F_k(floor(i/s), floor(j/s))`,
    where F_k is the k x k (zero-padded) neighbourhood of the LR feature map
    at the projected location, flattened in (channel, row, column) order as
    PyTorch's `unfold`, and W(i, j) [out_channels, channels*k*k] is predicted
    by an MLP (dense `hidden` -> ReLU -> dense, no output bias) from
    v(i, j) = (i/s - floor(i/s), j/s - floor(j/s), 1/s) (Hu et al. 2019,
    sec. 3.2, eq. 2-5; the authors' `Pos2Weight`).

    For integer s, v depends only on the phase (i mod s, j mod s), so the
    weights of the s*s phases are predicted once and applied as one k x k
    conv of the features to s*s*out_channels channels ordered as
    `depth_to_space(s)` expects, then the pixel shuffle: the k x k conv is
    the unfolded-features matmul without materialising the unfold. The
    output, [B, n*s, n*s, out_channels], is exactly the per-pixel definition.

    Args:
        out_channels: output channels (image channels).
        hidden: hidden units of the weight-prediction MLP (paper: 256).
        kernel_size: k, the feature neighbourhood (paper: 3).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
    >>> up = MetaUpscale(out_channels=3, hidden=16)
    >>> tuple(up(keras.ops.zeros((2, 5, 5, 8)), scale=3).shape)
    (2, 15, 15, 3)
    """

    def __init__(self, out_channels=3, hidden=256, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        require(hidden >= 1, f"hidden must be >= 1, got {hidden}")
        require(
            kernel_size >= 1 and kernel_size % 2 == 1,
            f"kernel_size must be odd and >= 1, got {kernel_size}",
        )
        self.out_channels = int(out_channels)
        self.hidden = int(hidden)
        self.kernel_size = int(kernel_size)
        self.hidden_dense = keras.layers.Dense(
            self.hidden,
            activation="relu",
            kernel_initializer=_initializer(),
            dtype=self.dtype_policy,
            name="hidden",
        )
        self.weight_dense = None  # Its width needs the feature channels.

    def build(self, input_shape):
        channels = input_shape[-1]
        k2 = self.kernel_size**2
        self.channels = int(channels)
        self.hidden_dense.build((None, 3))
        self.weight_dense = keras.layers.Dense(
            self.out_channels * self.channels * k2,
            use_bias=False,
            kernel_initializer=_initializer(),
            dtype=self.dtype_policy,
            name="weight_prediction",
        )
        self.weight_dense.build((None, self.hidden))

    def phase_table(self, scale):
        """[s*s, 3] float: v for phase p = a*s + b (row a, column b)."""
        a, b = np.meshgrid(np.arange(scale), np.arange(scale), indexing="ij")
        table = np.stack(
            [a.ravel() / scale, b.ravel() / scale, np.full(a.size, 1 / scale)],
            axis=1,
        )
        return keras.ops.convert_to_tensor(table, dtype=self.compute_dtype)

    def phase_weights(self, scale):
        """[s*s, out_channels, channels*k*k]: W for each phase."""
        w = self.weight_dense(self.hidden_dense(self.phase_table(scale)))
        k2 = self.kernel_size**2
        return keras.ops.reshape(
            w, (scale * scale, self.out_channels, self.channels * k2)
        )

    def call(self, inputs, scale):
        scale = _check_scale(scale, "MetaUpscale")
        k = self.kernel_size
        w = self.phase_weights(scale)
        w = keras.ops.reshape(
            w, (scale * scale, self.out_channels, self.channels, k, k)
        )
        # (kh, kw, c, phase, out): conv output channel p*out + o, the order
        # depth_to_space reads (phase p = (i mod s)*s + (j mod s)).
        kernel = keras.ops.transpose(w, (3, 4, 2, 0, 1))
        kernel = keras.ops.reshape(
            kernel, (k, k, self.channels, scale * scale * self.out_channels)
        )
        y = keras.ops.conv(inputs, kernel, padding="same")  # (B, n, n, s*s*o)
        return keras.ops.depth_to_space(y, scale)  # (B, n*s, n*s, o)

    def compute_output_shape(self, input_shape, scale=None):
        side = [
            None if d is None or scale is None else d * scale
            for d in input_shape[1:3]
        ]
        return (input_shape[0], *side, self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "out_channels": self.out_channels,
                "hidden": self.hidden,
                "kernel_size": self.kernel_size,
            }
        )
        return config


def _bicubic_up(lr_native, scale, out_size):
    """MATLAB bicubic up by exactly `scale` (aligned with the HR face, as the
    SR output is), cropped to out_size: [B, n, n, C] -> [B, S, S, C]."""
    from fsr_fer_tf.data import imresize as imresize_lib

    up = imresize_lib.imresize(
        keras.ops.cast(lr_native, "float32"), scale=float(scale)
    )
    return up[:, :out_size, :out_size, :]


def _normalise_layer():
    return keras.layers.Rescaling(
        1.0 / _PIXEL_CENTRE, offset=-1.0, name="normalise"
    )


def _denormalise_layer():
    # Float32 island: the output (and the L1 loss on it) in float32.
    return keras.layers.Rescaling(
        _PIXEL_CENTRE, offset=_PIXEL_CENTRE, dtype="float32", name="denormalise"
    )


@keras.saving.register_keras_serializable(package="fsr_fer")
class MetaSR(keras.Model):
    """Meta-SR with an EDSR-baseline encoder: one model for many scales.

    Encoder (on each native LR face, n_s x n_s): 3x3 conv to `channels`,
    `blocks` `ResidualBlock`s (conv-ReLU-conv, residual scale `res_scale`),
    a 3x3 conv and the long skip from the first conv. Then the
    `MetaUpscale` module (float32: it is the output layer) upsamples by s,
    and the (n_s*s)^2 result is cropped to `out_size` (Hu et al., "Meta-SR:
    A Magnification-Arbitrary Network for Super-Resolution", CVPR 2019;
    Meta-EDSR). Pixels are normalised inside: (x - 127.5) / 127.5 in, the
    inverse out.

    A batch may mix scales: the samples of each scale in `scales` are
    partitioned out (`tf.dynamic_partition`), cropped to their static native
    size, super-resolved and stitched back in order; empty groups are fine.
    A sample whose scale is not in `scales` is an error (a `ConfigError`
    when called eagerly, a failed `tf.debugging` assertion in a graph).

    Layers take the global dtype policy at construction (and again when a
    `.keras` file is loaded); the output is float32 under mixed_float16.

    Args:
        out_size: S, the side of the output (HR) face.
        image_channels: C, the image channels.
        channels: encoder feature channels (paper: 64).
        blocks: encoder residual blocks (paper: 16).
        meta_hidden: hidden units of the weight-prediction MLP (paper: 256).
        scales: the integer scales the model serves.
        res_scale: residual scaling of the encoder blocks (EDSR-baseline: 1).
        bicubic_skip: beyond the paper (off there): add the face upsampled
            by MATLAB bicubic (by exactly s, aligned) to the output, so the
            network learns the residual over it, as VDSR does.
        **kwargs: `keras.Model` arguments (name, trainable).

    Example:
    >>> model = MetaSR(channels=8, blocks=1, meta_hidden=8)
    >>> lr = pad_native(keras.ops.zeros((1, 25, 25, 3)), input_size(model))
    >>> tuple(model({"lr": lr, "scale": keras.ops.array([4], "int32")}).shape)
    (1, 100, 100, 3)
    """

    def __init__(
        self,
        out_size=100,
        image_channels=3,
        channels=32,
        blocks=6,
        meta_hidden=64,
        scales=(2, 3, 4, 5, 6, 7, 8),
        res_scale=1.0,
        bicubic_skip=False,
        name="metasr",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        scales = tuple(_check_scale(s, "MetaSR") for s in scales)
        require(
            len(scales) >= 1 and len(set(scales)) == len(scales),
            f"MetaSR: scales must be distinct and non-empty, got {scales}.",
        )
        require(blocks >= 0, f"MetaSR: blocks must be >= 0, got {blocks}.")
        self.out_size = int(out_size)
        self.image_channels = int(image_channels)
        self.channels = int(channels)
        self.blocks = int(blocks)
        self.meta_hidden = int(meta_hidden)
        self.scales = scales
        self.res_scale = float(res_scale)
        self.bicubic_skip = bool(bicubic_skip)
        self.native_sizes = tuple(
            _check_native(self.out_size, s, "MetaSR") for s in scales
        )

        # === Layers ===
        self.normalise = _normalise_layer()
        self.head = _conv(self.channels, name="head")
        for i in range(self.blocks):
            block = ResidualBlock(
                self.channels, self.res_scale, name=f"block{i + 1}"
            )
            setattr(self, f"block{i + 1}", block)
        self.body_conv = _conv(self.channels, name="body_conv")
        self.upscale = MetaUpscale(
            self.image_channels,
            self.meta_hidden,
            dtype="float32",
            name="meta_upscale",
        )
        self.denormalise = _denormalise_layer()
        self.build()

    @property
    def res_blocks(self):
        return [getattr(self, f"block{i + 1}") for i in range(self.blocks)]

    def build(self, input_shape=None):
        image = (None, None, None, self.image_channels)
        features = (None, None, None, self.channels)
        self.normalise.build(image)
        self.head.build(image)
        for block in self.res_blocks:
            block.build(features)
        self.body_conv.build(features)
        self.upscale.build(features)
        self.denormalise.build(image)
        self.built = True

    def encode(self, lr_native):
        """[B, n, n, C] raw pixels -> encoder features [B, n, n, channels]."""
        x = self.head(self.normalise(lr_native))
        skip = x
        for block in self.res_blocks:
            x = block(x)
        return skip + self.body_conv(x)

    def super_resolve_native(self, lr_native, scale):
        """[B, n_s, n_s, C] at one Python-int scale -> [B, S, S, C] float32."""
        y = self.upscale(self.encode(lr_native), scale=scale)
        y = self.denormalise(y[:, : self.out_size, : self.out_size, :])
        if self.bicubic_skip:  # (x - 127.5) * 127.5 + bicubic
            y = y - _PIXEL_CENTRE + _bicubic_up(lr_native, scale, self.out_size)
        return y

    def _partition(self, scale):
        """Group index of each sample [B] (asserting every scale is served)."""
        scale = tf.reshape(tf.cast(scale, tf.int32), (-1,))
        match = tf.equal(scale[:, None], tf.constant(self.scales)[None, :])
        check = tf.debugging.assert_equal(
            tf.reduce_all(tf.reduce_any(match, axis=1)),
            True,
            message=f"MetaSR serves only scales {self.scales}",
        )
        with tf.control_dependencies([check]):
            return tf.argmax(
                tf.cast(match, tf.int32), axis=1, output_type="int32"
            )

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras' __call__, which would add lines to the
        # message; in a graph the assertion in `_partition` does it.
        scale = inputs.get("scale") if isinstance(inputs, dict) else None
        if scale is not None and (
            isinstance(scale, (np.ndarray, list, tuple, int, np.integer))
            or (tf.executing_eagerly() and isinstance(scale, tf.Tensor))
        ):
            values = np.asarray(scale).ravel().tolist()
            bad = sorted(set(values) - set(self.scales))
            require(
                not bad,
                f"MetaSR serves scales {self.scales}, got samples at {bad}.",
            )
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None):
        lr, scale = _lr_and_scale(inputs, "MetaSR")
        require(scale is not None, 'MetaSR needs the input "scale" [B].')
        groups = len(self.scales)
        part = self._partition(scale)
        lr_groups = tf.dynamic_partition(lr, part, groups)
        positions = tf.dynamic_partition(
            tf.range(tf.shape(part)[0]), part, groups
        )
        empty = tf.zeros(
            (0, self.out_size, self.out_size, self.image_channels), "float32"
        )
        outputs = []
        for s, n, x in zip(self.scales, self.native_sizes, lr_groups):
            x = _crop_native(x, n, "MetaSR")  # (b_s, n_s, n_s, C)
            # Empty groups skip the network: oneDNN's conv (TF 2.21, eager)
            # can return its empty input unchanged, with the wrong channels.
            outputs.append(
                tf.cond(
                    tf.shape(x)[0] > 0,
                    lambda x=x, s=s: self.super_resolve_native(x, s),
                    lambda: empty,
                )
            )
        return tf.dynamic_stitch(positions, outputs)  # (B, S, S, C) float32

    def compute_output_spec(self, inputs, training=None):
        lr = inputs["lr"]
        shape = (lr.shape[0], self.out_size, self.out_size, self.image_channels)
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "out_size": self.out_size,
            "image_channels": self.image_channels,
            "channels": self.channels,
            "blocks": self.blocks,
            "meta_hidden": self.meta_hidden,
            "scales": list(self.scales),
            "res_scale": self.res_scale,
            "bicubic_skip": self.bicubic_skip,
        }


@keras.saving.register_keras_serializable(package="fsr_fer")
class RCAN(keras.Model):
    """RCAN: residual channel-attention network, one model per scale.

    A 3x3 conv to `channels`; `groups` `ResidualGroup`s (each `blocks`
    `RCAB`s, a conv and the group skip), a conv and the long skip; the
    sub-pixel upsampler (s a power of 2: log2(s) steps of conv to
    4*channels + depth_to_space(2); any other s: one conv to
    channels*s^2 + depth_to_space(s)); a final conv to C (float32: the
    output layer). The input is cropped to its native size n_s first and
    the (n_s*s)^2 output to `out_size` (Zhang et al., "Image
    Super-Resolution Using Very Deep Residual Channel Attention Networks",
    ECCV 2018). Pixels are normalised inside: (x - 127.5) / 127.5 in, the
    inverse out.

    The input's "scale" entry is accepted and ignored (the model serves
    `scale` only; `served_scales` tells callers).

    Args:
        scale: the integer scale the model serves.
        out_size: S, the side of the output (HR) face.
        image_channels: C, the image channels.
        channels: feature channels (paper: 64).
        groups: residual groups (paper: 10).
        blocks: RCABs per group (paper: 20).
        reduction: channel-attention reduction ratio (paper: 16).
        bicubic_skip: beyond the paper (off there): add the face upsampled
            by MATLAB bicubic (by exactly s, aligned) to the output.
        **kwargs: `keras.Model` arguments (name, trainable).

    Example:
    >>> model = RCAN(scale=4, channels=8, groups=1, blocks=1)
    >>> lr = keras.ops.zeros((1, 25, 25, 3))
    >>> tuple(model({"lr": lr, "scale": keras.ops.array([4], "int32")}).shape)
    (1, 100, 100, 3)
    """

    def __init__(
        self,
        scale,
        out_size=100,
        image_channels=3,
        channels=32,
        groups=2,
        blocks=4,
        reduction=8,
        bicubic_skip=False,
        name=None,
        **kwargs,
    ):
        scale = _check_scale(scale, "RCAN")
        super().__init__(name=name or f"rcan_x{scale}", **kwargs)
        require(groups >= 0, f"RCAN: groups must be >= 0, got {groups}.")
        self.scale = scale
        self.out_size = int(out_size)
        self.image_channels = int(image_channels)
        self.channels = int(channels)
        self.groups = int(groups)
        self.blocks = int(blocks)
        self.reduction = int(reduction)
        self.bicubic_skip = bool(bicubic_skip)
        self.native_size = _check_native(self.out_size, scale, "RCAN")
        if scale & (scale - 1) == 0:
            self.up_factors = (2,) * (scale.bit_length() - 1)
        else:
            self.up_factors = (scale,)

        # === Layers ===
        self.normalise = _normalise_layer()
        self.head = _conv(self.channels, name="head")
        for i in range(self.groups):
            group = ResidualGroup(
                self.channels, self.blocks, self.reduction, name=f"group{i + 1}"
            )
            setattr(self, f"group{i + 1}", group)
        self.body_conv = _conv(self.channels, name="body_conv")
        for i, f in enumerate(self.up_factors):
            up = _conv(self.channels * f * f, name=f"upsample{i + 1}")
            setattr(self, f"upsample{i + 1}", up)
        self.tail = _conv(self.image_channels, name="tail", dtype="float32")
        self.denormalise = _denormalise_layer()
        self.build()

    @property
    def residual_groups(self):
        return [getattr(self, f"group{i + 1}") for i in range(self.groups)]

    @property
    def upsamplers(self):
        return [
            getattr(self, f"upsample{i + 1}")
            for i in range(len(self.up_factors))
        ]

    def build(self, input_shape=None):
        image = (None, None, None, self.image_channels)
        features = (None, None, None, self.channels)
        self.normalise.build(image)
        self.head.build(image)
        for group in self.residual_groups:
            group.build(features)
        self.body_conv.build(features)
        for up in self.upsamplers:
            up.build(features)
        self.tail.build(features)
        self.denormalise.build(image)
        self.built = True

    def call(self, inputs, training=None):
        lr, _ = _lr_and_scale(inputs, "RCAN")
        lr = _crop_native(lr, self.native_size, "RCAN")  # (B, n_s, n_s, C)
        x = self.head(self.normalise(lr))
        skip = x
        for group in self.residual_groups:
            x = group(x)
        x = skip + self.body_conv(x)
        for f, up in zip(self.up_factors, self.upsamplers):
            x = keras.ops.depth_to_space(up(x), f)
        x = self.tail(x)  # (B, n_s*s, n_s*s, C) float32
        y = self.denormalise(x[:, : self.out_size, : self.out_size, :])
        if self.bicubic_skip:
            y = y - _PIXEL_CENTRE + _bicubic_up(lr, self.scale, self.out_size)
        return y

    def compute_output_spec(self, inputs, training=None):
        lr = inputs["lr"]
        shape = (lr.shape[0], self.out_size, self.out_size, self.image_channels)
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "scale": self.scale,
            "out_size": self.out_size,
            "image_channels": self.image_channels,
            "channels": self.channels,
            "groups": self.groups,
            "blocks": self.blocks,
            "reduction": self.reduction,
            "bicubic_skip": self.bicubic_skip,
        }


def _require_isr(model):
    require(
        isinstance(model, (MetaSR, RCAN)),
        f"expected a MetaSR or RCAN model, got {type(model).__name__}.",
    )


def served_scales(model):
    """The integer scales `model` (a MetaSR or RCAN) super-resolves."""
    _require_isr(model)
    if isinstance(model, MetaSR):
        return tuple(model.scales)
    return (model.scale,)


def input_size(model):
    """P, the side of the "lr" input `model` needs: its largest native face
    (that of its smallest scale)."""
    _require_isr(model)
    return max(native_size(s, model.out_size) for s in served_scales(model))


def pad_native(lr_native, size):
    """Pads [B, n, n, C] faces with zeros on the bottom/right to
    [B, size, size, C] (the "lr" input of MetaSR / RCAN)."""
    lr_native = keras.ops.convert_to_tensor(lr_native)
    n = lr_native.shape[1]
    if n is not None:
        require(
            n <= size and lr_native.shape[2] == n,
            f"pad_native: faces are {n} x {lr_native.shape[2]}; they must be "
            f"square and at most {size} x {size}.",
        )
        if n == size:
            return lr_native
        # Static padding keeps the static shape (resizes need it).
        return tf.pad(lr_native, [[0, 0], [0, size - n], [0, size - n], [0, 0]])
    pad = tf.shape(lr_native)[1:3]
    return tf.pad(
        lr_native, [[0, 0], [0, size - pad[0]], [0, size - pad[1]], [0, 0]]
    )


def super_resolve(model, lr_native, scale):
    """SR faces [B, S, S, C] float32 in 0..255 from native LR faces.

    Args:
        model: a MetaSR or RCAN.
        lr_native: [B, n_s, n_s, C] raw 0..255 faces at `scale`.
        scale: a Python int the model serves.

    Raises:
        ConfigError: the model does not serve `scale`, or the faces are not
            n_s x n_s.
    """
    scales = served_scales(model)
    require(
        scale in scales,
        f"{type(model).__name__} serves scales {scales}, not x{scale}.",
    )
    lr_native = keras.ops.convert_to_tensor(lr_native, dtype="float32")
    n = native_size(scale, model.out_size)
    side = tuple(lr_native.shape[1:3])
    require(
        side in ((n, n), (None, None)),
        f"super_resolve: x{scale} faces must be {n} x {n}, got "
        f"{side[0]} x {side[1]}.",
    )
    batch = tf.shape(lr_native)[0]
    inputs = {
        "lr": pad_native(lr_native, input_size(model)),
        "scale": tf.fill([batch], tf.constant(int(scale), tf.int32)),
    }
    y = model(inputs, training=False)
    return keras.ops.clip(keras.ops.cast(y, "float32"), 0.0, 255.0)


def load_isr(path, flag="--isr_model"):
    """Loads a `.keras` MetaSR or RCAN named by the flag `flag`.

    Raises:
        ConfigError: missing file, not a Keras file, or not a MetaSR/RCAN.
    """
    hint = (
        "train one with `python -m fsr_fer_tf.train_isr`, which writes "
        "MODEL_DIR/isr.keras"
    )
    model = files.load_model_file(path, flag, hint)
    if not isinstance(model, (MetaSR, RCAN)):
        raise ConfigError(
            f"{flag} {path} is not a MetaSR or RCAN model "
            f"({type(model).__name__}); {hint}."
        )
    return model
