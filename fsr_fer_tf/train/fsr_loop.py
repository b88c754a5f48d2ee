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
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.models import covpool
from fsr_fer_tf.models import critic as critic_lib
from fsr_fer_tf.models import fsr_fer
from fsr_fer_tf.models import generator as generator_lib
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
    scales = cfg.scales
    req(scales, "--scales is empty; give e.g. --scales=2,3,4,5,6,7,8.")
    req(
        all(s >= 1 for s in scales),
        f"--scales must be >= 1, got {configs.list_text(scales)}.",
    )
    for name in ("lr_boundaries", "pretrain_lr_boundaries", "snapshot_steps"):
        bounds = getattr(cfg, name)
        req(
            list(bounds) == sorted(set(bounds)) and all(b > 0 for b in bounds),
            f"--{name} must be increasing positive steps.",
        )
    return scales


def snapshot_path(model_dir, step):
    """Where `snapshot_steps` exports the generator of GAN step `step`."""
    return os.path.join(model_dir, f"generator_step{int(step)}.keras")


def step_schedule(initial, boundaries, decay):
    """Piecewise-constant learning rate: initial * decay^i after boundary i
    (`boundaries`: increasing steps)."""
    bounds = [int(b) for b in boundaries]
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

    Set-up (`Stage2Run`), then the straight loop of `loop.Run.train` over
    the batches (L2-only pre-training steps first, then GAN steps;
    `Stage2Run.step`), validation and checkpoints at their steps, then the
    exports.

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
    return Stage2Run(
        fer_model_path,
        gen_config,
        critic_config,
        cfg,
        data_config,
        model_dir,
        resume,
        dataset,
        preset,
        strategy,
    ).train()


