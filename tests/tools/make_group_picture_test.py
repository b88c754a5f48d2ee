"""Tests of tools/make_group_picture.py (stand-in class photos)."""

import numpy as np
import pytest

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import synthetic


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("make_group_picture")


@pytest.fixture(scope="module")
def split():
    data = configs.DataConfig(synthetic_train=2, synthetic_test=3)
    return synthetic.load_synthetic(data).split("test")


def test_faces_are_pasted_at_the_sizes_asked(tool, split):
    picture, truth = tool.make_group_picture(split, 12, 16, 60, (300, 900), 0)
    assert picture.shape == (300, 900, 3) and picture.dtype == np.uint8
    assert sorted(t["size"] for t in truth) == list(
        np.linspace(16, 60, 12).round().astype(int)
    )
    for t in truth:
        x, y, w, h = t["box"]
        assert w == h == t["size"]
        assert 0 <= x and x + w <= 900 and 0 <= y and y + h <= 300
        assert t["label"] in labels_lib.CLASS_NAMES
    # Boxes hold the pasted face: not the flat background there.
    x, y, w, h = max(truth, key=lambda t: t["size"])["box"]
    assert picture[y : y + h, x : x + w].std() > 10
    again, _ = tool.make_group_picture(split, 12, 16, 60, (300, 900), 0)
    np.testing.assert_array_equal(picture, again)  # seeded


def test_bad_requests_are_one_line_errors(tool, split):
    with pytest.raises(errors.ConfigError, match="--faces"):
        tool.make_group_picture(split, len(split) + 1, 16, 60, (300, 900), 0)
    with pytest.raises(errors.ConfigError, match="--min_size"):
        tool.make_group_picture(split, 4, 60, 16, (300, 900), 0)
    with pytest.raises(errors.ConfigError, match="does not fit"):
        tool.make_group_picture(split, 4, 200, 300, (100, 100), 0)
