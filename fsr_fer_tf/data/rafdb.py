"""RAF-DB basic, read exactly as distributed.

    ROOT/EmoLabel/list_patition_label.txt   "train_00001.jpg 5" per line (sic)
    ROOT/Image/aligned/train_00001_aligned.jpg   100x100 aligned faces
    ROOT/Image/original/train_00001.jpg          (optional) full images

The split comes from the file-name prefix (train_/test_), the label ids 1..7
are RAF-DB's own order, which is the canonical one (`labels.RAFDB_IDS`). The
dataset is licence-restricted, so users bring their own copy.
"""

import os

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import images as images_lib
from fsr_fer_tf.data import sources

LABEL_FILE = os.path.join("EmoLabel", "list_patition_label.txt")
# The misspelling is RAF-DB's; a corrected name is accepted as well.
_LABEL_FILE_ALTERNATIVES = (
    LABEL_FILE,
    os.path.join("EmoLabel", "list_partition_label.txt"),
)
IMAGE_DIRS = (
    os.path.join("Image", "aligned"),
    os.path.join("Image", "original"),
)
SPLIT_PREFIXES = {"train": "train", "test": "test"}


def _find_label_file(root):
    for relative in _LABEL_FILE_ALTERNATIVES:
        path = os.path.join(root, relative)
        if os.path.isfile(path):
            return path
    hint = ""
    nested = os.path.join(root, "basic", LABEL_FILE)
    if os.path.isfile(nested):
        hint = f" (it is in {nested}: pass --data_dir={root}/basic)"
    raise errors.DataError(
        f"RAF-DB label file {os.path.join(root, LABEL_FILE)} is missing"
        f"{hint}; point --data_dir at the RAF-DB 'basic' folder that holds "
        "EmoLabel/ and Image/."
    )


def parse_label_file(path):
    """Reads RAF-DB's label file.

    Args:
        path: the label file.

    Returns:
        list of (line number, file name, split name, canonical label) in file
        order.

    Raises:
        errors.DataError: a malformed line, an unknown split prefix, a label
            id outside 1..7 or a repeated file name (naming the line).
    """
    entries = []
    first_line = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}, line {number}"
            if len(fields) != 2:
                raise errors.DataError(
                    f"{where}: expected '<file name> <label 1..7>', got "
                    f"{line.strip()!r}; fix or delete that line."
                )
            name, label_text = fields
            try:
                label_id = int(label_text)
            except ValueError:
                label_id = None
            if label_id not in labels_lib.RAFDB_IDS:
                raise errors.DataError(
                    f"{where}: label {label_text!r} of {name} is not an id "
                    "1..7 (Surprise, Fear, Disgust, Happiness, Sadness, "
                    "Anger, Neutral); fix that line."
                )
            split = None
            for split_name, prefix in SPLIT_PREFIXES.items():
                if name.startswith(prefix + "_"):
                    split = split_name
            if split is None:
                raise errors.DataError(
                    f"{where}: file name {name!r} starts with neither "
                    "'train_' nor 'test_', so its split is unknown; rename "
                    "it or delete that line."
                )
            if name in first_line:
                raise errors.DataError(
                    f"{where}: {name} is listed again (first at line "
                    f"{first_line[name]}); delete one of the two lines."
                )
            first_line[name] = number
            entries.append(
                (number, name, split, labels_lib.RAFDB_IDS[label_id])
            )
    if not entries:
        raise errors.DataError(
            f"RAF-DB label file {path} has no entries; restore it from the "
            "RAF-DB distribution."
        )
    return entries


def _image_candidates(name):
    """Names an entry's image may have: train_00001_aligned.jpg, then the
    label file's own name (Image/original uses it)."""
    stem, ext = os.path.splitext(name)
    return (f"{stem}_aligned{ext}", name)


def load_rafdb(config):
    """Reads RAF-DB basic from `config.data_dir`.

    Args:
        config: a `configs.DataConfig` (data_dir, strict, max_missing).

    Returns:
        `sources.Dataset` named "rafdb" with "train" and "test" path splits.

    Raises:
        errors.DataError: missing folder or label file, a bad label line,
            too many missing images, or (strict) a corrupt image.
    """
    root = config.data_dir
    if not root or not os.path.isdir(root):
        raise errors.DataError(
            f"RAF-DB folder {root} does not exist; pass --data_dir=<the "
            "RAF-DB 'basic' folder holding EmoLabel/ and Image/>."
        )
    label_path = _find_label_file(root)
    entries = parse_label_file(label_path)

    image_dir = None
    for relative in IMAGE_DIRS:
        candidate = os.path.join(root, relative)
        if os.path.isdir(candidate):
            image_dir = candidate
            break
    if image_dir is None:
        raise errors.DataError(
            f"RAF-DB image folder {os.path.join(root, IMAGE_DIRS[0])} is "
            f"missing (and so is {os.path.join(root, IMAGE_DIRS[1])}); "
            "unpack aligned.zip into Image/ of --data_dir."
        )
    notes = [f"images read from {image_dir}"]
    if image_dir.endswith(IMAGE_DIRS[0]):
        if os.path.isdir(os.path.join(root, IMAGE_DIRS[1])):
            notes[0] += " (Image/original exists too; aligned is preferred)"
    else:
        notes[0] += (
            " (Image/aligned is missing; the original images are not "
            "aligned and are resized to the model's square input)"
        )

    present = set(os.listdir(image_dir))
    found = []  # (split, path, label)
    missing = []  # (line number, name)
    listed = set()
    for number, name, split, label in entries:
        for candidate in _image_candidates(name):
            if candidate in present:
                found.append((split, os.path.join(image_dir, candidate), label))
                listed.add(candidate)
                break
        else:
            missing.append((number, name))

    if missing:
        fraction = len(missing) / len(entries)
        if fraction > config.max_missing:
            number, name = missing[0]
            raise errors.DataError(
                f"{len(missing)} of {len(entries)} entries of {label_path} "
                f"({100 * fraction:.2f}%) have no image in {image_dir} (the "
                f"first: {name}, line {number}); restore the images, or "
                f"pass --max_missing={_round_up(fraction)} or more to skip "
                "them."
            )
    # One reason for all (the summary counts skips by reason); the line
    # number goes with the path.
    skipped = [
        sources.Skipped(
            f"{os.path.join(image_dir, _image_candidates(name)[0])} "
            f"({LABEL_FILE} line {number})",
            f"listed in {LABEL_FILE} but the image is missing",
        )
        for number, name in missing
    ]
    for name in sorted(present - listed):
        path = os.path.join(image_dir, name)
        if os.path.isfile(path):
            skipped.append(sources.Skipped(path, f"not listed in {LABEL_FILE}"))

    keep, corrupt = images_lib.validate_files(
        [path for _, path, _ in found],
        strict=config.strict,
        what="RAF-DB: validating images",
    )
    skipped.extend(corrupt)
    splits = {}
    for split_name in SPLIT_PREFIXES:
        rows = [
            (path, label)
            for (split, path, label), ok in zip(found, keep)
            if ok and split == split_name
        ]
        splits[split_name] = sources.Split.from_files(split_name, rows)
    dataset = sources.Dataset(
        name="rafdb", root=root, splits=splits, skipped=skipped, notes=notes
    )
    return sources.require_images(
        dataset,
        f"RAF-DB folder {root} has no readable image; check {image_dir}",
    )


def _round_up(fraction):
    """A --max_missing value just above `fraction`, short to type."""
    for digits in (2, 3, 4, 6):
        step = 10**-digits
        value = round(-(-fraction // step) * step, digits)
        if value >= fraction:
            return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return repr(fraction)
