"""Tests of tools/ablation_reweight.py (the paper's Table 2 ablation)."""

import glob
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from fsr_fer_tf import errors
from fsr_fer_tf import paper

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(REPO, "tools", "ablation_reweight.py")
WITHOUT, WITH = "w/o re-weighting", "w/ re-weighting"
KEYS = ["x2", "x3", "x4", "x5", "x6", "x7", "x8"]
# Generator / critic / schedule sizes of conftest's tiny run, as flags.
TINY_FLAGS = [
    "--g_filters=4",
    "--g_growth=4",
    "--g_num_blocks=1",
    "--g_dense_convs=2",
    "--d_base_filters=2",
    "--d_dense_units=8",
    "--batch_size=8",
    "--steps=4",
    "--eval_every=2",
    "--scales=2,4",
    "--log_every=2",
    "--synthetic_train=8",
    "--synthetic_test=3",
]


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("ablation_reweight")


@pytest.fixture
def parse(tool):
    """parse(args) parses a fresh command line into the global FLAGS and
    returns the leftover argv; the flags are reset afterwards (absl flags
    are process-global, and other tests parse them too)."""
    tool.define_flags()

    def _parse(args):
        return flags.FLAGS(["ablation_reweight"] + list(args))

    yield _parse
    flags.FLAGS.unparse_flags()


# A hand-made validation history: (GAN step, fsr/mean_accuracy).
HISTORY = [(100, 0.3), (200, 0.5), (300, 0.45)]


def test_steps_to_target(tool):
    assert tool.steps_to_target(HISTORY, 0.5) == 200
    assert tool.steps_to_target(HISTORY, 0.6) is None
    assert tool.steps_to_target(HISTORY, 0.3) == 100
    assert tool.steps_to_target(HISTORY, 0.45) == 200  # first, not last
    assert tool.steps_to_target(HISTORY[::-1], 0.45) == 200  # order-free
    assert tool.steps_to_target([], 0.1) is None


def test_best_point_default_target_and_speedup(tool):
    assert tool.best_point(HISTORY) == (200, 0.5)
    assert tool.best_point([(1, 0.4), (2, 0.4)]) == (1, 0.4)  # earliest tie
    assert tool.best_point([]) is None
    histories = {WITHOUT: HISTORY, WITH: [(100, 0.45), (200, 0.4)]}
    assert tool.default_target(histories) == 0.45
    with pytest.raises(errors.DataError, match="no fsr/mean_accuracy"):
        tool.default_target({WITHOUT: HISTORY, WITH: []})
    assert tool.speedup(400, 150) == pytest.approx(8 / 3)
    assert tool.speedup(None, 150) is None
    assert tool.speedup(400, None) is None


def test_check_target(tool):
    assert tool.check_target(0.0) is None  # automatic
    assert tool.check_target(None) is None
    assert tool.check_target(0.5) == 0.5
    assert tool.check_target(1.0) == 1.0
    for bad in (1.5, -0.1, 74.6, math.nan, math.inf):
        with pytest.raises(errors.ConfigError, match="target_accuracy"):
            tool.check_target(bad)


def _accuracies():
    # w/o: 0.40 .. 0.70 (mean 0.55); w/: 0.50 everywhere.
    return {
        WITHOUT: dict(zip(KEYS, np.linspace(0.4, 0.7, 7))),
        WITH: {k: 0.5 for k in KEYS},
    }


def _histories():
    return {
        WITHOUT: [(100, 0.2), (200, 0.3), (300, 0.45), (400, 0.5)],
        WITH: HISTORY,  # best 0.5 at 200
    }


