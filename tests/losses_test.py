"""Tests of the stage-2 loss functions (fsr_fer_tf/losses.py).

Sign convention checked here (paper eq. 7-8):
    L_gan(D) = E[D(F_hr)] - E[D(F_sr)] + k E[||grad D(x_hat)||^p]
falls when D(F_hr) falls or D(F_sr) rises, and
    L_gan(G) = E[D(F_sr)]
falls when D(F_sr) falls.
"""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from fsr_fer_tf import losses
from fsr_fer_tf.errors import ConfigError

RNG = np.random.default_rng(0)


class LinearCritic:
    """D(x) = <a, x> + b per sample: grad_x D = a everywhere."""

    def __init__(self, a, b=0.3):
        self.a = tf.constant(a, tf.float32)
        self.b = b

    def __call__(self, x, training=None):
        return tf.reduce_sum(self.a * x, axis=[1, 2, 3])[:, None] + self.b


class QuadraticCritic:
    """D(x) = 0.5 ||x||^2 per sample: grad_x D = x."""

    def __call__(self, x, training=None):
        return 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]


class TanhCritic:
    """D(x) = v . tanh(W vec(x)) + c, weights as float32 tf.Variables."""

    def __init__(self, w, v, c=0.1):
        self.w = tf.Variable(w, dtype=tf.float32)
        self.v = tf.Variable(v, dtype=tf.float32)
        self.c = c

    def __call__(self, x, training=None):
        flat = tf.reshape(x, (tf.shape(x)[0], -1))
        hidden = tf.tanh(tf.matmul(flat, self.w, transpose_b=True))
        return tf.matmul(hidden, self.v[:, None]) + self.c


def _tanh_critic64(w, v, c, x):
    """float64 NumPy twin of TanhCritic on one flattened sample."""
    return v @ np.tanh(w @ x) + c


def _penalty64(w, v, c, x_hat, k, p, h=1e-6):
    """k * mean_i ||grad D(x_hat_i)||^p with central finite differences."""
    norms = []
    for x in x_hat.reshape(len(x_hat), -1):
        grad = np.zeros_like(x)
        for j in range(x.size):
            e = np.zeros_like(x)
            e[j] = h
            grad[j] = (
                _tanh_critic64(w, v, c, x + e) - _tanh_critic64(w, v, c, x - e)
            ) / (2 * h)
        norms.append(np.sum(grad**2) ** (p / 2))
    return k * np.mean(norms)


def _penalty64_analytic(w, v, x_hat, k, p):
    flat = x_hat.reshape(len(x_hat), -1)
    grads = (v * (1 - np.tanh(flat @ w.T) ** 2)) @ w  # (B, n)
    return k * np.mean(np.sum(grads**2, axis=1) ** (p / 2))


class PenaltyTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters((2.0, 6.0), (1.0, 2.0), (0.5, 3.0))
    def test_linear_critic_closed_form(self, k, p):
        a = RNG.normal(size=(1, 3, 3, 1)) * 0.7
        real = RNG.normal(size=(4, 3, 3, 1)).astype("float32")
        fake = RNG.normal(size=(4, 3, 3, 1)).astype("float32")
        eps = RNG.uniform(size=4).astype("float32")
        penalty = losses.wgan_div_penalty(
            LinearCritic(a), real, fake, eps, k=k, p=p
        )
        expected = k * np.sum(a.astype(np.float64) ** 2) ** (p / 2)
        self.assertEqual(penalty.dtype, tf.float32)
        self.assertAllClose(penalty, expected, rtol=1e-5)

    def test_interpolation_and_per_sample_norm(self):
        # grad of 0.5||x||^2 is x_hat itself: k * mean_i (sum x_hat_i^2)^3.
        real = RNG.normal(size=(3, 2, 2, 1))
        fake = RNG.normal(size=(3, 2, 2, 1))
        eps = np.array([0.0, 0.25, 1.0])
        e = eps[:, None, None, None]
        x_hat = e * real + (1 - e) * fake
        self.assertAllClose(x_hat[0], fake[0])  # epsilon = 0 -> F_sr
        self.assertAllClose(x_hat[2], real[2])  # epsilon = 1 -> F_hr
        self.assertAllClose(
            losses.interpolate(real, fake, eps), x_hat, atol=1e-6
        )
        expected = 2.0 * np.mean(np.sum(x_hat**2, axis=(1, 2, 3)) ** 3)
        penalty = losses.wgan_div_penalty(
            QuadraticCritic(), real, fake, eps, k=2.0, p=6.0
        )
        self.assertAllClose(penalty, expected, rtol=1e-5)

    def test_tanh_critic_vs_float64_finite_differences(self):
        n, hidden = 9, 5
        w = RNG.normal(size=(hidden, n)) * 0.5
        v = RNG.normal(size=hidden)
        critic = TanhCritic(w, v, c=0.1)
        real = RNG.normal(size=(3, 3, 3, 1))
        fake = RNG.normal(size=(3, 3, 3, 1))
        eps = RNG.uniform(size=3)
        x_hat = (
            eps[:, None, None, None] * real
            + (1 - eps[:, None, None, None]) * fake
        )
        expected = _penalty64(w, v, 0.1, x_hat, k=2.0, p=6.0)
        self.assertAllClose(
            expected, _penalty64_analytic(w, v, x_hat, 2.0, 6.0), rtol=1e-7
        )
        penalty = losses.wgan_div_penalty(
            critic,
            real.astype("float32"),
            fake.astype("float32"),
            eps.astype("float32"),
            k=2.0,
            p=6.0,
        )
        self.assertAllClose(penalty, expected, rtol=1e-4)

        # Double back-propagation: d penalty / d critic weights against
        # float64 finite differences of the analytic penalty.
        with tf.GradientTape() as tape:
            penalty = losses.wgan_div_penalty(
                critic,
                real.astype("float32"),
                fake.astype("float32"),
                eps.astype("float32"),
                k=2.0,
                p=6.0,
            )
        grad_w, grad_v = tape.gradient(penalty, [critic.w, critic.v])
        h = 1e-6
        fd_w = np.zeros_like(w)
        for idx in np.ndindex(*w.shape):
            e = np.zeros_like(w)
            e[idx] = h
            fd_w[idx] = (
                _penalty64_analytic(w + e, v, x_hat, 2.0, 6.0)
                - _penalty64_analytic(w - e, v, x_hat, 2.0, 6.0)
            ) / (2 * h)
        fd_v = np.zeros_like(v)
        for i in range(hidden):
            e = np.zeros_like(v)
            e[i] = h
            fd_v[i] = (
                _penalty64_analytic(w, v + e, x_hat, 2.0, 6.0)
                - _penalty64_analytic(w, v - e, x_hat, 2.0, 6.0)
            ) / (2 * h)
        scale = max(np.abs(fd_w).max(), np.abs(fd_v).max())
        self.assertAllClose(grad_w, fd_w, atol=5e-3 * scale, rtol=5e-3)
        self.assertAllClose(grad_v, fd_v, atol=5e-3 * scale, rtol=5e-3)

    def test_samples_are_independent(self):
        critic = TanhCritic(RNG.normal(size=(4, 4)), RNG.normal(size=4))
        real = RNG.normal(size=(2, 2, 2, 1)).astype("float32")
        fake = RNG.normal(size=(2, 2, 2, 1)).astype("float32")
        eps = np.array([0.3, 0.8], "float32")
        both = losses.wgan_div_penalty(critic, real, fake, eps)
        singles = [
            losses.wgan_div_penalty(
                critic, real[i : i + 1], fake[i : i + 1], eps[i : i + 1]
            )
            for i in range(2)
        ]
        self.assertAllClose(both, np.mean(singles), rtol=1e-5)

    def test_float16_inputs_give_float32(self):
        a = RNG.normal(size=(1, 2, 2, 1))
        real = RNG.normal(size=(2, 2, 2, 1)).astype("float16")
        penalty = losses.wgan_div_penalty(
            LinearCritic(a), real, real, np.array([0.5, 0.5], "float16")
        )
        self.assertEqual(penalty.dtype, tf.float32)

    def test_gradient_scale_keeps_float16_gradients_from_underflowing(self):
        # D(x) = c * sum(float16(x) * a) with c = 1e-9: the backward pass
        # carries c through float16, where it underflows to 0 (the smallest
        # float16 is 6e-8). A loss scale S = 2^20 lifts it to ~1e-3 and the
        # result, divided by S in float32, matches float64.
        a = RNG.normal(size=(1, 3, 3, 1))
        c = 1e-9

        def critic(x, training=None):
            y = tf.cast(x, tf.float16) * tf.constant(a, tf.float16)
            z = tf.reduce_sum(y, axis=[1, 2, 3])[:, None]
            return tf.cast(z, tf.float32) * c

        real = RNG.normal(size=(2, 3, 3, 1)).astype("float32")
        fake = RNG.normal(size=(2, 3, 3, 1)).astype("float32")
        eps = np.array([0.3, 0.8], "float32")
        expected = 2.0 * np.sum(
            (c * a.astype(np.float16).astype(np.float64)) ** 2
        )
        unscaled = losses.wgan_div_penalty(critic, real, fake, eps, p=2.0)
        self.assertEqual(float(unscaled), 0.0)  # underflow without a scale
        scaled = losses.wgan_div_penalty(
            critic, real, fake, eps, p=2.0, gradient_scale=2.0**20
        )
        self.assertAllClose(scaled, expected, rtol=1e-2)
        # In float32 the scale changes nothing.
        linear = LinearCritic(a)
        self.assertAllClose(
            losses.wgan_div_penalty(
                linear, real, fake, eps, p=6.0, gradient_scale=1024.0
            ),
            losses.wgan_div_penalty(linear, real, fake, eps, p=6.0),
            rtol=1e-6,
        )

    def test_validation(self):
        critic = QuadraticCritic()
        x = np.zeros((1, 2, 2, 1), "float32")
        with self.assertRaises(ConfigError):
            losses.wgan_div_penalty(critic, x, x, [0.5], k=-1.0)
        with self.assertRaises(ConfigError):
            losses.wgan_div_penalty(critic, x, x, [0.5], p=0.0)


