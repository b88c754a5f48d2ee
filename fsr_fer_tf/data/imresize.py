"""MATLAB-compatible bicubic resize: `imresize(I, scale, 'bicubic')` in TF.

The paper synthesises its low-resolution faces with MATLAB's `imresize`
(bicubic, antialiasing on), and its numbers depend on that exact filter.
`imresize` here reproduces MATLAB's semantics:

- the Keys cubic kernel with a = -0.5, support 4;
- when downscaling with antialiasing, the kernel stretched by 1/scale
  (h(x) = scale * cubic(scale * x), width 4 / scale);
- the output size ceil(in * scale) in scale mode, and the scale out / in in
  size mode;
- the coordinate map u = x / scale + 0.5 * (1 - 1 / scale) (1-based x);
- symmetric (mirror) edge handling of the tap indices, as in MATLAB's
  `contributions`, which also drops all-zero weight columns;
- the two 1-D passes in MATLAB's order: the dimension with the smaller scale
  first, rows first on a tie (a stable sort of the scales);
- integer inputs rounded half away from zero and saturated after EACH pass.

Each 1-D pass is a dense [out, in] weight matrix (built once in NumPy float64
and cached) applied with one einsum, so it runs batched, in graph mode, inside
`tf.data` map functions and on GPU. Shapes must be static at trace time.

Measured agreement with MATLAB (`tests/data/imresize_test.py`, the shared
reference data in ../shared/testdata/matlab_imresize):
- float64: max |error| 8e-14 on small_cases.json (values up to 224),
  1e-15 on butterfly, 9e-16 on the 100x100 crop at x2..x8 down and back
  up; float32: 2e-7 on butterfly, 3e-7 on the crop.
- uint8 100x100 crop, x2..x8 down and back up with per-pass rounding:
  exact (0 grey levels on every pixel of all 14 arrays).
- baboon x1/2, x1/3, x1/4 PNGs: exact. baboon x2 up: exact with
  summation="matlab"; with the default matmuls 28 of 2,833,920 values
  differ by one level, all of them exact ties y * 255 = k + 0.5 that the
  last bit of the float sum sends either way.

How far `tf.image.resize(..., 'bicubic', antialias=True)` is from MATLAB
(`tf_resize_gap()`; same crop in [0, 1], errors in grey levels of 255;
"down" = 100 -> ceil(100 / s), "trip" = down then back to 100x100, both by
TF, against MATLAB's double outputs):

    s   down mean  down max   trip mean  trip max
    2      0.07       4.92       0.07       5.57
    3      7.93     101.28       7.43      99.16
    4      0.19       7.27       0.19       8.50
    5      0.24       7.70       0.25       8.83
    6      6.28      54.66       6.05      55.19
    7     13.64     111.96      13.30     112.34
    8     10.90      83.17      10.71      84.04

Where 100 / s is whole (x2, x4, x5) the interior agrees to 1e-4 levels (same
kernel, same grid) and the error sits on the 1-3 pixel border, where TF
renormalises the truncated kernel instead of mirroring the image. Where it is
not whole, TF resamples with scale out / in while MATLAB keeps exactly 1 / s
(scale mode), so the grids drift apart towards the far edge (by 2 input
pixels at x3, 5 at x7): 6-14 levels on average, over 100 at edges. With TF's
default antialias=False (a = -0.75, no widened kernel) the mean gap is
2.6-19.7 levels at every scale.
"""

import functools
import math
import numbers
import os

import numpy as np
import tensorflow as tf

from fsr_fer_tf import errors

# Support of MATLAB's `cubic` kernel (it is zero outside [-2, 2]).
KERNEL_WIDTH = 4.0

# MATLAB's imresize works on these classes; others are refused, not guessed.
_INT_DTYPES = (tf.uint8, tf.uint16, tf.int16)
_FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def cubic(x):
    """MATLAB's imresize `cubic` kernel (Keys, a = -0.5), in float64.

    Written in the same operation order as MATLAB so the weights agree to the
    last bits.

    Args:
        x: array of offsets.

    Returns:
        The kernel at `x`, same shape, float64.
    """
    absx = np.abs(np.asarray(x, dtype=np.float64))
    absx2 = absx**2
    absx3 = absx**3
    inner = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (1 < absx) & (absx <= 2)
    )
    return inner + outer


