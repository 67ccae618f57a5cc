"""Which doubling MNIST model improves fastest per CPU-hour? (issue 19: the study before a long run)

Each candidate trains for the same wall time on one torch thread, on the 50,000 training digits only, and
logs its ELBO on a fixed random 1,000-digit subset of the 10,000 validation digits (never the test set: the
choice made from these curves must not see it). Runs resume: run the same command again to extend them.

    python benchmarks/compute_study.py --minutes 60 --candidates small wide      # two runs, one per core
    python benchmarks/compute_study.py --report                                  # the table, from the runs

The table gives, for each candidate, updates, hours and the validation ELBO at the end, and the ELBO gained
per CPU-hour over the last half of its run; chapter 10 explains the choice. Precision: `--precision auto`
as `vnca train` (bf16 autocast only on CPUs with AMX units); the table names the CPU and the precision.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import sys
from pathlib import Path

import torch

from vnca_tutorial.config import get_preset
from vnca_tutorial.data import load_binarized_mnist
from vnca_tutorial.hardware import PRECISIONS, choose_bf16, cpu_description
from vnca_tutorial.memory import n_parameters
from vnca_tutorial.train import METRICS, TrainSettings, train

RUNS = Path("runs/compute_study")
VALIDATION_IMAGES = 1000
EVAL_EVERY = 250                  # updates between validation ELBOs
LONG = {"n_updates": 10 ** 7}     # the wall time stops a candidate, not its preset's update count
CANDIDATES = {   # name -> (preset, changed fields)
    "small": ("mnist_doubling_cpu", {**LONG}),                              # the shipped model's recipe
    "wide": ("mnist_doubling_cpu", {**LONG, "z_dim": 64, "hidden": 128, "n_blocks": 2}),
    "paper_b8": ("mnist_doubling", {**LONG, "batch_size": 8}),              # the paper's model, small batch
}


def candidate_config(name: str, precision: str = "auto"):
    preset, changes = CANDIDATES[name]
    bf16, why = choose_bf16(precision)
    return get_preset(preset, **changes, name=f"study_{name}", bf16=bf16), why


def _one_thread(name: str, minutes: float, precision: str, runs: Path) -> None:   # a process per candidate
    torch.set_num_threads(1)
    train_candidate(name, minutes, precision, runs)


def train_candidate(name: str, minutes: float, precision: str, runs: Path = RUNS, data_dir=None) -> None:
    config, why = candidate_config(name, precision)
    print(f"{name}: {config}\nprecision: {why}", flush=True)
    train_images = load_binarized_mnist("train", data_dir=data_dir).images       # (50000, 1, 32, 32)
    valid = load_binarized_mnist("valid", data_dir=data_dir).images              # (10000, 1, 32, 32)
    settings = TrainSettings(run_dir=str(runs / name), resume=True, progress=False, max_minutes=minutes,
                             eval_every=EVAL_EVERY, eval_images=VALIDATION_IMAGES, checkpoint_every=50)
    train(config, train_images, settings, val_images=valid)


def curve(run: Path) -> list[tuple[int, float, float]]:
    """(update, hours, validation ELBO) of every validated row of a run's metrics.csv."""
    with open(run / METRICS) as f:
        return [(int(r["step"]), float(r["seconds"]) / 3600, float(r["val_elbo"]))
                for r in csv.DictReader(f) if r.get("val_elbo")]


def report(runs: Path = RUNS) -> list[dict]:
    rows = []
    for name in CANDIDATES:
        points = curve(runs / name) if (runs / name / METRICS).exists() else []
        if len(points) < 2:
            continue
        update, hours, elbo = points[-1]
        mid = min(points, key=lambda p: abs(p[1] - hours / 2))                 # the point half-way in time
        rate = (elbo - mid[2]) / (hours - mid[1]) if hours > mid[1] else float("nan")
        preset, changes = CANDIDATES[name]
        rows.append({"candidate": name, "preset": preset,
                     "changes": {k: v for k, v in changes.items() if k not in LONG},
                     "parameters": n_parameters(candidate_config(name, "float32")[0]),
                     "updates": update, "hours": round(hours, 3), "val_elbo": round(elbo, 2),
                     "nats_per_hour_last_half": round(rate, 2), "curve": points})
    print(f"{cpu_description()}; validation: {VALIDATION_IMAGES} random valid digits (seed 0), ELBO in nats")
    print(f"{'candidate':10} {'updates':>8} {'hours':>6} {'val ELBO':>9} {'nats/h, last half':>18}")
    for r in rows:
        print(f"{r['candidate']:10} {r['updates']:>8} {r['hours']:>6.2f} {r['val_elbo']:>9.2f} "
              f"{r['nats_per_hour_last_half']:>18.2f}")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=[])
    p.add_argument("--minutes", type=float, default=60.0, help="wall time of each candidate (one thread each)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument("--report", action="store_true", help="print the table (and --json it) from the runs")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if not a.minutes > 0:
        p.error(f"--minutes must be > 0, got {a.minutes}")
    if a.candidates:           # one process per candidate, side by side (one core each)
        procs = [mp.get_context("spawn").Process(target=_one_thread, args=(n, a.minutes, a.precision, a.runs))
                 for n in a.candidates]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        if any(proc.exitcode for proc in procs):
            sys.exit("a candidate's run failed: see its output above")
    rows = report(a.runs)
    if a.json:
        a.json.write_text(json.dumps({"cpu": cpu_description(), "validation_images": VALIDATION_IMAGES,
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
