r"""Builds output-free .ipynb notebooks from their paired .py sources.

The .py file is the source of truth (reviewable diffs, no outputs); the
.ipynb beside it is generated, like keras-io's `scripts/tutobooks.py`. A
source is a header docstring, then cells in jupytext's "percent" format:

    '''
    Title: Data and low-resolution synthesis
    Description: What the run's data look like,
        and how its LR faces are made.
    '''

    # %% [markdown]
    # ## A Markdown cell
    #
    # Every line starts with "# " (or is a bare "#").

    # %%
    import os  # a code cell, up to the next "# %%" line

(with double quotes for the docstring). The header's `Title:` becomes the
notebook's H1 title and each other `Key: value` field a bold line under it;
indented lines continue the field above. Content outside a cell, an empty
cell or a Markdown line without its "#" is an error, so nothing is dropped
silently. Generated files are deterministic (cell ids hash the cell's text),
so `--check` can compare them byte for byte.

Usage:
  python tools/py_to_notebook.py                   # every notebooks/*.py
  python tools/py_to_notebook.py notebooks/02_training.py
  python tools/py_to_notebook.py --check           # exit 1 if any is stale
"""

import glob
import hashlib
import os
import re
import sys

from absl import app
from absl import flags

CHECK = flags.DEFINE_bool(
    "check",
    False,
    "Write nothing; exit 1 if an .ipynb is missing or differs from what its "
    ".py source generates (e.g. it was edited in Jupyter, or has outputs).",
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO_ROOT, "notebooks")

_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
_FIELD = re.compile(r"^(?P<key>[A-Z][A-Za-z ]*):\s*(?P<value>.*)$")
_KERNELSPEC = {
    "display_name": "Python 3",
    "language": "python",
    "name": "python3",
}


class SourceError(ValueError):
    """A malformed .py notebook source; the message names file and line."""


def _split_header(lines, path):
    """Returns (header fields, index of the first line after the header)."""
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or not lines[i].startswith('"""'):
        raise SourceError(
            f'{path}:{i + 1}: expected the header docstring (\'"""\' then '
            "'Title: ...' lines) at the top."
        )
    first = lines[i][3:]
    body, end = [], None
    if first.rstrip().endswith('"""') and first.strip() != "":
        body, end = [first.rstrip()[:-3]], i
    else:
        if first.strip():
            body.append(first)
        for j in range(i + 1, len(lines)):
            if lines[j].rstrip().endswith('"""'):
                body.append(lines[j].rstrip()[:-3])
                end = j
                break
            body.append(lines[j])
    if end is None:
        raise SourceError(f"{path}:{i + 1}: the header docstring never ends.")
    fields = {}
    key = None
    for offset, line in enumerate(body):
        lineno = i + offset + 1
        if not line.strip():
            key = None
            continue
        match = _FIELD.match(line)
        if match and not line[0].isspace():
            key = match.group("key")
            if key in fields:
                raise SourceError(f"{path}:{lineno}: '{key}:' given twice.")
            fields[key] = match.group("value").strip()
        elif key is not None and line[0].isspace():
            fields[key] = (fields[key] + " " + line.strip()).strip()
        else:
            raise SourceError(
                f"{path}:{lineno}: header lines are 'Key: value' fields "
                f"(indent a line to continue one), got {line.strip()!r}."
            )
    if not fields.get("Title"):
        raise SourceError(f"{path}: the header has no 'Title:' field.")
    return fields, end + 1


def _header_markdown(fields):
    lines = [f"# {fields['Title']}"]
    rest = [f"**{k}:** {v}" for k, v in fields.items() if k != "Title"]
    if rest:
        lines += ["", "<br>\n".join(rest)]
    return "\n".join(lines)


