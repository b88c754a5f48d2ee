"""Loading a `.keras` file a flag names, with one-line errors."""

import os

import keras

from fsr_fer_tf.errors import ConfigError


def load_model_file(path, flag, hint):
    """The model saved at `path` (not compiled).

    Args:
        path: the `.keras` file the flag gave.
        flag: the flag's name, e.g. "--fer_model", for the messages.
        hint: how to get a right file, ending each message.

    Raises:
        ConfigError: no path, no such file, or a file Keras cannot load.
    """
    if not path:
        raise ConfigError(f"{flag} is required; {hint}.")
    if not os.path.isfile(path):
        raise ConfigError(f"{flag} {path} does not exist; {hint}.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 (Keras raises many types)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            f"{flag} {path} is not a loadable .keras model "
            f"({type(e).__name__}: {first[:200]}); {hint}."
        ) from None
