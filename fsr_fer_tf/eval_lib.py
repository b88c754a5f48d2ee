"""Accuracy per scale for several methods on exactly the same images.

Used by stage-1 and stage-2 validation and by `fsr_fer_tf.evaluate`: for each
scale, one deterministic pass over a split (no augmentation, split order)
feeds every method the same batch; each method maps the batch to logits.
"""

import time

import numpy as np
from absl import logging

from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf import metrics
from fsr_fer_tf.data import pipeline


def scale_key(scale):
    """The results key of a scale: 1 -> "x1", 4 -> "x4"."""
    return f"x{int(scale)}"


def collect(split, scales, batch_size, predict, limit=0, log_every=0):
    """Runs `predict` over the split at every scale.

    Args:
        split: a `sources.Split`.
        scales: LR scales to evaluate (1 = the HR face itself).
        batch_size: evaluation batch size.
        predict: fn(batch dict) -> {method name: logits [B, K]} where the
            batch dict is the pipeline's ("hr", "lr", "label", "index", ...).
            One call serves every method, so they can share work (e.g. the
            LR feature) and always see the same images.
        limit: evaluate only the first `limit` images (0: all).
        log_every: log progress every this many batches (0: never).

    Returns:
        {method: {scale key: {"labels": int [N], "logits": float [N, K],
        "index": int [N]}}}.
    """
    if limit:
        split = split.subset(np.arange(min(limit, len(split))))
    out = {}
    n_batches = -(-len(split) // batch_size)
    for scale in scales:
        ds = pipeline.make_dataset(
            split, batch_size=batch_size, training=False, scales=(scale,)
        )
        gathered = {}
        labels, indices = [], []
        start = time.perf_counter()
        for b, batch in enumerate(ds):
            labels.append(batch["label"].numpy())
            indices.append(batch["index"].numpy())
            for name, logits in predict(batch).items():
                gathered.setdefault(name, []).append(
                    np.asarray(logits, np.float32)
                )
            if log_every and (b + 1) % log_every == 0:
                logging.info(
                    "  x%d: batch %d/%d (%.1f img/s)",
                    scale,
                    b + 1,
                    n_batches,
                    (b + 1) * batch_size / (time.perf_counter() - start),
                )
        labels = np.concatenate(labels)
        indices = np.concatenate(indices)
        for name, chunks in gathered.items():
            out.setdefault(name, {})[scale_key(scale)] = {
                "labels": labels,
                "logits": np.concatenate(chunks),
                "index": indices,
            }
    return out


def summarize(collected, class_names=labels_lib.CLASS_NAMES):
    """{name: {scale key: metrics.summarize(...)}} from `collect`'s output."""
    return {
        name: {
            key: metrics.summarize(
                metrics.confusion_matrix(
                    r["labels"],
                    np.argmax(r["logits"], axis=-1),
                    num_classes=len(class_names),
                ),
                class_names,
            )
            for key, r in per_scale.items()
        }
        for name, per_scale in collected.items()
    }


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy in float64 (numpy), for validation loss."""
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))
