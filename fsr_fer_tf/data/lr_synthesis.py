"""The paper's low-resolution face synthesis (DESIGN.md "Data flow").

A 100x100 HR face I is shrunk s times with MATLAB's bicubic
`imresize(I, 1/s)` (scale mode: output ceil(100 / s), scale exactly 1 / s)
and the small face brought back with `imresize(lr, [100 100])`; the
classifier sees the latter. Both resizes follow MATLAB's semantics exactly
(`fsr_fer_tf.data.imresize`); uint8 faces are rounded after each 1-D pass,
as MATLAB does for uint8 images.

`LRSynthesizer.upsampled` is the form the tf.data pipeline uses: the weights
of every scale are built once, and a scale given as a tensor selects its
branch with `tf.switch_case`. The pipeline draws a scale per face and runs
one batched synthesis per scale present in the batch
(`tf.dynamic_partition` / `dynamic_stitch`), not one switch per face.
Measured cost (2 shared CPU cores, `tf.data` map over 100x100x3 uint8
faces, num_parallel_calls=AUTOTUNE, a random scale 2..8 per face): about
0.8 ms of CPU per face (1.1 ms at s = 2, where the dense matmuls are largest,
0.35 ms at s = 8); float32 faces take 0.45 ms; summation="matlab" 3 ms.
uint8 faces are computed in float64 so that their per-pass rounding stays
exact; batching faces of one scale does not lower the per-face cost.
"""

import numbers

import tensorflow as tf

from fsr_fer_tf import errors
from fsr_fer_tf.data import imresize as imresize_lib

DEFAULT_SCALES = (2, 3, 4, 5, 6, 7, 8)


def check_scale(scale, image_size):
    """The integer scale s as a Python int, or a one-line ConfigError."""
    ok = not isinstance(scale, bool) and isinstance(
        scale, (numbers.Integral, numbers.Real)
    )
    if ok and not isinstance(scale, numbers.Integral):
        ok = float(scale).is_integer()
    if not ok or not 1 <= int(scale) <= image_size:
        raise errors.ConfigError(
            f"LR synthesis: scale must be a whole number in 1..{image_size} "
            f"(the face size), got {scale!r}; the paper uses 2..8."
        )
    return int(scale)


def _check_image_size(image_size):
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or image_size < 1
    ):
        raise errors.ConfigError(
            f"LR synthesis: image_size must be a whole number >= 1, got "
            f"{image_size!r}; the paper uses 100."
        )
    return int(image_size)


def _check_face(hr, image_size):
    """Converts `hr` to a tensor and checks it is [.., size, size, C]."""
    hr = tf.convert_to_tensor(hr)
    shape = hr.shape
    if shape.rank not in (3, 4) or tuple(shape[-3:-1]) != (
        image_size,
        image_size,
    ):
        raise errors.ConfigError(
            f"LR synthesis: expected HR faces [{image_size}, {image_size}, C]"
            f" or [B, {image_size}, {image_size}, C], got shape {shape}; "
            "resize the faces first, or set image_size= to their size."
        )
    return hr


@tf.autograph.experimental.do_not_convert
def synthesize_lr(hr, scale, image_size=100, summation="matmul"):
    """The paper's LR face at scale s, native and brought back to full size.

    Equivalent to MATLAB `lr = imresize(hr, 1/s); up = imresize(lr,
    [image_size image_size])` (bicubic, antialiasing on).

    Args:
        hr: HR face(s), [S, S, C] or [B, S, S, C] with S = image_size, uint8
            or float, tensor or numpy.
        scale: the integer down-scaling factor s, 1..image_size; 1 returns
            `hr` unchanged for both outputs.
        image_size: the side S of the square HR face.
        summation: "matmul" or "matlab", see `imresize.imresize`.

    Returns:
        (lr_native, lr_up): [.., n, n, C] and [.., S, S, C] tensors of the
        input dtype, n = ceil(S * (1 / s)) as MATLAB computes it (that is
        ceil(S / s) for S = 100).

    Raises:
        fsr_fer_tf.errors.ConfigError: a bad scale, size or face shape.
    """
    image_size = _check_image_size(image_size)
    s = check_scale(scale, image_size)
    hr = _check_face(hr, image_size)
    if s == 1:
        return hr, hr
    lr = imresize_lib.imresize(hr, scale=1.0 / s, summation=summation)
    up = imresize_lib.imresize(
        lr, output_size=(image_size, image_size), summation=summation
    )
    return lr, up


