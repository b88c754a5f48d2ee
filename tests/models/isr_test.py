"""Tests of the image-SR baselines MetaSR and RCAN (fsr_fer_tf/models/isr.py).

Tiny models are built once per module (eager calls; no tf.function tracing
except where a graph is the point).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import models
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.models import isr

SCALES = (2, 3, 4, 5, 6, 7, 8)
NATIVE = {2: 50, 3: 34, 4: 25, 5: 20, 6: 17, 7: 15, 8: 13}
RCAN_SCALES = (2, 3, 4, 8)
TINY_META = {"channels": 8, "blocks": 1, "meta_hidden": 8}
TINY_RCAN = {"channels": 8, "groups": 1, "blocks": 1, "reduction": 4}


@pytest.fixture(scope="module")
def metasr():
    keras.utils.set_random_seed(0)
    return isr.MetaSR(**TINY_META)


@pytest.fixture(scope="module")
def rcans():
    keras.utils.set_random_seed(1)
    return {s: isr.RCAN(scale=s, **TINY_RCAN) for s in RCAN_SCALES}


def _faces(scales, seed=0, size=50, fill=0.0):
    """Native faces (random 0..255) in the top-left of [B, size, size, 3]."""
    rng = np.random.default_rng(seed)
    lr = np.full((len(scales), size, size, 3), fill, "float32")
    natives = []
    for b, s in enumerate(scales):
        n = NATIVE[s]
        face = rng.uniform(0, 255, (n, n, 3)).astype("float32")
        lr[b, :n, :n] = face
        natives.append(face)
    return lr, np.asarray(scales, "int32"), natives


def _call(model, lr, scales):
    return np.asarray(model({"lr": lr, "scale": scales}))


def test_native_sizes():
    assert {s: isr.native_size(s) for s in SCALES} == NATIVE


def test_metasr_shapes_every_scale(metasr):
    lr, scales, _ = _faces(SCALES)
    y = metasr({"lr": lr, "scale": scales})
    assert tuple(y.shape) == (7, 100, 100, 3)
    assert y.dtype == tf.float32
    for s in SCALES:  # One group only, the others empty.
        lr, scales, _ = _faces((s, s))
        assert _call(metasr, lr, scales).shape == (2, 100, 100, 3)


def test_rcan_shapes(rcans):
    ups = {s: m.up_factors for s, m in rcans.items()}
    assert ups == {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}
    assert isr.RCAN(scale=5, **TINY_RCAN).up_factors == (5,)
    for s, model in rcans.items():
        lr, scales, _ = _faces((s, s))
        y = model({"lr": lr, "scale": scales})
        assert tuple(y.shape) == (2, 100, 100, 3)
        assert y.dtype == tf.float32
        # P may equal the native size exactly; "scale" may be left out.
        n = NATIVE[s]
        y_native = model({"lr": lr[:, :n, :n]})
        np.testing.assert_array_equal(y_native, y)


def test_padding_does_not_matter(metasr, rcans):
    batch = (2, 8, 5, 3, 8)
    zero, scales, _ = _faces(batch, seed=3, fill=0.0)
    noise = np.random.default_rng(9).uniform(0, 255, zero.shape)
    noisy = zero.copy()
    for b, s in enumerate(batch):
        n = NATIVE[s]
        mask = np.ones((50, 50), bool)
        mask[:n, :n] = False
        noisy[b][mask] = noise[b][mask]
    np.testing.assert_array_equal(
        _call(metasr, noisy, scales), _call(metasr, zero, scales)
    )
    lr8, scales8, _ = _faces((8, 8), seed=4, size=30)
    lr8_noisy = lr8.copy()
    lr8_noisy[:, 13:] = 77.0
    lr8_noisy[:, :, 13:] = 200.0
    np.testing.assert_array_equal(
        _call(rcans[8], lr8_noisy, scales8), _call(rcans[8], lr8, scales8)
    )


def test_mixed_batch_equals_single_calls(metasr):
    batch = (4, 2, 8, 4, 7, 3, 6, 5, 2)
    lr, scales, natives = _faces(batch, seed=5)
    y = _call(metasr, lr, scales)
    for b, s in enumerate(batch):
        single = _call(metasr, lr[b : b + 1], scales[b : b + 1])
        np.testing.assert_allclose(y[b : b + 1], single, rtol=1e-5, atol=1e-3)
        # super_resolve from the native face: the same, clipped.
        sr = np.asarray(isr.super_resolve(metasr, natives[b][None], s))
        assert sr.dtype == np.float32
        assert sr.min() >= 0.0 and sr.max() <= 255.0
        np.testing.assert_allclose(
            sr, np.clip(single, 0, 255), rtol=1e-5, atol=1e-3
        )


def _naive_meta_upscale(layer, features, scale):
    """Meta-Upscale by its per-output-pixel definition (Hu et al. eq. 2-5)."""
    k1, b1 = (np.asarray(w, "float64") for w in layer.hidden_dense.weights)
    (k2,) = (np.asarray(w, "float64") for w in layer.weight_dense.weights)
    f = np.asarray(features, "float64")[0]  # (n, n, c)
    n, _, c = f.shape
    padded = np.pad(f, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((n * scale, n * scale, layer.out_channels))
    for i in range(n * scale):
        for j in range(n * scale):
            v = np.array(
                [
                    i / scale - np.floor(i / scale),
                    j / scale - np.floor(j / scale),
                    1.0 / scale,
                ]
            )
            w = (np.maximum(v @ k1 + b1, 0.0) @ k2).reshape(
                layer.out_channels, c * 9
            )
            y, x = i // scale, j // scale  # the location projection
            patch = padded[y : y + 3, x : x + 3, :]  # (kh, kw, c)
            out[i, j] = w @ patch.transpose(2, 0, 1).ravel()  # (c, kh, kw)
    return out


@pytest.mark.parametrize("scale", [3, 7])
def test_meta_upscale_equals_per_pixel_definition(metasr, scale):
    _, _, natives = _faces((scale,), seed=6)
    features = metasr.encode(natives[0][None])
    fast = np.asarray(metasr.upscale(features, scale=scale))[0]
    naive = _naive_meta_upscale(metasr.upscale, features, scale)
    assert fast.shape == naive.shape
    scale_of = np.abs(naive).max()
    np.testing.assert_allclose(fast, naive, rtol=1e-4, atol=1e-4 * scale_of)
    # The model's output is that, cropped to 100 and de-normalised.
    y = np.asarray(metasr.super_resolve_native(natives[0][None], scale))[0]
    np.testing.assert_allclose(
        y, naive[:100, :100] * 127.5 + 127.5, rtol=1e-4, atol=1e-2
    )


def test_config_and_save_load_round_trip(metasr, rcans, tmp_path):
    config = metasr.get_config()
    assert set(config) - {"name", "trainable"} == {
        "out_size",
        "image_channels",
        "channels",
        "blocks",
        "meta_hidden",
        "scales",
        "res_scale",
        "bicubic_skip",
    }
    again = isr.MetaSR.from_config(config).get_config()
    assert json.dumps(again, sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    lr, scales, _ = _faces((2, 8, 5, 5), seed=7)
    for name, model in (("metasr", metasr), ("rcan", rcans[4])):
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        loaded = isr.load_isr(path)
        assert type(loaded) is type(model)
        assert loaded.get_config() == model.get_config()
        if name == "rcan":
            lr, scales, _ = _faces((4, 4), seed=8)
        np.testing.assert_array_equal(
            _call(loaded, lr, scales), _call(model, lr, scales)
        )


def test_gradients_mixed_batch_with_empty_group(metasr, rcans):
    lr, scales, _ = _faces((2, 3, 5, 6, 7, 8, 8), seed=10)  # no x4 sample
    for model, (x, s) in (
        (metasr, (lr, scales)),
        (rcans[3], _faces((3, 3), seed=11)[:2]),
    ):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(model({"lr": x, "scale": s}) - 100.0))
        grads = tape.gradient(loss, model.trainable_weights)
        assert len(grads) == len(model.trainable_weights) > 0
        for w, g in zip(model.trainable_weights, grads):
            assert g is not None, w.path
            assert np.isfinite(np.asarray(g)).all(), w.path
        assert any(np.abs(np.asarray(g)).max() > 0 for g in grads)

    # The same in a graph (as training runs it): the empty group's branch
    # of its tf.cond gives zero, finite gradients.
    @tf.function
    def graph_grads(x, s):
        with tf.GradientTape() as tape:
            y = metasr({"lr": x, "scale": s}, training=True)
            loss = tf.reduce_mean(tf.abs(y - 100.0))
        return tape.gradient(loss, metasr.trainable_weights)

    for w, g in zip(metasr.trainable_weights, graph_grads(lr, scales)):
        assert g is not None, w.path
        assert np.isfinite(np.asarray(g)).all(), w.path


def _l1_steps(model, inputs, target, steps=5):
    optimizer = keras.optimizers.Adam(1e-3)

    def l1():
        return tf.reduce_mean(tf.abs(model(inputs, training=True) - target))

    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = l1()
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        losses.append(float(loss))
    return losses[0], float(l1())


def test_adam_steps_lower_l1():
    keras.utils.set_random_seed(12)
    rng = np.random.default_rng(12)
    target = rng.uniform(60, 200, (3, 100, 100, 3)).astype("float32")
    lr, scales, _ = _faces((2, 4, 8), seed=12)
    before, after = _l1_steps(
        isr.MetaSR(**TINY_META), {"lr": lr, "scale": scales}, target
    )
    assert after < before
    lr, scales, _ = _faces((4, 4, 4), seed=13)
    before, after = _l1_steps(
        isr.RCAN(scale=4, **TINY_RCAN), {"lr": lr, "scale": scales}, target
    )
    assert after < before


def test_mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    metasr = isr.MetaSR(**TINY_META)
    rcan = isr.RCAN(scale=8, **TINY_RCAN)
    assert metasr.head.compute_dtype == "float16"
    assert metasr.get_layer("block1").conv1.compute_dtype == "float16"
    assert metasr.upscale.compute_dtype == "float32"
    assert rcan.head.compute_dtype == "float16"
    assert rcan.tail.compute_dtype == "float32"
    lr, scales, _ = _faces((2, 8, 8, 5), seed=14)
    for model, s in ((metasr, scales), (rcan, np.full(4, 8, "int32"))):
        if model is rcan:
            lr = _faces((8,) * 4, seed=15)[0]
        y = model({"lr": lr, "scale": s})
        assert y.dtype == tf.float32
        assert np.isfinite(np.asarray(y)).all()
        assert tuple(y.shape) == (4, 100, 100, 3)


def test_unserved_scale(metasr, rcans):
    lr, _, natives = _faces((2, 3), seed=16)
    bad = np.array([2, 9], "int32")
    with pytest.raises(ConfigError, match=r"got samples at \[9\]\.$"):
        metasr({"lr": lr, "scale": bad})
    graph = tf.function(lambda x: metasr(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="serves only"):
        graph({"lr": tf.constant(lr), "scale": tf.constant(bad)})
    with pytest.raises(ConfigError, match=r"serves scales \(3,\), not x4\.$"):
        isr.super_resolve(rcans[3], natives[0][None], 4)
    few = isr.MetaSR(scales=(2, 4), **TINY_META)
    with pytest.raises(ConfigError, match=r"\(2, 4\), not x3"):
        isr.super_resolve(few, natives[1][None], 3)
    with pytest.raises(ConfigError, match="must be 50 x 50"):
        isr.super_resolve(metasr, natives[1][None], 2)


def test_helpers(metasr, rcans):
    assert isr.served_scales(metasr) == SCALES
    assert isr.served_scales(rcans[8]) == (8,)
    assert isr.input_size(metasr) == 50
    assert isr.input_size(rcans[3]) == 34
    assert isr.input_size(isr.MetaSR(scales=(4, 8), **TINY_META)) == 25
    faces = np.ones((2, 13, 13, 3), "float32")
    padded = np.asarray(isr.pad_native(faces, 20))
    assert padded.shape == (2, 20, 20, 3)
    assert padded[:, :13, :13].min() == 1.0
    assert padded.sum() == faces.sum()
    with pytest.raises(ConfigError, match="at most 10 x 10"):
        isr.pad_native(faces, 10)
    with pytest.raises(ConfigError, match="MetaSR or RCAN"):
        isr.served_scales(keras.Sequential([keras.layers.Dense(1)]))
    # The presets build (and the package exports the names).
    assert models.METASR_PRESETS is isr.METASR_PRESETS
    assert (
        set(isr.METASR_PRESETS)
        == set(isr.RCAN_PRESETS)
        == {
            "slim",
            "paper",
        }
    )
    assert isr.METASR_PRESETS["paper"] == {
        "channels": 64,
        "blocks": 16,
        "meta_hidden": 256,
    }
    assert models.MetaSR is isr.MetaSR and models.RCAN is isr.RCAN


def test_load_isr_errors(tmp_path):
    missing = str(tmp_path / "missing.keras")
    with pytest.raises(ConfigError, match="--isr_model .* does not exist"):
        isr.load_isr(missing)
    with pytest.raises(ConfigError, match="--sr is required"):
        isr.load_isr("", flag="--sr")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="not a loadable .keras model"):
        isr.load_isr(str(garbage))
    other = str(tmp_path / "other.keras")
    dense = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    dense.save(other)
    with pytest.raises(ConfigError) as e:
        isr.load_isr(other, flag="--sr_model")
    message = str(e.value)
    assert "--sr_model" in message and "not a MetaSR or RCAN" in message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["metasr", "rcan"])
def test_bicubic_skip(kind, tmp_path):
    # With the network's output layer zeroed, the model is MATLAB bicubic
    # up by exactly s (aligned, cropped to 100); weights learn a residual.
    from fsr_fer_tf.data import imresize as imresize_lib

    if kind == "metasr":
        model = isr.MetaSR(scales=(3, 8), bicubic_skip=True, **TINY_META)
        last = model.get_layer("meta_upscale")
    else:
        model = isr.RCAN(scale=3, bicubic_skip=True, **TINY_RCAN)
        last = model.get_layer("tail")
    rng = np.random.default_rng(5)
    native = rng.uniform(0, 255, (2, 34, 34, 3)).astype("float32")
    before = isr.super_resolve(model, native, 3).numpy()
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    want = imresize_lib.imresize(native, scale=3.0).numpy()[:, :100, :100]
    assert want.shape == (2, 100, 100, 3)
    got = model({"lr": native, "scale": np.array([3, 3], np.int32)}).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.abs(before - np.clip(want, 0, 255)).max() > 1e-2
    assert model.get_config()["bicubic_skip"] is True
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = isr.load_isr(path)
    assert again.bicubic_skip
    np.testing.assert_allclose(
        again({"lr": native, "scale": np.array([3, 3], np.int32)}).numpy(),
        got,
        atol=1e-4,
    )
