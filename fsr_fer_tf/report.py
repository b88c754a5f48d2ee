"""Paper-style reports from `results.json`: Table 1, its CSV, and figures.

Our rows and the paper's rows are always labelled; the paper's are printed
beside ours for comparison, never as our results.
"""

import csv
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fsr_fer_tf import plots  # noqa: E402

METHOD_LABELS = {
    "hr": "HR (100x100) + CovPoolFER",
    "bicubic": "Bicubic + CovPoolFER",
    "fsr": "FSR-FER",
    # evaluate --recognizer_dir: its low-resolution CovPoolFER, G on it,
    # and its answer at each scale.
    "route_backbone": "Recognizer's LR CovPoolFER",
    "route_fsr": "Recognizer's FSR-FER",
    "recognizer": "Recognizer (by scale)",
}


def method_label(method):
    """A method's row label; an image-SR method (named after its model
    file) is "<name> + CovPoolFER", like the paper's "RCAN + CovPoolFER"."""
    return METHOD_LABELS.get(method, f"{method} + CovPoolFER")


def _scale_keys(results):
    keys = set()
    for per_scale in results["methods"].values():
        keys.update(per_scale)
    return sorted(keys, key=lambda k: int(k[1:]))


def table_rows(results):
    """[(label, source, {scale key: accuracy % or None})] ours, then paper's."""
    keys = _scale_keys(results)
    rows = []
    for method, per_scale in results["methods"].items():
        label = method_label(method)
        rows.append(
            (
                label,
                "ours",
                {
                    k: 100 * per_scale[k]["accuracy"]
                    if k in per_scale
                    else None
                    for k in keys
                },
            )
        )
    for label, values in results["paper_table1"]["rows"].items():
        rows.append((label, "paper", {k: values.get(k) for k in keys}))
    return keys, rows


def _mean(values, keys):
    """Mean over x2..x8 entries that exist (the paper's Table 2 "avg")."""
    vals = [values[k] for k in keys if k != "x1" and values.get(k) is not None]
    return float(np.mean(vals)) if vals else None


def table1_markdown(results):
    """Table 1 in Markdown; bold marks the best per column within each group
    (ours / the paper's), since the groups may be on different data."""
    keys, rows = table_rows(results)
    data = results["dataset"]
    lines = [
        f"Total accuracy (%) on {data['name']} / {data['split']} "
        f"({data['n_images']} images). Rows marked *(paper)* are the numbers "
        "reported by Jing et al. 2020 on RAF-DB, shown for comparison; they "
        "were not produced by this code. **Bold**: best per column within "
        "each group.",
        "",
        "| method | " + " | ".join(keys) + " | mean x2-x8 |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    best = {}
    for source in ("ours", "paper"):
        for k in keys + ["mean"]:
            vals = [
                (_mean(v, keys) if k == "mean" else v.get(k))
                for _, s, v in rows
                if s == source
            ]
            vals = [x for x in vals if x is not None]
            best[(source, k)] = max(vals) if vals else None
    for label, source, values in rows:
        cells = []
        for k in keys + ["mean"]:
            v = _mean(values, keys) if k == "mean" else values.get(k)
            if v is None:
                cells.append("-")
            elif best[(source, k)] is not None and np.isclose(
                v, best[(source, k)]
            ):
                cells.append(f"**{v:.3f}**")
            else:
                cells.append(f"{v:.3f}")
        name = label + (" *(paper)*" if source == "paper" else " (ours)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def quality_markdown(results):
    """PSNR (dB) / SSIM per scale of every method that made face images
    (bicubic and the image-SR models); "" when none did."""
    keys = _scale_keys(results)
    rows = [
        (method, per_scale)
        for method, per_scale in results["methods"].items()
        if any("psnr" in r for r in per_scale.values())
    ]
    if not rows:
        return ""
    keys = [k for k in keys if any(k in v and "psnr" in v[k] for _, v in rows)]
    lines = [
        "PSNR (dB) / SSIM of the 100x100 faces against the HR faces (Y "
        "channel, `scale` border pixels shaved, faces rounded to uint8).",
        "",
        "| method | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for method, per_scale in rows:
        cells = [
            f"{per_scale[k]['psnr']:.2f} / {per_scale[k]['ssim']:.4f}"
            if k in per_scale and "psnr" in per_scale[k]
            else "-"
            for k in keys
        ]
        label = "Bicubic" if method == "bicubic" else method
        lines.append(f"| {label} (ours) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table1_csv(results):
    """Table 1 as CSV: method, source, one column per scale, mean x2-x8."""
    keys, rows = table_rows(results)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["method", "source"] + keys + ["mean_x2_x8"])
    for label, source, values in rows:
        cells = [values.get(k) for k in keys] + [_mean(values, keys)]
        writer.writerow(
            [label, source] + ["" if v is None else f"{v:.3f}" for v in cells]
        )
    return buf.getvalue()


def accuracy_vs_scale_figure(results):
    """Like the paper's Fig. 4: our curves solid, the paper's dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"bicubic": "tab:blue", "fsr": "tab:red", "hr": "tab:gray"}
    for method, per_scale in results["methods"].items():
        keys = sorted(per_scale, key=lambda k: int(k[1:]))
        xs = [int(k[1:]) for k in keys]
        ys = [100 * per_scale[k]["accuracy"] for k in keys]
        if method == "hr":
            ax.axhline(
                ys[0],
                color=colours["hr"],
                lw=1.5,
                label=f"{METHOD_LABELS['hr']} (ours)",
            )
            continue
        ax.plot(
            xs,
            ys,
            "-o",
            color=colours.get(method),
            lw=2,
            label=f"{method_label(method)} (ours)",
        )
    paper_colours = {
        "Bicubic + CovPoolFER": "tab:blue",
        "FSR-FER": "tab:red",
        "RCAN + CovPoolFER": "tab:green",
        "Meta-SR (re-trained) + CovPoolFER": "tab:purple",
    }
    for label, colour in paper_colours.items():
        values = results["paper_table1"]["rows"][label]
        pts = [(int(k[1:]), v) for k, v in values.items() if v is not None]
        ax.plot(
            *zip(*pts),
            "--",
            color=colour,
            lw=1.2,
            alpha=0.8,
            label=f"{label} (paper, RAF-DB)",
        )
    ax.set_xlabel("down-sampling factor")
    ax.set_ylabel("total accuracy (%)")
    ax.set_title(
        f"Accuracy vs scale: {results['dataset']['name']} "
        f"{results['dataset']['split']}"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def confusion_figure(results, key):
    """Confusion matrices of every method at one scale, side by side."""
    methods = [m for m, v in results["methods"].items() if key in v]
    n = len(methods)
    k = len(results["dataset"]["class_names"])
    fig, axes = plt.subplots(
        1, n, figsize=(0.3 + (0.75 * k + 1.2) * n, 0.8 + 0.7 * k), squeeze=False
    )
    for ax, method in zip(axes[0], methods):
        r = results["methods"][method][key]
        plots.draw_confusion(
            ax,
            r["confusion"],
            results["dataset"]["class_names"],
            f"{method_label(method)} {key}: {100 * r['accuracy']:.1f}%",
        )
    fig.tight_layout()
    return fig
