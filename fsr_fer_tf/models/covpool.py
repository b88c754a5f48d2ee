"""CovPoolFER: the stage-1 expression classifier whose SPD feature G upgrades.

Paper sec. 3.1 (eq. 1-2, F = SPD(CNN(I)); eq. 9, C = "the part of CovPoolFER
after SPDNet layers", ending in a 128-d vector) and DESIGN.md "Stage 1". The
model is three functional sub-models, which stage 2 calls separately:

    features: image [B, S, S, 3] (raw 0..255) -> conv map [B, S/8, S/8, c]
    spd:      conv map -> LogEig feature F [B, d, d]
    head:     F [B, d, d] -> (embedding [B, 128], logits [B, num_classes])

and the full `CovPoolFER` model, image -> logits, is built from them, so
`model.get_layer("features" | "spd" | "head")` works also after a `.keras`
save/load (`covpoolfer_parts` does it with a check).

Verified against the released TF1 code (d-acharya/CovPoolFER
`src/models/covpoolnet.py` and `covpoolnet2.py`; nanfangAlan/FSRFER
`lib/covpoolnet.py`, whose `inference` / `inference_middle` are the split used
for FSR, and `lib/utils.py`, whose checkpoint variable list confirms it):

- Trunk: six `slim.conv2d` 3x3, stride 1, 'SAME', widths 64, 96, 128, 128,
  256, 256 (`Conv2d_1..5`, `Conv2dfo_6`), 2x2/2 'VALID' max-pool after convs
  1, 2 and 4: 100 -> 50 -> 25 -> 12, a 12x12x256 map (144 positions).
- Batch-norm: the slim `arg_scope` sets `normalizer_fn=slim.batch_norm` (decay
  0.995, epsilon 1e-3) on every conv AND fully-connected layer, so each is
  conv/FC (no bias) -> BN -> activation. slim's batch_norm defaults to
  `scale=False`: the checkpoint has BatchNorm/beta but no gamma. We match it
  (BN with `scale=False`). slim.conv2d's default ReLU plus the explicit
  `tf.nn.relu` is one ReLU.
- SPD: covariance (centred, / (N − 1), + 1e-4·trace·I), one BiMap 256 -> 128
  (QR-initialised `orth_weight0`, d_out = d_in / 2), ReEig (clip 1e-4..1e4),
  LogEig; the released code has no second BiMap (commented out).
- Head: flatten the d x d LogEig matrix (both triangles, d² values) -> `fc_1`
  2000 -> BN -> ReLU -> `fc_2` 128 -> BN = the 128-d embedding (`net_f`,
  taken after BN and BEFORE the ReLU: FSRFER's perceptual loss uses it) ->
  ReLU -> logits.
- Weights: `truncated_normal(stddev=0.1)` for convs and FCs (used here too);
  L2 weight decay 5e-2 through `weights_regularizer` (left to the trainer:
  the config has no field for it, and BiMap's W was not decayed).
- Input: `tf.image.per_image_standardization` in `train.py`, facenet
  `prewhiten` in FSRFER; here a `PerImageStandardization` layer inside
  `features`, so the model takes raw 0..255 pixels.
- Difference kept out on purpose: the released classifier has one more
  layer between fc_2's ReLU and the logits, `Bottleneck` (FC 7 -> BN,
  `--embedding_size 7`) followed by facenet's `Logits` FC (7, with bias, no
  BN). We follow the paper / DESIGN.md: fc_2 -> ReLU -> logits FC (with
  bias, no BN). `CovPoolFERConfig` has no field to add the Bottleneck.

Mixed precision: the standardisation, SPD layers (`spd_dtype`), the
embedding's batch-norm and the logits are float32 islands; under
`mixed_float16` the trunk and fc_1 run in float16.
"""

import dataclasses

import keras

from fsr_fer_tf.configs import CovPoolFERConfig
from fsr_fer_tf.errors import ConfigError
from fsr_fer_tf.errors import UserError
from fsr_fer_tf.errors import require
from fsr_fer_tf.layers.batchnorm import FusedBatchNormalization
from fsr_fer_tf.layers.covpool import CovariancePooling
from fsr_fer_tf.layers.covpool import PerImageStandardization
from fsr_fer_tf.layers.spd import BiMap
from fsr_fer_tf.layers.spd import LogEig
from fsr_fer_tf.layers.spd import ReEig
from fsr_fer_tf.layers.spd import ReEigLogEig
from fsr_fer_tf.models import files

PART_NAMES = ("features", "spd", "head")


def _dense_initializer():
    # The released slim arg_scope: truncated_normal_initializer(stddev=0.1).
    return keras.initializers.TruncatedNormal(stddev=0.1)


