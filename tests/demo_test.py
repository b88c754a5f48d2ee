"""Tests of fsr_fer_tf/demo.py: the pipeline and the shipped route, tiny."""

import json
import os

import pytest
import yaml

from fsr_fer_tf import configs
from fsr_fer_tf import demo
from fsr_fer_tf import errors
from fsr_fer_tf import recognizer as recognizer_lib
from fsr_fer_tf.models import covpool
from fsr_fer_tf.train import fsr_loop

# Over tests/conftest.py's tiny sizes (`tiny_sizes`).
EVALUATION = dict(scales=(1, 2, 3, 4, 8), examples=0)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_sizes):
    run_dir = str(tmp_path_factory.mktemp("demo"))
    data_config = configs.DataConfig(**tiny_sizes["data"])
    kwargs = dict(
        EVALUATION,
        fer_overrides=tiny_sizes["fer_train"],
        ms_overrides=dict(tiny_sizes["fer_train"], steps=4),
        fsr_overrides=tiny_sizes["fsr_train"],
        model_overrides=tiny_sizes["model"],
        generator_overrides=tiny_sizes["generator"],
        critic_overrides=tiny_sizes["critic"],
    )
    results = demo.run_demo(run_dir, data_config, **kwargs)
    return {
        "run_dir": run_dir,
        "data": data_config,
        "kwargs": kwargs,
        "results": results,
    }


def _accuracy(results, method):
    return {k: v["accuracy"] for k, v in results["methods"][method].items()}


