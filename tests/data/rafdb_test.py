"""Tests of the RAF-DB reader on tiny fake trees built in tmp_path."""

import os

import cv2
import numpy as np
import pytest

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import rafdb

# (name in the label file, RAF-DB id 1..7)
ENTRIES = [
    ("train_00001.jpg", 5),  # Sadness
    ("train_00002.jpg", 4),  # Happiness
    ("train_00003.jpg", 1),  # Surprise
    ("train_00004.jpg", 7),  # Neutral
    ("train_00005.jpg", 4),
    ("test_0001.jpg", 6),  # Anger
    ("test_0002.jpg", 2),  # Fear
    ("test_0003.jpg", 3),  # Disgust
]


def _face(seed):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(
        rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), (5, 5), 1.5
    )


def make_rafdb(
    root, entries=ENTRIES, folder="aligned", skip_images=(), label_lines=None
):
    """Writes ROOT/EmoLabel/list_patition_label.txt and ROOT/Image/<folder>."""
    os.makedirs(os.path.join(root, "EmoLabel"), exist_ok=True)
    image_dir = os.path.join(root, "Image", folder)
    os.makedirs(image_dir, exist_ok=True)
    lines = label_lines or [f"{name} {label}" for name, label in entries]
    with open(os.path.join(root, rafdb.LABEL_FILE), "w") as f:
        f.write("\n".join(lines) + "\n")
    for i, (name, _) in enumerate(entries):
        if name in skip_images:
            continue
        stem, ext = os.path.splitext(name)
        file_name = f"{stem}_aligned{ext}" if folder == "aligned" else name
        cv2.imwrite(os.path.join(image_dir, file_name), _face(i))
    return str(root)


def load(root, **kwargs):
    return rafdb.load_rafdb(
        configs.DataConfig(data_format="rafdb", data_dir=root, **kwargs)
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_rafdb(tmp_path_factory.mktemp("rafdb"))


def test_counts_and_labels(tree):
    dataset = load(tree)
    assert dataset.name == "rafdb"
    assert len(dataset.split("train")) == 5
    assert len(dataset.split("test")) == 3
    assert dataset.split("train").class_counts() == {
        "surprise": 1,
        "fear": 0,
        "disgust": 0,
        "happiness": 2,
        "sadness": 1,
        "anger": 0,
        "neutral": 1,
    }
    assert dataset.skipped == []
    by_name = {
        os.path.basename(path): labels_lib.CLASS_NAMES[label]
        for split in dataset.splits.values()
        for path, label in zip(split.paths, split.labels)
    }
    assert by_name["train_00001_aligned.jpg"] == "sadness"
    assert by_name["train_00002_aligned.jpg"] == "happiness"
    assert by_name["train_00003_aligned.jpg"] == "surprise"
    assert by_name["test_0001_aligned.jpg"] == "anger"
    assert by_name["test_0002_aligned.jpg"] == "fear"
    assert by_name["test_0003_aligned.jpg"] == "disgust"
    assert "Image/aligned" in dataset.notes[0]


def test_original_folder_and_preference(tmp_path):
    root = make_rafdb(tmp_path / "orig", folder="original")
    dataset = load(root)
    assert len(dataset.split("train")) == 5
    assert (
        dataset.split("train")
        .paths[0]
        .endswith(os.path.join("original", "train_00001.jpg"))
    )
    assert "Image/original" in dataset.notes[0]
    # With both folders, aligned wins and the note says so.
    make_rafdb(tmp_path / "orig", folder="aligned")
    dataset = load(root)
    assert "aligned" in dataset.split("test").paths[0]
    assert "aligned is preferred" in dataset.notes[0]


def test_missing_root_and_label_file(tmp_path):
    with pytest.raises(errors.DataError, match="nowhere"):
        load(str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "empty" / "Image" / "aligned")
    with pytest.raises(errors.DataError) as info:
        load(str(tmp_path / "empty"))
    assert "list_patition_label.txt" in str(info.value)
    assert str(tmp_path / "empty") in str(info.value)


@pytest.mark.parametrize(
    "bad_line, needle",
    [
        ("train_00009.jpg 8", "line 3"),
        ("train_00009.jpg 0", "line 3"),
        ("train_00009.jpg happy", "line 3"),
        ("train_00009.jpg", "line 3"),
        ("val_00009.jpg 2", "line 3"),
    ],
)
def test_bad_label_lines(tmp_path, bad_line, needle):
    lines = ["train_00001.jpg 5", "train_00002.jpg 4", bad_line]
    root = make_rafdb(tmp_path, ENTRIES[:2], label_lines=lines)
    with pytest.raises(errors.DataError) as info:
        load(root)
    assert needle in str(info.value)
    assert rafdb.LABEL_FILE in str(info.value)


def test_missing_images(tmp_path):
    root = make_rafdb(tmp_path, skip_images=("train_00004.jpg",))
    with pytest.raises(errors.DataError) as info:
        load(root)
    message = str(info.value)
    assert "1 of 8" in message and "--max_missing=0.13" in message
    assert "train_00004" in message
    dataset = load(root, max_missing=0.2)
    assert len(dataset.split("train")) == 4
    assert len(dataset.skipped) == 1
    # The line number goes with the path, so one reason covers every skip.
    assert dataset.skipped[0].path.endswith(
        f"train_00004_aligned.jpg ({rafdb.LABEL_FILE} line 4)"
    )
    assert dataset.skipped[0].reason == (
        f"listed in {rafdb.LABEL_FILE} but the image is missing"
    )


def test_corrupt_and_strict(tmp_path):
    root = make_rafdb(tmp_path)
    bad = os.path.join(root, "Image", "aligned", "train_00002_aligned.jpg")
    data = open(bad, "rb").read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated JPEG
    extra = os.path.join(root, "Image", "aligned", "stray.jpg")
    cv2.imwrite(extra, _face(9))
    dataset = load(root)
    assert len(dataset.split("train")) == 4
    reasons = {s.path: s.reason for s in dataset.skipped}
    assert reasons[bad].startswith("corrupt or truncated image: ")
    assert "not listed" in reasons[extra]
    assert dataset.summary()["skipped"]["count"] == 2
    with pytest.raises(errors.DataError) as info:
        load(root, strict=True)
    assert bad in str(info.value) and "--strict" in str(info.value)
