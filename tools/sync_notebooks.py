"""Regenerate the paired notebooks book/NN_name.ipynb from the chapters book/NN_name.md.

The MyST-markdown files are the source of the book; the .ipynb files exist so that Colab, Binder and
Jupyter users can open a chapter directly (the launch buttons point at them). They carry no outputs.

    python tools/sync_notebooks.py           # rewrite every paired notebook
    python tools/sync_notebooks.py --check   # exit 1 if any notebook is missing or out of date

Equivalent jupytext command:  jupytext --to ipynb book/[0-9]*.md
tests/test_book_sync.py fails when a notebook is out of date.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

BOOK = Path(__file__).resolve().parent.parent / "book"


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
        nb = to_notebook(md)
        if args.check:
            if not ipynb.exists() or cells(jupytext.read(ipynb)) != cells(nb):
                stale.append(ipynb)
        else:
            jupytext.write(nb, ipynb)
            print(f"wrote {ipynb.relative_to(BOOK.parent)}")
    for path in stale:
        print(f"out of date: {path.relative_to(BOOK.parent)} (run python tools/sync_notebooks.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
