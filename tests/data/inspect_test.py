"""Tests of `python -m fsr_fer_tf.data.inspect`: JSON out, one-line errors."""

import json
import os

import cv2
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from fsr_fer_tf import errors
from fsr_fer_tf.data import flags as data_flags
from fsr_fer_tf.data import inspect as inspect_lib

FLAGS = flags.FLAGS


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    image = np.full((16, 16, 3), 100, np.uint8)
    for cls, count in (("Happy", 3), ("angry", 2), ("contempt", 1)):
        os.makedirs(root / "train" / cls)
        for i in range(count):
            cv2.imwrite(str(root / "train" / cls / f"{i}.png"), image)
    os.makedirs(root / "test" / "fear")
    cv2.imwrite(str(root / "test" / "fear" / "0.jpg"), image)
    (root / "test" / "fear" / "labels.csv").write_text("x")
    return str(root)


@pytest.fixture(autouse=True)
def _parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS.mark_as_parsed()
    with flagsaver.flagsaver():
        yield


def test_prints_summary_json(tree, capsys):
    FLAGS.data_format = "folder"
    FLAGS.data_dir = tree
    inspect_lib.main(["inspect"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["data_format"] == "folder"
    assert summary["splits"]["train"]["images"] == 5
    assert summary["splits"]["train"]["per_class"]["happiness"] == 3
    assert summary["splits"]["train"]["per_class"]["anger"] == 2
    assert summary["splits"]["test"]["per_class"]["fear"] == 1
    items = {
        os.path.relpath(item["path"], tree): item["reason"]
        for item in summary["skipped"]["items"]
    }
    assert "not one of the 7" in items[os.path.join("train", "contempt")]
    assert "not an image" in items[os.path.join("test", "fear", "labels.csv")]
    assert summary["skipped"]["count"] == 2


def test_user_error_is_one_line(tmp_path, capsys):
    FLAGS.data_format = "rafdb"
    FLAGS.data_dir = str(tmp_path / "absent")
    with pytest.raises(SystemExit) as info:
        errors.cli_main(inspect_lib.main)(["inspect"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert str(tmp_path / "absent") in err[0]


def test_positional_argument_is_one_line(tree, capsys):
    FLAGS.data_format = "folder"
    FLAGS.data_dir = tree
    with pytest.raises(SystemExit) as info:
        errors.cli_main(inspect_lib.main)(["inspect", tree])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing loaded or printed
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "unexpected arguments" in err[0]


def test_bad_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        data_flags.parse_flags(["inspect", "--data_format=imagenet"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, run_commands):
    """`python -m fsr_fer_tf.data.inspect ARGS` as a user's shell runs it:
    without the TF_CPP_MIN_LOG_LEVEL that tests/conftest.py sets, and with
    oneDNN on (TF_ENABLE_ONEDNN_OPTS=1), so that TensorFlow prints its
    start-up notices here as it does on CPUs with AVX512-VNNI or AMX. Both
    command lines below run in one interpreter (TensorFlow imported once;
    stderr still starts with what the import printed): {name:
    (CompletedProcess, data folder)}."""
    unreadable = tmp_path_factory.mktemp("unreadable")
    for cls in ("happy", "sad"):
        os.makedirs(unreadable / cls)
        for i in range(2):
            (unreadable / cls / f"{i}.png").write_bytes(b"not a png" * i)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    inspect = ["-m", "fsr_fer_tf.data.inspect", "--data_format=folder"]
    no_dir, only_unreadable = run_commands(
        [inspect, inspect + [f"--data_dir={unreadable}"]], env=env
    )
    return {"no_dir": no_dir, "only_unreadable": (only_unreadable, unreadable)}


def test_command_line_exit_status(cli_runs):
    result = cli_runs["no_dir"]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "--data_dir" in lines[0]


def test_only_unreadable_files_prints_skipped_list(cli_runs):
    result, folder = cli_runs["only_unreadable"]
    assert result.returncode == 2, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"]["count"] == 4
    paths = sorted(
        os.path.relpath(item["path"], folder)
        for item in summary["skipped"]["items"]
    )
    assert paths == [
        os.path.join(c, f"{i}.png") for c in ("happy", "sad") for i in (0, 1)
    ]
    assert all(item["reason"] for item in summary["skipped"]["items"])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "no usable image" in lines[0] and "JSON above" in lines[0]
    assert "fsr-fer-inspect" not in lines[0]  # not the command just run
