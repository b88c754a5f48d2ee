"""FER2013 as its Kaggle CSV: `emotion,pixels,Usage`, 48x48 grey faces.

`emotion` 0..6 is FER2013's order (Angry, Disgust, Fear, Happy, Sad,
Surprise, Neutral), mapped onto the canonical one by `labels.FER2013_IDS`;
`Usage` Training / PublicTest / PrivateTest becomes train / val / test. The
faces are decoded into memory as 48x48x3 uint8 (grey repeated); the pipeline
resizes them to the model's input size with MATLAB bicubic.
"""

import csv
import os

import numpy as np
from absl import logging

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf.data import sources

SIZE = 48
COLUMNS = ("emotion", "pixels", "usage")
USAGE_SPLITS = {
    "training": "train",
    "publictest": "val",
    "privatetest": "test",
}
# Names tried inside a folder given as --data_dir.
_FILE_NAMES = ("fer2013.csv", "FER2013.csv", "icml_face_data.csv")


def _csv_path(data_dir):
    if data_dir and os.path.isdir(data_dir):
        for name in _FILE_NAMES:
            path = os.path.join(data_dir, name)
            if os.path.isfile(path):
                return path
        raise errors.DataError(
            f"{data_dir} is a folder without fer2013.csv; pass "
            "--data_dir=<the FER2013 CSV file>."
        )
    if not data_dir or not os.path.isfile(data_dir):
        raise errors.DataError(
            f"FER2013 CSV {data_dir} does not exist; pass --data_dir=<path of "
            "fer2013.csv (columns emotion,pixels,Usage)>."
        )
    return data_dir


def _parse_row(row, columns):
    """Returns (split, label, uint8 [48, 48]) or raises ValueError(reason)."""
    emotion_text = row[columns["emotion"]].strip()
    try:
        emotion = int(emotion_text)
    except ValueError:
        emotion = None
    if emotion not in labels_lib.FER2013_IDS:
        raise ValueError(f"emotion {emotion_text!r} is not an id 0..6")
    usage_text = row[columns["usage"]].strip()
    split = USAGE_SPLITS.get(usage_text.lower())
    if split is None:
        raise ValueError(
            f"Usage {usage_text!r} is not Training, PublicTest or PrivateTest"
        )
    fields = row[columns["pixels"]].split()
    if len(fields) != SIZE * SIZE:
        raise ValueError(
            f"{len(fields)} pixel values instead of {SIZE * SIZE} (48x48)"
        )
    try:
        pixels = np.array(fields, dtype=np.int64)
    except ValueError:
        raise ValueError("non-numeric pixel value") from None
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel value outside 0..255")
    return (
        split,
        labels_lib.FER2013_IDS[emotion],
        pixels.astype(np.uint8).reshape(SIZE, SIZE),
    )


def load_fer2013(config):
    """Reads the FER2013 CSV at `config.data_dir` into memory.

    Bad rows (wrong pixel count, non-numeric values, an unknown emotion id
    or Usage) are skipped and reported as "<file>:row <line number>" (the
    header is row 1).

    Args:
        config: a `configs.DataConfig` (data_dir).

    Returns:
        `sources.Dataset` named "fer2013_csv" with in-memory uint8
        [N, 48, 48, 3] splits "train", "val" and "test" (those with rows).

    Raises:
        errors.DataError: missing file, missing header columns, or no usable
            row.
    """
    path = _csv_path(config.data_dir)
    skipped = []
    rows = {split: ([], []) for split in sources.SPLIT_NAMES}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        names = [h.strip().lower() for h in header or []]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise errors.DataError(
                f"FER2013 CSV {path} lacks the column(s) "
                f"{', '.join(missing)} in its header (found: "
                f"{','.join(header or []) or 'nothing'}); use the original "
                "fer2013.csv with header emotion,pixels,Usage."
            )
        columns = {c: names.index(c) for c in COLUMNS}
        width = max(columns.values()) + 1
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path}:row {line}"
            if len(row) < width:
                skipped.append(
                    sources.Skipped(where, f"{len(row)} columns, not 3")
                )
                continue
            try:
                split, label, image = _parse_row(row, columns)
            except ValueError as e:
                skipped.append(sources.Skipped(where, str(e)))
                continue
            rows[split][0].append(label)
            rows[split][1].append(image)
    splits = {}
    for split, (split_labels, split_images) in rows.items():
        if split_labels:
            grey = np.stack(split_images)
            splits[split] = sources.Split(
                name=split,
                labels=split_labels,
                images=np.repeat(grey[..., None], 3, axis=-1),
            )
    if skipped:
        logging.warning(
            "FER2013: skipped %d bad rows of %s", len(skipped), path
        )
    dataset = sources.Dataset(
        name="fer2013_csv",
        root=path,
        splits=splits,
        skipped=skipped,
        notes=[
            "48x48 grey faces, repeated over RGB; the pipeline resizes them "
            "with MATLAB bicubic",
        ],
    )
    return sources.require_images(
        dataset, f"FER2013 CSV {path} has no usable row"
    )
