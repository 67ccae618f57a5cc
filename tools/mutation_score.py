"""Mutation testing of the core modules: break one operator or constant at a time and see whether a test fails.

    python tools/mutation_score.py                       # every core module (tens of minutes on 2 cores)
    python tools/mutation_score.py damage pool --list    # two modules, and print each survivor

Each mutant changes one thing in one module's source (an arithmetic operator, a comparison, a boolean
operator, a numeric constant, a unary minus) and runs that module's tests, with the mutant in place, in a
fresh process (`pytest -x -q`, a time limit per mutant). A mutant is *killed* when a test fails or times
out, and *survives* when every test still passes: then no test checks that line. The score is the share of
mutants killed; a survivor is either a gap in the tests or an equivalent mutant (one that cannot change any
result, e.g. `x.sum() / B` against `x.mean()` over B rows), which the maintainers judge by reading it.

The source is restored after every mutant, also on Ctrl-C. A printed figure, not a CI gate (issue 17).
"""
from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# module -> the tests that exercise it
TARGETS = {
    "likelihoods": ["tests/test_likelihoods.py"],
    "bounds": ["tests/test_bounds.py"],
    "vae": ["tests/test_bounds.py", "tests/test_model.py"],
    "nca": ["tests/test_nca.py"],
    "decoders": ["tests/test_decoders.py", "tests/test_model.py"],
    "pool": ["tests/test_pool.py"],
    "damage": ["tests/test_damage.py", "tests/test_pool.py"],
    "own_images": ["tests/test_own_images.py"],
}
SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
        ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
        ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.And: ast.Or, ast.Or: ast.And}


@dataclass
class Mutant:
    line: int
    what: str
    source: str


def _skip(node: ast.AST, docstrings: set[int]) -> bool:
    return id(node) in docstrings


def mutants(source: str) -> list[Mutant]:
    """Every single-point mutant of ``source`` (docstrings, f-strings and error messages are left alone)."""
    tree = ast.parse(source)
    out: list[Mutant] = []
    skip: set[int] = set()
    for node in ast.walk(tree):                  # strings in raise statements and f-strings: messages
        if isinstance(node, (ast.Raise, ast.JoinedStr)):
            skip.update(id(n) for n in ast.walk(node))
    points = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAP:
            points.append((node, "op"))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP:
            points.append((node, "cmp"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
            points.append((node, "const"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            points.append((node, "neg"))
    for node, kind in points:
        tree = ast.parse(source)                 # a fresh tree per mutant; find the same node again
        target = next(n for n in ast.walk(tree) if type(n) is type(node)
                      and getattr(n, "lineno", None) == node.lineno and n.col_offset == node.col_offset)
        before = ast.unparse(target)
        if kind == "op":
            target.op = SWAP[type(target.op)]()
        elif kind == "cmp":
            target.ops = [SWAP[type(target.ops[0])]()]
        elif kind == "const":
            target.value = target.value + 1 if target.value in (0, 0.0) or abs(target.value) < 1 else target.value * 2
        else:                                    # -x -> x
            replacement = target.operand
            for parent in ast.walk(tree):
                for field, value in ast.iter_fields(parent):
                    if value is target:
                        setattr(parent, field, replacement)
                    elif isinstance(value, list) and any(v is target for v in value):
                        setattr(parent, field, [replacement if v is target else v for v in value])
            out.append(Mutant(node.lineno, f"{before} -> {ast.unparse(replacement)}", ast.unparse(tree)))
            continue
        out.append(Mutant(node.lineno, f"{before} -> {ast.unparse(target)}", ast.unparse(tree)))
    return out


def run_tests(tests: list[str], timeout: float) -> bool:
    """True when every test passes (the mutant survives)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                           cwd=REPO, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", default=list(TARGETS), help=f"of {', '.join(TARGETS)}")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant before it counts as killed")
    p.add_argument("--list", action="store_true", help="print every surviving mutant")
    a = p.parse_args()
    unknown = sorted(set(a.modules) - set(TARGETS))
    if unknown:
        p.error(f"unknown module(s) {unknown}; choose from {', '.join(TARGETS)}")
    total_killed = total = 0
    start = time.time()
    for name in a.modules:
        path = REPO / "vnca_tutorial" / f"{name}.py"
        original = path.read_text()
        if not run_tests(TARGETS[name], a.timeout):
            raise SystemExit(f"the tests of {name} fail without any mutant; fix them first")
        found = mutants(original)
        survivors = []
        try:
            for i, m in enumerate(found, 1):
                path.write_text(m.source)
                t = time.time()
                if run_tests(TARGETS[name], a.timeout):
                    survivors.append(m)
                print(f"\r  {name}: mutant {i}/{len(found)} ({time.time() - t:.0f} s), {len(survivors)} survived",
                      end="", file=sys.stderr, flush=True)
        finally:
            path.write_text(original)
        print(file=sys.stderr)
        killed = len(found) - len(survivors)
        total_killed += killed
        total += len(found)
        print(f"{name:12s} {killed:4d} of {len(found):4d} mutants killed ({killed / max(1, len(found)):.0%})",
              flush=True)
        if a.list:
            for m in survivors:
                print(f"    survived: {name}.py:{m.line}: {m.what}")
    print(f"all          {total_killed:4d} of {total:4d} mutants killed ({total_killed / max(1, total):.0%}) "
          f"in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
