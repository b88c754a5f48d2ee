"""Tests for fsr_fer_tf.models.covpool: the CovPoolFER network and its parts."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf.configs import COVPOOL_PRESETS
from fsr_fer_tf.configs import CovPoolFERConfig
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.layers.spd import BiMap
from fsr_fer_tf.models import covpool
from fsr_fer_tf.models.covpool import CovPoolFER
from fsr_fer_tf.models.covpool import build_covpoolfer
from fsr_fer_tf.models.covpool import covpoolfer_parts

TINY = CovPoolFERConfig(
    image_size=16,
    conv_filters=(4, 4, 8, 8, 8, 8),
    bimap_dim=4,
    fc_units=(16, 8),
)
SPD_LAYERS = ("cov_pool", "bimap", "reeig", "logeig")


def _images(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def demo():
    keras.utils.set_random_seed(0)
    return build_covpoolfer(COVPOOL_PRESETS["demo"], name="demo")


def test_demo_shapes_and_parts(demo):
    features, spd, head = covpoolfer_parts(demo)
    assert tuple(features.output.shape) == (None, 12, 12, 64)
    assert tuple(spd.input.shape) == (None, 12, 12, 64)
    assert tuple(spd.output.shape) == (None, 32, 32)
    assert [tuple(t.shape) for t in head.outputs] == [(None, 128), (None, 7)]
    assert tuple(demo.output.shape) == (None, 7)
    x = _images(2, 100)
    logits = demo(x, training=False)
    embedding, head_logits = head(spd(features(x)), training=False)
    np.testing.assert_allclose(logits.numpy(), head_logits.numpy(), atol=1e-6)
    assert embedding.shape == (2, 128) and logits.dtype == tf.float32
    log_map = spd(features(x)).numpy()
    np.testing.assert_array_equal(log_map, np.swapaxes(log_map, 1, 2))


def test_trunk_and_head_follow_released_code(demo):
    features, spd, head = covpoolfer_parts(demo)
    names = [layer.name for layer in features.layers]
    assert names[:2] == ["image", "standardize"]
    convs = [x for x in features.layers if x.name.startswith("conv_")]
    expected = []
    for i in range(1, 7):
        expected += [f"conv_{i}", f"conv_{i}_bn", f"conv_{i}_relu"]
        if i in (1, 2, 4):
            expected.append(f"pool_{i}")
    assert names[2:] == expected
    for layer in convs:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.kernel_size == (3, 3) and not layer.use_bias
        if isinstance(layer, keras.layers.BatchNormalization):
            # slim.batch_norm: epsilon 1e-3, no gamma; decay from the preset.
            assert not layer.scale and layer.epsilon == 1e-3
            assert layer.momentum == COVPOOL_PRESETS["demo"].batchnorm_momentum
    assert [layer.name for layer in spd.layers[1:]] == list(SPD_LAYERS)
    assert [layer.name for layer in head.layers] == [
        "spd_feature", "flatten", "fc_1", "fc_1_bn", "fc_1_relu",
        "fc_2", "fc_2_bn", "fc_2_relu", "logits",
    ]  # fmt: skip
    # The embedding is fc_2 after its BN and before its ReLU.
    assert head.outputs[0] is head.get_layer("fc_2_bn").output
    assert head.get_layer("logits").use_bias


def test_paper_sizes():
    # The released code's slim.batch_norm decay; the demo departs (0.9).
    assert COVPOOL_PRESETS["paper"].batchnorm_momentum == 0.995
    assert COVPOOL_PRESETS["demo"].batchnorm_momentum == 0.9
    model = build_covpoolfer(COVPOOL_PRESETS["paper"])
    bn = model.get_layer("features").get_layer("conv_1_bn")
    assert bn.momentum == 0.995
    features, spd, head = covpoolfer_parts(model)
    assert tuple(features.output.shape) == (None, 12, 12, 256)
    assert spd.get_layer("bimap").kernel.shape == (256, 128)
    assert [tuple(t.shape) for t in head.outputs] == [(None, 128), (None, 7)]
    assert head.get_layer("fc_1").kernel.shape == (128 * 128, 2000)


def test_fer2013_sizes_and_round_trip(tmp_path):
    # Stride-2 stem, pools after convs 2 and 4: 100 -> 50 -> 25 -> 12.
    cfg = COVPOOL_PRESETS["fer2013"]
    meta = {"preset": "fer2013", "colour": "grey", "train_scales": [1]}
    model = build_covpoolfer(cfg, metadata=meta)
    features, spd, head = covpoolfer_parts(model)
    assert tuple(features.output.shape) == (None, 12, 12, 96)
    assert spd.get_layer("bimap").kernel.shape == (96, 48)
    assert tuple(spd.output.shape) == (None, 48, 48)
    trunk = model.get_layer("features")
    assert trunk.get_layer("conv_1").strides == (2, 2)
    assert trunk.get_layer("conv_2").strides == (1, 1)
    pools = [x.name for x in trunk.layers if x.name.startswith("pool_")]
    assert pools == ["pool_2", "pool_4"]
    assert model.get_config()["pool_after"] == [2, 4]
    path = str(tmp_path / "fer2013.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert covpool.model_metadata(loaded) == meta
    x = _images(2, 100, seed=3)
    np.testing.assert_array_equal(
        loaded(x, training=False).numpy(), model(x, training=False).numpy()
    )


def test_fused_spd_gives_the_same_model(tmp_path):
    keras.utils.set_random_seed(4)
    pair = build_covpoolfer(TINY)
    fused = build_covpoolfer(dataclasses.replace(TINY, fused_spd=True))
    fused.set_weights(pair.get_weights())  # the SPD layers add no weights
    names = [layer.name for layer in covpoolfer_parts(fused)[1].layers]
    assert names[1:] == ["cov_pool", "bimap", "reeig_logeig"]
    x = tf.constant(_images(3, 16, seed=5))
    labels = tf.constant([0, 3, 6])

    def loss_and_grads(model):
        with tf.GradientTape() as tape:
            logits = model(x, training=False)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            )
        return logits, tape.gradient(loss, model.trainable_variables)

    logits_a, grads_a = loss_and_grads(pair)
    logits_b, grads_b = loss_and_grads(fused)
    np.testing.assert_allclose(logits_b, logits_a, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_a, grads_b):
        scale = max(float(tf.reduce_max(tf.abs(a))), 1e-8)
        np.testing.assert_allclose(b, a, atol=2e-3 * scale)
    path = str(tmp_path / "fused.keras")
    fused.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config()["fused_spd"] is True
    np.testing.assert_array_equal(loaded(x, training=False), logits_b)


def test_keras_file_round_trip(demo, tmp_path):
    x = _images(2, 100, seed=1)
    path = str(tmp_path / "covpoolfer.keras")
    demo.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CovPoolFER)
    assert loaded.get_config() == demo.get_config()
    np.testing.assert_array_equal(
        loaded(x, training=False).numpy(), demo(x, training=False).numpy()
    )
    for old, new in zip(covpoolfer_parts(demo), covpoolfer_parts(loaded)):
        assert old.name == new.name
    features, spd, head = covpoolfer_parts(loaded)
    _, logits = head(spd(features(x)), training=False)
    np.testing.assert_array_equal(
        logits.numpy(), demo(x, training=False).numpy()
    )
    assert isinstance(spd.get_layer("bimap"), BiMap)


def test_parts_of_a_foreign_model_raise():
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    with pytest.raises(ValueError, match="build_covpoolfer"):
        covpoolfer_parts(other)
    with pytest.raises(ValueError, match="CovPoolFER"):
        covpoolfer_parts(object())


@pytest.mark.parametrize(
    "override, match",
    [
        ({"conv_filters": (4, 4, 8)}, "six trunk widths"),
        ({"bimap_dim": 16}, "bimap_dim"),
        ({"fc_units": (16,)}, "fc_units"),
        ({"spd_dtype": "float16"}, "spd_dtype"),
        ({"image_size": 8}, "image_size"),
        ({"stem_stride": 3}, "stem_stride"),
        ({"pool_after": (2, 1)}, "pool_after"),
        ({"pool_after": (1, 7)}, "pool_after"),
        ({"stem_stride": 2, "pool_after": (1, 2, 3)}, "covariance"),
    ],
)
def test_bad_config_raises(override, match):
    with pytest.raises(ConfigError, match=match):
        build_covpoolfer(dataclasses.replace(TINY, **override))


def test_mixed_precision_float32_islands():
    keras.config.set_dtype_policy("mixed_float16")
    model = build_covpoolfer(TINY)
    features, spd, head = covpoolfer_parts(model)
    x = _images(2, 16)
    logits = model(x, training=False)
    assert logits.dtype == tf.float32 and np.isfinite(logits.numpy()).all()
    conv_map = features(x, training=False)
    assert conv_map.dtype == tf.float16  # the trunk does run in float16
    assert features.get_layer("standardize").compute_dtype == "float32"
    # Every SPD layer computes, stores and returns float32.
    probe = keras.Model(
        spd.input, [spd.get_layer(n).output for n in SPD_LAYERS]
    )
    for name, out in zip(SPD_LAYERS, probe(conv_map)):
        assert spd.get_layer(name).compute_dtype == "float32", name
        assert out.dtype == tf.float32, name
        assert np.isfinite(out.numpy()).all(), name
    assert spd.get_layer("bimap").kernel.dtype == "float32"
    embedding, head_logits = head(spd(conv_map), training=False)
    assert embedding.dtype == tf.float32 and head_logits.dtype == tf.float32


def test_fit_step_trains_and_keeps_bimap_orthonormal():
    keras.utils.set_random_seed(1)
    model = build_covpoolfer(TINY)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    bimap = covpoolfer_parts(model)[1].get_layer("bimap")
    before = [v.numpy() for v in model.trainable_variables]
    x, y = _images(4, 16, seed=2), np.array([0, 1, 2, 3])
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    w = bimap.kernel.numpy()
    np.testing.assert_allclose(w.T @ w, np.eye(4), atol=1e-5)
