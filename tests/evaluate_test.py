"""fsr_fer_tf.evaluate: files, schema, correct accuracies, bad input."""

import json
import logging
import os
import struct

import keras
import numpy as np
import pytest

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import eval_lib
from fsr_fer_tf import evaluate
from fsr_fer_tf import paper
from fsr_fer_tf import report
from fsr_fer_tf.models import covpool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, path
    return struct.unpack(">II", head[16:24])


def test_writes_every_file_with_the_schema(tiny_run):
    out = os.path.join(tiny_run["run_dir"], "eval")
    expected = [
        "results.json",
        "table1.md",
        "table1.csv",
        "accuracy_vs_scale.png",
        "examples.png",
    ]
    expected += [f"confusion_x{s}.png" for s in (1, 2, 4, 8)]
    for name in expected:
        assert os.path.isfile(os.path.join(out, name)), name
    for name in expected:
        if name.endswith(".png"):
            width, height = _png_size(os.path.join(out, name))
            assert width >= 300 and height >= 200, name
            assert os.path.getsize(os.path.join(out, name)) > 10_000, name
    results = json.load(open(os.path.join(out, "results.json")))
    assert set(results) >= {
        "dataset",
        "methods",
        "config",
        "paper_table1",
        "noise",
    }
    assert results["dataset"]["split"] == "test"
    assert results["dataset"]["n_images"] == 21
    assert results["dataset"]["class_names"][0] == "surprise"
    assert set(results["methods"]) == {"hr", "bicubic", "fsr"}
    assert set(results["methods"]["hr"]) == {"x1"}
    assert set(results["methods"]["fsr"]) == {"x1", "x2", "x4", "x8"}
    for method in ("bicubic", "fsr"):
        for r in results["methods"][method].values():
            assert 0.0 <= r["accuracy"] <= 1.0
            assert np.array(r["confusion"]).shape == (7, 7)
            assert np.sum(r["confusion"]) == 21
            assert set(r["per_class"]) == set(results["dataset"]["class_names"])
    assert set(results["noise"]) == {"sigma=10"}
    assert set(results["noise"]["sigma=10"]) == {"bicubic", "fsr"}
    rows = results["paper_table1"]["rows"]
    assert rows["FSR-FER"]["x8"] == paper.TABLE1["FSR-FER"][-1]
    assert "not reproduced here" in results["paper_table1"]["source"]


def test_table1_marks_paper_rows_and_bolds_best(tiny_run):
    md = report.table1_markdown(tiny_run["results"])
    assert "| FSR-FER *(paper)* |" in md
    assert "| FSR-FER (ours) |" in md
    assert "**86.832**" in md  # Meta-SR's x2: the paper's best at x2
    csv = report.table1_csv(tiny_run["results"]).splitlines()
    assert csv[0] == "method,source,x1,x2,x4,x8,mean_x2_x8"
    assert any(line.startswith("FSR-FER,paper,,83.214,") for line in csv)


def test_accuracy_computed_by_hand():
    # 4 images, 2 scales; logits chosen so x2 gets 3/4 right, x4 1/4.
    labels = np.array([0, 1, 2, 3])
    right = np.eye(7)[labels] * 5.0
    wrong = np.eye(7)[(labels + 1) % 7] * 5.0
    collected = {
        "fsr": {
            "x2": {
                "labels": labels,
                "logits": np.concatenate([right[:3], wrong[3:]]),
            },
            "x4": {
                "labels": labels,
                "logits": np.concatenate([right[:1], wrong[1:]]),
            },
        }
    }
    s = eval_lib.summarize(collected)["fsr"]
    assert s["x2"]["accuracy"] == 0.75 and s["x4"]["accuracy"] == 0.25
    assert s["x2"]["per_class"]["happiness"] == 0.0  # label 3 was wrong
    assert s["x2"]["per_class"]["surprise"] == 1.0
    assert s["x4"]["confusion"][1][2] == 1


