"""Expressions of the faces in photos: detection, routing, FSR-FER.

    import fsr_fer_tf
    recognizer = fsr_fer_tf.Recognizer.from_dir()  # checkpoints/fer2013
    for face in recognizer.recognize(rgb_image):
        print(face.box, face.scale, face.route, face.label, face.confidence)

Each face is prepared as the training protocol prepares one: a square crop
around its box, converted to grey when the model learnt from grey faces
(its metadata says so), and resized to the model's input (100x100) with
the project's MATLAB bicubic. A face of side w pixels then has effective
scale s = face_size / w: the factor by which the training protocol would
have shrunk a training face to get it. `face_size` is the side of the
training faces before their resize to the model input: 100 for RAF-DB's
aligned faces (s = 100 / w), 48 for FER-2013's (a 48-pixel face is then
x1, the HR face the model learnt from, and a 12-pixel face x4). Faces
with s at least the recognizer's threshold (chosen on validation faces,
see MODEL_CARD.md) go through the
feature-SR route, C(G(SPD(CNN(face)))), the others through CovPoolFER
alone; beyond the scales G was trained on they still go through G and are
marked `in_trained_range=False`.

A model directory (`from_dir`) holds `recognizer.json`, which names its
files and its threshold:

    {"fer_model": "fer.keras", "generator": "generator.keras",
     "fsr_backbone": "fer.keras", "threshold": 4, "trained_scales": [2..8],
     "face_size": 48}

`fsr_backbone` is the CovPoolFER whose features G super-resolves (the HR
model itself in the paper; another one, e.g. trained on LR faces too, if
that served the low resolutions better). `above` names the route of the
faces at or above the threshold: "fsr" (through G, the paper's route) or
"lr" (`fsr_backbone` alone, without G: a CovPoolFER trained on LR faces
too, when G did not beat it on validation faces).
"""

import dataclasses
import json
import os

import numpy as np

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib

ROUTES = ("hr", "fsr", "lr")
FSR_MODES = ("auto", "always", "never")
BUNDLE_FILE = "recognizer.json"
DEFAULT_MODEL_DIR = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "checkpoints", "fer2013")
)


@dataclasses.dataclass
class Face:
    """One recognised face.

    Attributes:
        box: (x, y, w, h) in the input's own pixels.
        face_px: side of the square crop the face was read from.
        scale: effective scale s = face_size / face_px (the recognizer's
            `face_size`: its training faces' side, 100 by default).
        route: "hr" (CovPoolFER on the face), "fsr" (through G) or "lr"
            (the CovPoolFER trained on LR faces too, without G).
        probabilities: float [7], softmax over `labels.CLASS_NAMES`.
        label: the most probable class name.
        confidence: its probability.
        in_trained_range: False when the FSR route serves a scale beyond
            the ones G was trained on.
    """

    box: tuple
    face_px: int
    scale: float
    route: str
    probabilities: np.ndarray
    label: str
    confidence: float
    in_trained_range: bool = True


