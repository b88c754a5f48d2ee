r"""Stage-2 recipes side by side on the same validation faces (issue 9).

One stage-1 model (trained on HR faces only, as the paper's CovPoolFER),
optionally a second one trained on LR faces too (`--ms_fer_model`, e.g.
`train_fer --train_scales=1,2,3,4,5,6,7,8`), and a table of stage-2
variants, each a `train_fsr` run with the same preset, data, seed and
budget that differs from the paper recipe in the named settings:

    python tools/ablation_recipes.py \
        --fer_model=checkpoints/runs/fer_hr/final.keras \
        --ms_fer_model=checkpoints/runs/fer_ms/final.keras \
        --preset=fer2013 --data_format=folder \
        --data_dir=../shared/data/fer2013 \
        --model_dir=checkpoints/ablation_recipes

Rows (every one on the very same faces of `--eval_split`, x1..x8):

- `bicubic`: the HR-trained CovPoolFER on the bicubic-upsampled LR face;
- `multiscale`: the CovPoolFER trained on LR faces too, no G (a baseline
  the paper did not run; needs `--ms_fer_model`);
- one row per variant (`VARIANTS`; `--variants` picks some), and for the
  `paper` run the generators of `--snapshot_steps` (training length);
- `routed`: for each G row and for `multiscale`, the HR model below a
  scale threshold and that row from it on, with the threshold that
  maximises the mean over x1..x8 (chosen on this split, as predict
  chooses it).

Each cell is total accuracy (%) with the bootstrap std over faces (the same
resampled faces for every row), and the mean over x2..x8. Variants marked
*beyond the paper* are off by default in train_fsr; the paper and released
recipes are reproduced as they come out. The acceptance check of issue 9 is
printed for every row: >= bicubic + 3 at each of x4..x8, >= bicubic - 0.5 at
x2 and x3, and >= multiscale at each of x4..x8.

Writes MODEL_DIR/<variant>/ (train_fsr runs; rerunning resumes them),
MODEL_DIR/recipes.md, recipes.json and recipes.png. Each variant is
evaluated as soon as it is trained, its per-face results kept in
MODEL_DIR/<variant>/evaluated_<split>.npz, and the table rewritten: it holds
every variant of MODEL_DIR evaluated with the same settings, whether or not
this call's `--variants` names it. So the variants can be trained a few at a
time (a killed call loses at most the variant it was on), and a rerun trains
and evaluates only what is missing (a variant whose settings or backbone
changed is trained on and evaluated again).
"""

import collections
import dataclasses
import functools
import json
import os

import numpy as np

SCALES = (1, 2, 3, 4, 5, 6, 7, 8)
MEAN_SCALES = (2, 3, 4, 5, 6, 7, 8)
DEFAULT_MODEL_DIR = "checkpoints/ablation_recipes"
# Issue 9's acceptance: points of accuracy.
GAIN_AT_LOW_RES = 3.0  # >= bicubic + 3 at each of x4..x8
LOSS_AT_X2_X3 = 0.5  # >= bicubic - 0.5 at x2 and x3
CE_WEIGHT = 50.0
# Every row's x2..x8 mean is also given as a difference from this one's.
REFERENCE_ROW = "paper"
# The row of each backbone without G.
BASE_ROWS = {"hr": "bicubic", "ms": "multiscale"}


@dataclasses.dataclass(frozen=True)
class Variant:
    """A stage-2 run of the ablation.

    Attributes:
        name: sub-folder and row key.
        label: what differs from the paper recipe, for the table.
        recipe: the `--recipe` it starts from.
        backbone: "hr" (--fer_model) or "ms" (--ms_fer_model).
        generator: GeneratorConfig fields set on top of the recipe.
        train: FSRTrainConfig fields set on top of the recipe.
        beyond_paper: not in the paper nor in its released code.
    """

    name: str
    label: str
    recipe: str = "paper"
    backbone: str = "hr"
    generator: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)
    beyond_paper: bool = False


