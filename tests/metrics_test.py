"""Tests for fsr_fer_tf.metrics on a hand-checked case."""

import numpy as np
import pytest

from fsr_fer_tf import metrics


def test_confusion_and_summary_hand_checked():
    # 3 classes; true 0,0,1,1,1,2 / pred 0,1,1,1,2,2: 4 of 6 right.
    y_true = [0, 0, 1, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 2, 2]
    c = metrics.confusion_matrix(y_true, y_pred, num_classes=3)
    np.testing.assert_array_equal(c, [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    s = metrics.summarize(c, class_names=("a", "b", "c"))
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["per_class"] == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 1.0})
    assert s["n"] == 6
    assert s["confusion"] == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]


def test_class_without_images_is_none_and_empty_is_zero():
    c = metrics.confusion_matrix([0, 0], [0, 1], num_classes=3)
    s = metrics.summarize(c, class_names=("a", "b", "c"))
    assert s["per_class"] == {"a": 0.5, "b": None, "c": None}
    assert metrics.summarize(np.zeros((2, 2)), ("a", "b"))["accuracy"] == 0.0


def test_rejects_out_of_range_and_mismatched():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 7], [0, 1])
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 1], [0])