class AdversarialLossTest(tf.test.TestCase):
    def test_critic_loss_value(self):
        d_real = np.array([[1.0], [2.0]])
        d_fake = np.array([[0.0], [1.0]])
        # E[D(real)] - E[D(fake)] + penalty = 1.5 - 0.5 + 0.25.
        self.assertAllClose(
            losses.critic_loss(d_real, d_fake, 0.25), 1.25, atol=1e-6
        )
        # Weighted expectations (released code): (1*1 + 3*2) / 2 -
        # (1*0 + 3*1) / 2 + 0.25.
        self.assertAllClose(
            losses.critic_loss(d_real, d_fake, 0.25, weights=[1.0, 3.0]),
            3.5 - 1.5 + 0.25,
            atol=1e-6,
        )

    def test_critic_loss_sign(self):
        # Eq. 8: the critic is pushed to lower D(F_hr) and raise D(F_sr).
        d_real = np.array([0.5, -0.2])
        d_fake = np.array([0.1, 0.4])
        base = losses.critic_loss(d_real, d_fake, 0.0)
        self.assertLess(losses.critic_loss(d_real - 0.1, d_fake, 0.0), base)
        self.assertLess(losses.critic_loss(d_real, d_fake + 0.1, 0.0), base)
        self.assertGreater(losses.critic_loss(d_real, d_fake, 0.1), base)
        # Gradients: +1/B on real scores, -1/B on fake scores.
        real = tf.constant(d_real, tf.float32)
        fake = tf.constant(d_fake, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch([real, fake])
            loss = losses.critic_loss(real, fake, 0.0)
        g_real, g_fake = tape.gradient(loss, [real, fake])
        self.assertAllClose(g_real, [0.5, 0.5])
        self.assertAllClose(g_fake, [-0.5, -0.5])

    def test_generator_adversarial_sign(self):
        # Eq. 7: G minimises D(F_sr) per sample.
        d_fake = tf.constant([[0.2], [-1.0], [3.0]])
        with tf.GradientTape() as tape:
            tape.watch(d_fake)
            per_sample = losses.generator_adversarial_loss(d_fake)
            loss = losses.weighted_mean(per_sample)
        self.assertAllClose(per_sample, [0.2, -1.0, 3.0])
        self.assertAllClose(loss, 2.2 / 3, atol=1e-6)
        self.assertAllClose(tape.gradient(loss, d_fake), [[1 / 3]] * 3)


class ContentLossTest(tf.test.TestCase):
    def test_perceptual(self):
        sr = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], "float32")
        hr = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], "float32")
        self.assertAllClose(losses.perceptual_loss(sr, hr), [5.0, 3.0])
        emb_sr = RNG.normal(size=(4, 128))
        emb_hr = RNG.normal(size=(4, 128))
        self.assertAllClose(
            losses.perceptual_loss(emb_sr, emb_hr),
            np.sum((emb_sr - emb_hr) ** 2, axis=1),
            rtol=1e-5,
        )

    def test_feature_l2_reductions(self):
        sr = RNG.normal(size=(3, 4, 4, 1))
        hr = RNG.normal(size=(3, 4, 4, 1))
        sq = (sr - hr) ** 2
        mean = losses.feature_l2_loss(sr, hr)
        total = losses.feature_l2_loss(sr, hr, reduction="sum")
        self.assertEqual(mean.shape, (3,))
        self.assertAllClose(mean, sq.mean(axis=(1, 2, 3)), rtol=1e-5)
        self.assertAllClose(total, sq.sum(axis=(1, 2, 3)), rtol=1e-5)
        self.assertAllClose(total, 16 * mean, rtol=1e-5)
        with self.assertRaises(ConfigError):
            losses.feature_l2_loss(sr, hr, reduction="max")


class ReweightTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        (1.5, 1.0, [1.5, 1.0, 0.5, 0.6]),
        (1.5, 2.0, [2.25, 1.0, 0.25, 0.36]),
        (2.0, 0.5, [np.sqrt(2.0), np.sqrt(1.5), 1.0, np.sqrt(1.1)]),
    )
    def test_values(self, sigma, r, expected):
        p = np.array([0.0, 0.5, 1.0, 0.9], "float32")
        self.assertAllClose(
            losses.reweight(p, sigma=sigma, r=r), expected, rtol=1e-6
        )

    def test_no_gradient(self):
        p = tf.constant([0.2, 0.7])
        with tf.GradientTape() as tape:
            tape.watch(p)
            w = losses.reweight(p, 1.5, 2.0)
        self.assertIsNone(tape.gradient(w, p))

    def test_true_class_probability(self):
        logits = np.array([[0.0, 0.0, np.log(2.0)], [5.0, 1.0, 1.0]])
        labels = np.array([2, 1])
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        self.assertAllClose(
            losses.true_class_probability(logits, labels),
            [0.5, probs[1, 1]],
            rtol=1e-6,
        )

    def test_weighted_mean(self):
        self.assertAllClose(
            losses.weighted_mean([1.0, 2.0, 3.0], [2.0, 0.0, 1.0]), 5.0 / 3
        )
        self.assertAllClose(losses.weighted_mean([1.0, 2.0, 3.0]), 2.0)

    @parameterized.parameters((1.0, 1.0), (0.5, 1.0), (1.5, 0.0), (1.5, -1.0))
    def test_validation(self, sigma, r):
        with self.assertRaises(ConfigError):
            losses.reweight([0.5], sigma=sigma, r=r)


