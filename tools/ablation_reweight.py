r"""The re-weighting ablation of the paper's Table 2 (Jing et al. 2020, 4.3).

Trains two stage-2 runs that differ only in `reweight` (classification-aware
loss re-weighting on / off: same preset, recipe, flags and seed, so the same
initial weights and batches), evaluates both final generators on the test
split at x2..x8, and measures how many GAN steps each needs to first reach a
target validation mean accuracy: the paper's claim is that re-weighting
reaches the accuracy of ~400k iterations in ~150k ("about 3 times faster").

    python tools/ablation_reweight.py --fer_model=RUN/fer/final.keras \
        --model_dir=RUN/ablation --preset=demo

Every train_fsr flag applies to both runs (`--preset`, `--recipe`,
`--steps`, `--eval_every`, `--g_*`, `--d_*`, `--params_override`, data
flags, ...), except `--reweight`, which this tool sets. Writes

    MODEL_DIR/with_reweighting/      train_fsr run (reweight=true)
    MODEL_DIR/without_reweighting/   train_fsr run (reweight=false)
    MODEL_DIR/<run>/eval/            `fsr_fer_tf.evaluate`'s report (x2..x8)
    MODEL_DIR/table2.md, table2.json Table 2, ours beside the paper's

Rerunning the same command resumes both runs (a finished run is only
re-validated and re-exported) and rewrites the tables.

Steps to target: the first validation step (GAN steps, L2-only pre-training
not counted; resolution `--eval_every`) at which `fsr/mean_accuracy` (the
validation mean over `--scales`, written to MODEL_DIR/<run>/validation)
reached `--target_accuracy`; by default the lower of the two runs' best
validation means, which both runs reach by construction.
"""

import dataclasses
import functools
import json
import math
import os

import numpy as np

RUNS = (
    # (sub-folder, reweight, Table 2 row label as in `fsr_fer_tf.paper`)
    ("without_reweighting", False, "w/o re-weighting"),
    ("with_reweighting", True, "w/ re-weighting"),
)
ROW_WITHOUT = RUNS[0][2]
ROW_WITH = RUNS[1][2]
SCALES = (2, 3, 4, 5, 6, 7, 8)
SCALE_KEYS = tuple(f"x{s}" for s in SCALES)
MEAN_TAG = "fsr/mean_accuracy"
DEFAULT_MODEL_DIR = "checkpoints/ablation_reweight"


# === Pure parts: steps to target, Table 2 ===


def steps_to_target(history, target):
    """The first step at which a validation history reached `target`.

    Args:
        history: [(step, value), ...], e.g. `loop.read_scalars(...)[tag]`.
        target: the value to reach (inclusive).

    Returns:
        The step (int), or None if no value reached `target`.
    """
    for step, value in sorted(history):
        if value >= target:
            return int(step)
    return None


def best_point(history):
    """(step, value) of the highest value (the earliest on ties), or None."""
    best = None
    for step, value in sorted(history):
        if best is None or value > best[1]:
            best = (int(step), float(value))
    return best


def default_target(histories):
    """The lower of the runs' best values: every run reaches it.

    Args:
        histories: {row label: [(step, value), ...]}.

    Raises:
        errors.DataError: a run has no validation value.
    """
    from fsr_fer_tf import errors

    bests = []
    for label, history in histories.items():
        point = best_point(history)
        errors.require(
            point is not None,
            f"the '{label}' run has no {MEAN_TAG} values in its validation/ "
            "folder; train it (validation runs every --eval_every steps and "
            "at the end).",
            errors.DataError,
        )
        bests.append(point[1])
    return min(bests)


def speedup(steps_without, steps_with):
    """steps w/o re-weighting / steps with it (the paper: 400k / 150k).

    None when either run did not reach the target.
    """
    if steps_without is None or steps_with is None or steps_with <= 0:
        return None
    return steps_without / steps_with


def check_target(value):
    """Validates --target_accuracy: 0 means automatic, else (0, 1].

    Returns:
        The target as a float, or None for the automatic target.

    Raises:
        errors.ConfigError: NaN, negative, or above 1 (e.g. a percentage).
    """
    from fsr_fer_tf import errors

    if value is None or value == 0:
        return None
    errors.require(
        math.isfinite(value) and 0 < value <= 1,
        f"--target_accuracy={value} must be a fraction in (0, 1] (e.g. 0.746 "
        "for 74.6%), or 0 for the lower of the two runs' best validation "
        "means.",
    )
    return float(value)