def to_rgb_uint8(image):
    """An image as uint8 RGB [H, W, 3]: grey [H, W] or [H, W, 1] repeated,
    RGBA without alpha, 16-bit scaled to 8, floats in 0..1 or 0..255.

    Raises:
        errors.DataError: not an image array.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise errors.DataError(
            f"an image must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got "
            f"shape {array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        top = 1.0 if finite.size and finite.max() <= 1.0 else 255.0
        scaled = np.nan_to_num(array, nan=0.0) * (255.0 / top)
        return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return np.clip(array, 0, 255).astype(np.uint8)
    raise errors.DataError(f"unsupported image dtype {array.dtype}.")


def square_crop(image, box):
    """The square of side max(w, h) centred on `box`, edge-padded where it
    leaves the image; returns (crop [side, side, 3], side)."""
    x, y, w, h = box
    side = int(max(w, h))
    x0 = int(round(x + w / 2.0 - side / 2.0))
    y0 = int(round(y + h / 2.0 - side / 2.0))
    height, width = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0, y0 = x0 + pad, y0 + pad
    return image[y0 : y0 + side, x0 : x0 + side], side


def prepare_faces(crops, size, colour="rgb"):
    """Square uint8 RGB crops -> float32 [N, size, size, 3], 0..255.

    Each crop is converted to grey (ITU-R 601 luma, repeated over RGB) when
    `colour` is "grey", then resized with MATLAB bicubic, as the training
    protocol resizes FER-2013 and RAF-DB faces.
    """
    import cv2

    from fsr_fer_tf.data import imresize as imresize_lib

    out = np.empty((len(crops), size, size, 3), np.float32)
    for i, crop in enumerate(crops):
        crop = to_rgb_uint8(crop)
        if colour == "grey":
            grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
            crop = np.repeat(grey[..., None], 3, axis=-1)
        if crop.shape[:2] != (size, size):
            crop = np.asarray(
                imresize_lib.imresize(crop, output_size=(size, size))
            )
        out[i] = crop
    return out


def _load(path, what):
    import keras

    import fsr_fer_tf  # noqa: F401  (registers the custom layers)

    if not os.path.isfile(path):
        raise errors.ConfigError(
            f"{what} {path} does not exist; train one (README, Commands) or "
            "pass the model directory that holds it."
        )
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad file.
        raise errors.ConfigError(
            f"{what} {path} is not a loadable .keras model "
            f"({type(e).__name__})."
        ) from None


def read_bundle(model_dir):
    """The settings of a model directory's `recognizer.json`.

    Returns:
        {"fer_model", "generator", "fsr_backbone": paths in `model_dir` or
        None, and "threshold", "trained_scales", "face_size", "above" where
        the file gives them}: `Recognizer`'s constructor arguments.

    Raises:
        errors.ConfigError: no recognizer.json in `model_dir`.
    """
    path = os.path.join(model_dir, BUNDLE_FILE)
    if not os.path.isfile(path):
        raise errors.ConfigError(
            f"{path} does not exist: {model_dir} is not a recognizer "
            "model directory (checkpoints/fer2013 of the repository, or "
            "one written by tools/export_models.py); or pass "
            "--fer_model and --generator."
        )
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)

    def file(key):
        name = spec.get(key)
        return None if not name else os.path.join(model_dir, name)

    kwargs = {
        "fer_model": file("fer_model"),
        "generator": file("generator"),
        "fsr_backbone": file("fsr_backbone"),
    }
    for key in ("threshold", "trained_scales", "face_size", "above"):
        if key in spec:
            kwargs[key] = spec[key]
    return kwargs


def by_threshold(hr_values, route_values, threshold):
    """{scale key: the route's value at scales >= threshold, else the HR
    model's}: what a recognizer with that threshold gives, per scale."""
    return {
        k: (route_values if int(k[1:]) >= threshold else hr_values)[k]
        for k in route_values
    }


def choose_threshold(hr_accuracy, route_accuracy):
    """The threshold from which a route serves the faces, best on average.

    Args:
        hr_accuracy: {scale key ("x1", ...): accuracy} of the HR model on
            the bicubic faces.
        route_accuracy: the same for the low-resolution route (same keys,
            same faces).

    Returns:
        (threshold, mean accuracy over the scales): the route serves the
        scales >= threshold (`by_threshold`); one past the largest scale
        means never. Ties go to the lower threshold (more faces through
        the route).
    """
    scales = sorted(int(k[1:]) for k in route_accuracy)
    best = None
    for threshold in scales + [scales[-1] + 1]:
        served = by_threshold(hr_accuracy, route_accuracy, threshold)
        score = float(np.mean(list(served.values())))
        if best is None or score > best[1] + 1e-12:
            best = (threshold, score)
    return best


def choose_route(hr_accuracy, lr_accuracy, fsr_accuracy):
    """The low-resolution route and its threshold, best on average.

    Args:
        hr_accuracy, lr_accuracy, fsr_accuracy: {scale key: accuracy} of
            the HR model on bicubic faces, the low-resolution CovPoolFER
            alone, and G on its features (same faces).

    Returns:
        (threshold, above, mean accuracy): `above` is "fsr" or "lr" (ties:
        "fsr", the paper's route), each with its `choose_threshold`.
    """
    fsr_threshold, fsr_score = choose_threshold(hr_accuracy, fsr_accuracy)
    lr_threshold, lr_score = choose_threshold(hr_accuracy, lr_accuracy)
    if lr_score > fsr_score + 1e-12:
        return lr_threshold, "lr", lr_score
    return fsr_threshold, "fsr", fsr_score


def _with_metadata(model, preset, colour):
    """`model` with preset and colour in its metadata where it had none."""
    meta = dict(getattr(model, "metadata", None) or {})
    if meta.get("preset") is None:
        meta["preset"] = preset
    meta.setdefault("colour", colour)
    model.metadata = meta
    return model


def write_bundle(
    fer_model,
    generator,
    out_dir,
    threshold,
    fsr_backbone=None,
    trained_scales=(2, 3, 4, 5, 6, 7, 8),
    preset="fer2013",
    colour="grey",
    face_size=None,
    above="fsr",
):
    """Writes a recognizer model directory (what `from_dir` reads).

    Copies into `out_dir`: fer.keras (the HR route's CovPoolFER),
    fer_fsr.keras (the CovPoolFER whose features G super-resolves, when it
    is not `fer_model`), generator.keras, fsr_fer.keras (the FSR route as
    one model, raw 100x100 pixels in, logits out) and recognizer.json.
    Stage-1 models get `preset` and `colour` in their metadata where they
    have none (exports older than those fields); nothing else changes.

    Args:
        fer_model, generator, fsr_backbone: .keras paths (`fsr_backbone`
            None: G works on `fer_model`'s features).
        threshold: faces of effective scale >= this take the route `above`.
        trained_scales: the scales G was trained on.
        face_size: side of the training faces before their resize to the
            model input (None: the input size).

    Returns:
        recognizer.json's dict.

    Raises:
        errors.ConfigError: a bad threshold/face_size, or a file that is
            not the model it should be.
    """
    from fsr_fer_tf import eval_lib
    from fsr_fer_tf.models import fsr_fer
    from fsr_fer_tf.train import fsr_loop

    errors.require(threshold and threshold > 0, "--threshold must be > 0.")
    errors.require(
        face_size is None or face_size > 0, "--face_size must be > 0."
    )
    errors.require(
        above == "fsr" or fsr_backbone,
        "--above=lr needs --fsr_backbone (a CovPoolFER trained on LR faces "
        "too).",
    )
    fer = _with_metadata(fsr_loop.load_fer_model(fer_model), preset, colour)
    backbone = fer
    if fsr_backbone and os.path.abspath(fsr_backbone) != os.path.abspath(
        fer_model
    ):
        backbone = _with_metadata(
            fsr_loop.load_fer_model(fsr_backbone), preset, colour
        )
    g = eval_lib.load_generator(generator, fsr_loop.feature_size(backbone))
    os.makedirs(out_dir, exist_ok=True)
    spec = {
        "fer_model": "fer.keras",
        "generator": "generator.keras",
        "fsr_backbone": "fer.keras" if backbone is fer else "fer_fsr.keras",
        "fsr_fer": "fsr_fer.keras",
        "threshold": float(threshold),
        "above": above,
        "trained_scales": [int(s) for s in trained_scales],
        "input_size": int(fer.input_shape[1]),
        "face_size": int(face_size or fer.input_shape[1]),
        "colour": fer.metadata["colour"],
        "class_names": list(labels_lib.CLASS_NAMES),
    }
    fer.save(os.path.join(out_dir, "fer.keras"))
    if backbone is not fer:
        backbone.save(os.path.join(out_dir, "fer_fsr.keras"))
    g.save(os.path.join(out_dir, "generator.keras"))
    combined = fsr_fer.build_fsr_fer(backbone, g)
    combined.save(os.path.join(out_dir, "fsr_fer.keras"))
    with open(os.path.join(out_dir, BUNDLE_FILE), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    return spec


class Recognizer:
    """Faces in images -> expressions, through the HR or the FSR route.

    Args:
        fer_model: the stage-1 CovPoolFER (a model or a .keras path) of the
            HR route.
        generator: the stage-2 generator G (model or path), or None (every
            face takes the HR route).
        fsr_backbone: the CovPoolFER whose SPD features G takes and whose
            head classifies G's output; default `fer_model`.
        threshold: faces with effective scale >= threshold take the route
            `above` (with fsr="auto").
        above: "fsr" (G on `fsr_backbone`'s feature) or "lr"
            (`fsr_backbone` alone, a model trained on LR faces too).
        fsr: "auto" (by threshold), "always" or "never".
        trained_scales: the scales G was trained on (faces beyond their
            maximum are marked `in_trained_range=False`).
        face_size: side in pixels of the training faces before their
            resize to the model input (FER-2013: 48); the effective scale
            of a face of side w is face_size / w. Default: the model's
            input size (100).
        detector: "haar", "mtcnn" or "none" (`detect.make_detector`).
        min_face: smallest face side (pixels) the detector reports.
        max_side: the detector scans larger images on a downscaled copy
            (faces are still cropped from the original).
        batch_size: faces per model call.
    """

    def __init__(
        self,
        fer_model,
        generator=None,
        fsr_backbone=None,
        threshold=2.0,
        above="fsr",
        fsr="auto",
        trained_scales=(2, 3, 4, 5, 6, 7, 8),
        face_size=None,
        detector="haar",
        min_face=12,
        max_side=1600,
        batch_size=64,
    ):
        from fsr_fer_tf import detect
        from fsr_fer_tf.models import covpool

        errors.require(
            fsr in FSR_MODES,
            f"fsr must be one of {', '.join(FSR_MODES)}, got {fsr!r}.",
        )
        errors.require(
            batch_size >= 1, f"batch_size must be >= 1, got {batch_size}."
        )
        errors.require(
            threshold > 0, f"threshold must be > 0, got {threshold}."
        )
        errors.require(
            above in ("fsr", "lr"),
            f"above must be 'fsr' or 'lr', got {above!r}.",
        )
        errors.require(
            above != "lr" or fsr_backbone is not None,
            "above='lr' needs fsr_backbone (a CovPoolFER trained on LR "
            "faces too).",
        )
        if isinstance(fer_model, str):
            fer_model = _load(fer_model, "--fer_model")
        if isinstance(generator, str):
            generator = _load(generator, "--generator")
        if isinstance(fsr_backbone, str):
            fsr_backbone = _load(fsr_backbone, "--fsr_backbone")
        fsr_backbone = fer_model if fsr_backbone is None else fsr_backbone
        for model, what in ((fer_model, "fer_model"), (fsr_backbone, "fsr")):
            try:
                covpool.covpoolfer_parts(model)
            except errors.UserError:
                raise errors.ConfigError(
                    f"{what} is not a CovPoolFER model (train_fer's "
                    "final.keras)."
                ) from None
        errors.require(
            generator is not None or fsr != "always",
            "fsr='always' needs a generator.",
        )
        self.fer_model = fer_model
        self.generator = generator
        self.fsr_backbone = fsr_backbone
        self.threshold = float(threshold)
        self.above = above
        self.fsr = fsr
        self.trained_scales = tuple(int(s) for s in trained_scales)
        self.batch_size = int(batch_size)
        self.input_size = int(fer_model.input_shape[1])
        self.face_size = float(face_size or self.input_size)
        errors.require(
            self.face_size > 0, f"face_size must be > 0, got {face_size}."
        )
        metadata = covpool.model_metadata(fer_model)
        self.colour = metadata.get("colour", "rgb")
        self.fsr_colour = covpool.model_metadata(fsr_backbone).get(
            "colour", self.colour
        )
        self.detector = detect.make_detector(detector, min_face, max_side)
        self._build_functions()

    @classmethod
    def from_dir(cls, model_dir=None, **overrides):
        """A recognizer from a model directory's `recognizer.json`.

        Args:
            model_dir: the directory (default: the shipped
                checkpoints/fer2013).
            **overrides: constructor arguments that replace the file's
                (threshold, fsr, detector, min_face, ...).
        """
        model_dir = model_dir or DEFAULT_MODEL_DIR
        kwargs = read_bundle(model_dir)
        kwargs.update(overrides)
        errors.require(
            kwargs["fer_model"] is not None,
            f"{os.path.join(model_dir, BUNDLE_FILE)} names no fer_model.",
        )
        return cls(**kwargs)

    def _build_functions(self):
        import tensorflow as tf

        from fsr_fer_tf.models import covpool

        fer, generator = self.fer_model, self.generator

        @tf.function(reduce_retracing=True)
        def hr_probabilities(images):
            return tf.nn.softmax(
                tf.cast(fer(images, training=False), "float32")
            )

        self._hr = hr_probabilities
        self._lr = None
        if self.fsr_backbone is not fer:
            lr_model = self.fsr_backbone

            @tf.function(reduce_retracing=True)
            def lr_probabilities(images):
                logits = lr_model(images, training=False)
                return tf.nn.softmax(tf.cast(logits, "float32"))

            self._lr = lr_probabilities
        self._fsr = None
        if generator is not None:
            features, spd, head = covpool.covpoolfer_parts(self.fsr_backbone)

            @tf.function(reduce_retracing=True)
            def fsr_probabilities(images):
                f_lr = spd(features(images, training=False), training=False)
                f_sr = generator(f_lr[..., None], training=False)[..., 0]
                _, logits = head(tf.cast(f_sr, f_lr.dtype), training=False)
                return tf.nn.softmax(tf.cast(logits, "float32"))

            self._fsr = fsr_probabilities

    def route_for(self, scale):
        """ "hr", "fsr" or "lr" for a face of effective scale `scale`:
        fsr="never" is always "hr", "always" always "fsr"; "auto" takes
        `above` from the threshold on (if that route exists)."""
        if self.fsr == "never":
            return "hr"
        if self.fsr == "always":
            return "fsr" if self._fsr is not None else "hr"
        if scale < self.threshold:
            return "hr"
        available = {"fsr": self._fsr, "lr": self._lr}[self.above]
        return self.above if available is not None else "hr"

    def _probabilities(self, crops, routes):
        """[N, 7] probabilities of square crops, each by its route."""
        out = np.zeros((len(crops), labels_lib.NUM_CLASSES), np.float32)
        for route, fn, colour in (
            ("hr", self._hr, self.colour),
            ("fsr", self._fsr, self.fsr_colour),
            ("lr", self._lr, self.fsr_colour),
        ):
            idx = [i for i, r in enumerate(routes) if r == route]
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                faces = prepare_faces(
                    [crops[i] for i in chunk], self.input_size, colour
                )
                out[chunk] = np.asarray(fn(faces))
        return out

    def _faces(self, crops, boxes, sides):
        scales = [self.face_size / float(side) for side in sides]
        routes = [self.route_for(s) for s in scales]
        probs = self._probabilities(crops, routes)
        top = max(self.trained_scales) if self.trained_scales else None
        faces = []
        for box, side, scale, route, p in zip(
            boxes, sides, scales, routes, probs
        ):
            k = int(np.argmax(p))
            faces.append(
                Face(
                    box=tuple(int(v) for v in box),
                    face_px=int(side),
                    scale=float(scale),
                    route=route,
                    probabilities=p,
                    label=labels_lib.CLASS_NAMES[k],
                    confidence=float(p[k]),
                    in_trained_range=(
                        route == "hr" or top is None or scale <= top
                    ),
                )
            )
        return faces

    def detect(self, image):
        """Face boxes (x, y, w, h) of an image, in its pixels."""
        return self.detector(to_rgb_uint8(image))

    def recognize(self, image):
        """The faces of one image (RGB, grey, RGBA or 16-bit array)."""
        return self.recognize_batch([image])[0]

    def recognize_batch(self, images):
        """The faces of each image; all faces go through the models in
        batches together. Returns one list of `Face` per image."""
        crops, boxes, sides, owner = [], [], [], []
        for i, image in enumerate(images):
            rgb = to_rgb_uint8(image)
            for box in self.detector(rgb):
                crop, side = square_crop(rgb, box)
                crops.append(crop)
                boxes.append(box)
                sides.append(side)
                owner.append(i)
        faces = self._faces(crops, boxes, sides) if crops else []
        out = [[] for _ in images]
        for i, face in zip(owner, faces):
            out[i].append(face)
        return out

    def classify_faces(self, crops):
        """Pre-cropped faces of any size (no detection): one `Face` each,
        its box the whole crop (made square by edge padding)."""
        squares, boxes, sides = [], [], []
        for crop in crops:
            rgb = to_rgb_uint8(crop)
            height, width = rgb.shape[:2]
            square, side = square_crop(rgb, (0, 0, width, height))
            squares.append(square)
            boxes.append((0, 0, width, height))
            sides.append(side)
        return self._faces(squares, boxes, sides) if squares else []