def feature_map_size(image_size, stem_stride=1, pool_after=(1, 2, 4)):
    """Side of the trunk's output map: the first conv's stride ('SAME'),
    then one 'VALID' 2x2 pool per entry of `pool_after` (100 -> 12)."""
    size = -(-image_size // stem_stride)
    for _ in pool_after:
        size //= 2
    return size


def build_features(
    image_size,
    conv_filters,
    batchnorm_momentum,
    batchnorm_epsilon,
    stem_stride=1,
    pool_after=(1, 2, 4),
    sync_batch_norm=False,
    fused_batch_norm=False,
):
    """The trunk F(): raw image [B, S, S, 3] -> conv map [B, h, h, c].

    With `fused_batch_norm`, its batch-norms run TensorFlow's fused kernel
    (`layers.batchnorm.FusedBatchNormalization`: the same layer, weights
    and values).
    """
    batch_norm = (
        FusedBatchNormalization
        if fused_batch_norm
        else keras.layers.BatchNormalization
    )
    image = keras.Input((image_size, image_size, 3), name="image")
    x = PerImageStandardization(name="standardize")(image)
    for i, filters in enumerate(conv_filters, start=1):
        # Conv without bias: the following BN's beta is the bias (slim).
        x = keras.layers.Conv2D(
            filters,
            3,
            strides=stem_stride if i == 1 else 1,
            padding="same",
            use_bias=False,
            kernel_initializer=_dense_initializer(),
            name=f"conv_{i}",
        )(x)
        x = batch_norm(
            momentum=batchnorm_momentum,
            epsilon=batchnorm_epsilon,
            scale=False,
            name=f"conv_{i}_bn",
            synchronized=sync_batch_norm,
        )(x)
        x = keras.layers.ReLU(name=f"conv_{i}_relu")(x)
        if i in pool_after:
            x = keras.layers.MaxPooling2D(2, 2, name=f"pool_{i}")(x)
    return keras.Model(image, x, name="features")


def build_spd(
    map_size,
    channels,
    bimap_dim,
    cov_epsilon,
    reeig_epsilon,
    spd_dtype,
    fused=False,
):
    """SPD(): conv map [B, h, w, c] -> LogEig feature [B, d, d] (eq. 1-2).

    With `fused`, ReEig and LogEig are one `ReEigLogEig` layer (one eigh).
    """
    conv_map = keras.Input((map_size, map_size, channels), name="conv_map")
    x = CovariancePooling(cov_epsilon, dtype=spd_dtype, name="cov_pool")(
        conv_map
    )  # (B, c, c)
    x = BiMap(bimap_dim, dtype=spd_dtype, name="bimap")(x)  # (B, d, d)
    if fused:
        x = ReEigLogEig(reeig_epsilon, dtype=spd_dtype, name="reeig_logeig")(x)
    else:
        x = ReEig(reeig_epsilon, dtype=spd_dtype, name="reeig")(x)
        x = LogEig(dtype=spd_dtype, name="logeig")(x)
    return keras.Model(conv_map, x, name="spd")


def build_head(
    bimap_dim,
    fc_units,
    num_classes,
    batchnorm_momentum,
    batchnorm_epsilon,
    dropout,
    sync_batch_norm=False,
):
    """C(): LogEig feature [B, d, d] -> (embedding [B, 128], logits)."""
    feature = keras.Input((bimap_dim, bimap_dim), name="spd_feature")
    x = keras.layers.Flatten(name="flatten")(feature)  # (B, d*d)

    def fc_bn(x, units, name, **bn_kwargs):
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = keras.layers.Dense(
            units,
            use_bias=False,
            kernel_initializer=_dense_initializer(),
            name=name,
        )(x)
        return keras.layers.BatchNormalization(
            momentum=batchnorm_momentum,
            epsilon=batchnorm_epsilon,
            scale=False,
            name=f"{name}_bn",
            synchronized=sync_batch_norm,
            **bn_kwargs,
        )(x)

    x = fc_bn(x, fc_units[0], "fc_1")
    x = keras.layers.ReLU(name="fc_1_relu")(x)
    # The embedding of the perceptual loss, before the ReLU; float32 so the
    # loss on it is float32 under mixed precision.
    embedding = fc_bn(x, fc_units[1], "fc_2", dtype="float32")
    x = keras.layers.ReLU(name="fc_2_relu")(embedding)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="logits_dropout")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=_dense_initializer(),
        dtype="float32",
        name="logits",
    )(x)
    return keras.Model(feature, [embedding, logits], name="head")


