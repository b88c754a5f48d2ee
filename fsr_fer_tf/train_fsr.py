"""Stage 2: train the feature super-resolution GAN (absl flags; `--flagfile`).

    python -m fsr_fer_tf.train_fsr --fer_model=checkpoints/fer/final.keras \
        --preset=demo --model_dir=checkpoints/fsr

The paper's settings are the defaults (`--recipe=paper`); `--recipe=released`
switches to the authors' released code (loss weights 1/10/0.01, r = 2, a
weighted critic, 40k L2-only pre-training, lr 2e-5, BN in G, base-8 critic).
Order of precedence: --preset < --recipe < --config_file < --params_override
< flags given explicitly. Rerunning the same command resumes.
Writes generator.keras, critic.keras, generator_best.keras and fsr_fer.keras
(image -> logits, for inference) in --model_dir.
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

_G_FLAGS, _D_FLAGS, _TRAIN_FLAGS = [], [], []


@functools.cache
def define_flags():
    """Defines this entry point's flags (once; called by `run`, and by tools
    that take every stage-2 hyper-parameter, e.g. the re-weighting
    ablation)."""
    flags.DEFINE_string(
        "fer_model",
        None,
        "Stage-1 CovPoolFER .keras file (train_fer writes "
        "MODEL_DIR/final.keras); frozen during stage 2.",
    )
    flags.DEFINE_enum(
        "preset",
        "paper",
        sorted(configs.FSR_TRAIN_PRESETS),
        "Sizes and schedule: 'paper' (6 RRDBs, ESRGAN critic, 400k steps), "
        "'fer2013' (3 slim RRDBs, identity-initialised G, 2400 steps, about "
        "an hour on 2 CPU cores; for a --preset=fer2013 stage-1 model) or "
        "'demo' (2 RRDBs, identity-initialised G, minutes on a CPU).",
    )
    flags.DEFINE_enum(
        "recipe",
        "paper",
        sorted(configs.RECIPES),
        "'paper': the paper's losses and schedule; 'released': the authors' "
        "TF1 code where it differs (DESIGN.md, Stage 2), which includes "
        "40k L2-only generator pre-training steps before --steps GAN steps "
        "(--pretrain_steps).",
    )
    flags.DEFINE_string(
        "model_dir",
        "checkpoints/fsr",
        "Run folder: checkpoints, TensorBoard logs, params.yaml and the "
        "exported models.",
    )
    flag_utils.define_resume_flag()
    data_flags.define_data_flags()
    _TRAIN_FLAGS.extend(
        flag_utils.define_config_flags(configs.FSR_TRAIN_PRESETS["paper"])
    )
    _G_FLAGS.extend(
        flag_utils.define_config_flags(
            configs.GENERATOR_PRESETS["paper"], prefix="g_"
        )
    )
    _D_FLAGS.extend(
        flag_utils.define_config_flags(
            configs.CRITIC_PRESETS["paper"], prefix="d_"
        )
    )
    flag_utils.define_override_flags()


def resolve_configs(preset, recipe, flag_values=FLAGS):
    """(generator, critic, training) configs from preset, recipe and flags."""
    return apply_flags(*configs.stage2_configs(preset, recipe), flag_values)


def apply_flags(gen, critic, cfg, flag_values=FLAGS):
    """The three stage-2 configs with --config_file, --params_override (on
    the training config) and explicitly set flags applied over them."""
    gen = flag_utils.resolve_config(
        gen, _G_FLAGS, flag_values, prefix="g_", use_overrides=False
    )
    critic = flag_utils.resolve_config(
        critic, _D_FLAGS, flag_values, prefix="d_", use_overrides=False
    )
    cfg = flag_utils.resolve_config(cfg, _TRAIN_FLAGS, flag_values)
    return gen, critic, cfg


@errors.cli_main
def main(argv):
    del argv  # cli_main refuses positional arguments
    from fsr_fer_tf.train import fsr_loop  # TensorFlow loads here.

    gen, critic, cfg = resolve_configs(FLAGS.preset, FLAGS.recipe)
    data_config = data_flags.data_config_from_flags(FLAGS)
    # First: multi-worker mirrored sets up its collectives before any
    # other TensorFlow work (the data loader runs some).
    strategy = distribute.make_strategy(cfg.distribution_strategy)
    result = fsr_loop.train_fsr(
        FLAGS.fer_model,
        gen,
        critic,
        cfg,
        data_config,
        FLAGS.model_dir,
        FLAGS.resume,
        preset=FLAGS.preset,
        strategy=strategy,
    )
    print(f"generator: {result['generator']}")
    print(f"FSR-FER inference model: {result['fsr_fer']}")
    for method, per_scale in result["validation"].items():
        row = " ".join(
            f"{k} {100 * r['accuracy']:.2f}" for k, r in per_scale.items()
        )
        print(f"{method:8s} {row}")


def run():
    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
