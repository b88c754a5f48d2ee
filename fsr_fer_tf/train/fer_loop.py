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

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import eval_lib
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf import plots
from fsr_fer_tf.data import loader
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
    configs.parse_schedule(cfg.learning_rate_schedule)
    for name in ("train_scales", "val_scales"):
        scales = configs.parse_int_list(getattr(cfg, name), f"--{name}")
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


def validation_split(dataset):
    """The split used for validation: "val" if the data has one, else "test".

    RAF-DB has no validation split (the released code evaluated on test), so
    `best.keras` is then selected on the test split; `final.keras` is not.
    """
    return "val" if "val" in dataset.splits else "test"


def _learning_rate(cfg, steps_per_epoch):
    schedule = configs.parse_schedule(cfg.learning_rate_schedule)
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
    from fsr_fer_tf import distribute

    validate_config(cfg)
    train_scales = configs.parse_int_list(cfg.train_scales, "--train_scales")
    val_scales = configs.parse_int_list(cfg.val_scales, "--val_scales")
    if strategy is None:
        strategy = distribute.make_strategy(cfg.distribution_strategy)
    distribute.check_batch_size(cfg.batch_size, strategy)
    if dataset is None:
        dataset = loader.load_dataset(data_config)
    loop.report_dataset(dataset)
    train_split = dataset.split("train")
    val_name = validation_split(dataset)
    val_split = dataset.split(val_name)
    steps_per_epoch = len(train_split) // cfg.batch_size
    errors.require(
        steps_per_epoch > 0,
        f"the train split has {len(train_split)} images, fewer than "
        f"--batch_size {cfg.batch_size}; lower --batch_size.",
        errors.DataError,
    )
    total_steps = cfg.steps or cfg.epochs * steps_per_epoch
    params = {
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(cfg),
        "data": dataclasses.asdict(data_config),
        "validation_split": val_name,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
    }
    run = loop.RunDirectory(
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
        dataset,
        train_split,
        train_scales,
        model_config.image_size,
    )
    if cfg.init_from:
        metadata["init_from"] = os.path.abspath(cfg.init_from)
    model, optimizer, steps = _build(
        model_config, cfg, steps_per_epoch, metadata, strategy
    )
    if cfg.init_from:
        # Before the restore: a resumed run's checkpoint overwrites these.
        load_initial_weights(model, cfg.init_from)
    with strategy.scope():
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    best = loop.BestTracker(
        run, f"accuracy_{eval_lib.scale_key(val_scales[0])}"
    )
    ckpt = run.checkpoint(
        model=model,
        optimizer=optimizer,
        centers=steps.centers,
        step=step,
        best=best.best,
    )
    manager = run.checkpoint_manager(ckpt)
    run.restore(ckpt, manager)
    train_writer, val_writer = run.summary_writers()
    best_path = run.path("best.keras")
    final_path = run.path("final.keras")

    start = int(step.numpy())
    logging.info(
        "Stage 1: %d steps (%d per epoch, batch %d over %d replica(s)), %s "
        "-> %s",
        total_steps,
        steps_per_epoch,
        cfg.batch_size,
        distribute.num_replicas(strategy),
        "resuming at step %d" % start if start else "from scratch",
        run.model_dir,
    )
    progress = loop.ProgressLogger(
        total_steps, cfg.log_every, cfg.batch_size, start_step=start
    )
    accuracies = {}

    def validate_now(current):
        nonlocal accuracies
        if not run.chief:  # the chief validates, exports and keeps `best`
            return
        accuracies = run_validation(
            steps, val_split, val_scales, cfg.batch_size, val_writer, current
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in accuracies.items())
        logging.info("Validation (%s) at step %d: %s", val_name, current, shown)
        first = accuracies[eval_lib.scale_key(val_scales[0])]
        if best.update(
            first,
            current,
            lambda: loop.export_keras(model, best_path),
            {"validation_split": val_name, "accuracies": accuracies},
        ):
            logging.info("New best model -> %s", best_path)

    def epoch_batches(current):
        epoch, offset = divmod(current, steps_per_epoch)
        ds = pipeline.make_dataset(
            train_split,
            batch_size=cfg.batch_size,
            training=True,
            scales=train_scales,
            seed=cfg.seed,
            epoch=epoch,
            image_size=model_config.image_size,
            skip_batches=offset,
            flip=cfg.random_flip,
            max_shift=cfg.max_shift,
            max_rotation=cfg.max_rotation,
        )
        return distribute.distribute_dataset(strategy, ds)

    # The metrics of the steps since the last pull, still tensors: copying
    # each step's to the host (float()) would make the loop wait for every
    # step, where the device could already run the next. They are pulled at
    # logging steps and before validation or a checkpoint, and checked then.
    # A late check loses only the granularity of the error: the steps skip
    # an update whose gradients are not finite (`updates.apply_if_finite`),
    # so the weights are still the last good state (saved at the pulling
    # step: resuming continues after it, not after the non-finite step).
    pending = []

    def check_pending():
        """Pulls and checks the pending metrics; returns the last step's."""
        if not pending:
            return None
        pulled = _pull_metrics(pending)
        pending.clear()
        for at, values in pulled:
            loop.check_finite(
                at,
                values,
                lambda: _save_if_finite(model, run, manager, current),
            )
        return pulled[-1][1]

    def save_on_interrupt():
        # An unchecked non-finite step may have poisoned the batch-norm
        # statistics: then save only a finite state, as check_finite would.
        pulled = _pull_metrics(pending)
        pending.clear()
        if all(np.isfinite(list(m.values())).all() for _, m in pulled):
            return run.save(manager, current)
        return _save_if_finite(model, run, manager, current)

    current = start
    with loop.checkpoint_on_interrupt(save_on_interrupt):
        while current < total_steps:
            for batch in epoch_batches(current):
                metrics = steps.train_step(batch["lr"], batch["label"])
                current += 1
                pending.append((current, metrics))
                step.assign(current)
                if current % progress.every == 0 or current >= total_steps:
                    # The last step's values, as before this was deferred.
                    metrics = check_pending()
                    if progress.maybe_log(current, metrics):
                        metrics["learning_rate"] = float(
                            optimizer.learning_rate.numpy()
                        )
                        metrics["images_per_second"] = (
                            progress.images_per_second
                        )
                        loop.write_scalars(train_writer, current, metrics)
                if current >= total_steps:
                    break
            check_pending()  # before validating or saving this state
            epoch_done = current % steps_per_epoch == 0
            if epoch_done or current >= total_steps:
                epochs_done = current // steps_per_epoch
                if (
                    current >= total_steps
                    or epochs_done % cfg.eval_every_epochs == 0
                ):
                    validate_now(current)  # may update `best`: save after
                run.save(manager, current)
    if run.chief:
        loop.export_keras(model, final_path)
        if not os.path.exists(best_path):
            loop.export_keras(model, best_path)
        logging.info("Exported %s and %s", final_path, best_path)
    train_writer.flush()
    val_writer.flush()
    return {
        "final": final_path,
        "best": best_path,
        "validation": accuracies,
        "steps": current,
        "model_dir": run.model_dir,
    }


def _build(model_config, cfg, steps_per_epoch, metadata, strategy):
    """(model, optimizer, steps) under `strategy.scope()` and the run's
    dtype policy (mixed_float16: a LossScaleOptimizer)."""
    keras.utils.set_random_seed(cfg.seed)
    policy = "mixed_float16" if cfg.mixed_precision else "float32"
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope():
            model = covpool.build_covpoolfer(model_config, metadata=metadata)
            optimizer = keras.optimizers.Adam(
                _learning_rate(cfg, steps_per_epoch), epsilon=cfg.adam_epsilon
            )
            if cfg.mixed_precision:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    steps = fer_steps.ClassifierSteps(
        model,
        optimizer,
        cfg.weight_decay,
        cfg.center_loss_weight,
        cfg.center_loss_alpha,
        strategy=strategy,
    )
    return model, optimizer, steps