def test_demo_writes_the_shipped_route(demo_run):
    run_dir = demo_run["run_dir"]
    rec_dir = os.path.join(run_dir, "recognizer")
    assert demo_run["results"]["recognizer_dir"] == rec_dir
    assert sorted(os.listdir(rec_dir)) == [
        "fer.keras", "fer_fsr.keras", "fsr_fer.keras", "generator.keras",
        "recognizer.json", "route_selection.json",
    ]  # fmt: skip
    with open(os.path.join(rec_dir, "recognizer.json")) as f:
        spec = json.load(f)
    with open(os.path.join(rec_dir, "route_selection.json")) as f:
        chosen = json.load(f)
    assert chosen == demo_run["results"]["route_selection"]
    # Chosen on the renderer's own val stream (100 faces per class).
    assert chosen["split"] == "val" and chosen["n_images"] == 700
    acc = chosen["accuracy"]
    assert (spec["threshold"], spec["above"]) == (
        chosen["threshold"], chosen["above"],
    )  # fmt: skip
    threshold, above, mean = recognizer_lib.choose_route(
        acc["bicubic"], acc["route_backbone"], acc["route_fsr"]
    )
    assert (threshold, above) == (chosen["threshold"], chosen["above"])
    assert mean == pytest.approx(chosen["mean_accuracy"])
    # No other threshold or route is better on those faces on average.
    for other in ("route_fsr", "route_backbone"):
        for t in range(1, 10):
            alt = [
                (acc[other] if int(k[1:]) >= t else acc["bicubic"])[k]
                for k in acc["bicubic"]
            ]
            assert sum(alt) / len(alt) <= mean + 1e-9
    assert spec["trained_scales"] == [2, 4, 8]
    assert spec["fsr_backbone"] == "fer_fsr.keras"
    assert spec["face_size"] == spec["input_size"] == 100
    assert spec["colour"] == "rgb"  # the synthetic faces are RGB
    # The multi-scale backbone: stage 1's model fine-tuned on x1..x8.
    ms = fsr_loop.load_fer_model(os.path.join(run_dir, "fer_ms/final.keras"))
    meta = covpool.model_metadata(ms)
    assert meta["train_scales"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert meta["init_from"] == os.path.abspath(
        os.path.join(run_dir, "fer/final.keras")
    )
    assert meta["preset"] == "demo"
    # Its G has the route's cross-entropy term; the paper's G has none.
    params = {}
    for name in ("fsr", "fsr_ms"):
        with open(os.path.join(run_dir, name, "params.yaml")) as f:
            params[name] = yaml.safe_load(f)
    assert params["fsr_ms"]["train"]["ce_weight"] == 50.0
    assert params["fsr"]["train"]["ce_weight"] == 0.0
    assert params["fsr_ms"]["fer_model"] == os.path.abspath(
        os.path.join(run_dir, "fer_ms/final.keras")
    )


def test_demo_evaluates_the_recognizer_by_scale(demo_run):
    results = demo_run["results"]
    assert set(results["methods"]) >= {
        "hr", "bicubic", "fsr", "route_backbone", "route_fsr", "recognizer",
    }  # fmt: skip
    rec = _accuracy(results, "recognizer")
    bicubic = _accuracy(results, "bicubic")
    assert sorted(rec, key=lambda k: int(k[1:])) == [
        "x1", "x2", "x3", "x4", "x8",
    ]  # fmt: skip
    chosen = results["route_selection"]
    route = _accuracy(
        results,
        "route_fsr" if chosen["above"] == "fsr" else "route_backbone",
    )
    for key, value in rec.items():
        # Below the threshold the HR model on the bicubic face, from it on
        # the multi-scale backbone, with G or without.
        want = bicubic if int(key[1:]) < chosen["threshold"] else route
        assert value == want[key], key
    assert set(results["timing"]) == {
        "data_s", "fer_s", "fsr_s", "fer_ms_s", "fsr_ms_s",
        "route_selection_s", "evaluation_s", "total_s",
    }  # fmt: skip


def test_demo_rerun_resumes_without_retraining(demo_run, monkeypatch):
    from fsr_fer_tf.train import fer_loop

    def no_step(self, batch):
        raise AssertionError(f"{self.run.model_dir} trained again")

    monkeypatch.setattr(fer_loop.Stage1Run, "step", no_step)
    monkeypatch.setattr(fsr_loop.Stage2Run, "step", no_step)
    again = demo.run_demo(
        demo_run["run_dir"], demo_run["data"], **demo_run["kwargs"]
    )
    for method in ("bicubic", "fsr", "recognizer"):
        assert _accuracy(again, method) == _accuracy(
            demo_run["results"], method
        )


def test_demo_refuses_a_route_without_a_fine_tune_preset(tmp_path):
    run_dir = tmp_path / "paper"
    with pytest.raises(errors.ConfigError, match="--noroute"):
        demo.run_demo(str(run_dir), configs.DataConfig(), fer_preset="paper")
    assert not run_dir.exists()  # refused before any training


def test_route_is_chosen_on_faces_disjoint_from_test(tiny_sizes):
    import numpy as np

    from fsr_fer_tf.data import sources
    from fsr_fer_tf.data import synthetic

    data = configs.DataConfig(**tiny_sizes["data"])
    dataset = synthetic.load_synthetic(data)
    assert "val" not in dataset.splits
    split = demo.selection_split(dataset, data)
    assert split.name == "val" and len(split) == 7 * demo.SELECTION_PER_CLASS
    assert np.bincount(split.labels).tolist() == [demo.SELECTION_PER_CLASS] * 7
    test = dataset.split("test").images
    assert not any(
        (face == test).all(axis=(1, 2, 3)).any() for face in split.images[:20]
    )
    # A dataset's own val split is used as it is.
    val = sources.Split(
        name="val", labels=split.labels[:7], images=split.images[:7]
    )
    with_val = sources.Dataset("folder", "/d", dict(dataset.splits, val=val))
    folder = configs.DataConfig(data_format="folder", data_dir="/d")
    assert demo.selection_split(with_val, folder) is val
    # Without held-out faces (e.g. RAF-DB has no val): the shipped route,
    # without evaluating anything (no models are needed).
    no_val = sources.Dataset("folder", "/d", dict(dataset.splits))
    assert demo.selection_split(no_val, folder) is None
    assert demo.choose_route(no_val, folder, None, None, None) == {
        "threshold": configs.ROUTE_THRESHOLD,
        "above": "fsr",
        "split": None,
    }
