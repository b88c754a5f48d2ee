r"""Writes the bundled procedural expression set to disk as image folders.

The layout is the class-folder tree every FER tool reads (and
`--data_format=folder` here):

  OUT_DIR/train/<class_name>/00000.png ...
  OUT_DIR/test/<class_name>/00000.png ...

with the class names of `fsr_fer_tf.labels.CLASS_NAMES`. The images are the
ones `--data_format=synthetic` renders in memory for the same seed and
sizes. The class balance of each split is printed as a table; with
`--contact_sheet` a preview is saved too: one row per class, and one face at
x1..x8 (the paper's LR synthesis, bicubic down then up).

Usage:
  python tools/make_synthetic_faces.py --out_dir=/tmp/synthetic_faces
  python tools/make_synthetic_faces.py --out_dir=/tmp/sf --train_per_class=50 \
      --test_per_class=10 --seed=1 --contact_sheet=/tmp/sheet.png
  # the committed preview (palette PNG, < 300 KB):
  python tools/make_synthetic_faces.py --out_dir=/tmp/sf --overwrite \
      --train_per_class=10 --test_per_class=1 \
      --contact_sheet=notebooks/figures/synthetic_contact_sheet.png \
      --contact_sheet_colours=96
"""

import os
import shutil
import sys

import cv2
import numpy as np
from absl import app
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import flags as data_flags
from fsr_fer_tf.data import synthetic

SHEET_FACES_PER_CLASS = 10
SHEET_SCALES = (1, 2, 3, 4, 5, 6, 7, 8)
# The face of the scale row: anger, whose cue (the brows) fades by x4-x6.
SHEET_SCALE_CLASS = "anger"
_LABEL_WIDTH = 110


def define_flags(flag_values=flags.FLAGS):
    """Defines the tool's flags on `flag_values` (tests pass their own)."""
    d = configs.DataConfig()
    flags.DEFINE_string(
        "out_dir",
        None,
        "Folder to write train/<class>/*.png and test/<class>/*.png into; "
        "must be empty or missing unless --overwrite.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "train_per_class",
        d.synthetic_train,
        "Training images per class.",
        lower_bound=0,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "test_per_class",
        d.synthetic_test,
        "Test images per class.",
        lower_bound=0,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "seed",
        d.synthetic_seed,
        "Renderer seed (the same as --synthetic_seed of the trainers).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "image_size",
        d.image_size,
        "Side of the square faces in pixels.",
        lower_bound=16,
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "contact_sheet",
        None,
        "Optional .png path for a preview grid (one row per class, plus one "
        "face at x1..x8).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "contact_sheet_colours",
        0,
        "Save the contact sheet with a palette of this many colours (e.g. "
        "96 for a small file to commit); 0 keeps full colour.",
        lower_bound=0,
        upper_bound=256,
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "overwrite",
        False,
        "Replace the train/ and test/ folders of a non-empty --out_dir.",
        flag_values=flag_values,
    )
    flags.mark_flag_as_required("out_dir", flag_values=flag_values)


def _prepare_out_dir(out_dir, overwrite):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise errors.UserError(
            f"--out_dir={out_dir} is a file; pass a folder path."
        )
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise errors.UserError(
                f"--out_dir={out_dir} is not empty; pass --overwrite to "
                "replace its train/ and test/ folders, or choose a new folder."
            )
        for split in ("train", "test"):
            shutil.rmtree(os.path.join(out_dir, split), ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)


def write_split(out_dir, split, images, labels):
    """Writes one split as `out_dir/split/<class>/NNNNN.png`.

    Args:
        out_dir: the dataset root.
        split: "train" or "test".
        images: uint8 [N, H, W, 3] RGB.
        labels: int [N] canonical class indices.

    Returns:
        {class name: number of files written}.
    """
    counts = {name: 0 for name in labels_lib.CLASS_NAMES}
    for name in labels_lib.CLASS_NAMES:
        os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        name = labels_lib.CLASS_NAMES[int(label)]
        # The file name is the index in the split, so a file maps back to
        # `synthetic.render_index(seed, split, i)`.
        path = os.path.join(out_dir, split, name, f"{i:05d}.png")
        if not cv2.imwrite(path, image[..., ::-1]):  # cv2 writes BGR
            raise errors.DataError(f"could not write {path}; disk full?")
        counts[name] += 1
    return counts


def balance_table(counts):
    """Formats {split: {class: n}} as a text table with a total row."""
    splits = list(counts)
    width = max(len(n) for n in labels_lib.CLASS_NAMES + ("total",))
    lines = [f"{'class':<{width}}" + "".join(f"{s:>8}" for s in splits)]
    for name in labels_lib.CLASS_NAMES:
        lines.append(
            f"{name:<{width}}"
            + "".join(f"{counts[s][name]:>8}" for s in splits)
        )
    lines.append(
        f"{'total':<{width}}"
        + "".join(f"{sum(counts[s].values()):>8}" for s in splits)
    )
    return "\n".join(lines)


