"""Tiny distributed trainings for distribute_test.py, in a subprocess
(logical devices and TF_CONFIG must be set before TensorFlow starts).

    python tests/train/_distributed_check.py fer|fsr OUT_DIR
        default and mirrored (2 logical CPUs) runs; prints the largest
        weight differences as JSON
    python tests/train/_distributed_check.py mirrored_fer OUT_DIR STEPS ...
        mirrored stage-1 runs of STEPS steps in OUT_DIR (each resumes), one
        (OUT_DIR, STEPS) pair after the other; prints a RESULT per run
    python tests/train/_distributed_check.py multi_worker OUT_DIR STEPS ...
        one worker of a multi-worker stage-1 run (TF_CONFIG names it),
        trained to each STEPS in turn (the later calls resume); prints a
        RESULT per call
"""

import json
import os
import sys

import fsr_fer_tf  # noqa: F401  (before TensorFlow: the package's set-up)
import numpy as np
import tensorflow as tf

if sys.argv[1] != "multi_worker":  # one device per worker process there
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )

from fsr_fer_tf import configs  # noqa: E402
from fsr_fer_tf import distribute  # noqa: E402
from fsr_fer_tf.data import synthetic  # noqa: E402
from fsr_fer_tf.train import fer_loop  # noqa: E402
from fsr_fer_tf.train import fsr_loop  # noqa: E402

DATA = configs.DataConfig(synthetic_train=8, synthetic_test=3)
MODEL = configs.CovPoolFERConfig(
    conv_filters=(4, 4, 6, 6, 8, 8),
    bimap_dim=8,
    fc_units=(16, 8),
    sync_batch_norm=True,
)
FER = configs.FERTrainConfig(
    batch_size=8,
    steps=4,
    learning_rate_schedule="0:0.01",
    val_scales="1",
    eval_every_epochs=100,
    log_every=2,
)
G = configs.GeneratorConfig(filters=4, growth=4, num_blocks=1, dense_convs=2)
D = configs.CriticConfig(base_filters=2, dense_units=8)
FSR = configs.FSRTrainConfig(
    batch_size=8,
    steps=3,
    scales="2,4",
    eval_every=100,
    eval_images=7,
    log_every=1,
    checkpoint_every=100,
    reweight_gradient=True,
    critic_weighting=True,
)


def weights(path):
    import keras

    return [w.numpy() for w in keras.models.load_model(path).weights]


def max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def run_result(strategy, out_dir, result):
    """What distribute_test.py checks after a stage-1 run."""
    scratch = distribute.worker_dir(out_dir, strategy)
    latest = tf.train.latest_checkpoint(out_dir)  # the chief's to check
    return {
        "steps": result["steps"],
        "replicas": distribute.num_replicas(strategy),
        "chief": distribute.is_chief(strategy),
        "latest": os.path.basename(latest) if latest else None,
        "final": os.path.isfile(os.path.join(out_dir, "final.keras")),
        # A non-chief worker deletes its scratch copy after saving.
        "scratch_left": scratch != out_dir and os.path.exists(scratch),
    }


def single_runs(name, runs):
    """Stage-1 runs [(out_dir, steps), ...] on one strategy, in turn."""
    strategy = distribute.make_strategy(name)  # first: multi-worker needs it
    for out_dir, steps in runs:
        result = fer_loop.train_fer(
            MODEL,
            configs.replace(FER, steps=steps),
            DATA,
            out_dir,
            dataset=synthetic.load_synthetic(DATA),
            strategy=strategy,
        )
        print(
            "RESULT " + json.dumps(run_result(strategy, out_dir, result)),
            flush=True,
        )


def main(stage, out_dir, *rest):
    if stage == "mirrored_fer":
        args = (out_dir,) + rest
        runs = [(d, int(n)) for d, n in zip(args[::2], args[1::2])]
        return single_runs("mirrored", runs)
    if stage == "multi_worker":
        return single_runs(
            "multi_worker_mirrored", [(out_dir, int(n)) for n in rest]
        )
    dataset = synthetic.load_synthetic(DATA)
    result = {}
    runs = {}
    for name in ("default", "mirrored"):
        strategy = distribute.make_strategy(name)
        runs[name] = fer_loop.train_fer(
            MODEL,
            FER,
            DATA,
            os.path.join(out_dir, f"fer_{name}"),
            dataset=dataset,
            strategy=strategy,
        )
        result[f"replicas_{name}"] = distribute.num_replicas(strategy)
    result["fer_weights"] = max_diff(
        weights(runs["default"]["final"]), weights(runs["mirrored"]["final"])
    )
    if stage == "fsr":
        fsr = {}
        for name in ("default", "mirrored"):
            fsr[name] = fsr_loop.train_fsr(
                runs["default"]["final"],
                G,
                D,
                FSR,
                DATA,
                os.path.join(out_dir, f"fsr_{name}"),
                dataset=dataset,
                strategy=distribute.make_strategy(name),
            )
        for key in ("generator", "critic"):
            result[f"fsr_{key}"] = max_diff(
                weights(fsr["default"][key]), weights(fsr["mirrored"][key])
            )
        from fsr_fer_tf import evaluate

        reports = {}
        for name in ("default", "mirrored"):
            reports[name] = evaluate.evaluate_run(
                runs["default"]["final"],
                fsr["default"]["generator"],
                DATA,
                "test",
                (1, 3),
                (),
                os.path.join(out_dir, f"eval_{name}"),
                batch_size=5,  # 21 faces: a short last batch of 1
                figures=False,
                n_examples=0,
                dataset=dataset,
                strategy=distribute.make_strategy(name),
            )["methods"]
        result["eval_equal"] = reports["default"] == reports["mirrored"]
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
