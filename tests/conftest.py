"""Shared pytest set-up: quiet TensorFlow, reset global Keras state per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: the package's start-up choices
# (oneDNN on x86-64, quiet notices) then hold for the whole test process,
# as they do for a user's `import fsr_fer_tf`.
import fsr_fer_tf  # noqa: E402,F401
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests that set mixed_float16 must not leak it into the next test."""
    import keras

    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


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
# `fsr-fer-demo`, built once per session and shared by the evaluation,
# notebook and ablation tests. Sizes are tiny: it checks plumbing, not skill.
TINY_DATA = dict(synthetic_train=8, synthetic_test=3)
TINY_MODEL = dict(
    conv_filters=(4, 4, 6, 6, 8, 8), bimap_dim=8, fc_units=(16, 8)
)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """{"run_dir", "dataset", "data_config", "fer", "fsr", "results"}."""
    from fsr_fer_tf import configs
    from fsr_fer_tf import evaluate
    from fsr_fer_tf.data import synthetic
    from fsr_fer_tf.train import fer_loop
    from fsr_fer_tf.train import fsr_loop

    run_dir = str(tmp_path_factory.mktemp("tiny_run"))
    data_config = configs.DataConfig(**TINY_DATA)
    dataset = synthetic.load_synthetic(data_config)
    fer = fer_loop.train_fer(
        configs.CovPoolFERConfig(**TINY_MODEL),
        configs.FERTrainConfig(
            batch_size=8,
            steps=6,
            learning_rate_schedule="0:0.01",
            val_scales="1,4",
            eval_every_epochs=1,
            log_every=2,
        ),
        data_config,
        os.path.join(run_dir, "fer"),
        dataset=dataset,
    )
    fsr = fsr_loop.train_fsr(
        fer["final"],
        configs.GeneratorConfig(
            filters=4, growth=4, num_blocks=1, dense_convs=2
        ),
        configs.CriticConfig(base_filters=2, dense_units=8),
        configs.FSRTrainConfig(
            batch_size=8,
            steps=4,
            scales="2,4,8",
            eval_every=2,
            log_every=1,
            checkpoint_every=2,
            lr_boundaries="3",
        ),
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