@keras.saving.register_keras_serializable(package="fsr_fer")
class CovPoolFER(keras.Model):
    """CovPoolFER (Acharya et al. 2018) as used by FSR-FER (paper sec. 3.1).

    image [B, S, S, 3], raw 0..255 pixels -> logits [B, num_classes]
    (float32). The arguments are the fields of `CovPoolFERConfig`; build it
    with `build_covpoolfer(config)`. Layers named "features", "spd" and
    "head" are the sub-models of the module docstring.

    Args:
        image_size: side of the square input face (paper: 100).
        conv_filters: widths of the six trunk convs.
        bimap_dim: BiMap output size d.
        fc_units: (fc_1 width, embedding width).
        num_classes: number of classes.
        cov_epsilon: CovariancePooling regulariser.
        reeig_epsilon: ReEig floor.
        spd_dtype: "float32" or "float64", the SPD layers' dtype.
        batchnorm_momentum: BN moving-average decay.
        batchnorm_epsilon: BN epsilon.
        dropout: dropout rate before each head FC.
        stem_stride: stride of the first conv (1 in the released code).
        pool_after: 1-based conv indices followed by 2x2 max-pooling.
        fused_spd: ReEig and LogEig as one layer (one eigh).
        sync_batch_norm: batch-norm statistics over all replicas' batches.
        metadata: a JSON-serialisable dict of facts about how the model
            was trained (preset, data, colour of its faces, scales), kept
            in its `.keras` file; `train_fer` fills it. Not used in `call`.
        **kwargs: `keras.Model` arguments (name, trainable).

    Example:
    >>> from fsr_fer_tf.configs import COVPOOL_PRESETS
    >>> model = build_covpoolfer(COVPOOL_PRESETS["demo"])
    >>> features, spd, head = covpoolfer_parts(model)
    >>> tuple(spd.output.shape)
    (None, 32, 32)
    """

    def __init__(
        self,
        image_size=100,
        conv_filters=(64, 96, 128, 128, 256, 256),
        bimap_dim=128,
        fc_units=(2000, 128),
        num_classes=7,
        cov_epsilon=1e-4,
        reeig_epsilon=1e-4,
        spd_dtype="float32",
        batchnorm_momentum=0.995,
        batchnorm_epsilon=1e-3,
        dropout=0.0,
        stem_stride=1,
        pool_after=(1, 2, 4),
        fused_spd=False,
        sync_batch_norm=False,
        fused_batch_norm=False,
        metadata=None,
        **kwargs,
    ):
        conv_filters = tuple(int(f) for f in conv_filters)
        fc_units = tuple(int(u) for u in fc_units)
        pool_after = tuple(int(i) for i in pool_after)
        _validate(image_size, conv_filters, bimap_dim, fc_units, spd_dtype)
        require(
            stem_stride in (1, 2),
            f"stem_stride must be 1 or 2, got {stem_stride!r}",
        )
        require(
            list(pool_after) == sorted(set(pool_after))
            and all(1 <= i <= len(conv_filters) for i in pool_after),
            f"pool_after must be increasing conv indices in 1..6, got "
            f"{pool_after}",
        )
        map_size = feature_map_size(image_size, stem_stride, pool_after)
        require(
            map_size >= 2,
            f"image_size {image_size} with stem_stride {stem_stride} and "
            f"{len(pool_after)} pools leaves a {map_size}x{map_size} map; "
            "the covariance needs at least 2x2",
        )

        # === Layers ===
        features = build_features(
            image_size,
            conv_filters,
            batchnorm_momentum,
            batchnorm_epsilon,
            stem_stride,
            pool_after,
            sync_batch_norm,
            fused_batch_norm,
        )
        spd = build_spd(
            map_size,
            conv_filters[-1],
            bimap_dim,
            cov_epsilon,
            reeig_epsilon,
            spd_dtype,
            fused_spd,
        )
        head = build_head(
            bimap_dim,
            fc_units,
            num_classes,
            batchnorm_momentum,
            batchnorm_epsilon,
            dropout,
            sync_batch_norm,
        )

        # === Functional Model ===
        image = keras.Input((image_size, image_size, 3), name="image")
        _, logits = head(spd(features(image)))
        super().__init__(inputs=image, outputs=logits, **kwargs)

        # === Config ===
        self.image_size = int(image_size)
        self.conv_filters = conv_filters
        self.bimap_dim = int(bimap_dim)
        self.fc_units = fc_units
        self.num_classes = int(num_classes)
        self.cov_epsilon = float(cov_epsilon)
        self.reeig_epsilon = float(reeig_epsilon)
        self.spd_dtype = str(spd_dtype)
        self.batchnorm_momentum = float(batchnorm_momentum)
        self.batchnorm_epsilon = float(batchnorm_epsilon)
        self.dropout = float(dropout)
        self.stem_stride = int(stem_stride)
        self.pool_after = pool_after
        self.fused_spd = bool(fused_spd)
        self.sync_batch_norm = bool(sync_batch_norm)
        self.fused_batch_norm = bool(fused_batch_norm)
        self.metadata = dict(metadata or {})

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_size": self.image_size,
            "conv_filters": list(self.conv_filters),
            "bimap_dim": self.bimap_dim,
            "fc_units": list(self.fc_units),
            "num_classes": self.num_classes,
            "cov_epsilon": self.cov_epsilon,
            "reeig_epsilon": self.reeig_epsilon,
            "spd_dtype": self.spd_dtype,
            "batchnorm_momentum": self.batchnorm_momentum,
            "batchnorm_epsilon": self.batchnorm_epsilon,
            "dropout": self.dropout,
            "stem_stride": self.stem_stride,
            "pool_after": list(self.pool_after),
            "fused_spd": self.fused_spd,
            "sync_batch_norm": self.sync_batch_norm,
            "fused_batch_norm": self.fused_batch_norm,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _validate(image_size, conv_filters, bimap_dim, fc_units, spd_dtype):
    require(
        len(conv_filters) == 6,
        f"conv_filters must list the six trunk widths, got {conv_filters}",
    )
    require(
        len(fc_units) == 2,
        f"fc_units must be (fc_1 width, embedding width), got {fc_units}",
    )
    require(
        image_size >= 16,
        f"image_size must be >= 16 (three 2x2 pools leave a 2x2 map "
        f"at 16), got {image_size}",
    )
    require(
        1 <= bimap_dim <= conv_filters[-1],
        f"bimap_dim must be in [1, conv_filters[-1]={conv_filters[-1]}], "
        f"got {bimap_dim}",
    )
    require(
        spd_dtype in ("float32", "float64"),
        f"spd_dtype must be 'float32' or 'float64', got {spd_dtype!r}",
    )


