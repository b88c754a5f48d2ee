"""tf.function training steps of the feature super-resolution GAN (stage 2).

`FSRSteps` owns the generator G, the critic D, their optimizers, the frozen
CovPoolFER parts and a seeded random generator for the WGAN-div
interpolation, and exposes two traced steps:

- `train_step(hr_images, lr_images, labels)`: `n_critic` critic updates then
  one generator update, all in one `tf.function` (paper eq. 7-11);
- `pretrain_step(hr_images, lr_images)`: a generator update on the feature
  L2 loss alone (the released recipe's 40k-iteration pre-training).

Summaries, checkpoints and evaluation belong to the loop (`fsr_loop.py`);
`checkpoint_items` returns what a `tf.train.Checkpoint` must hold to resume
bit-for-bit.
"""

import keras
import tensorflow as tf

from fsr_fer_tf import distribute
from fsr_fer_tf import losses
from fsr_fer_tf.train import updates
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.errors import require


def _is_float16(model):
    """True when any layer of `model` computes in float16 (mixed_float16)."""
    return model.dtype_policy.compute_dtype == "float16" or any(
        layer.compute_dtype == "float16" for layer in model.layers
    )


def _f32(x):
    return tf.cast(x, tf.float32)


class FSRSteps:
    """Training steps of FSR-FER's generator and critic (paper sec. 3.2-3.4).

    One `train_step` runs, in a single `tf.function`:
      1. F_hr = SPD(CNN(I_hr)), F_lr = SPD(CNN(I_lr)) with the frozen parts
         (eq. 1-2; `training=False`, never updated, never XLA-compiled since
         the SPD part calls eigh);
      2. F_sr = G(F_lr) (eq. 3), the head's embedding and logits of F_sr and
         F_hr, and w_i = (sigma - p_i)^r from the true-class probability of
         F_sr (eq. 11; a constant unless `reweight_gradient`);
      3. `n_critic` critic updates on L_gan(D) of eq. 8 with fresh
         epsilon ~ U(0, 1) per sample each time (the same F_sr: G does not
         change in between);
      4. one generator update on
         L(G) = mean_i w_i (adv L_gan_i + perc L_p_i + l2 L_2_i) (eq. 7, 9,
         10, 11), the adversarial term scored by the updated critic.
    G runs forward once per step: its tape is paused during the critic
    updates.

    Optimizers are Adam with beta_1 = 0 (paper sec. 3.4). Learning rates may
    be floats or `LearningRateSchedule`s; schedules are evaluated at `step`,
    the number of completed `train_step`s, for both networks (so `n_critic`
    does not make the critic's schedule run ahead). Under mixed_float16 (a
    float16 G or D) each optimizer is wrapped in its own
    `keras.optimizers.LossScaleOptimizer`: losses are scaled with
    `scale_loss` inside the tape and `apply` unscales and skips non-finite
    steps. Critic scores, the penalty and every loss are float32.

    Args:
        generator: the generator G, [B, d, d, 1] -> [B, d, d, 1].
        critic: the critic D, [B, d, d, 1] -> [B, 1].
        features: frozen CNN trunk, images -> conv map.
        spd: frozen SPD part, conv map -> LogEig map [B, d, d] (or
            [B, d, d, 1]).
        head: frozen head, [B, d, d] -> (embedding [B, 128], logits [B, C]).
        learning_rate: generator learning rate, float or schedule (paper:
            `PiecewiseConstantDecay([20000, 50000, 100000, 200000],
            [2e-4, 1e-4, 5e-5, 2.5e-5, 1.25e-5])`).
        critic_learning_rate: critic learning rate; None = `learning_rate`.
        beta_1: Adam beta_1 of both GAN optimizers (paper: 0).
        beta_2: Adam beta_2 of both GAN optimizers.
        pretrain_learning_rate: learning rate of the L2 pre-training
            optimizer, float or schedule (evaluated at its own iterations).
        pretrain_beta_1: Adam beta_1 of pre-training (released: 0.9, the TF1
            default).
        adv_weight: weight of L_gan(G) (paper 1, released 1).
        perceptual_weight: weight of L_p (paper 1, released 10).
        l2_weight: weight of L_2 (paper 1, released 0.01).
        l2_reduction: "mean" or "sum" over a sample's d*d elements.
        reweight: apply eq. 11's w to the generator's losses.
        sigma: eq. 11's sigma (> 1).
        r: eq. 11's r (> 0; paper 1, released 2).
        reweight_gradient: let w carry the gradient of p_i (released code:
            G is also pushed to raise the true-class probability).
        ce_weight: weight of a cross-entropy term of the frozen head on
            F_sr (beyond the paper; 0 = off, the paper and released code).
        critic_weighting: weight the critic's two expectations by w too
            (released code); the paper's critic is unweighted.
        k: WGAN-div penalty weight (paper 2).
        p: WGAN-div power (paper 6).
        penalty_norm: "all" (paper) or "per_column" (released code), see
            `losses.wgan_div_penalty`.
        n_critic: critic updates per generator update (released: 1).
        seed: seed of the epsilon generator.
        strategy: the `tf.distribute.Strategy` the steps run under (default:
            the current one); create G, D and the frozen parts inside its
            scope. Each replica computes its share of the global-batch
            means; epsilon is drawn for the global batch and sliced.
        remapper: leave Grappler's remapper on. False (the default) turns
            it off for the process (`disable_remapper`): where oneDNN is on,
            it fails on these steps' LeakyReluGrad and logs an error line.
        jit_compile: XLA-compile the critic's gradient computation and the
            pre-training gradient (G and D only; the frozen SPD part with
            its eigh stays outside XLA).
        loss_scale: wrap optimizers in LossScaleOptimizer; None = for each
            network whose compute dtype is float16.
        initial_loss_scale: initial dynamic loss scale.
        dynamic_growth_steps: finite steps before the loss scale doubles.

    Loss weights, re-weighting, k, p and n_critic of the two recipes are in
    `configs.FSRTrainConfig` and `configs.RECIPES`; the defaults here are the
    paper's.

    Example:
    >>> features, spd, head = covpool.covpoolfer_parts(fer_model)
    >>> steps = FSRSteps(g, d, features, spd, head, learning_rate=2e-4)
    >>> logs = steps.train_step(hr, lr, labels)  # dict of float32 scalars
    >>> ckpt = tf.train.Checkpoint(**steps.checkpoint_items())
    """

    def __init__(
        self,
        generator,
        critic,
        features,
        spd,
        head,
        *,
        learning_rate=2e-4,
        critic_learning_rate=None,
        beta_1=0.0,
        beta_2=0.999,
        pretrain_learning_rate=2e-4,
        pretrain_beta_1=0.9,
        adv_weight=1.0,
        perceptual_weight=1.0,
        l2_weight=1.0,
        l2_reduction="mean",
        reweight=True,
        sigma=1.5,
        r=1.0,
        reweight_gradient=False,
        ce_weight=0.0,
        critic_weighting=False,
        k=2.0,
        p=6.0,
        penalty_norm="all",
        n_critic=1,
        seed=0,
        strategy=None,
        remapper=False,
        jit_compile=False,
        loss_scale=None,
        initial_loss_scale=2.0**15,
        dynamic_growth_steps=2000,
    ):
        losses.check_wgan_div(k, p)
        if reweight or critic_weighting:
            losses.check_reweight(sigma, r)
        require(
            critic_weighting is False or reweight,
            "critic_weighting needs reweight=True (it uses the same w)",
        )
        require(
            isinstance(n_critic, int) and n_critic >= 1,
            f"n_critic must be an integer >= 1, got {n_critic!r}",
        )
        require(
            penalty_norm in losses.PENALTY_NORMS,
            f"penalty_norm must be one of {losses.PENALTY_NORMS}, got "
            f"{penalty_norm!r}",
        )
        require(
            not reweight_gradient or reweight,
            "reweight_gradient needs reweight=True (it is w's gradient)",
        )
        if l2_reduction not in losses.L2_REDUCTIONS:
            raise ConfigError(
                f"l2_reduction must be one of {losses.L2_REDUCTIONS}, "
                f"got {l2_reduction!r}"
            )
        for name, value in (
            ("adv_weight", adv_weight),
            ("perceptual_weight", perceptual_weight),
            ("l2_weight", l2_weight),
            ("ce_weight", ce_weight),
        ):
            require(value >= 0, f"{name} must be >= 0, got {value}")
        require(0 <= beta_2 < 1, f"beta_2 must be in [0, 1), got {beta_2}")

        self.generator = generator
        self.critic = critic
        self.features = features
        self.spd = spd
        self.head = head
        self.adv_weight = float(adv_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.l2_weight = float(l2_weight)
        self.l2_reduction = l2_reduction
        self.reweight = bool(reweight)
        self.sigma = float(sigma)
        self.r = float(r)
        self.reweight_gradient = bool(reweight_gradient)
        self.ce_weight = float(ce_weight)
        self.critic_weighting = bool(critic_weighting)
        self.k = float(k)
        self.p = float(p)
        self.penalty_norm = penalty_norm
        self.n_critic = n_critic
        self.jit_compile = bool(jit_compile)
        if not remapper:
            disable_remapper()

        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self._build_state(
                seed,
                learning_rate,
                critic_learning_rate,
                beta_1,
                beta_2,
                pretrain_learning_rate,
                pretrain_beta_1,
                loss_scale,
                initial_loss_scale,
                dynamic_growth_steps,
            )

        # Python counters, incremented only while tracing.
        self.trace_counts = {"train_step": 0, "pretrain_step": 0}
        # autograph=False: the steps have no tensor-dependent Python control
        # flow (loops run over Python ints), and converting Keras' optimizer
        # code made tracing several times slower.
        if self.jit_compile:
            self._critic_gradients = tf.function(
                self._critic_gradients_impl, jit_compile=True, autograph=False
            )
            self._pretrain_gradients = tf.function(
                self._pretrain_gradients_impl,
                jit_compile=True,
                autograph=False,
            )
        else:
            self._critic_gradients = self._critic_gradients_impl
            self._pretrain_gradients = self._pretrain_gradients_impl
        self.train_step = tf.function(self._train_step, autograph=False)
        self.pretrain_step = tf.function(self._pretrain_step, autograph=False)

    def _build_state(
        self,
        seed,
        learning_rate,
        critic_learning_rate,
        beta_1,
        beta_2,
        pretrain_learning_rate,
        pretrain_beta_1,
        loss_scale,
        initial_loss_scale,
        dynamic_growth_steps,
    ):
        """The step counter, epsilon generator and optimizers (called in
        the strategy's scope)."""
        generator, critic = self.generator, self.critic
        # The GAN iteration counter: schedules of both optimizers read it.
        # Every replica adds 1; the first replica's value is the count.
        self.step = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self.seed_generator = keras.random.SeedGenerator(seed, name="epsilon")

        if critic_learning_rate is None:
            critic_learning_rate = learning_rate

        def adam(learning_rate, beta, model, name):
            """Adam for `model`, loss-scaled if it computes in float16
            (or as `loss_scale` says)."""
            scaled = _is_float16(model) if loss_scale is None else loss_scale
            optimizer = keras.optimizers.Adam(
                learning_rate=learning_rate,
                beta_1=beta,
                beta_2=beta_2,
                name=name,
            )
            if not scaled:
                return optimizer
            return keras.optimizers.LossScaleOptimizer(
                optimizer,
                initial_scale=initial_loss_scale,
                dynamic_growth_steps=dynamic_growth_steps,
                name=f"{name}_loss_scale",
            )

        self.g_optimizer = adam(
            self._at_step(learning_rate), beta_1, generator, "g_adam"
        )
        self.d_optimizer = adam(
            self._at_step(critic_learning_rate), beta_1, critic, "d_adam"
        )
        self.pretrain_optimizer = adam(
            _as_learning_rate(pretrain_learning_rate),
            pretrain_beta_1,
            generator,
            "pretrain_adam",
        )
        # Build the optimizer slots now: the traced steps then create no
        # variables (one trace, not two) and a checkpoint can be restored
        # into them before the first step.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.critic.trainable_variables)
        self.pretrain_optimizer.build(self.generator.trainable_variables)

    # --- construction helpers ---

    def _at_step(self, learning_rate):
        """A float, or a zero-argument callable reading `self.step`."""
        learning_rate = _as_learning_rate(learning_rate)
        if isinstance(
            learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            schedule = learning_rate
            return lambda: schedule(self.step)
        return learning_rate

    def checkpoint_items(self):
        """Objects a `tf.train.Checkpoint` needs to resume training exactly:
        both networks, the three optimizers, `step` and the epsilon
        generator's state.

        Example:
        >>> ckpt = tf.train.Checkpoint(**steps.checkpoint_items())
        """
        return {
            "generator": self.generator,
            "critic": self.critic,
            "g_optimizer": self.g_optimizer,
            "d_optimizer": self.d_optimizer,
            "pretrain_optimizer": self.pretrain_optimizer,
            "step": self.step,
            "epsilon_seed": self.seed_generator.state,
        }

    # --- frozen CovPoolFER parts ---

    def extract(self, images):
        """F = SPD(CNN(I)) (eq. 1-2) as a constant float32 [B, d, d, 1]."""
        f = self.spd(self.features(images, training=False), training=False)
        f = _f32(f)
        if f.shape.rank == 3:
            f = f[..., tf.newaxis]  # (B, d, d, 1)
        return tf.stop_gradient(f)

    def classify(self, f):
        """(embedding, logits) of the frozen head on [B, d, d, 1], float32."""
        embedding, logits = self.head(f[..., 0], training=False)
        return _f32(embedding), _f32(logits)

    # --- critic ---

    def _critic_gradients_impl(self, f_hr, f_sr, epsilon, weights, share=1.0):
        critic = self.critic
        batch = tf.shape(f_hr)[0]
        with tf.GradientTape() as tape:
            # One forward pass for both expectations: the critic has no
            # batch-norm, so concatenating does not mix samples.
            scores = critic(tf.concat([f_hr, f_sr], axis=0), training=True)
            d_real, d_fake = _f32(scores[:batch]), _f32(scores[batch:])
            penalty = losses.wgan_div_penalty(
                critic,
                f_hr,
                f_sr,
                epsilon,
                k=self.k,
                p=self.p,
                # Under mixed_float16, the inner gradient is loss-scaled too.
                gradient_scale=_loss_scale(self.d_optimizer),
                norm=self.penalty_norm,
            )
            loss = losses.critic_loss(
                d_real,
                d_fake,
                penalty,
                weights if self.critic_weighting else None,
            )
            scaled = self.d_optimizer.scale_loss(share * loss)
        grads = tape.gradient(scaled, critic.trainable_variables)
        return grads, {
            "d_loss": loss,
            "d_real": tf.reduce_mean(d_real),
            "d_fake": tf.reduce_mean(d_fake),
            "penalty": penalty,
        }

    # --- steps ---

    # How each log combines over replicas (distribute.reduce_metrics): the
    # default is the mean of the replicas' means over equal shares.
    _REDUCTIONS = {
        "w_min": "min",  # over this worker's replicas
        "w_max": "max",
        "g_learning_rate": "first",
        "d_learning_rate": "first",
        "g_loss_scale": "first",
        "d_loss_scale": "first",
        "pretrain_learning_rate": "first",
        "pretrain_loss_scale": "first",
    }

    def _train_step(self, hr_images, lr_images, labels):
        self.trace_counts["train_step"] += 1
        per_replica = self.strategy.run(
            self._replica_train_step, args=(hr_images, lr_images, labels)
        )
        return distribute.reduce_metrics(
            self.strategy, per_replica, self._REDUCTIONS
        )

    def _pretrain_step(self, hr_images, lr_images):
        self.trace_counts["pretrain_step"] += 1
        per_replica = self.strategy.run(
            self._replica_pretrain_step, args=(hr_images, lr_images)
        )
        return distribute.reduce_metrics(
            self.strategy, per_replica, self._REDUCTIONS
        )

    def _replica_train_step(self, hr_images, lr_images, labels):
        f_hr = self.extract(hr_images)
        f_lr = self.extract(lr_images)
        embedding_hr, _ = self.classify(f_hr)
        batch = tf.shape(f_hr)[0]
        n_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        # Each replica's loss is its share of the global-batch mean (equal
        # shares: its own mean / replicas); the optimizers sum the gradients.
        share = 1.0 / n_replicas
        generator, critic = self.generator, self.critic

        # Persistent: after G's gradient, the same tape gives the gradient
        # each loss term sends to F_sr (diagnostics).
        with tf.GradientTape(persistent=True) as g_tape:
            f_sr = _f32(generator(f_lr, training=True))  # (B, d, d, 1)
            embedding_sr, logits_sr = self.classify(f_sr)
            # p_i on F_sr, as the released code (`logits_fake`).
            p_true = losses.true_class_probability(logits_sr, labels)
            if self.reweight:
                w = losses.reweight(
                    p_true, self.sigma, self.r, self.reweight_gradient
                )
            else:
                w = tf.ones_like(p_true)

            # The critic updates are not part of G's graph.
            with g_tape.stop_recording():
                f_sr_fixed = tf.stop_gradient(f_sr)
                w_fixed = tf.stop_gradient(w)
                for _ in range(self.n_critic):
                    # Drawn for the global batch (the same on every
                    # replica), then this replica's rows: the draws of one
                    # device whatever the number of replicas.
                    epsilon = distribute.replica_slice(
                        keras.random.uniform(
                            (batch * n_replicas,),
                            seed=self.seed_generator,
                            dtype="float32",
                        )
                    )
                    grads, d_logs = self._critic_gradients(
                        f_hr, f_sr_fixed, epsilon, w_fixed, share
                    )
                    updates.apply_if_finite(
                        self.d_optimizer, grads, critic.trainable_variables
                    )

            adv = losses.generator_adversarial_loss(critic(f_sr, training=True))
            perceptual = losses.perceptual_loss(embedding_sr, embedding_hr)
            l2 = losses.feature_l2_loss(f_sr, f_hr, self.l2_reduction)
            terms = {
                "adv": self.adv_weight * adv,
                "perceptual": self.perceptual_weight * perceptual,
                "l2": self.l2_weight * l2,
            }
            if self.ce_weight:
                ce = losses.cross_entropy(logits_sr, labels)
                terms["ce"] = self.ce_weight * ce
            per_sample = tf.add_n(list(terms.values()))
            g_loss = losses.weighted_mean(
                per_sample, w if self.reweight else None
            )
            scaled = self.g_optimizer.scale_loss(share * g_loss)
            # Per-sample sums (not means), so each gradient row is the
            # force on that sample's F_sr_i before the 1/B of the mean.
            parts = {
                name: tf.reduce_sum(w_fixed * term)
                for name, term in terms.items()
            }
            if self.reweight_gradient:
                parts["reweight"] = tf.reduce_sum(
                    w * tf.stop_gradient(per_sample)
                )
        grads = g_tape.gradient(scaled, generator.trainable_variables)
        grad_norms = {
            f"grad_norm/{name}": _mean_sample_norm(g_tape.gradient(part, f_sr))
            for name, part in parts.items()
        }
        del g_tape
        g_lr = _f32(self.g_optimizer.learning_rate)
        d_lr = _f32(self.d_optimizer.learning_rate)
        updates.apply_if_finite(
            self.g_optimizer, grads, generator.trainable_variables
        )
        self.step.assign_add(1)

        logs = dict(d_logs)  # the last critic update's values
        logs.update(
            {
                "d_real_minus_fake": d_logs["d_real"] - d_logs["d_fake"],
                "g_loss": g_loss,
                # Unweighted batch means, before loss weights and w.
                "g_adv": tf.reduce_mean(adv),
                "g_perceptual": tf.reduce_mean(perceptual),
                "g_l2": tf.reduce_mean(l2),
                "p_true": tf.reduce_mean(p_true),
                "w_mean": tf.reduce_mean(w),
                "w_min": tf.reduce_min(w),
                "w_max": tf.reduce_max(w),
                **grad_norms,
                "g_learning_rate": g_lr,
                "d_learning_rate": d_lr,
                "g_loss_scale": _loss_scale(self.g_optimizer),
                "d_loss_scale": _loss_scale(self.d_optimizer),
            }
        )
        if self.ce_weight:
            logs["g_ce"] = tf.reduce_mean(ce)
        return {name: _f32(value) for name, value in logs.items()}

    def _pretrain_gradients_impl(self, f_lr, f_hr, share=1.0):
        generator = self.generator
        with tf.GradientTape() as tape:
            f_sr = _f32(generator(f_lr, training=True))
            loss = tf.reduce_mean(
                losses.feature_l2_loss(f_sr, f_hr, self.l2_reduction)
            )
            scaled = self.pretrain_optimizer.scale_loss(share * loss)
        return tape.gradient(scaled, generator.trainable_variables), loss

    def _replica_pretrain_step(self, hr_images, lr_images):
        f_hr = self.extract(hr_images)
        f_lr = self.extract(lr_images)
        n_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        grads, loss = self._pretrain_gradients(f_lr, f_hr, 1.0 / n_replicas)
        learning_rate = _f32(self.pretrain_optimizer.learning_rate)
        updates.apply_if_finite(
            self.pretrain_optimizer, grads, self.generator.trainable_variables
        )
        return {
            "pretrain_l2": loss,
            "pretrain_learning_rate": learning_rate,
            "pretrain_loss_scale": _loss_scale(self.pretrain_optimizer),
        }


def disable_remapper():
    """Turns Grappler's remapper pass off for this process.

    Where oneDNN is on (TensorFlow's default on CPUs with AVX512-VNNI/AMX,
    or TF_ENABLE_ONEDNN_OPTS=1), TF 2.21's remapper fails on the gradient of
    any Conv2D + BiasAdd + LeakyReLU (`remapper failed: INVALID_ARGUMENT:
    Mutation::Apply error: fanout '.../LeakyReluGrad' exist for missing node
    '.../BiasAdd'`, one E-level line per traced function): it fuses the
    BiasAdd away although the activation's gradient still reads it. The
    failed pass leaves that graph unremapped anyway; turning it off removes
    the alarming line, and `tools/bench_fsr_step.py` prints the step's
    time with the pass off against on. The option is global: TensorFlow
    reads it at every function call, so it stays off.
    """
    tf.config.optimizer.set_experimental_options({"remapping": False})


def _as_learning_rate(value):
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        require(value > 0, f"learning rate must be > 0, got {value}")
        return float(value)
    raise ConfigError(
        "learning rate must be a positive float or a keras "
        f"LearningRateSchedule, got {value!r}"
    )


def _mean_sample_norm(grads):
    """Batch mean of the per-sample L2 norms of [B, ...] gradients."""
    if grads is None:  # a term that does not depend on F_sr
        return tf.constant(0.0, tf.float32)
    squared = tf.reduce_sum(tf.square(_f32(grads)), axis=[1, 2, 3])
    return tf.reduce_mean(tf.sqrt(squared))


def _loss_scale(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return _f32(optimizer.dynamic_scale)
    return tf.constant(1.0, tf.float32)
