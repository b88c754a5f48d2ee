r"""Profiles one training step and lists the TensorFlow ops by time.

Builds the stage-1 CovPoolFER step (`--stage=fer`, `ClassifierSteps.
train_step`, as `tools/bench_fer_step.py` builds it) or the stage-2 GAN step
(`--stage=fsr`, `FSRSteps.train_step` with the preset's n_critic, the real
frozen CovPoolFER and the remapper off, as `tools/bench_fsr_step.py` and
train_fsr build it) at a preset's shapes and training batch, calls it once
(that traces), then runs `--steps` calls under the TensorFlow profiler
(`tf.profiler.experimental.start/stop`) and prints the `--top` op types by
total self time: calls, ms, ms per step, share of all op time, the largest
single op of the type, and the rest summed.

The trace is read without TensorBoard: the `.xplane.pb` the profiler writes
is parsed with TensorFlow's own protobuf module (`tensorflow.tsl.profiler.
protobuf.xplane_pb2`), summing the op events ("name:Type") of the host
threads. (The converter TensorBoard's profile plugin uses, shipped as
`_pywrap_profiler_plugin.xspace_to_tools_data(..., "framework_op_stats")`,
agrees on the times but in TF 2.21 counts an op twice when its runs fell
on two inter-op threads.) The ops of a step run on up to
`inter_op_parallelism` threads at once, so their summed time can exceed the
step's wall time; the header gives both.

Usage:
  python tools/profile_step.py --stage=fer
  python tools/profile_step.py --stage=fsr --preset=demo --top=20 \
      --out=/tmp/fsr_ops.md
  python tools/profile_step.py --stage=fer --logdir=/tmp/prof  # keep trace
"""

import collections
import glob
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time

# First, before TensorFlow: the package's start-up choices (startup.py:
# quiet notices, oneDNN on x86-64) hold for the profile as for training.
import fsr_fer_tf  # noqa: E402,F401

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fsr_fer_tf import benchmark  # noqa: E402
from fsr_fer_tf import configs  # noqa: E402
from fsr_fer_tf import errors  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
STAGES = {"fer": "bench_fer_step", "fsr": "bench_fsr_step"}
OpType = collections.namedtuple(
    "OpType", "type count self_us largest largest_us"
)


def define_flags():
    """Defines this tool's flags (not at import: the parsing functions are
    used without them)."""
    flags.DEFINE_string(
        "stage",
        "fer",
        "'fer': the stage-1 CovPoolFER train step; 'fsr': the stage-2 GAN "
        "train step (critic update(s) + generator update).",
    )
    flags.DEFINE_string(
        "preset",
        "fer2013",
        "Shapes of the models and of the batch: "
        f"{', '.join(sorted(configs.COVPOOL_PRESETS))}.",
    )
    flags.DEFINE_integer(
        "batch_size",
        0,
        "Examples per step (0: the preset's training batch, "
        "FER_TRAIN_PRESETS for --stage=fer, FSR_TRAIN_PRESETS for fsr).",
    )
    flags.DEFINE_integer(
        "steps", 3, "Profiled steps, after one untimed call that traces."
    )
    flags.DEFINE_integer("top", 15, "Op types listed; the rest are summed.")
    flags.DEFINE_string(
        "out", None, "Also write the table (markdown) to this file."
    )
    flags.DEFINE_string(
        "logdir",
        None,
        "Keep the trace here (TensorBoard's profile tab reads it); default: "
        "a temporary folder, deleted after.",
    )