def _lr_up(face, scale):
    """`face` shrunk `scale` times and brought back (the paper's LR face)."""
    if scale == 1:
        return face
    try:
        from fsr_fer_tf.data import lr_synthesis  # imports TensorFlow

        _, up = lr_synthesis.synthesize_lr(face, scale, face.shape[0])
        return np.asarray(up)
    except ImportError:
        size = face.shape[0]
        small = -(-size // scale)  # ceil, as MATLAB's imresize
        lr = cv2.resize(face, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(lr, (size, size), interpolation=cv2.INTER_CUBIC)


def _text_cell(text, height, width, scale=0.5):
    cell = np.full((height, width, 3), 255, np.uint8)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (max(2, (width - tw) // 2), (height + th) // 2)
    cv2.putText(
        cell,
        text,
        org,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return cell


def contact_sheet(
    images, labels, per_class=SHEET_FACES_PER_CLASS, scales=SHEET_SCALES
):
    """A preview grid of a split.

    Args:
        images: uint8 [N, S, S, 3] RGB.
        labels: int [N] canonical labels.
        per_class: faces per class row (fewer if a class has fewer).
        scales: scales at which the first face of SHEET_SCALE_CLASS (or the
            first face, without one) is shown in a last row (empty: none).

    Returns:
        uint8 RGB image: a class name on the left of each row.
    """
    size = images.shape[1]
    cols = per_class
    rows = []
    for c, name in enumerate(labels_lib.CLASS_NAMES):
        faces = list(images[labels == c][:cols])
        faces += [np.full((size, size, 3), 255, np.uint8)] * (cols - len(faces))
        rows.append(
            np.concatenate([_text_cell(name, size, _LABEL_WIDTH)] + faces, 1)
        )
    if scales and len(images):
        which = labels_lib.CLASS_NAMES.index(SHEET_SCALE_CLASS)
        pick = np.flatnonzero(labels == which)
        if len(pick):
            # The most contrasted of the faces shown: its brows are clear.
            pick = pick[:cols]
            source = images[pick[np.argmax(images[pick].std(axis=(1, 2, 3)))]]
        else:
            source = images[0]
        name = SHEET_SCALE_CLASS if len(pick) else "scales"
        cells = [_text_cell(f"{name} x1..x8", size, _LABEL_WIDTH, 0.4)]
        for s in scales:
            face = _lr_up(source, s).copy()
            cv2.putText(
                face,
                f"x{s}",
                (3, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
            cells.append(face)
        cells += [np.full((size, size, 3), 255, np.uint8)] * max(
            0, cols - len(scales)
        )
        rows.append(np.concatenate(cells[: cols + 1], 1))
    return np.concatenate(rows, 0)


def save_sheet(path, sheet, colours=0):
    """Saves an RGB sheet as PNG, with a `colours` palette when > 0."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        if colours:
            from PIL import Image  # installed with matplotlib

            Image.fromarray(sheet).quantize(
                colors=colours,
                method=Image.Quantize.MEDIANCUT,
                dither=Image.Dither.NONE,
            ).save(path, optimize=True)
            return
        if cv2.imwrite(
            path, sheet[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9]
        ):
            return
    except (OSError, ValueError):
        pass
    raise errors.UserError(
        f"could not write --contact_sheet={path}; give it a .png name in a "
        "writable folder."
    )


def make_set(
    out_dir,
    train_per_class,
    test_per_class,
    seed,
    image_size=100,
    overwrite=False,
    sheet_path=None,
    sheet_colours=0,
):
    """Renders the set and writes it (and optionally a contact sheet).

    Args:
        out_dir: dataset root to create.
        train_per_class: training images per class.
        test_per_class: test images per class.
        seed: renderer seed.
        image_size: side of the faces.
        overwrite: replace train/ and test/ of a non-empty out_dir.
        sheet_path: where to save the contact sheet (None: no sheet).
        sheet_colours: palette size of the sheet (0: full colour).

    Returns:
        {split: {class name: count}} of what was written.

    Raises:
        errors.UserError: out_dir is non-empty and overwrite is False.
    """
    _prepare_out_dir(out_dir, overwrite)
    counts = {}
    first = None
    for split, per_class in (
        ("train", train_per_class),
        ("test", test_per_class),
    ):
        images, labels = synthetic.generate(per_class, seed, split, image_size)
        counts[split] = write_split(out_dir, split, images, labels)
        if first is None:
            first = (images, labels)
    if sheet_path:
        save_sheet(sheet_path, contact_sheet(*first), sheet_colours)
    return counts


def main(argv, flag_values=flags.FLAGS):
    del argv  # errors.cli_main refuses positional arguments
    fv = flag_values
    counts = make_set(
        fv.out_dir,
        fv.train_per_class,
        fv.test_per_class,
        fv.seed,
        fv.image_size,
        fv.overwrite,
        fv.contact_sheet,
        fv.contact_sheet_colours,
    )
    print(balance_table(counts))
    print(
        f"wrote {sum(sum(c.values()) for c in counts.values())} faces to "
        f"{fv.out_dir} (renderer v{synthetic.VERSION}, seed {fv.seed})"
    )
    if fv.contact_sheet:
        print(f"contact sheet: {fv.contact_sheet}")
    sys.stdout.flush()


if __name__ == "__main__":
    define_flags()
    app.run(errors.cli_main(main), flags_parser=data_flags.parse_flags)
