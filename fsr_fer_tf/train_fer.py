"""Stage 1: train the CovPoolFER backbone (absl flags; `--flagfile` works).

    python -m fsr_fer_tf.train_fer --preset=demo --model_dir=checkpoints/fer

Defaults are the released CovPoolFER recipe (`--preset=paper`, RAF-DB-sized);
`--preset=demo` trains a small model on the bundled synthetic faces in a few
minutes on a CPU. Order of precedence: --preset < --config_file <
--params_override < flags given explicitly. Rerunning the same command resumes
from the last checkpoint. Writes `final.keras`, `best.keras`, checkpoints and
TensorBoard logs (`train/`, `validation/`) in `--model_dir`.
"""

import functools

from absl import app
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import distribute
from fsr_fer_tf import errors
from fsr_fer_tf import flag_utils
from fsr_fer_tf.data import flags as data_flags

FLAGS = flags.FLAGS
_TRAIN_FLAGS = []


@functools.cache
def define_flags():
    """Defines this entry point's flags (once; called by `run`)."""
    flags.DEFINE_enum(
        "preset",
        "paper",
        sorted(configs.FER_TRAIN_PRESETS),
        "Model sizes and training defaults: 'paper' (released CovPoolFER: "
        "256-channel trunk, 128x128 SPD feature, 800 epochs), 'fer2013' "
        "(real 48x48 faces: 96-channel trunk, 48x48 SPD feature, 15 epochs, "
        "about 75 minutes on 2 CPU cores) or 'demo' (small, minutes on a "
        "CPU). Individual flags override the preset.",
    )
    flags.DEFINE_string(
        "model_dir",
        "checkpoints/fer",
        "Run folder: checkpoints, TensorBoard logs, params.yaml, final.keras "
        "and best.keras.",
    )
    flag_utils.define_resume_flag()
    data_flags.define_data_flags()
    _TRAIN_FLAGS.extend(
        flag_utils.define_config_flags(configs.FER_TRAIN_PRESETS["paper"])
    )
    flag_utils.define_override_flags()


@errors.cli_main
def main(argv):
    del argv  # cli_main refuses positional arguments
    from fsr_fer_tf.train import fer_loop  # TensorFlow loads here.

    model_config = configs.preset(
        configs.COVPOOL_PRESETS, FLAGS.preset, "model"
    )
    cfg = flag_utils.resolve_config(
        configs.FER_TRAIN_PRESETS[FLAGS.preset], _TRAIN_FLAGS
    )
    data_config = data_flags.data_config_from_flags(FLAGS)
    # First: multi-worker mirrored sets up its collectives before any
    # other TensorFlow work (the data loader runs some).
    strategy = distribute.make_strategy(cfg.distribution_strategy)
    result = fer_loop.train_fer(
        model_config,
        cfg,
        data_config,
        FLAGS.model_dir,
        FLAGS.resume,
        preset=FLAGS.preset,
        strategy=strategy,
    )
    print(f"final model: {result['final']}")
    print(f"best model:  {result['best']}")
    for key, acc in result["validation"].items():
        print(f"validation accuracy {key}: {100 * acc:.2f}%")


def run():
    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