def test_build_table2_automatic_target(tool):
    table = tool.build_table2(
        _accuracies(), _histories(), context={"dataset": "synthetic"}
    )
    assert table["scales"] == KEYS
    assert table["target"]["automatic"]
    assert table["target"]["mean_accuracy"] == 0.5  # min(0.5, 0.5)
    ours = table["ours"]
    assert list(ours) == [WITHOUT, WITH]
    assert ours[WITHOUT]["steps_to_target"] == 400
    assert ours[WITH]["steps_to_target"] == 200
    assert ours[WITH]["reached_target"]
    assert ours[WITHOUT]["avg"] == pytest.approx(0.55)
    assert ours[WITH]["accuracy"]["x8"] == 0.5
    assert ours[WITH]["best_validation"] == {"step": 200, "mean_accuracy": 0.5}
    assert ours[WITH]["last_validation_step"] == 300
    assert not ours[WITHOUT]["reweight"] and ours[WITH]["reweight"]
    assert table["speedup"] == 2.0
    # The paper's rows are paper.TABLE2 verbatim, in percent.
    for label, values in paper.TABLE2.items():
        row = table["paper"]["rows"][label]
        assert [row["accuracy_percent"][k] for k in KEYS] == list(values[:7])
        assert row["avg_percent"] == values[7]
        assert (
            row["iterations_to_convergence"]
            == (paper.TABLE2_CONVERGENCE_ITERATIONS[label])
        )
    assert table["paper"]["speedup"] == pytest.approx(400 / 150)
    json.dumps(table)  # serialisable as is


def test_build_table2_explicit_target_not_reached(tool):
    table = tool.build_table2(_accuracies(), _histories(), target=0.48)
    assert not table["target"]["automatic"]
    assert table["ours"][WITHOUT]["steps_to_target"] == 400
    assert table["ours"][WITH]["steps_to_target"] == 200
    table = tool.build_table2(_accuracies(), _histories(), target=0.6)
    assert table["ours"][WITHOUT]["steps_to_target"] is None
    assert not table["ours"][WITH]["reached_target"]
    assert table["speedup"] is None


