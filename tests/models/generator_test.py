"""Tests of RRDBGenerator (fsr_fer_tf/models/generator.py)."""

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from fsr_fer_tf.configs import GENERATOR_PRESETS
from fsr_fer_tf.configs import GeneratorConfig
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.layers.rrdb import RRDB
from fsr_fer_tf.models.generator import RRDBGenerator

TINY = GeneratorConfig(filters=4, growth=4, num_blocks=1, dense_convs=2)


def _features(batch=2, d=12, seed=0, symmetric=False):
    x = np.random.default_rng(seed).normal(size=(batch, d, d, 1))
    if symmetric:
        x = 0.5 * (x + np.transpose(x, (0, 2, 1, 3)))
    return x.astype("float32")


def _asymmetry(y):
    y = np.asarray(y)
    return np.abs(y - np.transpose(y, (0, 2, 1, 3))).max()


class RRDBGeneratorTest(tf.test.TestCase):
    def test_fully_convolutional(self):
        g = RRDBGenerator(TINY)
        for d in (12, 7):
            y = g(_features(d=d))
            self.assertEqual(tuple(y.shape), (2, d, d, 1))
            self.assertEqual(y.dtype, tf.float32)
        # A [B, d, d] LogEig map gets its channel axis added.
        x = _features(d=12)
        self.assertAllEqual(g(x[..., 0]), g(x))
        self.assertLen([l for l in g.layers if isinstance(l, RRDB)], 1)

    def test_symmetric_output(self):
        x = _features(d=12)
        g = RRDBGenerator(TINY)
        self.assertEqual(_asymmetry(g(x)), 0.0)
        g_free = RRDBGenerator(
            dataclasses.replace(TINY, symmetrize_output=False)
        )
        self.assertGreater(_asymmetry(g_free(x)), 1e-3)
        # Symmetrising is exactly (Y + Y^T) / 2 of the free output.
        g.set_weights(g_free.get_weights())
        y = np.asarray(g_free(x))
        self.assertAllClose(
            g(x), 0.5 * (y + np.transpose(y, (0, 2, 1, 3))), atol=1e-6
        )

    def test_input_skip_starts_as_identity(self):
        # The last tail conv is zero-initialised: G(x) = x at step 0
        # (x symmetric), and the residual branch is not dead (it has weights
        # that the first step changes).
        config = dataclasses.replace(TINY, input_skip=True)
        g = RRDBGenerator(config)
        x = _features(d=10, symmetric=True)
        self.assertAllClose(g(x), x, atol=1e-6)
        x_var = tf.constant(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(g(x_var) - 1.0))
        grad = tape.gradient(loss, g.get_layer("tail_conv2").kernel)
        self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0)
        # Without the skip, G is not the identity at initialisation.
        g2 = RRDBGenerator(TINY)
        self.assertGreater(float(np.max(np.abs(g2(x) - x))), 1e-3)

    def test_released_layout(self):
        config = dataclasses.replace(
            GENERATOR_PRESETS["released"], num_blocks=1, dense_convs=3
        )
        g = RRDBGenerator(config)
        self.assertEqual(g.get_layer("tail_conv1").kernel.shape, (8, 8, 32, 32))
        self.assertEqual(g.get_layer("tail_conv2").kernel.shape, (8, 8, 32, 1))
        # Three dense blocks of three convs, each followed by batch-norm.
        self.assertLen(
            [w for w in g.non_trainable_weights if "moving_mean" in w.path], 9
        )
        self.assertEqual(tuple(g(_features(d=9)).shape), (2, 9, 9, 1))

    def test_released_batch_norm_is_a_fixed_affine_map(self):
        # The released generator's BN ran in inference mode on its initial
        # statistics (mean 0, variance 1): a sample's F_sr does not depend on
        # the rest of the batch, training=True equals training=False, and
        # the moving statistics never move.
        self.assertEqual(
            GENERATOR_PRESETS["released"].batch_norm_mode, "inference"
        )
        config = dataclasses.replace(
            GENERATOR_PRESETS["released"],
            filters=8,
            growth=4,
            num_blocks=1,
            dense_convs=3,
        )
        g = RRDBGenerator(config)
        x = _features(d=9)
        train = g(x, training=True).numpy()
        self.assertAllClose(train, g(x, training=False).numpy(), atol=1e-6)
        # Batch-size-dependent kernels (oneDNN) reorder float sums by ~1e-6;
        # batch statistics would move F_sr by > 1e-3 (checked below).
        alone = g(x[:1], training=True).numpy()
        self.assertAllClose(alone, train[:1], atol=2e-5)
        for w in g.non_trainable_weights:
            expected = 0.0 if "moving_mean" in w.path else 1.0
            self.assertAllEqual(w.numpy(), np.full(w.shape, expected))
        # With "batch" the batch statistics are used in training.
        batch = RRDBGenerator(
            dataclasses.replace(config, batch_norm_mode="batch")
        )
        batch.set_weights(g.get_weights())
        self.assertGreater(
            float(np.max(np.abs(batch(x, training=True) - train))), 1e-3
        )
        with self.assertRaises(ConfigError):
            RRDBGenerator(dataclasses.replace(config, batch_norm_mode="frozen"))

    def test_config_round_trip(self):
        g = RRDBGenerator(TINY, name="g")
        config = g.get_config()
        self.assertEqual(config["config"], dataclasses.asdict(TINY))
        json.dumps(config)
        self.assertEqual(RRDBGenerator.from_config(config).config, TINY)
        # The dict form is accepted by the constructor too.
        self.assertEqual(RRDBGenerator(dataclasses.asdict(TINY)).config, TINY)
        with self.assertRaises(ConfigError):
            RRDBGenerator({"filters": 8, "no_such_field": 1})

    def test_keras_round_trip(self):
        config = dataclasses.replace(
            TINY, use_batch_norm=True, tail_kernel_size=4, input_skip=True
        )
        g = RRDBGenerator(config)
        x = _features(d=11)
        g(x)
        path = os.path.join(self.get_temp_dir(), "g.keras")
        g.save(path)
        revived = keras.saving.load_model(path)
        self.assertIsInstance(revived, RRDBGenerator)
        self.assertEqual(revived.config, config)
        self.assertAllEqual(revived(x), g(x))
        self.assertAllEqual(revived(x, training=True), g(x, training=True))

    def test_mixed_precision(self):
        keras.config.set_dtype_policy("mixed_float16")
        g = RRDBGenerator(dataclasses.replace(TINY, input_skip=True))
        y = g(_features(d=8))
        self.assertEqual(y.dtype, tf.float32)
        self.assertEqual(g.get_layer("first_conv").compute_dtype, "float16")
        self.assertEqual(g.get_layer("input_skip").compute_dtype, "float32")
        self.assertTrue(np.all(np.isfinite(y)))