def test_fsr_logits_are_head_of_generator_of_lr_features(tiny_run):
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    generator = keras.models.load_model(tiny_run["fsr"]["generator"])
    features, spd, head = covpool.covpoolfer_parts(fer)
    predict = eval_lib.make_predict(fer, generator)
    images = tiny_run["dataset"].split("test").images[:5].astype("float32")
    batch = {"hr": images, "lr": images[::-1].copy()}
    out = predict(batch)
    assert set(out) == {"bicubic", "fsr"}
    f_lr = spd(features(batch["lr"]))
    np.testing.assert_allclose(out["bicubic"], head(f_lr)[1], atol=1e-5)
    np.testing.assert_allclose(
        out["fsr"], head(generator(f_lr[..., None])[..., 0])[1], atol=1e-5
    )
    # At scale 1 "bicubic" sees the HR face: the parts path equals the full
    # model, which is why evaluate reports it as the "hr" method.
    np.testing.assert_allclose(
        predict({"lr": images})["bicubic"], fer(images), atol=1e-5
    )


def test_noise_is_deterministic_and_changes_the_input(tiny_run):
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    seen = []
    predict = eval_lib.make_predict(fer)

    def spy(batch):
        seen.append(batch["lr_noisy"].numpy())
        return predict(batch)

    split = tiny_run["dataset"].split("test").subset(range(4))
    for _ in range(2):
        eval_lib.collect(
            split,
            (4,),
            4,
            eval_lib.noisy_predict(spy, 20.0, 100),
            lr_native=True,
        )
    np.testing.assert_array_equal(seen[0], seen[1])
    clean = eval_lib.collect(split, (4,), 4, lambda b: {"x": b["lr"]})
    assert np.abs(seen[0] - clean["x"]["x4"]["logits"]).mean() > 5.0


def test_example_indices_one_per_class_first():
    labels = np.array([3, 3, 0, 1, 0, 2])
    assert evaluate.example_indices(labels, 5) == [2, 3, 5, 0, 1]


def test_model_with_other_classes_is_refused(tiny_run, tmp_path):
    cfg = configs.CovPoolFERConfig(
        conv_filters=(4, 4, 6, 6, 8, 8),
        bimap_dim=8,
        fc_units=(16, 8),
        num_classes=5,
    )
    path = str(tmp_path / "five.keras")
    covpool.build_covpoolfer(cfg).save(path)
    with pytest.raises(
        errors.ConfigError, match="predicts 5 classes but the data has 7"
    ):
        evaluate.evaluate_run(
            path,
            None,
            tiny_run["data_config"],
            "test",
            (1,),
            (),
            str(tmp_path / "out"),
            dataset=tiny_run["dataset"],
        )


def test_empty_or_missing_split_and_unwritable_out_dir(tiny_run, tmp_path):
    fer = tiny_run["fer"]["final"]
    with pytest.raises(errors.DataError, match="has no 'val' split"):
        evaluate.evaluate_run(
            fer,
            None,
            tiny_run["data_config"],
            "val",
            (1,),
            (),
            str(tmp_path / "o"),
            dataset=tiny_run["dataset"],
        )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.ConfigError, match="cannot create --out_dir"):
        evaluate.evaluate_run(
            fer,
            None,
            tiny_run["data_config"],
            "test",
            (1,),
            (),
            str(blocker / "sub"),
            dataset=tiny_run["dataset"],
        )


