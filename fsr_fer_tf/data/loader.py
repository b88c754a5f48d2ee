"""`load_dataset`: one entry to every data source, chosen by `data_format`."""

import os

from fsr_fer_tf import configs
from fsr_fer_tf import errors


def load_dataset(config):
    """Reads the data source `config` names.

    Args:
        config: a `configs.DataConfig`.

    Returns:
        A `sources.Dataset` with canonical labels; what was not taken is in
        its `skipped` list.

    Raises:
        errors.ConfigError: an unknown data_format, or no data_dir for a
            format that needs one.
        errors.DataError: the data on disk is missing or broken.
    """
    data_format = config.data_format
    if data_format not in configs.DATA_FORMATS:
        raise errors.ConfigError(
            f"unknown data_format {data_format!r}; use one of "
            f"{', '.join(configs.DATA_FORMATS)}."
        )
    if data_format == "synthetic":
        # Imported here: a reader pulls only its own dependencies.
        from fsr_fer_tf.data import synthetic

        return synthetic.load_synthetic(config)
    if not config.data_dir:
        raise errors.ConfigError(
            f"--data_format={data_format} needs --data_dir (the "
            f"{_WHAT[data_format]})."
        )
    config = _with_expanded_dir(config)
    if data_format == "rafdb":
        from fsr_fer_tf.data import rafdb

        return rafdb.load_rafdb(config)
    if data_format == "folder":
        from fsr_fer_tf.data import folder

        return folder.load_folder(config)
    from fsr_fer_tf.data import fer2013

    return fer2013.load_fer2013(config)


_WHAT = {
    "rafdb": "RAF-DB 'basic' folder holding EmoLabel/ and Image/",
    "folder": "folder with one sub-folder per class",
    "fer2013_csv": "path of fer2013.csv",
}


def _with_expanded_dir(config):
    import dataclasses

    path = os.path.expanduser(config.data_dir)
    if path == config.data_dir:
        return config
    return dataclasses.replace(config, data_dir=path)
