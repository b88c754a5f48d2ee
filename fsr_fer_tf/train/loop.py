"""What the training runs share: the data's splits, the run directory,
checkpoints, summaries, progress lines, non-finite detection, best-model
tracking and exports.

What one update computes lives in `fer_steps.py` (stage 1), `steps.py`
(stage 2) and `isr_loop.ISRSteps` (image SR); the runs in `fer_loop.py`,
`fsr_loop.py` and `isr_loop.py` own the order of things (data, steps,
validation, saving); this module owns the bookkeeping around them. The
entry points (`train_fer.py`, `train_fsr.py`, `train_isr.py`) only turn
flags into configs.
"""

import contextlib
import json
import math
import os
import time

import keras
import tensorflow as tf
import yaml
from absl import logging

from fsr_fer_tf import errors

PARAMS_FILE = "params.yaml"
_PARAMS_KEY = "params/.ATTRIBUTES/VARIABLE_VALUE"


class NonFiniteLossError(errors.UserError):
    """A loss term became NaN or Inf; the message names the step and term."""


def write_yaml(path, data):
    """Writes `data` (plain dicts, lists, scalars) as YAML, atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False, default_flow_style=False)
    os.replace(tmp, path)


def read_yaml(path):
    """Reads a YAML file, with a one-line error if it is malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except OSError as e:
        raise errors.ConfigError(f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise errors.ConfigError(f"{path} is not valid YAML: {e}") from e


def _diff(old, new, prefix=""):
    """Lists 'key: old -> new' for every leaf that differs."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_diff(a, b, name + "."))
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _lookup(params, dotted):
    """params["a"]["b"] for "a.b" (None where a level is missing)."""
    value = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# Settings a resumed run must keep: they fix which images the saved data
# position and RNG state refer to (the train split, its order and batching).
RESUME_PINNED = (
    "train.batch_size",
    "train.seed",
    "data.data_format",
    "data.data_dir",
    "data.test_fraction",
    "data.synthetic_train",
    "data.synthetic_test",
    "data.synthetic_seed",
    "data.image_size",
)


def _damaged(checkpoint_path, error):
    """The ConfigError for a checkpoint TensorFlow cannot read."""
    text = str(error).strip()
    first = text.splitlines()[0][:200] if text else ""
    return errors.ConfigError(
        f"cannot restore {checkpoint_path} ({type(error).__name__}: {first}); "
        "the checkpoint is damaged or from other code. Delete it to fall back "
        "to an older one, or choose a new --model_dir."
    )


def checkpoint_params(checkpoint_path):
    """The params a checkpoint written by `RunDirectory` carries, or None."""
    try:
        raw = tf.train.load_variable(checkpoint_path, _PARAMS_KEY)
    except (tf.errors.NotFoundError, ValueError):
        return None
    except (tf.errors.OpError, IndexError) as e:
        raise _damaged(checkpoint_path, e) from e
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


class RunDirectory:
    """A training run's folder: params, checkpoints, TensorBoard logs.

    On creation it refuses, with one clear error and without writing anything,
    to reuse a folder whose checkpoint has a different architecture or
    different `pinned` settings, or (when `resume` is off) any folder that
    already holds a checkpoint. Other changed settings (e.g. more steps) are
    allowed and logged.

    Args:
        model_dir: the run folder (created if missing).
        params: the run's resolved config as a JSON-serialisable dict; written
            to `params.yaml` and stored inside every checkpoint.
        architecture: the subset of `params` a checkpoint's weights depend on
            (e.g. model sizes); compared with the checkpoint's on resume.
        resume: continue from the latest checkpoint if there is one.
        kind: "fer" or "fsr", to refuse a stage-1 folder for stage 2 and back.
        pinned: dotted keys of `params` that resuming may not change
            (default RESUME_PINNED: the data, its order and batching).
        chief: whether this process writes params.yaml, TensorBoard logs
            and the real checkpoints (the other workers of a multi-worker
            run save theirs in `checkpoint_dir`, a scratch folder, and every
            worker restores from `model_dir`).
        checkpoint_dir: where this process's checkpoint manager writes
            (default `model_dir`).

    Example:
        run = RunDirectory("checkpoints/fer", params, arch, resume=True,
                           kind="fer")
        manager = run.checkpoint_manager(ckpt)
    """

    def __init__(
        self,
        model_dir,
        params,
        architecture,
        resume,
        kind,
        pinned=RESUME_PINNED,
        chief=True,
        checkpoint_dir=None,
    ):
        self.model_dir = os.path.abspath(model_dir)
        self.chief = bool(chief)
        self.checkpoint_dir = os.path.abspath(checkpoint_dir or model_dir)
        self.pinned = tuple(pinned)
        # JSON round trip: tuples become lists, as they come back from a
        # checkpoint, so a resumed run compares equal to itself.
        self.params = json.loads(
            json.dumps(dict(params, kind=kind, architecture=architecture))
        )
        self.kind = kind
        if os.path.exists(self.model_dir) and not os.path.isdir(self.model_dir):
            raise errors.ConfigError(
                f"--model_dir {self.model_dir} is a file; give a folder path."
            )
        latest = (
            tf.train.latest_checkpoint(self.model_dir)
            if os.path.isdir(self.model_dir)
            else None
        )
        self.resuming = latest is not None
        if latest is not None:
            self._check_compatible(latest, resume)
        try:
            os.makedirs(self.model_dir, exist_ok=True)
        except OSError as e:
            raise errors.ConfigError(
                f"cannot create --model_dir {self.model_dir}: {e.strerror}; "
                "choose a writable folder."
            ) from e
        if not os.access(self.model_dir, os.W_OK):
            raise errors.ConfigError(
                f"--model_dir {self.model_dir} is not writable; choose a "
                "writable folder."
            )
        if self.chief:
            write_yaml(os.path.join(self.model_dir, PARAMS_FILE), self.params)
        self._params_variable = tf.Variable(
            json.dumps(self.params, sort_keys=True), trainable=False
        )

    def _check_compatible(self, latest, resume):
        old = checkpoint_params(latest) or {}
        where = f"--model_dir {self.model_dir}"
        if not resume:
            raise errors.ConfigError(
                f"{where} already holds a checkpoint ({os.path.basename(latest)}"
                "); pass --resume to continue it or choose a new --model_dir."
            )
        if old.get("kind") not in (None, self.kind):
            raise errors.ConfigError(
                f"{where} holds a {old.get('kind')} run, not a {self.kind} "
                "run; choose a new --model_dir."
            )
        changes = _diff(
            old.get("architecture", {}), self.params["architecture"]
        )
        if changes:
            raise errors.ConfigError(
                f"{where} holds a checkpoint of a different architecture "
                f"({'; '.join(changes[:4])}); use the same settings to resume "
                "or choose a new --model_dir. Nothing was overwritten."
            )
        pinned = [
            f"{key}: {_lookup(old, key)!r} -> {_lookup(self.params, key)!r}"
            for key in self.pinned
            if _lookup(old, key) != _lookup(self.params, key)
        ]
        if old and pinned:
            raise errors.ConfigError(
                f"{where} holds a run started with other data settings "
                f"({'; '.join(pinned[:4])}); resuming needs the same data, "
                "seed and batch size. Use them or choose a new --model_dir. "
                "Nothing was overwritten."
            )
        others = [
            c
            for c in _diff(old, self.params)
            if not c.startswith("architecture.")
        ]
        if old and others:
            logging.warning(
                "Resuming %s with changed settings: %s",
                self.model_dir,
                "; ".join(others),
            )

    def path(self, *parts):
        return os.path.join(self.model_dir, *parts)

    def checkpoint(self, **objects):
        """A tf.train.Checkpoint of `objects` plus the run's params."""
        return tf.train.Checkpoint(params=self._params_variable, **objects)

    def checkpoint_manager(self, checkpoint, max_to_keep=3):
        """A CheckpointManager in checkpoint_dir; callers number each save
        (`save`)."""
        return tf.train.CheckpointManager(
            checkpoint, self.checkpoint_dir, max_to_keep=max_to_keep
        )

    def save(self, manager, number):
        """Saves checkpoint `number`; a non-chief worker then deletes its
        scratch copy (every worker must save, the chief's is the one)."""
        path = manager.save(checkpoint_number=number)
        if not self.chief:
            tf.io.gfile.rmtree(self.checkpoint_dir)
        return path

    def restore(self, checkpoint, manager):
        """Restores the latest checkpoint of model_dir if any (every worker
        restores the chief's); returns its path or None."""
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest is None:
            return None
        # The params variable is restored too; its value is this run's anyway.
        try:
            checkpoint.restore(latest).expect_partial()
        except (tf.errors.OpError, ValueError, IndexError) as e:
            raise _damaged(latest, e) from e
        self._params_variable.assign(json.dumps(self.params, sort_keys=True))
        logging.info("Resumed from %s", latest)
        return latest

    def summary_writers(self):
        """TensorBoard writers for `train/` and `validation/` (TFM layout);
        no-op writers on workers other than the chief."""
        if not self.chief:
            return (
                tf.summary.create_noop_writer(),
                tf.summary.create_noop_writer(),
            )
        return (
            tf.summary.create_file_writer(self.path("train")),
            tf.summary.create_file_writer(self.path("validation")),
        )


@contextlib.contextmanager
def dtype_policy(mixed_precision):
    """Context: Keras' global dtype policy set to "mixed_float16" (or
    "float32") while a run builds its models, the caller's restored after.
    Layers keep the policy they were built with."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(
        "mixed_float16" if mixed_precision else "float32"
    )
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def checkpoint_on_interrupt(save):
    """Saves a checkpoint when Ctrl-C stops training, then re-raises.

    Args:
        save: fn() saving the current state; returns the checkpoint path.
    """
    try:
        yield
    except KeyboardInterrupt:
        path = save()
        logging.warning(
            "Interrupted; saved %s. Run the same command again to resume.",
            path,
        )
        raise


def export_keras(model, path):
    """Saves `model` as a .keras file atomically (no half-written file)."""
    tmp = path[: -len(".keras")] + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


class BestTracker:
    """Keeps the best validation value across a run, resumable.

    The best value lives in a variable that goes into the checkpoint, so a
    resumed run does not replace a better earlier export.

    Args:
        run: the RunDirectory.
        metric: name of the metric (for info.json).
        higher_is_better: direction of "better".
    """

    def __init__(self, run, metric, higher_is_better=True):
        self.run = run
        self.metric = metric
        self.sign = 1.0 if higher_is_better else -1.0
        self.best = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)

    def update(self, value, step, save_fn, extra=None):
        """Calls `save_fn()` and writes best/info.json if `value` is the best.

        Returns:
            True when `value` became the new best.
        """
        score = self.sign * float(value)
        if score <= float(self.best.numpy()):
            return False
        self.best.assign(score)
        save_fn()
        info = {"step": int(step), "metric": self.metric, "value": float(value)}
        info.update(extra or {})
        os.makedirs(self.run.path("best"), exist_ok=True)
        with open(self.run.path("best", "info.json"), "w") as f:
            json.dump(info, f, indent=2)
        return True


def check_finite(step, metrics, save=None):
    """Raises NonFiniteLossError naming the first non-finite scalar.

    The steps skip an update whose gradients are not finite
    (`updates.apply_if_finite`), so the variables are still the last good
    state: `save` stores them before the error is raised.

    Args:
        step: the step the metrics belong to.
        metrics: {name: scalar} (tensors or floats).
        save: optional fn() saving a checkpoint and returning its path, or
            None when the state is not worth saving.
    """
    for name, value in metrics.items():
        v = float(value)
        if not math.isfinite(v):
            saved = ""
            if save is not None:
                path = save()
                saved = (
                    f" Its update was skipped and the state saved in {path} "
                    "(resuming continues after this batch)."
                    if path
                    else " Its update was skipped, but the model's own state "
                    "(batch-norm statistics) is not finite, so nothing was "
                    "saved: the latest checkpoint is the last good state."
                )
            raise NonFiniteLossError(
                f"'{name}' became {v} at step {step}.{saved} Lower the "
                "learning rate or check the data, then rerun to resume."
            )


def format_duration(seconds):
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class ProgressLogger:
    """Prints a line every `every` steps: step, metrics, images/s, ETA.

    Args:
        total_steps: last step of the run.
        every: steps between lines.
        images_per_step: images one step consumes (for images/s).
        start_step: the step training (re)starts from.
    """

    def __init__(self, total_steps, every, images_per_step, start_step=0):
        self.total = total_steps
        self.every = max(1, every)
        self.images_per_step = images_per_step
        self._last_step = start_step
        self._last_time = time.perf_counter()
        self.images_per_second = float("nan")

    def maybe_log(self, step, metrics, force=False):
        """Logs if `step` is due (or `force`); returns True when it logged."""
        if not force and step % self.every and step != self.total:
            return False
        now = time.perf_counter()
        steps = step - self._last_step
        if steps > 0:
            elapsed = now - self._last_time
            self.images_per_second = steps * self.images_per_step / elapsed
            eta = (self.total - step) * elapsed / steps
        else:
            eta = float("nan")
        shown = " ".join(f"{k} {float(v):.4g}" for k, v in metrics.items())
        pct = 100.0 * step / max(1, self.total)
        eta_text = format_duration(eta) if math.isfinite(eta) else "?"
        logging.info(
            "step %d/%d (%.0f%%) | %s | %.1f img/s | eta %s",
            step,
            self.total,
            pct,
            shown,
            self.images_per_second,
            eta_text,
        )
        self._last_step, self._last_time = step, now
        return True


def write_scalars(writer, step, metrics, prefix=""):
    """Writes {name: scalar} to a TensorBoard writer at `step`."""
    with writer.as_default(step=int(step)):
        for name, value in metrics.items():
            tf.summary.scalar(prefix + name, float(value))


def write_png(writer, step, name, png_bytes):
    """Writes PNG bytes (e.g. from plots.figure_to_png) as a summary image."""
    image = tf.io.decode_png(png_bytes, channels=4)[None]
    with writer.as_default(step=int(step)):
        tf.summary.image(name, image)


def report_dataset(dataset):
    """Logs images per split, the skipped count by reason, and notes."""
    summary = dataset.summary()
    for name, split in summary["splits"].items():
        logging.info("%s/%s: %d images", dataset.name, name, split["images"])
    if dataset.skipped:
        logging.warning(
            "%d files or classes were skipped (%s); see `python -m "
            "fsr_fer_tf.data.inspect` for the list.",
            len(dataset.skipped),
            ", ".join(
                f"{n} {r}" for r, n in summary["skipped"]["by_reason"].items()
            ),
        )
    for note in dataset.notes:
        logging.info("%s", note)


class Run:
    """A training run as the loop of every stage sees it.

    A subclass sets itself up in `__init__` (settings, data, run folder,
    models, restore) and defines `done`, `epoch_batches`, `step`, `save` and
    `finish`; `train` is then the one loop they share:

        while not done:
            for batch in the rest of this epoch: step(batch) (until done)
            end_of_pass()
        finish()

    with a checkpoint (`save_on_interrupt`) when Ctrl-C or SIGTERM stops
    it.
    """

    def done(self):
        """Whether every step of the run has been taken."""
        raise NotImplementedError

    def epoch_batches(self):
        """The batches left in the current epoch."""
        raise NotImplementedError

    def step(self, batch):
        """One update on `batch`, with its logging, validation, saving."""
        raise NotImplementedError

    def save(self):
        """A checkpoint of the current state."""
        raise NotImplementedError

    def finish(self):
        """The last checkpoint and exports; the run's result."""
        raise NotImplementedError

    def end_of_pass(self):
        """After each pass over `epoch_batches` (default: nothing)."""

    def save_on_interrupt(self):
        """The checkpoint an interrupted run leaves (default: `save`)."""
        return self.save()

    def train(self):
        """Runs the loop to the end; returns `finish()`."""
        with checkpoint_on_interrupt(self.save_on_interrupt):
            while not self.done():
                for batch in self.epoch_batches():
                    self.step(batch)
                    if self.done():
                        break
                self.end_of_pass()
        return self.finish()


def validation_split(dataset):
    """The split used for validation: "val" if the data has one, else "test".

    RAF-DB has no validation split (the released code evaluated on test), so
    `best.keras` is then selected on the test split; `final.keras` is not.
    """
    return "val" if "val" in dataset.splits else "test"


class TrainingData:
    """The splits of a training run, loaded and reported once.

    Attributes:
        dataset: the `sources.Dataset` (loaded from `data_config` unless
            given).
        train: its train split.
        val_name: the validation split's name (`validation_split`).
        val: that split.
        batches_per_epoch: whole batches of `batch_size` in `train`.

    Raises:
        errors.DataError: the train split holds fewer images than one
            batch.
    """

    def __init__(self, dataset, data_config, batch_size):
        if dataset is None:
            from fsr_fer_tf.data import loader

            dataset = loader.load_dataset(data_config)
        report_dataset(dataset)
        self.dataset = dataset
        self.train = dataset.split("train")
        self.val_name = validation_split(dataset)
        self.val = dataset.split(self.val_name)
        self.batches_per_epoch = len(self.train) // batch_size
        errors.require(
            self.batches_per_epoch > 0,
            f"the train split has {len(self.train)} images, fewer than "
            f"--batch_size {batch_size}; lower --batch_size.",
            errors.DataError,
        )


def read_scalars(event_dir):
    """Reads the scalars a run wrote to TensorBoard (e.g. RUN/fer/train).

    Args:
        event_dir: a folder of `events.out.tfevents.*` files.

    Returns:
        {tag: [(step, value), ...]} sorted by step; a step written twice
        (e.g. after a resume) keeps its last value.
    """
    from tensorflow.core.util import event_pb2

    if not os.path.isdir(event_dir):
        raise errors.DataError(
            f"{event_dir} does not exist; point at a run's train/ or "
            "validation/ folder."
        )
    series = {}
    files = sorted(f for f in os.listdir(event_dir) if "tfevents" in f)
    for name in files:
        dataset = tf.data.TFRecordDataset(os.path.join(event_dir, name))
        for record in dataset:
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and not value.tensor.string_val:
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue  # images and other non-scalars
                series.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in series.items()}
