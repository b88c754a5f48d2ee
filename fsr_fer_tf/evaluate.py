"""Evaluate CovPoolFER and FSR-FER per scale, as the paper's Table 1 / Fig. 4.

    python -m fsr_fer_tf.evaluate --fer_model=RUN/fer/final.keras \
        --fsr_model=RUN/fsr/generator.keras --out_dir=RUN/eval

Methods, on exactly the same images: `hr` (CovPoolFER on the 100x100 face),
`bicubic` (CovPoolFER on the LR face upsampled by bicubic: the paper's
"Bicubic" row), `fsr` (C(G(SPD(CNN(I_lr)))), when --fsr_model is given) and
one per --isr_model file (CovPoolFER on the face an image-SR model makes from
the native LR face: the paper's RCAN / Meta-SR rows), named after the file's
stem. `bicubic` and the image-SR methods also get PSNR and SSIM.
Writes results.json, table1.md, table1.csv, accuracy_vs_scale.png,
confusion_x{s}.png and examples.png in --out_dir.
"""

import contextlib
import dataclasses
import functools
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from fsr_fer_tf import errors
from fsr_fer_tf.data import flags as data_flags

FLAGS = flags.FLAGS


@functools.cache
def define_flags():
    """Defines this entry point's flags (once; called by `run`)."""
    flags.DEFINE_string(
        "fer_model",
        None,
        "Stage-1 CovPoolFER .keras file (train_fer's final.keras).",
    )
    flags.DEFINE_string(
        "fsr_model",
        None,
        "Optional stage-2 generator .keras file (train_fsr's "
        "generator.keras or generator_best.keras); adds the 'fsr' method.",
    )
    flags.DEFINE_list(
        "isr_model",
        [],
        "Optional image-SR .keras files (train_isr's isr.keras), comma-"
        "separated; each adds a method (SR face -> CovPoolFER, with PSNR "
        "and SSIM) named after its file's stem, e.g. metasr.keras -> "
        "'metasr' (train_isr's RUN/isr.keras: after the folder RUN).",
    )
    flags.DEFINE_string(
        "recognizer_dir",
        None,
        "Optional recognizer model directory (its recognizer.json, e.g. "
        "checkpoints/fer2013): adds its low-resolution CovPoolFER "
        "('route_backbone'), G on it ('route_fsr') and 'recognizer', its "
        "answer at each scale (--fer_model's bicubic below its threshold, "
        "its route from it on). --fer_model defaults to its fer_model.",
    )
    flags.DEFINE_string(
        "split",
        "test",
        "Split to evaluate (RAF-DB: the 3068-image test split, as the paper).",
    )
    flags.DEFINE_list(
        "scales",
        ["1", "2", "3", "4", "5", "6", "7", "8"],
        "Down-sampling factors; 1 is the HR upper bound (the paper: 2..8).",
    )
    flags.DEFINE_list(
        "noise_sigmas",
        [],
        "Optional Gaussian noise std (grey levels) added to "
        "the native LR face, as FERAtt's robustness study; e.g. 5,10,20.",
    )
    flags.DEFINE_string(
        "out_dir",
        None,
        "Where the report goes (default: eval/ beside "
        "--fsr_model, else beside --fer_model).",
    )
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
    flags.DEFINE_enum(
        "distribution_strategy",
        "default",
        ["default", "one_device", "mirrored"],
        "Split each evaluation batch over the replicas of this tf.distribute "
        "strategy (fsr_fer_tf.distribute); 'default': one device.",
    )
    flags.DEFINE_integer(
        "limit",
        0,
        "Evaluate a fixed stratified subset of N images of the split, each "
        "class keeping its share (0: all).",
    )
    flags.DEFINE_enum(
        "classifier",
        "argmax",
        ["argmax", "svm"],
        "'argmax' of the head's logits (primary protocol), or 'svm': the "
        "released code's linear SVM on L2-normalised outputs, fitted on the "
        "training split.",
    )
    flags.DEFINE_integer(
        "svm_train_limit",
        0,
        "With --classifier=svm: fit on a fixed stratified subset of N "
        "training images only (0: all).",
    )
    flags.DEFINE_integer(
        "examples", 6, "Faces shown in examples.png (one per class first)."
    )
    data_flags.define_data_flags()


def _parse_numbers(values, what, kind):
    try:
        return tuple(kind(v) for v in values if str(v).strip())
    except ValueError:
        raise errors.ConfigError(
            f"--{what} must be comma-separated numbers, got {','.join(values)}."
        ) from None