def build_covpoolfer(config=None, name="covpoolfer", metadata=None):
    """Builds CovPoolFER from a `CovPoolFERConfig` (default: the paper's).

    Args:
        config: a `CovPoolFERConfig`, e.g. `COVPOOL_PRESETS["demo"]`.
        name: model name.
        metadata: facts about its training, kept in the `.keras` file
            (`CovPoolFER`'s `metadata`).

    Returns:
        A `CovPoolFER` keras.Model, image -> logits.

    Raises:
        ConfigError: for sizes that do not fit (a ValueError).
    """
    if config is None:
        config = CovPoolFERConfig()
    if not isinstance(config, CovPoolFERConfig):
        raise ConfigError(
            f"build_covpoolfer takes a CovPoolFERConfig, got "
            f"{type(config).__name__}; use configs.COVPOOL_PRESETS[name]."
        )
    return CovPoolFER(
        **dataclasses.asdict(config), name=name, metadata=metadata
    )


def covpoolfer_parts(model):
    """Returns the (features, spd, head) sub-models of a CovPoolFER model.

    Args:
        model: a model from `build_covpoolfer`, or one loaded from its
            `.keras` file.

    Returns:
        features: image [B, S, S, 3] -> conv map [B, h, w, c].
        spd: conv map -> LogEig feature [B, d, d].
        head: [B, d, d] -> (embedding [B, fc_units[1]], logits).

    Raises:
        UserError (a ValueError): if `model` is not a CovPoolFER.
    """
    names = [layer.name for layer in getattr(model, "layers", [])]
    parts = []
    for part in PART_NAMES:
        layer = None
        if part in names:
            layer = model.get_layer(part)
        if not isinstance(layer, keras.Model):
            raise UserError(
                f"expected a CovPoolFER model with sub-models {PART_NAMES}, "
                f"got {type(model).__name__} {getattr(model, 'name', '')!r} "
                f"with layers {names[:8]}; build it with "
                "fsr_fer_tf.models.covpool.build_covpoolfer(config) or load "
                "a .keras file saved from one (keras.saving.load_model)."
            )
        parts.append(layer)
    return tuple(parts)


def model_metadata(model):
    """The `metadata` dict of a CovPoolFER model ({} for other models)."""
    return dict(getattr(model, "metadata", None) or {})


def load_covpoolfer(path, flag):
    """Loads a stage-1 `.keras` CovPoolFER named by the flag `flag`.

    Raises:
        ConfigError: missing file, not a Keras file, or not a CovPoolFER.
    """
    hint = (
        "train one with `python -m fsr_fer_tf.train_fer`, which writes "
        "MODEL_DIR/final.keras"
    )
    model = files.load_model_file(path, flag, hint)
    try:
        covpoolfer_parts(model)
    except UserError as e:
        raise ConfigError(
            f"{flag} {path} is not a CovPoolFER model; {hint}."
        ) from e
    return model