def _check_length(value, what):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
    ):
        raise errors.ConfigError(
            f"imresize: {what} must be an integer >= 1, got {value!r}; "
            "pass a positive whole number of pixels."
        )
    return int(value)


def _check_scale(value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise errors.ConfigError(
            f"imresize: scale must be a finite Python number > 0, got "
            f"{value!r}; pass e.g. scale=1/4 to shrink 4 times."
        )
    return float(value)


def contributions(in_length, out_length, scale, antialiasing=True):
    """Taps of one 1-D pass, as MATLAB imresize's `contributions`.

    Args:
        in_length: input length along the axis.
        out_length: output length along the axis.
        scale: out / in scale factor of the axis (MATLAB keeps exactly the
            user's scale in scale mode, e.g. 1/3 for 100 -> 34).
        antialiasing: widen the kernel by 1 / scale when scale < 1.

    Returns:
        (weights, indices): float64 [out_length, P] and int64
        [out_length, P] 0-based input indices, mirrored at the edges; the
        columns whose weights are all zero are removed as MATLAB does.
    """
    in_length = _check_length(in_length, "input length")
    out_length = _check_length(out_length, "output length")
    scale = _check_scale(scale)
    if scale < 1 and antialiasing:
        # A wider, lower kernel low-pass filters before decimation.
        def kernel(x):
            return scale * cubic(scale * x)

        kernel_width = KERNEL_WIDTH / scale
        if kernel_width > 1e6:
            # MATLAB would try too; a clear error beats a MemoryError.
            raise errors.ConfigError(
                f"imresize: scale {scale!r} is too small (kernel of "
                f"{kernel_width:.3g} taps); shrink in several steps or "
                "pass antialiasing=False."
            )
    else:
        kernel = cubic
        kernel_width = KERNEL_WIDTH
    # Output pixel x (1-based) sits at u in input coordinates (1-based).
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    # One extra tap each side covers the kernel's full support.
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    # Symmetric padding: index i beyond an edge reads its mirror image.
    aux = np.concatenate(
        [np.arange(1, in_length + 1), np.arange(in_length, 0, -1)]
    )
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep] - 1


@functools.lru_cache(maxsize=512)
def resize_weights(in_size, out_size, scale, antialiasing=True):
    """Dense [out_size, in_size] float64 matrix of one MATLAB bicubic pass.

    Row i holds the weights MATLAB's `contributions` gives output pixel i,
    summed over taps that mirror onto the same input pixel, so resizing one
    axis is `matrix @ x`. Cached; the result is read-only.

    Args:
        in_size: input length along the axis.
        out_size: output length along the axis.
        scale: the axis' scale factor as MATLAB uses it (scale mode: the
            user's scale; size mode: out_size / in_size).
        antialiasing: widen the kernel by 1 / scale when scale < 1.

    Returns:
        numpy float64 [out_size, in_size], read-only.
    """
    weights, indices = contributions(in_size, out_size, scale, antialiasing)
    matrix = np.zeros((int(out_size), int(in_size)), dtype=np.float64)
    rows = np.broadcast_to(np.arange(int(out_size))[:, None], indices.shape)
    np.add.at(matrix, (rows, indices), weights)
    matrix.setflags(write=False)
    return matrix