def _check_out_dir(out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise errors.ConfigError(
            f"cannot create --out_dir {out_dir}: {e.strerror}; choose a "
            "writable folder."
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise errors.ConfigError(
            f"--out_dir {out_dir} is not writable; choose a writable folder."
        )


def example_indices(labels, count):
    """Positions of up to `count` faces, one per class first (paper Fig. 3)."""
    chosen = []
    for c in sorted(set(labels.tolist())):
        chosen.append(int(next(i for i, y in enumerate(labels) if y == c)))
    rest = [i for i in range(len(labels)) if i not in chosen]
    return (chosen + rest)[:count]


def examples_figure(
    split, collected, scales, indices, image_size=100, isr_models=()
):
    """The same faces at every scale with true and predicted labels: per
    scale the bicubic face (captioned with bicubic's and FSR's predictions),
    then each image-SR model's face where it serves the scale."""
    import numpy as np

    from fsr_fer_tf import labels as labels_lib
    from fsr_fer_tf import plots
    from fsr_fer_tf.data import pipeline
    from fsr_fer_tf.models import isr

    names = labels_lib.CLASS_NAMES
    short = {"bicubic": "bic", "fsr": "fsr", "hr": "hr"}

    def prediction(method, key, i):
        r = collected.get(method, {}).get(key)
        if r is None or "logits" not in r:
            return None
        pos = int(np.nonzero(r["index"] == i)[0][0])
        return int(np.argmax(r["logits"][pos]))

    subset = split.subset(indices)
    columns = []  # per scale and column: (images, captions, colours)
    for scale in scales:
        key = f"x{scale}"
        batch = next(
            iter(
                pipeline.make_dataset(
                    subset,
                    batch_size=len(indices),
                    training=False,
                    scales=(scale,),
                    image_size=image_size,
                    lr_native=bool(isr_models),
                )
            )
        )
        images, captions, colours = [], [], []
        for row, i in enumerate(indices):
            truth = int(split.labels[i])
            parts, ok = [], True
            for method in ("bicubic", "fsr"):
                pred = prediction(method, key, i)
                if pred is not None:
                    parts.append(f"{short[method]}: {names[pred]}")
                    ok = ok and pred == truth
            images.append(batch["lr"].numpy()[row])
            captions.append(f"{key} {names[truth]}\n" + "\n".join(parts))
            colours.append("green" if ok else "red")
        columns.append((images, captions, colours))
        for name, model in isr_models:
            if scale not in isr.served_scales(model):
                continue
            sr = isr.super_resolve(model, batch["lr_native"], scale).numpy()
            preds = [prediction(name, key, i) for i in indices]
            columns.append(
                (
                    list(sr),
                    [
                        f"{key} {name}" + ("" if p is None else f"\n{names[p]}")
                        for p in preds
                    ],
                    [
                        "black"
                        if p is None
                        else ("green" if p == split.labels[i] else "red")
                        for p, i in zip(preds, indices)
                    ],
                )
            )
    # One row per face, one column per (scale, method).
    images, captions, colours = [], [], []
    for row in range(len(indices)):
        for col_images, col_captions, col_colours in columns:
            images.append(col_images[row])
            captions.append(col_captions[row])
            colours.append(col_colours[row])
    return plots.face_grid(
        images,
        captions,
        ncols=len(columns),
        colors=colours,
        title="true label, then predictions (green: all right)",
    )


def write_report(
    out_dir,
    results,
    split,
    collected,
    scales,
    n_examples,
    figures=True,
    image_size=100,
    isr_models=(),
):
    """Writes results.json, the tables and (unless `figures` is off) every
    figure; returns {file name: path}."""
    from fsr_fer_tf import plots
    from fsr_fer_tf import report

    paths = {}

    def write(name, data, binary=False):
        path = os.path.join(out_dir, name)
        with open(path, "wb" if binary else "w") as f:
            f.write(data)
        paths[name] = path

    write("results.json", json.dumps(results, indent=2))
    quality = report.quality_markdown(results)
    write(
        "table1.md",
        report.table1_markdown(results) + (f"\n{quality}" if quality else ""),
    )
    write("table1.csv", report.table1_csv(results))
    if not figures:
        return paths
    write(
        "accuracy_vs_scale.png",
        plots.figure_to_png(report.accuracy_vs_scale_figure(results)),
        True,
    )
    for scale in scales:
        key = f"x{scale}"
        write(
            f"confusion_{key}.png",
            plots.figure_to_png(report.confusion_figure(results, key)),
            True,
        )
    if n_examples > 0:
        indices = example_indices(split.labels, n_examples)
        write(
            "examples.png",
            plots.figure_to_png(
                examples_figure(
                    split, collected, scales, indices, image_size, isr_models
                )
            ),
            True,
        )
    return paths


def isr_method_names(paths):
    """Method names of image-SR model files: each file's stem
    (`metasr.keras` -> "metasr"), or for train_isr's own exports the run
    folder's name (`runs/rcan_x4/isr.keras` -> "rcan_x4",
    `.../isr_best.keras` -> "rcan_x4_best"); distinct and not a built-in
    method."""

    def name(path):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in ("isr", "isr_best"):
            run = os.path.basename(os.path.dirname(os.path.abspath(path)))
            return run + stem[3:]
        return stem

    names = [name(p) for p in paths]
    for name, path in zip(names, paths):
        errors.require(
            name not in ("hr", "bicubic", "fsr"),
            f"--isr_model {path}: its method would be named '{name}', like a "
            "built-in method; rename the file (e.g. metasr.keras).",
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    errors.require(
        not dupes,
        f"--isr_model files must have distinct names (the method names), "
        f"got {', '.join(dupes)} twice; rename one.",
    )
    return names


def _check_arguments(scales, noise_sigmas, batch_size, classifier, out_dir):
    errors.require(scales, "--scales is empty; e.g. --scales=1,2,3,4,5,6,7,8.")
    errors.require(
        all(s >= 1 for s in scales), f"--scales must be >= 1, got {scales}."
    )
    errors.require(
        all(s >= 0 for s in noise_sigmas), "--noise_sigmas must be >= 0."
    )
    errors.require(batch_size > 0, "--batch_size must be > 0.")
    errors.require(
        classifier in ("argmax", "svm"),
        f"--classifier must be argmax or svm, got {classifier}.",
    )
    _check_out_dir(out_dir)


def load_models(fer_model_path, fsr_model_path, isr_model_paths, scales, scope):
    """(CovPoolFER, generator or None, ((name, image-SR model), ...)),
    each checked: 7 classes, a generator for this CovPoolFER's feature size,
    image-SR models whose output is the CovPoolFER's input size."""
    from fsr_fer_tf import eval_lib
    from fsr_fer_tf import labels as labels_lib
    from fsr_fer_tf.models import isr
    from fsr_fer_tf.train import fsr_loop

    with scope():
        fer_model = fsr_loop.load_fer_model(fer_model_path)
    num_classes = int(fer_model.output_shape[-1])
    if num_classes != labels_lib.NUM_CLASSES:
        raise errors.ConfigError(
            f"--fer_model {fer_model_path} predicts {num_classes} classes but "
            f"the data has {labels_lib.NUM_CLASSES} "
            f"({', '.join(labels_lib.CLASS_NAMES)}); pass a model trained by "
            "train_fer on the 7 canonical classes."
        )
    generator = None
    if fsr_model_path:
        with scope():
            generator = eval_lib.load_generator(
                fsr_model_path, fsr_loop.feature_size(fer_model)
            )
        trained = eval_lib.trained_scales(fsr_model_path)
        untrained = [
            s
            for s in scales
            if s > 1 and trained is not None and s not in trained
        ]
        if untrained:
            logging.warning(
                "the generator was trained for scales %s, not %s; evaluating "
                "those anyway.",
                ",".join(map(str, trained)),
                ",".join(map(str, untrained)),
            )
    size = eval_lib.input_size(fer_model)
    isr_models = []
    for name, path in zip(isr_method_names(isr_model_paths), isr_model_paths):
        model = isr.load_isr(path, "--isr_model")
        errors.require(
            model.out_size == size,
            f"--isr_model {path} makes {model.out_size}x{model.out_size} "
            f"faces but --fer_model takes {size}x{size}; pass an SR model "
            f"trained for {size}x{size} faces.",
        )
        served = isr.served_scales(model)
        missing = [s for s in scales if s > 1 and s not in served]
        if missing:
            logging.info(
                "%s serves scales %s: no entry at %s.",
                name,
                ",".join(map(str, served)),
                ",".join(map(str, missing)),
            )
        isr_models.append((name, model))
    return fer_model, generator, tuple(isr_models)


def load_recognizer(model_dir, fer_model):
    """The `Recognizer` of the bundle in `model_dir` (`Recognizer.from_dir`
    checks its files and settings), for `eval_lib.evaluate(recognizer=...)`;
    also checked against `fer_model`'s input size, and for a G when it
    routes through one."""
    from fsr_fer_tf import eval_lib
    from fsr_fer_tf import recognizer as recognizer_lib

    recognizer = recognizer_lib.Recognizer.from_dir(model_dir, detector="none")
    errors.require(
        recognizer.input_size == eval_lib.input_size(fer_model),
        f"{model_dir} takes {recognizer.input_size}-pixel faces but "
        f"--fer_model takes {eval_lib.input_size(fer_model)}; use the "
        "recognizer's own fer_model.",
    )
    errors.require(
        recognizer.above != "fsr" or recognizer.generator is not None,
        f"{model_dir}/recognizer.json routes above its threshold through G "
        "but names no generator.",
    )
    return recognizer


def results_dict(
    dataset,
    split_name,
    n_images,
    summaries,
    noise,
    model_paths,
    data_config,
    scales,
    noise_sigmas,
    batch_size,
    limit,
    classifier,
):
    """The content of results.json."""
    from fsr_fer_tf import labels as labels_lib
    from fsr_fer_tf import paper

    fer_model_path, fsr_model_path, isr_model_paths = model_paths
    results = {
        "dataset": {
            "name": dataset.name,
            "data_dir": dataset.root,
            "split": split_name,
            "n_images": n_images,
            "class_names": list(labels_lib.CLASS_NAMES),
            "skipped": len(dataset.skipped),
        },
        "methods": summaries,
        "config": {
            "fer_model": os.path.abspath(fer_model_path),
            "fsr_model": (
                os.path.abspath(fsr_model_path) if fsr_model_path else None
            ),
            "isr_models": {
                name: os.path.abspath(path)
                for name, path in zip(
                    isr_method_names(isr_model_paths), isr_model_paths
                )
            },
            "scales": list(scales),
            "noise_sigmas": list(noise_sigmas),
            "batch_size": batch_size,
            "limit": limit,
            "classifier": (
                "argmax of the head's logits"
                if classifier == "argmax"
                else "linear SVM on L2-normalised outputs, fitted on the train "
                "split (released code's protocol)"
            ),
            "image_quality": "PSNR (dB) and SSIM on the Y channel, scale "
            "pixels shaved, uint8-rounded faces (MATLAB conventions)",
            "data": dataclasses.asdict(data_config),
        },
        "paper_table1": paper.table1_json(),
    }
    if noise:
        results["noise"] = noise
    return results


def evaluate_run(
    fer_model_path,
    fsr_model_path,
    data_config,
    split_name,
    scales,
    noise_sigmas,
    out_dir,
    batch_size=64,
    limit=0,
    n_examples=6,
    dataset=None,
    figures=True,
    classifier="argmax",
    svm_train_limit=0,
    strategy=None,
    isr_model_paths=(),
    recognizer_dir=None,
):
    """Evaluates and writes the report; returns the results dict.

    Args:
        fer_model_path: stage-1 .keras file.
        fsr_model_path: stage-2 generator .keras file, or None.
        data_config: a `configs.DataConfig`.
        split_name: the split to evaluate.
        scales: tuple of int scales (1 = HR).
        noise_sigmas: tuple of noise stds (may be empty).
        out_dir: the report folder.
        batch_size: evaluation batch size.
        limit: a fixed stratified subset of N images (0: all).
        n_examples: faces in examples.png (0: no figure).
        dataset: an already loaded `sources.Dataset`.
        figures: write the PNG figures (results.json and the tables are
            always written).
        classifier: "argmax" or "svm" (see `svm.py`).
        svm_train_limit: with "svm", fit on a stratified subset of N
            training images.
        strategy: a `tf.distribute.Strategy` whose replicas share each
            batch (`mirrored` or `one_device`; None: one device).
        isr_model_paths: image-SR `.keras` files (train_isr's isr.keras);
            each adds a method named after its file's stem.
        recognizer_dir: a recognizer model directory (recognizer.json):
            adds `eval_lib.ROUTE_METHODS` (`load_recognizer`).
    """
    from fsr_fer_tf import eval_lib
    from fsr_fer_tf.data import loader

    isr_model_paths = tuple(isr_model_paths or ())
    _check_arguments(scales, noise_sigmas, batch_size, classifier, out_dir)

    def scope():  # a strategy's scope is entered once per object
        return strategy.scope() if strategy else contextlib.nullcontext()

    fer_model, generator, isr_models = load_models(
        fer_model_path, fsr_model_path, isr_model_paths, scales, scope
    )
    recognizer = None
    if recognizer_dir:
        errors.require(
            classifier == "argmax",
            "--recognizer_dir takes --classifier=argmax (the recognizer "
            "routes the heads' predictions).",
        )
        recognizer = load_recognizer(recognizer_dir, fer_model)
    if dataset is None:
        dataset = loader.load_dataset(data_config)
    split = dataset.split(split_name)
    n_images = min(limit, len(split)) if limit else len(split)
    logging.info(
        "Evaluating %d images of %s/%s at scales %s",
        n_images,
        dataset.name,
        split_name,
        ",".join(map(str, scales)),
    )
    svms = None
    if classifier == "svm":
        fsr_scales = (
            (eval_lib.trained_scales(fsr_model_path) or (2, 3, 4, 5, 6, 7, 8))
            if fsr_model_path
            else ()
        )
        logging.info("Fitting the SVM classifiers on the train split")
        svms = eval_lib.fit_svms(
            fer_model,
            generator,
            dataset.split("train"),
            fsr_scales,
            batch_size,
            svm_train_limit,
            strategy,
        )
    summaries, collected, noise = eval_lib.evaluate(
        fer_model,
        generator,
        split,
        scales,
        batch_size,
        noise_sigmas=noise_sigmas,
        limit=limit,
        log_every=max(1, 640 // batch_size),
        svms=svms,
        strategy=strategy,
        isr_models=isr_models,
        recognizer=recognizer,
    )
    results = results_dict(
        dataset,
        split_name,
        n_images,
        summaries,
        noise,
        (fer_model_path, fsr_model_path, isr_model_paths),
        data_config,
        scales,
        noise_sigmas,
        batch_size,
        limit,
        classifier,
    )
    if recognizer_dir:
        results["config"]["recognizer"] = {
            "dir": os.path.abspath(recognizer_dir),
            "threshold": recognizer.threshold,
            "above": recognizer.above,
        }
    split = eval_lib.limit_split(split, limit)  # the images evaluated
    paths = write_report(
        out_dir,
        results,
        split,
        collected,
        scales,
        n_examples,
        figures,
        eval_lib.input_size(fer_model),
        isr_models,
    )
    logging.info("Wrote %s", ", ".join(sorted(paths)))
    return results


def print_table(results, file=sys.stdout):
    """Prints our per-scale accuracies with the paper's rows beside them."""
    from fsr_fer_tf import paper
    from fsr_fer_tf import report

    keys = sorted(
        {k for v in results["methods"].values() for k in v},
        key=lambda k: int(k[1:]),
    )
    print("method".ljust(40) + "".join(k.rjust(8) for k in keys), file=file)
    for method, per_scale in results["methods"].items():
        label = report.method_label(method) + " (ours)"
        cells = "".join(
            (
                f"{100 * per_scale[k]['accuracy']:.2f}"
                if k in per_scale
                else "-"
            ).rjust(8)
            for k in keys
        )
        print(label.ljust(40) + cells, file=file)
    print(f"-- paper ({paper.SOURCE}):", file=file)
    for label, values in results["paper_table1"]["rows"].items():
        if label not in paper.OUR_METHOD_ROWS.values():
            continue
        cells = "".join(
            (f"{values[k]:.2f}" if values.get(k) is not None else "-").rjust(8)
            for k in keys
        )
        print(f"{label} (paper)".ljust(40) + cells, file=file)


@errors.cli_main
def main(argv):
    del argv  # cli_main refuses positional arguments
    from fsr_fer_tf import distribute

    strategy = distribute.make_strategy(FLAGS.distribution_strategy)
    fer_model = FLAGS.fer_model
    if not fer_model and FLAGS.recognizer_dir:
        from fsr_fer_tf import recognizer as recognizer_lib

        fer_model = recognizer_lib.read_bundle(FLAGS.recognizer_dir)[
            "fer_model"
        ]
    if not fer_model:
        raise errors.ConfigError(
            "--fer_model is required (train_fer's MODEL_DIR/final.keras)."
        )
    scales = _parse_numbers(FLAGS.scales, "scales", int)
    sigmas = _parse_numbers(FLAGS.noise_sigmas, "noise_sigmas", float)
    anchor = FLAGS.fsr_model or fer_model
    out_dir = FLAGS.out_dir or os.path.join(
        os.path.dirname(os.path.abspath(anchor)), "eval"
    )
    results = evaluate_run(
        fer_model,
        FLAGS.fsr_model,
        data_flags.data_config_from_flags(FLAGS),
        FLAGS.split,
        scales,
        sigmas,
        out_dir,
        batch_size=FLAGS.batch_size,
        limit=FLAGS.limit,
        n_examples=FLAGS.examples,
        classifier=FLAGS.classifier,
        svm_train_limit=FLAGS.svm_train_limit,
        strategy=strategy,
        isr_model_paths=[p for p in FLAGS.isr_model if p.strip()],
        recognizer_dir=FLAGS.recognizer_dir,
    )
    print_table(results)
    print(f"report: {out_dir}")


def run():
    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
