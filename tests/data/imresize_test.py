"""Tests of the MATLAB-compatible bicubic resize against MATLAB's outputs.

Reference data: ../shared/testdata/matlab_imresize (see its README.md).
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import errors
from fsr_fer_tf.data import imresize as imresize_lib
from fsr_fer_tf.data.imresize import imresize

SCALES = (2, 3, 4, 5, 6, 7, 8)


@pytest.fixture(scope="module")
def ref_dir(shared_testdata):
    return os.path.join(shared_testdata, "matlab_imresize")


@pytest.fixture(scope="module")
def ref100(ref_dir):
    with np.load(os.path.join(ref_dir, "reference_100x100.npz")) as data:
        return dict(data)


def _read_png(path):
    return tf.io.decode_png(tf.io.read_file(path)).numpy()


def _to_uint8_levels(y):
    # MATLAB's im2uint8 on doubles: clip, scale, round half away from zero.
    return np.floor(np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.int64)


# --- MATLAB's own outputs -------------------------------------------------


def test_small_cases_match_matlab(ref_dir):
    with open(os.path.join(ref_dir, "small_cases.json")) as f:
        data = json.load(f)
    assert len(data["cases"]) == 13
    for name, case in data["cases"].items():
        x = np.array(data["inputs"][case["input"]]["values"])[..., None]
        y = imresize(
            x,
            output_size=tuple(case["output_size"]),
            antialiasing=case["antialiasing"],
        ).numpy()[..., 0]
        expected = np.array(case["expected"])
        assert y.shape == expected.shape, name
        np.testing.assert_allclose(
            y, expected, rtol=0, atol=1e-10, err_msg=name
        )


@pytest.mark.parametrize("antialiasing", [True, False])
def test_butterfly_matches_matlab(ref_dir, antialiasing):
    image = _read_png(os.path.join(ref_dir, "butterfly.png")) / 255.0
    key = "down_123x234_aa" if antialiasing else "down_123x234_noaa"
    with np.load(os.path.join(ref_dir, "butterfly_matlab.npz")) as data:
        expected = data[key]
    y64 = imresize(image, output_size=(123, 234), antialiasing=antialiasing)
    y32 = imresize(
        image.astype(np.float32),
        output_size=(123, 234),
        antialiasing=antialiasing,
    )
    assert y64.dtype == tf.float64 and y32.dtype == tf.float32
    np.testing.assert_allclose(y64.numpy(), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(y32.numpy(), expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def baboon(ref_dir):
    return _read_png(os.path.join(ref_dir, "baboon.png")) / 255.0


@pytest.mark.parametrize(
    "name,scale", [("down_x2", 1 / 2), ("down_x3", 1 / 3), ("down_x4", 1 / 4)]
)
def test_baboon_down_matches_matlab_exactly(ref_dir, baboon, name, scale):
    expected = _read_png(os.path.join(ref_dir, f"baboon_{name}_matlab.png"))
    y = imresize(baboon, scale=scale).numpy()
    assert y.shape == expected.shape
    np.testing.assert_array_equal(_to_uint8_levels(y), expected)


def test_baboon_up_x2_matches_matlab(ref_dir, baboon):
    expected = _read_png(os.path.join(ref_dir, "baboon_up_x2_matlab.png"))
    # MATLAB's own summation order: bit-exact.
    exact = imresize(baboon, scale=2, summation="matlab").numpy()
    np.testing.assert_array_equal(_to_uint8_levels(exact), expected)
    # Matmuls: a few values sit on exact ties y * 255 = k + 0.5 that the
    # last bit of the sum sends either way (28 of 2.8M when measured); no
    # other value may differ.
    y = imresize(baboon, scale=2).numpy()
    diff = np.abs(_to_uint8_levels(y) - expected)
    assert diff.max() <= 1
    off = diff != 0
    assert off.sum() <= 100
    levels = y[off] * 255.0
    np.testing.assert_allclose(
        levels - np.floor(levels), 0.5, rtol=0, atol=1e-9
    )


def test_matlab_summation_is_bitwise_the_same_in_graph_mode(baboon):
    # Grappler must not regroup the taps' sums (an unrolled chain of adds
    # becomes one AddN, which moved 2 baboon x1/2 values by one level and
    # ~half of the float64 values of this crop by an ulp).
    crop = tf.constant(baboon[:64, :64])
    for scale in (1 / 2, 1 / 3):
        eager = imresize(crop, scale=scale, summation="matlab")
        graph = tf.function(
            lambda x: imresize(x, scale=scale, summation="matlab")
        )
        np.testing.assert_array_equal(graph(crop).numpy(), eager.numpy())


@pytest.mark.parametrize("s", SCALES)
def test_reference_100_double(ref100, s):
    hr = ref100["input_uint8"] / 255.0
    down_ref = ref100[f"down_x{s}_double"]
    up_ref = ref100[f"up_x{s}_to100_double"]
    for dtype, atol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        down = imresize(hr.astype(dtype), scale=1 / s)
        up = imresize(down, output_size=(100, 100))
        assert down.shape == (-(-100 // s),) * 2 + (3,)
        np.testing.assert_allclose(down.numpy(), down_ref, rtol=0, atol=atol)
        np.testing.assert_allclose(up.numpy(), up_ref, rtol=0, atol=atol)


@pytest.mark.parametrize("summation", ["matmul", "matlab"])
def test_reference_100_uint8_is_exact(ref100, summation):
    # Rounded after each pass: MATLAB's uint8 outputs, to the grey level.
    hr = ref100["input_uint8"]
    for s in SCALES:
        down = imresize(hr, scale=1 / s, summation=summation)
        up = imresize(down, output_size=(100, 100), summation=summation)
        assert down.dtype == tf.uint8 and up.dtype == tf.uint8
        np.testing.assert_array_equal(
            down.numpy(), ref100[f"down_x{s}_uint8"], err_msg=f"x{s}"
        )
        np.testing.assert_array_equal(
            up.numpy(), ref100[f"up_x{s}_to100_uint8"], err_msg=f"x{s}"
        )


def test_uint8_passes_run_rows_first_on_equal_scales(ref100):
    # The reference can tell the order apart: columns first (or one final
    # rounding) is off by a level on some pixels.
    hr = tf.constant(ref100["input_uint8"])
    columns_first_off = 0
    for s in SCALES:
        small = -(-100 // s)
        w = imresize_lib.resize_weights(100, small, 1 / s)
        down = imresize_lib.resize_with_weights(hr, w, w, rows_first=False)
        columns_first_off += np.sum(down.numpy() != ref100[f"down_x{s}_uint8"])
    assert columns_first_off > 0
    once = imresize(hr.numpy() / 255.0, scale=1 / 3).numpy()
    once = _to_uint8_levels(once)
    assert np.any(once != ref100["down_x3_uint8"])


def test_pass_order_follows_the_smaller_scale():
    # Height shrinks more than width: H first; and the other way round.
    x = tf.constant(
        np.random.RandomState(0).randint(0, 256, (40, 30, 2), np.uint8)
    )
    for out, rows_first in (((7, 20), True), ((30, 6), False)):
        wh = imresize_lib.resize_weights(40, out[0], out[0] / 40)
        ww = imresize_lib.resize_weights(30, out[1], out[1] / 30)
        want = imresize_lib.resize_with_weights(x, wh, ww, rows_first)
        other = imresize_lib.resize_with_weights(x, wh, ww, not rows_first)
        got = imresize(x, output_size=out)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        assert np.any(got.numpy() != other.numpy())


# --- weights ---------------------------------------------------------------


def test_resize_weights_are_cached_normalised_and_read_only():
    w = imresize_lib.resize_weights(100, 13, 1 / 8)
    assert w is imresize_lib.resize_weights(100, 13, 1 / 8)
    assert w.shape == (13, 100) and w.dtype == np.float64
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        w[0, 0] = 1.0
    np.testing.assert_array_equal(
        imresize_lib.resize_weights(7, 7, 1.0), np.eye(7)
    )


def test_contributions_mirror_edges_and_drop_zero_columns():
    weights, indices = imresize_lib.contributions(4, 8, 2.0, True)
    # Upsampling: ceil(4) + 2 = 6 taps, of which the two outermost are
    # always zero for the cubic kernel and removed.
    assert weights.shape == indices.shape == (8, 4)
    assert np.all(np.any(weights != 0, axis=0))
    assert indices.min() == 0 and indices.max() == 3
    # Output 1 sits at u = 0.75: taps 0, 1, 2, 3 (1-based -1..2) mirror to
    # input pixels 1, 0, 0, 1 (0-based).
    np.testing.assert_array_equal(indices[0], [1, 0, 0, 1])


def test_round_saturate_half_away_from_zero():
    x = tf.constant(
        [0.5, 1.5, 2.5, 0.49999999999999994, -0.4, -7.0, 254.5, 255.5, 300.0],
        tf.float64,
    )
    np.testing.assert_array_equal(
        imresize_lib._round_saturate(x, tf.uint8).numpy(),
        [1, 2, 3, 0, 0, 0, 255, 255, 255],
    )
    x = tf.constant([-0.5, -1.5, -2.5, 2.5, -40000.0, 40000.0], tf.float64)
    np.testing.assert_array_equal(
        imresize_lib._round_saturate(x, tf.int16).numpy(),
        [-1, -2, -3, 3, -32768, 32767],
    )


# --- batching, dtypes, graph mode -------------------------------------------


@pytest.fixture(scope="module")
def faces():
    rng = np.random.RandomState(1)
    return rng.randint(0, 256, (3, 100, 100, 3)).astype(np.uint8)


@pytest.mark.parametrize("summation", ["matmul", "matlab"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_batched_equals_per_image(faces, dtype, summation):
    batch = faces.astype(dtype)
    got = imresize(batch, scale=1 / 3, summation=summation).numpy()
    assert got.shape == (3, 34, 34, 3)
    for i in range(3):
        np.testing.assert_array_equal(
            got[i],
            imresize(batch[i], scale=1 / 3, summation=summation).numpy(),
        )
    empty = imresize(batch[:0], scale=1 / 3, summation=summation)
    assert empty.shape == (0, 34, 34, 3)


@pytest.mark.parametrize(
    "dtype",
    [
        tf.uint8,
        tf.uint16,
        tf.int16,
        tf.float16,
        tf.bfloat16,
        tf.float32,
        tf.float64,
    ],
)
def test_output_dtype_is_input_dtype(faces, dtype):
    y = imresize(tf.cast(faces[0], dtype), output_size=(50, 64))
    assert y.dtype == dtype and y.shape == (50, 64, 3)


def test_graph_and_tf_data_equal_eager(faces):
    eager = imresize(faces, scale=1 / 6).numpy()
    graph = tf.function(lambda x: imresize(x, scale=1 / 6))
    np.testing.assert_array_equal(graph(faces).numpy(), eager)
    ds = tf.data.Dataset.from_tensor_slices(faces).map(
        lambda x: imresize(x, scale=1 / 6), num_parallel_calls=2
    )
    np.testing.assert_array_equal(np.stack(list(ds.as_numpy_iterator())), eager)
    # Unknown batch size is fine; only H and W must be static.
    unknown_batch = tf.function(
        lambda x: imresize(x, scale=1 / 6),
        input_signature=[tf.TensorSpec([None, 100, 100, 3], tf.uint8)],
    )
    np.testing.assert_array_equal(unknown_batch(faces).numpy(), eager)


def test_tf_resize_gap_reports_numbers(ref_dir):
    gap = imresize_lib.tf_resize_gap(
        os.path.join(ref_dir, "reference_100x100.npz"), scales=(2, 3)
    )
    assert set(gap) == {2, 3}
    for s in (2, 3):
        assert gap[s]["ours_max"] < 1e-9
        assert 0 < gap[s]["down_mean"] <= gap[s]["down_max"]
    # TF drifts off MATLAB's grid where 100 / s is not whole.
    assert gap[3]["down_mean"] > 1.0 > gap[2]["down_mean"]


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scale": 0.5, "output_size": (2, 2)},
        {"scale": 0},
        {"scale": -2},
        {"scale": float("nan")},
        {"scale": (0.5, 0.5, 0.5)},
        {"scale": True},
        {"scale": tf.constant(0.5)},
        {"output_size": (0, 4)},
        {"output_size": (4,)},
        {"output_size": 4},
        {"output_size": (2.5, 4)},
        {"scale": 0.5, "summation": "fast"},
        {"scale": 1e-9},
    ],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(errors.ConfigError, match="imresize") as info:
        imresize(np.zeros((8, 8, 1)), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((8, 8), np.float32),
        ((1, 1, 8, 8, 1), np.float32),
        ((8, 8, 1), np.int32),
        ((8, 8, 1), np.bool_),
    ],
)
def test_bad_images_raise_config_error(shape, dtype):
    with pytest.raises(errors.ConfigError, match="imresize"):
        imresize(np.zeros(shape, dtype), scale=0.5)


def test_dynamic_height_raises_config_error_at_trace():
    fn = tf.function(
        lambda x: imresize(x, scale=0.5),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
    )
    with pytest.raises(errors.ConfigError, match="static"):
        fn.get_concrete_function()
    # The same plain ConfigError from a tf.data map (not a StagingError).
    ds = tf.data.Dataset.from_generator(
        lambda: iter([np.zeros((8, 8, 3), np.uint8)]),
        output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    with pytest.raises(errors.ConfigError, match="static"):
        ds.map(lambda x: imresize(x, scale=0.5))
