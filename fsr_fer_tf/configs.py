"""Dataclass configs and named presets.

Flags only select a preset and override fields; library code takes these
configs (or plain arguments), never absl FLAGS.
"""

import dataclasses
import os
import typing

from fsr_fer_tf import errors

DATA_FORMATS = ("synthetic", "rafdb", "folder", "fer2013_csv")


def parse_int_list(value, what):
    """(2, 3, 4) from "2,3,4" (a flag, YAML text), [2, 3, 4] (JSON, YAML)
    or a single int; a ConfigError naming `what` otherwise."""
    given = value
    if isinstance(value, bool):
        value = [value]  # refused below: True is not a step or a scale
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        if not isinstance(value, (list, tuple)) or any(
            isinstance(v, (bool, float)) for v in value
        ):
            raise ValueError
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise errors.ConfigError(
            f"{what} must be comma-separated integers, e.g. 2,3,4, got "
            f"'{given}'."
        ) from None


def parse_schedule(value, what="--learning_rate_schedule"):
    """((0, 0.1), (120, 0.01)) from "0:0.1,120:0.01" or [[0, 0.1], ...],
    checked: starts at 0, increases, values > 0."""
    pairs = []
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        for item in items:
            if isinstance(item, str):
                if not item.strip():
                    continue
                item = item.split(":")
            at, rate = item
            if isinstance(at, float) or isinstance(at, bool):
                raise ValueError
            pairs.append((int(at), float(rate)))
    except (TypeError, ValueError):
        raise errors.ConfigError(
            f"{what} must look like '0:0.1,120:0.01' (start:value), got "
            f"'{value}'."
        ) from None
    text = list_text(pairs)
    starts = [a for a, _ in pairs]
    if not pairs or starts[0] != 0 or starts != sorted(set(starts)):
        raise errors.ConfigError(
            f"{what} must start at 0 and increase, got '{text}'."
        )
    if any(v <= 0 for _, v in pairs):
        raise errors.ConfigError(f"{what} values must be > 0, got '{text}'.")
    return tuple(pairs)


def list_text(value):
    """The flag text of a list setting: "2,3,4" or "0:0.1,120:0.01"."""
    return ",".join(
        ":".join(str(v) for v in item) if isinstance(item, tuple) else str(item)
        for item in value
    )


