"""Tests of load_dataset's dispatch and of the shared data flags."""

import cv2
import numpy as np
import pytest
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf.data import flags as data_flags
from fsr_fer_tf.data import loader


def _flag_values(*args):
    values = flags.FlagValues()
    data_flags.define_data_flags(values)
    data_flags.define_data_flags(values)  # a second call is a no-op
    values(["prog", *args])
    return values


def test_synthetic():
    dataset = loader.load_dataset(
        configs.DataConfig(synthetic_train=1, synthetic_test=1)
    )
    assert dataset.name == "synthetic"
    assert len(dataset.split("train")) == 7
    assert dataset.split("test").images.shape == (7, 100, 100, 3)


def test_dispatch_to_readers(tmp_path):
    image = np.full((16, 16, 3), 128, np.uint8)
    for name in ("happy", "sad"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "tree" / name / f"{i}.png"), image)
    dataset = loader.load_dataset(
        configs.DataConfig(
            data_format="folder", data_dir=str(tmp_path / "tree")
        )
    )
    assert dataset.name == "folder"
    assert sum(len(s) for s in dataset.splits.values()) == 4
    csv = tmp_path / "fer.csv"
    csv.write_text(
        "emotion,pixels,Usage\n3," + " ".join(["7"] * 2304) + ",Training\n"
    )
    dataset = loader.load_dataset(
        configs.DataConfig(data_format="fer2013_csv", data_dir=str(csv))
    )
    assert dataset.name == "fer2013_csv"
    with pytest.raises(errors.DataError, match="RAF-DB"):
        loader.load_dataset(
            configs.DataConfig(data_format="rafdb", data_dir=str(tmp_path))
        )


def test_config_errors():
    with pytest.raises(errors.ConfigError, match="unknown data_format"):
        loader.load_dataset(configs.DataConfig(data_format="imagenet"))
    with pytest.raises(errors.ConfigError, match="--data_dir"):
        loader.load_dataset(configs.DataConfig(data_format="rafdb"))


def test_flag_defaults_match_data_config():
    values = _flag_values()
    assert data_flags.data_config_from_flags(values) == configs.DataConfig()
    for name in (
        "data_format",
        "data_dir",
        "strict",
        "max_missing",
        "test_fraction",
        "synthetic_train",
        "synthetic_test",
        "synthetic_seed",
    ):
        assert values[name].help, name


def test_flags_to_config():
    values = _flag_values(
        "--data_format=folder",
        "--data_dir=/data/faces",
        "--strict",
        "--test_fraction=0.3",
        "--max_missing=0.01",
    )
    config = data_flags.data_config_from_flags(values, image_size=64)
    assert config == configs.DataConfig(
        data_format="folder",
        data_dir="/data/faces",
        strict=True,
        test_fraction=0.3,
        max_missing=0.01,
        image_size=64,
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--data_format=rafdb"], "--data_dir"),
        (["--max_missing=1.5"], "--max_missing"),
        (["--test_fraction=0"], "--test_fraction"),
        (["--test_fraction=1.5"], "must be in \\(0, 1\\]"),
        (["--synthetic_train=0"], "--synthetic_train"),
        (["--synthetic_seed=-1"], "--synthetic_seed"),
    ],
)
def test_flag_validation(args, needle):
    with pytest.raises(errors.ConfigError, match=needle):
        data_flags.data_config_from_flags(_flag_values(*args))


def test_unknown_format_flag():
    with pytest.raises(flags.IllegalFlagValueError):
        _flag_values("--data_format=imagenet")
