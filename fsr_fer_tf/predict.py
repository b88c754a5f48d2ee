r"""Expressions of the faces in images, folders and videos.

    fsr-fer-predict photo.jpg photos/ clip.mp4 --out_dir=predictions
    python -m fsr_fer_tf.predict photos/ --out_dir=predictions --fsr=never

Each INPUT is an image file, a folder (searched recursively) or a video
(anything `cv2.VideoCapture` opens; every `--video_stride`-th frame). By
default the models are the shipped ones (checkpoints/fer2013, see its
MODEL_CARD.md); `--model_dir` names another recognizer directory, or
`--fer_model` / `--generator` name .keras files. Writes in `--out_dir`:

- faces.csv: one row per face (`status` ok) and one row per input that
  gave no face or failed (`status` says why), columns `input, frame, x, y,
  w, h, face_px, scale, route, label, confidence, status, in_trained_range`
  then `p_<class>` in `fsr_fer_tf.labels.CLASS_NAMES` order;
- annotated/<input path>.png: each image with its boxes, labels and
  confidences (small faces marked by their route: "SR" through G, "LR"
  by the CovPoolFER trained on LR faces too);
- videos: <name>_expressions.csv (per processed frame: time, faces, share
  of each expression) and <name>_expressions.png.

Exit status 0 when every input was read (some may hold no face), 1 when
any input failed, 2 for a bad flag.
"""

import csv
import os
import sys
import time

from absl import app
from absl import flags

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib

FLAGS = flags.FLAGS
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
    ".pgm", ".ppm",
)  # fmt: skip
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v",
    ".wmv", ".flv",
)  # fmt: skip
COLUMNS = [
    "input", "frame", "x", "y", "w", "h", "face_px", "scale", "route",
    "label", "confidence", "status", "in_trained_range",
] + [f"p_{name}" for name in labels_lib.CLASS_NAMES]  # fmt: skip


def define_flags():
    """Defines the predictor's flags (once)."""
    if "out_dir" in FLAGS:
        return
    flags.DEFINE_string(
        "out_dir", "predictions", "Folder for faces.csv and the annotations."
    )
    flags.DEFINE_string(
        "model_dir",
        None,
        "Recognizer directory with recognizer.json (default: the shipped "
        "checkpoints/fer2013).",
    )
    flags.DEFINE_string(
        "fer_model",
        None,
        "Stage-1 CovPoolFER .keras file, instead of --model_dir's.",
    )
    flags.DEFINE_string(
        "generator",
        None,
        "Stage-2 generator .keras file (train_fsr's generator.keras); with "
        "--fer_model only: without it every face takes the HR route.",
    )
    flags.DEFINE_float(
        "threshold",
        None,
        "Faces of effective scale (--face_size / face side) >= this take "
        "the FSR route; default: the model directory's (chosen on val).",
    )
    flags.DEFINE_integer(
        "face_size",
        None,
        "Side in pixels of the training faces before their resize to the "
        "model input: a face that large is x1 (default: the model "
        "directory's, 48 for the shipped FER-2013 models; with --fer_model "
        "the model input, 100).",
    )
    flags.DEFINE_enum(
        "fsr",
        "auto",
        ["auto", "always", "never"],
        "'auto': the FSR route from --threshold on; 'always' / 'never'.",
    )
    flags.DEFINE_enum(
        "detector",
        "haar",
        ["haar", "mtcnn", "none"],
        "Face detector: OpenCV's Haar cascade (shipped in opencv), the "
        "mtcnn package (pip install -e \".[mtcnn]\"), or 'none' (each image "
        "is one pre-cropped face).",
    )
    flags.DEFINE_integer(
        "min_face", 12, "Smallest face side in pixels the detector reports."
    )
    flags.DEFINE_integer(
        "max_side",
        1600,
        "Detect on a copy downscaled to this longest side (faces are "
        "cropped from the original).",
    )
    flags.DEFINE_integer("batch_size", 64, "Faces per model call.")
    flags.DEFINE_integer(
        "video_stride", 5, "Process every N-th frame of a video."
    )
    flags.DEFINE_integer(
        "image_batch", 8, "Images whose faces are classified together."
    )
    flags.DEFINE_bool("annotate", True, "Write annotated copies of the images.")


def expand_inputs(inputs):
    """[(path, kind)]: kind "image", "video", "folder-empty", "missing" or
    "other", folders searched recursively (sorted), nothing dropped."""
    out = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    if not name.startswith("."):
                        found.append(os.path.join(root, name))
            if not found:
                out.append((item, "folder-empty"))
            out.extend((path, _kind(path)) for path in found)
        elif os.path.isfile(item):
            out.append((item, _kind(item)))
        else:
            out.append((item, "missing"))
    return out


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return "other"


