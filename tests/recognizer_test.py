"""Tests of fsr_fer_tf.recognizer and fsr_fer_tf.predict.

The models are conftest's tiny run (plumbing, not skill); the faces of the
group picture are real FER-2013 validation faces from ../shared.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf import predict
from fsr_fer_tf import recognizer as recognizer_lib
from fsr_fer_tf.data import group
from fsr_fer_tf.data import imresize as imresize_lib
from fsr_fer_tf.models import fsr_fer

HERE = os.path.dirname(os.path.abspath(__file__))
FER2013_VAL = os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "data", "fer2013", "val")
)
SIZES = (16, 20, 24, 32, 40, 48, 64, 80, 100, 120) * 3


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    """A recognizer directory made of the tiny run's models."""
    root = tmp_path_factory.mktemp("bundle")
    shutil.copy(tiny_run["fer"]["final"], root / "fer.keras")
    shutil.copy(tiny_run["fsr"]["generator"], root / "generator.keras")
    spec = {
        "fer_model": "fer.keras",
        "generator": "generator.keras",
        "fsr_backbone": "fer.keras",
        "threshold": 3,
        "trained_scales": [2, 4, 8],
    }
    (root / recognizer_lib.BUNDLE_FILE).write_text(json.dumps(spec))
    return str(root)


@pytest.fixture(scope="module")
def rec(bundle):
    return recognizer_lib.Recognizer.from_dir(bundle)


@pytest.fixture(scope="module")
def group_picture():
    """A 900x1600 picture of 30 FER-2013 val faces at 16..120 px."""
    paths = sorted(glob.glob(os.path.join(FER2013_VAL, "*", "*.jpg")))
    if not paths:
        pytest.fail(f"no FER-2013 val faces under {FER2013_VAL}")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(paths), len(SIZES), replace=False)
    faces = [cv2.imread(paths[i], cv2.IMREAD_GRAYSCALE) for i in picks]
    names = [os.path.basename(os.path.dirname(paths[i])) for i in picks]
    labels = [labels_lib.canonical_index(n) for n in names]
    image, truth = group.group_image(faces, SIZES, labels)
    return image, truth


def test_to_rgb_uint8():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = recognizer_lib.to_rgb_uint8(grey)
    assert rgb.shape == (3, 4, 3) and np.all(rgb[..., 2] == grey)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    assert recognizer_lib.to_rgb_uint8(rgba)[0, 0].tolist() == [200, 0, 0]
    deep = np.full((2, 2), 65535, np.uint16)
    assert recognizer_lib.to_rgb_uint8(deep).max() == 255
    unit = np.full((2, 2, 3), 0.5, np.float32)
    assert recognizer_lib.to_rgb_uint8(unit)[0, 0, 0] == 128
    with pytest.raises(errors.DataError, match="shape"):
        recognizer_lib.to_rgb_uint8(np.zeros((2, 2, 2)))


def test_square_crop_centres_and_pads():
    image = np.arange(10 * 20 * 3, dtype=np.int64).reshape(10, 20, 3) % 251
    image = image.astype(np.uint8)
    crop, side = recognizer_lib.square_crop(image, (5, 2, 6, 4))
    assert side == 6 and crop.shape == (6, 6, 3)
    np.testing.assert_array_equal(crop, image[1:7, 5:11])
    # At a corner the square leaves the image: edge padding.
    crop, side = recognizer_lib.square_crop(image, (0, 0, 3, 8))
    assert side == 8 and crop.shape == (8, 8, 3)
    np.testing.assert_array_equal(crop[:, 2:5], image[0:8, 0:3])
    np.testing.assert_array_equal(crop[:, 0], image[0:8, 0])


def test_prepare_faces_is_matlab_bicubic_and_grey():
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (37, 37, 3), dtype=np.uint8)
    out = recognizer_lib.prepare_faces([crop], 100)
    expected = np.asarray(imresize_lib.imresize(crop, output_size=(100, 100)))
    np.testing.assert_array_equal(out[0], expected.astype(np.float32))
    grey = recognizer_lib.prepare_faces([crop], 100, colour="grey")[0]
    assert np.array_equal(grey[..., 0], grey[..., 2])
    luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    ref = np.asarray(
        imresize_lib.imresize(luma[..., None], output_size=(100, 100))
    )
    np.testing.assert_array_equal(grey[..., 0], ref[..., 0])


