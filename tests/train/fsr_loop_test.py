"""Stage-2 training loop: exports, resume, NaN stop, bad input, recipes."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf.models import covpool
from fsr_fer_tf.train import fsr_loop
from fsr_fer_tf.train import loop

G = configs.GeneratorConfig(filters=4, growth=4, num_blocks=1, dense_convs=2)
D = configs.CriticConfig(base_filters=2, dense_units=8)
CFG = configs.FSRTrainConfig(
    batch_size=8,
    steps=5,
    scales="2,4,8",
    eval_every=5,
    log_every=1,
    checkpoint_every=100,
    lr_boundaries="3",
    eval_images=14,
)


def _train(tiny_run, model_dir, cfg=CFG, gen=G):
    return fsr_loop.train_fsr(
        tiny_run["fer"]["final"],
        gen,
        D,
        cfg,
        tiny_run["data_config"],
        str(model_dir),
        dataset=tiny_run["dataset"],
    )


def _weights(path):
    return [w.numpy() for w in keras.models.load_model(path).weights]


def _listing(folder):
    """{relative path: (size, mtime)} of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.stat(os.path.join(root, name))
            rel = os.path.relpath(os.path.join(root, name), folder)
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def test_exports_and_combined_model(tiny_run):
    fsr = tiny_run["fsr"]
    for key in ("generator", "critic", "generator_best", "fsr_fer"):
        assert os.path.isfile(fsr[key]), key
    assert os.path.isfile(os.path.join(fsr["model_dir"], "best", "info.json"))
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    features, spd, head = covpool.covpoolfer_parts(fer)
    generator = keras.models.load_model(fsr["generator"])
    combined = keras.models.load_model(fsr["fsr_fer"])
    images = tiny_run["dataset"].split("test").images[:4].astype("float32")
    f_sr = generator(spd(features(images))[..., None])[..., 0]
    expected = head(f_sr)[1]
    np.testing.assert_allclose(combined(images), expected, atol=1e-5)
    assert set(fsr["validation"]) == {"bicubic", "fsr"}
    assert set(fsr["validation"]["fsr"]) == {"x2", "x4", "x8"}
    scalars = loop.read_scalars(os.path.join(fsr["model_dir"], "validation"))
    assert {"fsr/mean_accuracy", "bicubic/accuracy_x8"} <= set(scalars)
    train = loop.read_scalars(os.path.join(fsr["model_dir"], "train"))
    for tag in (
        "penalty",
        "d_real_minus_fake",
        "w_mean",
        "g_perceptual",
        "g_learning_rate",
        "g_loss_scale",
    ):
        assert tag in train, tag


@pytest.fixture(scope="module")
def straight(tiny_run, tmp_path_factory):
    """A run of CFG (with generator snapshots at steps 1 and 2), and the
    frozen CovPoolFER's weights as they were before it."""
    before = _weights(tiny_run["fer"]["final"])
    cfg = dataclasses.replace(CFG, snapshot_steps="1,2")
    run = _train(tiny_run, tmp_path_factory.mktemp("straight"), cfg)
    return run, cfg, before


@pytest.fixture(scope="module")
def two_steps(tiny_run, tmp_path_factory):
    """A run of CFG cut to 2 steps."""
    cfg = dataclasses.replace(CFG, steps=2)
    return _train(tiny_run, tmp_path_factory.mktemp("two"), cfg)


def test_frozen_covpoolfer_is_not_changed(tiny_run, straight):
    _, _, before = straight
    for a, b in zip(before, _weights(tiny_run["fer"]["final"])):
        np.testing.assert_array_equal(a, b)