class LRSynthesizer:
    """Precomputed MATLAB-bicubic LR synthesis for a fixed set of scales.

    Builds the down- and up-sampling weights of every scale once, so a
    tf.data map pays only for four small matmuls per face.

    Args:
        scales: the integer down-scaling factors s to support (1 allowed:
            the identity).
        image_size: the side S of the square HR faces.
        summation: "matmul" (fast) or "matlab" (bit-exact MATLAB double
            arithmetic), see `imresize.imresize`.

    Example:
        >>> synth = LRSynthesizer()
        >>> def to_lr(face):  # face: uint8 [100, 100, 3]
        ...     s = tf.random.uniform([], 2, 9, dtype=tf.int32)
        ...     return synth.upsampled(face, s), s
        >>> ds = ds.map(to_lr, num_parallel_calls=tf.data.AUTOTUNE)
    """

    def __init__(
        self, scales=DEFAULT_SCALES, image_size=100, summation="matmul"
    ):
        self.image_size = _check_image_size(image_size)
        try:
            scales = tuple(scales)
        except TypeError:
            scales = ()
        if isinstance(scales, str) or not scales:
            raise errors.ConfigError(
                f"LRSynthesizer: scales must be a non-empty sequence of "
                f"whole numbers, got {scales!r}; e.g. scales=(2, 3, 4)."
            )
        self.scales = tuple(
            sorted({check_scale(s, self.image_size) for s in scales})
        )
        self.summation = summation
        size = self.image_size
        # Per scale: (down plan, up plan); H and W share them (square).
        self._plans = {}
        self._native_sizes = {1: size}
        for s in self.scales:
            if s == 1:
                continue
            # MATLAB's ceil(S * (1 / s)) in doubles: ceil(S / s) for S = 100,
            # one more for a few exact multiples (e.g. 273 / 91).
            small = imresize_lib.output_size_and_scale(
                (size, size), scale=1.0 / s
            )[0][0]
            self._native_sizes[s] = small
            down = imresize_lib.axis_plan(size, small, 1.0 / s, True, summation)
            up = imresize_lib.axis_plan(
                small, size, size / small, True, summation
            )
            self._plans[s] = (down, up)

    def native_size(self, scale):
        """Side of the native LR face at `scale`, MATLAB's ceil(S * (1/s))."""
        return self._native_sizes[self._known_scale(scale)]

    def _known_scale(self, scale):
        s = check_scale(scale, self.image_size)
        if s not in self.scales:
            raise errors.ConfigError(
                f"LRSynthesizer: scale {s} is not one of its scales "
                f"{self.scales}; add it to LRSynthesizer(scales=...)."
            )
        return s

    def _down(self, hr, s):
        if s == 1:
            return hr
        down = self._plans[s][0]
        return imresize_lib.resize_with_weights(hr, down, down)

    def _down_up(self, hr, s):
        if s == 1:
            return hr
        up = self._plans[s][1]
        return imresize_lib.resize_with_weights(self._down(hr, s), up, up)

    @tf.autograph.experimental.do_not_convert
    def native(self, hr, scale):
        """The native LR face(s) `imresize(hr, 1/s)`.

        Args:
            hr: [S, S, C] or [B, S, S, C] uint8 or float faces.
            scale: a Python int among `scales` (the output size depends on
                it, so it cannot be a tensor).

        Returns:
            [.., n, n, C], n = `native_size(scale)`; dtype of `hr`.
        """
        s = self._known_scale(scale)
        return self._down(_check_face(hr, self.image_size), s)

    # Plain Python branching on static values only (the tensor case uses
    # tf.switch_case), so AutoGraph need not convert it.
    @tf.autograph.experimental.do_not_convert
    def upsampled(self, hr, scale):
        """The LR face(s) brought back to S x S, what the classifier sees.

        Args:
            hr: one face [S, S, C] or a batch [B, S, S, C], uint8 or float,
                static S; the same scale applies to the whole batch.
            scale: a Python int among `scales`, or a scalar integer tensor
                (e.g. drawn at random in a tf.data map). An unknown value
                raises ConfigError eagerly; in graph mode a tf.debugging
                assertion fails at run time (InvalidArgumentError).

        Returns:
            [.., S, S, C] tensor, dtype of `hr`.
        """
        hr = _check_face(hr, self.image_size)
        if not tf.is_tensor(scale):
            return self._down_up(hr, self._known_scale(scale))
        if scale.shape.rank != 0 or not scale.dtype.is_integer:
            raise errors.ConfigError(
                f"LRSynthesizer: a scale tensor must be a scalar integer, "
                f"got {scale.dtype.name} {scale.shape}; pass tf.int32 []."
            )
        if tf.executing_eagerly():
            return self._down_up(hr, self._known_scale(int(scale.numpy())))
        known = tf.constant(self.scales, dtype=scale.dtype)
        match = tf.equal(known, scale)
        check = tf.debugging.Assert(
            tf.reduce_any(match),
            ["LRSynthesizer: scale", scale, "is not one of", known],
        )
        with tf.control_dependencies([check]):
            branch = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int32)
        branches = [(lambda s=s: self._down_up(hr, s)) for s in self.scales]
        return tf.switch_case(branch, branches)
