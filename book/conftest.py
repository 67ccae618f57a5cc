"""Run the book's chapters as tests: every code cell of every book/NN_name.md must run without error.

nbval collects only .ipynb files, and only with --nbval or --nbval-lax. The chapters' source of truth is
their MyST-markdown file, so this plugin collects book/*.md chapters itself, converts each one with
jupytext, and runs it through nbval's collector with --nbval-lax semantics: a cell fails if it raises,
and outputs are never compared (the chapters are stored without outputs). Test ids read
``book/01_nca.md::Cell 3``, counting code cells from 0.

The kernel runs in book/ with VNCA_FAST=1 (unless VNCA_FAST is already set), in the Python environment
that runs pytest.

    pytest book                      # all chapters
    pytest book/01_nca.md            # one chapter
    VNCA_FAST=0 pytest book          # full-size chapters, as the book build runs them
"""
from __future__ import annotations

import os
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import jupytext
import pytest
from nbval.kernel import CURRENT_ENV_KERNEL_NAME
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

# The paired notebooks are generated copies of the .md chapters (tools/sync_notebooks.py): collecting
# them too, under --nbval, would run every chapter twice.
collect_ignore_glob = ["*.ipynb"]


def is_chapter(path: Path) -> bool:
    """A MyST-markdown notebook of the book: book/*.md starting with a jupytext header."""
    if path.suffix != ".md" or path.parent != Path(__file__).parent:
        return False
    with open(path, encoding="utf-8") as f:
        return f.read(16).startswith("---\njupytext:")


@contextmanager
def environment(**variables: str):
    """Set environment variables that are not set yet (a kernel started inside inherits them)."""
    added = {k: v for k, v in variables.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class MarkdownNotebook(IPyNbFile):
    """nbval's notebook collector, reading a jupytext MyST-markdown file instead of an .ipynb."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.compare_outputs = False  # --nbval-lax: only check that cells run

    def setup(self):
        with environment(VNCA_FAST="1"):
            super().setup()  # starts the kernel, which copies os.environ

    def collect(self):
        self.nb = jupytext.read(self.path)  # nbformat v4 notebook, code cells without outputs
        if not self.config.option.nbval_kernel_name:
            # The kernel of the Python running pytest, whatever kernels Jupyter knows about.
            self.nb.metadata.setdefault("kernelspec", {})["name"] = CURRENT_ENV_KERNEL_NAME
        code_cells = [cell for cell in self.nb.cells if cell.cell_type == "code"]
        for number, cell in enumerate(code_cells):
            options = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(find_comment_markers(cell.source))  # e.g. "# NBVAL_SKIP"
            options["check"] = False  # no stored outputs to compare with
            yield IPyNbCell.from_parent(self, name=f"Cell {number}", cell_num=number, cell=cell,
                                        options=options)


def pytest_collect_file(file_path: Path, parent):
    if is_chapter(file_path):
        return MarkdownNotebook.from_parent(parent, path=file_path)
    return None
