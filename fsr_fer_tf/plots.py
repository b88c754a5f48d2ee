"""Matplotlib figures shared by training summaries, evaluation and notebooks.

Figures are drawn with the non-interactive Agg backend, so they work on a
headless machine; `figure_to_png` turns one into PNG bytes for files or
TensorBoard images.
"""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fsr_fer_tf import labels as labels_lib  # noqa: E402


def figure_to_png(fig, dpi=100):
    """Renders `fig` to PNG bytes and closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def draw_confusion(ax, confusion, class_names=labels_lib.CLASS_NAMES, title=""):
    """Draws a row-normalised confusion matrix with counts on `ax`.

    Args:
        ax: a matplotlib Axes.
        confusion: [K, K] counts, rows are true classes.
        class_names: K axis labels.
        title: axes title.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(
        confusion, support, out=np.zeros_like(confusion), where=support > 0
    )
    k = len(class_names)
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{int(confusion[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color=color,
            )
    if title:
        ax.set_title(title, fontsize=9)


def confusion_figure(confusion, class_names=labels_lib.CLASS_NAMES, title=""):
    """A figure with one confusion matrix (see `draw_confusion`)."""
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.7 * k))
    draw_confusion(ax, confusion, class_names, title)
    fig.tight_layout()
    return fig


# face_grid captions: font size (points) and the height of one line (inches,
# 1.3x the font size).
_CAPTION_PT = 7
_CAPTION_LINE_IN = 1.3 * _CAPTION_PT / 72


def face_grid(images, captions, ncols=8, title="", colors=None):
    """A grid of faces with a caption under each.

    Args:
        images: [N, H, W, 3] pixel values 0..255 (any real dtype).
        captions: N strings.
        ncols: faces per row.
        title: figure title.
        colors: optional N matplotlib colours for the captions (e.g. green
            for a correct prediction, red for a wrong one).

    Returns:
        A matplotlib Figure.
    """
    images = np.clip(np.asarray(images, dtype=np.float64), 0, 255)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    # Each row reserves room above its faces for its longest caption, so a
    # caption never runs into the faces of the row above (sizes in inches).
    lines = max((str(c).count("\n") + 1 for c in captions), default=1)
    face, pad = 1.5, 0.08
    caption = _CAPTION_LINE_IN * lines + pad
    head = 0.35 if title else 0.05
    height = nrows * (face + caption) + head
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(1.6 * ncols, height),
        squeeze=False,
        gridspec_kw={"hspace": caption / face, "wspace": 0.06},
    )
    fig.subplots_adjust(
        left=0.02,
        right=0.98,
        bottom=0.02 / height,
        top=1 - (head + caption) / height,
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes[i // ncols, i % ncols]
        ax.imshow(images[i].astype(np.uint8), interpolation="nearest")
        color = colors[i] if colors is not None else "black"
        ax.set_title(captions[i], fontsize=_CAPTION_PT, color=color, pad=2)
    if title:
        fig.suptitle(title, y=1 - 0.05 / height, va="top")
    return fig
