"""Runs several command lines of this package in ONE interpreter.

    python tests/_forked_commands.py SPEC.json

SPEC.json: {"commands": [[arg, ...], ...], "out_dir": DIR}, each command
the arguments after `python`: ["-m", "fsr_fer_tf.predict", ...],
["tools/x.py", ...] or ["-c", CODE]. Each starting Python would import
fsr_fer_tf (TensorFlow) again, so this process imports it once, with
file descriptor 2 in DIR/import.err, and then forks a child per command.
The child runs the command as `python <command>` would (as __main__, with
its sys.argv and sys.path[0]), stdin from /dev/null, file descriptors 1
and 2 in DIR/<i>.out and DIR/<i>.err, and ends with the exit status
Python would have given: 0, SystemExit's code, or 1 after an uncaught
exception (its traceback on stderr). DIR/<i>.status holds it. Children run
one after the other; each starts from this process's state, so none sees
another's flags or modules.

tests/conftest.py's `run_commands` fixture wraps this.
"""

import json
import os
import runpy
import sys
import traceback


def _redirect(fd, path, flags):
    target = os.open(path, flags, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _run(args):
    """Runs one command line in this (child) process; returns its status."""
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] == "-c":
            sys.argv = ["-c", *args[2:]]
            sys.path[0] = ""
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = list(args)
            sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:  # as Python reports an uncaught exception
        traceback.print_exc()
        return 1
    return 0


def main(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    out_dir = spec["out_dir"]
    saved = os.dup(2)
    _redirect(2, os.path.join(out_dir, "import.err"), os.O_WRONLY | os.O_CREAT)
    try:
        import fsr_fer_tf  # noqa: F401  (what every command imports first)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    for i, args in enumerate(spec["commands"]):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _redirect(0, os.devnull, os.O_RDONLY)
                for fd, ext in ((1, "out"), (2, "err")):
                    path = os.path.join(out_dir, f"{i}.{ext}")
                    _redirect(fd, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                status = _run(args)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        with open(os.path.join(out_dir, f"{i}.status"), "w") as f:
            f.write(str(status))


if __name__ == "__main__":
    main(sys.argv[1])
