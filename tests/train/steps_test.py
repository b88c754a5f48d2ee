"""Tests of the stage-2 training steps (fsr_fer_tf/train/steps.py).

The frozen CovPoolFER parts are tiny stand-ins with the same interface:
features = conv + batch-norm, spd = a symmetric Gram map [B, d, d], head =
flatten -> dense 128 -> dense 7 returning (embedding, logits). Each traced
`FSRSteps` costs seconds on CPU, so a few module-scoped runs record what the
tests then check.
"""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import configs
from fsr_fer_tf import losses
from fsr_fer_tf.configs import CriticConfig
from fsr_fer_tf.configs import GeneratorConfig
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.models.critic import VGGCritic
from fsr_fer_tf.models.generator import RRDBGenerator
from fsr_fer_tf.train import steps as steps_lib

D = 8  # side of the SPD feature
IMAGE = 16
BATCH = 4
G_CONFIG = GeneratorConfig(
    filters=8, growth=4, num_blocks=1, dense_convs=3, use_batch_norm=True
)
D_CONFIG = CriticConfig(base_filters=4, dense_units=16)
# Learning rate 1e-3 up to step 2 (schedules read the GAN step), then 5e-4.
SCHEDULE_BOUNDARIES = (2, 1000)
N_STEPS = 50


class Gram(keras.layers.Layer):
    """Stand-in for CovPool->BiMap->ReEig->LogEig: X^T X / N, symmetric."""

    def call(self, x):
        b, c = tf.shape(x)[0], x.shape[-1]
        x = tf.reshape(x, (b, -1, c))
        return tf.matmul(x, x, transpose_a=True) / tf.cast(
            tf.shape(x)[1], x.dtype
        )


