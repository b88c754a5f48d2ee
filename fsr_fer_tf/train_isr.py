"""Image-SR baselines of Table 1: Meta-SR or RCAN (absl flags; `--flagfile`).

    python -m fsr_fer_tf.train_isr --model=metasr --preset=fer2013 \
        --data_format=folder --data_dir=../shared/data/fer2013 \
        --model_dir=checkpoints/metasr

`--model=metasr` (Hu et al. 2019) is one model for every scale of
`--scales`, each training pair drawing its own; `--model=rcan` (Zhang et
al. 2018) is one model per scale (`--scales=4`). Both learn the HR face from
the native LR face the project synthesises everywhere (MATLAB bicubic down
by s) with an L1 loss. `--fer_model` adds CovPoolFER's accuracy on the SR
faces to validation, and with `--fer_weight` > 0 an expression-consistency
term through that frozen model (after SR-FER; `train/isr_loop.py` says
which parts). Presets: 'paper' (the papers' sizes and schedule), 'fer2013'
(slim, sized for 2 CPU cores), 'demo' (minutes). Order of precedence:
--preset < --config_file < --params_override < flags given explicitly.
Rerunning the same command resumes. Writes isr.keras (last), isr_best.keras
(best mean validation PSNR), checkpoints and TensorBoard logs (PSNR/SSIM per
scale, image grids) in --model_dir.
"""

import functools

from absl import app
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import flag_utils
from fsr_fer_tf.data import flags as data_flags

FLAGS = flags.FLAGS

_MODEL_FLAGS, _TRAIN_FLAGS = [], []


@functools.cache
def define_flags():
    """Defines this entry point's flags (once; called by `run`)."""
    flags.DEFINE_enum(
        "model",
        "metasr",
        list(configs.ISR_MODELS),
        "'metasr': Meta-SR, one model for every scale of --scales; 'rcan': "
        "RCAN, one model for the one scale of --scales.",
    )
    flags.DEFINE_enum(
        "preset",
        "paper",
        sorted(configs.ISR_TRAIN_PRESETS),
        "Sizes and schedule: 'paper' (the Meta-SR / RCAN papers' sizes, lr "
        "1e-4 halved every 200k of 1M steps), 'fer2013' (slim sizes, 3000 "
        "steps, sized for 2 CPU cores) or 'demo' (tiny, minutes).",
    )
    flags.DEFINE_string(
        "fer_model",
        None,
        "Optional stage-1 CovPoolFER .keras file (train_fer's final.keras), "
        "frozen: validation adds its accuracy on the SR faces; needed by "
        "--fer_weight > 0.",
    )
    flags.DEFINE_string(
        "model_dir",
        "checkpoints/isr",
        "Run folder: checkpoints, TensorBoard logs, params.yaml, isr.keras "
        "and isr_best.keras.",
    )
    flag_utils.define_resume_flag()
    data_flags.define_data_flags()
    _TRAIN_FLAGS.extend(
        flag_utils.define_config_flags(configs.ISR_TRAIN_PRESETS["paper"])
    )
    _MODEL_FLAGS.extend(
        flag_utils.define_config_flags(
            configs.ISR_MODEL_PRESETS["paper"]["metasr"], prefix="isr_"
        )
    )
    flag_utils.define_override_flags()


def resolve_configs(model_kind, preset, flag_values=FLAGS):
    """(model, training) configs from the preset and the flags."""
    model_config = flag_utils.resolve_config(
        configs.preset(configs.ISR_MODEL_PRESETS, preset, "image-SR")[
            model_kind
        ],
        _MODEL_FLAGS,
        flag_values,
        prefix="isr_",
        use_overrides=False,
    )
    cfg = flag_utils.resolve_config(
        configs.ISR_TRAIN_PRESETS[preset], _TRAIN_FLAGS, flag_values
    )
    return model_config, cfg


@errors.cli_main
def main(argv):
    del argv  # cli_main refuses positional arguments
    from fsr_fer_tf.train import isr_loop  # TensorFlow loads here.

    model_config, cfg = resolve_configs(FLAGS.model, FLAGS.preset)
    result = isr_loop.train_isr(
        FLAGS.model,
        model_config,
        cfg,
        data_flags.data_config_from_flags(FLAGS),
        FLAGS.model_dir,
        FLAGS.resume,
        fer_model_path=FLAGS.fer_model,
    )
    print(f"SR model: {result['isr']}")
    print(f"best SR model: {result['isr_best']}")
    for method, per_scale in result["validation"].items():
        row = " ".join(
            f"{k} {r['psnr']:.2f}dB"
            + (f"/{100 * r['accuracy']:.1f}%" if "accuracy" in r else "")
            for k, r in per_scale.items()
            if "psnr" in r
        )
        if row:
            print(f"{method:8s} {row}")


def run():
    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
