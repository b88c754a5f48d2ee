"""Tests for fsr_fer_tf.layers.covpool: CovariancePooling and
PerImageStandardization, against float64 NumPy references."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf.layers.covpool import CovariancePooling
from fsr_fer_tf.layers.covpool import PerImageStandardization


def np_covpool(x, eps):
    """float64 reference: centred covariance + eps·trace·I, per sample."""
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1, x.shape[-1])
    xc = x - x.mean(axis=1, keepdims=True)
    cov = np.einsum("bni,bnj->bij", xc, xc) / (x.shape[1] - 1)
    trace = np.trace(cov, axis1=1, axis2=2)
    return cov + eps * trace[:, None, None] * np.eye(x.shape[-1])


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    return {
        "relu": np.maximum(rng.normal(size=(2, 4, 4, 6)), 0).astype("f4"),
        "positions": rng.normal(size=(2, 9, 5)).astype("f4"),
        "few_positions": rng.normal(size=(2, 3, 8)).astype("f4"),  # rank 2
        "pixels": rng.uniform(0, 255, size=(2, 8, 8, 3)).astype("f4"),
    }


@pytest.mark.parametrize("name", ["relu", "positions", "few_positions"])
def test_covpool_matches_numpy(maps, name):
    x = maps[name]
    want = np_covpool(x, 1e-4)
    got32 = CovariancePooling()(x).numpy()
    got64 = CovariancePooling(dtype="float64")(x.astype("f8")).numpy()
    scale = np.abs(want).max()
    np.testing.assert_allclose(got64, want, atol=1e-13 * scale)
    np.testing.assert_allclose(got32, want, atol=1e-6 * scale)
    np.testing.assert_allclose(got32, np.swapaxes(got32, 1, 2), atol=1e-7)
    assert got32.dtype == np.float32 and got64.dtype == np.float64


def test_covpool_is_spd_for_rank_deficient_input(maps):
    x = maps["few_positions"]  # 3 positions, 8 channels: rank(S0) = 2
    s = CovariancePooling(dtype="float64")(x.astype("f8")).numpy()
    for sample, xb in zip(s, x):
        lam = np.linalg.eigvalsh(sample)
        floor = 1e-4 * np.trace(np_covpool(xb[None], 0.0)[0])
        # 6 eigenvalues sit exactly on the relative floor, all positive.
        np.testing.assert_allclose(lam[:6], floor, rtol=1e-9)
        assert lam.min() > 0


def test_covpool_gradient_matches_finite_differences(maps):
    x = tf.constant(maps["positions"][:1].astype("f8"))
    theo, num = tf.test.compute_gradient(
        CovariancePooling(dtype="float64"), [x], delta=1e-6
    )
    np.testing.assert_allclose(theo[0], num[0], atol=1e-8)


def test_covpool_nan_input_propagates(maps):
    x = maps["positions"].copy()
    x[1, 0, 0] = np.nan
    s = CovariancePooling()(x).numpy()
    assert np.isfinite(s[0]).all() and np.isnan(s[1]).any()


@pytest.mark.parametrize(
    "shape, match",
    [
        ((5,), "feature map"),
        ((2, 3, 4, 5, 6), "feature map"),
        ((1, 1, 4), "at least 2 positions"),
        ((1, 4), "at least 2 positions"),
    ],
)
def test_covpool_bad_shapes_raise_at_build(shape, match):
    with pytest.raises(ValueError, match=match):
        CovariancePooling()(keras.Input(shape))


def test_covpool_under_mixed_policy_is_float32():
    keras.config.set_dtype_policy("mixed_float16")
    layer = CovariancePooling()
    x16 = tf.cast(tf.random.normal((2, 4, 4, 3)), tf.float16)
    assert layer.compute_dtype == "float32"
    assert layer(x16).dtype == tf.float32
    with pytest.raises(ValueError, match="dtype='float32'"):
        CovariancePooling(dtype="mixed_float16")


def test_standardization_matches_tf_image(maps):
    x = maps["pixels"]
    got = PerImageStandardization()(x).numpy()
    want = tf.image.per_image_standardization(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # A flat image: std 0, so the 1/sqrt(n) floor keeps it finite (zeros).
    flat = PerImageStandardization()(np.full((1, 4, 4, 3), 7.0, "f4"))
    np.testing.assert_array_equal(flat.numpy(), 0.0)


# --------------------------------------------------------- KH battery -----

BATTERY = [
    (CovariancePooling, {"epsilon": 1e-3}, (4, 4, 3), (3, 3)),
    (PerImageStandardization, {}, (4, 4, 3), (4, 4, 3)),
]


@pytest.mark.parametrize("cls, kwargs, in_shape, out_shape", BATTERY)
def test_battery(cls, kwargs, in_shape, out_shape, tmp_path):
    rng = np.random.default_rng(1)
    # Config and serialize round trips, compared as JSON.
    layer = cls(**kwargs, name="probe")
    config = layer.get_config()
    assert set(config) - {"name", "trainable", "dtype"} == set(kwargs)
    dumps = json.dumps(config, sort_keys=True)
    assert json.dumps(cls.from_config(config).get_config(), sort_keys=True) == (
        dumps
    )
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert json.dumps(revived.get_config(), sort_keys=True) == dumps
    # Symbolic and eager calls, exact shapes.
    symbolic = cls(**kwargs)(keras.Input(in_shape, batch_size=2))
    assert tuple(symbolic.shape) == (2,) + out_shape
    data = rng.uniform(0, 2, size=(2,) + in_shape).astype("f4")
    assert tuple(cls(**kwargs)(data).shape) == (2,) + out_shape
    # One fit step with a trainable layer in front.
    inputs = keras.Input(in_shape)
    x = keras.layers.Dense(in_shape[-1])(inputs)
    x = keras.layers.Flatten()(cls(**kwargs)(x))
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(data, np.ones((2, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # .keras round trip.
    path = str(tmp_path / "layer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(data).numpy(), model(data).numpy())
