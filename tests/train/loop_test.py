"""Tests for the run-directory bookkeeping in fsr_fer_tf.train.loop."""

import json
import math
import os

import pytest
import tensorflow as tf

from fsr_fer_tf import errors
from fsr_fer_tf.train import loop

ARCH = {"model": {"bimap_dim": 32, "conv_filters": [16, 32]}}


def _save_checkpoint(run, value=1.0):
    v = tf.Variable(value)
    step = tf.Variable(5, dtype=tf.int64)
    ckpt = run.checkpoint(v=v, step=step)
    manager = run.checkpoint_manager(ckpt)
    manager.save(checkpoint_number=5)
    return ckpt, manager, v


def test_params_written_and_stored_in_checkpoint(tmp_path):
    run = loop.RunDirectory(tmp_path / "r", {"lr": 0.1}, ARCH, True, "fer")
    assert not run.resuming
    params = loop.read_yaml(run.path("params.yaml"))
    assert params["lr"] == 0.1 and params["architecture"] == ARCH
    _, manager, _ = _save_checkpoint(run)
    stored = loop.checkpoint_params(manager.latest_checkpoint)
    assert stored["architecture"] == ARCH and stored["kind"] == "fer"


def test_resume_restores_values(tmp_path):
    run = loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fer")
    _save_checkpoint(run, value=3.5)
    run2 = loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fer")
    assert run2.resuming
    v = tf.Variable(0.0)
    step = tf.Variable(0, dtype=tf.int64)
    ckpt = run2.checkpoint(v=v, step=step)
    manager = run2.checkpoint_manager(ckpt)
    assert run2.restore(ckpt, manager).endswith("ckpt-5")
    assert float(v.numpy()) == 3.5 and int(step.numpy()) == 5


def test_different_architecture_is_refused_and_nothing_written(tmp_path):
    run = loop.RunDirectory(tmp_path / "r", {"x": 1}, ARCH, True, "fer")
    _save_checkpoint(run)
    before = open(run.path("params.yaml")).read()
    other = {"model": {"bimap_dim": 128, "conv_filters": [16, 32]}}
    with pytest.raises(
        errors.ConfigError, match="different architecture.*bimap_dim: 32 -> 128"
    ):
        loop.RunDirectory(tmp_path / "r", {"x": 2}, other, True, "fer")
    assert open(run.path("params.yaml")).read() == before


def test_existing_checkpoint_without_resume_and_wrong_kind(tmp_path):
    run = loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fer")
    _save_checkpoint(run)
    with pytest.raises(errors.ConfigError, match="--resume"):
        loop.RunDirectory(tmp_path / "r", {}, ARCH, False, "fer")
    with pytest.raises(errors.ConfigError, match="fer run, not a fsr run"):
        loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fsr")


def test_model_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(errors.ConfigError, match="is a file"):
        loop.RunDirectory(f, {}, ARCH, True, "fer")


def test_best_tracker_only_saves_improvements(tmp_path):
    run = loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fer")
    saved = []
    best = loop.BestTracker(run, "val_accuracy")
    assert best.update(0.5, 10, lambda: saved.append(10))
    assert not best.update(0.4, 20, lambda: saved.append(20))
    assert best.update(0.7, 30, lambda: saved.append(30), {"scale": "x4"})
    assert saved == [10, 30]
    info = json.load(open(run.path("best", "info.json")))
    assert info == {
        "step": 30,
        "metric": "val_accuracy",
        "value": 0.7,
        "scale": "x4",
    }
    lower = loop.BestTracker(run, "loss", higher_is_better=False)
    assert lower.update(2.0, 1, lambda: None)
    assert not lower.update(3.0, 2, lambda: None)
    assert lower.update(1.0, 3, lambda: None)


def test_check_finite_names_step_and_term():
    loop.check_finite(3, {"a": 1.0, "b": tf.constant(2.0)})
    with pytest.raises(
        loop.NonFiniteLossError, match="'b' became nan at step 7"
    ):
        loop.check_finite(7, {"a": 1.0, "b": float("nan")})
    with pytest.raises(loop.NonFiniteLossError, match="inf"):
        loop.check_finite(7, {"a": math.inf})
    saved = []
    with pytest.raises(
        loop.NonFiniteLossError, match="skipped and the state saved in ckpt-7"
    ):
        loop.check_finite(
            7, {"a": math.nan}, lambda: saved.append(7) or "ckpt-7"
        )
    assert saved == [7]
    loop.check_finite(8, {"a": 1.0}, lambda: saved.append(8))
    assert saved == [7]  # nothing saved when all is finite
    # A save that declines (poisoned batch-norm statistics) is reported.
    with pytest.raises(
        loop.NonFiniteLossError, match="not finite, so nothing was saved"
    ):
        loop.check_finite(9, {"a": math.inf}, lambda: None)


def test_export_keras_atomic(tmp_path):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "m.keras")
    loop.export_keras(model, path)
    assert os.listdir(tmp_path) == ["m.keras"]
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(keras.models.load_model(path)(x), model(x))


def test_progress_logger_due_steps():
    p = loop.ProgressLogger(total_steps=10, every=4, images_per_step=2)
    logged = [s for s in range(1, 11) if p.maybe_log(s, {"loss": 1.0})]
    assert logged == [4, 8, 10]
    assert p.images_per_second > 0


def test_tuples_in_architecture_resume_cleanly(tmp_path):
    arch = {"model": {"conv_filters": (4, 8)}}
    run = loop.RunDirectory(tmp_path / "r", {"t": (1, 2)}, arch, True, "fer")
    _save_checkpoint(run)
    again = loop.RunDirectory(tmp_path / "r", {"t": (1, 2)}, arch, True, "fer")
    assert again.resuming


