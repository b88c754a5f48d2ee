"""Dataclass configs and named presets.

Flags only select a preset and override fields; library code takes these
configs (or plain arguments), never absl FLAGS.
"""

import dataclasses

DATA_FORMATS = ("synthetic", "rafdb", "folder", "fer2013_csv")


@dataclasses.dataclass
class DataConfig:
    """Which data to read and how strictly.

    Attributes:
        data_format: one of DATA_FORMATS; "synthetic" is the bundled
            procedural expression set, rendered in memory from a seed.
        data_dir: the dataset root (RAF-DB basic folder, class-folder tree, or
            the FER2013 CSV file). For "synthetic", an optional cache folder.
        strict: fail on the first corrupt image instead of skipping it.
        max_missing: largest tolerated fraction of label-file entries whose
            image file is missing (RAF-DB); above it, loading fails.
        test_fraction: for a class-folder tree without train/ and test/
            sub-folders, the stratified fraction held out as "test".
        synthetic_train: images per class in the synthetic train split.
        synthetic_test: images per class in the synthetic test split.
        synthetic_seed: seed of the synthetic renderer.
        image_size: side of the square HR face (the paper's 100).
    """

    data_format: str = "synthetic"
    data_dir: str = None
    strict: bool = False
    max_missing: float = 0.0
    test_fraction: float = 0.2
    synthetic_train: int = 600
    synthetic_test: int = 150
    synthetic_seed: int = 0
    image_size: int = 100
