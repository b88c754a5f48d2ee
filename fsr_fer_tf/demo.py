"""The whole pipeline on the bundled synthetic faces, in one command.

    fsr-fer-demo                       # = python -m fsr_fer_tf.demo

1. renders the bundled procedural expression set (cached in RUN/data);
2. trains CovPoolFER (stage 1, `--preset=demo`) -> RUN/fer;
3. trains the feature-SR GAN on it (stage 2, `--preset=demo`,
   `--recipe`) -> RUN/fsr: the paper's FSR-FER;
4. with --route (default), the shipped recognizer's route at the demo's
   size (beyond the paper; README, Real faces): fine-tunes that CovPoolFER
   on x1..x8 -> RUN/fer_ms, trains G on it with the paper recipe plus a
   cross-entropy term through the frozen head -> RUN/fsr_ms, chooses on
   held-out faces (the data's val split; for the synthetic set, 100 faces
   per class of its own val stream) from which scale faces leave the HR
   model and whether the multi-scale model serves them with or without G,
   as was done for the shipped models on FER-2013 val, and writes that
   recognizer model directory -> RUN/recognizer, which `fsr-fer-predict
   --model_dir` and `fsr-fer-evaluate --recognizer_dir` read;
5. evaluates hr / bicubic / fsr (and the recognizer's routes) at x1..x8
   on the test split -> RUN/eval, and prints the per-scale table beside
   the paper's numbers.

RUN (--run_dir, default checkpoints/demo) is what the notebooks and
TensorBoard open (`tensorboard --logdir checkpoints/demo`). Rerunning resumes
each stage where it stopped; a finished stage is not retrained.
"""

import dataclasses
import functools
import json
import os
import time

from absl import app
from absl import flags
from absl import logging

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf.data import flags as data_flags