class _TypedLists:
    """Dataclass mixin: the fields named in LIST_FIELDS ({field: parser})
    hold typed tuples. They are parsed once, where a config is made (from
    flag text "2,3,4", a YAML or JSON list, or a tuple), so the code
    inside only sees tuples and a bad value fails on creation, with the
    flag's name."""

    LIST_FIELDS = {}

    def __post_init__(self):
        for name, parse in self.LIST_FIELDS.items():
            setattr(self, name, parse(getattr(self, name), f"--{name}"))


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
            sub-folders, the stratified fraction held out as "test" (1:
            all of it, a folder to evaluate on).
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
        stem_stride: stride of the first conv (released code: 1).
        pool_after: 1-based indices of the convs followed by 2x2
            max-pooling (released code: 1, 2, 4).
        fused_spd: ReEig and LogEig as one layer with one eigen-
            decomposition (`layers.spd.ReEigLogEig`: the same values and
            gradients, one `eigh` fewer); the paper's two layers otherwise.
        sync_batch_norm: batch-norm statistics over the global batch of all
            replicas (Keras' `synchronized`); False: each replica's own.
        fused_batch_norm: the trunk's batch-norms on TensorFlow's fused
            kernel (`layers.batchnorm.FusedBatchNormalization`: the same
            values, weights and moving averages, about 2x faster on CPU;
            with sync_batch_norm, Keras' synchronized layer is used).
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
    stem_stride: int = 1
    pool_after: tuple = (1, 2, 4)
    fused_spd: bool = False
    sync_batch_norm: bool = False
    fused_batch_norm: bool = False


# `paper`: the released CovPoolFER sizes (256x256 covariance -> 128x128).
# `demo`: small enough to train on 2 CPU cores in minutes (64x64 -> 32x32).
COVPOOL_PRESETS = {
    "paper": CovPoolFERConfig(),
    "demo": CovPoolFERConfig(
        conv_filters=(16, 24, 32, 32, 64, 64),
        bimap_dim=32,
        fc_units=(256, 128),
        # The released 0.995 needs ~1000 steps before the moving statistics
        # forget their initial values; the demo trains for ~800.
        batchnorm_momentum=0.9,
        fused_batch_norm=True,
    ),
    # `fer2013`: real 48x48 faces upscaled to 100x100, trained in about an
    # hour on 2 CPU cores: a stride-2 first conv (the upscaled face has no
    # 1-pixel detail), pools after convs 2 and 4 (100 -> 50 -> 25 -> 12),
    # a 96x96 covariance -> 48x48 SPD feature.
    "fer2013": CovPoolFERConfig(
        conv_filters=(24, 48, 48, 96, 96, 96),
        bimap_dim=48,
        fc_units=(256, 128),
        batchnorm_momentum=0.99,
        dropout=0.25,
        stem_stride=2,
        pool_after=(2, 4),
        # The same values, 1.25x the step's speed here (bench_fer_step).
        fused_batch_norm=True,
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
        batch_norm_mode: "batch" (batch statistics in training, moving
            averages at test) or "inference" (always inference mode on the
            initial statistics, a learnt per-channel scale and shift: what
            the released code's BN did).
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
    batch_norm_mode: str = "batch"
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
        use_batch_norm=True,
        batch_norm_mode="inference",
        tail_kernel_size=8,
        symmetrize_output=False,
    ),
    # input_skip: the demo's few hundred steps start G at the identity.
    "demo": GeneratorConfig(
        filters=16, growth=8, num_blocks=2, input_skip=True
    ),
    # The demo's widths with 3 RRDBs at d = 48: thousands of GAN steps in
    # an hour on 2 CPU cores (the paper's widths cost ~4x a step); G starts
    # at the identity, like the demo's.
    "fer2013": GeneratorConfig(
        filters=16, growth=8, num_blocks=3, input_skip=True
    ),
}

CRITIC_PRESETS = {
    "paper": CriticConfig(),
    "released": CriticConfig(base_filters=8, use_bias=False),
    "demo": CriticConfig(base_filters=8),
    "fer2013": CriticConfig(base_filters=8),
}


@dataclasses.dataclass
class FERTrainConfig(_TypedLists):
    """Stage-1 training: CovPoolFER on HR faces (released CovPoolFER recipe).

    The FSR-FER paper used the released pretrained CovPoolFER model; these are
    the settings of that code (`train2.sh`, `framework.py`): Adam with
    epsilon 0.1, learning rate 0.1 -> 1e-4 by epochs, batch 128, weight decay
    5e-2 (slim l2: wd * sum(w^2) / 2 on conv and dense kernels), center loss
    1e-2 with centre update rate 1 - 0.9, random flip and +-10 degree rotation.

    Attributes:
        batch_size: images per step.
        epochs: passes over the train split (ignored when `steps` > 0).
        steps: total steps; 0 means `epochs` x steps per epoch.
        learning_rate_schedule: "epoch:lr,epoch:lr,..." piecewise constant.
        adam_epsilon: Adam's epsilon (facenet/CovPoolFER used 0.1).
        weight_decay: L2 factor on conv/dense kernels (slim convention).
        center_loss_weight: weight of the center loss on the 128-d embedding
            (0 disables it).
        center_loss_alpha: centre update: c -= (1 - alpha) (c - x).
        train_scales: LR scales sampled per training image; "1" trains on HR
            faces only, as the paper's pretrained model was.
        random_flip: random horizontal flips.
        max_rotation: random rotation range in degrees.
        max_shift: random shift range in pixels (released: none).
        val_scales: scales evaluated on the validation split each time.
        eval_every_epochs: validation (and best.keras) every this many epochs.
        log_every: steps between progress lines and train summaries.
        mixed_precision: run under the mixed_float16 policy.
        distribution_strategy: "default", "one_device", "mirrored" or
            "multi_worker_mirrored" (`fsr_fer_tf.distribute`); batch_size
            is the global batch.
        seed: seed of weights, data order and augmentation.
        init_from: a CovPoolFER `.keras` file of the same architecture whose
            weights start the run (fine-tuning, e.g. an HR-trained model on
            LR faces too); empty: random initialisation. Centres and the
            optimizer start fresh; a resumed run ignores it.
    """

    batch_size: int = 128
    epochs: int = 800
    steps: int = 0
    learning_rate_schedule: tuple = (
        (0, 0.1),
        (120, 0.01),
        (240, 0.001),
        (500, 0.0001),
    )
    adam_epsilon: float = 0.1
    weight_decay: float = 5e-2
    center_loss_weight: float = 1e-2
    center_loss_alpha: float = 0.9
    train_scales: tuple = (1,)
    random_flip: bool = True
    max_rotation: float = 10.0
    max_shift: int = 0
    val_scales: tuple = (1,)
    eval_every_epochs: int = 10
    log_every: int = 50
    mixed_precision: bool = False
    distribution_strategy: str = "default"
    seed: int = 0
    init_from: str = ""

    LIST_FIELDS: typing.ClassVar = {
        "learning_rate_schedule": parse_schedule,
        "train_scales": parse_int_list,
        "val_scales": parse_int_list,
    }


FER_TRAIN_PRESETS = {
    "paper": FERTrainConfig(),
    "demo": FERTrainConfig(
        batch_size=32,
        epochs=6,
        learning_rate_schedule=((0, 0.01), (4, 0.001)),
        weight_decay=5e-4,
        val_scales=(1, 4, 8),
        eval_every_epochs=2,
        log_every=25,
    ),
    # About 75 minutes on 2 CPU cores with oneDNN on (~85 faces/s, 15
    # epochs of FER-2013). Plain Adam (epsilon 1e-7) at 3e-3: one epoch
    # reached 44.8% on val, against 32.8% at 1e-3 and 28.9% with the
    # released epsilon 0.1 at 0.1 (the first sweep of the FER-2013 preset).
    "fer2013": FERTrainConfig(
        batch_size=64,
        epochs=15,
        learning_rate_schedule=(
            (0, 0.003),
            (8, 0.001),
            (12, 0.0003),
            (14, 0.0001),
        ),
        adam_epsilon=1e-7,
        weight_decay=5e-4,
        max_shift=4,
        val_scales=(1, 4, 8),
        eval_every_epochs=2,
        log_every=50,
    ),
}


# Beyond the paper: the multi-scale CovPoolFER of the shipped recognizer's
# low-resolution route (checkpoints/fer2013/fer_fsr.keras), the stage-1 HR
# model fine-tuned on x1..x8 with these settings over its preset
# (`multiscale_finetune_config`). fer2013: its MODEL_CARD's command; demo:
# the same shape at the demo's size (stage 1 ends at 1e-3).
MULTISCALE_FINETUNE = {
    "demo": dict(
        epochs=2,
        learning_rate_schedule=((0, 0.001),),
        eval_every_epochs=2,
    ),
    "fer2013": dict(
        epochs=3,
        learning_rate_schedule=((0, 0.001), (1, 0.0003), (2, 0.0001)),
        eval_every_epochs=1,
    ),
}
MULTISCALE_TRAIN_SCALES = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclasses.dataclass
class FSRTrainConfig(_TypedLists):
    """Stage-2 training: the feature-SR GAN (paper section 3.4).

    Attributes:
        batch_size: HR/LR pairs per step (released: 32).
        steps: generator updates.
        scales: LR scales, one drawn per sample (one model for all scales).
        learning_rate: Adam learning rate of G and D.
        lr_boundaries: steps at which the learning rate is multiplied by
            `lr_decay`.
        lr_decay: factor at each boundary (0.5: halved).
        beta_1: Adam beta_1 (paper: 0 for GAN stability).
        beta_2: Adam beta_2 (the paper does not set it; Adam's default).
        n_critic: critic updates per generator update.
        k: WGAN-div penalty weight (>= 0; 0 turns the penalty off).
        p: WGAN-div penalty power.
        penalty_norm: WGAN-div gradient norm over "all" d x d elements of a
            sample (paper, WGAN-div) or "per_column", averaged over the d
            columns (released code).
        reweight: classification-aware re-weighting of G's losses (Table 2).
        sigma: re-weighting w = (sigma - p_true)^r.
        r: re-weighting exponent.
        reweight_gradient: let w = (sigma - p)^r carry p's gradient, which
            also pushes G to raise the true-class probability (released
            code); False stops it (w only weighs the losses).
        adv_weight: weight of L_gan(G).
        perceptual_weight: weight of L_p (through the head's 128-d layer).
        l2_weight: weight of the feature-wise L2 loss.
        l2_reduction: "mean" or "sum" of squared errors over the d x d map.
        ce_weight: beyond the paper: weight of a cross-entropy term of the
            frozen head on F_sr (0 = off, as in the paper and released code).
        critic_weighting: weight the critic's two expectations by w too
            (released code).
        pretrain_steps: L2-only generator pre-training steps (released 40k).
        pretrain_learning_rate: its learning rate.
        pretrain_lr_boundaries: its halving steps.
        eval_every: validation every this many steps.
        snapshot_steps: GAN steps at which the generator is also exported
            as generator_step<N>.keras (e.g. "600,1200"), for comparing
            training lengths from one run; empty: none.
        eval_images: validation images per scale, a fixed stratified
            subset of the split (0: the whole split).
        log_every: steps between progress lines and train summaries.
        checkpoint_every: steps between checkpoints.
        mixed_precision: run G and D under the mixed_float16 policy.
        distribution_strategy: "default", "one_device", "mirrored" or
            "multi_worker_mirrored" (`fsr_fer_tf.distribute`); batch_size
            is the global batch.
        jit_compile: XLA-compile the G/D computations (not eigh).
        seed: seed of weights, data order, scales and epsilon draws.
    """

    batch_size: int = 32
    steps: int = 400_000
    scales: tuple = (2, 3, 4, 5, 6, 7, 8)
    learning_rate: float = 2e-4
    lr_boundaries: tuple = (20000, 50000, 100000, 200000)
    lr_decay: float = 0.5
    beta_1: float = 0.0
    beta_2: float = 0.999
    n_critic: int = 1
    k: float = 2.0
    p: float = 6.0
    penalty_norm: str = "all"
    reweight: bool = True
    sigma: float = 1.5
    r: float = 1.0
    reweight_gradient: bool = False
    adv_weight: float = 1.0
    perceptual_weight: float = 1.0
    l2_weight: float = 1.0
    l2_reduction: str = "mean"
    ce_weight: float = 0.0
    critic_weighting: bool = False
    pretrain_steps: int = 0
    pretrain_learning_rate: float = 2e-4
    pretrain_lr_boundaries: tuple = (20000,)
    eval_every: int = 5000
    snapshot_steps: tuple = ()
    eval_images: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000
    mixed_precision: bool = False
    distribution_strategy: str = "default"
    jit_compile: bool = False
    seed: int = 0

    LIST_FIELDS: typing.ClassVar = {
        "scales": parse_int_list,
        "lr_boundaries": parse_int_list,
        "pretrain_lr_boundaries": parse_int_list,
        "snapshot_steps": parse_int_list,
    }


FSR_TRAIN_PRESETS = {
    "paper": FSRTrainConfig(),
    "demo": FSRTrainConfig(
        steps=300,
        lr_boundaries=(200,),
        eval_every=100,
        eval_images=350,
        log_every=25,
        checkpoint_every=100,
    ),
    # About an hour on 2 CPU cores with oneDNN on (~1.3 s a GAN step at
    # d = 48, batch 32); validation on a fixed stratified 700 val faces.
    "fer2013": FSRTrainConfig(
        steps=2400,
        lr_boundaries=(1600,),
        eval_every=400,
        eval_images=700,
        log_every=50,
        checkpoint_every=200,
    ),
}

# `--recipe=released`: what the authors' TF1 code does where it departs from
# the paper (DESIGN.md "Stage 2"). Its GAN learning rate 2e-5 steps down at
# 20k, 100k and 200k iterations (train_module_full.py: boundaries
# 10k/20k/50k/100k/200k with values lr, lr, lr/2, lr/2, lr/4, lr/8).
RECIPES = {
    "paper": {"generator": {}, "critic": {}, "train": {}},
    "released": {
        "generator": {
            "use_batch_norm": True,
            "batch_norm_mode": "inference",
            "tail_kernel_size": 8,
            "symmetrize_output": False,
        },
        "critic": {"base_filters": 8, "use_bias": False},
        "train": {
            "r": 2.0,
            "reweight_gradient": True,
            "penalty_norm": "per_column",
            "adv_weight": 1.0,
            "perceptual_weight": 10.0,
            "l2_weight": 0.01,
            "l2_reduction": "sum",
            "critic_weighting": True,
            "pretrain_steps": 40_000,
            "pretrain_learning_rate": 2e-4,
            "pretrain_lr_boundaries": (20000,),
            "learning_rate": 2e-5,
            "lr_boundaries": (20000, 100000, 200000),
        },
    },
}


# A recipe's schedule on the short presets. The released recipe's (40k
# L2-only pre-training steps, then the GAN at 2e-5 decayed at 20k/100k/200k)
# is sized for the paper's 400k steps; on `demo` and `fer2013` the same
# recipe keeps its learning rates and pre-trains for a slice of the preset's
# budget. Applied after the recipe, before flags.
RECIPE_SCHEDULES = {
    "demo": {
        "released": {
            "pretrain_steps": 100,
            "pretrain_lr_boundaries": (),
            "lr_boundaries": (200,),
        }
    },
    "fer2013": {
        "released": {
            "pretrain_steps": 300,
            "pretrain_lr_boundaries": (),
            "lr_boundaries": (1600,),
        }
    },
}


@dataclasses.dataclass
class ISRModelConfig:
    """An image-SR baseline of the paper's Table 1 (`models/isr.py`).

    Attributes:
        channels: feature channels.
        blocks: Meta-SR: residual blocks of its EDSR-baseline encoder;
            RCAN: residual channel-attention blocks per group.
        groups: RCAN: residual groups.
        reduction: RCAN: channel-attention reduction factor.
        meta_hidden: Meta-SR: hidden units of the weight-prediction network.
        res_scale: Meta-SR: residual scaling of the encoder's blocks.
        bicubic_skip: beyond the papers (off in "paper"): the network
            learns the residual over the LR face upsampled by MATLAB bicubic
            (by exactly s, aligned with the HR face), as VDSR does.
    """

    channels: int = 64
    blocks: int = 16
    groups: int = 10
    reduction: int = 16
    meta_hidden: int = 256
    res_scale: float = 1.0
    bicubic_skip: bool = False


ISR_MODELS = ("metasr", "rcan")

# Per preset, per model. "paper": the sizes of the Meta-SR (Hu et al. 2019:
# EDSR-baseline, 64 channels, 16 blocks, 256 hidden units) and RCAN (Zhang et
# al. 2018: 10 groups of 20 blocks, 64 channels, reduction 16) papers.
ISR_MODEL_PRESETS = {
    "paper": {
        "metasr": ISRModelConfig(),
        "rcan": ISRModelConfig(blocks=20),
    },
    "fer2013": {
        "metasr": ISRModelConfig(
            channels=32, blocks=6, meta_hidden=64, bicubic_skip=True
        ),
        "rcan": ISRModelConfig(
            channels=32, blocks=4, groups=2, reduction=8, bicubic_skip=True
        ),
    },
    "demo": {
        "metasr": ISRModelConfig(
            channels=16, blocks=2, meta_hidden=16, bicubic_skip=True
        ),
        "rcan": ISRModelConfig(
            channels=16, blocks=2, groups=1, reduction=4, bicubic_skip=True
        ),
    },
}


@dataclasses.dataclass
class ISRTrainConfig(_TypedLists):
    """Training of an image-SR baseline (L1 on the same LR synthesis).

    Attributes:
        batch_size: HR/LR pairs per step (Meta-SR, RCAN: 16).
        steps: optimizer updates.
        scales: Meta-SR: the scales, one drawn per sample; RCAN: its one
            scale.
        learning_rate: Adam learning rate (both papers: 1e-4).
        lr_boundaries: steps at which it is multiplied by `lr_decay`.
        lr_decay: the factor at each boundary (both papers: halved).
        beta_1: Adam beta_1.
        beta_2: Adam beta_2.
        adam_epsilon: Adam epsilon.
        random_flip: random horizontal flips of the HR face.
        fer_weight: beyond the paper, after SR-FER (seed 002): weight of a
            consistency term of the frozen `--fer_model` between the SR
            and the HR face (0: L1 only, as Meta-SR and RCAN).
        fer_loss: that term: "feature" (mean squared difference of the
            d x d SPD features), "prediction" (KL divergence of the
            softmax predictions, HR's as the target) or "both" (their sum).
        eval_every: validation (PSNR/SSIM; accuracy with --fer_model) every
            this many steps.
        eval_images: validation images per scale, a fixed stratified
            subset (0: the whole split).
        log_every: steps between progress lines and train summaries.
        checkpoint_every: steps between checkpoints.
        mixed_precision: run the SR model under the mixed_float16 policy.
        seed: seed of weights, data order, scales and flips.
        init_from: an image-SR `.keras` file of the same architecture whose
            weights start the run (e.g. fine-tuning an L1 model with
            --fer_weight); empty: random initialisation. The optimizer
            starts fresh; a resumed run ignores it.
    """

    batch_size: int = 16
    steps: int = 1_000_000
    scales: tuple = (2, 3, 4, 5, 6, 7, 8)
    learning_rate: float = 1e-4
    lr_boundaries: tuple = (200000, 400000, 600000, 800000)
    lr_decay: float = 0.5
    beta_1: float = 0.9
    beta_2: float = 0.999
    adam_epsilon: float = 1e-8
    random_flip: bool = True
    fer_weight: float = 0.0
    fer_loss: str = "both"
    eval_every: int = 5000
    eval_images: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000
    mixed_precision: bool = False
    seed: int = 0
    init_from: str = ""

    LIST_FIELDS: typing.ClassVar = {
        "scales": parse_int_list,
        "lr_boundaries": parse_int_list,
    }


ISR_TRAIN_PRESETS = {
    "paper": ISRTrainConfig(),
    "fer2013": ISRTrainConfig(
        steps=3000,
        learning_rate=3e-4,
        lr_boundaries=(2000,),
        eval_every=500,
        eval_images=350,
        log_every=50,
        checkpoint_every=250,
    ),
    "demo": ISRTrainConfig(
        steps=200,
        learning_rate=5e-4,
        lr_boundaries=(150,),
        eval_every=100,
        eval_images=70,
        log_every=25,
        checkpoint_every=100,
    ),
}


def replace(config, **overrides):
    """dataclasses.replace that names an unknown field in a ConfigError."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise errors.ConfigError(
            f"unknown {type(config).__name__} field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}."
        )
    return dataclasses.replace(config, **overrides)


def as_config(cls, config):
    """A `cls` instance from an instance, its dict (get_config) or None.

    Unknown dict keys are a ConfigError naming them.
    """
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, dict):
        return replace(cls(), **config)
    raise errors.ConfigError(
        f"config must be a {cls.__name__} or a dict, got "
        f"{type(config).__name__}."
    )


def preset(presets, name, what):
    """Returns presets[name] or a ConfigError listing the names there are."""
    if name not in presets:
        raise errors.ConfigError(
            f"unknown {what} preset '{name}'; choose one of "
            f"{', '.join(sorted(presets))}."
        )
    return presets[name]


def data_config_from_params(data):
    """The DataConfig a run recorded (the "data" mapping of params.yaml).

    A synthetic set's folder only caches it: if the run was moved and the
    folder is gone, the set is rendered in memory instead (same seed, same
    faces).
    """
    config = replace(DataConfig(), **data)
    if (
        config.data_format == "synthetic"
        and config.data_dir
        and not os.path.isdir(config.data_dir)
    ):
        config = dataclasses.replace(config, data_dir=None)
    return config


def multiscale_finetune_config(preset_name, init_from):
    """The FERTrainConfig that fine-tunes `init_from` on x1..x8.

    The stage-1 preset, then `MULTISCALE_FINETUNE[preset_name]` over it,
    with `train_scales` x1..x8 and `init_from` (the HR model's .keras).
    """
    return replace(
        preset(FER_TRAIN_PRESETS, preset_name, "training"),
        **preset(MULTISCALE_FINETUNE, preset_name, "multi-scale fine-tune"),
        train_scales=MULTISCALE_TRAIN_SCALES,
        init_from=init_from,
    )


# Beyond the paper: the shipped recognizer's G (checkpoints/fer2013/
# generator.keras, tools/ablation_recipes.py's `ms_ce`) is the paper recipe
# plus a cross-entropy term of this weight through the frozen head, trained
# on the multi-scale CovPoolFER; faces of effective scale >= ROUTE_THRESHOLD
# take it, chosen on FER-2013 val (README, Real faces). `fsr-fer-demo`
# chooses its own threshold and route on held-out faces the same way
# (`demo.choose_route`) and falls back to this one when there are none.
ROUTE_RECIPE = "paper"
ROUTE_CE_WEIGHT = 50.0
ROUTE_THRESHOLD = 3.0


def route_stage2_configs(preset_name):
    """(generator, critic, training) configs of the shipped route's G."""
    gen, critic, train = stage2_configs(preset_name, ROUTE_RECIPE)
    return gen, critic, replace(train, ce_weight=ROUTE_CE_WEIGHT)


def stage2_configs(preset_name, recipe):
    """(generator, critic, training) configs of a stage-2 preset and recipe.

    The preset's three configs, then `RECIPES[recipe]` over them, then the
    recipe's schedule on that preset (`RECIPE_SCHEDULES`). Flags the user
    sets go on top of these.
    """
    overlay = preset(RECIPES, recipe, "recipe")
    gen = replace(
        preset(GENERATOR_PRESETS, preset_name, "generator"),
        **overlay["generator"],
    )
    critic = replace(
        preset(CRITIC_PRESETS, preset_name, "critic"), **overlay["critic"]
    )
    train = replace(
        preset(FSR_TRAIN_PRESETS, preset_name, "training"), **overlay["train"]
    )
    schedule = RECIPE_SCHEDULES.get(preset_name, {}).get(recipe, {})
    return gen, critic, replace(train, **schedule)
