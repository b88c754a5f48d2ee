"""Tests of the paired HR/LR tf.data pipeline on tiny in-memory and file
splits."""

import math
import os

import cv2
import numpy as np
import pytest

from fsr_fer_tf import errors
from fsr_fer_tf.data import imresize as imresize_lib
from fsr_fer_tf.data import lr_synthesis
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.data import sources

N = 10
S = 100


def _faces(n, size, seed=0):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(f, (7, 7), 2.0) for f in faces])


@pytest.fixture(scope="module")
def split():
    return sources.Split(
        name="train", labels=np.arange(N) % 7, images=_faces(N, S)
    )


def _collect(ds):
    batches = [{k: v.numpy() for k, v in b.items()} for b in ds]
    return batches, {
        k: np.concatenate([b[k] for b in batches]) for k in batches[0]
    }


def test_training_batches(split):
    batches, out = _collect(
        pipeline.make_dataset(split, batch_size=4, training=True)
    )
    assert len(batches) == 2  # the partial batch of 2 is dropped
    first = batches[0]
    assert first["hr"].shape == (4, S, S, 3) and first["hr"].dtype == np.float32
    assert first["lr"].shape == (4, S, S, 3) and first["lr"].dtype == np.float32
    for key in ("label", "scale", "index"):
        assert first[key].shape == (4,) and first[key].dtype == np.int32
    for key in ("hr", "lr"):
        assert out[key].min() >= 0 and out[key].max() <= 255
        np.testing.assert_array_equal(out[key], np.round(out[key]))
    assert set(out["scale"]) <= set(pipeline.DEFAULT_SCALES)
    assert len(set(out["index"])) == 8
    np.testing.assert_array_equal(out["label"], split.labels[out["index"]])


