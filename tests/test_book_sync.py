"""The paired notebooks book/NN_name.ipynb must match their chapters book/NN_name.md.

The .md files are the book's source; the .ipynb files are what Colab, Binder and the launch buttons open.
Regenerate them with ``python tools/sync_notebooks.py`` (or ``jupytext --to ipynb book/[0-9]*.md``).
"""
from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

BOOK = Path(__file__).resolve().parent.parent / "book"
REPO = BOOK.parent
FIX = "regenerate it with: python tools/sync_notebooks.py"


def chapters() -> list[Path]:
    return sorted(p for p in BOOK.glob("*.md")
                  if p.read_text(encoding="utf-8").startswith("---\njupytext:"))


def cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in jupytext.read(path).cells]


def test_the_book_has_chapters():
    assert chapters(), f"no jupytext MyST-markdown chapters found in {BOOK}"


@pytest.mark.parametrize("md", chapters(), ids=lambda p: p.name)
def test_chapter_has_paired_notebook(md: Path):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{md.name} has no paired notebook {ipynb.name}; {FIX}"


@pytest.mark.parametrize("md", chapters(), ids=lambda p: p.name)
def test_paired_notebook_matches_chapter(md: Path):
    ipynb = md.with_suffix(".ipynb")
    if not ipynb.exists():
        pytest.fail(f"{ipynb.name} is missing; {FIX}")
    expected, actual = cells(md), cells(ipynb)
    assert len(actual) == len(expected), (
        f"{ipynb.name} has {len(actual)} cells, {md.name} has {len(expected)}; {FIX}")
    for i, (want, got) in enumerate(zip(expected, actual)):
        assert got == want, f"cell {i} of {ipynb.name} differs from {md.name}; {FIX}"


@pytest.mark.parametrize("md", chapters(), ids=lambda p: p.name)
def test_paired_notebook_has_no_outputs(md: Path):
    ipynb = md.with_suffix(".ipynb")
    if not ipynb.exists():
        pytest.skip(f"{ipynb.name} is missing (reported by test_chapter_has_paired_notebook)")
    nb = jupytext.read(ipynb)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("outputs")]
    assert not with_outputs, f"{ipynb.name} stores outputs in cells {with_outputs}; {FIX}"


def test_every_notebook_has_a_chapter():
    sources = {p.stem for p in chapters()}
    orphans = [p.name for p in sorted(BOOK.glob("*.ipynb")) if p.stem not in sources]
    assert not orphans, f"notebooks without a book/*.md chapter (delete them or add the chapter): {orphans}"


def test_every_chapter_installs_the_version_it_was_built_with_in_colab():
    import importlib.util
    spec = importlib.util.spec_from_file_location("sync_notebooks", REPO / "tools" / "sync_notebooks.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    cell = sync.colab_cell()
    version = sync.tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert f'"vnca_tutorial=={version}"' in cell and f"@v{version}" in cell and "SystemExit" in cell
    for md in chapters():
        assert md.read_text(encoding="utf-8").count(cell) == 1, f"{md.name}: run python tools/sync_notebooks.py"


@pytest.mark.parametrize("md", chapters(), ids=lambda p: p.name)
def test_hidden_cells_are_collapsed_in_the_paired_notebook(md: Path):
    """The cells the HTML book removes (the Colab install cell, the checks of the text's claims) still run
    in Jupyter and Colab, collapsed, so that they stay out of a reader's way."""
    nb = jupytext.read(md.with_suffix(".ipynb"))
    hidden = [c for c in nb.cells if c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", [])]
    assert hidden, f"{md.name} has no remove-cell cells (every chapter has at least its Colab cell)"
    open_ = [i for i, c in enumerate(hidden)
             if not (c.metadata.get("jupyter", {}).get("source_hidden") and c.metadata.get("cellView") == "form")]
    assert not open_, f"{md.name}: hidden cells {open_} are not collapsed in the notebook; {FIX}"


MAX_SHOWN_LINE = 111   # characters of code that fit the article column at 1280 px (_static/layout.css;
                       # the browser check passed lines of 111 and failed one of 115)


@pytest.mark.parametrize("md", chapters(), ids=lambda p: p.name)
def test_shown_code_lines_fit_the_column(md: Path):
    """The browser check (tests/browser) finds code wider than its column only in a built book; this finds
    the long lines of a chapter's shown code cells (not the removed ones) before any build."""
    long = [(i, len(line)) for i, c in enumerate(jupytext.read(md).cells)
            if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", [])
            for line in c.source.splitlines() if len(line) > MAX_SHOWN_LINE]
    assert not long, f"{md.name}: (cell, length) of code lines over {MAX_SHOWN_LINE} characters: {long}"