def output_size_and_scale(in_size, scale=None, output_size=None):
    """MATLAB's output size and per-axis scales of `imresize`.

    Args:
        in_size: (height, width) of the input.
        scale: one number for both axes, or (scale_h, scale_w).
        output_size: (height, width) of the output.
        Exactly one of `scale` and `output_size` is given.

    Returns:
        ((out_h, out_w), (scale_h, scale_w)): scale mode gives
        ceil(in * scale) with the scale kept as is; size mode gives the
        scale out / in.
    """
    if (scale is None) == (output_size is None):
        raise errors.ConfigError(
            "imresize: give exactly one of scale= and output_size=, e.g. "
            "scale=1/4 or output_size=(100, 100)."
        )
    in_h = _check_length(in_size[0], "input height")
    in_w = _check_length(in_size[1], "input width")
    if scale is not None:
        if isinstance(scale, (tuple, list)):
            if len(scale) != 2:
                raise errors.ConfigError(
                    f"imresize: scale must be a number or (scale_h, "
                    f"scale_w), got {scale!r}; pass one or two numbers."
                )
            scale_h, scale_w = scale
        else:
            scale_h = scale_w = scale
        scale_h, scale_w = _check_scale(scale_h), _check_scale(scale_w)
        out_h = math.ceil(scale_h * in_h)
        out_w = math.ceil(scale_w * in_w)
        return (out_h, out_w), (scale_h, scale_w)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise errors.ConfigError(
            f"imresize: output_size must be (height, width), got "
            f"{output_size!r}; pass two whole numbers."
        )
    out_h = _check_length(output_size[0], "output height")
    out_w = _check_length(output_size[1], "output width")
    return (out_h, out_w), (out_h / in_h, out_w / in_w)


def _round_saturate(x, dtype):
    """Round half away from zero, then saturate to `dtype`'s range.

    MATLAB casts each pass back to the integer class this way; tf.round
    would round half to even instead. Clipping first is equivalent because
    the bounds are whole numbers, and it keeps the floor trick exact.
    """
    x = tf.clip_by_value(x, dtype.min, dtype.max)
    magnitude = tf.abs(x)
    whole = tf.floor(magnitude)
    rounded = whole + tf.cast(magnitude - whole >= 0.5, x.dtype)
    if dtype.is_unsigned:
        return rounded
    return tf.sign(x) * rounded


def _is_identity(plan):
    if isinstance(plan, tuple):
        weights, indices = plan
        return (
            weights.shape[1] == 1
            and np.all(weights == 1)
            and np.array_equal(indices[:, 0], np.arange(len(indices)))
        )
    return plan.shape[0] == plan.shape[1] and np.array_equal(
        plan, np.eye(plan.shape[0])
    )


def _matmul_pass(x, axis, matrix):
    w = tf.constant(matrix, dtype=x.dtype)
    if axis == "h":
        return tf.einsum("oh,...hwc->...owc", w, x)
    return tf.einsum("ow,...wc->...oc", w, x)


def _taps_pass(x, axis, weights, indices):
    # MATLAB's resizer accumulates out = (((0 + w0 x0) + w1 x1) + ...) in
    # tap order; rounding each product and sum on its own reproduces its
    # double results bit for bit (a matmul reorders and fuses them). The
    # taps run in a while_loop because grappler would rewrite an unrolled
    # chain of adds into one AddN, which sums in another order.
    gather_axis = -3 if axis == "h" else -2
    # [P, out, 1, 1] along H, [P, out, 1] along W: one weight per output.
    tail = (1, 1) if axis == "h" else (1,)
    w = tf.constant(
        weights.T.reshape(weights.shape[::-1] + tail), dtype=x.dtype
    )
    idx = tf.constant(indices.T, dtype=tf.int32)  # [P, out]
    num_taps = weights.shape[1]

    def tap(k):
        return tf.gather(x, idx[k], axis=gather_axis) * w[k]

    def body(k, out):
        return k + 1, out + tap(k)

    _, out = tf.while_loop(
        lambda k, out: k < num_taps, body, (tf.constant(1), tap(0))
    )
    return out