def test_untrained_scale_warns_and_still_evaluates(tiny_run, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    results = evaluate.evaluate_run(
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["generator"],
        tiny_run["data_config"],
        "test",
        (3,),
        (),
        str(tmp_path / "o"),
        dataset=tiny_run["dataset"],
        limit=7,
        figures=False,
    )
    assert "trained for scales 2,4,8, not 3" in caplog.text
    assert set(results["methods"]["fsr"]) == {"x3"}
    assert results["dataset"]["n_images"] == 7
    # Without scale 1, "hr" comes from its own pass: it must match the
    # model called directly on the 7 HR faces.
    split = eval_lib.limit_split(tiny_run["dataset"].split("test"), 7)
    fer = keras.models.load_model(tiny_run["fer"]["final"])
    pred = np.argmax(fer(split.images.astype("float32")), axis=-1)
    expected = float(np.mean(pred == split.labels))
    assert results["methods"]["hr"]["x1"]["accuracy"] == expected
    assert sorted(os.listdir(tmp_path / "o")) == [
        "results.json",
        "table1.csv",
        "table1.md",
    ]


def test_generator_for_other_features_is_refused(tiny_run, tmp_path):
    with pytest.raises(
        errors.ConfigError,
        match="trained on 8x8 features but --fer_model gives 6x6",
    ):
        eval_lib.load_generator(tiny_run["fsr"]["generator"], 6)
    with pytest.raises(errors.ConfigError, match="holds no RRDB generator"):
        eval_lib.load_generator(tiny_run["fer"]["final"], 8)


def test_svm_classifier_protocol(tiny_run, tmp_path):
    results = evaluate.evaluate_run(
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["generator"],
        tiny_run["data_config"],
        "test",
        (1, 4),
        (),
        str(tmp_path / "svm"),
        dataset=tiny_run["dataset"],
        figures=False,
        classifier="svm",
    )
    assert "SVM" in results["config"]["classifier"]
    # The reported predictions are those of SVMs fitted on the train split:
    # refit them and predict the test logits by hand.
    from fsr_fer_tf import svm as svm_lib

    fer = keras.models.load_model(tiny_run["fer"]["final"])
    generator = keras.models.load_model(tiny_run["fsr"]["generator"])
    train, test = (tiny_run["dataset"].split(n) for n in ("train", "test"))
    svms = eval_lib.fit_svms(fer, generator, train, (2, 4, 8), 64)
    hr_train = eval_lib.collect(train, (1,), 64, eval_lib.make_predict(fer))
    manual = svm_lib.LinearSVM().fit(
        hr_train["bicubic"]["x1"]["logits"],
        hr_train["bicubic"]["x1"]["labels"],
        7,
    )
    np.testing.assert_allclose(manual.weights, svms["bicubic"].weights)
    raw = eval_lib.collect(
        test,
        (1, 4),
        64,
        eval_lib.make_predict(fer, generator),
        image_size=eval_lib.input_size(fer),
    )
    for method, key in (
        ("bicubic", "x1"),
        ("bicubic", "x4"),
        ("fsr", "x4"),
        ("hr", "x1"),
    ):
        source = "bicubic" if method == "hr" else method
        pred = svms[method].predict(raw[source][key]["logits"])
        expected = float(np.mean(pred == raw[source][key]["labels"]))
        assert results["methods"][method][key]["accuracy"] == expected
    # HR is bicubic at x1 with the same SVM: one application, same numbers.
    assert results["methods"]["hr"]["x1"] == results["methods"]["bicubic"]["x1"]


@pytest.fixture(scope="module")
def isr_eval(tiny_run, tmp_path_factory):
    """evaluate_run with a Meta-SR and an x2 RCAN beside bicubic and FSR."""
    from fsr_fer_tf.models import isr

    folder = tmp_path_factory.mktemp("isr_eval")
    keras.utils.set_random_seed(0)
    metasr = isr.MetaSR(channels=4, blocks=1, meta_hidden=4, scales=(2, 4, 8))
    rcan = isr.RCAN(scale=2, channels=4, groups=1, blocks=1, reduction=2)
    paths = []
    for name, model in (("metasr", metasr), ("rcan_x2", rcan)):
        model(
            {
                "lr": np.zeros((1, 50, 50, 3), np.float32),
                "scale": np.array([2], np.int32),
            }
        )
        paths.append(str(folder / f"{name}.keras"))
        model.save(paths[-1])
    out = str(folder / "eval")
    results = evaluate.evaluate_run(
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["generator"],
        tiny_run["data_config"],
        "test",
        (1, 2, 4),
        (10.0,),
        out,
        batch_size=8,
        n_examples=2,
        dataset=tiny_run["dataset"],
        isr_model_paths=paths,
    )
    return {"results": results, "out": out, "paths": paths}


def test_isr_models_are_methods_with_image_quality(isr_eval, tiny_run):
    from fsr_fer_tf import image_metrics
    from fsr_fer_tf.data import pipeline
    from fsr_fer_tf.models import isr

    methods = isr_eval["results"]["methods"]
    assert list(methods) == ["bicubic", "fsr", "metasr", "rcan_x2", "hr"]
    # Served scales only (Meta-SR: 2, 4 of 1, 2, 4; RCAN: 2).
    assert set(methods["metasr"]) == {"x2", "x4"}
    assert set(methods["rcan_x2"]) == {"x2"}
    for method in ("bicubic", "metasr", "rcan_x2"):
        for key, r in methods[method].items():
            if key == "x1":
                assert "psnr" not in r  # bicubic x1 is the HR face
                continue
            assert 0 < r["psnr"] < 100 and 0 < r["ssim"] <= 1
            assert np.sum(r["confusion"]) == 21
    assert "psnr" not in methods["fsr"]["x2"]
    # The numbers are those of the SR faces of these very images.
    split = tiny_run["dataset"].split("test")
    batch = next(
        iter(
            pipeline.make_dataset(
                split,
                batch_size=len(split),
                training=False,
                scales=(4,),
                lr_native=True,
            )
        )
    )
    model = isr.load_isr(isr_eval["paths"][0])
    sr = isr.super_resolve(model, batch["lr_native"], 4)
    hr = batch["hr"].numpy()
    np.testing.assert_allclose(
        methods["metasr"]["x4"]["psnr"],
        image_metrics.psnr(sr.numpy(), hr, shave=4).mean(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        methods["bicubic"]["x4"]["ssim"],
        image_metrics.ssim(batch["lr"].numpy(), hr, shave=4).mean(),
        rtol=1e-6,
    )
    fer = keras.saving.load_model(tiny_run["fer"]["final"])
    pred = np.argmax(fer(sr).numpy(), -1)
    assert methods["metasr"]["x4"]["accuracy"] == pytest.approx(
        np.mean(pred == batch["label"].numpy())
    )
    # Noise rows: the SR models see the noisy native face too.
    noise = isr_eval["results"]["noise"]["sigma=10"]
    assert set(noise["metasr"]) == {"x2", "x4"}
    assert noise["metasr"]["x4"]["psnr"] != methods["metasr"]["x4"]["psnr"]


def test_isr_report_files(isr_eval, tiny_run):
    out = isr_eval["out"]
    md = open(os.path.join(out, "table1.md")).read()
    assert "| metasr + CovPoolFER (ours) |" in md
    assert "| rcan_x2 + CovPoolFER (ours) |" in md
    assert "PSNR (dB) / SSIM" in md
    r = isr_eval["results"]["methods"]["metasr"]["x4"]
    assert f"{r['psnr']:.2f} / {r['ssim']:.4f}" in md
    results = json.load(open(os.path.join(out, "results.json")))
    assert set(results["config"]["isr_models"]) == {"metasr", "rcan_x2"}
    # examples.png: per face, x1 (bicubic), x2 (bicubic, metasr, rcan_x2),
    # x4 (bicubic, metasr): 6 columns, wider than the 4 (x1, x2, x4, x8)
    # of the plain run.
    width, _ = _png_size(os.path.join(out, "examples.png"))
    plain, _ = _png_size(
        os.path.join(tiny_run["run_dir"], "eval", "examples.png")
    )
    assert width > 1.3 * plain


@pytest.mark.parametrize(
    "names, match",
    [(["bicubic.keras"], "built-in"), (["a/m.keras", "b/m.keras"], "twice")],
)
def test_isr_method_names_refused(names, match):
    with pytest.raises(errors.ConfigError, match=match):
        evaluate.isr_method_names(names)
    assert evaluate.isr_method_names(
        ["x/metasr.keras", "runs/rcan_x4/isr.keras", "y/isr_best.keras"]
    ) == ["metasr", "rcan_x4", "y_best"]


def _bundle(folder, tiny_run, **spec):
    """A recognizer.json in `folder` naming the tiny run's models."""
    import shutil

    os.makedirs(folder, exist_ok=True)
    shutil.copy(tiny_run["fer"]["final"], os.path.join(folder, "fer.keras"))
    shutil.copy(tiny_run["fsr"]["generator"], os.path.join(folder, "g.keras"))
    content = {
        "fer_model": "fer.keras",
        "fsr_backbone": "fer.keras",
        "generator": "g.keras",
        "threshold": 3,
        "above": "fsr",
    }
    content.update(spec)
    with open(os.path.join(folder, "recognizer.json"), "w") as f:
        json.dump(content, f)
    return str(folder)


@pytest.mark.parametrize("above", ["fsr", "lr"])
def test_recognizer_dir_rows_route_by_scale(tiny_run, tmp_path, above):
    # The bundle's LR CovPoolFER is the run's own here, so its rows must
    # equal bicubic's and FSR's exactly; the routed row takes bicubic's
    # answers below the threshold (3) and the chosen route's from it on.
    bundle = _bundle(tmp_path / "bundle", tiny_run, above=above)
    results = evaluate.evaluate_run(
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["generator"],
        tiny_run["data_config"],
        "test",
        (1, 2, 4),
        (),
        str(tmp_path / "eval"),
        batch_size=8,
        n_examples=0,
        figures=False,
        dataset=tiny_run["dataset"],
        recognizer_dir=bundle,
    )
    methods = results["methods"]
    assert set(eval_lib.ROUTE_METHODS) <= set(methods)

    def confusion(method, key):
        return np.asarray(methods[method][key]["confusion"])

    route = "route_fsr" if above == "fsr" else "route_backbone"
    for key in ("x1", "x2", "x4"):
        np.testing.assert_array_equal(
            confusion("route_backbone", key), confusion("bicubic", key)
        )
        np.testing.assert_array_equal(
            confusion("route_fsr", key), confusion("fsr", key)
        )
        expected = "bicubic" if key in ("x1", "x2") else route
        np.testing.assert_array_equal(
            confusion("recognizer", key), confusion(expected, key)
        )
    assert results["config"]["recognizer"]["threshold"] == 3.0
    assert results["config"]["recognizer"]["above"] == above
    table = open(os.path.join(tmp_path, "eval", "table1.md")).read()
    assert "Recognizer (by scale) (ours)" in table


def test_recognizer_dir_errors(tiny_run, tmp_path):
    args = (
        tiny_run["fer"]["final"],
        None,
        tiny_run["data_config"],
        "test",
        (1, 4),
        (),
        str(tmp_path / "eval"),
    )
    kwargs = dict(batch_size=8, n_examples=0, dataset=tiny_run["dataset"])
    with pytest.raises(errors.ConfigError, match="recognizer.json does not"):
        evaluate.evaluate_run(*args, recognizer_dir=str(tmp_path), **kwargs)
    no_g = _bundle(tmp_path / "no_g", tiny_run, generator=None)
    with pytest.raises(errors.ConfigError, match="names no generator"):
        evaluate.evaluate_run(*args, recognizer_dir=no_g, **kwargs)
    with pytest.raises(errors.ConfigError, match="classifier=argmax"):
        evaluate.evaluate_run(
            *args, recognizer_dir=no_g, classifier="svm", **kwargs
        )
