"""Stage 2: train the feature-SR GAN on a frozen CovPoolFER, resumably.

`train_fsr(...)` is what `python -m fsr_fer_tf.train_fsr` runs once flags are
resolved; the demo and tests call it directly. One model serves every scale:
each training pair draws its own scale from `--scales`.
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
from fsr_fer_tf.data import loader
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.models import covpool
from fsr_fer_tf.models import critic as critic_lib
from fsr_fer_tf.models import fsr_fer
from fsr_fer_tf.models import generator as generator_lib
from fsr_fer_tf.train import fer_loop
from fsr_fer_tf.train import loop
from fsr_fer_tf.train import steps as steps_lib


def validate_config(cfg):
    """Raises ConfigError for out-of-range stage-2 settings."""
    req = errors.require
    req(cfg.batch_size > 0, f"--batch_size must be > 0, got {cfg.batch_size}.")
    req(cfg.steps >= 0, f"--steps must be >= 0, got {cfg.steps}.")
    req(cfg.learning_rate > 0, "--learning_rate must be > 0.")
    req(0 < cfg.lr_decay <= 1, "--lr_decay must be in (0, 1].")
    req(
        0 <= cfg.beta_1 < 1 and 0 <= cfg.beta_2 < 1,
        "--beta_1 and --beta_2 must be in [0, 1).",
    )
    req(cfg.n_critic >= 1, f"--n_critic must be >= 1, got {cfg.n_critic}.")
    req(cfg.k >= 0, f"--k must be >= 0 (0 turns the penalty off), got {cfg.k}.")
    req(cfg.p > 0, f"--p must be > 0 (the paper uses 6), got {cfg.p}.")
    req(
        cfg.sigma > 1,
        f"--sigma must be > 1 (w = (sigma - p)^r must stay positive for "
        f"p in [0, 1]), got {cfg.sigma}.",
    )
    req(cfg.r > 0, f"--r must be > 0, got {cfg.r}.")
    for name in ("adv_weight", "perceptual_weight", "l2_weight", "ce_weight"):
        req(getattr(cfg, name) >= 0, f"--{name} must be >= 0.")
    req(
        cfg.l2_reduction in ("mean", "sum"),
        "--l2_reduction must be 'mean' or 'sum'.",
    )
    req(
        cfg.penalty_norm in ("all", "per_column"),
        f"--penalty_norm must be 'all' or 'per_column', got "
        f"'{cfg.penalty_norm}'.",
    )

    req(cfg.pretrain_steps >= 0, "--pretrain_steps must be >= 0.")
    req(cfg.pretrain_learning_rate > 0, "--pretrain_learning_rate must be > 0.")
    req(
        cfg.steps + cfg.pretrain_steps > 0,
        "--steps and --pretrain_steps are both 0: nothing to train.",
    )
    for name in ("eval_every", "log_every", "checkpoint_every"):
        req(getattr(cfg, name) > 0, f"--{name} must be > 0.")
    req(cfg.eval_images >= 0, "--eval_images must be >= 0.")
    scales = configs.parse_int_list(cfg.scales, "--scales")
    req(scales, "--scales is empty; give e.g. --scales=2,3,4,5,6,7,8.")
    req(
        all(s >= 1 for s in scales), f"--scales must be >= 1, got {cfg.scales}."
    )
    for name in ("lr_boundaries", "pretrain_lr_boundaries", "snapshot_steps"):
        bounds = configs.parse_int_list(getattr(cfg, name), f"--{name}")
        req(
            list(bounds) == sorted(set(bounds)) and all(b > 0 for b in bounds),
            f"--{name} must be increasing positive steps.",
        )
    return scales


def snapshot_path(model_dir, step):
    """Where `snapshot_steps` exports the generator of GAN step `step`."""
    return os.path.join(model_dir, f"generator_step{int(step)}.keras")


def step_schedule(initial, boundaries, decay):
    """Piecewise-constant learning rate: initial * decay^i after boundary i."""
    bounds = list(configs.parse_int_list(boundaries, "lr boundaries"))
    if not bounds:
        return float(initial)
    values = [initial * decay**i for i in range(len(bounds) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)


def load_fer_model(path):
    """Loads a stage-1 `.keras` CovPoolFER and freezes it.

    Raises:
        ConfigError: missing file, not a Keras file, or not a CovPoolFER.
    """
    model = covpool.load_covpoolfer(path, "--fer_model")
    model.trainable = False
    return model


def check_fer_preset(fer_model, fer_model_path, preset):
    """ConfigError when the stage-1 model was trained with another preset.

    Models without a recorded preset (older exports, models built by hand)
    and runs without a named preset pass.
    """
    trained = covpool.model_metadata(fer_model).get("preset")
    errors.require(
        preset is None or trained is None or trained == preset,
        f"--fer_model {fer_model_path} was trained with --preset={trained} "
        f"but this stage-2 run uses --preset={preset}; pass "
        f"--preset={trained}, or a stage-1 model trained with "
        f"--preset={preset}.",
    )


def feature_size(fer_model):
    """d of the d x d SPD feature a CovPoolFER model produces."""
    _, spd, _ = covpool.covpoolfer_parts(fer_model)
    return int(spd.output_shape[-1])


def _architecture(gen_config, critic_config, d, mixed_precision):
    # mixed_precision: a LossScaleOptimizer's checkpoint has other slots.
    return {
        "mixed_precision": bool(mixed_precision),
        "feature_size": d,
        "generator": dataclasses.asdict(gen_config),
        "critic": dataclasses.asdict(critic_config),
    }


def run_validation(
    predict, split, scales, batch_size, limit, image_size, writer, step
):
    """Per-scale accuracy of bicubic and FSR; returns the summaries."""
    results = eval_lib.summarize(
        eval_lib.collect(
            split,
            scales,
            batch_size,
            predict,
            limit=limit,
            image_size=image_size,
        )
    )
    scalars = {}
    for method, per_scale in results.items():
        accs = [r["accuracy"] for r in per_scale.values()]
        scalars[f"{method}/mean_accuracy"] = float(np.mean(accs))
        for key, r in per_scale.items():
            scalars[f"{method}/accuracy_{key}"] = r["accuracy"]
    loop.write_scalars(writer, step, scalars)
    return results


def train_fsr(
    fer_model_path,
    gen_config,
    critic_config,
    cfg,
    data_config,
    model_dir,
    resume=True,
    dataset=None,
    preset=None,
    strategy=None,
):
    """Trains G and D on features of a frozen CovPoolFER.

    Args:
        fer_model_path: stage-1 `.keras` file.
        gen_config: a `configs.GeneratorConfig`.
        critic_config: a `configs.CriticConfig`.
        cfg: a `configs.FSRTrainConfig`.
        data_config: a `configs.DataConfig`.
        model_dir: the run folder.
        resume: continue from the latest checkpoint in `model_dir`.
        dataset: an already loaded `sources.Dataset`.
        preset: the stage-2 preset's name; a stage-1 model trained with
            another preset is refused (`check_fer_preset`).
        strategy: a `tf.distribute.Strategy` (default: the one
            `cfg.distribution_strategy` names; multi-worker runs create it
            at program start and pass it).

    Returns:
        {"generator", "critic", "generator_best", "fsr_fer": paths,
         "validation": last per-method, per-scale summaries,
         "steps": GAN steps done, "model_dir": path}.
    """
    from fsr_fer_tf import distribute

    scales = validate_config(cfg)
    if strategy is None:
        strategy = distribute.make_strategy(cfg.distribution_strategy)
    distribute.check_batch_size(cfg.batch_size, strategy)
    with strategy.scope():
        fer_model = load_fer_model(fer_model_path)
    check_fer_preset(fer_model, fer_model_path, preset)
    d = feature_size(fer_model)
    if dataset is None:
        dataset = loader.load_dataset(data_config)
    loop.report_dataset(dataset)
    train_split = dataset.split("train")
    val_name = fer_loop.validation_split(dataset)
    val_split = dataset.split(val_name)
    batches_per_epoch = len(train_split) // cfg.batch_size
    errors.require(
        batches_per_epoch > 0,
        f"the train split has {len(train_split)} images, fewer than "
        f"--batch_size {cfg.batch_size}; lower --batch_size.",
        errors.DataError,
    )
    params = {
        "fer_model": os.path.abspath(fer_model_path),
        "generator": dataclasses.asdict(gen_config),
        "critic": dataclasses.asdict(critic_config),
        "train": dataclasses.asdict(cfg),
        "data": dataclasses.asdict(data_config),
        "validation_split": val_name,
    }
    run = loop.RunDirectory(
        model_dir,
        params,
        _architecture(gen_config, critic_config, d, cfg.mixed_precision),
        resume,
        kind="fsr",
        # The features G learns from come from this stage-1 model.
        pinned=loop.RESUME_PINNED + ("fer_model",),
        chief=distribute.is_chief(strategy),
        checkpoint_dir=distribute.worker_dir(model_dir, strategy),
    )

    keras.utils.set_random_seed(cfg.seed)
    previous_policy = keras.config.dtype_policy()
    if cfg.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        with strategy.scope():
            generator = generator_lib.RRDBGenerator(gen_config)
            critic = critic_lib.VGGCritic(critic_config, input_size=d)
            generator.build((None, d, d, 1))
            critic.build((None, d, d, 1))
    finally:
        keras.config.set_dtype_policy(previous_policy)
    features, spd, head = covpool.covpoolfer_parts(fer_model)
    steps = steps_lib.FSRSteps(
        generator,
        critic,
        features,
        spd,
        head,
        learning_rate=step_schedule(
            cfg.learning_rate, cfg.lr_boundaries, cfg.lr_decay
        ),
        beta_1=cfg.beta_1,
        beta_2=cfg.beta_2,
        pretrain_learning_rate=step_schedule(
            cfg.pretrain_learning_rate, cfg.pretrain_lr_boundaries, 0.5
        ),
        adv_weight=cfg.adv_weight,
        perceptual_weight=cfg.perceptual_weight,
        l2_weight=cfg.l2_weight,
        l2_reduction=cfg.l2_reduction,
        reweight=cfg.reweight,
        sigma=cfg.sigma,
        r=cfg.r,
        reweight_gradient=cfg.reweight_gradient and cfg.reweight,
        ce_weight=cfg.ce_weight,
        critic_weighting=cfg.critic_weighting and cfg.reweight,
        k=cfg.k,
        p=cfg.p,
        penalty_norm=cfg.penalty_norm,
        n_critic=cfg.n_critic,
        seed=cfg.seed,
        jit_compile=cfg.jit_compile,
        strategy=strategy,
    )
    with strategy.scope():
        pretrained = tf.Variable(0, dtype=tf.int64, trainable=False)
    best = loop.BestTracker(run, "fsr/mean_accuracy")
    ckpt = run.checkpoint(
        pretrained=pretrained, best=best.best, **steps.checkpoint_items()
    )
    # Checkpoints are numbered by batches consumed: pretrained + steps.step.
    manager = run.checkpoint_manager(ckpt)
    run.restore(ckpt, manager)
    train_writer, val_writer = run.summary_writers()
    paths = {
        "generator": run.path("generator.keras"),
        "critic": run.path("critic.keras"),
        "generator_best": run.path("generator_best.keras"),
        "fsr_fer": run.path("fsr_fer.keras"),
    }
    predict = eval_lib.make_predict(fer_model, generator)
    image_size = eval_lib.input_size(fer_model)
    validation = {}

    def save(current_batches):
        return run.save(manager, current_batches)

    def validate_now(gan_step):
        nonlocal validation
        if not run.chief:  # the chief validates, exports and keeps `best`
            return
        validation = run_validation(
            predict,
            val_split,
            scales,
            cfg.batch_size,
            cfg.eval_images,
            image_size,
            val_writer,
            gan_step,
        )
        mean = {
            m: np.mean([r["accuracy"] for r in v.values()])
            for m, v in validation.items()
        }
        logging.info(
            "Validation (%s) at GAN step %d: mean accuracy bicubic %.4f, "
            "fsr %.4f | fsr per scale: %s",
            val_name,
            gan_step,
            mean["bicubic"],
            mean["fsr"],
            " ".join(
                f"{k} {r['accuracy']:.3f}" for k, r in validation["fsr"].items()
            ),
        )
        if best.update(
            mean["fsr"],
            gan_step,
            lambda: loop.export_keras(generator, paths["generator_best"]),
            {
                "validation_split": val_name,
                "accuracy": {
                    k: r["accuracy"] for k, r in validation["fsr"].items()
                },
            },
        ):
            logging.info("New best generator -> %s", paths["generator_best"])

    snapshots = set(
        configs.parse_int_list(cfg.snapshot_steps, "--snapshot_steps")
    )
    pre_done = int(pretrained.numpy())
    gan_done = int(steps.step.numpy())
    logging.info(
        "Stage 2: d=%d, %d pre-training + %d GAN steps, batch %d over %d "
        "replica(s), scales %s, %s -> %s",
        d,
        cfg.pretrain_steps,
        cfg.steps,
        cfg.batch_size,
        distribute.num_replicas(strategy),
        ",".join(map(str, scales)),
        f"resuming at {pre_done}+{gan_done}"
        if pre_done + gan_done
        else "from scratch",
        run.model_dir,
    )
    pre_progress = loop.ProgressLogger(
        cfg.pretrain_steps, cfg.log_every, cfg.batch_size, pre_done
    )
    gan_progress = loop.ProgressLogger(
        cfg.steps, cfg.log_every, cfg.batch_size, gan_done
    )
    consumed = pre_done + gan_done
    with loop.checkpoint_on_interrupt(lambda: save(consumed)):
        while pre_done < cfg.pretrain_steps or gan_done < cfg.steps:
            epoch, offset = divmod(consumed, batches_per_epoch)
            ds = pipeline.make_dataset(
                train_split,
                batch_size=cfg.batch_size,
                training=True,
                scales=scales,
                seed=cfg.seed,
                epoch=epoch,
                skip_batches=offset,
                image_size=image_size,
                max_shift=0,  # released FSR code: horizontal flips only
                max_rotation=0.0,
            )
            for batch in distribute.distribute_dataset(strategy, ds):
                if pre_done < cfg.pretrain_steps:
                    metrics = steps.pretrain_step(batch["hr"], batch["lr"])
                    pre_done += 1
                    pretrained.assign(pre_done)
                    step_now, progress, prefix = pre_done, pre_progress, "pre/"
                else:
                    metrics = steps.train_step(
                        batch["hr"], batch["lr"], batch["label"]
                    )
                    gan_done += 1
                    step_now, progress, prefix = gan_done, gan_progress, ""
                consumed += 1
                metrics = {k: float(v) for k, v in metrics.items()}
                loop.check_finite(step_now, metrics, lambda: save(consumed))
                if progress.maybe_log(step_now, metrics):
                    metrics["images_per_second"] = progress.images_per_second
                    # GAN scalars at the GAN step, like the validation ones;
                    # pre-training scalars ("pre/...") at their own step.
                    loop.write_scalars(
                        train_writer, step_now, metrics, prefix=prefix
                    )
                if prefix == "" and gan_done in snapshots and run.chief:
                    loop.export_keras(
                        generator, snapshot_path(run.model_dir, gan_done)
                    )
                validate = prefix == "" and (
                    gan_done % cfg.eval_every == 0 or gan_done == cfg.steps
                )
                if validate:
                    validate_now(gan_done)  # may update `best`: save after
                if validate or consumed % cfg.checkpoint_every == 0:
                    save(consumed)
                if pre_done >= cfg.pretrain_steps and gan_done >= cfg.steps:
                    break
    if not validation:  # nothing left to train: validate what was resumed
        validate_now(gan_done)
    save(consumed)
    if run.chief:
        loop.export_keras(generator, paths["generator"])
        loop.export_keras(critic, paths["critic"])
        if not os.path.exists(paths["generator_best"]):
            loop.export_keras(generator, paths["generator_best"])
        loop.export_keras(
            fsr_fer.build_fsr_fer(fer_model, generator), paths["fsr_fer"]
        )
        logging.info("Exported %s", ", ".join(paths.values()))
    train_writer.flush()
    val_writer.flush()
    return dict(
        paths, validation=validation, steps=gan_done, model_dir=run.model_dir
    )
