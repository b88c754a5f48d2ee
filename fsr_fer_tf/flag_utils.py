"""absl flags generated from the dataclass configs.

Each field of a training config becomes a flag whose default is the paper
preset's value and whose help text is the field's entry in the dataclass's
`Attributes:` docstring, so `--help` and the code cannot disagree. A run's
config is then resolved in this order, later winning:

    preset (--preset) < --config_file (YAML) < --params_override < flags
    given explicitly on the command line (or in a --flagfile).
"""

import dataclasses
import re

import yaml
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf.train import loop


def attribute_docs(cls):
    """Parses the `Attributes:` section of a dataclass docstring.

    Returns:
        {field name: one-line help text}.
    """
    doc = cls.__doc__ or ""
    section = doc.split("Attributes:", 1)[-1] if "Attributes:" in doc else ""
    docs, name = {}, None
    for line in section.splitlines():
        m = re.match(r"^\s{4,8}(\w+): (.*)$", line)
        if m and m.group(1) in {f.name for f in dataclasses.fields(cls)}:
            name = m.group(1)
            docs[name] = m.group(2).strip()
        elif name and line.strip():
            docs[name] += " " + line.strip()
        elif not line.strip():
            name = None
    return docs


def define_config_flags(
    default_config, exclude=(), flag_values=flags.FLAGS, prefix=""
):
    """Defines a flag per field of `default_config` (a dataclass instance).

    Args:
        default_config: supplies each flag's default (the paper's values).
        exclude: field names not to expose.
        flag_values: the FlagValues to define them in.
        prefix: prepended to each flag name (e.g. "g_" gives --g_filters).

    Returns:
        The names of the flags defined.
    """
    cls = type(default_config)
    docs = attribute_docs(cls)
    names = []
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        default = getattr(default_config, field.name)
        help_text = docs.get(field.name)
        if not help_text:
            raise ValueError(f"{cls.__name__}.{field.name} has no docstring")
        if field.name in getattr(cls, "LIST_FIELDS", {}):
            # A typed tuple inside; its flag is the text the config parses.
            default = configs.list_text(default)
        help_text += f" (paper preset: {default!r})"
        if isinstance(default, tuple):
            raise ValueError(
                f"{cls.__name__}.{field.name}: tuples are not flags; exclude it"
            )
        if isinstance(default, bool):
            define = flags.DEFINE_bool
        elif isinstance(default, int):
            define = flags.DEFINE_integer
        elif isinstance(default, float):
            define = flags.DEFINE_float
        else:
            define = flags.DEFINE_string
            default = None if default is None else str(default)
        define(prefix + field.name, default, help_text, flag_values=flag_values)
        names.append(prefix + field.name)
    return names


def define_resume_flag(flag_values=flags.FLAGS):
    """Defines --resume (default on) of the training entry points."""
    flags.DEFINE_bool(
        "resume",
        True,
        "Continue from the latest checkpoint in --model_dir; with --noresume "
        "a folder holding a checkpoint is refused instead of overwritten.",
        flag_values=flag_values,
    )


def define_override_flags(flag_values=flags.FLAGS):
    """Defines --config_file and --params_override."""
    flags.DEFINE_string(
        "config_file",
        None,
        "YAML file of config field: value pairs, applied over the preset.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "params_override",
        None,
        "Config overrides as 'field=value,field=value' or a YAML mapping, "
        "applied over --config_file.",
        flag_values=flag_values,
    )


def _parse_overrides(text):
    text = (text or "").strip()
    if not text:
        return {}
    if "=" in text and not text.startswith("{"):
        # Split only at commas that start a new "field=": values may hold
        # commas themselves (scales=2,3,4 or a learning-rate schedule).
        out = {}
        for item in re.split(r",(?=\s*\w+\s*=)", text):
            key, sep, value = item.partition("=")
            if not sep:
                raise errors.ConfigError(
                    f"--params_override item '{item}' is not field=value."
                )
            # Raw text: _coerce parses it for the field's type (YAML would
            # read a str field such as "0:0.1" as a base-60 number).
            out[key.strip()] = _Raw(value.strip())
        return out
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise errors.ConfigError(
            "--params_override must be 'field=value,...' or a YAML mapping."
        )
    return data


class _Raw(str):
    """An override given as field=value text, not yet parsed."""


def _coerce(config, key, value):
    """Converts an override to the type of the config field it replaces."""
    current = getattr(config, key)
    if key in getattr(type(config), "LIST_FIELDS", {}):
        return value  # text, a list or a tuple: the config parses it
    if isinstance(value, _Raw):
        if isinstance(current, str) or (current is None and value != "null"):
            return str(value)
        value = yaml.safe_load(value)
    if current is None or value is None:
        return value
    kind = type(current)
    try:
        if kind is bool and not isinstance(value, bool):
            raise ValueError
        if kind is float and isinstance(value, (int, float)):
            return float(value)
        if kind is str:
            return str(value)
        return kind(value)
    except (TypeError, ValueError):
        raise errors.ConfigError(
            f"{key} must be a {kind.__name__}, got {value!r}."
        ) from None


def resolve_config(
    preset_config, names, flag_values=flags.FLAGS, prefix="", use_overrides=True
):
    """Applies --config_file, --params_override and explicit flags to a preset.

    Args:
        preset_config: the dataclass instance of the chosen preset.
        names: the flags `define_config_flags` defined for it.
        flag_values: parsed FlagValues.
        prefix: the prefix the flags were defined with.
        use_overrides: apply --config_file and --params_override (which
            address one config of an entry point, its training config).

    Returns:
        A new dataclass instance.
    """
    overrides = {}
    if (
        use_overrides
        and "config_file" in flag_values
        and flag_values.config_file
    ):
        data = loop.read_yaml(flag_values.config_file)
        if not isinstance(data, dict):
            raise errors.ConfigError(
                f"--config_file {flag_values.config_file} must hold a mapping "
                "of field: value."
            )
        overrides.update(data)
    if use_overrides and "params_override" in flag_values:
        overrides.update(_parse_overrides(flag_values.params_override))
    for name in names:
        if flag_values[name].present:
            overrides[name[len(prefix) :]] = flag_values[name].value
    # Unknown keys reach configs.replace, which names them in a ConfigError.
    overrides = {
        k: _coerce(preset_config, k, v) if hasattr(preset_config, k) else v
        for k, v in overrides.items()
    }
    return configs.replace(preset_config, **overrides)