def test_read_scalars_round_trip(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    loop.write_scalars(writer, 1, {"loss": 2.0, "acc": 0.25})
    loop.write_scalars(writer, 3, {"loss": 1.5})
    loop.write_scalars(writer, 3, {"loss": 1.25})  # rewritten after resume
    loop.write_png(
        writer,
        3,
        "img",
        tf.io.encode_png(tf.zeros((2, 2, 3), tf.uint8)).numpy(),
    )
    writer.flush()
    scalars = loop.read_scalars(str(tmp_path / "train"))
    assert scalars == {"loss": [(1, 2.0), (3, 1.25)], "acc": [(1, 0.25)]}
    with pytest.raises(errors.DataError, match="does not exist"):
        loop.read_scalars(str(tmp_path / "nope"))


def test_pinned_settings_refused_and_other_changes_logged(tmp_path, caplog):
    params = {
        "train": {"batch_size": 8, "seed": 0, "steps": 10},
        "data": {"data_format": "synthetic", "data_dir": None},
    }
    run = loop.RunDirectory(tmp_path / "r", params, ARCH, True, "fer")
    _save_checkpoint(run)
    before = open(run.path("params.yaml")).read()
    for key, value, shown in (
        ("batch_size", 16, "train.batch_size: 8 -> 16"),
        ("seed", 3, "train.seed: 0 -> 3"),
    ):
        changed = {**params, "train": {**params["train"], key: value}}
        with pytest.raises(errors.ConfigError, match=shown):
            loop.RunDirectory(tmp_path / "r", changed, ARCH, True, "fer")
    other_data = {**params, "data": {"data_format": "folder", "data_dir": "/x"}}
    with pytest.raises(errors.ConfigError, match="data.data_dir: None -> '/x'"):
        loop.RunDirectory(tmp_path / "r", other_data, ARCH, True, "fer")
    assert open(run.path("params.yaml")).read() == before
    # A pinned key of the caller's choosing (stage 2: the stage-1 model).
    with pytest.raises(errors.ConfigError, match="fer_model: None -> 'b'"):
        loop.RunDirectory(
            tmp_path / "r",
            {**params, "fer_model": "b"},
            ARCH,
            True,
            "fer",
            pinned=("fer_model",),
        )
    longer = {**params, "train": {**params["train"], "steps": 20}}
    with caplog.at_level("WARNING"):
        resumed = loop.RunDirectory(tmp_path / "r", longer, ARCH, True, "fer")
    assert resumed.resuming
    assert "train.steps: 10 -> 20" in caplog.text


def test_damaged_checkpoint_is_a_config_error(tmp_path):
    run = loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fer")
    ckpt, manager, _ = _save_checkpoint(run)
    data = [f for f in os.listdir(run.model_dir) if ".data-" in f]
    assert data
    for name in data:
        with open(run.path(name), "wb") as f:
            f.write(b"\0garbage")
    with pytest.raises(
        errors.ConfigError, match="cannot restore .*ckpt-5.*Delete it"
    ):
        run.restore(ckpt, manager)
    # Opening the damaged folder again fails the same way, not deep in TF.
    with pytest.raises(errors.ConfigError, match="cannot restore .*ckpt-5"):
        loop.RunDirectory(tmp_path / "r", {}, ARCH, True, "fer")


class _CountingRun(loop.Run):
    """Epochs of 3 batches; 7 steps; records what the loop called."""

    def __init__(self, steps=7, interrupt_at=None):
        self.steps, self.interrupt_at = steps, interrupt_at
        self.taken, self.calls = 0, []

    def done(self):
        return self.taken >= self.steps

    def epoch_batches(self):
        return range(self.taken % 3, 3)  # the rest of this epoch

    def step(self, batch):
        if self.taken == self.interrupt_at:
            raise KeyboardInterrupt
        self.taken += 1
        self.calls.append(("step", batch))

    def end_of_pass(self):
        self.calls.append(("end_of_pass", self.taken))

    def save(self):
        self.calls.append(("save", self.taken))
        return f"ckpt-{self.taken}"

    def finish(self):
        return {"steps": self.taken, "calls": self.calls}


def test_run_train_is_one_loop_of_steps_and_passes():
    result = _CountingRun().train()
    assert result["steps"] == 7
    steps = [b for kind, b in result["calls"] if kind == "step"]
    assert steps == [0, 1, 2, 0, 1, 2, 0]  # stops mid-epoch when done
    passes = [n for kind, n in result["calls"] if kind == "end_of_pass"]
    assert passes == [3, 6, 7]
    assert ("save", 7) not in result["calls"]  # saving is the run's business


def test_run_train_saves_on_interrupt_and_reraises():
    run = _CountingRun(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        run.train()
    assert run.calls[-1] == ("save", 4)


@pytest.mark.parametrize("mixed", [False, True])
def test_dtype_policy_is_set_for_the_build_and_restored(mixed):
    import keras

    keras.config.set_dtype_policy("bfloat16")  # the caller's, restored after
    with loop.dtype_policy(mixed):
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        inside = keras.config.dtype_policy().name
    assert inside == ("mixed_float16" if mixed else "float32")
    assert layer.compute_dtype == ("float16" if mixed else "float32")
    assert keras.config.dtype_policy().name == "bfloat16"
    with pytest.raises(RuntimeError), loop.dtype_policy(mixed):
        raise RuntimeError  # restored on errors too
    assert keras.config.dtype_policy().name == "bfloat16"