def read_image(path):
    """(RGB uint8 array, None) or (None, status) for an image file.

    OpenCV reads grey, RGBA and 16-bit files as they are;
    `recognizer.to_rgb_uint8` brings them to 8-bit RGB.
    """
    import cv2
    import numpy as np

    from fsr_fer_tf import recognizer as recognizer_lib

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        return None, f"unreadable: {e.strerror}"
    if data.size == 0:
        return None, "unreadable: empty file"
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None, "unreadable: OpenCV could not decode it"
    if image.ndim == 3 and image.shape[-1] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif image.ndim == 3 and image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return recognizer_lib.to_rgb_uint8(image), None


def face_row(source, frame, face):
    """A faces.csv row of one face."""
    x, y, w, h = face.box
    row = {
        "input": source,
        "frame": frame,
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "face_px": face.face_px,
        "scale": f"{face.scale:.3f}",
        "route": face.route,
        "label": face.label,
        "confidence": f"{face.confidence:.4f}",
        "status": "ok",
        "in_trained_range": face.in_trained_range,
    }
    for name, p in zip(labels_lib.CLASS_NAMES, face.probabilities):
        row[f"p_{name}"] = f"{float(p):.4f}"
    return row


def status_row(source, status, frame=0):
    """A faces.csv row of an input without faces."""
    row = {column: "" for column in COLUMNS}
    row.update(input=source, frame=frame, status=status)
    return row