def test_interrupt_and_resume_equals_straight_run(
    tiny_run, straight, tmp_path, monkeypatch
):
    straight, cfg, _ = straight
    original = loop.ProgressLogger.maybe_log

    def interrupt_at_3(self, step, metrics, force=False):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, step, metrics, force)

    monkeypatch.setattr(loop.ProgressLogger, "maybe_log", interrupt_at_3)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_run, tmp_path / "resumed", cfg)
    monkeypatch.setattr(loop.ProgressLogger, "maybe_log", original)
    resumed = _train(tiny_run, tmp_path / "resumed", cfg)
    assert resumed["steps"] == straight["steps"] == 5
    for name in ("generator", "critic"):
        for a, b in zip(_weights(straight[name]), _weights(resumed[name])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ckpt_a = tf.train.latest_checkpoint(straight["model_dir"])
    ckpt_b = tf.train.latest_checkpoint(resumed["model_dir"])
    names = [
        n
        for n, _ in tf.train.list_variables(ckpt_a)
        if ("optimizer" in n or "epsilon_seed" in n) and "VARIABLE_VALUE" in n
    ]
    assert any("epsilon_seed" in n for n in names) and len(names) > 10
    for n in names:
        np.testing.assert_allclose(
            tf.train.load_variable(ckpt_a, n),
            tf.train.load_variable(ckpt_b, n),
            rtol=1e-5,
            atol=1e-6,
            err_msg=n,
        )


def test_snapshot_equals_a_run_of_that_length(straight, two_steps):
    longer, _, _ = straight
    run_dir = longer["model_dir"]
    assert sorted(f for f in os.listdir(run_dir) if "_step" in f) == [
        "generator_step1.keras",
        "generator_step2.keras",
    ]
    snapshot = _weights(fsr_loop.snapshot_path(run_dir, 2))
    for a, b in zip(snapshot, _weights(two_steps["generator"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # ... and is not the final generator, three steps later.
    final = _weights(longer["generator"])
    assert any(not np.allclose(a, b) for a, b in zip(snapshot, final))


def test_nan_stops_with_step_and_term_after_saving_last_good_state(
    tiny_run, tmp_path, nan_after_step, finite_checkpoint
):
    # The perceptual term turns NaN after step 2, so step 3's loss and
    # gradients are NaN. (A NaN input pixel would not do: under tf.function
    # TF's fused conv+ReLU on CPU maps NaN to 0, so the frozen CovPoolFER
    # would give finite features.)
    from fsr_fer_tf.train import steps as steps_lib

    nan_after_step(steps_lib.losses, "perceptual_loss", step=2)
    model_dir = tmp_path / "nan"
    with pytest.raises(
        loop.NonFiniteLossError,
        match=r"'(g_loss|g_perceptual)' became nan at step 3.*"
        r"skipped.*ckpt-3",
    ):
        _train(tiny_run, model_dir)
    latest = tf.train.latest_checkpoint(str(model_dir))
    # Numbered by batches consumed; its counters agree with its number.
    assert os.path.basename(latest) == "ckpt-3"
    assert (
        tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE") == 3
    )
    # Every variable (G, D, Adam moments: each saved once, some under the
    # optimizer's path) is finite: the NaN step wrote nothing. `best` starts
    # at -inf: no validation has run yet at step 3.
    _, best = finite_checkpoint(latest)
    assert best == -np.inf


def test_bad_fer_model_errors(tiny_run, tmp_path):
    with pytest.raises(errors.ConfigError, match="--fer_model is required"):
        fsr_loop.load_fer_model(None)
    with pytest.raises(errors.ConfigError, match="does not exist.*train_fer"):
        fsr_loop.load_fer_model(str(tmp_path / "missing.keras"))
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(errors.ConfigError, match="not a loadable .keras"):
        fsr_loop.load_fer_model(str(junk))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(errors.ConfigError, match="not a CovPoolFER model"):
        fsr_loop.load_fer_model(str(tmp_path / "other.keras"))


def test_stage1_model_of_another_preset_is_refused(tiny_run, tmp_path):
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    # The tiny run trains through fer_loop without a preset name.
    assert covpool.model_metadata(fer)["preset"] is None
    assert covpool.model_metadata(fer)["colour"] == "rgb"  # synthetic faces
    fer.metadata = dict(fer.metadata, preset="demo")
    path = str(tmp_path / "demo_fer.keras")
    fer.save(path)
    loaded = keras.models.load_model(path)
    assert covpool.model_metadata(loaded)["preset"] == "demo"
    with pytest.raises(errors.ConfigError, match="--preset=demo but this"):
        fsr_loop.train_fsr(
            path,
            G,
            D,
            CFG,
            tiny_run["data_config"],
            str(tmp_path / "r"),
            dataset=tiny_run["dataset"],
            preset="fer2013",
        )
    assert not os.path.exists(tmp_path / "r")  # refused before any work
    fsr_loop.check_fer_preset(loaded, path, "demo")  # the same preset passes
    fsr_loop.check_fer_preset(loaded, path, None)


def test_generator_for_another_feature_size_is_refused(
    tiny_run, two_steps, tmp_path
):
    # A stage-2 checkpoint for d=8 features cannot resume on d=6 features:
    # the architecture check names the feature size.
    model_dir = two_steps["model_dir"]
    files = _listing(model_dir)
    small = covpool.build_covpoolfer(
        configs.CovPoolFERConfig(
            conv_filters=(4, 4, 6, 6, 8, 8), bimap_dim=6, fc_units=(16, 8)
        )
    )
    small.save(tmp_path / "small.keras")
    with pytest.raises(errors.ConfigError, match="feature_size: 8 -> 6"):
        fsr_loop.train_fsr(
            str(tmp_path / "small.keras"),
            G,
            D,
            dataclasses.replace(CFG, steps=2),
            tiny_run["data_config"],
            str(model_dir),
            dataset=tiny_run["dataset"],
        )
    assert _listing(model_dir) == files  # refused before writing


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("p", 0.0, "--p must be > 0"),
        ("sigma", 1.0, "--sigma must be > 1"),
        ("r", -1.0, "--r must be > 0"),
        ("k", -0.5, "--k must be >= 0"),
        ("scales", "", "--scales is empty"),
        ("scales", "0,2", "--scales must be >= 1"),
        ("scales", "2,x", "comma-separated integers"),
        ("n_critic", 0, "--n_critic"),
        ("l2_reduction", "max", "--l2_reduction"),
        ("lr_boundaries", "50,20", "increasing"),
        ("snapshot_steps", "0", "increasing positive"),
    ],
)
def test_out_of_range_settings(field, value, match):
    with pytest.raises(errors.ConfigError, match=match):
        fsr_loop.validate_config(dataclasses.replace(CFG, **{field: value}))


def test_zero_penalty_weight_is_allowed():
    # k = 0 turns the WGAN-div penalty off (as losses.check_wgan_div allows).
    assert fsr_loop.validate_config(dataclasses.replace(CFG, k=0.0))


def test_released_recipe_overlay_and_explicit_flags():
    from absl import flags

    from fsr_fer_tf import train_fsr

    train_fsr.define_flags()
    values = flags.FLAGS
    try:
        values(["prog", "--r=3", "--g_filters=12"])
        gen, critic, cfg = train_fsr.resolve_configs("demo", "released")
    finally:
        values.unparse_flags()
    assert cfg.r == 3.0  # explicit flag beats the recipe's r = 2
    assert (cfg.perceptual_weight, cfg.l2_weight, cfg.critic_weighting) == (
        10.0,
        0.01,
        True,
    )
    # The released schedule, sized for the demo's budget.
    assert cfg.pretrain_steps == 100 and cfg.learning_rate == 2e-5
    assert cfg.lr_boundaries == (200,) and cfg.pretrain_lr_boundaries == ()
    assert (
        gen.filters == 12 and gen.use_batch_norm and gen.tail_kernel_size == 8
    )
    assert gen.batch_norm_mode == "inference"
    assert cfg.reweight_gradient and cfg.penalty_norm == "per_column"
    assert (critic.base_filters, critic.use_bias) == (8, False)
    assert cfg.steps == configs.FSR_TRAIN_PRESETS["demo"].steps


@pytest.mark.parametrize(
    "preset, pretrain, boundaries",
    [
        ("paper", 40_000, (20000, 100000, 200000)),
        ("demo", 100, (200,)),
        ("fer2013", 300, (1600,)),
    ],
)
def test_released_schedule_per_preset(preset, pretrain, boundaries):
    _, _, cfg = configs.stage2_configs(preset, "released")
    assert cfg.pretrain_steps == pretrain and cfg.lr_boundaries == boundaries
    assert cfg.learning_rate == 2e-5  # the recipe's rate on every preset
    assert fsr_loop.validate_config(cfg)
    _, _, paper = configs.stage2_configs(preset, "paper")
    assert paper == configs.FSR_TRAIN_PRESETS[preset]
