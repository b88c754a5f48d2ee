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


@dataclasses.dataclass
class CovPoolFERConfig:
    """Sizes of the CovPoolFER network (stage 1; DESIGN.md "Stage 1").

    The trunk follows the released CovPoolFER code (`covpoolnet2.py`): six 3x3
    convs, each conv -> batch-norm -> ReLU, with 2x2 max-pooling after the
    1st, 2nd and 4th, so a 100x100 face gives a 12x12 map.

    Attributes:
        image_size: side of the square input face.
        conv_filters: widths of the six trunk convs.
        bimap_dim: BiMap output size d (the SPD feature is d x d).
        fc_units: the head's hidden widths; the last is the embedding used by
            the perceptual loss (`fc_2`, 128-d in the paper).
        num_classes: number of expression classes.
        cov_epsilon: CovPool regulariser, S + cov_epsilon * trace(S) * I.
        reeig_epsilon: ReEig eigenvalue floor.
        spd_dtype: compute dtype of the SPD layers, "float32" or "float64".
        batchnorm_momentum: moving-average decay of batch-norm (released 0.995).
        batchnorm_epsilon: batch-norm epsilon (released 1e-3).
        dropout: dropout rate before each head FC (released code: none).
    """

    image_size: int = 100
    conv_filters: tuple = (64, 96, 128, 128, 256, 256)
    bimap_dim: int = 128
    fc_units: tuple = (2000, 128)
    num_classes: int = 7
    cov_epsilon: float = 1e-4
    reeig_epsilon: float = 1e-4
    spd_dtype: str = "float32"
    batchnorm_momentum: float = 0.995
    batchnorm_epsilon: float = 1e-3
    dropout: float = 0.0


# `paper`: the released CovPoolFER sizes (256x256 covariance -> 128x128).
# `demo`: small enough to train on 2 CPU cores in minutes (64x64 -> 32x32).
COVPOOL_PRESETS = {
    "paper": CovPoolFERConfig(),
    "demo": CovPoolFERConfig(
        conv_filters=(16, 24, 32, 32, 64, 64),
        bimap_dim=32,
        fc_units=(256, 128),
    ),
}


@dataclasses.dataclass
class GeneratorConfig:
    """RRDB feature generator G: [B, d, d, 1] -> [B, d, d, 1] (DESIGN.md "Stage 2").

    Attributes:
        filters: trunk width (released code: 32).
        growth: width of each dense-block conv (released code: 16).
        num_blocks: number of RRDBs (paper: 6).
        dense_convs: convs per residual dense block (ESRGAN: 5).
        residual_scale: scale of the dense-block and RRDB residuals (0.2).
        use_batch_norm: batch-norm after each dense-block conv (released code
            has it; ESRGAN, which the paper follows, removed it).
        tail_kernel_size: kernel of the two output convs (ESRGAN: 3; released
            code: 8).
        symmetrize_output: return (Y + Y^T) / 2, so F_sr is symmetric like the
            LogEig features it imitates.
        input_skip: add the input to the output (G learns a residual). Neither
            the paper nor the released code does this.
    """

    filters: int = 32
    growth: int = 16
    num_blocks: int = 6
    dense_convs: int = 5
    residual_scale: float = 0.2
    use_batch_norm: bool = False
    tail_kernel_size: int = 3
    symmetrize_output: bool = True
    input_skip: bool = False


@dataclasses.dataclass
class CriticConfig:
    """ESRGAN VGG-style critic D without batch-norm: [B, d, d, 1] -> [B, 1].

    Strided 4x4 convs halve the map until it is 4x4 (5 halvings at d = 128);
    widths double every block from `base_filters`, capped at 8x.

    Attributes:
        base_filters: width of the first block (ESRGAN: 64; released code: 8).
        use_bias: conv biases (ESRGAN: yes; released code: no).
        dense_units: width of the hidden dense layer (100 in both).
        min_size: stop halving at this spatial size.
    """

    base_filters: int = 64
    use_bias: bool = True
    dense_units: int = 100
    min_size: int = 4


GENERATOR_PRESETS = {
    "paper": GeneratorConfig(),
    "released": GeneratorConfig(
        use_batch_norm=True, tail_kernel_size=8, symmetrize_output=False
    ),
    "demo": GeneratorConfig(filters=16, growth=8, num_blocks=2),
}

CRITIC_PRESETS = {
    "paper": CriticConfig(),
    "released": CriticConfig(base_filters=8, use_bias=False),
    "demo": CriticConfig(base_filters=8),
}
