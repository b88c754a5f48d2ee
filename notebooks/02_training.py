"""
Title: Training curves of both stages
Description: Losses and accuracies read back from a run's TensorBoard
    event files: stage 1 (CovPoolFER) and stage 2 (the feature-SR GAN).
Run: after `fsr-fer-demo` (or any run folder with fer/ and fsr/);
    regenerate the .ipynb from this .py with tools/py_to_notebook.py.
"""

# %% [markdown]
# Both trainers write TensorBoard summaries to `train/` and `validation/`
# inside their run folder (`tensorboard --logdir RUN_DIR` shows them live).
# Here they are read back with `fsr_fer_tf.train.loop.read_scalars` and
# drawn with matplotlib, next to each stage's resolved `params.yaml`.

# %%
import os

RUN_DIR = os.environ.get("FSR_FER_RUN_DIR", "../checkpoints/demo")

# %%
import json

import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

from fsr_fer_tf import plots
from fsr_fer_tf.train import loop

for stage in ("fer", "fsr"):
    if not os.path.isdir(os.path.join(RUN_DIR, stage, "train")):
        raise FileNotFoundError(
            f"{os.path.join(RUN_DIR, stage, 'train')} is missing: run "
            "`fsr-fer-demo` from the repository root first, or set "
            "FSR_FER_RUN_DIR to a run folder."
        )


def show(fig):
    """Displays a matplotlib figure as PNG (whatever the backend) and
    closes it."""
    display(Image(plots.figure_to_png(fig)))


def plot_tags(ax, series, tags, title, offset=0, styles=None, log=False):
    """Draws the tags of `series` that exist; returns how many it drew.

    Args:
        ax: matplotlib Axes.
        series: {tag: [(step, value), ...]} from `loop.read_scalars`.
        tags: tags to draw, in legend order; missing ones are skipped.
        title: axes title.
        offset: subtracted from every step (aligns step axes).
        styles: optional {tag: dict of plot kwargs}.
        log: log y axis when every drawn value is positive.
    """
    drawn, values = 0, []
    for tag in tags:
        points = series.get(tag)
        if not points:
            continue
        steps = [s - offset for s, _ in points]
        ys = [v for _, v in points]
        kwargs = dict(marker="o" if len(points) < 30 else None, ms=3)
        kwargs.update((styles or {}).get(tag, {}))
        ax.plot(steps, ys, label=tag, **kwargs)
        values += ys
        drawn += 1
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
        if log and min(values) > 0:
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center",
                transform=ax.transAxes)
    return drawn


def print_params(stage):
    path = os.path.join(RUN_DIR, stage, "params.yaml")
    print(f"--- {path}")
    with open(path, encoding="utf-8") as f:
        print(f.read())


