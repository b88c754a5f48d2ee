"""FusedBatchNormalization: Keras' BatchNormalization on the fused kernel."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from fsr_fer_tf import configs
from fsr_fer_tf.layers import FusedBatchNormalization
from fsr_fer_tf.models import covpool

SHAPE = (6, 5, 7, 4)


def _pair(**kwargs):
    """(fused, keras) layers built on SHAPE with the same non-trivial
    weights and moving statistics."""
    rng = np.random.default_rng(0)
    fused = FusedBatchNormalization(**kwargs)
    plain = keras.layers.BatchNormalization(**kwargs)
    for layer in (fused, plain):
        layer.build(SHAPE)
    weights = [
        rng.normal(size=w.shape).astype("float32") for w in plain.weights
    ]
    weights[-1] = np.abs(weights[-1]) + 0.5  # a variance
    for layer in (fused, plain):
        layer.set_weights(weights)
    return fused, plain


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(1)
    return tf.constant(rng.normal(3.0, 2.0, size=SHAPE).astype("float32"))


@pytest.mark.parametrize("scale", [False, True])
def test_training_step_matches_keras(x, scale):
    fused, plain = _pair(momentum=0.9, epsilon=1e-3, scale=scale)
    outs, grads = [], []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.cos(x))  # not a symmetric loss
        outs.append(y.numpy())
        grads.append(
            [
                g.numpy()
                for g in tape.gradient(loss, [x] + layer.trainable_weights)
            ]
        )
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # The moving statistics moved the same way (biased variance).
    for a, b in zip(fused.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    batch_var = np.var(x.numpy(), axis=(0, 1, 2))
    start = _pair(momentum=0.9, epsilon=1e-3, scale=scale)[1]
    np.testing.assert_allclose(
        fused.moving_variance.numpy(),
        0.9 * start.moving_variance.numpy() + 0.1 * batch_var,
        rtol=1e-5,
    )


def test_inference_matches_keras_and_the_formula(x):
    fused, plain = _pair(epsilon=1e-3, scale=False)
    y = fused(x, training=False).numpy()
    np.testing.assert_allclose(
        y, plain(x, training=False).numpy(), rtol=1e-5, atol=1e-5
    )
    mean, var = fused.moving_mean.numpy(), fused.moving_variance.numpy()
    beta = fused.beta.numpy()
    expected = (x.numpy() - mean) / np.sqrt(var + 1e-3) + beta
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # Inference does not move the statistics.
    np.testing.assert_array_equal(fused.moving_mean.numpy(), mean)


def test_mixed_float16_output_and_values(x):
    keras.config.set_dtype_policy("mixed_float16")
    fused, plain = _pair(epsilon=1e-3)
    x16 = tf.cast(x, tf.float16)
    y = fused(x16, training=True)
    assert y.dtype == tf.float16 and fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(
        y.numpy(), plain(x16, training=True).numpy(), rtol=1e-2, atol=1e-2
    )
    for a, b in zip(fused.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-3)


def test_other_inputs_go_to_keras():
    # A 2-D input (the head's FC maps) and a tiny epsilon use Keras' code.
    rng = np.random.default_rng(2)
    x2 = tf.constant(rng.normal(size=(5, 3)).astype("float32"))
    for kwargs in ({}, {"epsilon": 1e-7}):
        fused = FusedBatchNormalization(**kwargs)
        plain = keras.layers.BatchNormalization(**kwargs)
        np.testing.assert_allclose(
            fused(x2, training=True).numpy(),
            plain(x2, training=True).numpy(),
            rtol=1e-6,
        )
    assert not FusedBatchNormalization(epsilon=1e-7)._fused(tf.zeros(SHAPE))


def test_saved_and_loaded_with_the_same_config(x, tmp_path):
    fused, _ = _pair(momentum=0.95, scale=False)
    inputs = keras.Input(SHAPE[1:])
    model = keras.Model(inputs, fused(inputs))
    path = str(tmp_path / "bn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.layers[-1]
    assert isinstance(layer, FusedBatchNormalization)
    assert layer.get_config() == fused.get_config()
    np.testing.assert_allclose(
        loaded(x, training=False).numpy(), model(x, training=False).numpy()
    )


def test_covpoolfer_with_fused_batch_norm_computes_the_same_model(tmp_path):
    cfg = configs.CovPoolFERConfig(
        image_size=24,
        conv_filters=(4, 4, 6, 6, 8, 8),
        bimap_dim=6,
        fc_units=(16, 8),
    )
    plain = covpool.build_covpoolfer(cfg)
    fused = covpool.build_covpoolfer(
        configs.replace(cfg, fused_batch_norm=True)
    )
    trunk_bns = [
        l for l in fused.get_layer("features").layers if "bn" in l.name
    ]
    assert len(trunk_bns) == 6
    assert all(isinstance(l, FusedBatchNormalization) for l in trunk_bns)
    fused.set_weights(plain.get_weights())
    rng = np.random.default_rng(3)
    image = tf.constant(rng.uniform(0, 255, (4, 24, 24, 3)).astype("float32"))
    for training in (False, True):
        np.testing.assert_allclose(
            fused(image, training=training).numpy(),
            plain(image, training=training).numpy(),
            rtol=1e-3,
            atol=1e-4,
        )
    path = str(tmp_path / "fused.keras")
    fused.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["fused_batch_norm"] is True
    np.testing.assert_allclose(
        loaded(image).numpy(), fused(image).numpy(), rtol=1e-5, atol=1e-6
    )


def test_moving_statistics_update_inside_a_distribution_strategy(x):
    # Inside strategy.run the statistics are mirrored variables updated in
    # replica context, as Keras' own layer updates them (checked with two
    # logical devices by hand; one device here: they must be set before
    # TensorFlow starts).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        fused, plain = _pair(momentum=0.5)

    @tf.function
    def step(batch):
        return strategy.run(
            lambda b: (fused(b, training=True), plain(b, training=True)),
            args=(batch,),
        )

    step(x)
    for a, b in zip(fused.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        fused.moving_mean.numpy(), _pair(momentum=0.5)[0].moving_mean.numpy()
    )