def test_face_size_sets_the_effective_scale(bundle, tiny_run):
    # Faces of a 48-pixel training set: a 48-pixel face is x1, 16 px x3.
    small = recognizer_lib.Recognizer(
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["generator"],
        threshold=3,
        face_size=48,
        detector="none",
    )
    crops = [np.zeros((s, s, 3), np.uint8) for s in (48, 24, 17, 16, 8)]
    faces = small.classify_faces(crops)
    np.testing.assert_allclose(
        [f.scale for f in faces], [1, 2, 48 / 17, 3, 6], rtol=1e-6
    )
    assert [f.route for f in faces] == ["hr", "hr", "hr", "fsr", "fsr"]
    with pytest.raises(errors.ConfigError, match="face_size"):
        recognizer_lib.Recognizer(tiny_run["fer"]["final"], face_size=-1)


def test_lr_route_reads_small_faces_with_the_lr_model(tiny_run, tmp_path):
    # A second CovPoolFER (the HR one with its last bias moved) stands in
    # for a model trained on LR faces too.
    lr_model = keras.models.load_model(tiny_run["fer"]["final"])
    bias = lr_model.weights[-1]
    bias.assign(bias.numpy() + np.arange(bias.shape[0], dtype="float32"))
    path = str(tmp_path / "lr.keras")
    lr_model.save(path)
    rec = recognizer_lib.Recognizer(
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["generator"],
        fsr_backbone=path,
        above="lr",
        threshold=3,
        detector="none",
    )
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (s, s, 3), np.uint8) for s in (50, 25, 12)]
    faces = rec.classify_faces(crops)
    assert [f.route for f in faces] == ["hr", "lr", "lr"]
    prepared = recognizer_lib.prepare_faces(crops, 100)
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    want_lr = keras.ops.softmax(lr_model(prepared)).numpy()
    want_hr = keras.ops.softmax(fer(prepared)).numpy()
    np.testing.assert_allclose(faces[0].probabilities, want_hr[0], atol=1e-5)
    for i in (1, 2):
        np.testing.assert_allclose(
            faces[i].probabilities, want_lr[i], atol=1e-5
        )
        assert np.abs(want_lr[i] - want_hr[i]).max() > 1e-3
    # fsr="always" still takes G; "never" the HR model.
    assert {
        f.route
        for f in rec.__class__(
            fer,
            tiny_run["fsr"]["generator"],
            fsr_backbone=path,
            above="lr",
            fsr="always",
            detector="none",
        ).classify_faces(crops)
    } == {"fsr"}
    with pytest.raises(errors.ConfigError, match="above='lr' needs"):
        recognizer_lib.Recognizer(fer, above="lr")


def test_classify_faces_routes_and_matches_the_models(rec, tiny_run):
    rng = np.random.default_rng(2)
    sides = (100, 50, 34, 25, 12, 10)  # scales 1, 2, 2.94, 4, 8.3, 10
    crops = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in sides]
    faces = rec.classify_faces(crops)
    assert [f.route for f in faces] == ["hr", "hr", "hr", "fsr", "fsr", "fsr"]
    np.testing.assert_allclose(
        [f.scale for f in faces], [100 / s for s in sides], rtol=1e-6
    )
    assert [f.in_trained_range for f in faces] == [True] * 4 + [False] * 2
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    gen = keras.models.load_model(tiny_run["fsr"]["generator"])
    combined = fsr_fer.build_fsr_fer(fer, gen)
    prepared = recognizer_lib.prepare_faces(crops, 100)
    hr = keras.ops.softmax(fer(prepared)).numpy()
    sr = keras.ops.softmax(combined(prepared)).numpy()
    for i, face in enumerate(faces):
        ref = hr[i] if face.route == "hr" else sr[i]
        np.testing.assert_allclose(face.probabilities, ref, atol=1e-5)
        assert face.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        k = int(np.argmax(ref))
        assert face.label == labels_lib.CLASS_NAMES[k]
        assert face.confidence == pytest.approx(float(ref[k]), abs=1e-5)
        assert face.box == (0, 0, sides[i], sides[i])


def test_fsr_modes(bundle):
    crops = [np.zeros((s, s, 3), np.uint8) for s in (100, 20)]
    never = recognizer_lib.Recognizer.from_dir(bundle, fsr="never")
    assert [f.route for f in never.classify_faces(crops)] == ["hr", "hr"]
    always = recognizer_lib.Recognizer.from_dir(bundle, fsr="always")
    assert [f.route for f in always.classify_faces(crops)] == ["fsr", "fsr"]
    low = recognizer_lib.Recognizer.from_dir(bundle, threshold=1.0)
    assert [f.route for f in low.classify_faces(crops)] == ["fsr", "fsr"]