def print_best(stage):
    path = os.path.join(RUN_DIR, stage, "best", "info.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            print(f"best export ({stage}):", json.dumps(json.load(f)))


def scale_tags(series, prefix):
    """Tags `prefix` + "x<s>", sorted by s."""
    found = [t for t in series if t.startswith(prefix)
             and t[len(prefix):].lstrip("x").isdigit()]
    return sorted(found, key=lambda t: int(t[len(prefix):].lstrip("x")))


# %% [markdown]
# ## Stage 1: CovPoolFER
#
# Softmax cross-entropy plus center loss and weight decay (the released
# CovPoolFER recipe). Validation accuracy is measured per scale on the
# validation split (`validation_split` in params.yaml) with LR faces made as
# in the paper; `best.keras` is the step with the best `accuracy_x1`.

# %%
print_params("fer")
fer_params = loop.read_yaml(os.path.join(RUN_DIR, "fer", "params.yaml"))
fer_train = loop.read_scalars(os.path.join(RUN_DIR, "fer", "train"))
fer_val = loop.read_scalars(os.path.join(RUN_DIR, "fer", "validation"))
print("validation split:", fer_params.get("validation_split"))
print("train tags:", ", ".join(sorted(fer_train)))
print("validation tags:", ", ".join(
    t for t in sorted(fer_val) if not t.startswith("per_class")))

# %%
fig, axes = plt.subplots(2, 2, figsize=(11, 7))
plot_tags(axes[0, 0], fer_train,
          ["loss", "cross_entropy", "center_loss", "kernel_l2"],
          "training loss terms", log=True)
plot_tags(axes[0, 1], {**fer_train, **{f"val {t}": v for t, v in
                                       fer_val.items()}},
          ["accuracy"] + [f"val {t}" for t in
                          scale_tags(fer_val, "accuracy_")],
          "accuracy (train batches; validation per scale)")
plot_tags(axes[1, 0], fer_val, scale_tags(fer_val, "loss_"),
          "validation cross-entropy per scale")
plot_tags(axes[1, 1], fer_train, ["learning_rate"], "learning rate")
fig.suptitle("stage 1: CovPoolFER")
fig.tight_layout()
show(fig)
print_best("fer")

# %% [markdown]
# ## Stage 2: the feature super-resolution GAN
#
# The generator G maps the LogEig feature of an LR face to that of its HR
# face. Its loss is `g_loss = adv_weight * g_adv + perceptual_weight *
# g_perceptual + l2_weight * g_l2`, each term re-weighted per face by
# `w = (sigma - p_true)^r` (`p_true`: the frozen classifier's probability
# of the true class). The critic's WGAN-div loss is `d_loss = d_real -
# d_fake + penalty`; `d_real_minus_fake` is the critic's margin between
# HR and SR features. Training scalars are logged against the batches
# consumed (pre-training + GAN), validation against GAN steps; the plots
# below use GAN steps for both. Sign convention of the official WGAN-div
# code: the critic lowers D on HR features and raises it on SR ones, the
# generator lowers D on its SR features.

# %%
print_params("fsr")
fsr_params = loop.read_yaml(os.path.join(RUN_DIR, "fsr", "params.yaml"))
pretrain_steps = int(fsr_params.get("train", {}).get("pretrain_steps", 0))
fsr_train = loop.read_scalars(os.path.join(RUN_DIR, "fsr", "train"))
fsr_val = loop.read_scalars(os.path.join(RUN_DIR, "fsr", "validation"))
print("validation split:", fsr_params.get("validation_split"))
print("train tags:", ", ".join(sorted(fsr_train)))
print("validation tags:", ", ".join(sorted(fsr_val)))

# %%
gan_train = {t: v for t, v in fsr_train.items() if not t.startswith("pre/")}
pre_train = {t: v for t, v in fsr_train.items() if t.startswith("pre/")}
fig, axes = plt.subplots(3, 2, figsize=(11, 10))
plot_tags(axes[0, 0], gan_train,
          ["g_loss", "g_adv", "g_perceptual", "g_l2"],
          "generator loss terms", offset=pretrain_steps)
plot_tags(axes[0, 1], gan_train, ["d_loss", "d_real", "d_fake", "penalty"],
          "critic loss terms (WGAN-div)", offset=pretrain_steps)
plot_tags(axes[1, 0], gan_train, ["d_real_minus_fake"],
          "d_real - d_fake = E[D(F_hr)] - E[D(F_sr)] (the critic lowers it)",
          offset=pretrain_steps)
plot_tags(axes[1, 1], gan_train, ["w_mean", "w_min", "w_max", "p_true"],
          "re-weighting w = (sigma - p_true)^r", offset=pretrain_steps)
colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
val_tags, styles = [], {}
for i, tag in enumerate(scale_tags(fsr_val, "fsr/accuracy_")):
    key = tag.split("_")[-1]
    for method, dash, marker in (("fsr", "-", "o"), ("bicubic", "--", "x")):
        name = f"{method}/accuracy_{key}"
        val_tags.append(name)
        styles[name] = dict(color=colours[i % len(colours)], ls=dash,
                            marker=marker)
plot_tags(axes[2, 0], fsr_val, val_tags,
          "validation accuracy per scale (fsr: solid, o; bicubic: dashed, x)",
          styles=styles)
plot_tags(axes[2, 1], gan_train, ["g_learning_rate", "d_learning_rate"],
          "learning rates", offset=pretrain_steps)
for ax in axes.ravel():
    ax.set_xlabel("GAN step")
fig.suptitle("stage 2: feature super-resolution GAN")
fig.tight_layout()
show(fig)
if pre_train:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_tags(ax, pre_train, sorted(pre_train),
              f"L2 pre-training ({pretrain_steps} steps)", log=True)
    fig.tight_layout()
    show(fig)
print_best("fsr")

# %% [markdown]
# The last validation of stage 2 per scale: does the generator beat plain
# bicubic upsampling on the same faces?

# %%
rows = ["| scale | bicubic | fsr | fsr - bicubic |", "|---|---|---|---|"]
for tag in scale_tags(fsr_val, "fsr/accuracy_"):
    key = tag.split("_")[-1]
    step, fsr_acc = fsr_val[tag][-1]
    bic = fsr_val.get(f"bicubic/accuracy_{key}", [(step, float("nan"))])[-1][1]
    rows.append(f"| {key} | {100 * bic:.2f} | {100 * fsr_acc:.2f} | "
                f"{100 * (fsr_acc - bic):+.2f} |")
last = max((p[-1][0] for p in fsr_val.values()), default=0)
display(Markdown(f"Validation accuracy (%) at GAN step {last}:\n\n"
                 + "\n".join(rows)))
