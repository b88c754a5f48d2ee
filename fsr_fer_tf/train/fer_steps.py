"""Stage-1 steps: CovPoolFER classifier training and prediction.

Loss as in the released CovPoolFER code: softmax cross-entropy + center loss on
the 128-d embedding + slim-style weight decay (wd * sum(w^2) / 2 over conv and
dense kernels; batch-norm parameters and BiMap's Stiefel weight are not
decayed). The released code put its center loss on a 7-d bottleneck that fed
a second 7-way layer; our head has one 7-way layer, so the center loss sits on
the 128-d `fc_2` embedding, the space the stage-2 perceptual loss measures.
"""

import keras
import tensorflow as tf

from fsr_fer_tf import distribute
from fsr_fer_tf.models import covpool
from fsr_fer_tf.train import updates


def decayed_kernels(model):
    """The conv and dense kernels of `model` (what slim's l2 regularised)."""
    kernels = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernels.append(layer.kernel)
    return kernels


class ClassifierSteps:
    """Train and predict steps for CovPoolFER, each one tf.function.

    Create it (and the model and optimizer) inside `strategy.scope()`; the
    train step then runs on every replica (`strategy.run`) and returns the
    global metrics. Losses are means over the global batch (each replica
    adds its share; gradients are summed over replicas by the optimizer),
    the weight decay counts once, and the centres move by the update of the
    whole global batch (README, "Training on several GPUs or machines").

    Args:
        model: a CovPoolFER model (`models.covpool.build_covpoolfer`).
        optimizer: a Keras optimizer; under mixed precision a
            `keras.optimizers.LossScaleOptimizer`.
        weight_decay: slim l2 factor on conv/dense kernels.
        center_loss_weight: weight of the center loss (0 disables it).
        center_loss_alpha: centres move by (1 - alpha) towards the batch.
        strategy: the `tf.distribute.Strategy` (default: the current one).

    Example:
        steps = ClassifierSteps(model, keras.optimizers.Adam(1e-3), 5e-2,
                                1e-2, 0.9)
        metrics = steps.train_step(images, labels)  # dict of float32 scalars
    """

    # How each metric combines over replicas (distribute.reduce_metrics):
    # shares of a global mean add up; the decay and scale are the same.
    _REDUCTIONS = {
        "loss": "sum",
        "cross_entropy": "sum",
        "center_loss": "sum",
        "accuracy": "sum",
        "kernel_l2": "first",
        "loss_scale": "first",
    }

    def __init__(
        self,
        model,
        optimizer,
        weight_decay,
        center_loss_weight,
        center_loss_alpha,
        strategy=None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.features, self.spd, self.head = covpool.covpoolfer_parts(model)
        self.weight_decay = float(weight_decay)
        self.center_loss_weight = float(center_loss_weight)
        self.center_loss_alpha = float(center_loss_alpha)
        self.num_classes = int(self.head.outputs[1].shape[-1])
        embedding_dim = int(self.head.outputs[0].shape[-1])
        # Centres are not trained by gradients: each step moves them towards
        # the batch's embeddings (Wen et al. 2016; released framework.py).
        # Every replica applies the same all-reduced update.
        with self.strategy.scope():
            self.centers = tf.Variable(
                tf.zeros([self.num_classes, embedding_dim]),
                trainable=False,
                name="centers",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self._kernels = decayed_kernels(model)
        self._scaled = isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        )
        self.train_step = tf.function(self._train_step, jit_compile=False)
        self.predict = tf.function(
            self._predict, reduce_retracing=True, jit_compile=False
        )

    def _forward(self, images, training):
        conv = self.features(images, training=training)
        spd = self.spd(conv, training=training)
        embedding, logits = self.head(spd, training=training)
        return tf.cast(embedding, tf.float32), tf.cast(logits, tf.float32)

    def _train_step(self, images, labels):
        per_replica = self.strategy.run(
            self._replica_train_step, args=(images, labels)
        )
        return distribute.reduce_metrics(
            self.strategy, per_replica, self._REDUCTIONS
        )

    def _replica_train_step(self, images, labels):
        labels = tf.cast(labels, tf.int32)
        n_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        global_batch = distribute.all_reduce_sum(
            tf.cast(tf.shape(labels)[0], tf.float32)
        )
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            embedding, logits = self._forward(images, training=True)
            # This replica's shares of the global-batch means.
            ce = (
                tf.reduce_sum(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels, logits
                    )
                )
                / global_batch
            )
            batch_centers = tf.gather(self.centers, labels)
            center = tf.reduce_sum(tf.square(embedding - batch_centers)) / (
                global_batch * tf.cast(tf.shape(embedding)[-1], tf.float32)
            )
            decay = tf.add_n(
                [tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in self._kernels]
            )
            loss = (
                ce
                + self.center_loss_weight * center
                + self.weight_decay * decay / n_replicas
            )
            scaled = self.optimizer.scale_loss(loss) if self._scaled else loss
        grads = tape.gradient(scaled, variables)
        updates.apply_if_finite(self.optimizer, grads, variables)
        if self.center_loss_weight > 0:
            diff = (1.0 - self.center_loss_alpha) * (batch_centers - embedding)
            # The summed update of the global batch (scatter_sub sums the
            # rows of one class, as unsorted_segment_sum does); a batch
            # with a non-finite loss anywhere moves no centre.
            delta = distribute.all_reduce_sum(
                tf.math.unsorted_segment_sum(diff, labels, self.num_classes)
            )
            bad = distribute.all_reduce_sum(
                tf.cast(~tf.math.is_finite(loss), tf.float32)
            )
            delta = tf.where(bad == 0, delta, tf.zeros_like(delta))
            self.centers.assign_sub(delta)
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
        metrics = {
            "loss": loss,
            "cross_entropy": ce,
            "center_loss": center,
            "kernel_l2": decay,  # sum(w^2)/2, before the weight_decay factor
            "accuracy": tf.reduce_sum(tf.cast(correct, tf.float32))
            / global_batch,
        }
        if self._scaled:
            metrics["loss_scale"] = tf.cast(
                self.optimizer.dynamic_scale, tf.float32
            )
        return metrics

    def _predict(self, images):
        """Logits [B, K] and the embedding [B, 128], in inference mode."""
        embedding, logits = self._forward(images, training=False)
        return logits, embedding
