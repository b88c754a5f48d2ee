"""The notebooks: generated from their .py sources, output-free, and they run.

The execution test runs each notebook headless (nbclient) against the tiny
run of the `tiny_run` fixture, passed through FSR_FER_RUN_DIR, the four in
one kernel (its namespace cleared before each). It needs a
Jupyter kernel for this very interpreter: the registered `python3` kernel if
it runs `sys.executable`, else a kernelspec written to a temporary folder
(ipykernel.kernelspec.install, found through JUPYTER_PATH). Nothing is
installed into the environment and nothing is downloaded.
"""

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = (
    "01_data_and_lr_synthesis",
    "02_training",
    "03_results",
    "04_predict",
)
CELL_TIMEOUT_S = 300
# What each notebook must show on the tiny run: PNG images, and text that
# must appear in its outputs (stdout or Markdown).
EXPECTED = {
    "01_data_and_lr_synthesis": dict(
        images=4,
        texts=(
            "| class |",
            "| anger |",
            "TF round trip",
            "MATLAB bicubic - tf.image.resize",
        ),
    ),
    "02_training": dict(
        images=2,
        texts=(
            "fer/params.yaml",
            "fsr/params.yaml",
            "d_real_minus_fake",
            "Validation accuracy (%) at GAN step",
        ),
    ),
    "03_results": dict(
        images=8,
        texts=(
            "Table 1",
            "FSR-FER (ours)",
            "FSR-FER *(paper)*",
            "mean ||F_lr - F_hr||",
            "mean ||F_sr - F_hr||",
            "mean change of p(true)",
        ),
    ),
    "04_predict": dict(
        images=1,
        texts=(
            "FER-2013 val faces",
            "| true side (px) | found |",
            "detector found",
            "fsr:",
        ),
    ),
}


def _converter():
    """tools/py_to_notebook.py as a module (tools/ is not a package)."""
    name = "fsr_fer_tools_py_to_notebook"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(REPO, "tools", "py_to_notebook.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --- The committed notebooks -------------------------------------------------


def test_sources_are_the_three_notebooks():
    conv = _converter()
    names = [os.path.basename(p)[:-3] for p in conv.default_sources()]
    assert names == list(NOTEBOOKS)


def test_committed_notebooks_match_their_sources():
    conv = _converter()
    assert conv.stale_notebooks(conv.default_sources()) == [], (
        "regenerate with `python tools/py_to_notebook.py`"
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    with open(
        os.path.join(NOTEBOOK_DIR, name + ".ipynb"), encoding="utf-8"
    ) as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == []
            assert cell["execution_count"] is None
        assert cell["metadata"] == {}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_takes_run_dir_first_and_defines_no_model(name):
    conv = _converter()
    with open(os.path.join(NOTEBOOK_DIR, name + ".py"), encoding="utf-8") as f:
        text = f.read()
    cells = conv.parse_source(text, name)
    code = [source for kind, source in cells if kind == "code"]
    assert 'RUN_DIR = os.environ.get("FSR_FER_RUN_DIR"' in code[0]
    # STYLE.md section 6: notebooks import models from fsr_fer_tf.
    for forbidden in ("keras.Model(", "keras.Sequential", "keras.layers."):
        assert forbidden not in text, forbidden
    assert not re.search(r"^\s*class \w", text, re.MULTILINE)


# --- tools/py_to_notebook.py -------------------------------------------------

SOURCE = '''"""
Title: A title
Description: First line,
    continued.
"""

# %% [markdown]
# ## Heading
#
# Text with `code`.

# %%
import os

x = 1


# %% a titled code cell
print(x)
'''


def test_parse_source_cells():
    cells = _converter().parse_source(SOURCE)
    assert cells == [
        ("markdown", "# A title\n\n**Description:** First line, continued."),
        ("markdown", "## Heading\n\nText with `code`."),
        ("code", "import os\n\nx = 1"),
        ("code", "print(x)"),
    ]


def test_build_notebook_is_deterministic_and_output_free():
    conv = _converter()
    cells = conv.parse_source(SOURCE)
    a, b = conv.build_notebook(cells), conv.build_notebook(cells)
    assert a == b
    assert [c.cell_type for c in a.cells] == [
        "markdown",
        "markdown",
        "code",
        "code",
    ]
    assert all(c.outputs == [] for c in a.cells if c.cell_type == "code")
    assert a.metadata.kernelspec.name == "python3"
    assert len({c.id for c in a.cells}) == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("import os\n", "header docstring"),
        ('"""\nDescription: no title\n"""\n# %%\nx = 1\n', "Title"),
        ('"""\nTitle: t\n"""\nx = 1\n# %%\ny = 2\n', "outside a cell"),
        (
            '"""\nTitle: t\n"""\n# %% [markdown]\nnot a comment\n',
            "must start with '# '",
        ),
        ('"""\nTitle: t\n"""\n# %%\n\n# %%\nx = 1\n', "empty code cell"),
        ('"""\nTitle: t\n"""\n# %% [raw]\nx\n', "unknown cell type"),
        ('"""\nTitle: t\nfree text\n"""\n# %%\nx = 1\n', "Key: value"),
        ('"""\nTitle: t\n# %%\nx = 1\n', "never ends"),
    ],
)
def test_parse_source_rejects(text, message):
    conv = _converter()
    with pytest.raises(conv.SourceError, match=message.replace("(", r"\(")):
        conv.parse_source(text, "bad.py")


