"""The paper's reported numbers, for printing beside ours (never as ours).

Jing et al. 2020, "Feature Super-Resolution Based Facial Expression
Recognition for Multi-scale Low-Resolution Faces", RAF-DB basic test split
(3068 images), total accuracy in percent. "-" in the paper is None here.
"""

SOURCE = (
    "Jing et al. 2020 (FSR-FER), RAF-DB basic test split, total accuracy %; "
    "numbers reported in the paper, not reproduced here"
)
SCALES = (2, 3, 4, 5, 6, 7, 8)

# Table 1. Method -> accuracy (%) at x2..x8.
TABLE1 = {
    "Bicubic + CovPoolFER": (
        84.518,
        78.357,
        72.686,
        67.177,
        60.495,
        52.771,
        40.264,
    ),
    "RCAN + CovPoolFER": (85.756, 83.051, 80.932, None, None, None, 59.909),
    "Meta-SR + CovPoolFER": (
        86.832,
        83.703,
        81.305,
        61.408,
        48.598,
        43.644,
        57.562,
    ),
    "Meta-SR (re-trained) + CovPoolFER": (
        86.408,
        83.963,
        82.464,
        65.971,
        55.052,
        49.153,
        64.003,
    ),
    "FSR-FER": (83.214, 81.226, 78.031, 75.196, 71.675, 68.872, 64.244),
}

# Which of our methods corresponds to which paper row.
OUR_METHOD_ROWS = {"bicubic": "Bicubic + CovPoolFER", "fsr": "FSR-FER"}

# Table 2. Re-weighting ablation (%), x2..x8 then the mean.
TABLE2 = {
    "w/o re-weighting": (
        83.246,
        81.169,
        78.196,
        74.739,
        71.675,
        68.774,
        64.211,
        74.573,
    ),
    "w/ re-weighting": (
        83.214,
        81.22,
        78.031,
        75.196,
        71.675,
        68.872,
        64.244,
        74.637,
    ),
}
# Paper sec. 4.3: iterations to convergence without / with re-weighting.
TABLE2_CONVERGENCE_ITERATIONS = {
    "w/o re-weighting": 400_000,
    "w/ re-weighting": 150_000,
}


def table1_json():
    """Table 1 as {row: {"x2": value or None, ...}}, plus its source."""
    return {
        "source": SOURCE,
        "rows": {
            row: {f"x{s}": v for s, v in zip(SCALES, values)}
            for row, values in TABLE1.items()
        },
    }
