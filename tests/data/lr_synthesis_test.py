"""Tests of the paper's LR synthesis (MATLAB bicubic down by s, back up)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import errors
from fsr_fer_tf.data import lr_synthesis
from fsr_fer_tf.data.lr_synthesis import LRSynthesizer, synthesize_lr

SCALES = (2, 3, 4, 5, 6, 7, 8)


@pytest.fixture(scope="module")
def ref100(shared_testdata):
    path = os.path.join(
        shared_testdata, "matlab_imresize", "reference_100x100.npz"
    )
    with np.load(path) as data:
        return dict(data)


@pytest.fixture(scope="module")
def synth():
    return LRSynthesizer()


@pytest.fixture(scope="module")
def faces(ref100):
    # The reference crop, plus two random faces to make a batch.
    rng = np.random.RandomState(2)
    noise = rng.randint(0, 256, (2, 100, 100, 3)).astype(np.uint8)
    return np.concatenate([ref100["input_uint8"][None], noise])


@pytest.fixture(scope="module")
def switched(synth):
    """upsampled() traced once with the scale as a tensor (switch_case)."""
    return tf.function(
        synth.upsampled,
        input_signature=[
            tf.TensorSpec([None, 100, 100, 3], tf.uint8),
            tf.TensorSpec([], tf.int32),
        ],
    )


def test_sizes_dtypes_and_matlab_reference(ref100):
    hr = ref100["input_uint8"]
    for s in SCALES:
        lr, up = synthesize_lr(hr, s)
        n = -(-100 // s)  # ceil(100 / s)
        assert lr.shape == (n, n, 3) and up.shape == (100, 100, 3)
        assert lr.dtype == tf.uint8 and up.dtype == tf.uint8
        np.testing.assert_array_equal(lr.numpy(), ref100[f"down_x{s}_uint8"])
        np.testing.assert_array_equal(
            up.numpy(), ref100[f"up_x{s}_to100_uint8"]
        )
        lr, up = synthesize_lr(hr / 255.0, s)
        assert lr.dtype == tf.float64
        np.testing.assert_allclose(
            up.numpy(), ref100[f"up_x{s}_to100_double"], rtol=0, atol=1e-10
        )


def test_scale_one_is_identity(faces, synth):
    lr, up = synthesize_lr(faces, 1)
    np.testing.assert_array_equal(lr.numpy(), faces)
    np.testing.assert_array_equal(up.numpy(), faces)
    identity = LRSynthesizer(scales=(1, 2))
    np.testing.assert_array_equal(identity.upsampled(faces, 1).numpy(), faces)
    np.testing.assert_array_equal(
        identity.upsampled(faces, tf.constant(1)).numpy(), faces
    )


def test_static_paths_agree_and_batch_equals_per_image(faces, synth):
    for s in SCALES:
        got = synth.upsampled(faces, s).numpy()
        assert got.shape == faces.shape and got.dtype == np.uint8
        np.testing.assert_array_equal(got, synthesize_lr(faces, s)[1])
        for i in range(len(faces)):
            np.testing.assert_array_equal(
                got[i], synth.upsampled(faces[i], s).numpy()
            )
        # An eager scale tensor takes the same static path.
        np.testing.assert_array_equal(
            synth.upsampled(faces, tf.constant(s)).numpy(), got
        )
        np.testing.assert_array_equal(
            synth.native(faces, s).numpy(), synthesize_lr(faces, s)[0]
        )
        assert synth.native_size(s) == -(-100 // s)


def test_switch_case_equals_static_for_every_scale(faces, synth, switched):
    for s in SCALES:
        np.testing.assert_array_equal(
            switched(faces, tf.constant(s)).numpy(),
            synth.upsampled(faces, s).numpy(),
        )


def test_tf_data_map_with_random_scale_equals_eager(faces, synth):
    def to_lr(face, seed):
        s = tf.random.stateless_uniform(
            [], seed, minval=2, maxval=9, dtype=tf.int32
        )
        return synth.upsampled(face, s), s

    seeds = tf.constant([[i, 7] for i in range(len(faces))], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((faces, seeds)).map(
        to_lr, num_parallel_calls=2
    )
    for face, (lr, s) in zip(faces, ds.as_numpy_iterator()):
        np.testing.assert_array_equal(lr, synth.upsampled(face, int(s)))


def test_float_faces(faces, synth, switched):
    hr = faces.astype(np.float32) / 255.0
    got = synth.upsampled(hr, 5)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(
        got.numpy(), synthesize_lr(hr.astype(np.float64), 5)[1], atol=1e-5
    )


def test_unknown_scale_does_not_pass(faces, synth, switched):
    with pytest.raises(errors.ConfigError, match="not one of"):
        synth.upsampled(faces, tf.constant(9))
    with pytest.raises(errors.ConfigError, match="not one of"):
        synth.upsampled(faces, 9)
    with pytest.raises(errors.ConfigError, match="not one of"):
        LRSynthesizer(scales=(2, 4)).upsampled(faces, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not one of"):
        switched(faces, tf.constant(9))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not one of"):
        switched(faces, tf.constant(0))


@pytest.mark.parametrize(
    "scale", [0, -2, 1.5, 101, True, "2", None, float("nan")]
)
def test_bad_scale_raises_config_error(faces, scale):
    with pytest.raises(errors.ConfigError, match="scale") as info:
        synthesize_lr(faces, scale)
    assert "\n" not in str(info.value)


def test_integral_float_scale_is_accepted(faces):
    np.testing.assert_array_equal(
        synthesize_lr(faces, 4.0)[1].numpy(), synthesize_lr(faces, 4)[1]
    )


def test_bad_faces_and_settings_raise_config_error(faces, synth):
    with pytest.raises(errors.ConfigError, match="expected HR faces"):
        synthesize_lr(faces[:, :50], 2)
    with pytest.raises(errors.ConfigError, match="expected HR faces"):
        synth.upsampled(faces[0, :, :, 0], 2)
    with pytest.raises(errors.ConfigError, match="scale tensor"):
        synth.upsampled(faces, tf.constant([2, 3]))
    with pytest.raises(errors.ConfigError, match="scale tensor"):
        synth.upsampled(faces, tf.constant(2.0))
    with pytest.raises(errors.ConfigError, match="scales"):
        LRSynthesizer(scales=())
    with pytest.raises(errors.ConfigError, match="scale"):
        LRSynthesizer(scales=(2, 200))
    with pytest.raises(errors.ConfigError, match="image_size"):
        LRSynthesizer(image_size=0)
    # Another face size works when it is declared.
    small = LRSynthesizer(scales=(2, 3), image_size=48)
    assert small.upsampled(faces[:, :48, :48], 3).shape == (3, 48, 48, 3)
    # MATLAB's size is ceil(S * (1 / s)) in doubles: 4, not 3, for 273 / 91.
    odd = LRSynthesizer(scales=[91], image_size=273)
    assert odd.native_size(91) == 4
    assert odd.native(np.zeros((273, 273, 1)), 91).shape == (4, 4, 1)
    assert lr_synthesis.DEFAULT_SCALES == SCALES
