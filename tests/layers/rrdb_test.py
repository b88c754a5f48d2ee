"""Tests of ResidualDenseBlock and RRDB (fsr_fer_tf/layers/rrdb.py)."""

import json

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.layers.rrdb import RRDB
from fsr_fer_tf.layers.rrdb import ResidualDenseBlock

KWARGS = dict(filters=6, growth=4, dense_convs=3, residual_scale=0.2)


def _inputs(shape=(2, 10, 10, 6), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _zero_last_conv(block):
    conv = block.convs[-1]
    for w in conv.weights:
        w.assign(tf.zeros_like(w))


class ResidualDenseBlockTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        ("rdb", ResidualDenseBlock, False),
        ("rdb_bn", ResidualDenseBlock, True),
        ("rrdb", RRDB, False),
        ("rrdb_bn", RRDB, True),
    )
    def test_config_and_serialize_round_trip(self, cls, use_bn):
        layer = cls(use_batch_norm=use_bn, name="block", **KWARGS)
        config = layer.get_config()
        self.assertEqual(
            json.dumps(config, sort_keys=True),
            json.dumps(cls.from_config(config).get_config(), sort_keys=True),
        )
        serialized = keras.saving.serialize_keras_object(layer)
        revived = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(revived, cls)
        self.assertEqual(
            json.dumps(serialized, sort_keys=True),
            json.dumps(
                keras.saving.serialize_keras_object(revived), sort_keys=True
            ),
        )

    def test_symbolic_eager_and_fit(self):
        inputs = keras.Input((None, None, 6))
        symbolic = RRDB(**KWARGS)(inputs)
        self.assertEqual(tuple(symbolic.shape), (None, None, None, 6))
        x = _inputs()
        self.assertEqual(tuple(RRDB(**KWARGS)(x).shape), (2, 10, 10, 6))

        layer = ResidualDenseBlock(use_batch_norm=True, **KWARGS)
        self.assertEqual(tuple(layer(x).shape), (2, 10, 10, 6))

        model = keras.Sequential([keras.Input((10, 10, 6)), layer])
        model.compile(optimizer="sgd", loss="mse")
        before = [w.numpy().copy() for w in layer.trainable_weights]
        history = model.fit(x, x * 0.5, epochs=1, batch_size=2, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        changed = [
            not np.array_equal(b, w.numpy())
            for b, w in zip(before, layer.trainable_weights)
        ]
        self.assertTrue(all(changed))

    def test_weight_count(self):
        block = ResidualDenseBlock(use_batch_norm=True, **KWARGS)
        block.build((None, 5, 5, 6))
        # Convs see 6, 6+4, 6+8 channels; 4, 4, 6 outputs; 3x3 kernels.
        convs = (9 * 6 * 4 + 4) + (9 * 10 * 4 + 4) + (9 * 14 * 6 + 6)
        norms = 4 * (4 + 4 + 6)  # gamma, beta and the moving statistics
        self.assertEqual(block.count_params() - norms, convs)
        self.assertLen(block.trainable_weights, 2 * 3 + 2 * 3)
        self.assertLen(block.non_trainable_weights, 2 * 3)
        rrdb = RRDB(**KWARGS)
        rrdb.build((None, 5, 5, 6))
        self.assertEqual(rrdb.count_params(), 3 * convs)

    def test_residual_paths(self):
        # A zero last conv leaves only the skips: RDB(x) = x and
        # RRDB(x) = x + 0.2 * x (each RDB is the identity).
        x = _inputs()
        block = ResidualDenseBlock(**KWARGS)
        block(x)
        _zero_last_conv(block)
        self.assertAllClose(block(x), x, atol=1e-6)

        rrdb = RRDB(**KWARGS)
        rrdb(x)
        for rdb in rrdb.blocks:
            _zero_last_conv(rdb)
        self.assertAllClose(rrdb(x), 1.2 * x, atol=1e-6)

    def test_residual_scale(self):
        # RDB(x) - x is linear in the residual scale.
        x = _inputs()
        a = ResidualDenseBlock(**dict(KWARGS, residual_scale=0.2))
        b = ResidualDenseBlock(**dict(KWARGS, residual_scale=0.4))
        a(x)
        b(x)
        b.set_weights(a.get_weights())
        self.assertAllClose(2.0 * (a(x) - x), b(x) - x, atol=1e-5, rtol=1e-5)

    def test_channel_mismatch(self):
        with self.assertRaises(ConfigError):
            ResidualDenseBlock(**KWARGS)(_inputs((1, 4, 4, 5)))

    def test_mixed_precision(self):
        keras.config.set_dtype_policy("mixed_float16")
        block = RRDB(use_batch_norm=True, **KWARGS)
        y = block(_inputs())
        self.assertEqual(y.dtype, tf.float16)
        for rdb in block.blocks:
            for conv in rdb.convs:
                self.assertEqual(conv.compute_dtype, "float16")
                self.assertEqual(conv.kernel.dtype, "float32")
        # An explicit float32 policy reaches every sub-layer.
        block32 = RRDB(dtype="float32", **KWARGS)
        self.assertEqual(block32(_inputs()).dtype, tf.float32)
        self.assertEqual(block32.blocks[0].convs[0].compute_dtype, "float32")

    def test_checkpoint_holds_every_weight(self):
        # Sub-layers kept in a Python list are invisible to
        # tf.train.Checkpoint in Keras 3; the blocks must expose them all,
        # batch-norm moving statistics included.
        block = RRDB(use_batch_norm=True, **KWARGS)
        block(_inputs())
        path = tf.train.Checkpoint(block=block).save(
            self.get_temp_dir() + "/ckpt"
        )
        saved = [
            name
            for name, _ in tf.train.list_variables(path)
            if name.startswith("block/")
        ]
        self.assertLen(saved, len(block.weights))
        self.assertLen([n for n in saved if "moving_mean" in n], 9)
