"""Tests of tools/export_models.py (the shipped model directory)."""

import json
import os

import keras
import numpy as np
import pytest

from fsr_fer_tf import errors
from fsr_fer_tf import recognizer as recognizer_lib
from fsr_fer_tf.models import covpool


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("export_models")


def test_export_writes_a_recognizer_directory(tool, tiny_run, tmp_path):
    out = str(tmp_path / "bundle")
    fer_path = tiny_run["fer"]["final"]
    spec = recognizer_lib.write_bundle(
        fer_path,
        tiny_run["fsr"]["generator"],
        out,
        threshold=3.0,
        fsr_backbone=fer_path,  # the same model: no second copy
        trained_scales=(2, 4, 8),
        face_size=48,
    )
    assert sorted(os.listdir(out)) == [
        "fer.keras", "fsr_fer.keras", "generator.keras", "recognizer.json",
    ]  # fmt: skip
    with open(os.path.join(out, "recognizer.json")) as f:
        assert json.load(f) == spec
    assert spec["fsr_backbone"] == "fer.keras" and spec["threshold"] == 3.0
    assert spec["face_size"] == 48
    fer = keras.models.load_model(os.path.join(out, "fer.keras"))
    meta = covpool.model_metadata(fer)
    # The tiny run recorded no preset: the export fills it in; its colour
    # (synthetic RGB faces) is kept.
    assert meta["preset"] == "fer2013" and meta["colour"] == "rgb"
    original = keras.models.load_model(fer_path)
    images = tiny_run["dataset"].split("test").images[:4].astype("float32")
    np.testing.assert_array_equal(fer(images), original(images))
    # fsr_fer.keras is the recognizer's FSR route as one model.
    combined = keras.models.load_model(os.path.join(out, "fsr_fer.keras"))
    rec = recognizer_lib.Recognizer.from_dir(out, fsr="always")
    faces = rec.classify_faces(list(images.astype("uint8")))
    assert rec.face_size == 48 and faces[0].scale == 48 / images.shape[1]
    probs = keras.ops.softmax(combined(images)).numpy()
    np.testing.assert_allclose(
        [f.probabilities for f in faces], probs, atol=1e-5
    )


def test_export_refuses_bad_input(tool, tiny_run, tmp_path):
    with pytest.raises(errors.ConfigError, match="--threshold"):
        recognizer_lib.write_bundle(
            tiny_run["fer"]["final"], tiny_run["fsr"]["generator"],
            str(tmp_path / "a"), threshold=0,
        )  # fmt: skip
    with pytest.raises(errors.ConfigError, match="not a CovPoolFER"):
        recognizer_lib.write_bundle(
            tiny_run["fsr"]["generator"], tiny_run["fsr"]["generator"],
            str(tmp_path / "b"), threshold=2,
        )  # fmt: skip
    assert not os.path.exists(tmp_path / "b")
