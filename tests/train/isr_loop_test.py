"""Image-SR training (train/isr_loop.py, train_isr.py): a tiny run end to
end, resume, the consistency term, bad settings."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import image_metrics
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.models import isr
from fsr_fer_tf.train import isr_loop
from fsr_fer_tf.train import loop

TINY = configs.ISRModelConfig(
    channels=4, blocks=1, groups=1, reduction=2, meta_hidden=4
)
CFG = configs.ISRTrainConfig(
    batch_size=8,
    steps=4,
    scales="2,4,8",
    learning_rate=1e-3,
    lr_boundaries="3",
    eval_every=2,
    log_every=1,
    checkpoint_every=2,
    fer_weight=0.1,
)


@pytest.fixture(scope="module")
def isr_run(tiny_run, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("isr") / "metasr")
    result = isr_loop.train_isr(
        "metasr",
        TINY,
        CFG,
        tiny_run["data_config"],
        model_dir,
        fer_model_path=tiny_run["fer"]["final"],
        dataset=tiny_run["dataset"],
    )
    return result


def test_run_exports_validates_and_logs(isr_run):
    assert isr_run["steps"] == 4
    for name in ("isr", "isr_best"):
        assert os.path.isfile(isr_run[name])
    val = isr_run["validation"]
    assert set(val) == {"sr", "bicubic"}
    assert set(val["sr"]) == {"x2", "x4", "x8"}
    for key, r in val["sr"].items():
        assert 0 < r["psnr"] < 60 and 0 < r["ssim"] <= 1
        assert 0 <= r["accuracy"] <= 1  # CovPoolFER on the SR face
        # bicubic at the same scale: PSNR of the upsampled LR face.
        assert 5 < val["bicubic"][key]["psnr"] < 60
    scalars = loop.read_scalars(os.path.join(isr_run["model_dir"], "train"))
    for tag in ("loss", "l1", "fer_feature", "fer_prediction", "grad_norm"):
        assert tag in scalars, tag
        assert all(np.isfinite(v) for _, v in scalars[tag])
    # loss = l1 + 0.1 * (feature + prediction), step by step.
    for (s, loss), (_, l1), (_, f), (_, p) in zip(
        scalars["loss"],
        scalars["l1"],
        scalars["fer_feature"],
        scalars["fer_prediction"],
    ):
        np.testing.assert_allclose(loss, l1 + 0.1 * (f + p), rtol=1e-5)
    val_scalars = loop.read_scalars(
        os.path.join(isr_run["model_dir"], "validation")
    )
    assert [s for s, _ in val_scalars["sr/mean_psnr"]] == [2, 4]


def test_exported_model_reproduces_validation_psnr(isr_run, tiny_run):
    model = isr.load_isr(isr_run["isr"])
    assert isr.served_scales(model) == (2, 4, 8)
    split = tiny_run["dataset"].split("test")
    batch = next(
        iter(
            pipeline.make_dataset(
                split,
                batch_size=len(split),
                training=False,
                scales=(4,),
                lr_native=True,
            )
        )
    )
    sr = isr.super_resolve(model, batch["lr_native"], 4).numpy()
    psnr = image_metrics.psnr(sr, batch["hr"].numpy(), shave=4)
    np.testing.assert_allclose(
        psnr.mean(), isr_run["validation"]["sr"]["x4"]["psnr"], rtol=1e-5
    )


def test_resume_continues_at_the_step(isr_run, tiny_run):
    # Two more steps in the same folder: starts from 4, ends at 6.
    more = dataclasses.replace(CFG, steps=6)
    result = isr_loop.train_isr(
        "metasr",
        TINY,
        more,
        tiny_run["data_config"],
        isr_run["model_dir"],
        fer_model_path=tiny_run["fer"]["final"],
        dataset=tiny_run["dataset"],
    )
    assert result["steps"] == 6
    scalars = loop.read_scalars(os.path.join(result["model_dir"], "train"))
    assert [s for s, _ in scalars["l1"]] == [1, 2, 3, 4, 5, 6]
    # Another architecture in the same folder is refused, nothing written.
    with pytest.raises(errors.ConfigError, match="different architecture"):
        isr_loop.train_isr(
            "metasr",
            dataclasses.replace(TINY, channels=6),
            more,
            tiny_run["data_config"],
            isr_run["model_dir"],
            fer_model_path=tiny_run["fer"]["final"],
            dataset=tiny_run["dataset"],
        )


SHIPPED_FER = os.path.join(
    os.path.dirname(__file__), "..", "..", "checkpoints", "fer2013", "fer.keras"
)


def test_consistency_term_values():
    # The "feature" and "prediction" terms against a float64 computation,
    # through the shipped FER-2013 CovPoolFER (a trained model: its
    # predictions differ between faces, so the KL term is not ~0).
    from fsr_fer_tf.models import covpool
    from fsr_fer_tf.train import fsr_loop

    fer = fsr_loop.load_fer_model(SHIPPED_FER)
    model = isr.MetaSR(channels=4, blocks=1, meta_hidden=4, scales=(2, 4))
    steps = isr_loop.ISRSteps(model, 1e-3, fer_model=fer, fer_weight=2.0)
    rng = np.random.default_rng(0)
    hr = rng.uniform(0, 255, (3, 100, 100, 3)).astype(np.float32)
    lr = rng.uniform(0, 255, (3, 50, 50, 3)).astype(np.float32)
    scale = tf.constant([2, 4, 2])
    out = {k: float(v) for k, v in steps.losses(lr, scale, hr).items()}
    sr = model({"lr": lr, "scale": scale}).numpy()
    np.testing.assert_allclose(
        out["l1"], np.abs(sr - hr).mean() / 255, rtol=1e-5
    )
    features, spd, head = covpool.covpoolfer_parts(fer)

    def fer_out(x):
        f = spd(features(x, training=False), training=False)
        return f.numpy().astype(np.float64), head(f)[1].numpy().astype(
            np.float64
        )

    f_hr, z_hr = fer_out(hr)
    f_sr, z_sr = fer_out(np.clip(sr, 0, 255))

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    kl = np.exp(log_softmax(z_hr)) * (log_softmax(z_hr) - log_softmax(z_sr))
    np.testing.assert_allclose(
        out["fer_feature"], ((f_sr - f_hr) ** 2).mean(), rtol=1e-4, atol=1e-9
    )
    assert out["fer_prediction"] > 1e-3
    np.testing.assert_allclose(
        out["fer_prediction"], kl.sum(-1).mean(), rtol=1e-4
    )
    np.testing.assert_allclose(
        out["loss"],
        out["l1"] + 2.0 * (out["fer_feature"] + out["fer_prediction"]),
        rtol=1e-5,
    )
    # The term reaches the SR model: its gradient changes with the weight.
    with tf.GradientTape() as tape:
        loss = steps.losses(lr, scale, hr)["loss"]
    g_with = tape.gradient(loss, model.trainable_variables)
    plain = isr_loop.ISRSteps(model, 1e-3)
    with tf.GradientTape() as tape:
        loss = plain.losses(lr, scale, hr)["loss"]
    g_plain = tape.gradient(loss, model.trainable_variables)
    diff = max(
        float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(g_with, g_plain)
    )
    assert diff > 1e-7


@pytest.mark.parametrize(
    "kind, overrides, match",
    [
        ("rcan", {"scales": "2,4"}, "one model per scale"),
        ("metasr", {"scales": "1,2"}, "2..8"),
        ("metasr", {"fer_loss": "pixels"}, "--fer_loss"),
        ("metasr", {"steps": 0}, "--steps"),
        ("metasr", {"lr_boundaries": "5,3"}, "increasing"),
        ("vdsr", {}, "--model"),
    ],
)
def test_bad_settings_one_line(kind, overrides, match):
    with pytest.raises(errors.ConfigError, match=match):
        isr_loop.validate_config(kind, dataclasses.replace(CFG, **overrides))


def test_fer_weight_needs_fer_model(tiny_run, tmp_path):
    with pytest.raises(errors.ConfigError, match="needs --fer_model"):
        isr_loop.train_isr(
            "metasr",
            TINY,
            CFG,
            tiny_run["data_config"],
            str(tmp_path / "x"),
            dataset=tiny_run["dataset"],
        )
    assert not os.path.exists(tmp_path / "x")


def test_rcan_run_and_mixed_precision(tiny_run, tmp_path):
    # One scale, mixed_float16: trains, validates only that scale, float32
    # output, exports a loadable model; the global policy is restored.
    result = isr_loop.train_isr(
        "rcan",
        TINY,
        dataclasses.replace(
            CFG, scales="4", steps=2, fer_weight=0.0, mixed_precision=True
        ),
        tiny_run["data_config"],
        str(tmp_path / "rcan"),
        dataset=tiny_run["dataset"],
    )
    assert keras.config.dtype_policy().name == "float32"
    assert set(result["validation"]["sr"]) == {"x4"}
    assert "accuracy" not in result["validation"]["sr"]["x4"]
    model = isr.load_isr(result["isr"])
    assert isr.served_scales(model) == (4,)
    out = model({"lr": tf.zeros([1, 25, 25, 3]), "scale": tf.constant([4])})
    assert out.dtype == tf.float32 and out.shape == (1, 100, 100, 3)


def test_init_from_copies_weights_or_refuses(isr_run):
    fresh = isr_loop.build_model("metasr", TINY, (2, 4, 8))
    source = isr.load_isr(isr_run["isr"])
    lr = np.random.default_rng(1).uniform(0, 255, (2, 50, 50, 3))
    inputs = {"lr": lr.astype("float32"), "scale": np.array([2, 8], "int32")}
    assert not np.allclose(fresh(inputs), source(inputs))
    isr_loop.load_initial_weights(fresh, isr_run["isr"])
    np.testing.assert_array_equal(fresh(inputs), source(inputs))
    other = isr_loop.build_model("metasr", TINY, (2, 4))
    with pytest.raises(errors.ConfigError, match="--init_from"):
        isr_loop.load_initial_weights(other, isr_run["isr"])


def test_cli_error_is_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsr_fer_tf.train_isr",
            "--model=rcan",
            "--preset=demo",
            f"--model_dir={tmp_path / 'r'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RCAN is one model per scale")
    assert "Traceback" not in proc.stderr
