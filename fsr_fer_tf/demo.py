"""The whole pipeline on the bundled synthetic faces, in one command.

    fsr-fer-demo                       # = python -m fsr_fer_tf.demo

1. renders the bundled procedural expression set (cached in RUN/data);
2. trains CovPoolFER (stage 1, `--preset=demo`) -> RUN/fer;
3. trains the feature-SR GAN on it (stage 2, `--preset=demo`) -> RUN/fsr;
4. evaluates hr / bicubic / fsr at x1..x8 on the test split -> RUN/eval,
   and prints the per-scale table beside the paper's numbers.

RUN (--run_dir, default checkpoints/demo) is what the notebooks and
TensorBoard open (`tensorboard --logdir checkpoints/demo`). Rerunning resumes
each stage where it stopped; a finished stage is not retrained.
"""

import dataclasses
import functools
import os
import time

from absl import app
from absl import flags
from absl import logging

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf.data import flags as data_flags

FLAGS = flags.FLAGS


@functools.cache
def define_flags():
    """Defines this entry point's flags (once; called by `run`)."""
    flags.DEFINE_string(
        "run_dir",
        "checkpoints/demo",
        "Run folder: data/, fer/, fsr/ and eval/ go inside.",
    )
    flags.DEFINE_string(
        "fer_preset", "demo", "train_fer preset (paper | demo)."
    )
    flags.DEFINE_string(
        "fsr_preset", "demo", "train_fsr preset (paper | demo)."
    )
    flags.DEFINE_string(
        "recipe", "paper", "train_fsr recipe (paper | released)."
    )
    flags.DEFINE_integer(
        "fer_epochs", None, "Override the stage-1 preset's epochs."
    )
    flags.DEFINE_integer(
        "fsr_steps", None, "Override the stage-2 preset's GAN steps."
    )
    flags.DEFINE_list(
        "scales",
        ["1", "2", "3", "4", "5", "6", "7", "8"],
        "Scales of the final evaluation (1 = HR).",
    )
    data_flags.define_data_flags()


def run_demo(
    run_dir,
    data_config,
    fer_preset="demo",
    fsr_preset="demo",
    recipe="paper",
    fer_overrides=None,
    fsr_overrides=None,
    scales=(1, 2, 3, 4, 5, 6, 7, 8),
    examples=6,
):
    """Runs data -> stage 1 -> stage 2 -> evaluation; returns the results.

    Args:
        run_dir: the run folder.
        data_config: a `configs.DataConfig` (synthetic by default).
        fer_preset: stage-1 preset name.
        fsr_preset: stage-2 preset name.
        recipe: stage-2 recipe name.
        fer_overrides: {FERTrainConfig field: value} over the preset.
        fsr_overrides: {FSRTrainConfig field: value} over preset + recipe.
        scales: evaluation scales.
        examples: faces in examples.png.

    Returns:
        The evaluation results dict (results.json), with "timing" added.
    """
    from fsr_fer_tf import evaluate
    from fsr_fer_tf.data import loader
    from fsr_fer_tf.train import fer_loop
    from fsr_fer_tf.train import fsr_loop

    timing = {}
    start = time.perf_counter()
    if data_config.data_format == "synthetic" and not data_config.data_dir:
        data_config = dataclasses.replace(
            data_config, data_dir=os.path.abspath(os.path.join(run_dir, "data"))
        )
    dataset = loader.load_dataset(data_config)
    timing["data_s"] = time.perf_counter() - start

    t = time.perf_counter()
    fer_result = fer_loop.train_fer(
        configs.preset(configs.COVPOOL_PRESETS, fer_preset, "model"),
        configs.replace(
            configs.preset(configs.FER_TRAIN_PRESETS, fer_preset, "training"),
            **(fer_overrides or {}),
        ),
        data_config,
        os.path.join(run_dir, "fer"),
        resume=True,
        dataset=dataset,
        preset=fer_preset,
    )
    timing["stage1_s"] = time.perf_counter() - t

    t = time.perf_counter()
    gen, critic, cfg = configs.stage2_configs(fsr_preset, recipe)
    cfg = configs.replace(cfg, **(fsr_overrides or {}))
    fsr_result = fsr_loop.train_fsr(
        fer_result["final"],
        gen,
        critic,
        cfg,
        data_config,
        os.path.join(run_dir, "fsr"),
        resume=True,
        dataset=dataset,
        preset=fsr_preset,
    )
    timing["stage2_s"] = time.perf_counter() - t

    t = time.perf_counter()
    results = evaluate.evaluate_run(
        fer_result["final"],
        fsr_result["generator"],
        data_config,
        "test",
        tuple(scales),
        (),
        os.path.join(run_dir, "eval"),
        n_examples=examples,
        dataset=dataset,
    )
    timing["evaluation_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - start
    results["timing"] = timing
    return results


@errors.cli_main
def main(argv):
    del argv  # cli_main refuses positional arguments
    from fsr_fer_tf import evaluate
    from fsr_fer_tf.train import loop

    fer_overrides = {}
    if FLAGS.fer_epochs is not None:
        fer_overrides["epochs"] = FLAGS.fer_epochs
    fsr_overrides = {}
    if FLAGS.fsr_steps is not None:
        fsr_overrides["steps"] = FLAGS.fsr_steps
    try:
        scales = tuple(int(s) for s in FLAGS.scales)
    except ValueError:
        raise errors.ConfigError(
            f"--scales must be integers, got {','.join(FLAGS.scales)}."
        ) from None
    results = run_demo(
        FLAGS.run_dir,
        data_flags.data_config_from_flags(flags.FLAGS),
        FLAGS.fer_preset,
        FLAGS.fsr_preset,
        FLAGS.recipe,
        fer_overrides,
        fsr_overrides,
        scales,
    )
    timing = results["timing"]
    logging.info(
        "Demo done in %s (data %.0fs, stage 1 %.0fs, stage 2 %.0fs, "
        "evaluation %.0fs)",
        loop.format_duration(timing["total_s"]),
        timing["data_s"],
        timing["stage1_s"],
        timing["stage2_s"],
        timing["evaluation_s"],
    )
    print()
    evaluate.print_table(results)
    print(
        f"\nrun directory: {os.path.abspath(FLAGS.run_dir)}  "
        f"(tensorboard --logdir {FLAGS.run_dir}; notebooks/ take it as "
        "RUN_DIR)"
    )


def run():
    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
