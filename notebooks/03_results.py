"""
Title: Results: Table 1, accuracy vs scale, and what the generator does
Description: The evaluation of a run beside the paper's numbers, confusion
    matrices, a 2-D view of LR / SR / HR features, and the faces the
    feature super-resolution helps and hurts most.
Run: after `fsr-fer-demo` (or `python -m fsr_fer_tf.evaluate` into
    RUN_DIR/eval); regenerate the .ipynb from this .py with
    tools/py_to_notebook.py.
"""

# %% [markdown]
# `fsr_fer_tf.evaluate` scores three methods on exactly the same test faces
# at every scale: `hr` (CovPoolFER on the 100x100 face, an upper bound),
# `bicubic` (CovPoolFER on the LR face brought back to 100x100 by bicubic,
# the paper's "Bicubic" row) and `fsr` (the paper's FSR-FER:
# `C(G(SPD(CNN(I_lr))))`). It wrote `RUN_DIR/eval/results.json`; this
# notebook reads it, then loads the two models to look inside.

# %%
import os

RUN_DIR = os.environ.get("FSR_FER_RUN_DIR", "../checkpoints/demo")
CONFUSION_SCALES = None  # e.g. (2, 4, 8); None: smallest, middle, largest
PROJECTION_SCALE = None  # None: x4 if evaluated, else the largest scale
PROJECTION_FACES = 300  # test faces in the feature projection
PROJECTION_LINES = 12  # of which drawn with an F_lr -> F_sr arrow
DELTA_FACES = 150  # test faces scored per scale for most improved/harmed
TOP_K = 6  # faces shown for most improved and for most harmed
BATCH_SIZE = 32

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from IPython.display import Image, Markdown, display

from fsr_fer_tf import configs
from fsr_fer_tf import eval_lib
from fsr_fer_tf import evaluate
from fsr_fer_tf import plots
from fsr_fer_tf import report
from fsr_fer_tf.data import loader
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.models import covpool
from fsr_fer_tf.train import fsr_loop

results_path = os.path.join(RUN_DIR, "eval", "results.json")
if not os.path.isfile(results_path):
    raise FileNotFoundError(
        f"{results_path} is missing: run `fsr-fer-demo` from the repository "
        "root first (or `python -m fsr_fer_tf.evaluate --out_dir="
        "RUN_DIR/eval ...`), or set FSR_FER_RUN_DIR to a run folder."
    )
with open(results_path, encoding="utf-8") as f:
    results = json.load(f)
CLASS_NAMES = results["dataset"]["class_names"]


def show(fig):
    """Displays a matplotlib figure as PNG (whatever the backend) and
    closes it."""
    display(Image(plots.figure_to_png(fig)))


def softmax(logits):
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


data = results["dataset"]
print(f"run: {os.path.abspath(RUN_DIR)}")
print(f"evaluated: {data['name']} / {data['split']}, {data['n_images']} "
      f"faces, scales {results['config']['scales']}, classifier: "
      f"{results['config']['classifier']}")

# %% [markdown]
# ## Table 1
#
# Total accuracy per scale, our rows first, then the paper's (RAF-DB,
# reported by Jing et al. 2020, not produced by this code). On the bundled
# synthetic data the two groups are not comparable in value, only in shape:
# how fast accuracy falls with the scale, and whether FSR-FER holds up at
# x5-x8 where bicubic collapses.

# %%
print("Table 1: total accuracy (%) per down-sampling factor")
display(Markdown(report.table1_markdown(results)))
evaluate.print_table(results)

# %%
show(report.accuracy_vs_scale_figure(results))

# %% [markdown]
# When the evaluation added Gaussian noise to the native LR faces
# (`--noise_sigmas`, FERAtt's robustness study), accuracy under noise:

# %%
if results.get("noise"):
    keys = sorted({k for per_method in results["noise"].values()
                   for per_scale in per_method.values() for k in per_scale},
                  key=lambda k: int(k[1:]))
    rows = ["| noise | method | " + " | ".join(keys) + " |",
            "|---|---|" + "---|" * len(keys)]
    for sigma, per_method in results["noise"].items():
        for method, per_scale in per_method.items():
            cells = [f"{100 * per_scale[k]['accuracy']:.2f}"
                     if k in per_scale else "-" for k in keys]
            rows.append(f"| {sigma} | {method} | " + " | ".join(cells) + " |")
    display(Markdown("\n".join(rows)))
else:
    print("no noise study in this evaluation")

# %% [markdown]
# ## Confusion matrices
#
# Rows are true classes, normalised per row (colour), with counts.

# %%
lr_keys = sorted(
    {k for k in results["methods"].get("bicubic", {}) if k != "x1"},
    key=lambda k: int(k[1:]),
)
if CONFUSION_SCALES:
    chosen = [f"x{s}" for s in CONFUSION_SCALES if f"x{s}" in lr_keys]
