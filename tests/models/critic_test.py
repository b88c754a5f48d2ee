"""Tests of VGGCritic (fsr_fer_tf/models/critic.py)."""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from fsr_fer_tf.configs import CRITIC_PRESETS
from fsr_fer_tf.configs import CriticConfig
from fsr_fer_tf.models.critic import VGGCritic
from fsr_fer_tf.models.critic import critic_widths

DEMO = CRITIC_PRESETS["demo"]


def _features(batch=2, d=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, d, d, 1)).astype("float32")


def _final_map(critic):
    return tuple(critic.get_layer("flatten").input.shape[1:])


class VGGCriticTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        ("d128_released", 128, CRITIC_PRESETS["released"], [8, 16, 32, 64, 64]),
        ("d128_paper", 128, CRITIC_PRESETS["paper"], [64, 128, 256, 512, 512]),
        ("d32", 32, DEMO, [8, 16, 32]),
        ("d100", 100, DEMO, [8, 16, 32, 64, 64]),
        ("d12", 12, DEMO, [8, 16]),
        ("d4", 4, DEMO, [8]),
    )
    def test_widths(self, d, config, expected):
        self.assertEqual(critic_widths(d, config), expected)

    def test_d32_forward(self):
        critic = VGGCritic(DEMO, input_size=32)
        y = critic(_features())
        self.assertEqual(tuple(y.shape), (2, 1))
        self.assertEqual(y.dtype, tf.float32)
        self.assertEqual(_final_map(critic), (4, 4, 32))  # 3 halvings
        # No batch-norm: samples are scored independently.
        x = _features(batch=3)
        self.assertAllClose(critic(x)[1:2], critic(x[1:2]), atol=1e-5)
        self.assertFalse(
            any(
                isinstance(l, keras.layers.BatchNormalization)
                for l in critic.layers
            )
        )

    def test_d128_released_build(self):
        critic = VGGCritic(CRITIC_PRESETS["released"], input_size=128)
        self.assertEqual(_final_map(critic), (4, 4, 64))  # 5 halvings
        convs = [l for l in critic.layers if isinstance(l, keras.layers.Conv2D)]
        self.assertLen(convs, 10)
        self.assertTrue(all(c.bias is None for c in convs))
        self.assertEqual(
            [c.kernel.shape[:2] for c in convs], [(3, 3), (4, 4)] * 5
        )
        self.assertEqual([c.strides for c in convs], [(1, 1), (2, 2)] * 5)
        self.assertEqual(critic.get_layer("dense1").kernel.shape, (1024, 100))
        self.assertEqual(critic.get_layer("score").kernel.shape, (100, 1))
        # 3x3 and 4x4 convs of widths 8, 16, 32, 64, 64, no bias; dense
        # layers with bias.
        widths = [1, 8, 16, 32, 64, 64]
        conv_params = sum(
            9 * widths[i] * widths[i + 1] + 16 * widths[i + 1] ** 2
            for i in range(5)
        )
        self.assertEqual(
            critic.count_params(), conv_params + 1024 * 100 + 100 + 101
        )

    def test_not_power_of_two(self):
        critic = VGGCritic(DEMO, input_size=20)  # 20 -> 10 -> 5 -> 3
        self.assertEqual(_final_map(critic), (3, 3, 32))
        self.assertEqual(tuple(critic(_features(d=20)).shape), (2, 1))

    def test_accepts_rank3(self):
        critic = VGGCritic(DEMO, input_size=16)
        x = _features(d=16)
        self.assertAllEqual(critic(x[..., 0]), critic(x))

    def test_keras_round_trip(self):
        critic = VGGCritic(CriticConfig(base_filters=4, use_bias=False), 16)
        x = _features(d=16)
        path = os.path.join(self.get_temp_dir(), "d.keras")
        critic.save(path)
        revived = keras.saving.load_model(path)
        self.assertIsInstance(revived, VGGCritic)
        self.assertEqual(revived.config, critic.config)
        self.assertEqual(revived.input_size, 16)
        self.assertAllEqual(revived(x), critic(x))
        json.dumps(critic.get_config())

    def test_mixed_precision(self):
        keras.config.set_dtype_policy("mixed_float16")
        critic = VGGCritic(DEMO, input_size=16)
        self.assertEqual(critic(_features(d=16)).dtype, tf.float32)
        conv = critic.get_layer("block0_conv1")
        self.assertEqual(conv.compute_dtype, "float16")
        self.assertEqual(critic.get_layer("score").compute_dtype, "float32")