def build_table2(accuracies, histories, target=None, context=None):
    """Table 2 (ours beside the paper's) as a JSON-serialisable dict.

    Args:
        accuracies: {row label: {"x2": fraction, ..., "x8": fraction}}, the
            test accuracy of each run's evaluated generator; labels are
            ROW_WITHOUT and ROW_WITH.
        histories: {row label: [(step, validation mean accuracy), ...]}.
        target: the mean accuracy (fraction) to reach, or None for the lower
            of the two runs' best validation means.
        context: extra facts for the caption and the record (dataset, split,
            n_images, validation_split, eval_every, ...), stored as is.

    Returns:
        {"scales", "ours": {label: row}, "target", "speedup", "paper",
         "context"}; our accuracies are fractions, the paper's percentages
        (keys say which).
    """
    from fsr_fer_tf import paper

    automatic = target is None
    if automatic:
        target = default_target(histories)
    ours = {}
    for _, reweight, label in RUNS:
        per_scale = {k: float(accuracies[label][k]) for k in SCALE_KEYS}
        history = histories[label]
        steps = steps_to_target(history, target)
        best = best_point(history)
        ours[label] = {
            "reweight": reweight,
            "accuracy": per_scale,
            "avg": float(np.mean(list(per_scale.values()))),
            "steps_to_target": steps,
            "reached_target": steps is not None,
            "best_validation": (
                {"step": best[0], "mean_accuracy": best[1]} if best else None
            ),
            "last_validation_step": (
                int(max(s for s, _ in history)) if history else None
            ),
        }
    paper_rows = {}
    for label, values in paper.TABLE2.items():
        paper_rows[label] = {
            "accuracy_percent": dict(zip(SCALE_KEYS, values[:-1])),
            "avg_percent": values[-1],
            "iterations_to_convergence": (
                paper.TABLE2_CONVERGENCE_ITERATIONS[label]
            ),
        }
    iters = paper.TABLE2_CONVERGENCE_ITERATIONS
    return {
        "scales": list(SCALE_KEYS),
        "ours": ours,
        "target": {
            "mean_accuracy": float(target),
            "tag": MEAN_TAG,
            "automatic": automatic,
            "rule": (
                "lower of the two runs' best validation means"
                if automatic
                else "--target_accuracy"
            ),
        },
        "speedup": speedup(
            ours[ROW_WITHOUT]["steps_to_target"],
            ours[ROW_WITH]["steps_to_target"],
        ),
        "paper": {
            "source": paper.SOURCE,
            "rows": paper_rows,
            "speedup": iters[ROW_WITHOUT] / iters[ROW_WITH],
        },
        "context": dict(context or {}),
    }


def _steps_cell(steps):
    return "not reached" if steps is None else str(steps)


def _thousands(n):
    return f"~{n // 1000}k" if n % 1000 == 0 else f"~{n}"