else:
    chosen = sorted({lr_keys[0], lr_keys[len(lr_keys) // 2], lr_keys[-1]},
                    key=lambda k: int(k[1:]))
for key in chosen:
    show(report.confusion_figure(results, key))

# %% [markdown]
# The faces `evaluate` drew into `examples.png` (true label, then the
# bicubic and FSR predictions; green when both are right):

# %%
examples = os.path.join(RUN_DIR, "eval", "examples.png")
if os.path.isfile(examples):
    display(Image(filename=examples))
else:
    print(f"{examples} was not written (evaluate --examples=0)")

# %% [markdown]
# ## Inside the model: LR, SR and HR features
#
# Load the two models the evaluation used and the same test faces. For a
# face, `F_hr`, `F_lr` are the LogEig features of its HR and LR versions
# and `F_sr = G(F_lr)`; the generator is trained to bring `F_sr` close to
# `F_hr` (L2 and perceptual losses) and indistinguishable from HR features
# (the critic).

# %%
def existing(path, fallback):
    """`path` when it exists, else the run folder's file (a moved run)."""
    return path if path and os.path.isfile(path) else fallback


cfg = results["config"]
fer_path = existing(cfg["fer_model"],
                    os.path.join(RUN_DIR, "fer", "final.keras"))
fsr_path = existing(cfg["fsr_model"],
                    os.path.join(RUN_DIR, "fsr", "generator.keras"))
if not os.path.isfile(fsr_path):
    raise FileNotFoundError(
        f"no generator at {fsr_path}: the rest of this notebook needs a "
        "stage-2 run (fsr-fer-demo trains one)."
    )
fer_model = fsr_loop.load_fer_model(fer_path)
generator = eval_lib.load_generator(fsr_path,
                                    fsr_loop.feature_size(fer_model))
features, spd, head = covpool.covpoolfer_parts(fer_model)
print(f"CovPoolFER: {fer_path}\ngenerator: {fsr_path}")

data_config = configs.data_config_from_params(cfg["data"])
dataset = loader.load_dataset(data_config)
split = dataset.split(data["split"])
if cfg.get("limit"):
    split = split.subset(np.arange(min(cfg["limit"], len(split))))
print(f"{len(split)} {data['split']} faces")

# %%
scale = PROJECTION_SCALE or (4 if "x4" in lr_keys else int(lr_keys[-1][1:]))
faces = split.subset(np.arange(min(PROJECTION_FACES, len(split))))


@tf.function(reduce_retracing=True)
def lr_sr_hr(hr, lr):
    f_hr = spd(features(hr, training=False), training=False)
    f_lr = spd(features(lr, training=False), training=False)
    f_sr = generator(f_lr[..., None], training=False)[..., 0]
    return f_lr, tf.cast(f_sr, f_lr.dtype), f_hr


parts = []
for batch in pipeline.make_dataset(faces, batch_size=BATCH_SIZE,
                                   training=False, scales=(scale,)):
    parts.append([x.numpy() for x in lr_sr_hr(batch["hr"], batch["lr"])])
f_lr, f_sr, f_hr = (np.concatenate(p).reshape(len(faces), -1)
                    for p in zip(*parts))
d_lr = np.linalg.norm(f_lr - f_hr, axis=1)
d_sr = np.linalg.norm(f_sr - f_hr, axis=1)
print(f"x{scale}, {len(faces)} faces, d x d = {int(np.sqrt(f_hr.shape[1]))}"
      f"^2 features (Frobenius distances):")
print(f"  mean ||F_lr - F_hr|| = {d_lr.mean():.4f}")
print(f"  mean ||F_sr - F_hr|| = {d_sr.mean():.4f}")
print(f"  F_sr closer to F_hr than F_lr for {100 * np.mean(d_sr < d_lr):.1f}%"
      " of the faces")

# %% [markdown]
# A 2-D PCA (numpy SVD, fitted on the three sets together) of the same
# faces' features. The arrows go from `F_lr` to `F_sr` for a few faces, the
# dotted lines from `F_lr` to that face's `F_hr`: a working generator moves
# the LR cloud onto the HR one.

# %%
stacked = np.concatenate([f_lr, f_sr, f_hr])
centred = stacked - stacked.mean(axis=0)
_, sing, vt = np.linalg.svd(centred, full_matrices=False)
xy = centred @ vt[:2].T
explained = sing[:2] ** 2 / np.sum(sing ** 2)
n = len(faces)
p_lr, p_sr, p_hr = xy[:n], xy[n:2 * n], xy[2 * n:]

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5),
                              gridspec_kw={"width_ratios": (3, 2)})
for points, name, colour in ((p_lr, "F_lr", "tab:blue"),
                             (p_sr, "F_sr = G(F_lr)", "tab:red"),
                             (p_hr, "F_hr", "tab:green")):
    ax.scatter(points[:, 0], points[:, 1], s=10, alpha=0.5, c=colour,
               label=name)
