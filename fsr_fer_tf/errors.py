"""User-facing errors: one clear line naming the problem and the fix.

Library code raises `UserError` (or a subclass) for anything the user can fix:
a missing folder, a corrupt file, a bad flag value. The command-line entry
points wrap `main` with `cli_main`, which prints the message as a single
`error:` line on stderr and exits with status 2 instead of a traceback.
"""

import functools
import sys


class UserError(ValueError):
    """A problem with the user's input, with the fix in its message."""

    # Raised while tf.function / tf.data trace user code, AutoGraph would
    # re-wrap it in a StagingError that `cli_main` does not recognise.
    ag_pass_through = True


class DataError(UserError):
    """A problem with a dataset on disk (missing, corrupt, mislabelled)."""


class NoUsableDataError(DataError):
    """A dataset in which no image could be used.

    Attributes:
        dataset: the `sources.Dataset` as read (empty splits, and every
            skipped file with its reason), for `fsr-fer-inspect` to print.
        problem: the message without the pointer to `fsr-fer-inspect`.
    """

    def __init__(self, problem, dataset):
        super().__init__(
            f"{problem} ({len(dataset.skipped)} skipped); run "
            "fsr-fer-inspect with the same data flags for every skipped file "
            "and its reason."
        )
        self.problem = problem
        self.dataset = dataset


class ConfigError(UserError):
    """A bad flag or config value."""


def require(condition, message, error=ConfigError):
    """Raises `error(message)` unless `condition` holds."""
    if not condition:
        raise error(message)


def cli_main(main=None, *, positional=False):
    """Wraps an absl `main(argv)` so that a `UserError` ends the program with
    one line on stderr (exit status 2) rather than a traceback. Positional
    arguments are such an error unless `positional` (for entry points that
    take inputs, as `fsr-fer-predict INPUT...`).

    Use as `@cli_main` or `@cli_main(positional=True)`.
    """
    if main is None:
        return functools.partial(cli_main, positional=positional)

    @functools.wraps(main)
    def wrapper(argv):
        try:
            if len(argv) > 1 and not positional:
                raise ConfigError(
                    f"unexpected arguments {' '.join(argv[1:])}; flags look "
                    "like --name=value."
                )
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper
