"""Shared pytest set-up: quiet TensorFlow, reset global Keras state per test."""

import json
import os
import pickle
import shutil
import subprocess
import sys

try:
    import fcntl
except ImportError:  # not POSIX: each xdist worker builds its own tiny run
    fcntl = None

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: the package's start-up choices
# (oneDNN on x86-64, quiet notices) then hold for the whole test process,
# as they do for a user's `import fsr_fer_tf`.
import fsr_fer_tf  # noqa: E402,F401
import pytest  # noqa: E402


# The longest test files (measured seconds on 2 CPU cores, whole file): xdist
# (`--dist loadfile --no-loadscope-reorder`, setup.cfg) hands files to its
# two workers in collection order, so these go first and the run ends on
# short files on both workers, not on one long file while the other idles.
# fsr_loop_test comes second: it builds `tiny_run`, which the later files
# share, while the other worker runs distribute_test. The other files keep
# their order.
LONGEST_FIRST = (
    "train/distribute_test.py",  # 171
    "train/fsr_loop_test.py",  # 74 (with tiny_run)
    "train/fer_loop_test.py",  # 146
    "train/steps_test.py",  # 67
    "train/isr_loop_test.py",  # 67
    "recognizer_test.py",  # 66
    "notebooks_test.py",  # 61
    "tools/ablation_reweight_test.py",  # 40
    "tools/ablation_recipes_test.py",  # 32
    "evaluate_test.py",  # 30
)


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    rank = {
        os.path.join(here, *name.split("/")): i
        for i, name in enumerate(LONGEST_FIRST)
    }
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests that set mixed_float16 must not leak it into the next test."""
    import keras

    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


FORKED_COMMANDS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_forked_commands.py"
)


@pytest.fixture(scope="session")
def run_commands(tmp_path_factory):
    """run_commands(commands, cwd=None, env=None, timeout=600): runs each
    command (the arguments after `python`) as `python <command>` would, all
    in ONE interpreter that imports fsr_fer_tf once and forks a child per
    command (tests/_forked_commands.py). Returns a
    `subprocess.CompletedProcess` per command, in order; its stderr is
    what the import printed followed by what the command printed, as a
    fresh interpreter's would be."""

    def run(commands, cwd=None, env=None, timeout=600):
        out_dir = tmp_path_factory.mktemp("commands")
        spec = out_dir / "spec.json"
        spec.write_text(
            json.dumps({"commands": commands, "out_dir": str(out_dir)}),
            encoding="utf-8",
        )
        proc = subprocess.run(
            [sys.executable, FORKED_COMMANDS, str(spec)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

        def text(name):
            return (out_dir / name).read_text("utf-8", errors="replace")

        imported = text("import.err")
        return [
            subprocess.CompletedProcess(
                [sys.executable, *args],
                int(text(f"{i}.status")),
                text(f"{i}.out"),
                imported + text(f"{i}.err"),
            )
            for i, args in enumerate(commands)
        ]

    return run


@pytest.fixture(scope="session")
def shared_testdata():
    """Path of ../shared/testdata (MATLAB reference outputs)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.normpath(
        os.path.join(here, "..", "..", "shared", "testdata")
    )
    if not os.path.isdir(path):
        pytest.fail(f"{path} is missing: clone the repo beside ../shared.")
    return path


# A tiny end-to-end run (stage 1, stage 2, evaluation) in the layout of
# `fsr-fer-demo`, built once per session (one build for all xdist workers)
# and shared by the evaluation, notebook and ablation tests. Sizes are
# tiny: it checks plumbing, not skill.
TINY_DATA = dict(synthetic_train=8, synthetic_test=3)
TINY_MODEL = dict(
    conv_filters=(4, 4, 6, 6, 8, 8), bimap_dim=8, fc_units=(16, 8)
)
TINY_FER_TRAIN = dict(
    batch_size=8,
    steps=6,
    learning_rate_schedule="0:0.01",
    val_scales="1,4",
    eval_every_epochs=1,
    log_every=2,
)
TINY_GENERATOR = dict(filters=4, growth=4, num_blocks=1, dense_convs=2)
TINY_CRITIC = dict(base_filters=2, dense_units=8)
TINY_FSR_TRAIN = dict(
    batch_size=8,
    steps=4,
    scales="2,4,8",
    eval_every=2,
    log_every=1,
    checkpoint_every=2,
    lr_boundaries="3",
)


@pytest.fixture(scope="session")
def tiny_sizes():
    """The tiny run's config fields, for tests that train their own:
    {"data", "model", "fer_train", "generator", "critic", "fsr_train"}."""
    return {
        "data": dict(TINY_DATA),
        "model": dict(TINY_MODEL),
        "fer_train": dict(TINY_FER_TRAIN),
        "generator": dict(TINY_GENERATOR),
        "critic": dict(TINY_CRITIC),
        "fsr_train": dict(TINY_FSR_TRAIN),
    }


def _build_tiny_run(run_dir):
    from fsr_fer_tf import configs
    from fsr_fer_tf import evaluate
    from fsr_fer_tf.data import synthetic
    from fsr_fer_tf.train import fer_loop
    from fsr_fer_tf.train import fsr_loop

    data_config = configs.DataConfig(**TINY_DATA)
    dataset = synthetic.load_synthetic(data_config)
    fer = fer_loop.train_fer(
        configs.CovPoolFERConfig(**TINY_MODEL),
        configs.FERTrainConfig(**TINY_FER_TRAIN),
        data_config,
        os.path.join(run_dir, "fer"),
        dataset=dataset,
    )
    fsr = fsr_loop.train_fsr(
        fer["final"],
        configs.GeneratorConfig(**TINY_GENERATOR),
        configs.CriticConfig(**TINY_CRITIC),
        configs.FSRTrainConfig(**TINY_FSR_TRAIN),
        data_config,
        os.path.join(run_dir, "fsr"),
        dataset=dataset,
    )
    results = evaluate.evaluate_run(
        fer["final"],
        fsr["generator"],
        data_config,
        "test",
        (1, 2, 4, 8),
        (10.0,),
        os.path.join(run_dir, "eval"),
        batch_size=8,
        n_examples=3,
        dataset=dataset,
    )
    return {
        "run_dir": run_dir,
        "dataset": dataset,
        "data_config": data_config,
        "fer": fer,
        "fsr": fsr,
        "results": results,
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """{"run_dir", "dataset", "data_config", "fer", "fsr", "results"}.

    Under pytest-xdist the first worker to ask builds it in the session's
    shared temporary folder; the others wait for it (a file lock) and load
    the same run: its files are only read.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or fcntl is None:
        return _build_tiny_run(str(tmp_path_factory.mktemp("tiny_run")))
    root = tmp_path_factory.getbasetemp().parent
    saved = root / "tiny_run.pickle"
    with open(root / "tiny_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if saved.exists():
                with open(saved, "rb") as f:
                    return pickle.load(f)
            run_dir = root / "tiny_run"
            if run_dir.exists():  # an earlier worker's build failed
                shutil.rmtree(run_dir)
            run = _build_tiny_run(str(run_dir))
            with open(f"{saved}.{worker}", "wb") as f:
                pickle.dump(run, f)
            os.replace(f"{saved}.{worker}", saved)
            return run
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
