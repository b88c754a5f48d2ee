"""Tests of tools/ablation_recipes.py (stage-2 recipes on the same faces)."""

import json
import os

import numpy as np
import pytest
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors

KEYS = [f"x{s}" for s in range(1, 9)]


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("ablation_recipes")


@pytest.fixture
def parse(tool):
    """Parses a fresh command line into the global FLAGS (reset after)."""
    tool.define_flags()

    def _parse(args):
        return flags.FLAGS(["ablation_recipes"] + list(args))

    yield _parse
    flags.FLAGS.unparse_flags()


def test_row_statistics_against_binomial_std(tool):
    rng = np.random.default_rng(0)
    n = 4000
    hits = {
        k: rng.random(n) < p for k, p in zip(KEYS, np.linspace(0.9, 0.3, 8))
    }
    draws = tool.bootstrap_indices(n, 2000, seed=1)
    stats = tool.row_statistics(hits, draws)
    for k in KEYS:
        acc = hits[k].mean()
        assert stats["accuracy"][k] == pytest.approx(100 * acc)
        binomial = 100 * np.sqrt(acc * (1 - acc) / n)
        assert stats["std"][k] == pytest.approx(binomial, rel=0.1)
    mean = np.mean([100 * hits[f"x{s}"].mean() for s in range(2, 9)])
    assert stats["mean"] == pytest.approx(mean)
    # Independent scales: the mean's std is about the cells' / sqrt(7).
    cells = np.mean([stats["std"][f"x{s}"] for s in range(2, 9)])
    assert stats["mean_std"] == pytest.approx(cells / np.sqrt(7), rel=0.2)


def test_paired_difference_against_direct_resampling(tool):
    rng = np.random.default_rng(2)
    n = 3000
    ref = {k: rng.random(n) < 0.5 for k in KEYS}
    # The row: the reference with 4% of the faces flipped at each scale.
    row = {k: np.where(rng.random(n) < 0.04, ~v, v) for k, v in ref.items()}
    draws = tool.bootstrap_indices(n, 500, seed=4)
    diff, std = tool.paired_difference(row, ref, draws)
    keys = [f"x{s}" for s in range(2, 9)]
    per_face = np.mean([row[k].astype(float) - ref[k] for k in keys], 0)
    assert diff == pytest.approx(100 * per_face.mean())
    direct = [100 * per_face[d].mean() for d in draws]
    assert std == pytest.approx(np.std(direct))
    # Far below the rows' own std, which does not cancel the shared faces.
    own = tool.row_statistics(row, draws)["mean_std"]
    assert std < own / 2
    assert tool.paired_difference(ref, ref, draws) == (0.0, 0.0)
    assert tool.paired_difference({"x1": ref["x1"]}, ref, draws) is None


def test_routed_picks_the_best_threshold(tool):
    ones, zeros = np.ones(10, bool), np.zeros(10, bool)
    hr = {k: ones if int(k[1:]) <= 3 else zeros for k in KEYS}
    g = {k: zeros if int(k[1:]) <= 3 else ones for k in KEYS}
    threshold, hits = tool.routed(hr, g)
    assert threshold == 4
    assert all(hits[k].all() for k in KEYS)
    # G worse everywhere: every scale stays on the HR route (threshold 9).
    all_hr = {k: ones for k in KEYS}
    threshold, hits = tool.routed(all_hr, {k: zeros for k in KEYS})
    assert threshold == 9 and all(hits[k] is all_hr[k] for k in KEYS)
    # A tie goes to the lower threshold (more faces through G).
    threshold, _ = tool.routed(hr, dict(hr))
    assert threshold == 1


def _stats(values):
    return {"accuracy": dict(zip(KEYS, values))}


def test_acceptance(tool):
    bicubic = _stats([60, 58, 55, 50, 45, 40, 35, 33])
    multiscale = _stats([55, 54, 53, 52, 51, 50, 48, 46])
    good = _stats([60, 57.6, 54.5, 53, 51, 50, 48, 46])
    check = tool.acceptance(good, bicubic, multiscale)
    assert check == {
        "gain_x4_x8": True,
        "loss_x2_x3": True,
        "vs_multiscale": True,
        "passed": True,
    }
    low_x4 = _stats([60, 58, 55, 52.9, 51, 50, 48, 46])  # +2.9 at x4
    assert not tool.acceptance(low_x4, bicubic, multiscale)["gain_x4_x8"]
    loses_x2 = _stats([60, 57.4, 55, 53, 51, 50, 48, 46])  # -0.6 at x2
    assert not tool.acceptance(loses_x2, bicubic, multiscale)["passed"]
    below_ms = _stats([60, 58, 55, 53, 51, 50, 47.9, 46])
    check = tool.acceptance(below_ms, bicubic, multiscale)
    assert check["gain_x4_x8"] and not check["vs_multiscale"]
    assert tool.acceptance(below_ms, bicubic)["vs_multiscale"] is None
    assert tool.acceptance(below_ms, bicubic)["passed"]