def _frozen_parts():
    images = keras.Input((IMAGE, IMAGE, 3))
    x = keras.layers.Conv2D(D, 3, strides=2, padding="same")(images)
    x = keras.layers.BatchNormalization()(x)
    features = keras.Model(images, x, name="features")
    conv_map = keras.Input((IMAGE // 2, IMAGE // 2, D))
    spd = keras.Model(conv_map, Gram(dtype="float32")(conv_map), name="spd")
    f = keras.Input((D, D))
    embedding = keras.layers.Dense(128)(keras.layers.Flatten()(f))
    logits = keras.layers.Dense(7, dtype="float32")(embedding)
    head = keras.Model(f, [embedding, logits], name="head")
    return features, spd, head


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.normal(size=(BATCH, IMAGE, IMAGE, 3)).astype("float32")
    lr = (hr + 0.5 * rng.normal(size=hr.shape)).astype("float32")
    labels = np.arange(BATCH, dtype="int32") % 7
    return hr, lr, labels


def _recipe(name):
    """FSRSteps keyword arguments of a recipe in configs.RECIPES."""
    cfg = configs.replace(
        configs.FSRTrainConfig(), **configs.RECIPES[name]["train"]
    )
    fields = (
        "adv_weight",
        "perceptual_weight",
        "l2_weight",
        "l2_reduction",
        "reweight",
        "sigma",
        "r",
        "critic_weighting",
        "k",
        "p",
        "n_critic",
        "beta_1",
        "beta_2",
    )
    return {f: getattr(cfg, f) for f in fields}


def _make_steps(seed=0, frozen=None, g_config=G_CONFIG, **kwargs):
    """Fresh G and D (weights from `seed`) and frozen parts (new ones unless
    given) wrapped in FSRSteps."""
    keras.utils.set_random_seed(seed)
    features, spd, head = frozen or _frozen_parts()
    generator = RRDBGenerator(g_config)
    critic = VGGCritic(D_CONFIG, input_size=D)
    options = _recipe("paper")
    options.update(
        learning_rate=keras.optimizers.schedules.PiecewiseConstantDecay(
            list(SCHEDULE_BOUNDARIES), [1e-3, 5e-4, 2.5e-4]
        ),
        n_critic=2,
        seed=7,
    )
    options.update(kwargs)
    return steps_lib.FSRSteps(generator, critic, features, spd, head, **options)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _frozen_variables(steps):
    return steps.features.weights + steps.spd.weights + steps.head.weights


@pytest.fixture(scope="module")
def run():
    """Paper recipe (n_critic = 2, BN in G): 50 steps on a fixed batch."""
    steps = _make_steps()
    hr, lr, labels = _batch()
    record = {
        "g0": _values(steps.generator.weights),
        "d0": _values(steps.critic.weights),
        "frozen0": _values(_frozen_variables(steps)),
    }
    logs = [steps.train_step(hr, lr, labels)]
    record["g1"] = _values(steps.generator.weights)
    record["d1"] = _values(steps.critic.weights)
    for _ in range(N_STEPS - 1):
        logs.append(steps.train_step(hr, lr, labels))
    record["logs"] = [{k: v.numpy() for k, v in l.items()} for l in logs]
    record["dtypes"] = {k: v.dtype for k, v in logs[0].items()}
    record["frozen"] = _values(_frozen_variables(steps))
    record["traces"] = dict(steps.trace_counts)
    record["steps"] = steps
    return record


def test_one_step_updates_g_and_d_only(run):
    changed = lambda a, b: [not np.array_equal(x, y) for x, y in zip(a, b)]
    g_trainable = len(run["steps"].generator.trainable_weights)
    # Every G weight moves (trainable ones and BN statistics), every D
    # weight moves but the score's bias, the frozen CovPoolFER parts stay
    # bit-identical (their batch-norm statistics included: they run with
    # training=False).
    assert all(changed(run["g0"], run["g1"]))
    assert len(run["g0"]) > g_trainable
    # The score's bias cancels in E[D(F_hr)] - E[D(F_sr)] and does not enter
    # grad_x D, so its gradient is exactly zero.
    names = [w.path for w in run["steps"].critic.weights]
    assert names[-1] == "score/bias"
    assert all(changed(run["d0"][:-1], run["d1"][:-1]))
    np.testing.assert_array_equal(run["d0"][-1], run["d1"][-1])
    for before, after in zip(run["frozen0"], run["frozen"]):
        np.testing.assert_array_equal(before, after)


def test_logs(run):
    expected = {
        "d_loss",
        "d_real",
        "d_fake",
        "d_real_minus_fake",
        "penalty",
        "g_loss",
        "g_adv",
        "g_perceptual",
        "g_l2",
        "p_true",
        "w_mean",
        "w_min",
        "w_max",
        "grad_norm/adv",
        "grad_norm/perceptual",
        "grad_norm/l2",
        "g_learning_rate",
        "d_learning_rate",
        "g_loss_scale",
        "d_loss_scale",
    }
    assert set(run["dtypes"]) == expected
    assert all(d == tf.float32 for d in run["dtypes"].values())
    for logs in run["logs"]:
        assert all(np.isfinite(v) and v.shape == () for v in logs.values())
        np.testing.assert_allclose(
            logs["d_real_minus_fake"],
            logs["d_real"] - logs["d_fake"],
            rtol=1e-6,
        )
        # w = (1.5 - p)^1 lies in [0.5, 1.5].
        assert 0.5 <= logs["w_min"] <= logs["w_mean"] <= logs["w_max"] <= 1.5
        assert logs["g_loss_scale"] == logs["d_loss_scale"] == 1.0
    # Schedules read the GAN step for both networks (n_critic = 2 does not
    # advance the critic's schedule faster).
    lrs = [(l["g_learning_rate"], l["d_learning_rate"]) for l in run["logs"]]
    np.testing.assert_allclose(lrs[:3], [(1e-3, 1e-3)] * 3)
    np.testing.assert_allclose(lrs[3:], [(5e-4, 5e-4)] * (N_STEPS - 3))
    assert int(run["steps"].step.numpy()) == N_STEPS


@pytest.fixture(scope="module")
def released_forces():
    """One step with the released re-weighting gradient and a CE term, and
    the loss terms recomputed outside FSRSteps on the same F_sr."""
    steps = _make_steps(
        g_config=dataclasses.replace(G_CONFIG, batch_norm_mode="inference"),
        r=2.0,
        reweight_gradient=True,
        ce_weight=0.5,
        penalty_norm="per_column",
        n_critic=1,
    )
    hr, lr, labels = _batch()
    f_hr, f_lr = steps.extract(hr), steps.extract(lr)
    embedding_hr, _ = steps.classify(f_hr)
    f_sr = tf.Variable(steps.generator(f_lr, training=True))
    with tf.GradientTape(persistent=True) as tape:
        embedding_sr, logits_sr = steps.classify(f_sr)
        p_true = losses.true_class_probability(logits_sr, labels)
        w = losses.reweight(p_true, 1.5, 2.0, gradient=True)
        w_fixed = tf.stop_gradient(w)
        terms = {
            "perceptual": losses.perceptual_loss(embedding_sr, embedding_hr),
            "l2": losses.feature_l2_loss(f_sr, f_hr),
            "ce": 0.5 * losses.cross_entropy(logits_sr, labels),
        }
        parts = {k: tf.reduce_sum(w_fixed * v) for k, v in terms.items()}
        # The adversarial term needs the updated critic: left out here, so
        # this "reweight" force covers the other three terms only.
        parts["reweight_without_adv"] = tf.reduce_sum(
            w * tf.stop_gradient(tf.add_n(list(terms.values())))
        )
    expected = {
        k: float(
            tf.reduce_mean(
                tf.norm(tf.reshape(tape.gradient(v, f_sr), (BATCH, -1)), axis=1)
            )
        )
        for k, v in parts.items()
    }
    logs = {k: float(v) for k, v in steps.train_step(hr, lr, labels).items()}
    return logs, expected


def test_gradient_norm_per_loss_term(released_forces):
    logs, expected = released_forces
    for name in ("perceptual", "l2", "ce"):
        np.testing.assert_allclose(
            logs[f"grad_norm/{name}"], expected[name], rtol=1e-4, err_msg=name
        )
    assert logs["grad_norm/adv"] > 0
    assert "g_ce" in logs and logs["g_ce"] > 0
    # The released gradient of w exists and is not negligible.
    assert logs["grad_norm/reweight"] > 0.1 * expected["reweight_without_adv"]


def test_traced_once(run):
    assert run["traces"] == {"train_step": 1, "pretrain_step": 0}


def test_fifty_steps_reduce_content_losses(run):
    first, last = run["logs"][0], run["logs"][-1]
    assert last["g_l2"] < 0.5 * first["g_l2"]
    assert last["g_perceptual"] < 0.5 * first["g_perceptual"]


def test_checkpoint_round_trip(run, tmp_path):
    a = run["steps"]
    hr, lr, labels = _batch(seed=1)
    path = tf.train.Checkpoint(**a.checkpoint_items()).save(
        str(tmp_path / "ckpt")
    )
    saved_d_opt = _values(a.d_optimizer.variables)
    saved_g_opt = _values(a.g_optimizer.variables)
    logs_a = a.train_step(hr, lr, labels)

    # Other initial weights for G and D, restored below; the frozen parts
    # are not in the checkpoint (they come from stage 1).
    b = _make_steps(seed=1, frozen=(a.features, a.spd, a.head))
    status = tf.train.Checkpoint(**b.checkpoint_items()).restore(path)
    status.assert_consumed()
    for saved, restored in zip(
        saved_d_opt + saved_g_opt,
        _values(b.d_optimizer.variables) + _values(b.g_optimizer.variables),
    ):
        np.testing.assert_array_equal(saved, restored)
    assert int(b.step.numpy()) == N_STEPS
    logs_b = b.train_step(hr, lr, labels)
    for name in logs_a:
        np.testing.assert_allclose(
            logs_b[name], logs_a[name], rtol=1e-6, atol=1e-7, err_msg=name
        )
    for x, y in zip(
        a.generator.weights + a.critic.weights,
        b.generator.weights + b.critic.weights,
    ):
        np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def mixed_run():
    """Released recipe under mixed_float16: 20 steps."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        steps = _make_steps(
            g_config=dataclasses.replace(G_CONFIG, use_batch_norm=False),
            **_recipe("released"),
        )
    finally:
        keras.config.set_dtype_policy(policy)
    hr, lr, labels = _batch()
    logs = [
        {k: v.numpy() for k, v in steps.train_step(hr, lr, labels).items()}
        for _ in range(20)
    ]
    return steps, logs


def test_mixed_precision(mixed_run):
    steps, logs = mixed_run
    assert isinstance(steps.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(steps.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert steps.g_optimizer is not steps.d_optimizer
    assert steps.generator.get_layer("first_conv").compute_dtype == "float16"
    for step_logs in logs:
        assert all(np.isfinite(v) for v in step_logs.values())
    assert logs[-1]["g_loss_scale"] >= 1.0
    assert logs[-1]["d_loss_scale"] >= 1.0
    # Some steps were applied (skipped steps leave Adam's counter alone).
    assert int(steps.g_optimizer.iterations.numpy()) > 0
    assert int(steps.d_optimizer.iterations.numpy()) > 0
    # Released recipe: w = (1.5 - p)^2 in [0.25, 2.25].
    assert 0.25 <= logs[-1]["w_min"] <= logs[-1]["w_max"] <= 2.25


def test_pretrain_step():
    steps = _make_steps(pretrain_learning_rate=1e-3)
    hr, lr, labels = _batch()
    d_before = _values(steps.critic.weights)
    frozen = _values(_frozen_variables(steps))
    losses = [
        float(steps.pretrain_step(hr, lr)["pretrain_l2"]) for _ in range(15)
    ]
    assert losses[-1] < 0.5 * losses[0]
    assert steps.trace_counts == {"train_step": 0, "pretrain_step": 1}
    assert int(steps.step.numpy()) == 0  # the GAN schedule has not started
    assert int(steps.pretrain_optimizer.iterations.numpy()) == 15
    assert int(steps.g_optimizer.iterations.numpy()) == 0
    after = _values(steps.critic.weights + _frozen_variables(steps))
    for x, y in zip(d_before + frozen, after):
        np.testing.assert_array_equal(x, y)


def test_jit_compile_matches_eager():
    # A small G keeps XLA's compile time down.
    steps = _make_steps(
        g_config=GeneratorConfig(filters=4, growth=4, num_blocks=0),
        jit_compile=True,
    )
    hr, lr, labels = _batch()
    f_hr, f_lr = steps.extract(hr), steps.extract(lr)
    f_sr = steps.generator(f_lr)
    eps = tf.constant([0.1, 0.4, 0.6, 0.9])
    w = tf.constant([1.0, 0.5, 1.5, 1.2])
    xla_grads, xla_logs = steps._critic_gradients(f_hr, f_sr, eps, w)
    ref_grads, ref_logs = steps._critic_gradients_impl(f_hr, f_sr, eps, w)
    for name in ref_logs:
        np.testing.assert_allclose(xla_logs[name], ref_logs[name], rtol=1e-4)
    for x, y in zip(xla_grads, ref_grads):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)
    xla_grads, xla_loss = steps._pretrain_gradients(f_lr, f_hr)
    ref_grads, ref_loss = steps._pretrain_gradients_impl(f_lr, f_hr)
    np.testing.assert_allclose(xla_loss, ref_loss, rtol=1e-5)
    for x, y in zip(xla_grads, ref_grads):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-6)
    logs = steps.train_step(hr, lr, labels)
    assert all(np.isfinite(v.numpy()) for v in logs.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sigma=1.0),
        dict(r=0.0),
        dict(n_critic=0),
        dict(k=-1.0),
        dict(l2_reduction="max"),
        dict(reweight=False, critic_weighting=True),
        dict(reweight=False, reweight_gradient=True),
        dict(penalty_norm="rows"),
        dict(ce_weight=-1.0),
        dict(learning_rate="fast"),
    ],
)
def test_validation(kwargs):
    generator = RRDBGenerator(dataclasses.replace(G_CONFIG, num_blocks=0))
    critic = VGGCritic(D_CONFIG, input_size=D)
    with pytest.raises(ConfigError):
        steps_lib.FSRSteps(generator, critic, None, None, None, **kwargs)


def test_non_finite_batch_changes_no_weights_or_optimizer_state():
    # float32 (no LossScaleOptimizer): a NaN batch must not write NaN into G,
    # D or Adam's moments, so the loop can checkpoint the last good state.
    steps = _make_steps(
        g_config=dataclasses.replace(G_CONFIG, use_batch_norm=False)
    )
    hr, lr, labels = _batch()
    steps.train_step(hr, lr, labels)
    before = _values(
        steps.generator.weights
        + steps.critic.weights
        + steps.g_optimizer.variables
        + steps.d_optimizer.variables
    )
    bad = hr.copy()
    bad[0, 0, 0, 0] = np.nan
    logs = steps.train_step(bad, lr, labels)
    assert not np.isfinite(logs["g_loss"].numpy())
    assert not np.isfinite(logs["d_loss"].numpy())
    after = _values(
        steps.generator.weights
        + steps.critic.weights
        + steps.g_optimizer.variables
        + steps.d_optimizer.variables
    )
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # A good batch afterwards still trains.
    steps.train_step(hr, lr, labels)
    assert not np.array_equal(_values(steps.generator.weights)[0], before[0])


_REMAPPER_SCRIPT = """
import fsr_fer_tf
import numpy as np
from fsr_fer_tf import configs
from fsr_fer_tf.models.covpool import build_covpoolfer, covpoolfer_parts
from fsr_fer_tf.models.critic import VGGCritic
from fsr_fer_tf.models.generator import RRDBGenerator
from fsr_fer_tf.train.steps import FSRSteps

fer = build_covpoolfer(configs.CovPoolFERConfig(
    image_size=32, conv_filters=(4, 4, 8, 8, 8, 8), bimap_dim=4,
    fc_units=(16, 8)))
g = RRDBGenerator(configs.GeneratorConfig(
    filters=8, growth=4, num_blocks=1, dense_convs=3))
d = VGGCritic(configs.CriticConfig(base_filters=4, dense_units=16),
              input_size=4)
g.build((None, 4, 4, 1))
d.build((None, 4, 4, 1))
steps = FSRSteps(g, d, *covpoolfer_parts(fer), remapper=REMAPPER)
x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3))
x = x.astype("float32")
steps.pretrain_step(x, x)
logs = steps.train_step(x, x, np.arange(4, dtype="int32"))
print("d_loss", float(logs["d_loss"]))
"""


def test_stage2_steps_print_no_remapper_error():
    # With oneDNN on (TF_ENABLE_ONEDNN_OPTS=1; the default on CPUs with
    # AVX512-VNNI/AMX), TF 2.21's remapper fails on LeakyReluGrad and logs
    # an E-level line per traced step unless FSRSteps turns it off.
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _REMAPPER_SCRIPT.replace("REMAPPER", "False")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "d_loss" in result.stdout
    assert "remapper failed" not in result.stderr, result.stderr[-2000:]
    assert not [
        line for line in result.stderr.splitlines() if line.startswith("E")
    ], result.stderr[-2000:]