class ReweightGradientTest(tf.test.TestCase):
    def test_gradient_switch(self):
        # w = (sigma - p)^r: dw/dp = -r (sigma - p)^(r - 1) when the
        # gradient is kept (released code), None when it is stopped.
        p = tf.constant([0.2, 0.7, 0.95])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(p)
            kept = losses.reweight(p, 1.5, 2.0, gradient=True)
            stopped = losses.reweight(p, 1.5, 2.0, gradient=False)
        self.assertAllClose(kept, stopped)
        self.assertAllClose(
            tape.gradient(kept, p), -2.0 * (1.5 - p.numpy()), rtol=1e-6
        )
        self.assertIsNone(tape.gradient(stopped, p))

    def test_weighted_loss_gradient_vs_float64_finite_differences(self):
        # d/dz sum_i w(p_i(z)) L_i(z) with p = softmax(z)[y]: the released
        # gradient adds L_i dw/dp dp/dz to w_i dL_i/dz.
        rng = np.random.default_rng(1)
        z = rng.normal(size=(3, 4))
        y = np.array([0, 2, 3])
        target = rng.normal(size=(3, 4))

        def loss64(z):
            e = np.exp(z - z.max(axis=1, keepdims=True))
            p = (e / e.sum(axis=1, keepdims=True))[np.arange(3), y]
            per = ((z - target) ** 2).sum(axis=1)
            return float(np.sum((1.5 - p) ** 2 * per))

        zt = tf.constant(z, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            p = losses.true_class_probability(zt, y)
            w = losses.reweight(p, 1.5, 2.0, gradient=True)
            per = tf.reduce_sum(tf.square(zt - target.astype("float32")), 1)
            loss = tf.reduce_sum(w * per)
        grad = tape.gradient(loss, zt).numpy()
        h = 1e-6
        numeric = np.zeros_like(z)
        for idx in np.ndindex(*z.shape):
            step = np.zeros_like(z)
            step[idx] = h
            numeric[idx] = (loss64(z + step) - loss64(z - step)) / (2 * h)
        self.assertAllClose(grad, numeric, rtol=2e-4, atol=2e-4)


class PenaltyNormTest(tf.test.TestCase):
    def test_gradient_power_against_numpy(self):
        g = RNG.normal(size=(2, 5, 5, 1)).astype("float32")
        p = 6.0
        every = (g**2).sum(axis=(1, 2, 3)) ** (p / 2)
        # Released code: sum over axis 1 -> one norm per column, then mean.
        columns = ((g**2).sum(axis=1) ** (p / 2)).mean(axis=(1, 2))
        self.assertAllClose(
            losses.gradient_power(g, p, "all"), every, rtol=1e-5
        )
        self.assertAllClose(
            losses.gradient_power(g, p, "per_column"), columns, rtol=1e-5
        )
        with self.assertRaises(ConfigError):
            losses.gradient_power(g, p, "rows")

    def test_linear_critic_per_column_closed_form(self):
        # grad D = a everywhere: per-column penalty = k mean_j ||a_j||^p.
        a = RNG.normal(size=(1, 4, 4, 1)).astype("float32")
        real = RNG.normal(size=(3, 4, 4, 1)).astype("float32")
        fake = RNG.normal(size=(3, 4, 4, 1)).astype("float32")
        eps = np.array([0.1, 0.5, 0.9], "float32")
        got = losses.wgan_div_penalty(
            LinearCritic(a), real, fake, eps, k=2.0, p=6.0, norm="per_column"
        )
        expected = 2.0 * np.mean((a[0, :, :, 0] ** 2).sum(axis=0) ** 3)
        self.assertAllClose(got, expected, rtol=1e-5)
        every = losses.wgan_div_penalty(
            LinearCritic(a), real, fake, eps, k=2.0, p=6.0, norm="all"
        )
        self.assertAllClose(every, 2.0 * (a**2).sum() ** 3, rtol=1e-5)
        # Spread over d = 4 columns the same slope costs far less.
        self.assertLess(float(got), float(every) / 4)
        with self.assertRaises(ConfigError):
            losses.wgan_div_penalty(
                LinearCritic(a), real, fake, eps, norm="rows"
            )


class CrossEntropyTest(tf.test.TestCase):
    def test_values(self):
        logits = np.array([[0.0, np.log(3.0)], [2.0, 2.0]], "float32")
        self.assertAllClose(
            losses.cross_entropy(logits, [1, 0]),
            [-np.log(0.75), np.log(2.0)],
            rtol=1e-6,
        )
