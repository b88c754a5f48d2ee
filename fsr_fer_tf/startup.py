"""Quiet TensorFlow's C++ start-up notices when the package is imported.

Whether TensorFlow prints notices at import depends on the machine: the CPU
feature guard ("This TensorFlow binary is optimized to use available CPU
instructions ..."), the oneDNN notice ("oneDNN custom operations are on"),
each preceded by absl's "WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR". They would bury the
one `error:` line an entry point prints for a bad flag or input, and the
oneDNN notice ignores TF_CPP_MIN_LOG_LEVEL. So, unless the user set
TF_CPP_MIN_LOG_LEVEL (any value: then TensorFlow logs as it always does),
`import fsr_fer_tf`:

- sets TF_CPP_MIN_LOG_LEVEL=2 (later C++ INFO and WARNING lines, e.g. one
  per corrupt image the readers skip and report themselves, stay quiet;
  errors still print);
- imports TensorFlow with file descriptor 2 captured, then writes back
  everything it printed except those notices.

Nothing is done when TensorFlow was imported before this package.

Speed: on x86-64, `import fsr_fer_tf` also turns TensorFlow's oneDNN CPU
kernels on (TF_ENABLE_ONEDNN_OPTS=1) unless the user set that variable.
TensorFlow enables them by default only on CPUs with AVX512-VNNI, AMX and
the like; on this project's 2-core AVX2 machine they made a stage-1 step
1.4x and the generator's forward pass 3.5x faster (README, Speed).
TF_ENABLE_ONEDNN_OPTS=0 turns them off.
"""

import contextlib
import os
import platform
import re
import sys
import tempfile

_ABSL_PREAMBLE = (
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR"
)
# An INFO line of TensorFlow's C++ logging: "I0000 00:00:1796.. 123 file:N]".
_INFO_LINE = re.compile(r"^I\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w./-]+:\d+\] ")
# The second line of the CPU feature guard's notice.
_CONTINUATION = "To enable the following instructions:"


def should_quiet(environ=None, modules=None):
    """True when the user chose no TF log level and TF is not loaded yet."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    return "TF_CPP_MIN_LOG_LEVEL" not in environ and "tensorflow" not in modules


def onednn_default(environ=None, modules=None, machine=None):
    """True when this package should turn oneDNN on: x86-64, the user set
    no TF_ENABLE_ONEDNN_OPTS, and TensorFlow is not loaded yet."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    machine = (machine or platform.machine()).lower()
    return (
        machine in ("x86_64", "amd64")
        and "TF_ENABLE_ONEDNN_OPTS" not in environ
        and "tensorflow" not in modules
    )


def drop_notices(text):
    """`text` without TensorFlow's start-up INFO notices (see module doc).

    Warnings, errors and anything else (Python warnings, tracebacks) stay,
    in order.
    """
    kept = []
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if (
            bare == _ABSL_PREAMBLE
            or _INFO_LINE.match(bare)
            or bare.startswith(_CONTINUATION)
        ):
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def notices_hidden():
    """Captures file descriptor 2 (C++ and Python writes) in the block, then
    writes back all of it but the start-up notices (`drop_notices`)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = drop_notices(capture.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