def table2_markdown(table):
    """Table 2 in Markdown: our two rows, then the paper's, labelled."""
    ctx = table["context"]
    keys = table["scales"]
    target = table["target"]
    lines = [
        "## Table 2: FSR-FER with and without classification-aware "
        "loss re-weighting",
        "",
    ]
    where = ctx.get("dataset", "?")
    if "split" in ctx:
        where += f" / {ctx['split']}"
    if "n_images" in ctx:
        where += f" ({ctx['n_images']} images)"
    lines.append(
        f"Total accuracy (%) on {where}, {ctx.get('generator', 'final')} "
        "generator of each run. Rows marked *(paper)* are the numbers "
        "reported by Jing et al. 2020 on RAF-DB, shown for comparison; they "
        "were not produced by this code."
    )
    lines += [
        "",
        "| method | " + " | ".join(keys) + " | avg | steps to target |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    for label, row in table["ours"].items():
        cells = [f"{100 * row['accuracy'][k]:.3f}" for k in keys]
        cells.append(f"{100 * row['avg']:.3f}")
        cells.append(_steps_cell(row["steps_to_target"]))
        lines.append(f"| {label} (ours) | " + " | ".join(cells) + " |")
    for label, row in table["paper"]["rows"].items():
        cells = [f"{row['accuracy_percent'][k]:.3f}" for k in keys]
        cells.append(f"{row['avg_percent']:.3f}")
        cells.append(
            f"{_thousands(row['iterations_to_convergence'])} (convergence)"
        )
        lines.append(f"| {label} *(paper)* | " + " | ".join(cells) + " |")
    validation = (
        f"`{MEAN_TAG}`, the validation mean over x"
        f"{ctx.get('validation_scales', '2,3,4,5,6,7,8').replace(',', ',x')}"
        f" on the {ctx.get('validation_split', '?')} split"
    )
    resolution = (
        f", measured every {ctx['eval_every']} steps"
        if "eval_every" in ctx
        else ""
    )
    if ctx.get("pretrain_steps"):
        resolution += (
            f" (after {ctx['pretrain_steps']} L2-only pre-training steps, "
            "not counted)"
        )
    ours_ratio = table["speedup"]
    ours_text = (
        f"{ours_ratio:.2f}x"
        if ours_ratio is not None
        else "n/a (a run did not reach the target)"
    )
    rows = table["paper"]["rows"]
    paper_iters = " / ".join(
        _thousands(rows[label]["iterations_to_convergence"])
        for label in (ROW_WITHOUT, ROW_WITH)
    )
    lines += [
        "",
        f"Steps to target: the first GAN step at which {validation} "
        f"reached {100 * target['mean_accuracy']:.3f}% ({target['rule']})"
        f"{resolution}. The paper's column is its iterations to convergence "
        "(sec. 4.3).",
        "",
        f"Speed-up of re-weighting (steps w/o / steps w/): ours {ours_text}; "
        f'paper {table["paper"]["speedup"]:.2f}x ({paper_iters}, "about 3 '
        'times faster").',
    ]
    return "\n".join(lines) + "\n"


# === Training and evaluation (TensorFlow) ===


def run_ablation(
    fer_model_path,
    gen_config,
    critic_config,
    cfg,
    data_config,
    model_dir,
    resume=True,
    target=None,
    eval_split="test",
    eval_batch_size=64,
    eval_limit=0,
    generator="final",
    figures=True,
):
    """Trains, evaluates and tabulates both runs; returns the Table 2 dict.

    Args:
        fer_model_path: stage-1 CovPoolFER .keras file.
        gen_config: `configs.GeneratorConfig` of both runs.
        critic_config: `configs.CriticConfig` of both runs.
        cfg: `configs.FSRTrainConfig`; its `reweight` is set per run.
        data_config: `configs.DataConfig`.
        model_dir: the ablation folder (one sub-folder per run).
        resume: continue runs that have a checkpoint.
        target: validation mean accuracy to reach, or None (automatic).
        eval_split: the split of the final evaluation.
        eval_batch_size: its batch size.
        eval_limit: evaluate a fixed stratified subset of N images (0:
            all).
        generator: "final" (generator.keras) or "best" (the best validation
            generator, generator_best.keras).
        figures: write each run's evaluation figures (PNG) beside its
            results.json and tables.

    Returns:
        `build_table2(...)`'s dict, also written to MODEL_DIR/table2.json and
        (as Markdown) MODEL_DIR/table2.md.
    """
    from absl import logging

    from fsr_fer_tf import configs
    from fsr_fer_tf import errors
    from fsr_fer_tf import evaluate
    from fsr_fer_tf.data import loader
    from fsr_fer_tf.train import fsr_loop
    from fsr_fer_tf.train import loop

    errors.require(eval_batch_size > 0, "--eval_batch_size must be > 0.")
    errors.require(eval_limit >= 0, "--eval_limit must be >= 0 (0: all).")
    errors.require(
        generator in ("final", "best"),
        "--eval_generator must be 'final' or 'best'.",
    )
    # Cheap checks first, so a bad flag fails before any data is loaded.
    fsr_loop.validate_config(cfg)
    fsr_loop.load_fer_model(fer_model_path)
    dataset = loader.load_dataset(data_config)
    dataset.split(eval_split)  # an unknown split fails before training
    model_dir = os.path.abspath(model_dir)

    trained = {}
    for name, reweight, label in RUNS:
        logging.info("=== Ablation run '%s' (reweight=%s) ===", label, reweight)
        trained[label] = fsr_loop.train_fsr(
            fer_model_path,
            gen_config,
            critic_config,
            configs.replace(cfg, reweight=reweight),
            data_config,
            os.path.join(model_dir, name),
            resume,
            dataset=dataset,
        )
    accuracies, histories = {}, {}
    for name, _, label in RUNS:
        key = "generator" if generator == "final" else "generator_best"
        results = evaluate.evaluate_run(
            fer_model_path,
            trained[label][key],
            data_config,
            eval_split,
            SCALES,
            (),
            os.path.join(model_dir, name, "eval"),
            batch_size=eval_batch_size,
            limit=eval_limit,
            n_examples=0,
            figures=figures,
            dataset=dataset,
        )
        accuracies[label] = {
            k: r["accuracy"] for k, r in results["methods"]["fsr"].items()
        }
        scalars = loop.read_scalars(os.path.join(model_dir, name, "validation"))
        histories[label] = scalars.get(MEAN_TAG, [])
    context = {
        "dataset": dataset.name,
        "split": eval_split,
        "n_images": results["dataset"]["n_images"],
        "generator": generator,
        "validation_split": loop.validation_split(dataset),
        "validation_scales": configs.list_text(cfg.scales),
        "eval_every": cfg.eval_every,
        "steps": {label: trained[label]["steps"] for label in trained},
        "pretrain_steps": cfg.pretrain_steps,
        "runs": {
            label: os.path.join(model_dir, name) for name, _, label in RUNS
        },
        "fer_model": os.path.abspath(fer_model_path),
        "generator_config": dataclasses.asdict(gen_config),
        "critic_config": dataclasses.asdict(critic_config),
        "train_config": {
            k: v for k, v in dataclasses.asdict(cfg).items() if k != "reweight"
        },
        "data_config": dataclasses.asdict(data_config),
    }
    table = build_table2(accuracies, histories, target, context)
    with open(
        os.path.join(model_dir, "table2.json"), "w", encoding="utf-8"
    ) as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(model_dir, "table2.md"), "w", encoding="utf-8") as f:
        f.write(table2_markdown(table))
    return table