def test_eval_order_and_lr_match_synthesize_lr(split):
    batches, out = _collect(
        pipeline.make_dataset(split, batch_size=4, training=False, scales=(3,))
    )
    assert [len(b["index"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(out["index"], np.arange(N))
    np.testing.assert_array_equal(out["hr"], split.images)
    _, expected = lr_synthesis.synthesize_lr(split.images, 3)
    np.testing.assert_array_equal(out["lr"], expected.numpy())
    assert (out["scale"] == 3).all()


def test_scale_one_is_identity(split):
    _, out = _collect(
        pipeline.make_dataset(split, batch_size=5, training=False, scales=(1,))
    )
    np.testing.assert_array_equal(out["lr"], out["hr"])


def test_lr_native(split):
    _, out = _collect(
        pipeline.make_dataset(
            split, batch_size=5, training=False, scales=(3,), lr_native=True
        )
    )
    assert out["lr_native"].shape == (N, math.ceil(S / 3), 34, 3)
    native, _ = lr_synthesis.synthesize_lr(split.images, 3)
    np.testing.assert_array_equal(out["lr_native"], native.numpy())


def test_lr_native_mixed_scales_padded(split):
    # Each face's native LR in the top-left of the x2 size (50), zeros
    # beyond it; the same pixels as a one-scale dataset of that face.
    _, out = _collect(
        pipeline.make_dataset(
            split,
            batch_size=5,
            training=True,
            scales=(2, 3, 8),
            seed=3,
            lr_native=True,
        )
    )
    assert out["lr_native"].shape == (N, 50, 50, 3)
    assert set(out["scale"].tolist()) > {2}  # mixed
    for i, s in enumerate(out["scale"]):
        n = math.ceil(S / s)
        native, _ = lr_synthesis.synthesize_lr(out["hr"][i].astype(np.uint8), s)
        np.testing.assert_array_equal(out["lr_native"][i, :n, :n], native)
        assert not out["lr_native"][i, n:].any()
        assert not out["lr_native"][i, :, n:].any()


def test_deterministic_per_seed_and_epoch(split):
    def run(**kwargs):
        return _collect(
            pipeline.make_dataset(
                split, batch_size=3, training=True, scales=(2, 3), **kwargs
            )
        )[1]

    a = run(seed=1, epoch=2)
    b = run(seed=1, epoch=2, num_parallel_calls=1)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = run(seed=1, epoch=3)
    assert not np.array_equal(a["index"], c["index"])
    d = run(seed=2, epoch=2)
    assert not np.array_equal(a["hr"], d["hr"])


def test_skip_batches_gives_the_tail_of_the_epoch(split):
    full, _ = _collect(
        pipeline.make_dataset(
            split, batch_size=3, training=True, epoch=4, scales=(2, 5)
        )
    )
    tail, _ = _collect(
        pipeline.make_dataset(
            split,
            batch_size=3,
            training=True,
            epoch=4,
            scales=(2, 5),
            skip_batches=2,
        )
    )
    assert len(full) == 3 and len(tail) == 1
    for key in full[2]:
        np.testing.assert_array_equal(full[2][key], tail[0][key])


def _flip_shift_of(hr, face, max_shift):
    """(flip, dx, dy) such that hr is face flipped then shifted, or None."""
    m = max_shift
    for flip in (False, True):
        source = face[:, ::-1] if flip else face
        for dy in range(-m, m + 1):
            for dx in range(-m, m + 1):
                moved = source[m - dy : S - m - dy, m - dx : S - m - dx]
                if np.array_equal(hr[m : S - m, m : S - m], moved):
                    return flip, dx, dy
    return None


def test_flip_and_shift_keep_pairs_aligned(split):
    _, out = _collect(
        pipeline.make_dataset(
            split,
            batch_size=5,
            training=True,
            max_rotation=0.0,
            seed=5,
            scales=(2, 4),
        )
    )
    found = []
    for i, index in enumerate(out["index"]):
        hr = out["hr"][i].astype(np.uint8)
        move = _flip_shift_of(hr, split.images[index], max_shift=4)
        assert move is not None, f"face {index} is not a flip+shift"
        found.append(move)
        _, lr = lr_synthesis.synthesize_lr(hr, int(out["scale"][i]))
        np.testing.assert_array_equal(out["lr"][i], lr.numpy())
    assert {flip for flip, _, _ in found} == {False, True}
    assert any(dx or dy for _, dx, dy in found)


def test_flip_only_and_no_flip(split):
    _, out = _collect(
        pipeline.make_dataset(
            split,
            batch_size=5,
            training=True,
            max_shift=0,
            max_rotation=0.0,
            scales=(4,),
            seed=1,
        )
    )
    mirrored = []
    for hr, index in zip(out["hr"], out["index"]):
        face = split.images[index]
        assert np.array_equal(hr, face) or np.array_equal(hr, face[:, ::-1])
        mirrored.append(np.array_equal(hr, face[:, ::-1]))
    assert any(mirrored) and not all(mirrored)
    _, lr = lr_synthesis.synthesize_lr(out["hr"].astype(np.uint8), 4)
    np.testing.assert_array_equal(out["lr"], lr.numpy())
    _, out = _collect(
        pipeline.make_dataset(
            split,
            batch_size=5,
            training=True,
            flip=False,
            max_rotation=0.0,
            scales=(4,),
            seed=1,
        )
    )
    for hr, index in zip(out["hr"], out["index"]):
        move = _flip_shift_of(hr.astype(np.uint8), split.images[index], 4)
        assert move is not None and not move[0]


def test_rotation_then_lr_of_augmented_hr(split):
    _, out = _collect(
        pipeline.make_dataset(
            split, batch_size=5, training=True, seed=6, scales=(3, 8)
        )
    )
    changed = 0
    for i, index in enumerate(out["index"]):
        hr = out["hr"][i].astype(np.uint8)
        changed += _flip_shift_of(hr, split.images[index], 4) is None
        _, lr = lr_synthesis.synthesize_lr(hr, int(out["scale"][i]))
        np.testing.assert_array_equal(out["lr"][i], lr.numpy())
    assert changed > 0  # rotated faces are no longer a mere flip + shift


@pytest.mark.parametrize("scales", [(), (0,), (S + 1,), (2.5,), (2, -1)])
def test_bad_scales(split, scales):
    with pytest.raises(errors.ConfigError):
        pipeline.make_dataset(
            split, batch_size=2, training=False, scales=scales
        )


def test_empty_split():
    empty = sources.Split(
        name="test", labels=[], images=np.zeros((0, S, S, 3), np.uint8)
    )
    with pytest.raises(errors.DataError, match="empty"):
        pipeline.make_dataset(empty, batch_size=2, training=False)


@pytest.fixture(scope="module")
def file_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    faces = _faces(4, S, seed=1)
    paths = [
        os.path.join(root, n)
        for n in ("rgb.png", "grey.png", "rgba.png", "small.bmp")
    ]
    cv2.imwrite(paths[0], faces[0][..., ::-1])
    cv2.imwrite(paths[1], faces[1][..., 0])
    alpha = np.full((S, S, 1), 7, np.uint8)
    cv2.imwrite(paths[2], np.concatenate([faces[2][..., ::-1], alpha], -1))
    small = faces[3][:48, :48]
    cv2.imwrite(paths[3], small[..., ::-1])
    return (
        sources.Split(name="test", labels=[0, 1, 2, 3], paths=paths),
        faces,
        small,
    )


def test_file_split_decoding_and_cache(file_split):
    split, faces, small = file_split
    images = pipeline.hr_images(split, S)
    assert images is pipeline.hr_images(split, S)  # decoded once
    images = images.numpy()
    assert images.shape == (4, S, S, 3)
    np.testing.assert_array_equal(images[0], faces[0])
    for c in range(3):  # grey -> RGB
        np.testing.assert_array_equal(images[1][..., c], faces[1][..., 0])
    np.testing.assert_array_equal(images[2], faces[2])  # alpha dropped
    np.testing.assert_array_equal(
        images[3], imresize_lib.imresize(small, output_size=(S, S)).numpy()
    )
    _, out = _collect(
        pipeline.make_dataset(split, batch_size=4, training=False, scales=(2,))
    )
    np.testing.assert_array_equal(out["hr"], images)


def test_small_in_memory_faces_are_resized():
    small = _faces(3, 48, seed=2)
    split = sources.Split(name="val", labels=[0, 1, 2], images=small)
    _, out = _collect(
        pipeline.make_dataset(split, batch_size=2, training=False, scales=(4,))
    )
    expected = imresize_lib.imresize(small, output_size=(S, S)).numpy()
    np.testing.assert_array_equal(out["hr"], expected)
    _, lr = lr_synthesis.synthesize_lr(expected, 4)
    np.testing.assert_array_equal(out["lr"], lr.numpy())


def test_unaligned_images_are_safe(split):
    # TF's kernels abort on buffers that are not 64-byte aligned; the cache
    # must not hand them one (a view one byte into a buffer is unaligned).
    buffer = np.zeros(split.images.nbytes + 1, np.uint8)[1:]
    images = buffer.reshape(split.images.shape)
    images[...] = split.images
    unaligned = sources.Split(name="train", labels=split.labels, images=images)
    _, out = _collect(
        pipeline.make_dataset(
            unaligned, batch_size=5, training=True, scales=(2,)
        )
    )
    assert out["hr"].shape == (N, S, S, 3)


def test_face_colour():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 12, 12, 1), dtype=np.uint8)
    grey_split = sources.Split(
        name="g", labels=np.zeros(20), images=np.repeat(grey, 3, axis=-1)
    )
    assert pipeline.face_colour(grey_split, 12) == "grey"
    colour = np.repeat(grey, 3, axis=-1)
    colour[7, 3, 4, 2] ^= 1  # one channel of one pixel of one face
    rgb_split = sources.Split(name="c", labels=np.zeros(20), images=colour)
    assert pipeline.face_colour(rgb_split, 12, sample=20) == "rgb"