VARIANTS = (
    Variant("paper", "FSR-FER, `--recipe=paper`"),
    Variant("released", "FSR-FER, `--recipe=released`", recipe="released"),
    Variant(
        "paper_reweight_gradient",
        "paper + w carries p's gradient (released, 1a)",
        train={"reweight_gradient": True},
    ),
    Variant(
        "paper_bn_inference",
        "paper + G batch-norm in inference mode (released, 1b)",
        generator={"use_batch_norm": True, "batch_norm_mode": "inference"},
    ),
    Variant(
        "paper_per_column",
        "paper + per-column penalty norm (released, 1c)",
        train={"penalty_norm": "per_column"},
    ),
    Variant(
        "paper_released_weights",
        "paper + loss weights 1/10/0.01, L2 summed (released, 1d)",
        train={
            "perceptual_weight": 10.0,
            "l2_weight": 0.01,
            "l2_reduction": "sum",
        },
    ),
    Variant(
        "paper_no_skip",
        "paper, G without input_skip (the paper's G)",
        generator={"input_skip": False},
    ),
    # Weight 50: in a probe on the fer2013 preset, the paper's perceptual
    # term sent F_sr a gradient of norm ~100 and a unit cross-entropy ~2.
    Variant(
        "paper_ce",
        "paper + cross-entropy (50) of the frozen head on F_sr",
        train={"ce_weight": CE_WEIGHT},
        beyond_paper=True,
    ),
    Variant(
        "ms_paper",
        "paper recipe, G on the multi-scale backbone",
        backbone="ms",
        beyond_paper=True,
    ),
    Variant(
        "ms_ce",
        "paper + cross-entropy (50), G on the multi-scale backbone",
        backbone="ms",
        train={"ce_weight": CE_WEIGHT},
        beyond_paper=True,
    ),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def select_variants(names, have_ms):
    """The `VARIANTS` named in `names` ("all": every one), in table order.

    Raises:
        errors.ConfigError: an unknown name, or a multi-scale variant
            without --ms_fer_model.
    """
    from fsr_fer_tf import errors

    names = [n.strip() for n in names if n.strip()]
    if names in ([], ["all"]):
        chosen = [v for v in VARIANTS if have_ms or v.backbone == "hr"]
    else:
        unknown = sorted(set(names) - set(VARIANT_NAMES))
        errors.require(
            not unknown,
            f"--variants: unknown {', '.join(unknown)}; choose from "
            f"{', '.join(VARIANT_NAMES)} or 'all'.",
        )
        chosen = [v for v in VARIANTS if v.name in names]
    missing = [v.name for v in chosen if v.backbone == "ms" and not have_ms]
    errors.require(
        not missing,
        f"--variants {', '.join(missing)} train G on the multi-scale "
        "backbone: pass --ms_fer_model (a train_fer run with "
        "--train_scales=1,2,3,4,5,6,7,8).",
    )
    return chosen


def variant_configs(variant, preset):
    """(generator, critic, train) configs of a variant: the preset and
    recipe (`configs.stage2_configs`), then the variant's fields."""
    from fsr_fer_tf import configs

    gen, critic, cfg = configs.stage2_configs(preset, variant.recipe)
    return (
        configs.replace(gen, **variant.generator),
        critic,
        configs.replace(cfg, **variant.train),
    )


# === Pure parts: accuracy, bootstrap, routing, acceptance, table ===


def bootstrap_indices(n, rounds, seed=0):
    """[rounds, n] indices of faces drawn with replacement (fixed seed)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(rounds, n))


def row_statistics(correct, draws):
    """Accuracy (%) per scale and of the x2..x8 mean, with bootstrap stds.

    Args:
        correct: {scale key: bool [N]} for one row, every key over the same
            N faces in the same order.
        draws: `bootstrap_indices(N, ...)`, shared by all rows.

    Returns:
        {"accuracy": {key: %}, "std": {key: %}, "mean": %, "mean_std": %}
        ("mean" over the x2..x8 keys present).
    """
    acc, std, boot = {}, {}, {}
    for key, hits in correct.items():
        hits = np.asarray(hits, np.float64)
        acc[key] = 100.0 * float(hits.mean())
        boot[key] = 100.0 * hits[draws].mean(axis=1)
        std[key] = float(boot[key].std())
    mean_keys = [f"x{s}" for s in MEAN_SCALES if f"x{s}" in correct]
    stats = {"accuracy": acc, "std": std, "mean": None, "mean_std": None}
    if mean_keys:
        stats["mean"] = float(np.mean([acc[k] for k in mean_keys]))
        stats["mean_std"] = float(
            np.std(np.mean([boot[k] for k in mean_keys], axis=0))
        )
    return stats


def paired_difference(correct, reference, draws):
    """Row minus reference on the x2..x8 mean, with its paired std.

    Both rows are scored on the same faces, so the noise of their
    difference is that of the faces each gets right and the other wrong,
    much below either row's own std: each bootstrap resample draws the
    same faces for both rows.

    Args:
        correct, reference: {scale key: bool [N]} of two rows, same faces.
        draws: `bootstrap_indices(N, ...)`.

    Returns:
        (difference in points, its bootstrap std), or None when the rows
        share no x2..x8 key.
    """
    keys = [
        f"x{s}"
        for s in MEAN_SCALES
        if f"x{s}" in correct and f"x{s}" in reference
    ]
    if not keys:
        return None
    diff = np.stack(
        [
            np.asarray(correct[k], np.float64)
            - np.asarray(reference[k], np.float64)
            for k in keys
        ]
    ).mean(axis=0)
    return 100.0 * float(diff.mean()), 100.0 * float(diff[draws].mean(1).std())


def routed(hr_correct, g_correct):
    """The HR route below a threshold, G from it on, best mean over x1..x8.

    Args:
        hr_correct: {key: bool [N]} of the HR model on bicubic faces.
        g_correct: {key: bool [N]} of a G row (same keys, same faces).

    Returns:
        (threshold scale, {key: bool [N]}): G serves scales >= threshold
        (`recognizer.choose_threshold`: ties go to the lower threshold).
    """
    from fsr_fer_tf import recognizer

    threshold, _ = recognizer.choose_threshold(
        {k: np.mean(v) for k, v in hr_correct.items()},
        {k: np.mean(v) for k, v in g_correct.items()},
    )
    return threshold, recognizer.by_threshold(hr_correct, g_correct, threshold)


def acceptance(row, bicubic, multiscale=None):
    """Issue 9's acceptance of a row, per condition.

    Args:
        row, bicubic, multiscale: `row_statistics` dicts (multiscale may
            be None).

    Returns:
        {"gain_x4_x8": bool, "loss_x2_x3": bool, "vs_multiscale": bool or
        None, "passed": bool}.
    """
    acc, base = row["accuracy"], bicubic["accuracy"]
    low = [f"x{s}" for s in (4, 5, 6, 7, 8)]
    out = {
        "gain_x4_x8": all(acc[k] >= base[k] + GAIN_AT_LOW_RES for k in low),
        "loss_x2_x3": all(
            acc[k] >= base[k] - LOSS_AT_X2_X3 for k in ("x2", "x3")
        ),
        "vs_multiscale": None,
    }
    if multiscale is not None:
        ms = multiscale["accuracy"]
        out["vs_multiscale"] = all(acc[k] >= ms[k] for k in low)
    out["passed"] = all(v is not False for v in out.values())
    return out


def table_markdown(table):
    """The ablation table in Markdown (accuracy % +- bootstrap std)."""
    ctx = table["context"]
    keys = [f"x{s}" for s in table["scales"]]
    paired = any("vs_paper" in row for row in table["rows"].values())
    about = (
        f"Total accuracy (%) on {ctx['dataset']} / {ctx['split']} "
        f"({ctx['n_images']} faces), each cell +- the bootstrap std over "
        f"faces ({ctx['bootstrap']} resamples, the same for every row); "
        "'mean' is over x2..x8. Every G row trained "
        f"{ctx['steps']} GAN steps on preset `{ctx['preset']}` unless its "
        "name says otherwise. *beyond* marks rows that are in neither the "
        "paper nor its released code. Accept: >= bicubic + "
        f"{GAIN_AT_LOW_RES:g} at each of x4..x8, >= bicubic - "
        f"{LOSS_AT_X2_X3:g} at x2 and x3, >= multiscale at each of x4..x8."
    )
    if paired:
        about += (
            " 'vs paper': the row's mean minus the `paper` row's, +- the "
            "paired bootstrap std of that difference (both rows on the "
            "same resampled faces)."
        )
    columns = keys + ["mean"] + (["vs paper"] if paired else []) + ["accept"]
    lines = [
        "## Stage-2 recipes on the same faces",
        "",
        about,
        "",
        "| row | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, row in table["rows"].items():
        cells = [
            f"{row['accuracy'][k]:.1f} ±{row['std'][k]:.1f}"
            if k in row["accuracy"]
            else "-"
            for k in keys
        ]
        mean = row["mean"]
        cells.append(
            "-" if mean is None else f"{mean:.2f} ±{row['mean_std']:.1f}"
        )
        if paired:
            vs = row.get("vs_paper")
            cells.append(
                "-" if vs is None else f"{vs['mean']:+.2f} ±{vs['std']:.2f}"
            )
        check = row.get("acceptance")
        cells.append(
            "-" if check is None else ("yes" if check["passed"] else "no")
        )
        label = row["label"] + (" *beyond*" if row.get("beyond_paper") else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(table):
    """Accuracy vs scale, one line per row (matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, row in table["rows"].items():
        keys = sorted(row["accuracy"], key=lambda k: int(k[1:]))
        style = "--" if name in ("bicubic", "multiscale") else "-"
        ax.plot(
            [int(k[1:]) for k in keys],
            [row["accuracy"][k] for k in keys],
            style,
            marker="o",
            ms=3,
            lw=2 if style == "--" else 1.2,
            label=row["label"],
        )
    ax.set_xlabel("down-sampling factor")
    ax.set_ylabel("total accuracy (%)")
    ctx = table["context"]
    ax.set_title(f"Stage-2 recipes: {ctx['dataset']} {ctx['split']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


# === Evaluated rows kept between calls ===


def file_signature(path):
    """[absolute path, size, mtime in ns]: a file unchanged since."""
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def evaluated_path(folder, split, limit):
    """Where the rows evaluated on `split` (`limit` faces) are kept."""
    suffix = f"_limit{limit}" if limit else ""
    return os.path.join(folder, f"evaluated_{split}{suffix}.npz")


def _plain(meta):
    """`meta` as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(meta))


def save_rows(path, meta, correct):
    """Writes {row: {key: bool [N]}} and the settings they came from.

    Args:
        path: the .npz file (written whole, then moved into place).
        meta: JSON-serialisable settings (split, files, configs...) that
            `load_rows` must see again for the rows to be reused.
        correct: {row: {scale key: bool [N]}}.
    """
    arrays = {
        f"{row}|{key}": np.asarray(hits, bool)
        for row, per_scale in correct.items()
        for key, hits in per_scale.items()
    }
    tmp = path + ".tmp.npz"
    np.savez(tmp, meta=np.array(json.dumps(_plain(meta))), **arrays)
    os.replace(tmp, path)


def load_rows(path, meta):
    """The rows `save_rows` wrote with these very settings, or None.

    None when the file is missing, unreadable, or was written with other
    settings (another split, backbone file, variant config...).
    """
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as data:
            if json.loads(str(data["meta"])) != _plain(meta):
                return None
            correct = collections.defaultdict(dict)
            for name in data.files:
                if name != "meta":
                    row, key = name.split("|")
                    correct[row][key] = data[name]
    except (OSError, ValueError, KeyError):
        return None
    return dict(correct)


# === Training and evaluation (TensorFlow) ===


def collect_correct(split, backbones, generators, batch_size, limit=0):
    """Whether each face is right, per row and scale, in one pass.

    Args:
        split: the evaluation split.
        backbones: {"hr": CovPoolFER, "ms": CovPoolFER}, either or both.
        generators: {row name: (backbone key, generator model)}.
        batch_size: faces per batch.
        limit: a fixed stratified subset of this many faces (0: all).

    Returns:
        ({row: {scale key: bool [N]}}, N): rows "bicubic" (hr, if given),
        "multiscale" (ms, if given) and every generator's.
    """
    import tensorflow as tf

    from fsr_fer_tf import eval_lib
    from fsr_fer_tf.models import covpool

    parts = {k: covpool.covpoolfer_parts(m) for k, m in backbones.items()}

    @tf.function(reduce_retracing=True)
    def classify(lr):
        out = {}
        for key, (features, spd, head) in parts.items():
            f_lr = spd(features(lr, training=False), training=False)
            out[BASE_ROWS[key]] = head(f_lr, training=False)[1]
            for name, (backbone, generator) in generators.items():
                if backbone != key:
                    continue
                f_sr = generator(f_lr[..., None], training=False)[..., 0]
                out[name] = head(tf.cast(f_sr, f_lr.dtype), training=False)[1]
        return out

    image_size = eval_lib.input_size(next(iter(backbones.values())))
    collected = eval_lib.collect(
        split,
        SCALES,
        batch_size,
        lambda batch: classify(batch["lr"]),
        limit=limit,
        log_every=20,
        image_size=image_size,
    )
    correct, n = {}, None
    for row, per_scale in collected.items():
        correct[row] = {}
        for key, r in per_scale.items():
            order = np.argsort(r["index"], kind="stable")
            hits = np.argmax(r["logits"], -1) == r["labels"]
            correct[row][key] = hits[order]
            n = len(hits)
    return correct, n


def build_table(correct, rows, context, bootstrap=1000, seed=0):
    """The ablation table (dict) from `collect_correct`'s output.

    Args:
        correct: {row: {key: bool [N]}}.
        rows: [(row name, label, beyond_paper)] in table order.
        context: facts stored with the table (dataset, split, ...).
        bootstrap: resamples for the stds.
        seed: their seed.
    """
    n = len(next(iter(correct["bicubic"].values())))
    draws = bootstrap_indices(n, bootstrap, seed)
    table_rows = collections.OrderedDict()
    reference = correct.get(REFERENCE_ROW)

    def add(name, label, beyond, hits, **extra):
        table_rows[name] = dict(
            label=label,
            beyond_paper=beyond,
            **row_statistics(hits, draws),
            **extra,
        )
        if reference is not None and name != REFERENCE_ROW:
            paired = paired_difference(hits, reference, draws)
            if paired is not None:
                table_rows[name]["vs_paper"] = dict(
                    zip(("mean", "std"), paired)
                )

    add(
        "bicubic",
        "bicubic + CovPoolFER (HR-trained)",
        False,
        correct["bicubic"],
    )
    if "multiscale" in correct:
        add(
            "multiscale",
            "CovPoolFER trained on x1..x8, no G",
            True,
            correct["multiscale"],
        )
    for name, label, beyond in rows:
        if name not in correct:
            continue
        add(name, label, beyond, correct[name])
    candidates = list(rows)
    if "multiscale" in correct:  # the LR route without G is one too
        candidates.append(
            ("multiscale", "the CovPoolFER trained on x1..x8, no G", True)
        )
    for name, label, beyond in candidates:
        if name not in correct:
            continue
        threshold, hits = routed(correct["bicubic"], correct[name])
        add(
            f"routed_{name}",
            f"routed: HR model below x{threshold}, then {label}",
            True,
            hits,
            threshold=threshold,
        )
    bicubic = table_rows["bicubic"]
    multiscale = table_rows.get("multiscale")
    for name, row in table_rows.items():
        if name != "bicubic":
            row["acceptance"] = acceptance(
                row, bicubic, multiscale if name != "multiscale" else None
            )
    return {
        "scales": list(SCALES),
        "rows": table_rows,
        "context": dict(context, bootstrap=bootstrap, n_images=n),
    }


def run_ablation(
    fer_model_path,
    ms_fer_model_path,
    variants,
    preset,
    data_config,
    model_dir,
    resume=True,
    eval_split="val",
    eval_batch_size=64,
    eval_limit=0,
    bootstrap=1000,
    configs_of=None,
):
    """Trains the variants, evaluates each, writes the table after each.

    The table holds the backbones' rows and every variant of `model_dir`
    evaluated with these settings (`load_rows`), named in `variants` or
    not; a variant already trained and evaluated so is not touched.

    Args:
        fer_model_path: the HR-trained stage-1 .keras file.
        ms_fer_model_path: the multi-scale stage-1 .keras file, or None.
        variants: `Variant`s to train (`select_variants`).
        preset: the stage-2 preset of every run.
        data_config: `configs.DataConfig`.
        model_dir: the ablation folder.
        resume: continue runs that have a checkpoint, and keep variants
            already evaluated (False: train and evaluate each again).
        eval_split: split of the evaluation ("val": never the test split
            while choosing recipes).
        eval_batch_size: faces per evaluation batch.
        eval_limit: a fixed stratified subset of N faces (0: all).
        bootstrap: resamples for the stds.
        configs_of: variant -> (generator, critic, train) configs; default
            `variant_configs(variant, preset)` (the command line applies
            its explicit flags over that, for every run).

    Returns:
        The table dict (also MODEL_DIR/recipes.json, .md, .png).
    """
    import keras
    from absl import logging

    from fsr_fer_tf import eval_lib
    from fsr_fer_tf import plots
    from fsr_fer_tf.data import loader
    from fsr_fer_tf.train import fsr_loop

    backbone_paths = {"hr": fer_model_path}
    if ms_fer_model_path:
        backbone_paths["ms"] = ms_fer_model_path
    backbones = {
        k: fsr_loop.load_fer_model(p) for k, p in backbone_paths.items()
    }
    dataset = loader.load_dataset(data_config)
    split = dataset.split(eval_split)
    model_dir = os.path.abspath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    if configs_of is None:
        configs_of = functools.partial(variant_configs, preset=preset)
    settings = {
        "dataset": dataset.where,
        "split": eval_split,
        "limit": eval_limit,
    }

    def evaluate(backbone_keys, generators):
        return collect_correct(
            split,
            {k: backbones[k] for k in backbone_keys},
            generators,
            eval_batch_size,
            eval_limit,
        )[0]

    def cache_of(variant):
        """(its evaluated-rows file, the settings they must come from,
        its (generator, critic, train) configs)."""
        gen, critic, cfg = configs = configs_of(variant)
        meta = dict(
            settings,
            backbone=file_signature(backbone_paths[variant.backbone]),
            configs={
                "generator": dataclasses.asdict(gen),
                "critic": dataclasses.asdict(critic),
                "train": dataclasses.asdict(cfg),
            },
        )
        folder = os.path.join(model_dir, variant.name)
        return evaluated_path(folder, eval_split, eval_limit), meta, configs

    base_file = evaluated_path(model_dir, eval_split, eval_limit)
    base_meta = dict(
        settings,
        backbones={k: file_signature(p) for k, p in backbone_paths.items()},
    )
    base = load_rows(base_file, base_meta)
    if base is None:
        logging.info("=== Recipe ablation: the backbones without G ===")
        base = evaluate(list(backbones), {})
        save_rows(base_file, base_meta, base)

    left_out = set()

    def write_table():
        """The table of every variant evaluated with these settings."""
        correct, rows, shown, steps = dict(base), [], [], None
        for variant in VARIANTS:
            if variant.backbone not in backbones:
                continue
            path, meta, configs = cache_of(variant)
            found = load_rows(path, meta)
            if found is None:
                if os.path.isfile(path) and variant.name not in left_out:
                    left_out.add(variant.name)
                    logging.warning(
                        "%s was evaluated with other settings or another "
                        "backbone: not in this table (name it in "
                        "--variants to train and evaluate it with these).",
                        path,
                    )
                continue
            shown.append(variant)
            steps = steps or configs[2].steps
            correct.update(found)
            rows.append((variant.name, variant.label, variant.beyond_paper))
            snaps = sorted(
                (n for n in found if n != variant.name),
                key=lambda n: int(n.split("@")[1]),
            )
            for name in snaps:
                label = f"{variant.label}, {name.split('@')[1]} steps"
                rows.append((name, label, variant.beyond_paper))
        context = dict(
            settings,
            preset=preset,
            steps=steps,
            fer_model=os.path.abspath(fer_model_path),
            ms_fer_model=(
                os.path.abspath(ms_fer_model_path)
                if ms_fer_model_path
                else None
            ),
            runs={v.name: os.path.join(model_dir, v.name) for v in shown},
            variants={v.name: dataclasses.asdict(v) for v in shown},
        )
        table = build_table(correct, rows, context, bootstrap)
        with open(os.path.join(model_dir, "recipes.json"), "w") as f:
            json.dump(table, f, indent=2)
        with open(os.path.join(model_dir, "recipes.md"), "w") as f:
            f.write(table_markdown(table))
        with open(os.path.join(model_dir, "recipes.png"), "wb") as f:
            f.write(plots.figure_to_png(figure(table)))
        logging.info(
            "Table of %d variant(s) -> %s",
            len(shown),
            os.path.join(model_dir, "recipes.md"),
        )
        return table

    table = None
    for variant in variants:
        path, meta, (gen, critic, cfg) = cache_of(variant)
        if resume and load_rows(path, meta) is not None:
            logging.info(
                "=== Recipe ablation: %s: trained and evaluated before "
                "with these settings (%s) ===",
                variant.label,
                path,
            )
            continue
        logging.info("=== Recipe ablation: %s ===", variant.label)
        result = fsr_loop.train_fsr(
            backbone_paths[variant.backbone],
            gen,
            critic,
            cfg,
            data_config,
            os.path.join(model_dir, variant.name),
            resume,
            dataset=dataset,
            preset=preset,
        )
        d = fsr_loop.feature_size(backbones[variant.backbone])
        generators = {
            variant.name: (
                variant.backbone,
                eval_lib.load_generator(result["generator"], d),
            )
        }
        for snap in sorted(cfg.snapshot_steps):
            snap_path = fsr_loop.snapshot_path(result["model_dir"], snap)
            if snap < cfg.steps and os.path.isfile(snap_path):
                generators[f"{variant.name}@{snap}"] = (
                    variant.backbone,
                    keras.models.load_model(snap_path, compile=False),
                )
        logging.info("=== Recipe ablation: evaluating %s ===", variant.label)
        correct = evaluate([variant.backbone], generators)
        base_row = BASE_ROWS[variant.backbone]
        if any(
            not np.array_equal(hits, base[base_row][key])
            for key, hits in correct[base_row].items()
        ):
            logging.warning(
                "The %s row came out differently in %s's evaluation than "
                "in the baselines' (%s): the evaluation is not "
                "deterministic here; the table keeps the baselines'.",
                base_row,
                variant.name,
                base_file,
            )
        save_rows(path, meta, {name: correct[name] for name in generators})
        table = write_table()
    return table if table is not None else write_table()


# === Command line ===


@functools.cache
def define_flags():
    """train_fsr's flags (every stage-2 setting) and this tool's."""
    from absl import flags

    from fsr_fer_tf import train_fsr

    train_fsr.define_flags()
    flags.DEFINE_string(
        "ms_fer_model",
        None,
        "Stage-1 CovPoolFER trained on LR faces too (train_fer "
        "--train_scales=1,2,3,4,5,6,7,8): the 'multiscale' baseline row and "
        "the backbone of the ms_* variants.",
    )
    flags.DEFINE_list(
        "variants",
        ["all"],
        f"Stage-2 variants to train and evaluate: {', '.join(VARIANT_NAMES)} "
        "or 'all' (the ms_* ones need --ms_fer_model). The table also "
        "keeps the variants of --model_dir evaluated before with the same "
        "settings.",
    )
    flags.DEFINE_string(
        "eval_split",
        "val",
        "Split the rows are compared on (choose recipes on val, never on "
        "a test split).",
    )
    flags.DEFINE_integer("eval_batch_size", 64, "Evaluation batch size.")
    flags.DEFINE_integer(
        "eval_limit",
        0,
        "Compare on a fixed stratified subset of N faces (0: all).",
    )
    flags.DEFINE_integer(
        "bootstrap",
        1000,
        "Bootstrap resamples of the faces for the std of each cell.",
    )


def main(argv):
    """Runs the ablation from parsed flags and prints the table."""
    from absl import flags

    from fsr_fer_tf import errors
    from fsr_fer_tf import train_fsr
    from fsr_fer_tf.data import flags as data_flags

    FLAGS = flags.FLAGS
    del argv
    errors.require(
        bool(FLAGS.fer_model),
        "--fer_model is required: the HR-trained stage-1 model "
        "(train_fer's MODEL_DIR/final.keras).",
    )
    errors.require(
        not FLAGS["recipe"].present,
        "--recipe is set per variant by this tool; drop it (or pick "
        "variants with --variants).",
    )
    errors.require(FLAGS.bootstrap >= 1, "--bootstrap must be >= 1.")
    variants = select_variants(FLAGS.variants, bool(FLAGS.ms_fer_model))
    table = run_ablation(
        FLAGS.fer_model,
        FLAGS.ms_fer_model,
        variants,
        FLAGS.preset,
        data_flags.data_config_from_flags(FLAGS),
        FLAGS.model_dir,
        FLAGS.resume,
        eval_split=FLAGS.eval_split,
        eval_batch_size=FLAGS.eval_batch_size,
        eval_limit=FLAGS.eval_limit,
        bootstrap=FLAGS.bootstrap,
        # Flags set on the command line apply to every run, over its
        # variant's settings.
        configs_of=lambda v: train_fsr.apply_flags(
            *variant_configs(v, FLAGS.preset)
        ),
    )
    print()
    print(table_markdown(table))
    out = os.path.abspath(FLAGS.model_dir)
    print(f"wrote {os.path.join(out, 'recipes.md')}, recipes.json, recipes.png")


def run():
    """Entry point: defines the flags, then `app.run`s `main`."""
    from absl import app
    from absl import flags

    from fsr_fer_tf import errors
    from fsr_fer_tf.data import flags as data_flags

    define_flags()
    flags.FLAGS.set_default("model_dir", DEFAULT_MODEL_DIR)
    flags.FLAGS.set_default("preset", "fer2013")
    app.run(errors.cli_main(main), flags_parser=data_flags.parse_flags)


if __name__ == "__main__":
    run()
