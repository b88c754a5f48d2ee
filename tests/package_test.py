"""The package's public contract: exported models load with one import."""

import subprocess
import sys
import textwrap


def test_exports_load_with_only_import_fsr_fer_tf(tiny_run):
    # A fresh interpreter: nothing but keras and fsr_fer_tf imported.
    paths = [
        tiny_run["fer"]["final"],
        tiny_run["fsr"]["fsr_fer"],
        tiny_run["fsr"]["generator"],
        tiny_run["fsr"]["critic"],
    ]
    code = textwrap.dedent(f"""
        import keras, numpy as np
        import fsr_fer_tf
        for path in {paths!r}:
            model = keras.models.load_model(path)
            print(type(model).__name__, model.output_shape)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "CovPoolFER (None, 7)",
        "Functional (None, 7)",
        "RRDBGenerator (None, None, None, 1)",
        "VGGCritic (None, 1)",
    ]