def test_table2_markdown_cells(tool):
    table = tool.build_table2(
        _accuracies(),
        _histories(),
        context={
            "dataset": "synthetic",
            "split": "test",
            "n_images": 21,
            "validation_split": "test",
            "validation_scales": "2,4",
            "eval_every": 100,
            "pretrain_steps": 40,
        },
    )
    text = tool.table2_markdown(table)
    lines = text.splitlines()
    assert (
        "| method | x2 | x3 | x4 | x5 | x6 | x7 | x8 | avg | steps to target |"
    ) in lines
    assert (
        "| w/o re-weighting (ours) | 40.000 | 45.000 | 50.000 | 55.000 "
        "| 60.000 | 65.000 | 70.000 | 55.000 | 400 |"
    ) in lines
    assert ("| w/ re-weighting (ours) | " + "50.000 | " * 8 + "200 |") in lines
    assert (
        "| w/o re-weighting *(paper)* | 83.246 | 81.169 | 78.196 | "
        "74.739 | 71.675 | 68.774 | 64.211 | 74.573 | ~400k "
        "(convergence) |"
    ) in lines
    assert (
        "| w/ re-weighting *(paper)* | 83.214 | 81.220 | 78.031 | "
        "75.196 | 71.675 | 68.872 | 64.244 | 74.637 | ~150k "
        "(convergence) |"
    ) in lines
    assert "synthetic / test (21 images)" in text
    assert "reached 50.000%" in text and "over x2,x4" in text
    assert "every 100 steps (after 40 L2-only pre-training" in text
    assert "paper 2.67x (~400k / ~150k" in text
    assert "ours 2.00x; paper 2.67x" in text
    missed = tool.table2_markdown(
        tool.build_table2(_accuracies(), _histories(), target=0.6)
    )
    assert missed.count("| not reached |") == 2
    assert "ours n/a" in missed


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--fer_model is required"),
        (
            ["--fer_model=x.keras", "--target_accuracy=1.5"],
            "--target_accuracy=1.5 must be a fraction in (0, 1]",
        ),
        (
            ["--fer_model=x.keras", "--target_accuracy=-0.2"],
            "--target_accuracy=-0.2 must be",
        ),
        (
            ["--fer_model=x.keras", "--noreweight"],
            "--reweight is what this tool varies",
        ),
        (
            ["--fer_model=x.keras", "--target_accuracy=0.5", "--steps=-1"],
            "--steps must be >= 0",
        ),
    ],
)
def test_bad_input_is_one_error_line(tool, parse, capsys, args, message):
    argv = parse(args)
    with pytest.raises(SystemExit) as exit_info:
        errors.cli_main(tool.main)(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert message in err[0]


def test_cli_error_line_subprocess(tmp_path):
    """The real command line: app.run, parse_flags and cli_main wired."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [
            sys.executable,
            TOOL,
            "--fer_model=x.keras",
            f"--model_dir={tmp_path / 'ablation'}",
            "--target_accuracy=2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 2, out.stderr
    errors_lines = [
        line for line in out.stderr.splitlines() if line.startswith("error:")
    ]
    assert errors_lines == [
        "error: --target_accuracy=2.0 must be a fraction in (0, 1] (e.g. "
        "0.746 for 74.6%), or 0 for the lower of the two runs' best "
        "validation means."
    ]
    assert not (tmp_path / "ablation").exists()


@pytest.mark.slow
def test_end_to_end_on_tiny_run(tool, parse, tiny_run, tmp_path, capsys):
    import yaml

    model_dir = str(tmp_path / "ablation")
    argv = parse(
        [
            f"--fer_model={tiny_run['fer']['final']}",
            f"--model_dir={model_dir}",
            "--eval_batch_size=32",
            "--noeval_figures",  # evaluate_test checks the figures
        ]
        + TINY_FLAGS
    )
    tool.main(argv)
    printed = capsys.readouterr().out
    assert "| w/o re-weighting (ours) |" in printed
    assert "| w/ re-weighting *(paper)* |" in printed

    with open(os.path.join(model_dir, "table2.json")) as f:
        table = json.load(f)
    assert set(table["ours"]) == {WITHOUT, WITH}
    for label, row in table["ours"].items():
        accs = [row["accuracy"][k] for k in KEYS]
        assert len(accs) == 7 and all(0 <= a <= 1 for a in accs), accs
        assert row["avg"] == pytest.approx(np.mean(accs))
        # The automatic target is reached by both runs, at a validation
        # step (every 2 GAN steps, and the last one, 4).
        assert row["reached_target"] and row["steps_to_target"] in (2, 4)
        assert row["last_validation_step"] == 4
    assert table["target"]["automatic"]
    assert table["speedup"] == pytest.approx(
        table["ours"][WITHOUT]["steps_to_target"]
        / table["ours"][WITH]["steps_to_target"]
    )
    assert set(table["paper"]["rows"]) == set(paper.TABLE2)
    assert table["context"]["steps"] == {WITHOUT: 4, WITH: 4}
    with open(os.path.join(model_dir, "table2.md")) as f:
        assert "*(paper)*" in f.read()

    # The two runs differ in `reweight` only, and each has its report.
    params = {}
    for name, reweight in (
        ("without_reweighting", False),
        ("with_reweighting", True),
    ):
        run_dir = os.path.join(model_dir, name)
        with open(os.path.join(run_dir, "params.yaml")) as f:
            params[name] = yaml.safe_load(f)
        assert params[name]["train"]["reweight"] is reweight
        with open(os.path.join(run_dir, "eval", "results.json")) as f:
            results = json.load(f)
        assert not glob.glob(os.path.join(run_dir, "eval", "*.png"))
        assert (
            sorted(results["methods"]["fsr"], key=lambda k: int(k[1:])) == KEYS
        )
        assert (
            results["methods"]["fsr"]["x4"]["accuracy"]
            == (table["ours"][WITH if reweight else WITHOUT]["accuracy"]["x4"])
        )
    a, b = params["without_reweighting"], params["with_reweighting"]
    a["train"].pop("reweight"), b["train"].pop("reweight")
    assert a == b
