"""Classification metrics on numpy arrays (no TensorFlow needed).

Accuracy here is the paper's "total accuracy": correct predictions over all test
images, every class counted by its size.
"""

import numpy as np

from fsr_fer_tf import labels as labels_lib


def confusion_matrix(y_true, y_pred, num_classes=labels_lib.NUM_CLASSES):
    """Returns C [num_classes, num_classes] with C[t, p] = #(true t, pred p)."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{y_true.shape} labels but {y_pred.shape} predictions"
        )
    out_of_range = (y_true < 0) | (y_true >= num_classes)
    out_of_range |= (y_pred < 0) | (y_pred >= num_classes)
    if np.any(out_of_range):
        raise ValueError(f"class ids outside 0..{num_classes - 1}")
    flat = y_true * num_classes + y_pred
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def summarize(confusion, class_names=labels_lib.CLASS_NAMES):
    """Total accuracy, per-class accuracy (recall) and the matrix, as a dict.

    Args:
        confusion: [K, K] counts from `confusion_matrix`.
        class_names: K names, for the keys of "per_class".

    Returns:
        {"accuracy": float in [0, 1], "per_class": {name: float or None for a
        class with no images}, "confusion": nested lists of ints, "n": int}.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    n = int(confusion.sum())
    per_class = {}
    for i, name in enumerate(class_names):
        support = int(confusion[i].sum())
        per_class[name] = float(confusion[i, i] / support) if support else None
    return {
        "accuracy": float(np.trace(confusion) / n) if n else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "n": n,
    }