def test_select_variants(tool):
    names = [v.name for v in tool.select_variants(["all"], have_ms=False)]
    assert "paper" in names and not any(n.startswith("ms_") for n in names)
    all_names = [v.name for v in tool.select_variants(["all"], have_ms=True)]
    assert all_names == list(tool.VARIANT_NAMES)
    chosen = tool.select_variants(["released", "paper"], have_ms=False)
    assert [v.name for v in chosen] == ["paper", "released"]  # table order
    with pytest.raises(errors.ConfigError, match="unknown nope"):
        tool.select_variants(["paper", "nope"], have_ms=True)
    with pytest.raises(errors.ConfigError, match="--ms_fer_model"):
        tool.select_variants(["ms_ce"], have_ms=False)


def test_variant_configs_differ_from_paper_only_where_named(tool):
    _, _, paper = tool.variant_configs(tool.VARIANTS[0], "fer2013")
    assert paper == configs.FSR_TRAIN_PRESETS["fer2013"]
    for variant in tool.VARIANTS:
        gen, critic, cfg = tool.variant_configs(variant, "fer2013")
        ref_gen, ref_critic, ref_cfg = configs.stage2_configs(
            "fer2013", variant.recipe
        )
        assert critic == ref_critic
        for field, value in variant.generator.items():
            assert getattr(gen, field) == value
        for field, value in variant.train.items():
            assert getattr(cfg, field) == value
        changed = {
            f for f in vars(ref_cfg) if getattr(cfg, f) != getattr(ref_cfg, f)
        }
        assert changed == set(variant.train), variant.name


def test_build_table_and_markdown(tool):
    rng = np.random.default_rng(3)
    n = 300
    correct = {
        row: {k: rng.random(n) < p for k in KEYS}
        for row, p in (("bicubic", 0.5), ("multiscale", 0.55), ("paper", 0.6))
    }
    table = tool.build_table(
        correct,
        [("paper", "FSR-FER, `--recipe=paper`", False)],
        {"dataset": "folder data at /d", "split": "val", "preset": "fer2013",
         "steps": 2400},
        bootstrap=50,
    )  # fmt: skip
    rows = table["rows"]
    assert list(rows) == [
        "bicubic", "multiscale", "paper", "routed_paper", "routed_multiscale",
    ]  # fmt: skip
    assert "acceptance" not in rows["bicubic"]
    assert rows["multiscale"]["acceptance"]["vs_multiscale"] is None
    assert rows["routed_paper"]["threshold"] in range(1, 10)
    assert table["context"]["n_images"] == n
    md = tool.table_markdown(table)
    assert md.count("\n| ") == 6  # header + 5 rows
    assert "vs_paper" not in rows["paper"]
    assert "| vs paper |" in md and "paired bootstrap std" in md
    for name in ("bicubic", "routed_paper"):
        assert rows[name]["vs_paper"]["mean"] == pytest.approx(
            rows[name]["mean"] - rows["paper"]["mean"]
        )
        assert rows[name]["vs_paper"]["std"] < rows[name]["mean_std"] * 2
    assert rows["bicubic"]["vs_paper"]["std"] > 0
    # Routing to the multi-scale model at every scale from its threshold on.
    t = rows["routed_multiscale"]["threshold"]
    for k in KEYS:
        source = "multiscale" if int(k[1:]) >= t else "bicubic"
        assert (
            rows["routed_multiscale"]["accuracy"][k]
            == rows[source]["accuracy"][k]
        )
    assert "300 faces" in md and "*beyond*" in md
    json.dumps(table)  # serialisable as written


def test_evaluated_rows_are_kept_only_for_the_same_settings(tool, tmp_path):
    rng = np.random.default_rng(5)
    correct = {
        "paper": {k: rng.random(7) < 0.5 for k in KEYS},
        "paper@400": {k: rng.random(7) < 0.5 for k in KEYS[1:]},
    }
    meta = {"split": "val", "limit": 0, "configs": {"scales": (2, 3)}}
    path = tool.evaluated_path(str(tmp_path), "val", 0)
    assert path.endswith("evaluated_val.npz")
    assert tool.evaluated_path("d", "val", 700).endswith("_limit700.npz")
    assert tool.load_rows(path, meta) is None  # nothing yet
    tool.save_rows(path, meta, correct)
    back = tool.load_rows(path, {**meta, "configs": {"scales": [2, 3]}})
    assert sorted(back) == ["paper", "paper@400"]
    assert sorted(back["paper@400"]) == KEYS[1:]
    for row, per_scale in correct.items():
        for key, hits in per_scale.items():
            assert back[row][key].dtype == bool
            np.testing.assert_array_equal(back[row][key], hits)
    assert tool.load_rows(path, {**meta, "split": "test"}) is None
    assert tool.load_rows(path, {**meta, "configs": {"scales": [2]}}) is None
    with open(path, "wb") as f:
        f.write(b"not an npz")
    assert tool.load_rows(path, meta) is None
    sig = tool.file_signature(path)
    assert sig[0] == os.path.abspath(path) and sig[1] == len(b"not an npz")


