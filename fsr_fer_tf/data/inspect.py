"""Prints what a dataset holds, as the readers see it, in JSON.

    python -m fsr_fer_tf.data.inspect --data_format=rafdb --data_dir=PATH
    fsr-fer-inspect --data_format=folder --data_dir=PATH

Images per split and class (canonical names), every skipped file or class
with its reason, and notes (e.g. how a split was derived). Run it before
training on a new copy of a dataset. Progress goes to stderr, JSON to stdout.
"""

import json
import os

# TensorFlow's start-up INFO lines would bury the one `error:` line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fsr_fer_tf import errors  # noqa: E402
from fsr_fer_tf.data import flags as data_flags  # noqa: E402
from fsr_fer_tf.data import loader  # noqa: E402

data_flags.define_data_flags()


def main(argv):
    """Loads the dataset the flags name and prints its summary.

    (`errors.cli_main` refuses positional arguments.)
    """
    del argv
    config = data_flags.data_config_from_flags(flags.FLAGS)
    dataset = loader.load_dataset(config)
    print(json.dumps(dataset.summary(), indent=2), flush=True)


def run():
    """Console-script entry (`fsr-fer-inspect`)."""
    app.run(errors.cli_main(main), flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
