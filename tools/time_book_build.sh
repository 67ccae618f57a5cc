#!/usr/bin/env bash
# Time a default-mode book build from a fresh clone of this repository (uses this checkout's .venv for
# the tools; the clone's own package code via PYTHONPATH). Prints per-chapter times against the budgets.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$repo" "$work/main"
[[ -d "$repo/../shared" ]] && ln -s "$repo/../shared" "$work/shared"
cd "$work/main"
start=$(date +%s)
PYTHONPATH="$work/main" "$repo/.venv/bin/jupyter-book" build . -W --keep-going 2>&1 | tee "$work/build.log"
echo "wall time of the whole build: $(( $(date +%s) - start )) s"
"$repo/.venv/bin/python" "$repo/tools/book_timings.py" "$work/build.log"
