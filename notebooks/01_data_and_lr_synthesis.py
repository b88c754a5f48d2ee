"""
Title: The data of a run, and how its low-resolution faces are made
Description: Class balance, sample faces, one face at x1..x8 (the paper's
    Fig. 3) and how far tf.image.resize is from MATLAB's bicubic.
Run: after `fsr-fer-demo` (or any run folder with fer/params.yaml);
    regenerate the .ipynb from this .py with tools/py_to_notebook.py.
"""

# %% [markdown]
# FSR-FER classifies faces that were photographed small. The paper makes
# them from 100x100 faces: MATLAB `imresize(I, 1/s)` (bicubic, antialiased)
# gives the native low-resolution (LR) face, `imresize(lr, [100 100])`
# brings it back to the classifier's input size. This notebook loads the
# data the run trained on and shows what those faces look like.
#
# `RUN_DIR` is the folder `fsr-fer-demo` wrote (`data/`, `fer/`, `fsr/`,
# `eval/`); set `FSR_FER_RUN_DIR` to open another run.

# %%
import os

RUN_DIR = os.environ.get("FSR_FER_RUN_DIR", "../checkpoints/demo")
SAMPLES_PER_CLASS = 6  # faces per class in the sample grid
SCALE_FACE_CLASS = "anger"  # class of the face shown at x1..x8
DIFF_SCALE = 3  # scale of the MATLAB vs tf.image.resize difference image

# %%

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from IPython.display import Image, Markdown, display

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import labels as labels_lib
from fsr_fer_tf import plots
from fsr_fer_tf.data import imresize
from fsr_fer_tf.data import loader
from fsr_fer_tf.data import lr_synthesis
from fsr_fer_tf.data import pipeline
from fsr_fer_tf.train import loop

CLASS_NAMES = labels_lib.CLASS_NAMES


def show(fig):
    """Displays a matplotlib figure as PNG (whatever the backend) and
    closes it."""
    display(Image(plots.figure_to_png(fig)))


def run_data_config(run_dir):
    """The DataConfig of the run's stage 1 (fer/params.yaml "data")."""
    params_path = os.path.join(run_dir, "fer", "params.yaml")
    if not os.path.isfile(params_path):
        raise FileNotFoundError(
            f"{params_path} is missing: run `fsr-fer-demo` from the "
            "repository root first, or set FSR_FER_RUN_DIR to a run folder."
        )
    return configs.data_config_from_params(loop.read_yaml(params_path)["data"])


data_config = run_data_config(RUN_DIR)
dataset = loader.load_dataset(data_config)
print(f"run: {os.path.abspath(RUN_DIR)}")
print(f"data: {data_config}")
for note in dataset.notes:
    print("note:", note)
print(f"skipped files or classes: {len(dataset.skipped)}")

# %% [markdown]
# ## Class balance
#
# Images per class and split. RAF-DB is far from balanced (happiness is
# ~39% of it, fear ~2%), so the paper's "total accuracy" is dominated by
# the large classes; the bundled synthetic set is balanced by design.

# %%
summary = dataset.summary()
split_names = list(summary["splits"])
counts = {
    name: [summary["splits"][name]["per_class"][c] for c in CLASS_NAMES]
    for name in split_names
}
header = "| class | " + " | ".join(split_names) + " |"
rows = [header, "|---|" + "---|" * len(split_names)]
for i, c in enumerate(CLASS_NAMES):
    cells = []
    for name in split_names:
        share = counts[name][i] / max(1, sum(counts[name]))
        cells.append(f"{counts[name][i]} ({100 * share:.1f}%)")
    rows.append(f"| {c} | " + " | ".join(cells) + " |")
rows.append(
    "| **total** | "
    + " | ".join(str(sum(counts[name])) for name in split_names)
    + " |"
)
display(Markdown("\n".join(rows)))

fig, ax = plt.subplots(figsize=(8, 3.2))
width = 0.8 / len(split_names)
for j, name in enumerate(split_names):
    ax.bar(np.arange(len(CLASS_NAMES)) + (j - (len(split_names) - 1) / 2)
           * width, counts[name], width, label=name)
ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=20)
ax.set_ylabel("images")
ax.set_title(f"{dataset.name}: images per class")
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
show(fig)

# %% [markdown]
# ## Sample faces
#
# The first faces of each class in the training split (the HR faces,
# 100x100, before any augmentation).

# %%
train = dataset.split("train")
picked, captions, first_of_class = [], [], {}
for k, name in enumerate(CLASS_NAMES):
    where = np.flatnonzero(train.labels == k)[:SAMPLES_PER_CLASS]
    if len(where):
        first_of_class[name] = len(picked)
    picked.extend(where.tolist())
    captions.extend(f"{name} #{i}" for i in where)
faces = pipeline.hr_images(train.subset(picked)).numpy()
if faces.shape[1:3] != (data_config.image_size,) * 2:
    # In-memory sets keep their own size (FER2013: 48x48); the pipeline
    # resizes them with MATLAB bicubic, as here.
    faces = imresize.imresize(
        faces, output_size=(data_config.image_size,) * 2
    ).numpy()
