r"""Benchmarks `fsr_fer_tf.Recognizer` (what `fsr-fer-predict` runs).

In one run, with the recognizer of `--model_dir` (default: the shipped
checkpoints/fer2013) or `--fer_model` / `--generator`:

1. faces/s of `classify_faces` on `--faces` pre-cropped faces of
   `--face_px` pixels through the direct route (CovPoolFER alone, the
   baseline) and through the FSR route (G between SPD and head), and
   their ratio (the goal: FSR route <= 1.5x the direct route's cost);
2. images/s end to end (detection, crops, MATLAB bicubic, both routes) on a
   1600x900 (`--canvas`) group picture of `--group_faces` faces from
   `--faces_dir` (a class-folder tree, e.g. ../shared/data/fer2013/val;
   without it, the bundled procedural faces), with the time spent
   detecting.

Usage:
  python tools/bench_predict.py --faces_dir=../shared/data/fer2013/val
  python tools/bench_predict.py --model_dir=RUN --repeats=3
"""

import glob
import os

from absl import app
from absl import flags

MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Recognizer directory (default: checkpoints/fer2013)."
)
FER_MODEL = flags.DEFINE_string(
    "fer_model", None, "Stage-1 .keras file instead of --model_dir."
)
GENERATOR = flags.DEFINE_string(
    "generator", None, "Stage-2 generator .keras file (with --fer_model)."
)
FACES = flags.DEFINE_integer("faces", 256, "Pre-cropped faces per timing.")
FACE_PX = flags.DEFINE_integer("face_px", 25, "Side of those faces.")
GROUP_FACES = flags.DEFINE_integer(
    "group_faces", 50, "Faces on the group picture."
)
CANVAS = flags.DEFINE_string(
    "canvas", "1600x900", "Width x height of the group picture (px)."
)
FACES_DIR = flags.DEFINE_string(
    "faces_dir",
    None,
    "Class-folder tree of face images for the group picture (default: "
    "the bundled procedural faces).",
)
REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement.")
BATCH = flags.DEFINE_integer("batch_size", 64, "Faces per model call.")


def group_faces(n, seed=0):
    """n grey-or-RGB uint8 faces: from --faces_dir, or rendered."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    if FACES_DIR.value:
        paths = sorted(
            p
            for p in glob.glob(os.path.join(FACES_DIR.value, "*", "*"))
            if os.path.splitext(p)[1].lower() in (".jpg", ".png", ".jpeg")
        )
        if not paths:
            raise SystemExit(f"no face images under {FACES_DIR.value}/*/")
        picks = rng.choice(len(paths), n, replace=len(paths) < n)
        return [cv2.imread(paths[i], cv2.IMREAD_GRAYSCALE) for i in picks]
    from fsr_fer_tf.data import synthetic

    return [
        synthetic.render_index(seed, "test", int(i))[0]
        for i in rng.permutation(1000)[:n]
    ]


def canvas_size(text):
    """(width, height) of a "WxH" --canvas value."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(
            f"--canvas={text}: expected WxH, e.g. 1600x900"
        ) from None
    if width < 1 or height < 1:
        raise SystemExit(f"--canvas={text}: sides must be >= 1")
    return width, height


def make_recognizer(**kwargs):
    from fsr_fer_tf import recognizer

    if FER_MODEL.value:
        return recognizer.Recognizer(
            FER_MODEL.value, GENERATOR.value, batch_size=BATCH.value, **kwargs
        )
    return recognizer.Recognizer.from_dir(
        MODEL_DIR.value, batch_size=BATCH.value, **kwargs
    )


def timed(fn, *args):
    from fsr_fer_tf import benchmark

    return benchmark.timed(fn, *args, repeats=REPEATS.value)


def main(argv):
    del argv
    import numpy as np

    from fsr_fer_tf import benchmark
    from fsr_fer_tf.data import group

    print(benchmark.environment())
    direct = make_recognizer(fsr="never")
    through_g = make_recognizer(fsr="always")
    rng = np.random.default_rng(0)
    side = FACE_PX.value
    crops = list(rng.integers(0, 256, (FACES.value, side, side, 3), np.uint8))
    base = timed(direct.classify_faces, crops)
    fsr = timed(through_g.classify_faces, crops)
    n = len(crops)
    print(
        f"\n{n} pre-cropped {side}x{side} faces (min of {REPEATS.value}):\n"
        f"  direct route (CovPoolFER)  {n / base[1]:8.1f} faces/s\n"
        f"  FSR route (C(G(SPD(CNN)))) {n / fsr[1]:8.1f} faces/s\n"
        f"  FSR / direct cost: {fsr[1] / base[1]:.2f}x (goal <= 1.5x)"
    )

    faces = group_faces(GROUP_FACES.value)
    sizes = rng.choice([16, 20, 24, 32, 40, 48, 64, 80], len(faces))
    width, height = canvas_size(CANVAS.value)
    image, truth = group.group_image(faces, sizes, canvas=(height, width))
    auto = make_recognizer()
    detect = timed(auto.detect, image)
    whole = timed(auto.recognize, image)
    found = auto.recognize(image)
    matched = group.match([t["box"] for t in truth], [f.box for f in found])
    routes = [f.route for f in found]
    print(
        f"\n{width}x{height} group picture, {len(truth)} faces of 16..80 px "
        f"({'--faces_dir' if FACES_DIR.value else 'procedural faces'}):\n"
        f"  end to end     {1 / whole[1]:6.2f} images/s "
        f"({whole[1]:.2f} s an image)\n"
        f"  of which detection {detect[1]:.2f} s "
        f"({100 * detect[1] / whole[1]:.0f}%)\n"
        f"  found {len(found)} faces ({len(matched)} of the {len(truth)} "
        f"true ones), {routes.count('fsr')} through G"
    )


if __name__ == "__main__":
    app.run(main)
