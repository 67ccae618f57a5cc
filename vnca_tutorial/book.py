"""Small helpers the chapters of the book use; none of them is part of the model.

- `FAST` and `fast`: the one switch (environment variable ``VNCA_FAST=1``) that makes every chapter cheap
  enough to run under test; chapters choose their sizes with ``fast(default, fast_value)``.
- `show_source`: display the real source of a package object, so the book never retypes the code.
- `in_colab`, `seed_everything`: running the chapters in Colab, and reproducibly.
- `short_paths`: a printed message without the paths of the machine that built the page.

How to read and run the book is explained in the preface (book/00_preface.md).
"""
from __future__ import annotations

import inspect
import os
import random
import sys
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

FAST: bool = os.environ.get("VNCA_FAST", "0") == "1"  # set VNCA_FAST=1 to shrink every chapter

REPOSITORY_URL = "https://github.com/vnca-tutorial/vnca_tutorial"


def fast(default: T, fast_value: T) -> T:
    """``fast_value`` when VNCA_FAST=1, else ``default``: ``n_steps = fast(2000, 50)``."""
    return fast_value if FAST else default


def in_colab() -> bool:
    """True inside Google Colab (its runtime imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global random number generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def source_location(obj: Any) -> tuple[str | None, int, int]:
    """(path relative to the repository root, first line, last line) of a class or function.

    The path is None when ``obj`` is not part of this package (a torch function, say).
    """
    obj = inspect.unwrap(obj)  # decorated functions (e.g. @torch.inference_mode) keep their file
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    package = Path(__file__).resolve().parent
    rel = path.relative_to(package.parent).as_posix() if package in path.parents else None
    return rel, first, first + len(lines) - 1


def show_source(obj: Any):
    """Display the source of ``obj`` (a class or function of the package) as a highlighted code block.

    The code comes from ``inspect.getsource``, so what the book shows is what the package runs. The
    result is Markdown: Jupyter, Colab and Jupyter Book all render it with syntax highlighting, under a
    caption that names the file and lines (linked to the repository).
    """
    from IPython.display import Markdown

    source = inspect.getsource(obj).rstrip()
    path, first, last = source_location(obj)
    name = f"{obj.__module__}.{obj.__qualname__}"
    fence = "`" * max(3, _longest_backtick_run(source) + 1)
    if path is None:
        caption = f"`{name}`:"
    else:
        url = f"{REPOSITORY_URL}/blob/main/{path}#L{first}-L{last}"
        caption = f"`{name}`, from [{path}, lines {first}-{last}]({url}):"
    return Markdown(f"{caption}\n\n{fence}python\n{source}\n{fence}")


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest


def short_paths(text: str) -> str:
    """``text`` with the folders of this machine named as a reader would name theirs: the data folder as
    ``$VNCA_DATA_DIR``, the cache as ``$VNCA_CACHE_DIR``, the repository as ``..`` (chapters run in book/),
    the home folder as ``~``. The book prints messages through it, so that no page shows where it was built."""
    from .data import DEFAULT_CACHE_DIR, _cache_dir
    cache = "$VNCA_CACHE_DIR" if os.environ.get("VNCA_CACHE_DIR") else str(DEFAULT_CACHE_DIR)
    names = [(os.environ.get("VNCA_DATA_DIR", ""), "$VNCA_DATA_DIR"), (str(_cache_dir()), cache),
             (str(Path.home()), "~")]
    if Path.cwd().name == "book":
        names.append((str(Path.cwd().parent), ".."))
    for folder, name in sorted(names, key=lambda pair: len(pair[0]), reverse=True):  # the longest first
        if len(folder) > 1:
            text = text.replace(folder.rstrip("/"), name)
    return text