def _bench_tool(name):
    """tools/<name>.py as a module (tools/ is not a package)."""
    if name not in sys.modules:
        path = os.path.join(TOOLS, f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def make_step(stage, preset, batch_size=0):
    """(tf.function, args, batch): the stage's train step at `preset`."""
    errors.require(
        stage in STAGES,
        f"--stage must be one of {', '.join(STAGES)}, got {stage!r}.",
    )
    known = sorted(configs.COVPOOL_PRESETS)
    errors.require(
        preset in known,
        f"--preset must be one of {', '.join(known)}, got {preset!r}.",
    )
    errors.require(batch_size >= 0, "--batch_size must be >= 0 (0: preset).")
    bench = _bench_tool(STAGES[stage])
    if stage == "fer":
        batch = batch_size or configs.FER_TRAIN_PRESETS[preset].batch_size
        fn, args = bench.make_train_step(preset, batch)
    else:
        cfg = configs.FSR_TRAIN_PRESETS[preset]
        batch = batch_size or cfg.batch_size
        fn, args = bench.make_train_step(preset, batch, n_critic=cfg.n_critic)
    return fn, args, batch


def profile(fn, args, steps, logdir):
    """Calls fn(*args) once (it traces), then `steps` times profiled.

    Returns:
        (xplane paths of this session, wall seconds per profiled step).
    """
    import tensorflow as tf

    benchmark.block(fn(*args))  # traces, outside the profile
    tf.profiler.experimental.start(logdir)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            benchmark.block(fn(*args))
        wall = (time.perf_counter() - start) / steps
    finally:
        tf.profiler.experimental.stop()
    return xplane_paths(logdir), wall


def xplane_paths(logdir):
    """The .xplane.pb files of the newest profile session in `logdir`."""
    runs = glob.glob(os.path.join(logdir, "plugins", "profile", "*"))
    errors.require(
        runs, f"no profile in {logdir}", errors.DataError
    )  # e.g. a profiler without the host tracer
    newest = max(runs, key=os.path.getmtime)
    return sorted(glob.glob(os.path.join(newest, "*.xplane.pb")))


# A TensorFlow op's event on a host thread line: "<node name>:<op type>".
_OP_EVENT = re.compile(r"([A-Za-z0-9.][\w./>\-]*):([A-Z_]\w*)")


def op_stats(paths):
    """[{"type", "name", "count", "self_us"}] of every op in the traces.

    Sums the op events of the "/host:CPU" plane's thread lines (the
    executor's tf_Compute threads): each event is one run of one op, its
    time the event's duration less that of any op event nested in it. A
    GPU's kernels sit on device planes, which this does not read (there
    the host rows are the launches; use TensorBoard's profile tab).
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    ops = {}  # (name, type) -> [count, self ps]
    for path in paths:
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if plane.name != "/host:CPU":
                continue
            names = {k: m.name for k, m in plane.event_metadata.items()}
            for line in plane.lines:
                events = []
                for event in line.events:
                    match = _OP_EVENT.fullmatch(names[event.metadata_id])
                    if match:
                        end = event.offset_ps + event.duration_ps
                        events.append((event.offset_ps, end, match.groups()))
                events.sort(key=lambda e: (e[0], -e[1]))
                stack = []  # enclosing op events: [end, key]
                for begin, end, key in events:
                    while stack and stack[-1][0] <= begin:
                        stack.pop()
                    entry = ops.setdefault(key, [0, 0])
                    entry[0] += 1
                    entry[1] += end - begin
                    if stack:  # not the parent's own time
                        ops[stack[-1][1]][1] -= end - begin
                    stack.append([end, key])
    return [
        {"type": op_type, "name": name, "count": n, "self_us": ps / 1e6}
        for (name, op_type), (n, ps) in ops.items()
    ]


def by_type(rows):
    """[OpType] of op_stats rows, most self time first."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["type"]].append(row)
    types = []
    for name, ops in groups.items():
        largest = max(ops, key=lambda r: r["self_us"])
        types.append(
            OpType(
                name,
                sum(r["count"] for r in ops),
                sum(r["self_us"] for r in ops),
                largest["name"],
                largest["self_us"],
            )
        )
    return sorted(types, key=lambda t: -t.self_us)


def _short(name, width=60):
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def markdown_table(types, top, steps):
    """The top `top` op types, the rest summed, and the total (markdown)."""
    total = sum(t.self_us for t in types) or 1.0

    def line(rank, name, count, us, largest=""):
        return (
            f"| {rank} | {name} | {count} | {us / 1e3:.1f} | "
            f"{us / 1e3 / steps:.1f} | {100 * us / total:.1f} | {largest} |"
        )

    lines = [
        (
            "| # | op type | calls | total ms | ms/step | % op time "
            "| largest op (share of its type) |"
        ),
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for i, t in enumerate(types[:top], 1):
        share = 100 * t.largest_us / t.self_us if t.self_us else 0.0
        lines.append(
            line(
                i,
                f"`{t.type}`",
                t.count,
                t.self_us,
                f"`{_short(t.largest)}` ({share:.0f}%)",
            )
        )
    rest = types[top:]
    if rest:
        lines.append(
            line(
                "",
                f"rest ({len(rest)} types)",
                sum(t.count for t in rest),
                sum(t.self_us for t in rest),
            )
        )
    lines.append(line("", "**all ops**", sum(t.count for t in types), total))
    return "\n".join(lines)


def main(argv):
    del argv  # errors.cli_main refuses positional arguments
    f = flags.FLAGS
    errors.require(f.steps >= 1, "--steps must be >= 1.")
    errors.require(f.top >= 1, "--top must be >= 1.")
    fn, args, batch = make_step(f.stage, f.preset, f.batch_size)
    logdir = f.logdir or tempfile.mkdtemp(prefix="profile_step_")
    try:
        paths, wall = profile(fn, args, f.steps, logdir)
        types = by_type(op_stats(paths))
    finally:
        if not f.logdir:
            shutil.rmtree(logdir, ignore_errors=True)
    op_ms = sum(t.self_us for t in types) / 1e3 / f.steps
    header = (
        f"{f.stage} train step, preset {f.preset}, batch {batch}, "
        f"{f.steps} profiled step(s) after one tracing call: wall "
        f"{1e3 * wall:.0f} ms/step (profiler on), op self time "
        f"{op_ms:.0f} ms/step ({op_ms / (1e3 * wall):.2f}x wall: ops run "
        "in parallel on the inter-op threads)"
    )
    table = markdown_table(types, f.top, f.steps)
    print(benchmark.environment())
    print(header)
    print(table)
    if f.out:
        with open(f.out, "w") as out:
            out.write(f"{header}\n\n{table}\n")
    if f.logdir:
        print(f"trace kept in {f.logdir} (tensorboard --logdir={f.logdir})")


if __name__ == "__main__":
    define_flags()
    app.run(errors.cli_main(main))
