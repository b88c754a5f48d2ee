"""Prints what a dataset holds, as the readers see it, in JSON.

    python -m fsr_fer_tf.data.inspect --data_format=rafdb --data_dir=PATH
    fsr-fer-inspect --data_format=folder --data_dir=PATH

Images per split and class (canonical names), every skipped file or class
with its reason, and notes (e.g. how a split was derived). Run it before
training on a new copy of a dataset. Progress goes to stderr, JSON to stdout.
"""

import json

from absl import app
from absl import flags

from fsr_fer_tf import errors
from fsr_fer_tf.data import flags as data_flags
from fsr_fer_tf.data import loader

data_flags.define_data_flags()


def main(argv):
    """Loads the dataset the flags name and prints its summary.

    (`errors.cli_main` refuses positional arguments.)
    """
    del argv
    config = data_flags.data_config_from_flags(flags.FLAGS)
    try:
        dataset = loader.load_dataset(config)
    except errors.NoUsableDataError as e:
        # Showing what was skipped is this command's job: the JSON first,
        # then the one error line (exit status 2).
        print(json.dumps(e.dataset.summary(), indent=2), flush=True)
        raise errors.DataError(
            f"{e.problem} ({len(e.dataset.skipped)} skipped); every skipped "
            "file and its reason is in the JSON above."
        ) from None
    print(json.dumps(dataset.summary(), indent=2), flush=True)


def run():
    """Console-script entry (`fsr-fer-inspect`)."""
    app.run(errors.cli_main(main), flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