def _strip_blank_edges(lines):
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def parse_source(text, path="<source>"):
    """Parses a .py notebook source.

    Args:
        text: the file's text.
        path: its name, for error messages.

    Returns:
        [(cell type, source text)], cell type "markdown" or "code"; the
        first is the header's Markdown cell.

    Raises:
        SourceError: a malformed source.
    """
    lines = text.splitlines()
    fields, start = _split_header(lines, path)
    cells = [("markdown", _header_markdown(fields))]
    kind, body, body_start = None, [], start
    blocks = []
    for lineno in range(start, len(lines)):
        match = _MARKER.match(lines[lineno])
        if match:
            blocks.append((kind, body, body_start))
            rest = match.group("rest").strip()
            if rest == "[markdown]":
                kind = "markdown"
            elif rest.startswith("["):
                raise SourceError(
                    f"{path}:{lineno + 1}: unknown cell type {rest}; use "
                    "'# %%' (code) or '# %% [markdown]'."
                )
            else:
                kind = "code"  # '# %% an optional title' is a code cell
            body, body_start = [], lineno + 1
        else:
            body.append(lines[lineno])
    blocks.append((kind, body, body_start))
    for kind, body, body_start in blocks:
        if kind is None:
            extra = [n for n, line in enumerate(body) if line.strip()]
            if extra:
                raise SourceError(
                    f"{path}:{body_start + extra[0] + 1}: content outside a "
                    "cell; start a cell with '# %%' or '# %% [markdown]'."
                )
            continue
        if kind == "markdown":
            out = []
            for n, line in enumerate(body):
                if line.startswith("# "):
                    out.append(line[2:])
                elif line.rstrip() == "#" or not line.strip():
                    out.append("")
                else:
                    raise SourceError(
                        f"{path}:{body_start + n + 1}: a Markdown cell line "
                        f"must start with '# ', got {line!r}."
                    )
            body = out
        source = "\n".join(_strip_blank_edges([x.rstrip() for x in body]))
        if not source:
            raise SourceError(
                f"{path}:{body_start}: empty {kind} cell; delete its marker."
            )
        cells.append((kind, source))
    return cells


def build_notebook(cells):
    """An nbformat v4 notebook of `cells` (from `parse_source`), no outputs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": dict(_KERNELSPEC),
        "language_info": {"name": "python"},
    }
    seen = {}
    for kind, source in cells:
        digest = hashlib.sha1(f"{kind}\n{source}".encode()).hexdigest()[:12]
        seen[digest] = seen.get(digest, 0) + 1
        cell_id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source, id=cell_id)
        else:
            cell = nbformat.v4.new_code_cell(source, id=cell_id)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text(source_path):
    """The .ipynb text `source_path` (a .py notebook source) generates."""
    import nbformat

    with open(source_path, encoding="utf-8") as f:
        cells = parse_source(f.read(), source_path)
    text = nbformat.writes(build_notebook(cells))
    return text if text.endswith("\n") else text + "\n"


def notebook_path(source_path):
    return os.path.splitext(source_path)[0] + ".ipynb"


def default_sources():
    """Every notebooks/*.py of the repository, sorted."""
    return sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.py")))


def stale_notebooks(sources):
    """[(ipynb path, reason)] for notebooks that differ from their source."""
    stale = []
    for source in sources:
        target = notebook_path(source)
        if not os.path.isfile(target):
            stale.append((target, "missing"))
            continue
        with open(target, encoding="utf-8") as f:
            if f.read() != notebook_text(source):
                stale.append((target, "differs from its .py source"))
    return stale


def convert(sources, check=False, out=None, err=None):
    """Writes (or with `check`, compares) the notebooks of `sources`.

    Args:
        sources: .py notebook sources.
        check: compare instead of writing.
        out, err: streams for messages (default: sys.stdout, sys.stderr).

    Returns:
        The exit code: 0, or 1 for a bad source, or a stale notebook when
        checking.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if not sources:
        print(f"no .py sources in {NOTEBOOK_DIR}", file=err)
        return 1
    for source in sources:
        if not source.endswith(".py") or not os.path.isfile(source):
            print(f"{source}: not a .py file", file=err)
            return 1
    try:
        if check:
            stale = stale_notebooks(sources)
            for target, reason in stale:
                print(
                    f"{target}: {reason}; regenerate it with `python "
                    "tools/py_to_notebook.py` (edit the .py, not the "
                    ".ipynb)",
                    file=err,
                )
            if not stale:
                print(
                    f"{len(sources)} notebook(s) match their sources", file=out
                )
            return 1 if stale else 0
        for source in sources:
            text = notebook_text(source)
            target = notebook_path(source)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {target}", file=out)
    except SourceError as e:
        print(f"error: {e}", file=err)
        return 1
    return 0


def main(argv):
    return convert(argv[1:] or default_sources(), check=CHECK.value)


if __name__ == "__main__":
    app.run(main)
