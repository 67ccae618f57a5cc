"""Regenerate the paired notebooks book/NN_name.ipynb from the chapters book/NN_name.md.

The MyST-markdown files are the source of the book; the .ipynb files exist so that Colab, Binder and
Jupyter users can open a chapter directly (the launch buttons point at them). They carry no outputs.
Every chapter's first code cell installs the package in Colab; it is written here, from one template,
with the repository of _config.yml and the version of pyproject.toml (the book pins what it was built
with), so the twelve copies cannot drift.

    python tools/sync_notebooks.py           # rewrite every paired notebook
    python tools/sync_notebooks.py --check   # exit 1 if any notebook is missing or out of date

Equivalent jupytext command:  jupytext --to ipynb book/[0-9]*.md
tests/test_book_sync.py fails when a notebook is out of date.
"""
from __future__ import annotations

import argparse
import re
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package (the `test` extra)
    import tomli as tomllib
from pathlib import Path

import jupytext
import nbformat

BOOK = Path(__file__).resolve().parent.parent / "book"
ROOT = BOOK.parent
COLAB_START = "# Colab only:"
COLAB_CELL = """```{{code-cell}} ipython3
:tags: [remove-cell]

# Colab only: install the package at the version this book was built with ({version}). Elsewhere, install
# it yourself first (see the preface).
import sys

if "google.colab" in sys.modules:
    import subprocess

    def pip_install(spec: str) -> bool:
        return subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec]).returncode == 0

    release = "vnca_tutorial=={version}"
    tagged = "vnca_tutorial @ git+{repository}@v{version}"
    if not (pip_install(release) or pip_install(tagged)):
        raise SystemExit(f"Could not install {{release}} from PyPI, nor {{tagged}}. Check that this "
                         "notebook can reach the internet, then run this cell again; or install another "
                         "version with !pip install vnca_tutorial and expect differences.")
```"""


def colab_cell() -> str:
    """The Colab install cell, for the repository and version of this checkout."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    match = re.search(r"^repository:\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    if match is None:
        raise SystemExit("_config.yml has no repository url")
    return COLAB_CELL.format(version=version, repository=match.group(1))


def with_colab_cell(text: str) -> str:
    """The chapter's source with its Colab cell (the code cell that starts with COLAB_START) rewritten."""
    pattern = re.compile(r"```\{code-cell\} ipython3\n:tags: \[remove-cell\]\n\n" + re.escape(COLAB_START)
                         + r".*?\n```", re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit("a chapter must have exactly one Colab cell (a remove-cell starting with "
                         f"{COLAB_START!r})")
    return pattern.sub(lambda _: colab_cell(), text)


def chapters(book: Path = BOOK) -> list[Path]:
    """The chapter sources: book/*.md files with a jupytext header."""
    return sorted(p for p in book.glob("*.md") if p.read_text(encoding="utf-8").startswith("---\njupytext:"))


def to_notebook(md: Path) -> nbformat.NotebookNode:
    """The chapter as a notebook without outputs."""
    nb = jupytext.read(md)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"  # deterministic ids: regenerating an unchanged chapter changes nothing
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "remove-cell" in cell.metadata.get("tags", []):   # the install cell and the text's checks:
                cell.metadata["jupyter"] = {"source_hidden": True}   # collapsed in JupyterLab/Notebook 7,
                cell.metadata["cellView"] = "form"                   # and in Colab; they still run
    return nb


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """What must agree between a chapter and its notebook: each cell's type and source."""
    return [(c.cell_type, c.source) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = parser.parse_args(argv)
    stale = []
    for md in chapters():
        ipynb = md.with_suffix(".ipynb")
        text = md.read_text(encoding="utf-8")
        if args.check:
            if with_colab_cell(text) != text:
                stale.append(md)
            if not ipynb.exists() or cells(jupytext.read(ipynb)) != cells(to_notebook(md)):
                stale.append(ipynb)
        else:
            if with_colab_cell(text) != text:
                md.write_text(with_colab_cell(text), encoding="utf-8")
                print(f"wrote the Colab cell of {md.relative_to(BOOK.parent)}")
            jupytext.write(to_notebook(md), ipynb)
            print(f"wrote {ipynb.relative_to(BOOK.parent)}")
    for path in stale:
        print(f"out of date: {path.relative_to(BOOK.parent)} (run python tools/sync_notebooks.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
