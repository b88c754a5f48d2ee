"""A folder per class, the common layout of small expression sets.

    ROOT/<class>/*.jpg|jpeg|png|bmp            (split derived here), or
    ROOT/{train,val,test}/<class>/*.jpg|...    (splits as given)

Class folders are matched case-insensitively with common synonyms ("Happy",
"angry", "Surprised"; `labels.canonical_index`). Anything not taken — a class
outside the seven basic ones (contempt), a non-image file, an empty class
folder, a corrupt image — is reported in `Dataset.skipped`, never merged.
"""

import math
import os

import numpy as np

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import images as images_lib
from fsr_fer_tf.data import sources

# Split folder names (lower case) -> split.
SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Seed of the derived train/test split; fixed so a tree always splits alike.
SPLIT_SEED = 0


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        raise errors.DataError(
            f"cannot list {path}: {e.strerror}; check its permissions."
        ) from None


def _scan_classes(parent, skipped, notes):
    """Lists the class folders of `parent`.

    Args:
        parent: a folder holding one folder per class.
        skipped: list to append `sources.Skipped` to.
        notes: list to append notes to.

    Returns:
        list of (path, canonical label) of the image files, sorted by class
        folder then file name.
    """
    files = []
    folders_of = {}
    for name in _listdir(parent):
        path = os.path.join(parent, name)
        if not os.path.isdir(path):
            skipped.append(sources.Skipped(path, "not inside a class folder"))
            continue
        entries = _listdir(path)
        label = labels_lib.canonical_index(name)
        if label is None:
            skipped.append(
                sources.Skipped(
                    path,
                    f"class '{name}' is not one of the 7 basic expressions; "
                    f"its {len(entries)} files were not used",
                )
            )
            continue
        folders_of.setdefault(label, []).append(name)
        taken = 0
        for entry in entries:
            entry_path = os.path.join(path, entry)
            if os.path.isdir(entry_path):
                skipped.append(
                    sources.Skipped(
                        entry_path, "sub-folder of a class folder (not read)"
                    )
                )
            elif not images_lib.is_image_name(entry):
                ext = os.path.splitext(entry)[1] or "none"
                skipped.append(
                    sources.Skipped(
                        entry_path,
                        f"not an image file (extension {ext}; expected one "
                        f"of {', '.join(sources.IMAGE_EXTENSIONS)})",
                    )
                )
            else:
                files.append((entry_path, label))
                taken += 1
        if taken == 0:
            skipped.append(
                sources.Skipped(path, "empty class folder (no image files)")
            )
    for label, names in folders_of.items():
        if len(names) > 1:
            notes.append(
                f"{parent}: folders {', '.join(names)} all read as "
                f"'{labels_lib.CLASS_NAMES[label]}'"
            )
    return files


def stratified_split(labels, test_fraction, seed=SPLIT_SEED):
    """Deterministic per-class hold-out.

    Each class holds out ceil(n * test_fraction) of its n images (at most
    n - 1, so a class keeps at least one training image), chosen by a
    seeded permutation of the class's images in their given order;
    test_fraction 1 holds out every image (a folder to evaluate on).

    Args:
        labels: int sequence, one label per image.
        test_fraction: fraction of each class held out, in (0, 1].
        seed: seed of the permutation.

    Returns:
        bool numpy [len(labels)], True for the held-out (test) images.
    """
    labels = np.asarray(labels)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = math.ceil(len(members) * test_fraction)
        if test_fraction < 1:
            n_test = min(len(members) - 1, n_test)
        rng = np.random.default_rng([seed, int(label)])
        is_test[members[rng.permutation(len(members))[:n_test]]] = True
    return is_test


def load_folder(config):
    """Reads a class-folder tree from `config.data_dir`.

    Args:
        config: a `configs.DataConfig` (data_dir, strict, test_fraction).

    Returns:
        `sources.Dataset` named "folder" with path splits: those of the
        tree's train/val/test folders, or a derived "train"/"test".

    Raises:
        errors.DataError: missing folder, no usable image, or (strict) a
            corrupt image.
    """
    root = config.data_dir
    if not root or not os.path.isdir(root):
        raise errors.DataError(
            f"image folder {root} does not exist; pass --data_dir=<a folder "
            "with one sub-folder per class, optionally under train/ and "
            "test/>."
        )
    skipped, notes = [], []
    children = _listdir(root)
    split_dirs = {
        name: SPLIT_DIRS[name.lower()]
        for name in children
        if name.lower() in SPLIT_DIRS
        and os.path.isdir(os.path.join(root, name))
    }
    per_split = {}
    if split_dirs:
        for name in children:
            path = os.path.join(root, name)
            if name not in split_dirs:
                skipped.append(
                    sources.Skipped(
                        path,
                        "not a split folder (expected train/, val/, test/ "
                        "when any of them exists)",
                    )
                )
                continue
            split = split_dirs[name]
            if split in per_split:
                raise errors.DataError(
                    f"{root} has two folders for the '{split}' split "
                    f"({name} and another); merge or rename one."
                )
            per_split[split] = _scan_classes(path, skipped, notes)
    else:
        files = _scan_classes(root, skipped, notes)
        is_test = stratified_split(
            [label for _, label in files], config.test_fraction
        )
        per_split["train"] = [f for f, t in zip(files, is_test) if not t]
        per_split["test"] = [f for f, t in zip(files, is_test) if t]
        notes.append(
            f"no train/ or test/ folders: held out a stratified "
            f"{config.test_fraction:g} of each class as 'test' "
            f"(deterministic, seed {SPLIT_SEED}; --test_fraction)"
        )

    order = [split for split in sources.SPLIT_NAMES if split in per_split]
    all_files = [item for split in order for item in per_split[split]]
    keep, corrupt = images_lib.validate_files(
        [path for path, _ in all_files],
        strict=config.strict,
        what="folder: validating images",
    )
    skipped.extend(corrupt)
    splits = {}
    start = 0
    for split in order:
        items = per_split[split]
        ok = keep[start : start + len(items)]
        start += len(items)
        rows = [item for item, good in zip(items, ok) if good]
        splits[split] = sources.Split.from_files(split, rows)
    dataset = sources.Dataset(
        name="folder", root=root, splits=splits, skipped=skipped, notes=notes
    )
    return sources.require_images(
        dataset,
        f"image folder {root} has no usable image (class folders named "
        f"after the 7 expressions holding "
        f"{'/'.join(sources.IMAGE_EXTENSIONS)} files)",
    )
