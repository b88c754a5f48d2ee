r"""Writes a group picture: faces of a dataset pasted at several sizes.

A stand-in for a class photo, to try `fsr-fer-predict` and to measure the
detector: the faces of one split are pasted in rows on a smooth background
at sides spread evenly from `--min_size` to `--max_size` pixels, and their
true boxes and labels are written beside the picture as JSON.

Usage:
  # the bundled procedural faces (no data needed; README's Predict picture)
  python tools/make_group_picture.py --out=/tmp/group.png
  # real faces, e.g. FER-2013's val split
  python tools/make_group_picture.py --data_format=folder \
      --data_dir=../shared/data/fer2013 --split=val --out=/tmp/group.png
"""

import json
import os

import cv2
import numpy as np
from absl import app
from absl import flags

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import flags as data_flags
from fsr_fer_tf.data import group
from fsr_fer_tf.data import loader

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (by `run`)."""
    data_flags.define_data_flags()
    flags.DEFINE_string("out", None, "The picture to write (.png).")
    flags.DEFINE_string("split", "test", "Split the faces come from.")
    flags.DEFINE_integer("faces", 24, "Number of faces.")
    flags.DEFINE_integer("min_size", 16, "Side of the smallest face (px).")
    flags.DEFINE_integer("max_size", 120, "Side of the largest face (px).")
    flags.DEFINE_integer("width", 1600, "Picture width (px).")
    flags.DEFINE_integer("height", 900, "Picture height (px).")
    flags.DEFINE_integer("seed", 0, "Seed of the face choice and background.")


def make_group_picture(split, faces, min_size, max_size, canvas, seed):
    """(RGB uint8 picture, truth list) of `faces` faces of `split`."""
    errors.require(
        0 < faces <= len(split),
        f"--faces must be in 1..{len(split)} (the split's size), got {faces}.",
    )
    errors.require(
        0 < min_size <= max_size,
        f"need 0 < --min_size <= --max_size, got {min_size}, {max_size}.",
    )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(split), faces, replace=False))
    sizes = np.linspace(min_size, max_size, faces).round().astype(int)
    order = rng.permutation(faces)  # sizes mixed across the rows
    try:
        picture, truth = group.group_image(
            [split.images[i] for i in chosen[order]],
            sizes[order],
            labels=split.labels[chosen[order]],
            canvas=canvas,
            seed=seed,
        )
    except ValueError as e:
        raise errors.ConfigError(str(e)) from None
    for item in truth:
        item["label"] = labels_lib.CLASS_NAMES[item["label"]]
    return picture, truth


@errors.cli_main
def main(argv):
    del argv
    errors.require(bool(FLAGS.out), "--out is required (a .png path).")
    dataset = loader.load_dataset(data_flags.data_config_from_flags(FLAGS))
    picture, truth = make_group_picture(
        dataset.split(FLAGS.split),
        FLAGS.faces,
        FLAGS.min_size,
        FLAGS.max_size,
        (FLAGS.height, FLAGS.width),
        FLAGS.seed,
    )
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    cv2.imwrite(FLAGS.out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    truth_path = os.path.splitext(FLAGS.out)[0] + ".json"
    with open(truth_path, "w", encoding="utf-8") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    print(f"{len(truth)} faces -> {FLAGS.out} (boxes: {truth_path})")


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
