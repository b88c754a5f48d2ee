"""Tests for fsr_fer_tf.eval_lib helpers that need no model."""

import numpy as np
import pytest

from fsr_fer_tf import eval_lib
from fsr_fer_tf.data import sources


def _sorted_split(counts):
    """A split sorted by class, as a class-folder tree reads."""
    labels = np.repeat(np.arange(len(counts)), counts)
    paths = [f"c{label}/{i}.png" for i, label in enumerate(labels)]
    return sources.Split(name="val", labels=labels, paths=paths)


def test_limit_split_is_stratified_fixed_and_ordered():
    split = _sorted_split([400, 44, 410, 722, 496, 483, 317])  # FER-2013 val
    sub = eval_lib.limit_split(split, 500)
    assert len(sub) == 500
    counts = np.bincount(sub.labels, minlength=7)
    share = np.array([400, 44, 410, 722, 496, 483, 317]) / 2872 * 500
    # Largest remainders: each class within one image of its share.
    assert np.all(np.abs(counts - share) < 1), counts
    assert counts[1] >= 7  # the rare class is present
    # The first 500 images of the sorted split would hold three classes.
    assert len(np.unique(split.labels[:500])) == 3
    # Kept in the split's order, and the same subset every call.
    assert sub.paths == sorted(sub.paths, key=split.paths.index)
    again = eval_lib.limit_split(split, 500)
    assert again.paths == sub.paths
    other = eval_lib.limit_split(split, 500, seed=1)
    assert other.paths != sub.paths
    np.testing.assert_array_equal(
        np.bincount(other.labels, minlength=7), counts
    )
    # Each kept path belongs to the class its label says.
    assert all(p.startswith(f"c{l}/") for p, l in zip(sub.paths, sub.labels))


@pytest.mark.parametrize("limit", [0, 2872, 5000])
def test_limit_split_keeps_everything(limit):
    split = _sorted_split([3, 2])
    assert eval_lib.limit_split(split, limit) is split


def test_limit_split_tiny_limit_spreads_over_largest_classes():
    split = _sorted_split([10, 1, 10, 30, 10, 10, 9])
    sub = eval_lib.limit_split(split, 3)
    counts = np.bincount(sub.labels, minlength=7)
    assert counts.sum() == 3 and counts[3] == 1  # the largest class has one
    assert np.all(counts <= 1)