for i in range(min(PROJECTION_LINES, n)):
    ax.plot(*zip(p_lr[i], p_hr[i]), ":", color="gray", lw=0.8)
    ax.annotate("", xy=p_sr[i], xytext=p_lr[i],
                arrowprops=dict(arrowstyle="->", color="black", lw=0.8))
ax.set_xlabel(f"PC 1 ({100 * explained[0]:.1f}% of variance)")
ax.set_ylabel(f"PC 2 ({100 * explained[1]:.1f}%)")
ax.set_title(f"features at x{scale}: LR -> SR arrows, LR ... HR dotted")
ax.legend(fontsize=8)
bins = np.linspace(0, max(d_lr.max(), d_sr.max()), 30)
ax2.hist(d_lr, bins, alpha=0.6, color="tab:blue", label="||F_lr - F_hr||")
ax2.hist(d_sr, bins, alpha=0.6, color="tab:red", label="||F_sr - F_hr||")
ax2.set_xlabel("distance to the face's HR feature")
ax2.set_ylabel("faces")
ax2.legend(fontsize=8)
fig.tight_layout()
show(fig)

# %% [markdown]
# ## Most improved and most harmed faces
#
# For each test face and scale, the probability the head gives the true
# class with FSR minus with bicubic (`eval_lib.make_predict`, the same
# predictions `evaluate` scores). The faces are shown as the classifier's
# LR input (top) and as HR (bottom); each face appears once, at the scale
# where the change is largest.

# %%
scales = [int(k[1:]) for k in lr_keys]
collected = eval_lib.collect(split, scales, BATCH_SIZE,
                             eval_lib.make_predict(fer_model, generator),
                             limit=DELTA_FACES)
labels = collected["fsr"][lr_keys[0]]["labels"]
index = collected["fsr"][lr_keys[0]]["index"]
rows = np.arange(len(labels))
p_true = {
    method: np.stack([softmax(collected[method][k]["logits"])[rows, labels]
                      for k in lr_keys])
    for method in ("bicubic", "fsr")
}  # (scales, faces)
pred = {method: np.stack([collected[method][k]["logits"].argmax(-1)
                          for k in lr_keys])
        for method in ("bicubic", "fsr")}
delta = p_true["fsr"] - p_true["bicubic"]

table = ["| scale | faces | mean change of p(true) | improved (> +0.05) | "
         "harmed (< -0.05) | bicubic right | fsr right |",
         "|---|---|---|---|---|---|---|"]
for j, key in enumerate(lr_keys):
    table.append(
        f"| {key} | {len(labels)} | {delta[j].mean():+.3f} | "
        f"{np.mean(delta[j] > 0.05):.0%} | {np.mean(delta[j] < -0.05):.0%} | "
        f"{np.mean(pred['bicubic'][j] == labels):.0%} | "
        f"{np.mean(pred['fsr'][j] == labels):.0%} |"
    )
display(Markdown("\n".join(table)))


def face_panel(face_rows, title):
    """LR input (top row) and HR face (bottom row) of (row, scale idx)."""
    lr_images, hr_images, captions = [], [], []
    for r, j in face_rows:
        batch = next(iter(pipeline.make_dataset(
            split.subset([index[r]]), batch_size=1, training=False,
            scales=(scales[j],))))
        lr_images.append(batch["lr"][0].numpy())
        hr_images.append(batch["hr"][0].numpy())
        captions.append(
            f"#{index[r]} x{scales[j]} true {CLASS_NAMES[labels[r]]}\n"
            f"bic p={p_true['bicubic'][j, r]:.2f} "
            f"({CLASS_NAMES[pred['bicubic'][j, r]]})\n"
            f"fsr p={p_true['fsr'][j, r]:.2f} "
            f"({CLASS_NAMES[pred['fsr'][j, r]]})"
        )
    colours = ["green" if delta[j, r] > 0 else "red" for r, j in face_rows]
    return plots.face_grid(
        lr_images + hr_images,
        captions + ["HR"] * len(hr_images),
        ncols=len(face_rows),
        colors=colours + ["black"] * len(hr_images),
        title=title,
    )


k = min(TOP_K, len(labels))
best_scale = delta.argmax(axis=0)
worst_scale = delta.argmin(axis=0)
improved = np.argsort(-delta[best_scale, rows], kind="stable")[:k]
harmed = np.argsort(delta[worst_scale, rows], kind="stable")[:k]
show(face_panel([(r, best_scale[r]) for r in improved],
                "most improved by FSR: p(true) fsr - bicubic largest"))
show(face_panel([(r, worst_scale[r]) for r in harmed],
                "most harmed by FSR: p(true) fsr - bicubic smallest"))
