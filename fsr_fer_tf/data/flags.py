"""The data flags every entry point shares, and their `DataConfig`.

    from fsr_fer_tf.data import flags as data_flags
    data_flags.define_data_flags()
    ...
    config = data_flags.data_config_from_flags(flags.FLAGS)

`parse_flags` is an `app.run(flags_parser=...)` that reports a bad flag as
one `error:` line with exit status 2, like `errors.cli_main` does for the
errors `main` raises.
"""

import math
import os
import sys

from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors

_DEFAULTS = configs.DataConfig()
DATA_FLAGS = (
    "data_format",
    "data_dir",
    "strict",
    "max_missing",
    "test_fraction",
    "synthetic_train",
    "synthetic_test",
    "synthetic_seed",
)


def define_data_flags(flag_values=flags.FLAGS):
    """Defines --data_format, --data_dir, --strict, --max_missing,
    --test_fraction and --synthetic_{train,test,seed}, with DataConfig's
    defaults. Calling it again is a no-op.

    Args:
        flag_values: the `absl.flags.FlagValues` to define them in.
    """
    if "data_format" in flag_values:
        return
    d = _DEFAULTS
    flags.DEFINE_enum(
        "data_format",
        d.data_format,
        configs.DATA_FORMATS,
        "Data source: 'synthetic' (bundled procedural faces, no download), "
        "'rafdb' (RAF-DB basic as distributed), 'folder' (one sub-folder per "
        "class, optionally under train/ and test/) or 'fer2013_csv'.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir",
        d.data_dir,
        "Dataset root: the RAF-DB 'basic' folder (EmoLabel/, Image/), the "
        "class-folder tree, or the FER2013 CSV file. For 'synthetic', an "
        "optional cache folder.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "strict",
        d.strict,
        "Fail on the first corrupt or truncated image instead of skipping "
        "and reporting it.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "max_missing",
        d.max_missing,
        "Largest tolerated fraction (0..1) of RAF-DB label-file entries "
        "whose image is missing; those are skipped and reported, more fail.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "test_fraction",
        d.test_fraction,
        "For a class-folder tree without train/ and test/ folders: fraction "
        "of each class held out as 'test' (deterministic), in (0, 1).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "synthetic_train",
        d.synthetic_train,
        "Synthetic set: images per class in the train split.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "synthetic_test",
        d.synthetic_test,
        "Synthetic set: images per class in the test split.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "synthetic_seed",
        d.synthetic_seed,
        "Synthetic set: seed of the renderer (same seed, same images).",
        flag_values=flag_values,
    )


def data_config_from_flags(flags_values, **overrides):
    """Builds and validates a `DataConfig` from the data flags.

    Args:
        flags_values: `absl.flags.FLAGS` (parsed) or any object with the
            flags as attributes.
        **overrides: DataConfig fields not set by these flags (e.g.
            image_size).

    Returns:
        `configs.DataConfig`.

    Raises:
        errors.ConfigError: a value out of range, or a data_format that
            needs --data_dir without it.
    """
    values = {name: getattr(flags_values, name) for name in DATA_FLAGS}
    values.update(overrides)
    config = configs.DataConfig(**values)
    validate_data_config(config)
    if config.data_dir:
        # Absolute, so a run's params.yaml points at the data from anywhere
        # (notebooks open it from notebooks/).
        config.data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
    return config


def validate_data_config(config):
    """Raises `errors.ConfigError` (one line, with the fix) for a bad field.

    Args:
        config: a `configs.DataConfig`.
    """
    require = errors.require
    require(
        config.data_format in configs.DATA_FORMATS,
        f"--data_format={config.data_format} is unknown; use one of "
        f"{', '.join(configs.DATA_FORMATS)}.",
    )
    if config.data_format != "synthetic":
        require(
            bool(config.data_dir),
            f"--data_format={config.data_format} needs --data_dir=<path>; "
            "or use --data_format=synthetic (no download).",
        )
    require(
        _finite(config.max_missing) and 0.0 <= config.max_missing <= 1.0,
        f"--max_missing={config.max_missing} must be a fraction in [0, 1] "
        "(e.g. 0.01 tolerates 1% missing images).",
    )
    require(
        _finite(config.test_fraction) and 0.0 < config.test_fraction <= 1.0,
        f"--test_fraction={config.test_fraction} must be in (0, 1], e.g. 0.2 "
        "(1: every image is a test image, to evaluate a folder).",
    )
    for name in ("synthetic_train", "synthetic_test"):
        value = getattr(config, name)
        require(
            isinstance(value, int) and value >= 1,
            f"--{name}={value} must be a whole number >= 1 (images per class).",
        )
    require(
        isinstance(config.synthetic_seed, int) and config.synthetic_seed >= 0,
        f"--synthetic_seed={config.synthetic_seed} must be a whole number "
        ">= 0.",
    )
    require(
        isinstance(config.image_size, int) and config.image_size >= 8,
        f"image_size={config.image_size} must be a whole number >= 8.",
    )


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def parse_flags(argv):
    """An `app.run` flags parser: a bad flag is one `error:` line, exit 2.

    Args:
        argv: the command line, argv[0] being the program.

    Returns:
        The arguments left after the flags, as `app.run` expects.
    """
    # --help lists the key flags of the program (absl keys them by
    # sys.argv[0], a console-script wrapper included), and absl files a flag
    # under the module that called DEFINE: make every flag this package
    # defined (data flags, config flags from flag_utils, ...) a key flag of
    # whichever program parses them.
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if module.startswith("fsr_fer_tf") or "fsr_fer_tf" in module:
            for flag in defined:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
