"""Image-SR baselines of Table 1 (Meta-SR, RCAN), trained resumably.

`train_isr(...)` is what `python -m fsr_fer_tf.train_isr` runs once flags
are resolved. The SR model sees the native LR face the project synthesises
everywhere (MATLAB bicubic down by s, `data/pipeline.py`) and learns the
100x100 HR face with an L1 loss, as Meta-SR and RCAN do. With a frozen
CovPoolFER (`fer_model_path`) and `fer_weight` > 0, a consistency term
between the SR and the HR face through that model is added (after SR-FER,
seed 002; see `ISRSteps`).

    set-up (run folder, model, steps, resume)
    -> per step: a batch of (HR, native LR, scale) -> one update
    -> every eval_every steps: PSNR/SSIM per scale (+ accuracy), checkpoint
    -> export isr.keras (last) and isr_best.keras (best mean PSNR)
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import eval_lib
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.models import covpool
from fsr_fer_tf.models import isr
from fsr_fer_tf.train import fsr_loop
from fsr_fer_tf.train import loop
from fsr_fer_tf.train import updates

FER_LOSSES = ("feature", "prediction", "both")


def validate_config(model_kind, cfg):
    """Checks the settings; returns the scales as a tuple of ints."""
    req = errors.require
    req(
        model_kind in configs.ISR_MODELS,
        f"--model must be one of {', '.join(configs.ISR_MODELS)}, got "
        f"'{model_kind}'.",
    )
    req(cfg.batch_size > 0, f"--batch_size must be > 0, got {cfg.batch_size}.")
    req(cfg.steps > 0, f"--steps must be > 0, got {cfg.steps}.")
    req(cfg.learning_rate > 0, "--learning_rate must be > 0.")
    req(0 < cfg.lr_decay <= 1, "--lr_decay must be in (0, 1].")
    req(
        0 <= cfg.beta_1 < 1 and 0 <= cfg.beta_2 < 1,
        "--beta_1 and --beta_2 must be in [0, 1).",
    )
    req(cfg.adam_epsilon > 0, "--adam_epsilon must be > 0.")
    req(cfg.fer_weight >= 0, "--fer_weight must be >= 0 (0: L1 only).")
    req(
        cfg.fer_loss in FER_LOSSES,
        f"--fer_loss must be one of {', '.join(FER_LOSSES)}, got "
        f"'{cfg.fer_loss}'.",
    )
    for name in ("eval_every", "log_every", "checkpoint_every"):
        req(getattr(cfg, name) > 0, f"--{name} must be > 0.")
    req(cfg.eval_images >= 0, "--eval_images must be >= 0.")
    scales = cfg.scales
    text = configs.list_text(scales)
    req(scales, "--scales is empty; give e.g. --scales=2,3,4,5,6,7,8.")
    req(
        all(2 <= s <= 8 for s in scales),
        f"--scales must be in 2..8 (the paper's factors), got {text}.",
    )
    req(
        model_kind != "rcan" or len(set(scales)) == 1,
        f"RCAN is one model per scale: give one --scales value (e.g. "
        f"--scales=4), got {text}.",
    )
    bounds = cfg.lr_boundaries
    req(
        list(bounds) == sorted(set(bounds)) and all(b > 0 for b in bounds),
        "--lr_boundaries must be increasing positive steps.",
    )
    return tuple(sorted(set(scales)))


def build_model(model_kind, model_config, scales, out_size=100):
    """A MetaSR (every scale of `scales`) or RCAN (its one scale)."""
    c = model_config
    if model_kind == "metasr":
        return isr.MetaSR(
            out_size=out_size,
            channels=c.channels,
            blocks=c.blocks,
            meta_hidden=c.meta_hidden,
            scales=tuple(scales),
            res_scale=c.res_scale,
            bicubic_skip=c.bicubic_skip,
        )
    return isr.RCAN(
        scale=scales[0],
        out_size=out_size,
        channels=c.channels,
        groups=c.groups,
        blocks=c.blocks,
        reduction=c.reduction,
        bicubic_skip=c.bicubic_skip,
    )


class ISRSteps:
    """The update of an image-SR model: L1 (+ expression consistency).

    loss = |SR - HR|_1 (mean over pixels, in 0..255 grey levels / 255)
           + fer_weight * consistency(CovPoolFER(SR), CovPoolFER(HR))

    The consistency term, with a frozen CovPoolFER, is what this project
    takes from SR-FER (seed 002): the cascade SR -> FER, the expression
    network's feedback into the SR network, a prediction consistency loss
    (KL divergence of the softmax outputs, the HR face's as the target) and
    a feature consistency loss (mean squared difference of the d x d SPD
    features, which stands in for SR-FER's multi-stage attention-aware
    feature consistency; its attention module is left out). SR-FER also
    trains the FER network jointly; here it stays frozen, so its outputs
    for other methods are unchanged.

    Args:
        model: a `isr.MetaSR` or `isr.RCAN`.
        learning_rate: a float or a Keras schedule.
        beta_1, beta_2, epsilon: Adam's.
        fer_model: a frozen CovPoolFER, or None.
        fer_weight: weight of the consistency term.
        fer_loss: "feature", "prediction" or "both".
        loss_scale: wrap Adam in a LossScaleOptimizer (mixed precision).
    """

    def __init__(
        self,
        model,
        learning_rate,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        fer_model=None,
        fer_weight=0.0,
        fer_loss="both",
        loss_scale=False,
    ):
        self.model = model
        optimizer = keras.optimizers.Adam(
            learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon
        )
        if loss_scale:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.fer_weight = float(fer_weight) if fer_model is not None else 0.0
        self.fer_loss = fer_loss
        self._fer = (
            covpool.covpoolfer_parts(fer_model) if self.fer_weight else None
        )
        self.train_step = tf.function(self._train_step, jit_compile=False)

    def checkpoint_items(self):
        return {"model": self.model, "optimizer": self.optimizer}

    def _fer_outputs(self, faces):
        features, spd, head = self._fer
        f = spd(features(faces, training=False), training=False)
        return tf.cast(f, tf.float32), tf.cast(
            head(f, training=False)[1], tf.float32
        )

    def losses(self, lr, scale, hr, training=True):
        """{"loss", "l1"[, "fer_feature", "fer_prediction"]} scalars."""
        sr = self.model({"lr": lr, "scale": scale}, training=training)
        sr = tf.cast(sr, tf.float32)
        l1 = tf.reduce_mean(tf.abs(sr - hr)) / 255.0
        out = {"l1": l1, "loss": l1}
        if self.fer_weight:
            f_hr, logits_hr = self._fer_outputs(hr)
            # The classifier sees what a user's SR face would be: 0..255.
            f_sr, logits_sr = self._fer_outputs(tf.clip_by_value(sr, 0, 255))
            f_hr, logits_hr = (
                tf.stop_gradient(f_hr),
                tf.stop_gradient(logits_hr),
            )
            term = 0.0
            if self.fer_loss in ("feature", "both"):
                out["fer_feature"] = tf.reduce_mean(tf.square(f_sr - f_hr))
                term += out["fer_feature"]
            if self.fer_loss in ("prediction", "both"):
                p_hr = tf.nn.softmax(logits_hr)
                out["fer_prediction"] = tf.reduce_mean(
                    tf.reduce_sum(
                        p_hr
                        * (
                            tf.nn.log_softmax(logits_hr)
                            - tf.nn.log_softmax(logits_sr)
                        ),
                        axis=-1,
                    )
                )
                term += out["fer_prediction"]
            out["loss"] = l1 + self.fer_weight * term
        return out

    def _train_step(self, lr, scale, hr):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.losses(lr, scale, hr)
            loss = out["loss"]
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        updates.apply_if_finite(self.optimizer, grads, variables)
        self.step.assign_add(1)
        out["grad_norm"] = tf.linalg.global_norm(
            [g for g in grads if g is not None]
        )
        return out


def load_initial_weights(model, path):
    """Copies the weights of the image-SR `.keras` file `path` into `model`
    (same class and sizes, else a one-line ConfigError)."""
    source = isr.load_isr(path, "--init_from")
    mine, theirs = model.get_config(), source.get_config()
    for config in (mine, theirs):
        config.pop("name", None)
        config.pop("trainable", None)
    errors.require(
        type(source) is type(model) and mine == theirs,
        f"--init_from {path} is a {type(source).__name__} with "
        f"{theirs}, not a {type(model).__name__} with {mine}; pass a model "
        "of this run's --model and sizes.",
    )
    model.set_weights(source.get_weights())
    logging.info("Initialised the SR model from %s", path)


def _architecture(model_kind, model_config, scales, mixed_precision):
    return {
        "model": model_kind,
        "isr": dataclasses.asdict(model_config),
        "scales": list(scales),
        "mixed_precision": bool(mixed_precision),
    }


def run_validation(
    model, fer_model, split, scales, batch_size, limit, writer, step
):
    """PSNR/SSIM (and accuracy) of the SR model and bicubic per scale."""
    predict = eval_lib.combine_predicts(
        eval_lib.bicubic_quality_predict(),
        eval_lib.isr_predict(model, fer_model, name="sr"),
        *([eval_lib.make_predict(fer_model)] if fer_model is not None else []),
    )
    results = eval_lib.summarize(
        eval_lib.collect(
            split,
            scales,
            batch_size,
            predict,
            limit=limit,
            lr_native=True,
            image_size=model.out_size,
        )
    )
    scalars = {}
    for method, per_scale in results.items():
        for metric in ("psnr", "ssim", "accuracy"):
            values = [r[metric] for r in per_scale.values() if metric in r]
            if not values:
                continue
            scalars[f"{method}/mean_{metric}"] = float(np.mean(values))
            for key, r in per_scale.items():
                scalars[f"{method}/{metric}_{key}"] = r[metric]
    loop.write_scalars(writer, step, scalars)
    return results


def sr_grid(model, split, scales, count=4):
    """PNG of `count` val faces: per scale, bicubic then SR, then HR."""
    from fsr_fer_tf import plots

    subset = split.subset(list(range(min(count, len(split)))))
    images, captions = [], []
    rows = []
    for scale in scales:
        batch = next(
            iter(
                pipeline.make_dataset(
                    subset,
                    batch_size=len(subset),
                    training=False,
                    scales=(scale,),
                    lr_native=True,
                    image_size=model.out_size,
                )
            )
        )
        sr = isr.super_resolve(model, batch["lr_native"], scale).numpy()
        rows.append((scale, batch["lr"].numpy(), sr, batch["hr"].numpy()))
    for i in range(len(subset)):
        for scale, bic, sr, hr in rows:
            images += [bic[i], sr[i]]
            captions += [f"x{scale} bicubic", f"x{scale} SR"]
        images.append(rows[0][3][i])
        captions.append("HR")
    fig = plots.face_grid(
        images, captions, ncols=2 * len(scales) + 1, title="bicubic | SR | HR"
    )
    return plots.figure_to_png(fig)


def train_isr(
    model_kind,
    model_config,
    cfg,
    data_config,
    model_dir,
    resume=True,
    fer_model_path=None,
    dataset=None,
):
    """Trains an image-SR baseline; returns paths and the last validation.

    Set-up (`ISRRun`), then the straight loop of `loop.Run.train` over the
    batches (`ISRRun.step`: the update, its logging, validation and
    checkpoint), then the exports.

    Args:
        model_kind: "metasr" or "rcan".
        model_config: a `configs.ISRModelConfig`.
        cfg: a `configs.ISRTrainConfig`.
        data_config: a `configs.DataConfig`.
        model_dir: the run folder.
        resume: continue from the latest checkpoint in `model_dir`.
        fer_model_path: a stage-1 CovPoolFER `.keras` file: validation adds
            its accuracy on the SR faces, and `cfg.fer_weight` > 0 trains
            with the consistency term through it. None: PSNR/SSIM only.
        dataset: an already loaded `sources.Dataset`.

    Returns:
        {"isr", "isr_best": paths, "validation": per-method, per-scale
        summaries, "steps": steps done, "model_dir": path}.
    """
    return ISRRun(
        model_kind,
        model_config,
        cfg,
        data_config,
        model_dir,
        resume,
        fer_model_path,
        dataset,
    ).train()


class ISRRun(loop.Run):
    """The state of one image-SR run, in the order `train_isr` uses it.

    `__init__` checks the settings, loads the frozen CovPoolFER (if any) and
    the data, opens the run folder (refusing an incompatible one), builds
    the SR model and its steps, and restores the latest checkpoint (or
    starts from `init_from`). `done_steps` counts the updates.
    """

    def __init__(
        self,
        model_kind,
        model_config,
        cfg,
        data_config,
        model_dir,
        resume=True,
        fer_model_path=None,
        dataset=None,
    ):
        self.cfg = cfg
        self.scales = scales = validate_config(model_kind, cfg)
        errors.require(
            not cfg.fer_weight or fer_model_path,
            f"--fer_weight {cfg.fer_weight} needs --fer_model (the frozen "
            "CovPoolFER the consistency term goes through).",
        )
        self.fer_model = None
        if fer_model_path:
            self.fer_model = fsr_loop.load_fer_model(fer_model_path)
        self.out_size = (
            eval_lib.input_size(self.fer_model) if self.fer_model else 100
        )
        self.data = loop.TrainingData(dataset, data_config, cfg.batch_size)
        params = {
            "model": model_kind,
            "isr": dataclasses.asdict(model_config),
            "train": dataclasses.asdict(cfg),
            "data": dataclasses.asdict(data_config),
            "fer_model": fer_model_path and str(fer_model_path),
            "validation_split": self.data.val_name,
        }
        self.run = loop.RunDirectory(
            model_dir,
            params,
            _architecture(
                model_kind, model_config, scales, cfg.mixed_precision
            ),
            resume,
            kind="isr",
            pinned=loop.RESUME_PINNED + ("train.fer_weight", "train.fer_loss"),
        )
        keras.utils.set_random_seed(cfg.seed)
        self.model = _build_for_run(
            model_kind, model_config, scales, self.out_size, cfg
        )
        self.steps = ISRSteps(
            self.model,
            fsr_loop.step_schedule(
                cfg.learning_rate, cfg.lr_boundaries, cfg.lr_decay
            ),
            beta_1=cfg.beta_1,
            beta_2=cfg.beta_2,
            epsilon=cfg.adam_epsilon,
            fer_model=self.fer_model,
            fer_weight=cfg.fer_weight,
            fer_loss=cfg.fer_loss,
            loss_scale=cfg.mixed_precision,
        )
        self.best = loop.BestTracker(self.run, "sr/mean_psnr")
        ckpt = self.run.checkpoint(
            step=self.steps.step,
            best=self.best.best,
            **self.steps.checkpoint_items(),
        )
        self.manager = self.run.checkpoint_manager(ckpt)
        if self.run.restore(ckpt, self.manager) is None and cfg.init_from:
            load_initial_weights(self.model, cfg.init_from)
        self.train_writer, self.val_writer = self.run.summary_writers()
        self.paths = {
            "isr": self.run.path("isr.keras"),
            "isr_best": self.run.path("isr_best.keras"),
        }
        self.validation = {}
        self.done_steps = int(self.steps.step.numpy())
        if self.done_steps:
            start = f"resuming at {self.done_steps}"
        else:
            start = f"from {cfg.init_from}" if cfg.init_from else "from scratch"
        logging.info(
            "Image SR (%s): %d steps, batch %d, scales %s, %s -> %s",
            model_kind,
            cfg.steps,
            cfg.batch_size,
            configs.list_text(scales),
            start,
            self.run.model_dir,
        )
        self.progress = loop.ProgressLogger(
            cfg.steps, cfg.log_every, cfg.batch_size, self.done_steps
        )

    def done(self):
        return self.done_steps >= self.cfg.steps

    def epoch_batches(self):
        """The rest of the current epoch's batches (the order depends only
        on the seed and the epoch)."""
        cfg = self.cfg
        epoch, offset = divmod(self.done_steps, self.data.batches_per_epoch)
        return pipeline.make_dataset(
            self.data.train,
            batch_size=cfg.batch_size,
            training=True,
            scales=self.scales,
            seed=cfg.seed,
            epoch=epoch,
            skip_batches=offset,
            image_size=self.out_size,
            flip=cfg.random_flip,
            max_shift=0,
            max_rotation=0.0,
            lr_native=True,
        )

    def step(self, batch):
        """One update, then its logging, validation and checkpoint."""
        cfg = self.cfg
        metrics = self.steps.train_step(
            batch["lr_native"], batch["scale"], batch["hr"]
        )
        self.done_steps += 1
        step = self.done_steps
        metrics = {k: float(v) for k, v in metrics.items()}
        loop.check_finite(step, metrics, self.save)
        if self.progress.maybe_log(step, metrics):
            metrics["images_per_second"] = self.progress.images_per_second
            loop.write_scalars(self.train_writer, step, metrics)
        validate = step % cfg.eval_every == 0 or step == cfg.steps
        if validate:
            self.validate()
        if validate or step % cfg.checkpoint_every == 0:
            self.save()

    def save(self):
        return self.run.save(self.manager, self.done_steps)

    def validate(self):
        """PSNR/SSIM (and accuracy with a CovPoolFER) per scale, an image
        grid, and isr_best.keras on a new best mean PSNR."""
        step, model = self.done_steps, self.model
        self.validation = run_validation(
            model,
            self.fer_model,
            self.data.val,
            self.scales,
            self.cfg.batch_size,
            self.cfg.eval_images,
            self.val_writer,
            step,
        )
        sr, bicubic = self.validation["sr"], self.validation["bicubic"]
        mean_psnr = float(np.mean([r["psnr"] for r in sr.values()]))
        logging.info(
            "Validation (%s) at step %d: mean PSNR SR %.2f dB, bicubic %.2f "
            "dB | SR per scale: %s",
            self.data.val_name,
            step,
            mean_psnr,
            float(np.mean([bicubic[k]["psnr"] for k in sr])),
            " ".join(f"{k} {r['psnr']:.2f}" for k, r in sr.items()),
        )
        if "accuracy" in next(iter(sr.values())):
            logging.info(
                "  accuracy SR %s | bicubic %s",
                " ".join(f"{k} {r['accuracy']:.3f}" for k, r in sr.items()),
                " ".join(f"{k} {bicubic[k]['accuracy']:.3f}" for k in sr),
            )
        loop.write_png(
            self.val_writer,
            step,
            "sr_faces",
            sr_grid(model, self.data.val, self.scales),
        )
        if self.best.update(
            mean_psnr,
            step,
            lambda: loop.export_keras(model, self.paths["isr_best"]),
            {
                "validation_split": self.data.val_name,
                "psnr": {k: r["psnr"] for k, r in sr.items()},
            },
        ):
            logging.info("New best SR model -> %s", self.paths["isr_best"])

    def finish(self):
        """The last checkpoint and the exports; `train_isr`'s result."""
        if not self.validation:  # nothing left to train: validate the resumed
            self.validate()
        self.save()
        loop.export_keras(self.model, self.paths["isr"])
        if not tf.io.gfile.exists(self.paths["isr_best"]):
            loop.export_keras(self.model, self.paths["isr_best"])
        logging.info("Exported %s", ", ".join(self.paths.values()))
        self.train_writer.flush()
        self.val_writer.flush()
        return dict(
            self.paths,
            validation=self.validation,
            steps=self.done_steps,
            model_dir=self.run.model_dir,
        )


def _build_for_run(model_kind, model_config, scales, out_size, cfg):
    """The SR model, built on a dummy batch under the run's dtype policy."""
    with loop.dtype_policy(cfg.mixed_precision):
        model = build_model(model_kind, model_config, scales, out_size)
        size = isr.input_size(model)
        model(
            {
                "lr": tf.zeros([1, size, size, 3]),
                "scale": tf.fill([1], scales[0]),
            }
        )
    return model
