"""Tests of tools/bench_isr.py (feature SR against image SR, cost per face).

No assertion on timings: only the rows, the ratios' baseline, the FLOP
counts and the one-line errors.
"""

import os

import numpy as np
import pytest
from absl import flags

from fsr_fer_tf import errors
from fsr_fer_tf.models import isr

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
FER = os.path.join(REPO, "checkpoints", "fer2013", "fer.keras")
GENERATOR = os.path.join(REPO, "checkpoints", "fer2013", "generator.keras")


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("bench_isr")


def _save(model, path):
    model({
        "lr": np.zeros((1, 50, 50, 3), np.float32),
        "scale": np.array([2], np.int32),
    })  # fmt: skip
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def isr_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isr")
    metasr = isr.MetaSR(channels=4, blocks=1, meta_hidden=4, scales=(2, 4))
    rcan = isr.RCAN(scale=2, channels=4, groups=1, blocks=1, reduction=2)
    return (
        _save(metasr, tmp / "metasr.keras"),
        _save(rcan, tmp / "rcan_x2.keras"),
    )


def _row(out, name):
    lines = [line for line in out.splitlines() if line.split()[:1] == [name]]
    assert len(lines) == 1, out
    return lines[0].split()


def test_rows_ratios_and_flops(tool, isr_files, capsys):
    rows, notes = tool.run(
        FER, GENERATOR, list(isr_files), 4, batch_size=4, repeats=1, seed=0
    )
    out = capsys.readouterr().out
    assert out.startswith("TensorFlow ")
    assert [r["name"] for r in rows] == ["bicubic", "fsr", "metasr"]
    assert notes == ["note: rcan_x2 (RCAN) serves x2, not x4: skipped."]
    assert notes[0] in out
    # Columns: name, median ms, min ms, time ratio, MFLOP, FLOP ratio.
    assert _row(out, "bicubic")[3] == "1.00x"
    assert _row(out, "bicubic")[5] == "1.00x"
    for name in ("fsr", "metasr"):
        assert _row(out, name)[3].endswith("x")
    flops = {r["name"]: r["flops"] for r in rows}
    assert all(f > 0 for f in flops.values()), flops
    assert flops["fsr"] > flops["bicubic"]
    # MetaSR's convolutions are counted (not lost in its tf.cond branches).
    assert flops["metasr"] > flops["bicubic"]
    assert "eigh counts 0" in out
    assert "add them with --isr_model" not in out


def test_metasr_count_graph_computes_the_timed_route(tool, isr_files):
    """The graph counted for MetaSR (no tf.cond) gives the timed logits."""
    from fsr_fer_tf.train import fsr_loop

    fer = fsr_loop.load_fer_model(FER)
    metasr = isr.load_isr(isr_files[0])
    # No generator: the fsr route is built but never traced here.
    routes, _ = tool.make_routes(fer, None, (("metasr", metasr),), 4)
    _, _, timed_fn, count_fn = routes[2]
    lr = tool.random_faces(2, isr.native_size(4), seed=1)
    np.testing.assert_allclose(timed_fn(lr), count_fn(lr), atol=1e-4)


def test_missing_isr_model_is_one_error_line(tool, tmp_path, capsys):
    # The tool's flags in their own FlagValues: the package's entry points
    # (evaluate's --fer_model, --isr_model, ...) may be defined in this
    # test process already.
    missing = str(tmp_path / "missing.keras")
    own = flags.FlagValues()
    tool.define_flags(own)
    argv = own(["bench_isr", f"--isr_model={missing}"])
    with pytest.raises(SystemExit) as exit_info:
        errors.cli_main(lambda a: tool.main(a, own))(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert f"--isr_model {missing} does not exist" in err[0]