# === Command line ===


@functools.cache
def define_flags():
    """Defines train_fsr's flags (every stage-2 setting) and this tool's.

    Called by `run` (and by tests before parsing an argv), not at import, so
    that importing this file defines no flags; calling it again is a no-op.
    """
    from absl import flags

    from fsr_fer_tf import train_fsr

    train_fsr.define_flags()
    flags.DEFINE_float(
        "target_accuracy",
        0.0,
        "Validation mean accuracy (a fraction in (0, 1]) whose first crossing "
        "is each run's 'steps to target'; 0: the lower of the two runs' best "
        "validation means.",
    )
    flags.DEFINE_string(
        "eval_split",
        "test",
        "Split of the final per-scale evaluation (the paper: the RAF-DB test "
        "split).",
    )
    flags.DEFINE_integer(
        "eval_batch_size", 64, "Batch size of the final evaluation."
    )
    flags.DEFINE_integer(
        "eval_limit",
        0,
        "Evaluate a fixed stratified subset of N images of --eval_split "
        "(0: all).",
    )
    flags.DEFINE_enum(
        "eval_generator",
        "final",
        ["final", "best"],
        "Generator evaluated for each run: 'final' (generator.keras, after "
        "--steps) or 'best' (generator_best.keras, best validation mean).",
    )
    flags.DEFINE_bool(
        "eval_figures",
        True,
        "Write each run's evaluation figures (PNG) beside its results.json "
        "and tables.",
    )


def main(argv):
    """Runs the ablation from parsed flags and prints Table 2.

    Returns None: `app.run` would print a returned value and exit with 1.
    """
    from absl import flags

    from fsr_fer_tf import errors
    from fsr_fer_tf import train_fsr
    from fsr_fer_tf.data import flags as data_flags

    FLAGS = flags.FLAGS
    del argv  # errors.cli_main refuses positional arguments
    errors.require(
        bool(FLAGS.fer_model),
        "--fer_model is required (train_fer's MODEL_DIR/final.keras, e.g. "
        "checkpoints/demo/fer/final.keras).",
    )
    errors.require(
        not FLAGS["reweight"].present,
        "--reweight is what this tool varies (one run with, one without); "
        "drop it.",
    )
    target = check_target(FLAGS.target_accuracy)
    gen, critic, cfg = train_fsr.resolve_configs(FLAGS.preset, FLAGS.recipe)
    table = run_ablation(
        FLAGS.fer_model,
        gen,
        critic,
        cfg,
        data_flags.data_config_from_flags(FLAGS),
        FLAGS.model_dir,
        FLAGS.resume,
        target=target,
        eval_split=FLAGS.eval_split,
        eval_batch_size=FLAGS.eval_batch_size,
        eval_limit=FLAGS.eval_limit,
        generator=FLAGS.eval_generator,
        figures=FLAGS.eval_figures,
    )
    print()
    print(table2_markdown(table))
    out = os.path.abspath(FLAGS.model_dir)
    print(f"wrote {os.path.join(out, 'table2.md')} and table2.json")


def run():
    """Entry point: defines the flags, then `app.run`s `main`."""
    from absl import app
    from absl import flags

    from fsr_fer_tf import errors
    from fsr_fer_tf.data import flags as data_flags

    define_flags()
    # Not train_fsr's checkpoints/fsr: an ablation must not land in (or
    # resume) a plain stage-2 run. Only here, so tests keep the default.
    flags.FLAGS.set_default("model_dir", DEFAULT_MODEL_DIR)
    app.run(errors.cli_main(main), flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