FLAGS = flags.FLAGS
# The route's threshold and kind are chosen on held-out faces (`choose_route`),
# written beside the recognizer.
SELECTION_FILE = "route_selection.json"
SELECTION_PER_CLASS = 100
SELECTION_SCALES = (1, 2, 3, 4, 5, 6, 7, 8)


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
    flags.DEFINE_boolean(
        "route",
        True,
        "Also train the shipped recognizer's low-resolution route (beyond "
        "the paper: a CovPoolFER fine-tuned on x1..x8 and G on it with a "
        "cross-entropy term) and write RUN/recognizer; --noroute runs only "
        "the paper's two stages.",
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
    route=True,
    ms_overrides=None,
    model_overrides=None,
    generator_overrides=None,
    critic_overrides=None,
):
    """Runs data -> stage 1 -> stage 2 -> evaluation; returns the results.

    Args:
        run_dir: the run folder.
        data_config: a `configs.DataConfig` (synthetic by default).
        fer_preset: stage-1 preset name.
        fsr_preset: stage-2 preset name.
        recipe: stage-2 recipe name.
        fer_overrides: {FERTrainConfig field: value} over the preset
            (stage 1).
        fsr_overrides: {FSRTrainConfig field: value} over preset + recipe
            (both stage-2 runs).
        scales: evaluation scales.
        examples: faces in examples.png.
        route: also train the shipped recognizer's route (step 4 of the
            module's docstring) and evaluate it.
        ms_overrides: {FERTrainConfig field: value} over the multi-scale
            fine-tune's config (`configs.multiscale_finetune_config`).
        model_overrides, generator_overrides, critic_overrides:
            {field: value} over the presets' CovPoolFER, generator and
            critic configs (tests use tiny ones).

    Returns:
        The evaluation results dict (results.json), with "timing" added,
        and "recognizer_dir" with `route`.
    """
    from fsr_fer_tf import evaluate
    from fsr_fer_tf import recognizer as recognizer_lib
    from fsr_fer_tf.data import loader
    from fsr_fer_tf.train import fer_loop
    from fsr_fer_tf.train import fsr_loop

    errors.require(
        not route or fer_preset in configs.MULTISCALE_FINETUNE,
        f"the recognizer's route has no multi-scale fine-tune for stage-1 "
        f"preset '{fer_preset}' (it has "
        f"{', '.join(sorted(configs.MULTISCALE_FINETUNE))}); pass "
        "--noroute to run only the paper's two stages.",
    )
    timing = {}
    start = time.perf_counter()
    if data_config.data_format == "synthetic" and not data_config.data_dir:
        data_config = dataclasses.replace(
            data_config, data_dir=os.path.abspath(os.path.join(run_dir, "data"))
        )
    dataset = loader.load_dataset(data_config)
    timing["data_s"] = time.perf_counter() - start
    model_config = configs.replace(
        configs.preset(configs.COVPOOL_PRESETS, fer_preset, "model"),
        **(model_overrides or {}),
    )

    def stage1(name, cfg, overrides):
        t = time.perf_counter()
        result = fer_loop.train_fer(
            model_config,
            configs.replace(cfg, **(overrides or {})),
            data_config,
            os.path.join(run_dir, name),
            resume=True,
            dataset=dataset,
            preset=fer_preset,
        )
        timing[f"{name}_s"] = time.perf_counter() - t
        return result["final"]

    def stage2(name, fer_model, stage2_configs):
        t = time.perf_counter()
        gen, critic, cfg = stage2_configs
        cfg = configs.replace(cfg, **(fsr_overrides or {}))
        result = fsr_loop.train_fsr(
            fer_model,
            configs.replace(gen, **(generator_overrides or {})),
            configs.replace(critic, **(critic_overrides or {})),
            cfg,
            data_config,
            os.path.join(run_dir, name),
            resume=True,
            dataset=dataset,
            preset=fsr_preset,
        )
        timing[f"{name}_s"] = time.perf_counter() - t
        return result["generator"], cfg.scales

    fer = stage1(
        "fer",
        configs.preset(configs.FER_TRAIN_PRESETS, fer_preset, "training"),
        fer_overrides,
    )
    generator, _ = stage2(
        "fsr", fer, configs.stage2_configs(fsr_preset, recipe)
    )
    recognizer_dir = None
    if route:
        fer_ms = stage1(
            "fer_ms",
            configs.multiscale_finetune_config(fer_preset, fer),
            ms_overrides,
        )
        route_generator, trained_scales = stage2(
            "fsr_ms", fer_ms, configs.route_stage2_configs(fsr_preset)
        )
        t = time.perf_counter()
        selection = choose_route(
            dataset, data_config, fer, fer_ms, route_generator
        )
        recognizer_dir = os.path.join(run_dir, "recognizer")
        recognizer_lib.write_bundle(
            fer,
            route_generator,
            recognizer_dir,
            selection["threshold"],
            fsr_backbone=fer_ms,
            trained_scales=trained_scales,
            preset=fer_preset,
            above=selection["above"],
        )
        with open(os.path.join(recognizer_dir, SELECTION_FILE), "w") as f:
            json.dump(selection, f, indent=2)
            f.write("\n")
        timing["route_selection_s"] = time.perf_counter() - t

    t = time.perf_counter()
    results = evaluate.evaluate_run(
        fer,
        generator,
        data_config,
        "test",
        tuple(scales),
        (),
        os.path.join(run_dir, "eval"),
        n_examples=examples,
        dataset=dataset,
        recognizer_dir=recognizer_dir,
    )
    timing["evaluation_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - start
    results["timing"] = timing
    if recognizer_dir:
        results["recognizer_dir"] = recognizer_dir
        results["route_selection"] = selection
    return results


def selection_split(dataset, data_config):
    """The held-out faces the route is chosen on (None: there are none).

    The data's "val" split; for the synthetic set, which has none, an
    independent "val" stream of the renderer (`SELECTION_PER_CLASS` faces
    per class, disjoint from train and test).
    """
    from fsr_fer_tf.data import sources
    from fsr_fer_tf.data import synthetic

    if "val" in dataset.splits:
        return dataset.split("val")
    if data_config.data_format != "synthetic":
        return None
    images, labels = synthetic.generate(
        SELECTION_PER_CLASS,
        data_config.synthetic_seed,
        "val",
        data_config.image_size,
    )
    return sources.Split(name="val", labels=labels, images=images)


def choose_route(dataset, data_config, fer, fer_ms, generator, batch_size=64):
    """Threshold and route of the recognizer, chosen on held-out faces.

    As the shipped models' were on FER-2013 val (`recognizer.choose_route`
    over x1..x8: the HR model below the threshold, then the multi-scale
    CovPoolFER alone or G on it). Without held-out faces, the shipped
    recognizer's (`configs.ROUTE_THRESHOLD`, through G).

    Returns:
        {"threshold", "above", "split", "n_images", "mean_accuracy",
        "accuracy": {method: {scale key: accuracy}}} (route_selection.json).
    """
    from fsr_fer_tf import eval_lib
    from fsr_fer_tf import recognizer as recognizer_lib

    split = selection_split(dataset, data_config)
    if split is None:
        logging.warning(
            "No held-out faces to choose the route on (the data has no val "
            "split): using the shipped one, HR below x%g, then G.",
            configs.ROUTE_THRESHOLD,
        )
        return {
            "threshold": configs.ROUTE_THRESHOLD,
            "above": "fsr",
            "split": None,
        }
    candidates = recognizer_lib.Recognizer(
        fer, generator, fsr_backbone=fer_ms, detector="none"
    )
    logging.info(
        "Choosing the recognizer's route on %d held-out %s faces",
        len(split),
        split.name,
    )
    summaries, _, _ = eval_lib.evaluate(
        candidates.fer_model,
        None,
        split,
        SELECTION_SCALES,
        batch_size,
        recognizer=candidates,
    )
    accuracy = {
        method: {k: v["accuracy"] for k, v in summaries[method].items()}
        for method in ("bicubic", "route_backbone", "route_fsr")
    }
    threshold, above, mean = recognizer_lib.choose_route(
        accuracy["bicubic"], accuracy["route_backbone"], accuracy["route_fsr"]
    )
    logging.info(
        "Route: HR model below x%d, then %s (mean accuracy over x1..x8 "
        "%.2f%% on %s)",
        threshold,
        "G on the multi-scale model"
        if above == "fsr"
        else "the multi-scale model without G",
        100 * mean,
        split.name,
    )
    return {
        "threshold": float(threshold),
        "above": above,
        "split": split.name,
        "n_images": len(split),
        "mean_accuracy": mean,
        "accuracy": accuracy,
    }


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
        route=FLAGS.route,
    )
    timing = results["timing"]
    logging.info(
        "Demo done in %s (%s)",
        loop.format_duration(timing["total_s"]),
        ", ".join(
            f"{name[:-2]} {seconds:.0f}s"
            for name, seconds in timing.items()
            if name != "total_s"
        ),
    )
    print()
    evaluate.print_table(results)
    print(
        f"\nrun directory: {os.path.abspath(FLAGS.run_dir)}  "
        f"(tensorboard --logdir {FLAGS.run_dir}; notebooks/ take it as "
        "RUN_DIR)"
    )
    if "recognizer_dir" in results:
        chosen = results["route_selection"]
        print(
            f"recognizer: {os.path.abspath(results['recognizer_dir'])}  "
            "(fsr-fer-predict --model_dir=... PHOTO): HR model below "
            f"x{chosen['threshold']:g}, then the multi-scale model "
            + ("with G" if chosen["above"] == "fsr" else "without G")
            + (
                f", chosen on {chosen['n_images']} held-out faces"
                if chosen["split"]
                else ""
            )
        )


def run():
    define_flags()
    app.run(main, flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
