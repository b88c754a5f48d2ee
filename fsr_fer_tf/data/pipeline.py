"""The tf.data pipeline of paired (HR, LR) faces.

    split -> decoded uint8 HR faces, cached in memory (`hr_images`)
          -> epoch order (a seeded permutation when training), minus the
             batches already consumed (`epoch_order`, `skip_batches`)
          -> per face: its random draws (scale, flip, shift, angle;
             `face_draws`)
          -> batch -> per batch, in parallel (`pair_maker`): gather the
             faces, resize them to image_size (MATLAB bicubic) if needed,
             augment the uint8 HR faces (flip + shift + rotation as one
             projective transform; `augment_batch`), synthesise each LR
             face from its augmented HR face (one batched MATLAB-bicubic
             synthesis per scale present; `LRSynthesis`)
          -> prefetch

`make_dataset` checks its settings once (`PairSettings`) and chains these.

Working per batch rather than per face matters: with 100x100 faces most of
the cost of an op is its fixed overhead (tools/bench_input.py).

The images are NOT standardised: the model's first layer does CovPoolFER's
per-image standardisation, so the pipeline (and an exported model's input) is
raw 0..255 pixels, as float32 values of uint8-rounded images.

Determinism: every random draw of face `index` in epoch `epoch` comes from
stateless ops keyed by (seed, epoch, index), and the epoch's order from a
NumPy generator seeded with (seed, epoch). So the batches depend on (seed,
epoch) only, not on parallelism or on where a resumed epoch starts.
"""

import dataclasses
import math
import numbers

import numpy as np
import tensorflow as tf

from fsr_fer_tf import errors
from fsr_fer_tf.data import images as images_lib
from fsr_fer_tf.data import imresize as imresize_lib
from fsr_fer_tf.data import lr_synthesis

DEFAULT_SCALES = (2, 3, 4, 5, 6, 7, 8)
# "matlab" is the paper's synthesis; the others exist to measure it against
# (tools/bench_input.py), never to train a model reported as the paper's.
LR_SYNTHESIS = ("matlab", "tf_bicubic", "none")
FILL_MODES = ("reflect", "constant", "nearest", "wrap")

# Attribute of a `sources.Split` that memoises its decoded HR faces.
_CACHE_ATTR = "_fsr_hr_cache"
# Buffer alignment TF's CPU kernels (Eigen) require.
_ALIGNMENT = 64
# Sub-seeds of one face: scale, flip, shift, rotation.
_NUM_DRAWS = 4


def hr_images(split, image_size=100):
    """The split's faces as one uint8 tensor, decoded once and memoised.

    Path splits are decoded in parallel (with progress) and resized to
    image_size x image_size where their size differs. In-memory splits are
    kept at their own size (FER2013's 48x48 is 4x smaller than 100x100) and
    resized per batch in the pipeline.

    Args:
        split: a `sources.Split`.
        image_size: the side S of the HR face.

    Returns:
        uint8 tensor [N, h, w, 3]; (h, w) = (S, S) for path splits.
    """
    cache = split.__dict__.setdefault(_CACHE_ATTR, {})
    key = image_size if split.paths is not None else "images"
    if key not in cache:
        if split.paths is not None:
            array = images_lib.read_images(
                split.paths,
                image_size,
                resize_fn=lambda batch, size: imresize_lib.imresize(
                    batch, output_size=size
                ),
                what=f"decoding the {split.name} split",
            )
        else:
            array = np.asarray(split.images)
            if (
                array.dtype != np.uint8
                or array.ndim != 4
                or (array.shape[-1] != 3)
            ):
                raise errors.DataError(
                    f"the in-memory {split.name} split holds "
                    f"{array.dtype} {array.shape}; readers must return uint8 "
                    "[N, H, W, 3] RGB."
                )
        cache[key] = _as_tensor(array)
    return cache[key]


def face_colour(split, image_size=100, sample=512, seed=0):
    """ "grey" when the split's faces have R = G = B (FER-2013's 48x48 grey
    faces, repeated over RGB), else "rgb"; judged on a seeded sample of up
    to `sample` decoded faces (`hr_images`, memoised)."""
    images = hr_images(split, image_size)
    n = int(images.shape[0])
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.permutation(n)[: min(sample, n)])
    faces = np.asarray(tf.gather(images, picks))
    grey = np.array_equal(faces[..., 0], faces[..., 1]) and np.array_equal(
        faces[..., 1], faces[..., 2]
    )
    return "grey" if grey else "rgb"


