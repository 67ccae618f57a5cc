"""Per-chapter execution times of a Jupyter Book build, against the book's budgets.

    jupyter-book build . -W --keep-going 2>&1 | tee build.log
    python tools/book_timings.py build.log          # or: bash tools/time_book_build.sh (fresh clone)

Budgets (issue "The book"): each chapter at most 4 minutes, the whole book at most 20 minutes, on two
CPU cores in default mode. Reads myst-nb's "Executed notebook in X seconds" lines; exits 1 if a budget
is exceeded.
"""
from __future__ import annotations

import re
import sys

CHAPTER_BUDGET_S, BOOK_BUDGET_S = 240.0, 1200.0
LINE = re.compile(r"([\w./-]+\.md): Executed notebook in ([\d.]+) seconds")


def main(path: str) -> int:
    times = {m.group(1).rsplit("/", 1)[-1]: float(m.group(2))
             for m in LINE.finditer(open(path, errors="replace").read())}
    if not times:
        print(f"no 'Executed notebook' lines in {path}: was the build run with execution on?")
        return 1
    for name, t in times.items():
        print(f"{name:32s} {t:8.1f} s{'   OVER BUDGET' if t > CHAPTER_BUDGET_S else ''}")
    total = sum(times.values())
    print(f"{'all chapters (execution)':32s} {total:8.1f} s (budget {BOOK_BUDGET_S:.0f} s)")
    return int(total > BOOK_BUDGET_S or max(times.values()) > CHAPTER_BUDGET_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build.log"))
