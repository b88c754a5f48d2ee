"""Tests of the FER2013 CSV reader on a 10-row CSV with bad rows."""

import numpy as np
import pytest

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import fer2013


def _pixels(seed, count=48 * 48):
    rng = np.random.default_rng(seed)
    return " ".join(str(v) for v in rng.integers(0, 256, count))


ROWS = [
    # (emotion, pixels, Usage); the file line is index + 2.
    ("0", _pixels(0), "Training"),  # line 2: Angry -> anger
    ("3", _pixels(1), "Training"),  # line 3: Happy -> happiness
    ("5", _pixels(2), "Training"),  # line 4: Surprise -> surprise
    ("6", _pixels(3), "PublicTest"),  # line 5: Neutral
    ("2", _pixels(4), "PrivateTest"),  # line 6: Fear
    ("1", _pixels(5), "PrivateTest"),  # line 7: Disgust
    ("4", _pixels(6, 100), "Training"),  # line 8: wrong pixel count
    ("4", _pixels(7)[:-3] + " x1", "Training"),  # line 9: non-numeric
    ("7", _pixels(8), "Training"),  # line 10: unknown emotion
    ("4", _pixels(9), "Validation"),  # line 11: unknown Usage
]


def _write(path, rows, header="emotion,pixels,Usage"):
    lines = [header] + [f'{e},"{p}",{u}' for e, p, u in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def load(path):
    return fer2013.load_fer2013(
        configs.DataConfig(data_format="fer2013_csv", data_dir=path)
    )


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("fer") / "fer2013.csv", ROWS)


def test_splits_labels_and_pixels(csv_path):
    dataset = load(csv_path)
    assert dataset.name == "fer2013_csv"
    assert {k: len(v) for k, v in dataset.splits.items()} == {
        "train": 3,
        "val": 1,
        "test": 2,
    }
    train = dataset.split("train")
    names = [labels_lib.CLASS_NAMES[i] for i in train.labels]
    assert names == ["anger", "happiness", "surprise"]
    assert labels_lib.CLASS_NAMES[dataset.split("val").labels[0]] == "neutral"
    assert [
        labels_lib.CLASS_NAMES[i] for i in dataset.split("test").labels
    ] == ["fear", "disgust"]
    assert train.images.shape == (3, 48, 48, 3)
    assert train.images.dtype == np.uint8
    expected = np.array(ROWS[1][1].split(), dtype=np.uint8).reshape(48, 48)
    for c in range(3):
        np.testing.assert_array_equal(train.images[1, :, :, c], expected)


def test_bad_rows_are_reported(csv_path):
    dataset = load(csv_path)
    reasons = {s.path: s.reason for s in dataset.skipped}
    assert len(reasons) == 4
    assert "100 pixel values" in reasons[f"{csv_path}:row 8"]
    assert "non-numeric" in reasons[f"{csv_path}:row 9"]
    assert "emotion '7'" in reasons[f"{csv_path}:row 10"]
    assert "Usage 'Validation'" in reasons[f"{csv_path}:row 11"]


def test_folder_argument(csv_path):
    import os

    dataset = load(os.path.dirname(csv_path))
    assert len(dataset.split("train")) == 3


def test_errors(tmp_path):
    with pytest.raises(errors.DataError) as info:
        load(str(tmp_path / "missing.csv"))
    assert "missing.csv" in str(info.value)
    path = _write(tmp_path / "no_usage.csv", [], header="emotion,pixels")
    with pytest.raises(errors.DataError) as info:
        load(path)
    assert path in str(info.value) and "usage" in str(info.value)
    path = _write(tmp_path / "all_bad.csv", ROWS[6:])
    with pytest.raises(errors.DataError, match="no usable row"):
        load(path)