def test_bad_model_directory(tmp_path):
    with pytest.raises(errors.ConfigError, match="recognizer.json"):
        recognizer_lib.Recognizer.from_dir(str(tmp_path))
    with pytest.raises(errors.ConfigError, match="does not exist"):
        recognizer_lib.Recognizer(str(tmp_path / "none.keras"))
    (tmp_path / "junk.keras").write_bytes(b"junk")
    with pytest.raises(errors.ConfigError, match="not a loadable"):
        recognizer_lib.Recognizer(str(tmp_path / "junk.keras"))


def test_group_picture_detection_scale_and_route(rec, group_picture):
    image, truth = group_picture
    found = rec.recognize(image)
    matched = group.match([t["box"] for t in truth], [f.box for f in found])
    recall = len(matched) / len(truth)
    # Haar on FER-2013's tight crops: 0.57 of this picture's faces found,
    # 15 false boxes, when written (README, Predict); small and large
    # faces are both found.
    assert recall >= 0.5, recall
    sizes = {truth[i]["size"] for i in matched}
    assert min(sizes) <= 20 and max(sizes) >= 100, sizes
    for i, j in matched.items():
        face = found[j]
        assert face.scale == pytest.approx(100 / face.face_px)
        assert face.face_px == max(face.box[2:])
        # The box is the true face's up to the detector's framing.
        assert 0.6 <= face.face_px / truth[i]["size"] <= 1.6
        assert face.route == ("fsr" if face.scale >= 3 else "hr")
    false = len(found) - len(matched)
    assert false <= 20, false


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _png(image):
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, group_picture):
    root = tmp_path_factory.mktemp("inputs")
    image, _ = group_picture
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    _write(str(root / "photos" / "group.png"), _png(bgr))
    crop = bgr[:200, :400]
    _write(str(root / "photos" / "sub" / "grey.png"), _png(crop[..., 0]))
    rgba = cv2.cvtColor(crop, cv2.COLOR_BGR2BGRA)
    _write(str(root / "photos" / "sub" / "rgba.png"), _png(rgba))
    deep = crop[..., 0].astype(np.uint16) * 257
    _write(str(root / "photos" / "sub" / "deep.png"), _png(deep))
    _write(
        str(root / "photos" / "blank.png"),
        _png(np.full((64, 64, 3), 90, np.uint8)),
    )
    _write(str(root / "photos" / "broken.jpg"), b"\xff\xd8 not a jpeg")
    _write(str(root / "photos" / "notes.txt"), b"hello")
    _write(str(root / "broken.mp4"), b"not a video")
    os.makedirs(root / "empty")
    video = str(root / "clip.avi")
    writer = cv2.VideoWriter(
        video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (400, 200)
    )
    for _ in range(6):
        writer.write(np.ascontiguousarray(crop))
    writer.release()
    return str(root)