# No tensor-dependent Python control flow here: AutoGraph would only slow
# down every trace (it converts the whole call tree, NumPy code included).
@tf.autograph.experimental.do_not_convert
def resize_with_weights(images, weights_h, weights_w, rows_first=True):
    """Applies two precomputed 1-D passes to [.., H, W, C] images.

    Args:
        images: tensor [H, W, C] or [B, H, W, C] with static H, W; an
            integer (uint8, uint16, int16) or float dtype.
        weights_h: the pass along H: a numpy [out_h, H] matrix from
            `resize_weights` (applied as one matmul), or a (weights,
            indices) pair from `contributions` (taps summed one by one in
            MATLAB's order).
        weights_w: the pass along W, in the same form.
        rows_first: resize along H before W (MATLAB: the axis with the
            smaller scale first, H on a tie).

    Returns:
        [.., out_h, out_w, C] of the input dtype. Integer inputs are computed
        in float64 and rounded and saturated after each pass; float64 inputs
        are computed in float64, other floats in float32.
    """
    dtype = images.dtype
    if dtype in _INT_DTYPES or dtype == tf.float64:
        # float64 keeps integer rounding ties where MATLAB puts them.
        compute_dtype = tf.float64
    else:
        compute_dtype = tf.float32
    x = tf.cast(images, compute_dtype)
    passes = [("h", weights_h), ("w", weights_w)]
    if not rows_first:
        passes.reverse()
    for axis, plan in passes:
        if _is_identity(plan):
            # An exact identity (scale 1): skipping it changes nothing.
            continue
        if isinstance(plan, tuple):
            x = _taps_pass(x, axis, *plan)
        else:
            x = _matmul_pass(x, axis, plan)
        if dtype.is_integer:
            x = _round_saturate(x, dtype)
    return tf.cast(x, dtype)


def axis_plan(in_size, out_size, scale, antialiasing=True, summation="matmul"):
    """The precomputed form of one 1-D pass for `resize_with_weights`.

    Args:
        in_size, out_size, scale, antialiasing: as `resize_weights`.
        summation: "matmul" (a dense matrix) or "matlab" (MATLAB's taps).

    Returns:
        A read-only numpy matrix, or a read-only (weights, indices) pair.
    """
    if summation == "matmul":
        return resize_weights(in_size, out_size, scale, bool(antialiasing))
    if summation == "matlab":
        return _cached_contributions(
            in_size, out_size, scale, bool(antialiasing)
        )
    raise errors.ConfigError(
        f"imresize: summation must be 'matmul' or 'matlab', got "
        f"{summation!r}; use 'matlab' only to match MATLAB bit for bit."
    )


@functools.lru_cache(maxsize=512)
def _cached_contributions(in_size, out_size, scale, antialiasing):
    weights, indices = contributions(in_size, out_size, scale, antialiasing)
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


@tf.autograph.experimental.do_not_convert
def imresize(
    images, scale=None, output_size=None, antialiasing=True, summation="matmul"
):
    """Bicubic resize with MATLAB `imresize(I, scale, 'bicubic')` semantics.

    Works eagerly, inside `tf.function` and `tf.data` map functions, on CPU
    and GPU. See the module docstring for the MATLAB rules it follows.

    Args:
        images: [H, W, C] or [B, H, W, C] tensor or numpy array; uint8,
            uint16, int16 or float. H and W must be static.
        scale: a Python number (or (scale_h, scale_w)) as MATLAB's
            `imresize(I, scale)`; output ceil(in * scale).
        output_size: (height, width) as MATLAB's `imresize(I, [h w])`.
            Exactly one of `scale` and `output_size` is given.
        antialiasing: MATLAB's 'Antialiasing' option (on by default for
            bicubic); widens the kernel when shrinking.
        summation: "matmul" (default) applies each pass as one matmul;
            results agree with MATLAB to ~1e-15 but a float result lying
            on an exact tie (e.g. y * 255 = k + 0.5) may round the other
            way. "matlab" sums each output's taps one by one in MATLAB's
            order, reproducing its double arithmetic bit for bit; it is
            several times slower on small images (one gather per tap).
            With non-finite inputs the matmuls spread NaN along the whole
            row or column (0 * inf), MATLAB only to the taps reading it.

    Returns:
        The resized images, same rank and dtype as `images` (integer classes
        rounded half away from zero and saturated after each 1-D pass, as
        MATLAB does).

    Raises:
        fsr_fer_tf.errors.ConfigError: bad scale/output size, wrong rank,
            unsupported dtype, or H/W unknown at trace time.
    """
    images = tf.convert_to_tensor(images)
    rank = images.shape.rank
    if rank not in (3, 4):
        raise errors.ConfigError(
            f"imresize: images must be [H, W, C] or [B, H, W, C], got shape "
            f"{images.shape}; add a channel axis with x[..., None]."
        )
    if images.dtype not in _INT_DTYPES + _FLOAT_DTYPES:
        raise errors.ConfigError(
            f"imresize: unsupported dtype {images.dtype.name}; cast to "
            "uint8, uint16, int16 or a float type first."
        )
    in_h, in_w = images.shape[-3], images.shape[-2]
    if in_h is None or in_w is None:
        raise errors.ConfigError(
            f"imresize: height and width must be static, got shape "
            f"{images.shape}; call tf.ensure_shape(x, [H, W, C]) (or "
            "set_shape) before resizing."
        )
    (out_h, out_w), (scale_h, scale_w) = output_size_and_scale(
        (in_h, in_w), scale, output_size
    )
    plan_h = axis_plan(in_h, out_h, scale_h, antialiasing, summation)
    plan_w = axis_plan(in_w, out_w, scale_w, antialiasing, summation)
    # MATLAB sorts the scales stably: the smaller one first, rows on a tie.
    return resize_with_weights(
        images, plan_h, plan_w, rows_first=scale_h <= scale_w
    )