def annotate(image, faces):
    """A BGR copy of an RGB image with boxes, labels and confidences."""
    import cv2

    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(image.shape[:2]) / 800))
    for face in faces:
        x, y, w, h = face.box
        colour = (0, 200, 0) if face.route == "hr" else (0, 160, 255)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        text = f"{face.label} {face.confidence:.2f}"
        if face.route != "hr":  # a small face, read by a low-resolution route
            text += " SR" if face.route == "fsr" else " LR"
        scale = max(0.35, min(1.0, w / 120))
        (tw, th), base = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1
        )
        top = y - 3 if y - th - base - 3 >= 0 else y + h + th + 3
        cv2.rectangle(
            out, (x, top - th - base), (x + tw, top + base // 2), colour, -1
        )
        cv2.putText(
            out,
            text,
            (x, top - base // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out


class Progress:
    """'inputs i/n, faces k, faces/s' on stderr, every few seconds."""

    def __init__(self, total, every_s=2.0, stream=None):
        self.total = total
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = self.start
        self.done = 0
        self.faces = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def rate(self):
        return self.faces / max(time.perf_counter() - self.start, 1e-9)

    def update(self, inputs=0, faces=0):
        self.done += inputs
        self.faces += faces
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            line = (
                f"predict: inputs {self.done}/{self.total}, faces "
                f"{self.faces}, {self.rate():.1f} faces/s"
            )
            end = "\r" if self.tty and self.done < self.total else "\n"
            print(line, end=end, file=self.stream, flush=True)


def _relative(path, inputs):
    """`path` below the INPUT it came from, for the annotation tree."""
    for item in inputs:
        if os.path.isdir(item) and os.path.abspath(path).startswith(
            os.path.abspath(item) + os.sep
        ):
            base = os.path.basename(os.path.normpath(item))
            return os.path.join(base, os.path.relpath(path, item))
    return os.path.basename(path)


def predict_video(recognizer, path, stride, out_dir, rows, progress):
    """Rows for a video's faces; writes its expression share over time.

    Returns the number of faces, or None when the video does not open.
    """
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        return None
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    share_rows, total, index = [], 0, 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                faces = recognizer.recognize(rgb)
                counts = np.zeros(labels_lib.NUM_CLASSES)
                for face in faces:
                    rows.append(face_row(path, index, face))
                    counts[labels_lib.CLASS_NAMES.index(face.label)] += 1
                share = counts / max(1, len(faces))
                share_rows.append(
                    [index, index / fps if fps else "", len(faces)]
                    + [f"{v:.4f}" for v in share]
                )
                total += len(faces)
                progress.update(faces=len(faces))
            index += 1
    finally:
        capture.release()
    if index == 0:
        return None
    if total == 0:
        rows.append(status_row(path, "no face"))
    stem = os.path.splitext(os.path.basename(path))[0]
    with open(
        os.path.join(out_dir, f"{stem}_expressions.csv"), "w", newline=""
    ) as f:
        writer = csv.writer(f)
        writer.writerow(
            ["frame", "time_s", "faces"]
            + [f"share_{n}" for n in labels_lib.CLASS_NAMES]
        )
        writer.writerows(share_rows)
    _share_plot(
        share_rows, fps, os.path.join(out_dir, f"{stem}_expressions.png")
    )
    return total


def _share_plot(share_rows, fps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fsr_fer_tf import plots

    if not share_rows:
        return
    x = [r[1] if fps else r[0] for r in share_rows]
    shares = np.array([[float(v) for v in r[3:]] for r in share_rows]).T
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.stackplot(x, shares, labels=labels_lib.CLASS_NAMES, alpha=0.85)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("share of faces")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with open(path, "wb") as f:
        f.write(plots.figure_to_png(fig))
    plt.close(fig)


def run_predict(recognizer, inputs, out_dir, video_stride=5, annotate_images=True,
                image_batch=8, progress_stream=None):  # fmt: skip
    """Predicts every input; writes faces.csv (and annotations).

    Returns:
        {"rows": [...], "faces": int, "failed": int, "no_face": int,
         "inputs": int, "seconds": float, "csv": path}.
    """
    import cv2

    errors.require(video_stride >= 1, "--video_stride must be >= 1.")
    errors.require(image_batch >= 1, "--image_batch must be >= 1.")
    os.makedirs(out_dir, exist_ok=True)
    items = expand_inputs(inputs)
    progress = Progress(len(items), stream=progress_stream)
    rows, failed, no_face, faces_total = [], 0, 0, 0
    pending = []  # (path, image) waiting for a batched recognize

    def flush():
        nonlocal faces_total, no_face
        if not pending:
            return
        results = recognizer.recognize_batch([image for _, image in pending])
        for (path, image), faces in zip(pending, results):
            if faces:
                rows.extend(face_row(path, 0, face) for face in faces)
            else:
                rows.append(status_row(path, "no face"))
                no_face += 1
            if annotate_images:
                target = os.path.join(
                    out_dir, "annotated", _relative(path, inputs)
                )
                target = os.path.splitext(target)[0] + ".png"
                os.makedirs(os.path.dirname(target), exist_ok=True)
                cv2.imwrite(target, annotate(image, faces))
            faces_total += len(faces)
            progress.update(inputs=1, faces=len(faces))
        pending.clear()

    for path, kind in items:
        if kind == "image":
            image, status = read_image(path)
            if image is None:
                rows.append(status_row(path, status))
                failed += 1
                progress.update(inputs=1)
                continue
            pending.append((path, image))
            if len(pending) >= image_batch:
                flush()
            continue
        flush()
        if kind == "video":
            found = predict_video(
                recognizer, path, video_stride, out_dir, rows, progress
            )
            if found is None:
                rows.append(
                    status_row(path, "unreadable: the video does not open")
                )
                failed += 1
            else:
                faces_total += found
                no_face += found == 0
            progress.update(inputs=1)
            continue
        status = {
            "missing": "not found",
            "folder-empty": "empty folder",
            "other": "not an image or video",
        }[kind]
        rows.append(status_row(path, status))
        failed += 1
        progress.update(inputs=1)
    flush()
    csv_path = os.path.join(out_dir, "faces.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return {
        "rows": rows,
        "faces": faces_total,
        "failed": failed,
        "no_face": no_face,
        "inputs": len(items),
        "seconds": time.perf_counter() - progress.start,
        "csv": csv_path,
    }


def make_recognizer(flag_values):
    """The Recognizer the flags describe."""
    from fsr_fer_tf import recognizer as recognizer_lib

    common = dict(
        fsr=flag_values.fsr,
        detector=flag_values.detector,
        min_face=flag_values.min_face,
        max_side=flag_values.max_side,
        batch_size=flag_values.batch_size,
    )
    for name in ("threshold", "face_size"):
        if getattr(flag_values, name) is not None:
            common[name] = getattr(flag_values, name)
    if flag_values.fer_model:
        errors.require(
            not flag_values.model_dir,
            "--fer_model and --model_dir both given; pass one.",
        )
        return recognizer_lib.Recognizer(
            flag_values.fer_model, flag_values.generator, **common
        )
    errors.require(
        not flag_values.generator,
        "--generator needs --fer_model (the CovPoolFER it was trained on).",
    )
    return recognizer_lib.Recognizer.from_dir(flag_values.model_dir, **common)


@errors.cli_main(positional=True)
def main(argv):
    inputs = argv[1:]
    errors.require(
        bool(inputs),
        "no INPUT given: fsr-fer-predict IMAGE|FOLDER|VIDEO... --out_dir=DIR.",
    )
    for name in ("min_face", "max_side", "batch_size", "video_stride"):
        errors.require(getattr(FLAGS, name) >= 1, f"--{name} must be >= 1.")
    recognizer = make_recognizer(FLAGS)
    result = run_predict(
        recognizer,
        inputs,
        FLAGS.out_dir,
        video_stride=FLAGS.video_stride,
        annotate_images=FLAGS.annotate,
        image_batch=FLAGS.image_batch,
    )
    rate = result["faces"] / max(result["seconds"], 1e-9)
    print(
        f"{result['faces']} faces in {result['inputs']} inputs "
        f"({result['no_face']} with no face, {result['failed']} failed) in "
        f"{result['seconds']:.1f} s ({rate:.1f} faces/s); wrote "
        f"{result['csv']}"
    )
    if result["failed"]:
        sys.exit(1)


def run():
    """Console-script entry (`fsr-fer-predict`)."""
    from fsr_fer_tf.data import flags as data_flags

    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