class Stage2Run(loop.Run):
    """The state of one stage-2 run, in the order `train_fsr` uses it.

    `__init__` checks the settings, loads the frozen CovPoolFER and the
    data, opens the run folder (refusing an incompatible one), builds G, D
    and their steps, and restores the latest checkpoint. Counters:
    `pre_done` pre-training steps, `gan_done` GAN steps, `consumed`
    batches (their sum; checkpoints are numbered by it).
    """

    def __init__(
        self,
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
        from fsr_fer_tf import distribute

        self.cfg = cfg
        self.scales = validate_config(cfg)
        if strategy is None:
            strategy = distribute.make_strategy(cfg.distribution_strategy)
        distribute.check_batch_size(cfg.batch_size, strategy)
        self.strategy = strategy
        with strategy.scope():
            self.fer_model = load_fer_model(fer_model_path)
        check_fer_preset(self.fer_model, fer_model_path, preset)
        d = feature_size(self.fer_model)
        self.data = loop.TrainingData(dataset, data_config, cfg.batch_size)
        params = {
            "fer_model": os.path.abspath(fer_model_path),
            "generator": dataclasses.asdict(gen_config),
            "critic": dataclasses.asdict(critic_config),
            "train": dataclasses.asdict(cfg),
            "data": dataclasses.asdict(data_config),
            "validation_split": self.data.val_name,
        }
        self.run = loop.RunDirectory(
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
        self.generator, self.critic = _build_gan(
            gen_config, critic_config, d, cfg.mixed_precision, strategy
        )
        self.steps = _make_steps(
            self.generator, self.critic, self.fer_model, cfg, strategy
        )
        with strategy.scope():
            self.pretrained = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best = loop.BestTracker(self.run, "fsr/mean_accuracy")
        ckpt = self.run.checkpoint(
            pretrained=self.pretrained,
            best=self.best.best,
            **self.steps.checkpoint_items(),
        )
        self.manager = self.run.checkpoint_manager(ckpt)
        self.run.restore(ckpt, self.manager)
        self.train_writer, self.val_writer = self.run.summary_writers()
        self.paths = {
            name: self.run.path(f"{name}.keras")
            for name in ("generator", "critic", "generator_best", "fsr_fer")
        }
        self.predict = eval_lib.make_predict(self.fer_model, self.generator)
        self.image_size = eval_lib.input_size(self.fer_model)
        self.validation = {}
        self.pre_done = int(self.pretrained.numpy())
        self.gan_done = int(self.steps.step.numpy())
        self.consumed = self.pre_done + self.gan_done
        self.pre_progress = loop.ProgressLogger(
            cfg.pretrain_steps, cfg.log_every, cfg.batch_size, self.pre_done
        )
        self.gan_progress = loop.ProgressLogger(
            cfg.steps, cfg.log_every, cfg.batch_size, self.gan_done
        )
        logging.info(
            "Stage 2: d=%d, %d pre-training + %d GAN steps, batch %d over %d "
            "replica(s), scales %s, %s -> %s",
            d,
            cfg.pretrain_steps,
            cfg.steps,
            cfg.batch_size,
            distribute.num_replicas(strategy),
            configs.list_text(self.scales),
            f"resuming at {self.pre_done}+{self.gan_done}"
            if self.consumed
            else "from scratch",
            self.run.model_dir,
        )

    def done(self):
        """Whether both phases have all their steps."""
        cfg = self.cfg
        return (
            self.pre_done >= cfg.pretrain_steps and self.gan_done >= cfg.steps
        )

    def epoch_batches(self):
        """The rest of the current epoch's batches, distributed: the order
        depends only on the seed and the epoch, so a resumed run sees the
        batches a straight run would."""
        from fsr_fer_tf import distribute

        epoch, offset = divmod(self.consumed, self.data.batches_per_epoch)
        ds = pipeline.make_dataset(
            self.data.train,
            batch_size=self.cfg.batch_size,
            training=True,
            scales=self.scales,
            seed=self.cfg.seed,
            epoch=epoch,
            skip_batches=offset,
            image_size=self.image_size,
            max_shift=0,  # released FSR code: horizontal flips only
            max_rotation=0.0,
        )
        return distribute.distribute_dataset(self.strategy, ds)

    def step(self, batch):
        """One pre-training or GAN step on `batch`, then its logging,
        snapshot, validation and checkpoint."""
        cfg = self.cfg
        if self.pre_done < cfg.pretrain_steps:
            metrics = self.steps.pretrain_step(batch["hr"], batch["lr"])
            self.pre_done += 1
            self.pretrained.assign(self.pre_done)
            step, progress, prefix = self.pre_done, self.pre_progress, "pre/"
        else:
            metrics = self.steps.train_step(
                batch["hr"], batch["lr"], batch["label"]
            )
            self.gan_done += 1
            step, progress, prefix = self.gan_done, self.gan_progress, ""
        self.consumed += 1
        metrics = {k: float(v) for k, v in metrics.items()}
        loop.check_finite(step, metrics, self.save)
        if progress.maybe_log(step, metrics):
            metrics["images_per_second"] = progress.images_per_second
            # GAN scalars at the GAN step, like the validation ones;
            # pre-training scalars ("pre/...") at their own step.
            loop.write_scalars(self.train_writer, step, metrics, prefix=prefix)
        gan = prefix == ""
        if gan and step in cfg.snapshot_steps and self.run.chief:
            loop.export_keras(
                self.generator, snapshot_path(self.run.model_dir, step)
            )
        validate = gan and (step % cfg.eval_every == 0 or step == cfg.steps)
        if validate:
            self.validate()  # may update `best`: save after
        if validate or self.consumed % cfg.checkpoint_every == 0:
            self.save()

    def save(self):
        """A checkpoint numbered by the batches consumed."""
        return self.run.save(self.manager, self.consumed)

    def validate(self):
        """Per-scale accuracy of bicubic and FSR on the validation split at
        the current GAN step; exports generator_best.keras on a new best
        FSR mean. Only the chief validates, exports and keeps `best`."""
        if not self.run.chief:
            return
        step = self.gan_done
        self.validation = run_validation(
            self.predict,
            self.data.val,
            self.scales,
            self.cfg.batch_size,
            self.cfg.eval_images,
            self.image_size,
            self.val_writer,
            step,
        )
        fsr = self.validation["fsr"]
        mean = {
            m: np.mean([r["accuracy"] for r in v.values()])
            for m, v in self.validation.items()
        }
        logging.info(
            "Validation (%s) at GAN step %d: mean accuracy bicubic %.4f, "
            "fsr %.4f | fsr per scale: %s",
            self.data.val_name,
            step,
            mean["bicubic"],
            mean["fsr"],
            " ".join(f"{k} {r['accuracy']:.3f}" for k, r in fsr.items()),
        )
        if self.best.update(
            mean["fsr"],
            step,
            lambda: loop.export_keras(
                self.generator, self.paths["generator_best"]
            ),
            {
                "validation_split": self.data.val_name,
                "accuracy": {k: r["accuracy"] for k, r in fsr.items()},
            },
        ):
            logging.info(
                "New best generator -> %s", self.paths["generator_best"]
            )

    def finish(self):
        """The last checkpoint and the exports; `train_fsr`'s result."""
        if not self.validation:  # nothing left to train: validate the resumed
            self.validate()
        self.save()
        paths = self.paths
        if self.run.chief:
            loop.export_keras(self.generator, paths["generator"])
            loop.export_keras(self.critic, paths["critic"])
            if not os.path.exists(paths["generator_best"]):
                loop.export_keras(self.generator, paths["generator_best"])
            loop.export_keras(
                fsr_fer.build_fsr_fer(self.fer_model, self.generator),
                paths["fsr_fer"],
            )
            logging.info("Exported %s", ", ".join(paths.values()))
        self.train_writer.flush()
        self.val_writer.flush()
        return dict(
            paths,
            validation=self.validation,
            steps=self.gan_done,
            model_dir=self.run.model_dir,
        )


def _build_gan(gen_config, critic_config, d, mixed_precision, strategy):
    """G and D for d x d features, built, under the run's dtype policy."""
    with loop.dtype_policy(mixed_precision), strategy.scope():
        generator = generator_lib.RRDBGenerator(gen_config)
        critic = critic_lib.VGGCritic(critic_config, input_size=d)
        generator.build((None, d, d, 1))
        critic.build((None, d, d, 1))
    return generator, critic


def _make_steps(generator, critic, fer_model, cfg, strategy):
    """The `steps.FSRSteps` of the run's settings."""
    features, spd, head = covpool.covpoolfer_parts(fer_model)
    return steps_lib.FSRSteps(
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