def test_bad_flags_are_one_line(tool, parse):
    argv = parse(["--variants=paper"])
    with pytest.raises(errors.ConfigError, match="--fer_model is required"):
        tool.main(argv)
    argv = parse(["--fer_model=x.keras", "--recipe=released"])
    with pytest.raises(errors.ConfigError, match="--recipe is set per"):
        tool.main(argv)


@pytest.mark.slow
def test_end_to_end_on_tiny_run(tool, parse, tiny_run, tmp_path):
    model_dir = str(tmp_path / "recipes")
    fer = tiny_run["fer"]["final"]
    args = [
            f"--fer_model={fer}",
            f"--ms_fer_model={fer}",  # a stand-in: plumbing, not skill
            f"--model_dir={model_dir}",
            "--eval_split=test",
            "--eval_batch_size=32",
            "--bootstrap=20",
            "--g_filters=4",
            "--g_growth=4",
            "--g_num_blocks=1",
            "--g_dense_convs=2",
            "--d_base_filters=2",
            "--d_dense_units=8",
            "--batch_size=8",
            "--steps=3",
            "--pretrain_steps=2",  # else `released` pre-trains 40k steps
            "--snapshot_steps=2",
            "--eval_every=3",
            "--scales=2,4",
            "--synthetic_train=8",
            "--synthetic_test=3",
    ]  # fmt: skip
    tool.main(parse(args + ["--variants=paper,ms_ce"]))
    with open(os.path.join(model_dir, "recipes.json")) as f:
        table = json.load(f)
    rows = table["rows"]
    assert list(rows)[:5] == [
        "bicubic", "multiscale", "paper", "paper@2", "ms_ce",
    ]  # fmt: skip
    n = len(tiny_run["dataset"].split("test"))
    assert table["context"]["n_images"] == n
    # The same backbone: the multi-scale row equals bicubic exactly.
    assert rows["multiscale"]["accuracy"] == rows["bicubic"]["accuracy"]
    # The bicubic row is the evaluate report's on the same faces.
    for s in (1, 2, 4, 8):
        assert rows["bicubic"]["accuracy"][f"x{s}"] == pytest.approx(
            100 * tiny_run["results"]["methods"]["bicubic"][f"x{s}"]["accuracy"]
        )
    params = os.path.join(model_dir, "ms_ce", "params.yaml")
    import yaml

    with open(params) as f:
        cfg = yaml.safe_load(f)["train"]
    assert cfg["ce_weight"] == tool.CE_WEIGHT and cfg["steps"] == 3
    assert os.path.isfile(os.path.join(model_dir, "recipes.png"))
    assert os.path.isfile(os.path.join(model_dir, "recipes.md"))

    # A second call for another variant: the first call's variants stay in
    # the table, as they were, without being trained or evaluated again.
    flags.FLAGS.unparse_flags()
    paper_g = os.path.join(model_dir, "paper", "generator.keras")
    before = tool.file_signature(paper_g)
    tool.main(parse(args + ["--variants=released"]))
    with open(os.path.join(model_dir, "recipes.json")) as f:
        again = json.load(f)
    assert list(again["rows"])[:5] == [
        "bicubic", "multiscale", "paper", "paper@2", "released",
    ]  # fmt: skip
    assert "ms_ce" in again["rows"]
    for name in ("bicubic", "paper", "paper@2", "ms_ce"):
        assert again["rows"][name]["accuracy"] == rows[name]["accuracy"]
    assert tool.file_signature(paper_g) == before  # not retrained
    assert sorted(again["context"]["runs"]) == ["ms_ce", "paper", "released"]


def test_route_configs_match_the_shipped_recipe(tool):
    # The demo's route and the ablation's `ms_ce` row (which chose the
    # shipped G) are the same recipe.
    (ms_ce,) = tool.select_variants(["ms_ce"], have_ms=True)
    for preset in ("demo", "fer2013"):
        assert tool.variant_configs(ms_ce, preset) == (
            configs.route_stage2_configs(preset)
        )
    ft = configs.multiscale_finetune_config("fer2013", "/m/fer.keras")
    assert ft.train_scales == (1, 2, 3, 4, 5, 6, 7, 8)
    assert ft.epochs == 3 and ft.init_from == "/m/fer.keras"
    assert ft.learning_rate_schedule == ((0, 0.001), (1, 0.0003), (2, 0.0001))
    assert ft.batch_size == configs.FER_TRAIN_PRESETS["fer2013"].batch_size
