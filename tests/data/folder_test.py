"""Tests of the class-folder reader on tiny trees built in tmp_path."""

import os

import cv2
import numpy as np
import pytest

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import folder


def _write(path, seed=0, size=20):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 1.5
    )
    if not cv2.imwrite(path, image):
        # cv2 picks the codec from the extension; write upper-case names
        # through a lower-case twin.
        ext = os.path.splitext(path)[1].lower()
        ok, data = cv2.imencode(ext, image)
        assert ok
        with open(path, "wb") as f:
            f.write(data.tobytes())
    return path


def load(root, **kwargs):
    return folder.load_folder(
        configs.DataConfig(data_format="folder", data_dir=str(root), **kwargs)
    )


@pytest.fixture(scope="module")
def split_tree(tmp_path_factory):
    """train/ and test/ with synonyms, junk, a contempt class, bad images."""
    root = tmp_path_factory.mktemp("folder")
    paths = {}
    for i in range(3):
        _write(str(root / "train" / "Happy" / f"h{i}.jpg"), i)
    _write(str(root / "train" / "Happy" / "upper.PNG"), 10)
    _write(str(root / "train" / "angry" / "a0.bmp"), 11)
    _write(str(root / "train" / "Surprised" / "s0.jpeg"), 12)
    os.makedirs(root / "train" / "sad")  # empty class folder
    (root / "train" / "Happy" / "notes.txt").write_text("not an image")
    for i in range(2):
        _write(str(root / "train" / "contempt" / f"c{i}.jpg"), 20 + i)
    # A truncated JPEG and a file that is no image at all.
    good = open(_write(str(root / "test" / "fear" / "f0.jpg"), 30), "rb").read()
    paths["truncated"] = str(root / "test" / "fear" / "f1.jpg")
    with open(paths["truncated"], "wb") as f:
        f.write(good[: len(good) // 2])
    paths["corrupt"] = str(root / "test" / "neutral" / "n1.jpg")
    _write(str(root / "test" / "neutral" / "n0.jpg"), 31)
    with open(paths["corrupt"], "wb") as f:
        f.write(b"this is not a JPEG")
    (root / "README.md").write_text("stray file at the root")
    return str(root), paths


def test_split_tree_counts_and_labels(split_tree):
    root, paths = split_tree
    dataset = load(root)
    assert sorted(dataset.splits) == ["test", "train"]
    train = dataset.split("train")
    assert train.class_counts() == {
        "surprise": 1,
        "fear": 0,
        "disgust": 0,
        "happiness": 4,
        "sadness": 0,
        "anger": 1,
        "neutral": 0,
    }
    label_of = {
        os.path.basename(p): labels_lib.CLASS_NAMES[label]
        for split in dataset.splits.values()
        for p, label in zip(split.paths, split.labels)
    }
    assert label_of["upper.PNG"] == "happiness"
    assert label_of["a0.bmp"] == "anger"
    assert label_of["s0.jpeg"] == "surprise"
    assert label_of["f0.jpg"] == "fear"
    assert label_of["n0.jpg"] == "neutral"
    assert dataset.split("test").class_counts()["fear"] == 1


def test_split_tree_skipped(split_tree):
    root, paths = split_tree
    dataset = load(root)
    reasons = {s.path: s.reason for s in dataset.skipped}
    contempt = os.path.join(root, "train", "contempt")
    assert "not one of the 7" in reasons[contempt]
    assert "2 files" in reasons[contempt]
    assert (
        "not an image file"
        in reasons[os.path.join(root, "train", "Happy", "notes.txt")]
    )
    assert "empty class folder" in reasons[os.path.join(root, "train", "sad")]
    assert "not a split folder" in reasons[os.path.join(root, "README.md")]
    for key in ("truncated", "corrupt"):
        assert reasons[paths[key]].startswith("corrupt or truncated image: ")
    assert len(dataset.skipped) == 6
    summary = dataset.summary()
    assert summary["skipped"]["count"] == 6
    assert summary["splits"]["train"]["images"] == 6


def test_strict(split_tree):
    root, paths = split_tree
    with pytest.raises(errors.DataError) as info:
        load(root, strict=True)
    # The first bad file in order (test/fear before test/neutral).
    assert paths["truncated"] in str(info.value)


def test_derived_split(tmp_path):
    for i in range(10):
        _write(str(tmp_path / "happiness" / f"{i}.png"), i)
    for i in range(4):
        _write(str(tmp_path / "Disgust" / f"{i}.png"), 50 + i)
    _write(str(tmp_path / "neutral" / "only.png"), 99)
    dataset = load(tmp_path, test_fraction=0.25)
    train, test = dataset.split("train"), dataset.split("test")
    # ceil(n * 0.25) held out per class, at least one image kept to train.
    assert test.class_counts()["happiness"] == 3
    assert test.class_counts()["disgust"] == 1
    assert test.class_counts()["neutral"] == 0
    assert len(train) + len(test) == 15
    assert not set(train.paths) & set(test.paths)
    assert any("stratified" in note for note in dataset.notes)
    again = load(tmp_path, test_fraction=0.25)
    assert again.split("test").paths == test.paths
    # test_fraction 1: the whole folder is the test split (to evaluate on);
    # the empty train split is refused by training, with its size named.
    whole = load(tmp_path, test_fraction=1.0)
    assert len(whole.split("test")) == 15
    from fsr_fer_tf.train import loop

    with pytest.raises(errors.DataError, match="'train' split .* is empty"):
        loop.TrainingData(whole, None, batch_size=4)


def test_errors(tmp_path):
    with pytest.raises(errors.DataError) as info:
        load(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)
    _write(str(tmp_path / "tree" / "contempt" / "c.jpg"))
    (tmp_path / "tree" / "happy").mkdir()
    with pytest.raises(errors.DataError) as info:
        load(tmp_path / "tree")
    assert str(tmp_path / "tree") in str(info.value)
    assert "no usable image" in str(info.value)