show(plots.face_grid(faces, captions, ncols=SAMPLES_PER_CLASS,
                     title="training faces, one row per class"))

# %% [markdown]
# ## One face at x1..x8
#
# Top: the native LR face `imresize(I, 1/s)`, ceil(100 / s) pixels wide,
# drawn to scale (each pixel a block). Bottom: what CovPoolFER sees, the
# LR face brought back to 100x100 with bicubic: the paper's "Bicubic"
# input, and the input whose feature the FSR generator super-resolves.

# %%
scales = (1, 2, 3, 4, 5, 6, 7, 8)
shown_class = (SCALE_FACE_CLASS if SCALE_FACE_CLASS in first_of_class
               else next(iter(first_of_class)))
face = faces[first_of_class[shown_class]]
natives, ups = [], []
for s in scales:
    native, up = lr_synthesis.synthesize_lr(
        face.astype(np.uint8), s, image_size=data_config.image_size
    )
    natives.append(native.numpy())
    ups.append(up.numpy())

size = data_config.image_size
fig, axes = plt.subplots(2, len(scales), figsize=(2 * len(scales), 4.8))
for j, s in enumerate(scales):
    n = natives[j].shape[0]
    ax = axes[0, j]
    # Extent in HR pixels, so a native face of n pixels covers n / size of
    # the axes: the face appears at its true relative size.
    ax.imshow(natives[j], interpolation="nearest",
              extent=(0, n, n, 0))
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)
    ax.set_title(f"x{s}: {n}x{n}", fontsize=9)
    ax.axis("off")
    ax = axes[1, j]
    ax.imshow(ups[j], interpolation="nearest")
    ax.set_title(f"x{s} up to {size}", fontsize=9)
    ax.axis("off")
fig.suptitle(f"one {shown_class} face: native LR (top), "
             "bicubic back to full size (bottom)")
fig.tight_layout()
show(fig)

# %% [markdown]
# ## MATLAB bicubic vs `tf.image.resize`
#
# The paper made its LR faces in MATLAB. `tf.image.resize(...,
# "bicubic", antialias=True)` uses the same cubic kernel, but renormalises
# it at the border instead of mirroring the image, and where 100 / s is not
# whole (x3, x6, x7, x8) it resamples with scale out / in where MATLAB keeps
# exactly 1 / s, so its grid drifts away towards the far edge. With TF's
# default `antialias=False` the kernel is not widened when shrinking at all.
# `fsr_fer_tf.data.imresize` follows MATLAB's `imresize`. The table compares
# both with MATLAB's own double outputs on a 100x100 reference crop (grey
# levels of 255): shrinking by s, and the round trip down and back up.

# %%
try:
    gaps = {aa: imresize.tf_resize_gap(antialias=aa) for aa in (True, False)}
except errors.DataError as e:
    gaps = None
    print(f"reference outputs not found, table skipped: {e}")
if gaps:
    rows = [
        "| scale | TF down mean / max | TF round trip mean / max | "
        "TF round trip, antialias=False (TF's default) mean / max | "
        "fsr_fer_tf imresize max |",
        "|---|---|---|---|---|",
    ]
    for s, g in gaps[True].items():
        h = gaps[False][s]
        rows.append(
            f"| x{s} | {g['down_mean']:.2f} / {g['down_max']:.2f} "
            f"| {g['trip_mean']:.2f} / {g['trip_max']:.2f} "
            f"| {h['trip_mean']:.2f} / {h['trip_max']:.2f} "
            f"| {g['ours_max']:.2e} |"
        )
    display(Markdown("\n".join(rows)))

# %% [markdown]
# The same comparison on one face of the run's data at `DIFF_SCALE`: the
# faces the model is trained on (MATLAB bicubic, this package) and the ones
# a `tf.image.resize` pipeline would give, and their difference.

# %%
small = -(-size // DIFF_SCALE)
ours = lr_synthesis.synthesize_lr(
    face.astype(np.uint8), DIFF_SCALE, image_size=size
)[1].numpy().astype(np.float64)
x = tf.image.resize(face.astype(np.float32), [small, small], "bicubic",
                    antialias=True)
x = tf.image.resize(x, [size, size], "bicubic", antialias=True)
theirs = np.clip(np.round(x.numpy()), 0, 255)
diff = np.abs(ours - theirs).mean(axis=-1)
print(f"x{DIFF_SCALE}: |MATLAB bicubic - tf.image.resize| mean "
      f"{diff.mean():.2f}, max {diff.max():.0f} grey levels (mean over RGB)")

fig, axes = plt.subplots(1, 4, figsize=(11, 3))
panels = [(face, "HR"), (ours, f"x{DIFF_SCALE} MATLAB bicubic"),
          (theirs, f"x{DIFF_SCALE} tf.image.resize")]
for ax, (img, title) in zip(axes, panels):
    ax.imshow(np.clip(img, 0, 255).astype(np.uint8))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
im = axes[3].imshow(diff, cmap="magma")
axes[3].set_title("|difference| (grey levels)", fontsize=9)
axes[3].axis("off")
fig.colorbar(im, ax=axes[3], fraction=0.046)
fig.tight_layout()
show(fig)
