"""Accuracy per scale for several methods on exactly the same images.

Used by stage-1 and stage-2 validation and by `fsr_fer_tf.evaluate`: for each
scale, one deterministic pass over a split (no augmentation, split order)
feeds every method the same batch; each method maps the batch to logits.
"""

import os
import time

import numpy as np
from absl import logging

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf import metrics
from fsr_fer_tf.data import pipeline


def scale_key(scale):
    """The results key of a scale: 1 -> "x1", 4 -> "x4"."""
    return f"x{int(scale)}"


def limit_split(split, limit, seed=0):
    """A fixed stratified subset of `limit` images of `split` (0: all).

    Each class keeps its share of the split (largest remainders, so the
    sizes sum to `limit`), its images drawn by a permutation seeded by
    `seed`; the subset keeps the split's order. A folder split is sorted by
    class, so its first N images would hold one or two classes.

    Args:
        split: a `sources.Split`.
        limit: images to keep; 0 or >= len(split) keeps the whole split.
        seed: seed of the draw within each class.

    Returns:
        A `sources.Split` (the split itself when nothing is dropped).
    """
    if not limit or limit >= len(split):
        return split
    labels = np.asarray(split.labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * limit / len(labels)
    take = np.floor(quota).astype(np.int64)
    # Largest remainders get the images floor() left over (ties: the
    # smaller class first, then the lower class id).
    order = np.lexsort((classes, counts, -(quota - take)))
    take[order[: limit - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    keep = []
    for cls, n in zip(classes, take):
        members = np.flatnonzero(labels == cls)
        keep.append(rng.permutation(members)[:n])
    return split.subset(np.sort(np.concatenate(keep)))


def collect(
    split,
    scales,
    batch_size,
    predict,
    limit=0,
    log_every=0,
    lr_native=False,
    image_size=100,
):
    """Runs `predict` over the split at every scale.

    Args:
        split: a `sources.Split`.
        scales: LR scales to evaluate (1 = the HR face itself).
        batch_size: evaluation batch size.
        predict: fn(batch dict) -> {method name: logits [B, K], or a dict
            of per-image arrays ("logits" [B, K], "psnr" [B], "ssim" [B],
            any of them)} where the batch dict is the pipeline's ("hr",
            "lr", "label", "index", "scale", ...). One call serves every
            method, so they can share work (e.g. the LR feature) and always
            see the same images; a method may skip a scale (no entry).
        limit: evaluate a fixed stratified subset of `limit` images
            (`limit_split`; 0: all).
        log_every: log progress every this many batches (0: never).
        lr_native: also put the native-size LR face in the batch
            ("lr_native"), e.g. to add noise at capture resolution.
        image_size: side of the HR face, the model's input size
            (`input_size(model)`).

    Returns:
        {method: {scale key: {"labels": int [N], "index": int [N], and what
        the method gave: "logits": float [N, K], "psnr", "ssim": [N]}}}.
    """
    split = limit_split(split, limit)
    out = {}
    n_batches = -(-len(split) // batch_size)
    for scale in scales:
        ds = pipeline.make_dataset(
            split,
            batch_size=batch_size,
            training=False,
            scales=(scale,),
            lr_native=lr_native,
            image_size=image_size,
        )
        gathered = {}
        labels, indices = [], []
        start = time.perf_counter()
        for b, batch in enumerate(ds):
            labels.append(batch["label"].numpy())
            indices.append(batch["index"].numpy())
            for name, values in predict(batch).items():
                if not isinstance(values, dict):
                    values = {"logits": values}
                for what, array in values.items():
                    gathered.setdefault(name, {}).setdefault(what, []).append(
                        np.asarray(array, np.float32)
                    )
            if log_every and (b + 1) % log_every == 0:
                logging.info(
                    "  x%d: batch %d/%d (%.1f img/s)",
                    scale,
                    b + 1,
                    n_batches,
                    (b + 1) * batch_size / (time.perf_counter() - start),
                )
        labels = np.concatenate(labels)
        indices = np.concatenate(indices)
        for name, arrays in gathered.items():
            entry = {"labels": labels, "index": indices}
            entry.update({k: np.concatenate(v) for k, v in arrays.items()})
            out.setdefault(name, {})[scale_key(scale)] = entry
    return out


def summarize_entry(entry, class_names=labels_lib.CLASS_NAMES):
    """One method at one scale: `metrics.summarize` of its predictions (if
    it made any) plus its mean "psnr" and "ssim" (if it made images)."""
    out = {}
    if "logits" in entry:
        out = metrics.summarize(
            metrics.confusion_matrix(
                entry["labels"],
                np.argmax(entry["logits"], axis=-1),
                num_classes=len(class_names),
            ),
            class_names,
        )
    for what in ("psnr", "ssim"):
        if what in entry:
            out[what] = float(np.mean(entry[what].astype(np.float64)))
    return out


def summarize(collected, class_names=labels_lib.CLASS_NAMES):
    """{name: {scale key: `summarize_entry`}} from `collect`'s output."""
    return {
        name: {
            key: summarize_entry(r, class_names) for key, r in per_scale.items()
        }
        for name, per_scale in collected.items()
    }


def image_quality(sr, hr, scale):
    """Per-image PSNR (dB) and SSIM of faces against the HR faces: Y
    channel, `scale` border pixels shaved, outputs rounded to uint8 (the SR
    literature's MATLAB conventions, `image_metrics`)."""
    from fsr_fer_tf import image_metrics

    sr, hr = np.asarray(sr), np.asarray(hr)
    return {
        "psnr": image_metrics.psnr(sr, hr, shave=scale),
        "ssim": image_metrics.ssim(sr, hr, shave=scale),
    }


def _batch_scale(batch):
    return int(batch["scale"][0])


def combine_predicts(*predicts):
    """One `collect` predict from several: their methods side by side (a
    method two of them give merges, e.g. bicubic's logits and its PSNR)."""

    def predict(batch):
        out = {}
        for p in predicts:
            for name, values in p(batch).items():
                if not isinstance(values, dict):
                    values = {"logits": values}
                out.setdefault(name, {}).update(values)
        return out

    return predict


def renamed(predict, names):
    """`predict` with its methods renamed ({old: new}; others dropped)."""

    def predict_renamed(batch):
        out = predict(batch)
        return {new: out[old] for old, new in names.items() if old in out}

    return predict_renamed


# Methods of a recognizer bundle (`evaluate --recognizer_dir`).
ROUTE_METHODS = ("route_backbone", "route_fsr", "recognizer")


def recognizer_predict(predict, recognizer):
    """`predict` (the main CovPoolFER's methods, with "bicubic") plus a
    `Recognizer`'s: "route_backbone" (its low-resolution CovPoolFER on the
    bicubic face), "route_fsr" (G on that CovPoolFER's feature, with a
    generator) and "recognizer": at each batch's scale s, the method of
    the route `recognizer.route_for(s)` picks ("hr": "bicubic")."""
    route = renamed(
        make_predict(recognizer.fsr_backbone, recognizer.generator),
        {"bicubic": "route_backbone", "fsr": "route_fsr"},
    )
    combined = combine_predicts(predict, route)
    method_of = {"hr": "bicubic", "fsr": "route_fsr", "lr": "route_backbone"}

    def predict_routed(batch):
        out = combined(batch)
        chosen = method_of[recognizer.route_for(_batch_scale(batch))]
        out["recognizer"] = {"logits": out[chosen]["logits"]}
        return out

    return predict_routed


def bicubic_quality_predict():
    """fn(batch) -> {"bicubic": {"psnr", "ssim"}} of the bicubic-upsampled
    LR face (the pipeline's "lr"), at every scale but 1 (where it is the HR
    face)."""

    def predict(batch):
        scale = _batch_scale(batch)
        if scale == 1:
            return {}
        lr = batch.get("lr_noisy", batch["lr"])
        return {"bicubic": image_quality(lr, batch["hr"], scale)}

    return predict


def isr_predict(isr_model, fer_model=None, name="sr"):
    """fn(batch) -> {name: {"psnr", "ssim"[, "logits"]}} of an image-SR
    model (`models/isr.py`): SR face from the native LR face (the batch
    needs "lr_native": `collect(..., lr_native=True)`), its quality against
    the HR face and, with a CovPoolFER, that model's logits on it. Scales
    the SR model does not serve (and 1) give no entry."""
    import tensorflow as tf

    from fsr_fer_tf.models import isr

    served = set(isr.served_scales(isr_model))
    graphs = {}  # scale -> traced SR (MetaSR's partition runs in a graph)

    def super_resolve(lr, scale):
        if scale not in graphs:
            # Static H, W (the SR models resize with static shapes); any B.
            n = isr.native_size(scale, isr_model.out_size)
            graphs[scale] = tf.function(
                lambda x, s=scale: isr.super_resolve(isr_model, x, s),
                input_signature=[
                    tf.TensorSpec([None, n, n, isr_model.image_channels])
                ],
            )
        return graphs[scale](lr)

    classify = None
    if fer_model is not None:
        classify = tf.function(
            lambda x: fer_model(x, training=False), reduce_retracing=True
        )

    def predict(batch):
        scale = _batch_scale(batch)
        if scale not in served:
            return {}
        sr = super_resolve(batch["lr_native"], scale)
        out = image_quality(sr, batch["hr"], scale)
        if classify is not None:
            out["logits"] = classify(sr)
        return {name: out}

    return predict


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy in float64 (numpy), for validation loss."""
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def load_generator(path, feature_size):
    """Loads a stage-2 generator (generator*.keras, or fsr_fer.keras).

    Args:
        path: the .keras file.
        feature_size: d of the CovPoolFER features it will receive.

    Raises:
        ConfigError: missing or unloadable file, not a generator, or a
            generator built for another d.
    """
    import keras

    from fsr_fer_tf.models import generator as generator_lib

    if not os.path.isfile(path):
        raise errors.ConfigError(
            f"--fsr_model {path} does not exist; train one with `python -m "
            "fsr_fer_tf.train_fsr` (it writes MODEL_DIR/generator.keras)."
        )
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad file.
        raise errors.ConfigError(
            f"--fsr_model {path} is not a loadable .keras model "
            f"({type(e).__name__}); pass MODEL_DIR/generator.keras of a "
            "train_fsr run."
        ) from None
    if not isinstance(model, generator_lib.RRDBGenerator):
        names = [layer.name for layer in getattr(model, "layers", [])]
        inner = [
            layer
            for layer in getattr(model, "layers", [])
            if isinstance(layer, generator_lib.RRDBGenerator)
        ]
        if not inner:
            raise errors.ConfigError(
                f"--fsr_model {path} holds no RRDB generator (layers "
                f"{names[:6]}); pass MODEL_DIR/generator.keras of a "
                "train_fsr run."
            )
        model = inner[0]
    trained = _generator_feature_size(path)
    if trained is not None and trained != feature_size:
        raise errors.ConfigError(
            f"--fsr_model {path} was trained on {trained}x{trained} features "
            f"but --fer_model gives {feature_size}x{feature_size}; pass the "
            "CovPoolFER model the generator was trained with."
        )
    return model


def input_size(model):
    """The side of the square faces a Keras model takes (CovPoolFER: 100)."""
    return int(model.input_shape[1])


def _run_params(model_path):
    """The params.yaml beside a model file (its run directory), or {}."""
    from fsr_fer_tf.train import loop

    path = os.path.join(
        os.path.dirname(os.path.abspath(model_path)), "params.yaml"
    )
    if not os.path.isfile(path):
        return {}
    return loop.read_yaml(path)


def _generator_feature_size(model_path):
    return _run_params(model_path).get("architecture", {}).get("feature_size")


def trained_scales(model_path):
    """The scales a stage-2 run trained on (from its params.yaml), or None."""
    from fsr_fer_tf import configs

    text = _run_params(model_path).get("train", {}).get("scales")
    if not text:
        return None
    return configs.parse_int_list(text, f"'scales' in the run of {model_path}")


def make_predict(fer_model, generator=None, strategy=None):
    """fn(batch) -> {"bicubic"[, "fsr"]: logits} for `collect`.

    "bicubic" classifies the LR face upsampled by bicubic (the paper's
    "Bicubic" row) and "fsr" is C(G(SPD(CNN(I_lr)))). The LR image is
    batch["lr"] (or batch["lr_noisy"] if there). At scale 1 the LR face is
    the HR face, so "bicubic" at x1 is CovPoolFER on the HR face. With a
    `strategy` (models loaded in its scope), each batch is split over its
    replicas (`distribute.spread`).
    """
    from fsr_fer_tf import distribute
    import tensorflow as tf

    from fsr_fer_tf.models import covpool

    features, spd, head = covpool.covpoolfer_parts(fer_model)

    @tf.function(reduce_retracing=True)
    def classify(lr):
        f_lr = spd(features(lr, training=False), training=False)
        out = {"bicubic": head(f_lr, training=False)[1]}
        if generator is not None:
            f_sr = generator(f_lr[..., None], training=False)
            f_sr = tf.cast(f_sr[..., 0], f_lr.dtype)
            out["fsr"] = head(f_sr, training=False)[1]
        return out

    if strategy is not None:
        classify = distribute.spread(strategy, classify)
    return lambda batch: classify(batch.get("lr_noisy", batch["lr"]))


def noisy_predict(predict, sigma, image_size, seed=0):
    """Wraps `predict` to add Gaussian noise to the native LR face first.

    The noise (std `sigma` grey levels) is added at the LR face's own size,
    as a camera would record a small face, then the face is rounded to
    uint8 and brought up to `image_size` with MATLAB bicubic. Deterministic:
    the noise of image i depends only on (seed, sigma, i).
    """
    import tensorflow as tf

    from fsr_fer_tf.data import imresize as imresize_lib

    def one(native, index):
        noise = tf.random.stateless_normal(
            tf.shape(native), seed=tf.stack([seed + int(sigma * 1000), index])
        )
        return native + sigma * noise

    def wrapped(batch):
        native = batch["lr_native"]
        noisy = tf.map_fn(
            lambda a: one(a[0], a[1]),
            (native, tf.cast(batch["index"], tf.int32)),
            fn_output_signature=tf.float32,
        )
        noisy = tf.cast(tf.round(tf.clip_by_value(noisy, 0, 255)), tf.uint8)
        native_noisy = tf.cast(noisy, tf.float32)
        if noisy.shape[1] != image_size:
            noisy = imresize_lib.imresize(
                noisy, output_size=(image_size, image_size)
            )
        # Image-SR methods read "lr_native": they see the noisy face too.
        batch = dict(
            batch,
            lr_noisy=tf.cast(noisy, tf.float32),
            lr_native=native_noisy,
        )
        return predict(batch)

    return wrapped


def fit_svms(
    fer_model,
    generator,
    train_split,
    fsr_scales,
    batch_size,
    limit=0,
    strategy=None,
):
    """The released code's classifiers: linear SVMs on L2-normalised outputs
    of the training split ("bicubic"/"hr": CovPoolFER on HR faces; "fsr":
    FSR-FER on LR faces of every training scale, pooled)."""
    from fsr_fer_tf import svm

    num_classes = int(fer_model.output_shape[-1])
    size = input_size(fer_model)
    hr = collect(
        train_split,
        (1,),
        batch_size,
        make_predict(fer_model, strategy=strategy),
        limit=limit,
        image_size=size,
    )["bicubic"]["x1"]
    svms = {
        "bicubic": svm.LinearSVM().fit(hr["logits"], hr["labels"], num_classes)
    }
    svms["hr"] = svms["bicubic"]
    if generator is not None:
        lr = collect(
            train_split,
            fsr_scales,
            batch_size,
            make_predict(fer_model, generator, strategy),
            limit=limit,
            image_size=size,
        )["fsr"]
        svms["fsr"] = svm.LinearSVM().fit(
            np.concatenate([r["logits"] for r in lr.values()]),
            np.concatenate([r["labels"] for r in lr.values()]),
            num_classes,
        )
    return svms


def apply_svms(collected, svms):
    """Replaces each method's logits by its SVM's decision scores (an image
    SR method's by bicubic's: CovPoolFER on a face image either way)."""
    for method, per_scale in collected.items():
        classifier = svms.get(method, svms["bicubic"])
        for r in per_scale.values():
            if "logits" in r:
                r["logits"] = classifier.decision_function(r["logits"])


def evaluate(
    fer_model,
    generator,
    split,
    scales,
    batch_size,
    noise_sigmas=(),
    limit=0,
    log_every=0,
    seed=0,
    svms=None,
    strategy=None,
    isr_models=(),
    recognizer=None,
):
    """Every method on the same images at every scale (+ optional noise).

    Methods: "bicubic" (with the PSNR/SSIM of its faces), "fsr" (with a
    generator), one per image-SR model of `isr_models` (its SR face ->
    CovPoolFER, with PSNR/SSIM, at the scales it serves) and "hr". With
    `svms` (from `fit_svms`), predictions are the SVMs' instead of the
    argmax of the head's logits. With a `strategy`, every batch of the
    CovPoolFER/FSR methods is split over its replicas (`make_predict`).

    Args:
        isr_models: ((method name, image-SR model), ...).
        recognizer: a `Recognizer` (e.g. `Recognizer.from_dir`): adds
            `ROUTE_METHODS` (`recognizer_predict`).

    Returns:
        (summaries, collected, noise): summaries is {"hr": {"x1": ...},
        "bicubic": {scale key: ...}, "fsr": {...}, ...} of
        `summarize_entry` dicts; collected holds the raw per-image arrays
        per method and scale; noise is {"sigma=<s>": {method: {scale key:
        summary}}}.
    """
    predict = combine_predicts(
        make_predict(fer_model, generator, strategy),
        bicubic_quality_predict(),
        *[isr_predict(m, fer_model, name) for name, m in isr_models],
    )
    if recognizer is not None:
        predict = recognizer_predict(predict, recognizer)
    image_size = input_size(fer_model)
    collected = collect(
        split,
        scales,
        batch_size,
        predict,
        limit=limit,
        log_every=log_every,
        lr_native=bool(isr_models),
        image_size=image_size,
    )
    # "hr": CovPoolFER on the 100x100 face, which bicubic at x1 already is
    # (a copy: apply_svms rewrites each entry's logits in place).
    if 1 in scales:
        collected["hr"] = {"x1": dict(collected["bicubic"]["x1"])}
    else:
        hr_only = make_predict(fer_model, strategy=strategy)
        collected["hr"] = collect(
            split,
            (1,),
            batch_size,
            hr_only,
            limit=limit,
            image_size=image_size,
        )["bicubic"]
    if svms:
        apply_svms(collected, svms)
    summaries = summarize(collected)
    noise = {}
    for sigma in noise_sigmas:
        noisy = collect(
            split,
            scales,
            batch_size,
            noisy_predict(predict, sigma, image_size, seed),
            limit=limit,
            lr_native=True,
            image_size=image_size,
        )
        if svms:
            apply_svms(noisy, svms)
        noise[f"sigma={sigma:g}"] = summarize(noisy)
    return summaries, collected, noise
