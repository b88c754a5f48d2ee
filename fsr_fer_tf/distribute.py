"""tf.distribute for both training stages (`--distribution_strategy`).

    strategy = distribute.make_strategy("mirrored")
    with strategy.scope():
        ...  # models, optimizers, step objects
    for batch in distribute.distribute_dataset(strategy, ds): ...

Strategies, as TF Model Garden names them:

- `default`: no distribution (TensorFlow's default strategy, one device);
- `one_device`: everything on one device (the first GPU, else the CPU);
- `mirrored`: one replica per local GPU (or, without GPUs, per logical CPU
  device, e.g. set up with `tf.config.set_logical_device_configuration`);
- `multi_worker_mirrored`: replicas on several machines; each worker reads
  its task from the `TF_CONFIG` environment variable.

Semantics the training steps keep (README, "Training on several GPUs or
machines"): `--batch_size` is the global batch, split evenly over the
replicas in order (replica r gets samples r*b .. (r+1)*b - 1 of each batch);
every loss is the mean over the global batch; random draws (WGAN-div's
epsilon) are made for the global batch and sliced per replica; updates are
skipped on every replica at once when any gradient is non-finite; the
center-loss centres get the summed update of all replicas. Batch-norm uses
each replica's own batch statistics unless the model is built with
synchronised batch-norm (`CovPoolFERConfig.sync_batch_norm`). Checkpoints,
TensorBoard logs and exports are written by the chief only (other workers
write their checkpoints to a scratch folder, as tf.distribute requires).
"""

import json
import os

import tensorflow as tf

from fsr_fer_tf import errors

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored")


_MADE = {}


def make_strategy(name="default"):
    """The `tf.distribute.Strategy` called `name` (see the module doc).

    One instance per name and process: a second mirrored strategy would
    number its collective ops from the same keys as the first (the demo
    runs both stages in one process). Create it first thing in a program:
    multi-worker mirrored sets up its collective ops before TensorFlow runs
    anything else.

    Raises:
        errors.ConfigError: an unknown name, or multi-worker without a
            usable TF_CONFIG.
    """
    errors.require(
        name in STRATEGIES,
        f"--distribution_strategy={name} is unknown; use one of "
        f"{', '.join(STRATEGIES)}.",
    )
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _MADE:
        _MADE[name] = _make(name)
    return _MADE[name]


def _make(name):
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(
            gpus[0].name if gpus else "/cpu:0"
        )
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raw = os.environ.get("TF_CONFIG")
    errors.require(
        bool(raw),
        "--distribution_strategy=multi_worker_mirrored needs TF_CONFIG, e.g. "
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": '
        '{"type": "worker", "index": 0}} on the first machine.',
    )
    try:
        config = json.loads(raw)
        config["cluster"], config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError):
        raise errors.ConfigError(
            "TF_CONFIG is not JSON with 'cluster' and 'task' ({'type', "
            "'index'}); see the tf.distribute multi-worker guide."
        ) from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def num_replicas(strategy):
    return int(strategy.num_replicas_in_sync)


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in cluster
    )


def worker_dir(model_dir, strategy):
    """Where this process writes checkpoints: `model_dir` for the chief, a
    scratch folder below it for the other workers (tf.distribute has every
    worker save, so that the collective ops of the save run everywhere)."""
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return os.path.join(
        model_dir, ".workers", f"{resolver.task_type}_{resolver.task_id}"
    )


def check_batch_size(batch_size, strategy, what="--batch_size"):
    """The per-replica batch; refuses a global batch the replicas cannot
    split evenly."""
    n = num_replicas(strategy)
    errors.require(
        batch_size % n == 0,
        f"{what} {batch_size} does not split evenly over {n} replicas; use "
        f"a multiple of {n}.",
    )
    return batch_size // n


def distribute_dataset(strategy, dataset):
    """`dataset` (global batches) split over the replicas.

    Every worker builds the same dataset and keeps its share of each global
    batch (sharding by data: the pipelines here read from memory). The
    default strategy returns it as it is.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return strategy.experimental_distribute_dataset(
        dataset.with_options(options)
    )


def replica_slice(values):
    """The current replica's rows of a global-batch tensor [B, ...]
    (replica r takes rows r*b .. (r+1)*b - 1, b = B / replicas)."""
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    if n == 1:
        return values
    size = tf.shape(values)[0] // n
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * size
    return values[start : start + size]


def all_reduce_sum(value):
    """Sum over the replicas (in a replica context; identity for one)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def spread(strategy, fn):
    """fn(x) -> structure of [B, ...] tensors, run with x's batch split
    evenly over the replicas (a short batch is padded with copies of its
    last row, dropped again) and the outputs gathered back in order; `fn`
    itself for one replica. For inference (evaluation): no gradient, no
    collective inside `fn`."""
    n = num_replicas(strategy)
    if n == 1:
        return fn

    @tf.function(reduce_retracing=True)
    def spread_fn(x):
        batch = tf.shape(x)[0]
        pad = (n - batch % n) % n
        x = tf.concat([x, tf.repeat(x[-1:], pad, axis=0)], axis=0)
        size = (batch + pad) // n

        def part(ctx):
            start = ctx.replica_id_in_sync_group * size
            return x[start : start + size]

        parts = strategy.experimental_distribute_values_from_function(part)
        out = strategy.run(fn, args=(parts,))
        return tf.nest.map_structure(
            lambda v: strategy.gather(v, axis=0)[:batch], out
        )

    return spread_fn


def reduce_metrics(strategy, per_replica, reductions=None):
    """Per-replica scalar metrics -> global values (cross-replica context).

    Args:
        strategy: the strategy that ran the step.
        per_replica: {name: per-replica scalar}.
        reductions: {name: "sum" | "mean" | "first" | "min" | "max"};
            default "mean" (each replica's mean over an equal share of the
            batch). "first" takes replica 0's value (one that all replicas
            share); "min" and "max" run over this worker's replicas (a
            collective would have to be ordered against the step's own).
    """
    reductions = reductions or {}
    out = {}
    for name, value in per_replica.items():
        how = reductions.get(name, "mean")
        if how in ("first", "min", "max"):
            local = strategy.experimental_local_results(value)
            out[name] = {
                "first": lambda v: v[0],
                "min": tf.reduce_min,
                "max": tf.reduce_max,
            }[how](tf.stack(local) if how != "first" else local)
        else:
            op = (
                tf.distribute.ReduceOp.SUM
                if how == "sum"
                else tf.distribute.ReduceOp.MEAN
            )
            out[name] = strategy.reduce(op, value, axis=None)
    return out
