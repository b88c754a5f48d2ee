"""
Title: Predict: expressions of small faces in a group picture
Description: The recognizer behind `fsr-fer-predict` on a picture of real
    faces at 16..120 pixels: detection, effective scale, the HR or FSR
    route of each face, and the annotated picture.
Run: from notebooks/, with the shipped models (checkpoints/fer2013) or a
    run folder of `fsr-fer-demo` (FSR_FER_RUN_DIR: its recognizer/, or
    fer/ and fsr/ after --noroute); regenerate the .ipynb
    from this .py with tools/py_to_notebook.py.
"""

# %% [markdown]
# `fsr_fer_tf.Recognizer` finds faces (OpenCV's Haar cascade), crops each
# to a square, brings it to 100x100 with MATLAB bicubic and gives it an
# effective scale s = face_size / face side: the factor by which the
# training protocol would have shrunk a training face to get this one
# (face_size is the training faces' side: 48 for the shipped FER-2013
# models, so a 48-pixel face is x1; 100 for RAF-DB). Faces with s at
# least the recognizer's threshold take its low-resolution route: the
# feature super-resolution route `C(G(SPD(CNN(face))))` ("fsr") or the
# CovPoolFER trained on LR faces too ("lr"), whichever won on val
# (MODEL_CARD.md); the others go through the HR CovPoolFER alone ("hr"). The picture below is made of FER-2013 validation faces
# (from `../shared/data/fer2013/val` when it is there, else the bundled
# procedural faces), so every true box and label is known.

# %%
import os

RUN_DIR = os.environ.get("FSR_FER_RUN_DIR", "../checkpoints/fer2013")
FACES_DIR = os.environ.get(
    "FSR_FER_FACES_DIR", "../../shared/data/fer2013/val"
)
SIZES = (16, 20, 24, 32, 40, 48, 64, 80, 100, 120) * 3  # face sides, px
SEED = 0

# %%
import glob

import cv2
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from fsr_fer_tf import labels
from fsr_fer_tf import plots
from fsr_fer_tf import predict
from fsr_fer_tf import recognizer as recognizer_lib
from fsr_fer_tf.data import group
from fsr_fer_tf.data import synthetic

# A model directory, or the one `fsr-fer-demo` writes into its run folder.
MODEL_DIRS = [RUN_DIR, os.path.join(RUN_DIR, "recognizer")]
model_dir = next(
    (
        d
        for d in MODEL_DIRS
        if os.path.isfile(os.path.join(d, recognizer_lib.BUNDLE_FILE))
    ),
    None,
)
if model_dir:
    recognizer = recognizer_lib.Recognizer.from_dir(model_dir)
    source = f"model directory {os.path.abspath(model_dir)}"
else:  # a run folder of `fsr-fer-demo --noroute`: RUN_DIR/fer, RUN_DIR/fsr
    recognizer = recognizer_lib.Recognizer(
        os.path.join(RUN_DIR, "fer", "final.keras"),
        os.path.join(RUN_DIR, "fsr", "generator.keras"),
    )
    source = f"run folder {os.path.abspath(RUN_DIR)}"
print(f"models: {source}")
print(f"route {recognizer.above!r} from effective scale "
      f"{recognizer.threshold:g} on (face_size {recognizer.face_size:g}); "
      f"faces read as {recognizer.colour}")


def show(fig):
    """Displays a matplotlib figure as PNG and closes it."""
    display(Image(plots.figure_to_png(fig)))
    plt.close(fig)


# %% [markdown]
# ## A group picture of known faces

# %%
rng = np.random.default_rng(SEED)
paths = sorted(glob.glob(os.path.join(FACES_DIR, "*", "*.jpg")))
if paths:
    picks = rng.choice(len(paths), len(SIZES), replace=False)
    faces = [cv2.imread(paths[i], cv2.IMREAD_GRAYSCALE) for i in picks]
    true = [labels.canonical_index(os.path.basename(os.path.dirname(paths[i])))
            for i in picks]
    where = f"FER-2013 val faces from {os.path.abspath(FACES_DIR)}"
else:
    rendered = [synthetic.render_index(SEED, "test", int(i))
                for i in rng.permutation(700)[: len(SIZES)]]
    faces = [face for face, _ in rendered]
    true = [label for _, label in rendered]
    where = "bundled procedural faces (no FER-2013 folder found)"
image, truth = group.group_image(faces, SIZES, true)
print(f"{len(truth)} faces ({where}), sides {min(SIZES)}..{max(SIZES)} px, "
      f"on a {image.shape[1]}x{image.shape[0]} picture")

# %%
found = recognizer.recognize(image)
matched = group.match([t["box"] for t in truth], [f.box for f in found])
rows = ["| true side (px) | found | effective scale | route | label | "
        "true label |", "|---|---|---|---|---|---|"]
for i, t in enumerate(truth):
    if i in matched:
        f = found[matched[i]]
        rows.append(f"| {t['size']} | {f.face_px} px | {f.scale:.2f} | "
                    f"{f.route} | {f.label} ({f.confidence:.2f}) | "
                    f"{labels.CLASS_NAMES[t['label']]} |")
    else:
        rows.append(f"| {t['size']} | missed | | | | "
                    f"{labels.CLASS_NAMES[t['label']]} |")
print(f"detector found {len(matched)} of {len(truth)} faces, "
      f"{len(found) - len(matched)} false boxes")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## The annotated picture
#
# Green boxes took the HR route, orange ones the FSR ("SR") or LR ("LR")
# route; the text is the predicted label and its probability. `fsr-fer-predict` writes the
# same picture into `OUT_DIR/annotated/`.

# %%
annotated = cv2.cvtColor(predict.annotate(image, found), cv2.COLOR_BGR2RGB)
fig, ax = plt.subplots(figsize=(16, 9))
ax.imshow(annotated)
ax.axis("off")
show(fig)

# %% [markdown]
# ## Accuracy of the found faces by route
#
# On this one picture (a handful of faces per size), the share of found
# faces whose label is right, per route; the val tables in MODEL_CARD.md
# are the measured accuracy per scale.

# %%
for route in ("hr", "fsr", "lr"):
    pairs = [(truth[i], found[j]) for i, j in matched.items()
             if found[j].route == route]
    if pairs:
        right = sum(f.label == labels.CLASS_NAMES[t["label"]]
                    for t, f in pairs)
        print(f"{route}: {right}/{len(pairs)} right")
    else:
        print(f"{route}: no face")