def test_predict_writes_every_input_and_matches_the_api(
    rec, inputs, group_picture, tmp_path
):
    out_dir = str(tmp_path / "out")
    items = [
        os.path.join(inputs, "photos"),
        os.path.join(inputs, "clip.avi"),
        os.path.join(inputs, "broken.mp4"),
        os.path.join(inputs, "empty"),
        os.path.join(inputs, "missing.png"),
    ]
    result = predict.run_predict(rec, items, out_dir, video_stride=2)
    with open(result["csv"], newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == predict.COLUMNS
        rows = list(reader)
    assert predict.COLUMNS[:12] == [
        "input", "frame", "x", "y", "w", "h", "face_px", "scale", "route",
        "label", "confidence", "status",
    ]  # fmt: skip
    by_input = {}
    for row in rows:
        by_input.setdefault(os.path.relpath(row["input"], inputs), []).append(
            row
        )
    status = {k: {r["status"] for r in v} for k, v in by_input.items()}
    assert status["photos/broken.jpg"] == {
        "unreadable: OpenCV could not decode it"
    }
    assert status["photos/notes.txt"] == {"not an image or video"}
    assert status["broken.mp4"] == {"unreadable: the video does not open"}
    assert status["empty"] == {"empty folder"}
    assert status["missing.png"] == {"not found"}
    assert status["photos/blank.png"] == {"no face"}
    for name in ("group.png", "sub/grey.png", "sub/rgba.png", "sub/deep.png"):
        assert status[f"photos/{name}"] == {"ok"}, name
    assert result["failed"] == 5
    # The group picture's rows are the API's faces, in its order.
    image, _ = group_picture
    api = rec.recognize(image)
    group_rows = by_input["photos/group.png"]
    assert len(group_rows) == len(api)
    for row, face in zip(group_rows, api):
        assert tuple(int(row[k]) for k in "xywh") == face.box
        assert row["route"] == face.route and row["label"] == face.label
        probs = [float(row[f"p_{n}"]) for n in labels_lib.CLASS_NAMES]
        np.testing.assert_allclose(probs, face.probabilities, atol=1e-4)
        assert row["frame"] == "0"
    # Grey, RGBA and 16-bit copies of the same pixels give the same faces.
    grey_rows = by_input["photos/sub/grey.png"]
    for other in ("sub/rgba.png", "sub/deep.png"):
        other_rows = by_input[f"photos/{other}"]
        assert [r["x"] for r in other_rows] == [r["x"] for r in grey_rows]
    # The video: frames 0, 2, 4 of 6, and its expression share over time.
    video_rows = by_input["clip.avi"]
    assert {r["frame"] for r in video_rows} <= {"0", "2", "4"}
    with open(os.path.join(out_dir, "clip_expressions.csv")) as f:
        share = list(csv.reader(f))
    assert share[0][:3] == ["frame", "time_s", "faces"]
    assert [r[0] for r in share[1:]] == ["0", "2", "4"]
    for r in share[1:]:
        if int(r[2]):
            assert sum(float(v) for v in r[3:]) == pytest.approx(1, abs=1e-3)
    assert os.path.isfile(os.path.join(out_dir, "clip_expressions.png"))
    annotated = os.path.join(out_dir, "annotated", "photos", "group.png")
    assert cv2.imread(annotated).shape == image.shape


def test_command_line(bundle, inputs, tmp_path, run_commands):
    out_dir = str(tmp_path / "cli")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    base = ["-m", "fsr_fer_tf.predict", f"--model_dir={bundle}"]
    # Four command lines in one interpreter (TensorFlow imported once).
    ok, failed, bad_flag, no_input = run_commands(
        [
            base
            + [os.path.join(inputs, "photos", "sub"), f"--out_dir={out_dir}"],
            base
            + [
                os.path.join(inputs, "photos", "broken.jpg"),
                os.path.join(inputs, "photos", "blank.png"),
                f"--out_dir={out_dir}",
            ],
            base + ["--fsr=sometimes", "x.png"],
            base,
        ],
        env=env,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    last = ok.stdout.strip().splitlines()[-1]
    assert "3 inputs (0 with no face, 0 failed)" in last and "faces/s" in last
    assert "predict: inputs 3/3" in ok.stderr
    # A failed input: exit status 1, the others still written.
    assert failed.returncode == 1, failed.stderr[-2000:]
    with open(os.path.join(out_dir, "faces.csv")) as f:
        assert len(list(csv.DictReader(f))) == 2
    # A flag error: one line, exit status 2.
    assert bad_flag.returncode == 2
    lines = bad_flag.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert no_input.returncode == 2 and "no INPUT given" in no_input.stderr


@pytest.mark.slow
def test_bench_predict_runs(bundle):
    tool = os.path.join(HERE, "..", "tools", "bench_predict.py")
    result = subprocess.run(
        [
            sys.executable,
            tool,
            f"--model_dir={bundle}",
            "--faces=8",
            "--group_faces=6",
            "--canvas=640x360",  # Haar's time grows with the picture
            "--repeats=1",
            f"--faces_dir={FER2013_VAL}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "FSR / direct cost:" in out and "images/s" in out
    assert "640x360 group picture, 6 faces" in out
    assert "of the 6 true ones" in out


def test_choose_threshold_and_route():
    hr = {"x1": 0.9, "x2": 0.8, "x4": 0.4, "x8": 0.2}
    fsr = {"x1": 0.7, "x2": 0.7, "x4": 0.5, "x8": 0.4}
    lr = {"x1": 0.8, "x2": 0.8, "x4": 0.45, "x8": 0.45}
    # fsr from x4 on: (0.9 + 0.8 + 0.5 + 0.4) / 4 = 0.65 beats every other
    # threshold (x1: 0.575, x2: 0.6, x8: 0.625, never: 0.575).
    assert recognizer_lib.choose_threshold(hr, fsr) == (4, pytest.approx(0.65))
    # lr ties hr at x2, so from x2 on (ties: the lower threshold):
    # (0.9 + 0.8 + 0.45 + 0.45) / 4 = 0.65 as well; a tie goes to "fsr".
    assert recognizer_lib.choose_threshold(hr, lr) == (2, pytest.approx(0.65))
    threshold, above, mean = recognizer_lib.choose_route(hr, lr, fsr)
    assert (threshold, above) == (4, "fsr") and mean == pytest.approx(0.65)
    lr["x8"] = 0.5  # now lr wins: 0.6625
    assert recognizer_lib.choose_route(hr, lr, fsr)[:2] == (2, "lr")
    # A route worse everywhere is never taken: one past the largest scale.
    never = {k: 0.0 for k in hr}
    assert recognizer_lib.choose_threshold(hr, never) == (
        9,
        pytest.approx(0.575),
    )
