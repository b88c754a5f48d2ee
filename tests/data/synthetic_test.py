"""Tests of the procedural expression set and its make_synthetic_faces tool."""

import dataclasses
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import sources
from fsr_fer_tf.data import synthetic

N_CLASSES = labels_lib.NUM_CLASSES
TOOL = os.path.join(
    os.path.dirname(__file__), "..", "..", "tools", "make_synthetic_faces.py"
)


def _tool():
    spec = importlib.util.spec_from_file_location("make_synthetic_faces", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_set():
    return synthetic.generate(6, seed=0, split="train")


@pytest.fixture(scope="module")
def test_set():
    return synthetic.generate(6, seed=0, split="test")


def test_shapes_dtypes_and_balance(train_set):
    images, labels = train_set
    assert images.shape == (6 * N_CLASSES, 100, 100, 3)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int32
    # Interleaved: 0, 1, ..., 6, 0, 1, ...
    np.testing.assert_array_equal(labels, np.arange(42) % N_CLASSES)
    np.testing.assert_array_equal(np.bincount(labels), [6] * N_CLASSES)


def test_other_sizes():
    images, labels = synthetic.generate(2, seed=3, image_size=64)
    assert images.shape == (14, 64, 64, 3)
    np.testing.assert_array_equal(np.bincount(labels), [2] * N_CLASSES)
    empty, no_labels = synthetic.generate(0, seed=3)
    assert empty.shape == (0, 100, 100, 3) and no_labels.shape == (0,)


def test_same_seed_is_byte_identical(train_set):
    again, labels = synthetic.generate(6, seed=0, split="train")
    assert again.tobytes() == train_set[0].tobytes()
    np.testing.assert_array_equal(labels, train_set[1])


def test_different_seed_differs(train_set):
    other, _ = synthetic.generate(6, seed=1, split="train")
    # Every image changes, not just some.
    per_image = np.abs(
        other.astype(np.int16) - train_set[0].astype(np.int16)
    ).mean(axis=(1, 2, 3))
    assert per_image.min() > 10.0


def test_index_alone_equals_index_in_batch(train_set):
    for i in (0, 5, 13, 41):
        image, label = synthetic.render_index(0, "train", i)
        assert image.tobytes() == train_set[0][i].tobytes()
        assert label == i % N_CLASSES
    # A smaller set is a prefix of a larger one.
    small, _ = synthetic.generate(2, seed=0, split="train")
    assert small.tobytes() == train_set[0][:14].tobytes()


def test_render_face_is_pure(train_set):
    params = synthetic.sample_params(synthetic.face_rng(0, "train", 3), 3)
    first = synthetic.render_face(params)
    assert first.tobytes() == synthetic.render_face(params).tobytes()
    assert first.tobytes() == train_set[0][3].tobytes()


def test_train_and_test_are_independent(train_set, test_set):
    train, test = train_set[0], test_set[0]
    assert train.tobytes() != test.tobytes()
    diff = np.abs(
        train[:, None].astype(np.int16) - test[None].astype(np.int16)
    ).mean(axis=(2, 3, 4))
    # No test image is (nearly) a copy of a training image.
    assert diff.min() > 10.0


def test_images_are_not_trivial(train_set):
    images = train_set[0].astype(np.float32)
    assert images.std(axis=(1, 2, 3)).min() > 20.0
    # Colour, not grey: channels differ.
    assert np.abs(images[..., 0] - images[..., 2]).mean() > 5.0


def test_classes_differ_in_the_mean_face():
    # Same identity, pose and scene (one rng state); only the expression
    # changes, so the pictures differ where the face moves.
    faces = {}
    for c in range(N_CLASSES):
        rng = synthetic.face_rng(7, "probe", 0)
        faces[c] = synthetic.render_face(
            synthetic.sample_params(rng, c, intensity=1.0)
        ).astype(np.float32)
    neutral = faces[labels_lib.CLASS_NAMES.index("neutral")]
    for c in range(N_CLASSES - 1):
        changed = np.abs(faces[c] - neutral).max(axis=-1) > 40
        # A visible change, confined to the face (< 15% of the pixels).
        assert 20 < changed.sum() < 1500, labels_lib.CLASS_NAMES[c]


def test_expressions_move_the_intended_regions():
    # Mean over identities of |expression - neutral| of the same person in
    # the same scene: every class changes the face, and where it changes
    # matches its design (brows for anger and sadness, mouth for a smile).
    size, n_people = 64, 12
    change = np.zeros((N_CLASSES, size, size))
    for k in range(n_people):
        faces = [
            synthetic.render_face(
                synthetic.sample_params(
                    synthetic.face_rng(11, "probe", k), c, intensity=1.0
                ),
                size,
            )
            .astype(np.float32)
            .mean(-1)
            for c in range(N_CLASSES)
        ]
        for c in range(N_CLASSES):
            change[c] += np.abs(faces[c] - faces[-1]) / n_people
    # Above row 34 lie the brows, eyes and forehead; below, nose and mouth.
    upper = change[:, :34].sum((1, 2)) / change.sum((1, 2)).clip(1e-6)
    index = labels_lib.CLASS_NAMES.index
    for c in range(N_CLASSES - 1):
        assert change[c].mean() > 0.5, labels_lib.CLASS_NAMES[c]
    assert upper[index("anger")] > 0.6
    assert upper[index("sadness")] > 0.6
    assert upper[index("happiness")] < 0.4
    # Surprise moves more of the face than anger's few brow pixels.
    assert change[index("surprise")].mean() > change[index("anger")].mean()


def test_intensity_controls_the_change():
    rng_args = (9, "probe", 1)
    surprise = labels_lib.CLASS_NAMES.index("surprise")
    pictures = [
        synthetic.render_face(
            synthetic.sample_params(synthetic.face_rng(*rng_args), c, t)
        ).astype(np.float32)
        for c, t in ((surprise, 0.0), (surprise, 0.3), (surprise, 1.0))
    ]
    weak = np.abs(pictures[1] - pictures[0]).mean()
    strong = np.abs(pictures[2] - pictures[0]).mean()
    assert 0 < weak < strong


def test_sample_params_rejects_bad_class():
    with pytest.raises(ValueError):
        synthetic.sample_params(np.random.default_rng(0), 7)


def _config(**kwargs):
    return configs.DataConfig(
        synthetic_train=3, synthetic_test=2, synthetic_seed=4, **kwargs
    )


def test_load_synthetic_contract():
    ds = synthetic.load_synthetic(_config())
    assert isinstance(ds, sources.Dataset)
    assert ds.name == "synthetic" and ds.root is None
    assert set(ds.splits) == {"train", "test"}
    summary = ds.summary()
    assert summary["splits"]["train"]["images"] == 21
    assert summary["splits"]["test"]["images"] == 14
    assert summary["splits"]["train"]["per_class"] == {
        name: 3 for name in labels_lib.CLASS_NAMES
    }
    assert summary["splits"]["test"]["per_class"] == {
        name: 2 for name in labels_lib.CLASS_NAMES
    }
    assert summary["skipped"]["count"] == 0
    train = ds.split("train")
    assert train.paths is None and train.images.shape == (21, 100, 100, 3)
    expected, _ = synthetic.generate(3, seed=4, split="train")
    assert train.images.tobytes() == expected.tobytes()


def test_cache_round_trip_and_recovery(tmp_path):
    config = _config(data_dir=str(tmp_path / "cache"))
    first = synthetic.load_synthetic(config)
    path = synthetic.cache_path(config.data_dir, config)
    assert os.path.isfile(path)
    assert any("cached to" in n for n in first.notes)

    second = synthetic.load_synthetic(config)
    assert any("read from cache" in n for n in second.notes)
    for split in ("train", "test"):
        a, b = first.split(split), second.split(split)
        assert a.images.tobytes() == b.images.tobytes()
        np.testing.assert_array_equal(a.labels, b.labels)

    # The key holds the sizes: another size is another file.
    other = dataclasses.replace(config, synthetic_test=1)
    assert synthetic.cache_path(config.data_dir, other) != path

    with open(path, "wb") as f:
        f.write(b"not an npz file")
    third = synthetic.load_synthetic(config)
    assert any("re-rendered" in n for n in third.notes)
    assert third.split("train").images.tobytes() == (
        first.split("train").images.tobytes()
    )
    # ... and the cache was repaired.
    fourth = synthetic.load_synthetic(config)
    assert any("read from cache" in n for n in fourth.notes)


def test_tool_writes_the_folder_layout(tmp_path, capsys):
    tool = _tool()
    fv = flags.FlagValues()
    tool.define_flags(fv)
    out = tmp_path / "faces"
    sheet = tmp_path / "sheet.png"
    fv(
        [
            "prog",
            f"--out_dir={out}",
            "--train_per_class=2",
            "--test_per_class=1",
            "--seed=5",
            f"--contact_sheet={sheet}",
        ]
    )
    tool.main(["prog"], fv)
    for split, n in (("train", 2), ("test", 1)):
        for name in labels_lib.CLASS_NAMES:
            files = sorted(os.listdir(out / split / name))
            assert len(files) == n, (split, name)
            assert all(f.endswith(".png") for f in files)
    # File NNNNN of a class is image NNNNN of the split, byte for byte.
    image = cv2.imread(str(out / "train" / "fear" / "00008.png"))[..., ::-1]
    expected, label = synthetic.render_index(5, "train", 8)
    assert labels_lib.CLASS_NAMES[label] == "fear"
    np.testing.assert_array_equal(image, expected)

    printed = capsys.readouterr().out
    assert "surprise" in printed and "total" in printed
    total_row = [
        line for line in printed.splitlines() if line.startswith("total")
    ][0]
    assert total_row.split()[1:] == ["14", "7"]
    sheet_image = cv2.imread(str(sheet))
    # 7 class rows plus the x1..x8 row, a name column plus 10 faces.
    assert sheet_image.shape == (8 * 100, 110 + 10 * 100, 3)


def test_tool_refuses_non_empty_out_dir(tmp_path):
    tool = _tool()
    out = tmp_path / "faces"
    out.mkdir()
    (out / "something.txt").write_text("keep me")
    with pytest.raises(errors.UserError, match="--overwrite"):
        tool.make_set(str(out), 1, 1, seed=0)
    assert os.listdir(out) == ["something.txt"]
    # With --overwrite it writes (and keeps unrelated files).
    counts = tool.make_set(str(out), 1, 1, seed=0, overwrite=True)
    assert counts["train"] == {name: 1 for name in labels_lib.CLASS_NAMES}
    assert (out / "something.txt").exists()


def test_tool_cli_error_is_one_line(tmp_path):
    out = tmp_path / "faces"
    out.mkdir()
    (out / "x.txt").write_text("x")
    result = subprocess.run(
        [sys.executable, TOOL, f"--out_dir={out}", "--train_per_class=1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 2
    errors_printed = [
        line for line in result.stderr.splitlines() if line.startswith("error:")
    ]
    assert len(errors_printed) == 1 and "--overwrite" in errors_printed[0]
    assert "Traceback" not in result.stderr
