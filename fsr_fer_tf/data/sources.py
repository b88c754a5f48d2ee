"""What every data source returns: splits of images with canonical labels.

A reader (RAF-DB, folder-per-class, FER2013 CSV, the bundled synthetic set)
returns a `Dataset`: named `Split`s, each holding either image file paths (to be
decoded by the tf.data pipeline) or already decoded uint8 RGB images, plus the
canonical label of each image (an index into `labels.CLASS_NAMES`). Anything a
reader did not take is in `Dataset.skipped` with its reason, so nothing is lost
silently: entry points print `Dataset.summary()` or its skipped count.
"""

import collections
import dataclasses

import numpy as np

from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A file or class a reader did not take.

    Attributes:
        path: the file, folder or CSV row (as "file.csv:row 12") skipped.
        reason: why, in words a user can act on.
    """

    path: str
    reason: str


@dataclasses.dataclass
class Split:
    """One split of a dataset.

    Exactly one of `paths` and `images` is set.

    Attributes:
        name: "train", "val" or "test".
        labels: int32 [N], canonical class indices.
        paths: N image file paths, decoded later by the pipeline.
        images: uint8 [N, H, W, 3] RGB images already in memory.
    """

    name: str
    labels: np.ndarray
    paths: list = None
    images: np.ndarray = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if (self.paths is None) == (self.images is None):
            raise ValueError("A Split holds exactly one of paths and images.")
        n = len(self.paths) if self.paths is not None else len(self.images)
        if n != len(self.labels):
            raise ValueError(f"{n} images but {len(self.labels)} labels.")

    @classmethod
    def from_files(cls, name, rows):
        """A split of image files from (path, label) pairs."""
        return cls(
            name=name,
            labels=[label for _, label in rows],
            paths=[path for path, _ in rows],
        )

    def __len__(self):
        return len(self.labels)

    def class_counts(self):
        """Returns {class name: number of images} over all 7 classes."""
        counts = collections.Counter(self.labels.tolist())
        return {
            name: int(counts.get(i, 0))
            for i, name in enumerate(labels_lib.CLASS_NAMES)
        }

    def subset(self, indices):
        """Returns a Split of the images at `indices` (e.g. a few for tests)."""
        indices = np.asarray(indices, dtype=np.int64)
        return Split(
            name=self.name,
            labels=self.labels[indices],
            paths=(
                None if self.paths is None else [self.paths[i] for i in indices]
            ),
            images=None if self.images is None else self.images[indices],
        )


@dataclasses.dataclass
class Dataset:
    """A data source as read: its splits and what was skipped.

    Attributes:
        name: the data format ("synthetic", "rafdb", "folder", "fer2013_csv").
        root: the folder or file it was read from (None for in-memory data).
        splits: {split name: Split}.
        skipped: every file or class not taken, with its reason.
        notes: free-form facts worth reporting (e.g. how a split was derived).
    """

    name: str
    root: str
    splits: dict
    skipped: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def class_names(self):
        return labels_lib.CLASS_NAMES

    @property
    def where(self):
        """ "rafdb data at /path" or "synthetic data (in memory)"."""
        if self.root is None:
            return f"{self.name} data (in memory)"
        return f"{self.name} data at {self.root}"

    def split(self, name):
        """Returns the split `name`, or raises a DataError naming those there are."""
        if name not in self.splits:
            raise errors.DataError(
                f"{self.where} has no '{name}' split "
                f"(it has: {', '.join(sorted(self.splits)) or 'none'}); "
                "pick one of those or add the missing split to the data."
            )
        if len(self.splits[name]) == 0:
            raise errors.DataError(
                f"the '{name}' split of {self.where} is "
                "empty; add images to it or choose another split."
            )
        return self.splits[name]

    def summary(self):
        """A JSON-serialisable summary: images per split and class, skips."""
        reasons = collections.Counter(s.reason for s in self.skipped)
        return {
            "data_format": self.name,
            "data_dir": self.root,
            "class_names": list(labels_lib.CLASS_NAMES),
            "splits": {
                name: {"images": len(split), "per_class": split.class_counts()}
                for name, split in self.splits.items()
            },
            "skipped": {
                "count": len(self.skipped),
                "by_reason": dict(reasons),
                "items": [dataclasses.asdict(s) for s in self.skipped],
            },
            "notes": list(self.notes),
        }


def require_images(dataset, problem):
    """Returns `dataset`, or raises `errors.NoUsableDataError(problem)` when
    none of its splits holds an image (the error carries the dataset, so
    `fsr-fer-inspect` can still print what was skipped and why)."""
    if not any(len(split) for split in dataset.splits.values()):
        raise errors.NoUsableDataError(problem, dataset)
    return dataset