def _as_tensor(array):
    """A uint8 tensor sharing `array`'s buffer where DLPack allows it.

    tf.convert_to_tensor copies at ~300 MB/s here, over a second for RAF-DB's
    train split; DLPack shares the buffer. TF's kernels need 64-byte aligned
    buffers (an unaligned one aborts the process), so an unaligned array is
    first copied into an aligned one by NumPy (~10x faster than TF's copy).
    The tensor keeps the buffer alive; writing to `array` afterwards may
    show through.
    """
    array = np.ascontiguousarray(array)
    if array.ctypes.data % _ALIGNMENT:
        array = _aligned_copy(array)
    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except Exception:  # noqa: BLE001 - old NumPy, read-only array, ...
        return tf.convert_to_tensor(array)


def _aligned_copy(array):
    """A C-contiguous copy of `array` whose data is _ALIGNMENT-aligned."""
    raw = np.empty(array.nbytes + _ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGNMENT
    out = raw[start : start + array.nbytes].view(array.dtype)
    out = out.reshape(array.shape)
    out[...] = array
    return out


def _check_int(value, name, low, high=None):
    ok = (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )
    if not ok:
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise errors.ConfigError(
            f"{name} must be a whole number {bound}, got {value!r}."
        )
    return int(value)


def check_scales(scales, image_size):
    """Validates the LR scales; returns them as a tuple of ints.

    Args:
        scales: sequence of integer down-scaling factors.
        image_size: the side S of the HR face.

    Returns:
        tuple of int, in the given order.

    Raises:
        errors.ConfigError: empty, or a scale < 1, > image_size or not
            whole.
    """
    if isinstance(scales, (numbers.Number, str)) or scales is None:
        scales = (scales,)
    scales = tuple(scales)
    if not scales:
        raise errors.ConfigError(
            "scales is empty; pass at least one LR scale, e.g. --scales=4 "
            "(the paper trains on 2..8)."
        )
    return tuple(lr_synthesis.check_scale(s, image_size) for s in scales)


def epoch_order(num_examples, training, seed, epoch):
    """Indices of the split in the order an epoch visits them.

    Args:
        num_examples: size of the split.
        training: shuffle (a permutation seeded by (seed, epoch)) or not.
        seed: the run's seed.
        epoch: the epoch number.

    Returns:
        int32 numpy [num_examples].
    """
    if not training:
        return np.arange(num_examples, dtype=np.int32)
    rng = np.random.default_rng([seed, epoch])
    return rng.permutation(num_examples).astype(np.int32)


def augment_transforms(flip, shift, angle, size):
    """Projective transforms doing a flip, then a shift, then a rotation.

    One transform per face, so the three augmentations cost one resampling
    (exact when the angle is 0: a flip and an integer shift only move
    pixels).

    Args:
        flip: bool [B], mirror left-right.
        shift: float32 [B, 2], (dx, dy) in pixels: out(x, y) = in(x - dx,
            y - dy).
        angle: float32 [B], radians, counter-clockwise about the centre.
        size: side of the square faces.

    Returns:
        float32 [B, 8], the output-to-input maps ImageProjectiveTransformV3
        takes (the rotation part as in keras.layers.RandomRotation).
    """
    c = tf.cos(angle)
    s = tf.sin(angle)
    extent = float(size - 1)
    # Output (x, y) -> before the rotation: (c x - s y + x0, s x + c y + y0).
    x0 = (extent - (c * extent - s * extent)) / 2.0
    y0 = (extent - (s * extent + c * extent)) / 2.0
    # -> before the shift: subtract (dx, dy); -> before the flip: x' = e - x.
    sign = tf.where(flip, -1.0, 1.0)
    offset = tf.where(flip, extent, 0.0)
    zero = tf.zeros_like(c)
    return tf.stack(
        [
            sign * c,
            -sign * s,
            sign * (x0 - shift[:, 0]) + offset,
            s,
            c,
            y0 - shift[:, 1],
            zero,
            zero,
        ],
        axis=1,
    )


def augment_faces(hr, transforms, fill_mode="reflect"):
    """Applies `augment_transforms` to a batch of uint8 faces.

    Args:
        hr: uint8 [B, S, S, 3].
        transforms: float32 [B, 8].
        fill_mode: how uncovered pixels are filled: "reflect" (mirror about
            the edge, edge pixel repeated, like scipy's "reflect"),
            "constant" (black), "nearest" or "wrap".

    Returns:
        uint8 [B, S, S, 3], bilinear, rounded to the nearest grey level.
        (The released CovPoolFER code rotates by U(-10, 10) degrees with
        scipy's misc.imrotate: bicubic, black corners; TF's transform op
        offers bilinear at most.)
    """
    size = hr.shape[1]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(hr, tf.float32),
        transforms=transforms,
        output_shape=[size, size],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    )
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _tf_bicubic_lr(hr, scale, size):
    """LR by tf.image.resize (bicubic, antialias); a benchmark baseline,
    several grey levels off MATLAB where size / scale is not whole."""
    small = -(-size // scale)
    x = tf.cast(hr, tf.float32)
    x = tf.image.resize(x, [small, small], "bicubic", antialias=True)
    x = tf.image.resize(x, [size, size], "bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def make_dataset(
    split,
    *,
    batch_size,
    training,
    scales=DEFAULT_SCALES,
    seed=0,
    epoch=0,
    image_size=100,
    augment=None,
    flip=True,
    max_shift=4,
    max_rotation=10.0,
    drop_remainder=None,
    lr_native=False,
    skip_batches=0,
    fill_mode="reflect",
    lr_synthesis_method="matlab",
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """A tf.data.Dataset of paired HR/LR faces for one epoch.

    Args:
        split: a `sources.Split` (paths or in-memory images).
        batch_size: faces per batch.
        training: shuffle with a permutation seeded by (seed, epoch); for
            evaluation the order is the split order.
        scales: LR down-scaling factors; each face draws one uniformly (pass
            one scale, e.g. (4,), to evaluate a scale). 1 gives lr == hr.
        seed: the run's seed.
        epoch: the epoch number (a new order and new draws per epoch).
        image_size: side S of the square HR face (the paper's 100).
        augment: flip/shift/rotate the HR face before LR synthesis; default:
            `training`.
        flip: random horizontal flips (when augmenting).
        max_shift: largest random shift in pixels (reflect padding).
        max_rotation: largest random rotation in degrees, either way.
        drop_remainder: drop the last partial batch; default: `training`.
        lr_native: add "lr_native", the small LR face [B, n, n, 3], n =
            ceil(S/s) (image-SR models). With several scales, each face's
            native LR sits in the top-left corner of [B, P, P, 3], P the
            native size of the smallest scale, zeros elsewhere
            (`lr_synthesis.LRSynthesizer.native_size`).
        skip_batches: batches of this epoch already consumed (resume); they
            are skipped before any decoding or synthesis.
        fill_mode: filling of the pixels the shift and rotation uncover
            ("reflect", "constant" (black, as the released code's
            misc.imrotate), "nearest", "wrap").
        lr_synthesis_method: "matlab" (the paper's MATLAB bicubic, via
            `lr_synthesis.LRSynthesizer`); "tf_bicubic" and "none" (lr =
            hr) are baselines for benchmarks only.
        num_parallel_calls: parallelism of the per-face map.

    Returns:
        tf.data.Dataset of dicts: "hr", "lr" float32 [B, S, S, 3] in
        0..255, "label", "scale", "index" (position in the split) int32 [B]
        (and "lr_native" float32 when asked).

    Raises:
        errors.ConfigError: bad scales or arguments.
        errors.DataError: an empty split.
    """
    pairs = PairSettings.checked(
        image_size=image_size,
        scales=scales,
        augment=training if augment is None else augment,
        flip=flip,
        max_shift=max_shift,
        max_rotation=max_rotation,
        fill_mode=fill_mode,
        lr_synthesis_method=lr_synthesis_method,
        lr_native=lr_native,
    )
    batch_size = _check_int(batch_size, "batch_size", 1)
    skip_batches = _check_int(skip_batches, "skip_batches", 0)
    seed = _check_int(seed, "seed", 0)
    epoch = _check_int(epoch, "epoch", 0)
    drop_remainder = training if drop_remainder is None else drop_remainder
    if len(split) == 0:
        raise errors.DataError(
            f"the {split.name} split is empty; add images or pick another "
            "split."
        )
    # Read: the decoded faces, then the epoch's order. Skipping indices
    # here, before any work, makes a resume cost nothing.
    images = hr_images(split, pairs.image_size)
    labels = tf.constant(split.labels, dtype=tf.int32)
    order = epoch_order(len(split), training, seed, epoch)
    order = order[skip_batches * batch_size :]
    parallel = dict(num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = tf.data.Dataset.from_tensor_slices(order)
    ds = ds.map(face_draws(pairs, seed, epoch), **parallel)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(pair_maker(pairs, images, labels), **parallel)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class PairSettings:
    """How `make_dataset` turns HR faces into pairs, checked once
    (`PairSettings.checked`); `make_dataset`'s arguments of the same names.

    Attributes:
        image_size: side S of the HR face.
        scales: the scale entries a face draws among (may repeat a value
            to weight it).
        distinct: their distinct values, sorted (one synthesis branch
            each).
        augment: flip/shift/rotate the HR face (`augment_batch`).
        flip: random horizontal flips (when augmenting).
        max_shift: largest random shift in pixels.
        max_rotation: largest random rotation in degrees.
        fill_mode: filling of the pixels the shift and rotation uncover.
        lr_synthesis_method: "matlab", "tf_bicubic" or "none".
        lr_native: also return the small LR face.
    """

    image_size: int
    scales: tuple
    distinct: tuple
    augment: bool
    flip: bool
    max_shift: int
    max_rotation: float
    fill_mode: str
    lr_synthesis_method: str
    lr_native: bool

    @classmethod
    def checked(
        cls,
        image_size,
        scales,
        augment,
        flip,
        max_shift,
        max_rotation,
        fill_mode,
        lr_synthesis_method,
        lr_native,
    ):
        """The settings, or a ConfigError naming the bad one."""
        image_size = _check_int(image_size, "image_size", 1)
        scales = check_scales(scales, image_size)
        max_shift = _check_int(max_shift, "max_shift", 0, image_size - 1)
        if not (
            isinstance(max_rotation, numbers.Real) and 0 <= max_rotation <= 180
        ):
            raise errors.ConfigError(
                f"max_rotation must be in 0..180 degrees, got {max_rotation!r}."
            )
        if fill_mode not in FILL_MODES:
            raise errors.ConfigError(
                f"fill_mode {fill_mode!r} is unknown; use one of "
                f"{', '.join(FILL_MODES)}."
            )
        if lr_synthesis_method not in LR_SYNTHESIS:
            raise errors.ConfigError(
                f"lr_synthesis_method {lr_synthesis_method!r} is unknown; use "
                f"one of {', '.join(LR_SYNTHESIS)}."
            )
        return cls(
            image_size=image_size,
            scales=scales,
            distinct=tuple(sorted(set(scales))),
            augment=bool(augment),
            flip=bool(flip),
            max_shift=max_shift,
            max_rotation=max_rotation,
            fill_mode=fill_mode,
            lr_synthesis_method=lr_synthesis_method,
            lr_native=bool(lr_native),
        )


def face_draws(pairs, seed, epoch):
    """fn(index) -> the random draws of one face: {"index", "branch" (its
    scale's position in `pairs.distinct`)[, "flip", "shift", "angle"]}.
    Every draw is keyed by (seed, epoch, index) alone."""
    # scales may repeat a value (to weight it): draw among the entries,
    # then group the batch by distinct value.
    branch_of_entry = tf.constant(
        [pairs.distinct.index(s) for s in pairs.scales], dtype=tf.int32
    )
    base_seed = tf.constant([seed, epoch], dtype=tf.int64)
    n_entries, max_shift = len(pairs.scales), pairs.max_shift

    def draw(index):
        key = tf.random.experimental.stateless_fold_in(base_seed, index)
        keys = tf.random.experimental.stateless_split(key, _NUM_DRAWS)
        entry = tf.random.stateless_uniform(
            [], keys[0], minval=0, maxval=n_entries, dtype=tf.int32
        )
        out = {"index": index, "branch": branch_of_entry[entry]}
        if pairs.augment:
            out["flip"] = tf.logical_and(
                pairs.flip, tf.random.stateless_uniform([], keys[1]) < 0.5
            )
            out["shift"] = tf.cast(
                tf.random.stateless_uniform(
                    [2],
                    keys[2],
                    minval=-max_shift,
                    maxval=max_shift + 1,
                    dtype=tf.int32,
                ),
                tf.float32,
            )
            out["angle"] = tf.random.stateless_uniform(
                [],
                keys[3],
                minval=-pairs.max_rotation,
                maxval=pairs.max_rotation,
            ) * (math.pi / 180.0)
        return out

    return draw


def augment_batch(pairs, hr, draws):
    """The batch's uint8 HR faces flipped, shifted and rotated by their
    draws (one resampling), or only flipped, or as they are."""
    if not pairs.augment:
        return hr
    if pairs.max_shift or pairs.max_rotation:
        transforms = augment_transforms(
            draws["flip"], draws["shift"], draws["angle"], pairs.image_size
        )
        return augment_faces(hr, transforms, pairs.fill_mode)
    if pairs.flip:
        # Flips alone (the released FSR recipe) need no resampling.
        return tf.where(
            draws["flip"][:, None, None, None], tf.reverse(hr, [2]), hr
        )
    return hr


class LRSynthesis:
    """The LR faces of a batch of HR faces, each at its drawn scale.

    One batched synthesis per scale present, instead of one switch per
    face: most of the cost is per-op overhead.
    """

    def __init__(self, pairs):
        self.pairs = pairs
        self.synthesizer = lr_synthesis.LRSynthesizer(
            pairs.distinct, pairs.image_size
        )

    def __call__(self, hr, branch):
        """(lr uint8 [B, S, S, 3], native or None) of HR faces `hr`."""
        pairs = self.pairs
        distinct = pairs.distinct
        if pairs.lr_synthesis_method == "none":
            return hr, (hr if pairs.lr_native else None)
        if len(distinct) == 1:
            native = None
            if pairs.lr_native:
                native = self.synthesizer.native(hr, distinct[0])
            return self._upsampled(hr, distinct[0]), native
        positions = tf.dynamic_partition(
            tf.range(tf.shape(hr)[0]), branch, len(distinct)
        )
        faces = tf.dynamic_partition(hr, branch, len(distinct))
        lr = tf.dynamic_stitch(
            positions, [self._upsampled(f, s) for f, s in zip(faces, distinct)]
        )
        native = None
        if pairs.lr_native:
            native = tf.dynamic_stitch(
                positions,
                [self._native_padded(f, s) for f, s in zip(faces, distinct)],
            )
        return lr, native

    def _upsampled(self, hr, scale):
        if self.pairs.lr_synthesis_method == "tf_bicubic":
            return _tf_bicubic_lr(hr, scale, self.pairs.image_size)
        return self.synthesizer.upsampled(hr, scale)

    def _native_padded(self, hr, scale):
        small = self.synthesizer.native(hr, scale)
        pad = self.synthesizer.native_size(self.pairs.distinct[0])
        pad -= small.shape[1]
        return tf.pad(small, [[0, 0], [0, pad], [0, pad], [0, 0]])


def pair_maker(pairs, images, labels):
    """fn(batch of draws) -> the batch of pairs: gather the faces, resize
    them to S (MATLAB bicubic) if needed, augment, synthesise LR."""
    size = pairs.image_size
    resize = tuple(images.shape[1:3]) != (size, size)
    synthesize = LRSynthesis(pairs)
    distinct_t = tf.constant(pairs.distinct, dtype=tf.int32)

    def make_pairs(draws):
        index, branch = draws["index"], draws["branch"]
        hr = tf.gather(images, index)  # (B, h, w, 3) uint8
        if resize:
            hr = imresize_lib.imresize(hr, output_size=(size, size))
        hr = augment_batch(pairs, hr, draws)
        lr, native = synthesize(hr, branch)
        out = {
            "hr": tf.cast(hr, tf.float32),
            "lr": tf.cast(lr, tf.float32),
            "label": tf.gather(labels, index),
            "scale": tf.gather(distinct_t, branch),
            "index": index,
        }
        if native is not None:
            out["lr_native"] = tf.cast(native, tf.float32)
        return out

    return make_pairs