def default_reference_dir():
    """The shared MATLAB reference folder, ../shared/testdata beside the
    repository (`fsr_fer_tf/data/../../../shared/testdata/matlab_imresize`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(
        os.path.join(
            here, "..", "..", "..", "shared", "testdata", "matlab_imresize"
        )
    )


def tf_resize_gap(
    reference_npz=None, scales=(2, 3, 4, 5, 6, 7, 8), antialias=True
):
    """Measures how far `tf.image.resize(..., 'bicubic')` is from MATLAB.

    On the shared 100x100 crop (`reference_100x100.npz`, input_uint8 / 255),
    TF shrinks to ceil(100 / s) and brings the result back to 100x100; both
    are compared with MATLAB's double outputs `down_x{s}_double` and
    `up_x{s}_to100_double`. Also reports this module's own error as a check.

    Args:
        reference_npz: path of reference_100x100.npz; default: the shared
            test data beside the repository.
        scales: the integer down-scaling factors s to measure.
        antialias: passed to tf.image.resize (TF's default is False).

    Returns:
        dict s -> dict with "down_mean", "down_max", "trip_mean",
        "trip_max" (TF, grey levels of 255) and "ours_max" (this module's
        max error over both arrays, grey levels).
    """
    if reference_npz is None:
        reference_npz = os.path.join(
            default_reference_dir(), "reference_100x100.npz"
        )
    if not os.path.isfile(reference_npz):
        raise errors.DataError(
            f"tf_resize_gap: {reference_npz} is missing; pass "
            "reference_npz= the path of reference_100x100.npz."
        )
    with np.load(reference_npz) as ref:
        ref = dict(ref)
    hr = ref["input_uint8"].astype(np.float64) / 255.0
    size = hr.shape[:2]
    gap = {}
    for s in scales:
        down_ref = ref[f"down_x{s}_double"]
        trip_ref = ref[f"up_x{s}_to100_double"]
        small = down_ref.shape[:2]
        tf_down = tf.image.resize(
            hr, small, method="bicubic", antialias=antialias
        )
        tf_trip = tf.image.resize(
            tf_down, size, method="bicubic", antialias=antialias
        )
        ours_down = imresize(hr, scale=1.0 / s)
        ours_trip = imresize(ours_down, output_size=size)
        down_err = 255.0 * np.abs(tf_down.numpy() - down_ref)
        trip_err = 255.0 * np.abs(tf_trip.numpy() - trip_ref)
        ours = 255.0 * max(
            np.max(np.abs(ours_down.numpy() - down_ref)),
            np.max(np.abs(ours_trip.numpy() - trip_ref)),
        )
        gap[s] = {
            "down_mean": float(np.mean(down_err)),
            "down_max": float(np.max(down_err)),
            "trip_mean": float(np.mean(trip_err)),
            "trip_max": float(np.max(trip_err)),
            "ours_max": float(ours),
        }
    return gap
