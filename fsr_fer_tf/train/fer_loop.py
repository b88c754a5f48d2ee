"""Stage 1: train CovPoolFER on HR faces, resumably, with TensorBoard.

`train_fer(...)` is what `python -m fsr_fer_tf.train_fer` runs once flags are
resolved; the demo and tests call it directly.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from fsr_fer_tf import errors
from fsr_fer_tf import eval_lib
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf import plots
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.models import covpool
from fsr_fer_tf.train import fer_steps
from fsr_fer_tf.train import loop


def validate_config(cfg):
    """Raises ConfigError for out-of-range stage-1 settings."""
    req = errors.require
    req(cfg.batch_size > 0, f"--batch_size must be > 0, got {cfg.batch_size}.")
    req(cfg.epochs > 0 or cfg.steps > 0, "--epochs or --steps must be > 0.")
    req(cfg.steps >= 0, f"--steps must be >= 0, got {cfg.steps}.")
    req(cfg.adam_epsilon > 0, "--adam_epsilon must be > 0.")
    req(cfg.weight_decay >= 0, "--weight_decay must be >= 0.")
    req(cfg.center_loss_weight >= 0, "--center_loss_weight must be >= 0.")
    req(
        0 <= cfg.center_loss_alpha <= 1,
        f"--center_loss_alpha must be in [0, 1], got {cfg.center_loss_alpha}.",
    )
    req(
        cfg.max_rotation >= 0 and cfg.max_shift >= 0,
        "--max_rotation and --max_shift must be >= 0.",
    )
    req(cfg.eval_every_epochs > 0, "--eval_every_epochs must be > 0.")
    req(cfg.log_every > 0, "--log_every must be > 0.")
    for name in ("train_scales", "val_scales"):
        scales = getattr(cfg, name)
        req(scales, f"--{name} must name at least one scale.")
        req(all(s >= 1 for s in scales), f"--{name} scales must be >= 1.")


def load_initial_weights(model, path):
    """Copies the weights of the CovPoolFER saved at `path` into `model`.

    Raises:
        errors.ConfigError: no such file, not a CovPoolFER `.keras` file,
            or a model whose weights do not match `model`'s (another preset
            or sizes).
    """
    flag = "--init_from"
    source = covpool.load_covpoolfer(path, flag)
    theirs = source.get_weights()
    ours = model.get_weights()
    errors.require(
        len(theirs) == len(ours)
        and all(a.shape == b.shape for a, b in zip(theirs, ours)),
        f"{flag} {path!r} does not have this run's architecture "
        f"({len(theirs)} weight arrays against {len(ours)}); use the "
        "same --preset and model sizes it was trained with.",
    )
    model.set_weights(theirs)
    logging.info("Initial weights from %s", path)


def _learning_rate(cfg, steps_per_epoch):
    schedule = cfg.learning_rate_schedule
    boundaries = [epoch * steps_per_epoch for epoch, _ in schedule[1:]]
    values = [lr for _, lr in schedule]
    if not boundaries:
        return values[0]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _architecture(model_config, mixed_precision):
    # mixed_precision: a LossScaleOptimizer's checkpoint has other slots.
    return {
        "model": dataclasses.asdict(model_config),
        "mixed_precision": bool(mixed_precision),
    }


def _sample_figure(images, labels, logits):
    preds = np.argmax(logits, axis=-1)
    names = labels_lib.CLASS_NAMES
    captions = [f"{names[t]} -> {names[p]}" for t, p in zip(labels, preds)]
    colors = ["green" if t == p else "red" for t, p in zip(labels, preds)]
    return plots.face_grid(images, captions, ncols=8, colors=colors)


def run_validation(steps, split, scales, batch_size, writer, step):
    """Validates at every scale and writes summaries; returns accuracies."""
    image_size = eval_lib.input_size(steps.model)
    collected = eval_lib.collect(
        split,
        scales,
        batch_size,
        lambda batch: {"fer": steps.predict(batch["lr"])[0]},
        image_size=image_size,
    )["fer"]
    results = eval_lib.summarize({"fer": collected})["fer"]
    scalars = {}
    for key, r in results.items():
        scalars[f"accuracy_{key}"] = r["accuracy"]
        scalars[f"loss_{key}"] = eval_lib.cross_entropy(
            collected[key]["logits"], collected[key]["labels"]
        )
        for name, acc in r["per_class"].items():
            if acc is not None:
                scalars[f"per_class_{key}/{name}"] = acc
    loop.write_scalars(writer, step, scalars)
    first = eval_lib.scale_key(scales[0])
    loop.write_png(
        writer,
        step,
        f"confusion_{first}",
        plots.figure_to_png(
            plots.confusion_figure(
                results[first]["confusion"], title=f"{first}, step {step}"
            )
        ),
    )
    sample = pipeline.make_dataset(
        split.subset(np.arange(min(16, len(split)))),
        batch_size=16,
        training=False,
        scales=(scales[0],),
        image_size=image_size,
    )
    batch = next(iter(sample))
    logits = steps.predict(batch["lr"])[0].numpy()
    loop.write_png(
        writer,
        step,
        f"predictions_{first}",
        plots.figure_to_png(
            _sample_figure(batch["lr"].numpy(), batch["label"].numpy(), logits)
        ),
    )
    return {key: r["accuracy"] for key, r in results.items()}


def _save_if_finite(model, run, manager, step):
    """Saves a checkpoint unless a model variable is NaN/Inf (returns None).

    The optimizer skips non-finite updates, but batch-norm moving statistics
    follow the forward pass, so a bad batch can poison them.
    """
    for variable in model.variables:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
            return None
    return run.save(manager, step)


def _pull_metrics(pending):
    """[(step, {name: float})] of [(step, {name: scalar tensor})].

    Copying waits for the device until the last pending step is done,
    once per pull rather than once per step.
    """
    return [
        (at, {k: float(v) for k, v in metrics.items()})
        for at, metrics in pending
    ]


def training_metadata(
    preset, data_config, dataset, train_split, train_scales, image_size
):
    """What a stage-1 model records about its training (`metadata`).

    {"preset", "data_format", "dataset" (where it was read), "colour"
    ("grey" or "rgb": the faces it learnt from; a predictor converts others
    to match), "train_scales", "image_size", "class_names"}.
    """
    return {
        "preset": preset,
        "data_format": data_config.data_format,
        "dataset": dataset.where,
        "colour": pipeline.face_colour(train_split, image_size),
        "train_scales": [int(s) for s in train_scales],
        "image_size": int(image_size),
        "class_names": list(labels_lib.CLASS_NAMES),
    }


def train_fer(
    model_config,
    cfg,
    data_config,
    model_dir,
    resume=True,
    dataset=None,
    preset=None,
    strategy=None,
):
    """Trains CovPoolFER; returns {"final": path, "best": path, ...}.

    Set-up (`Stage1Run`), then the straight loop of `loop.Run.train` over
    each epoch's batches (`Stage1Run.step`), validation and a checkpoint at
    epoch ends (`Stage1Run.end_of_pass`), then the exports.

    Args:
        model_config: a `configs.CovPoolFERConfig`.
        cfg: a `configs.FERTrainConfig`.
        data_config: a `configs.DataConfig`.
        model_dir: the run folder (checkpoints, TensorBoard, exports).
        resume: continue from the latest checkpoint in `model_dir`.
        dataset: an already loaded `sources.Dataset` (else loaded from
            `data_config`).
        preset: the name of the preset `model_config` and `cfg` came from,
            recorded in the model's metadata (stage 2 checks it).
        strategy: a `tf.distribute.Strategy` (default: the one
            `cfg.distribution_strategy` names; multi-worker runs create it
            at program start and pass it).

    Returns:
        {"final": final.keras path, "best": best.keras path,
         "validation": last validation accuracies, "steps": total steps}.
    """
    return Stage1Run(
        model_config,
        cfg,
        data_config,
        model_dir,
        resume,
        dataset,
        preset,
        strategy,
    ).train()


class Stage1Run(loop.Run):
    """The state of one stage-1 run, in the order `train_fer` uses it.

    `__init__` checks the settings, loads the data, opens the run folder
    (refusing an incompatible one), builds the model, optimizer and steps,
    applies `init_from` and restores the latest checkpoint. `current` is
    the number of steps done.

    The metrics of the steps since the last pull stay tensors (`pending`):
    copying each step's to the host (float()) would make the loop wait for
    every step, where the device could already run the next. They are
    pulled at logging steps and before validation or a checkpoint, and
    checked then. A late check loses only the granularity of the error:
    the steps skip an update whose gradients are not finite
    (`updates.apply_if_finite`), so the weights are still the last good
    state (saved at the pulling step: resuming continues after it, not
    after the non-finite step).
    """

    def __init__(
        self,
        model_config,
        cfg,
        data_config,
        model_dir,
        resume=True,
        dataset=None,
        preset=None,
        strategy=None,
    ):
        from fsr_fer_tf import distribute

        validate_config(cfg)
        self.cfg = cfg
        self.image_size = model_config.image_size
        if strategy is None:
            strategy = distribute.make_strategy(cfg.distribution_strategy)
        distribute.check_batch_size(cfg.batch_size, strategy)
        self.strategy = strategy
        self.data = loop.TrainingData(dataset, data_config, cfg.batch_size)
        self.total_steps = cfg.steps or cfg.epochs * self.data.batches_per_epoch
        params = {
            "model": dataclasses.asdict(model_config),
            "train": dataclasses.asdict(cfg),
            "data": dataclasses.asdict(data_config),
            "validation_split": self.data.val_name,
            "steps_per_epoch": self.data.batches_per_epoch,
            "total_steps": self.total_steps,
        }
        self.run = loop.RunDirectory(
            model_dir,
            params,
            _architecture(model_config, cfg.mixed_precision),
            resume,
            kind="fer",
            chief=distribute.is_chief(strategy),
            checkpoint_dir=distribute.worker_dir(model_dir, strategy),
        )
        metadata = training_metadata(
            preset,
            data_config,
            self.data.dataset,
            self.data.train,
            cfg.train_scales,
            model_config.image_size,
        )
        if cfg.init_from:
            metadata["init_from"] = os.path.abspath(cfg.init_from)
        self.model, self.optimizer, self.steps = _build(
            model_config, cfg, self.data.batches_per_epoch, metadata, strategy
        )
        if cfg.init_from:
            # Before the restore: a resumed run's checkpoint overwrites these.
            load_initial_weights(self.model, cfg.init_from)
        with strategy.scope():
            self.step_var = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="step"
            )
        self.first_key = eval_lib.scale_key(cfg.val_scales[0])
        self.best = loop.BestTracker(self.run, f"accuracy_{self.first_key}")
        ckpt = self.run.checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            centers=self.steps.centers,
            step=self.step_var,
            best=self.best.best,
        )
        self.manager = self.run.checkpoint_manager(ckpt)
        self.run.restore(ckpt, self.manager)
        self.train_writer, self.val_writer = self.run.summary_writers()
        self.best_path = self.run.path("best.keras")
        self.final_path = self.run.path("final.keras")
        self.current = int(self.step_var.numpy())
        logging.info(
            "Stage 1: %d steps (%d per epoch, batch %d over %d replica(s)), "
            "%s -> %s",
            self.total_steps,
            self.data.batches_per_epoch,
            cfg.batch_size,
            distribute.num_replicas(strategy),
            "resuming at step %d" % self.current
            if self.current
            else "from scratch",
            self.run.model_dir,
        )
        self.progress = loop.ProgressLogger(
            self.total_steps,
            cfg.log_every,
            cfg.batch_size,
            start_step=self.current,
        )
        self.accuracies = {}
        self.pending = []

    def done(self):
        return self.current >= self.total_steps

    def epoch_batches(self):
        """The rest of the current epoch's batches, distributed (the order
        depends only on the seed and the epoch: a resumed run sees what a
        straight run would)."""
        from fsr_fer_tf import distribute

        cfg = self.cfg
        epoch, offset = divmod(self.current, self.data.batches_per_epoch)
        ds = pipeline.make_dataset(
            self.data.train,
            batch_size=cfg.batch_size,
            training=True,
            scales=cfg.train_scales,
            seed=cfg.seed,
            epoch=epoch,
            image_size=self.image_size,
            skip_batches=offset,
            flip=cfg.random_flip,
            max_shift=cfg.max_shift,
            max_rotation=cfg.max_rotation,
        )
        return distribute.distribute_dataset(self.strategy, ds)

    def step(self, batch):
        """One training step; the metrics reach the host at log steps."""
        metrics = self.steps.train_step(batch["lr"], batch["label"])
        self.current += 1
        self.pending.append((self.current, metrics))
        self.step_var.assign(self.current)
        if self.current % self.progress.every == 0 or self.done():
            # The last step's values, as before this was deferred.
            metrics = self.check_pending()
            if self.progress.maybe_log(self.current, metrics):
                metrics["learning_rate"] = float(
                    self.optimizer.learning_rate.numpy()
                )
                metrics["images_per_second"] = self.progress.images_per_second
                loop.write_scalars(self.train_writer, self.current, metrics)

    def check_pending(self):
        """Pulls and checks the pending metrics; returns the last step's."""
        if not self.pending:
            return None
        pulled = _pull_metrics(self.pending)
        self.pending.clear()
        for at, values in pulled:
            loop.check_finite(at, values, self._save_if_finite)
        return pulled[-1][1]

    def _save_if_finite(self):
        return _save_if_finite(self.model, self.run, self.manager, self.current)

    def save(self):
        return self.run.save(self.manager, self.current)

    def save_on_interrupt(self):
        # An unchecked non-finite step may have poisoned the batch-norm
        # statistics: then save only a finite state, as check_finite would.
        pulled = _pull_metrics(self.pending)
        self.pending.clear()
        if all(np.isfinite(list(m.values())).all() for _, m in pulled):
            return self.save()
        return self._save_if_finite()

    def end_of_pass(self):
        """After an epoch's batches (or the last step): the pending checks,
        then validation every `eval_every_epochs` epochs and at the end,
        then a checkpoint."""
        self.check_pending()  # before validating or saving this state
        epoch_done = self.current % self.data.batches_per_epoch == 0
        if epoch_done or self.done():
            epochs_done = self.current // self.data.batches_per_epoch
            if self.done() or epochs_done % self.cfg.eval_every_epochs == 0:
                self.validate()  # may update `best`: save after
            self.save()

    def validate(self):
        """Accuracy at every validation scale; best.keras on a new best at
        the first. Only the chief validates, exports and keeps `best`."""
        if not self.run.chief:
            return
        self.accuracies = run_validation(
            self.steps,
            self.data.val,
            self.cfg.val_scales,
            self.cfg.batch_size,
            self.val_writer,
            self.current,
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracies.items())
        logging.info(
            "Validation (%s) at step %d: %s",
            self.data.val_name,
            self.current,
            shown,
        )
        if self.best.update(
            self.accuracies[self.first_key],
            self.current,
            lambda: loop.export_keras(self.model, self.best_path),
            {
                "validation_split": self.data.val_name,
                "accuracies": self.accuracies,
            },
        ):
            logging.info("New best model -> %s", self.best_path)

    def finish(self):
        """The exports; `train_fer`'s result."""
        if self.run.chief:
            loop.export_keras(self.model, self.final_path)
            if not os.path.exists(self.best_path):
                loop.export_keras(self.model, self.best_path)
            logging.info("Exported %s and %s", self.final_path, self.best_path)
        self.train_writer.flush()
        self.val_writer.flush()
        return {
            "final": self.final_path,
            "best": self.best_path,
            "validation": self.accuracies,
            "steps": self.current,
            "model_dir": self.run.model_dir,
        }


def _build(model_config, cfg, steps_per_epoch, metadata, strategy):
    """(model, optimizer, steps) under `strategy.scope()` and the run's
    dtype policy (mixed_float16: a LossScaleOptimizer)."""
    keras.utils.set_random_seed(cfg.seed)
    with loop.dtype_policy(cfg.mixed_precision), strategy.scope():
        model = covpool.build_covpoolfer(model_config, metadata=metadata)
        optimizer = keras.optimizers.Adam(
            _learning_rate(cfg, steps_per_epoch), epsilon=cfg.adam_epsilon
        )
        if cfg.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    steps = fer_steps.ClassifierSteps(
        model,
        optimizer,
        cfg.weight_decay,
        cfg.center_loss_weight,
        cfg.center_loss_alpha,
        strategy=strategy,
    )
    return model, optimizer, steps