def test_check_mode_finds_stale_and_missing_notebooks(tmp_path, capsys):
    conv = _converter()
    source = tmp_path / "nb.py"
    source.write_text(SOURCE, encoding="utf-8")
    assert conv.convert([str(source)], check=True) == 1
    assert "missing" in capsys.readouterr().err
    assert conv.convert([str(source)]) == 0
    assert conv.convert([str(source)], check=True) == 0
    # A notebook saved from Jupyter with outputs no longer matches.
    target = tmp_path / "nb.ipynb"
    nb = json.loads(target.read_text(encoding="utf-8"))
    nb["cells"][2]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "1\n"}
    ]
    target.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    assert conv.convert([str(source)], check=True) == 1
    assert "differs from its .py source" in capsys.readouterr().err
    # So does a notebook whose source changed.
    assert conv.convert([str(source)]) == 0
    source.write_text(SOURCE + "\n# %%\nprint(2)\n", encoding="utf-8")
    assert conv.convert([str(source)], check=True) == 1


def test_command_line_check_passes_on_the_repository():
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "py_to_notebook.py"),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"{len(NOTEBOOKS)} notebook(s) match" in out.stdout


# --- Execution ---------------------------------------------------------------


def _runs_this_interpreter(argv0):
    try:
        out = subprocess.run(
            [argv0, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.realpath(out.stdout.strip()) == os.path.realpath(
        sys.executable
    )


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory):
    """A kernel that runs this interpreter (see the module docstring)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if _runs_this_interpreter(spec.argv[0]):
            yield "python3"
            return
    except NoSuchKernel:
        pass
    from ipykernel import kernelspec

    prefix = str(tmp_path_factory.mktemp("kernel"))
    name = "fsr-fer-notebook-test"
    kernelspec.install(kernel_name=name, prefix=prefix)
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [os.path.join(prefix, "share", "jupyter")] + ([old] if old else [])
    )
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


def _listing(folder):
    """{relative path: (size, mtime)} of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def _outputs(nb):
    """(texts, number of PNG images) over every code cell's outputs."""
    texts, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                texts.append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                if "image/png" in out.data:
                    base64.b64decode(out.data["image/png"], validate=True)
                    images += 1
                texts.append(out.data.get("text/markdown", ""))
                if "image/png" not in out.data:
                    texts.append(out.data.get("text/plain", ""))
    return "\n".join(texts), images


@pytest.fixture(scope="module")
def kernel(tiny_run, kernel_name):
    """One kernel for the four notebooks (each kernel start imports
    TensorFlow again), started in NOTEBOOK_DIR with FSR_FER_RUN_DIR set to
    the tiny run. Each notebook first clears the namespace (`%reset -f`),
    so none can use a name another one defined."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    env = dict(os.environ, FSR_FER_RUN_DIR=tiny_run["run_dir"])
    km.start_kernel(cwd=NOTEBOOK_DIR, env=env)
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_the_tiny_run(name, tiny_run, kernel):
    import nbformat
    from nbclient import NotebookClient

    if not kernel.is_alive():  # an earlier notebook killed it
        kernel.restart_kernel(now=True)
    run_dir = tiny_run["run_dir"]
    nb = nbformat.read(
        os.path.join(NOTEBOOK_DIR, name + ".ipynb"), as_version=4
    )
    nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
    before = _listing(run_dir), sorted(os.listdir(NOTEBOOK_DIR))
    NotebookClient(
        nb,
        km=kernel,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": NOTEBOOK_DIR}},
    ).execute()  # raises CellExecutionError on the first failing cell
    assert nb.cells[0].outputs == []  # the reset printed nothing
    texts, images = _outputs(nb)
    expected = EXPECTED[name]
    for text in expected["texts"]:
        assert text in texts, f"{name}: no output contains {text!r}"
    assert images >= expected["images"], f"{name}: {images} images"
    # The notebooks only read the run; they write nothing anywhere.
    assert (_listing(run_dir), sorted(os.listdir(NOTEBOOK_DIR))) == before
