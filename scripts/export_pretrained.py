"""Export a training run as a shipped pretrained model: weights-only safetensors + a JSON model card.

    python scripts/export_pretrained.py mnist_doubling_small --k 128 --images 500 --dtype float16

The card records the config, the data, the number of updates, wall time and hardware, and the
importance-weighted bound of the shipped file itself (reloaded after writing, so float16 storage is
included in the figure): on the whole test set when --images covers it (10,000 MNIST images, 664 emoji),
on a fixed-seed random subset otherwise, which the card says. Emoji figures are in bits per dimension.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from vnca_tutorial.checkpoint import config_to_dict, load_model, read_metadata, save_checkpoint
from vnca_tutorial.data import load_dataset, subset
from vnca_tutorial.evaluate import evaluate_bound
from vnca_tutorial.hardware import cpu_description
from vnca_tutorial.pretrained import HERE, save_card, sha256
from vnca_tutorial.train import BEST, CHECKPOINT
from vnca_tutorial.pretrained import card as shipped_card
from evaluate_pretrained import CANDIDATES

# The paper's test figures for the same model family (nats for MNIST, bits/dim for emoji).
PAPER = {"mnist_doubling": {"nats": -84.23}, "mnist_nondoubling": {"nats": -90.97},
         "noto_doubling": {"bpd": 3.09}}
TRAIN_DATA = {"binarized_mnist": "train+valid (60,000 images, as the paper)",
              "noto_emoji": "the 80% training split (2,656 images, the paper's count)"}
# the last phase of a model exported with --best trained without its validation images
FIT_DATA = {"binarized_mnist": "train (50,000 images; valid held out to stop on)",
            "noto_emoji": "the fit split (2,391 of the 2,656 training images; valid, the other 265, held out "
                          "to stop on)"}


def read_phase(spec: str | Path) -> dict:
    """A training run's metrics rows, its number of updates and its config. ``spec`` is the run folder, or
    ``FOLDER:N`` for a run whose update N the next phase started from (the run went on after that). A
    folder kept without its weights (metrics.csv and config.json only) needs ``:N``. ``card:NAME`` is a
    phase known only from a shipped model's card (trained before runs kept their curves): its updates
    and hours count, it adds no curve. ``count:UPDATES:HOURS`` is a phase whose run was not kept, known
    only by those two figures (from a record such as train_pretrained.py's docstring); no curve either."""
    if str(spec).startswith("card:"):
        return _card_phase(str(spec).removeprefix("card:"))
    if str(spec).startswith("count:"):
        return _counted_phase(str(spec))
    folder, _, cut = str(spec).rpartition(":")
    if not cut.isdigit():                           # no ":N": the whole run
        folder, cut = str(spec), ""
    run_dir = Path(folder)
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    if (run_dir / "checkpoint.safetensors").exists():
        meta = read_metadata(run_dir / "checkpoint.safetensors")
        updates, config = int(meta["step"]), json.loads(meta["config"])
    elif cut and (run_dir / "config.json").exists():
        updates, config = max(int(r["step"]) for r in rows), json.loads((run_dir / "config.json").read_text())
    else:
        raise SystemExit(f"{spec}: no checkpoint.safetensors there; a run kept without its weights needs "
                         "its config.json and FOLDER:N, the update the next phase started from")
    if cut:
        if not 1 <= int(cut) <= updates:
            raise SystemExit(f"{spec}: the run has updates 1..{updates}")
        updates = int(cut)
    return {"run": spec if cut else run_dir, "rows": [r for r in rows if int(r["step"]) <= updates],
            "updates": updates, "config": config}


def _counted_phase(spec: str) -> dict:
    """``count:UPDATES:HOURS`` as one phase without a curve or config (see `read_phase`)."""
    try:
        _, updates, hours = spec.split(":")
        updates, hours = int(updates), float(hours)
    except ValueError:
        raise SystemExit(f"{spec}: write count:UPDATES:HOURS, e.g. count:1327:1.27") from None
    if updates < 1 or not hours > 0:
        raise SystemExit(f"{spec}: a phase has at least one update and some hours")
    row = {"step": str(updates), "seconds": str(hours * 3600), "val_elbo": ""}
    return {"run": spec, "rows": [row], "updates": updates, "config": None}


def _card_phase(name: str) -> dict:
    """The training recorded in the shipped card of ``name`` as one phase without a curve: a single row
    at its last update and hour (read before this export overwrites the card)."""
    c = shipped_card(name)
    if not c.get("train_wall_time_hours"):
        raise SystemExit(f"card:{name}: the card records no training hours")
    row = {"step": str(c["updates"]), "seconds": str(c["train_wall_time_hours"] * 3600), "val_elbo": ""}
    return {"run": f"card:{name}", "rows": [row], "updates": c["updates"], "config": c["config"]}


def curve_points(rows: list[dict]) -> list[list]:
    """[update, hours, ELBO] of the metrics rows that logged an ELBO (the card's curves)."""
    return [[int(r["step"]), round(float(r["seconds"]) / 3600, 3), round(float(r["val_elbo"]), 2)]
            for r in rows if r.get("val_elbo")]


def early_stopped(run: Path, offset_updates: int, offset_seconds: float) -> tuple[dict, dict]:
    """The last phase of a run trained with train_pretrained.py --early-stopping, cut at the update of its
    best.safetensors, and what the card says about the stopping: the run's validation curve, whose ELBOs
    are on held-out training images (the valid split) and so are kept out of the card's training curve
    of test-subset ELBOs. ``offset_*``: the updates and seconds of the phases before it."""
    best = int(read_metadata(run / BEST)["step"])
    whole = read_phase(run)
    phase = read_phase(f"{run}:{best}")
    curve = curve_points([{**r, "step": int(r["step"]) + offset_updates,
                           "seconds": float(r["seconds"]) + offset_seconds} for r in whole["rows"]])
    phase["rows"] = [{**r, "val_elbo": ""} for r in phase["rows"]]
    stopping = {"trained_to_update": whole["updates"] + offset_updates, "chosen_update": best + offset_updates,
                "rule": "the weights of the best validation ELBO (train_pretrained.py --early-stopping)",
                "validation_curve": curve}
    return phase, stopping


def chain_phases(phases: list[dict]) -> list[dict]:
    """The metrics rows of consecutive phases as one run: each phase's updates and seconds continue the
    previous phase's (a later phase started from the earlier one's final weights)."""
    out, updates, seconds = [], 0, 0.0
    for ph in phases:
        rows = [r for r in ph["rows"] if int(r["step"]) <= ph["updates"]]
        out += [{**r, "step": str(int(r["step"]) + updates), "seconds": str(float(r["seconds"]) + seconds)}
                for r in rows]
        updates += ph["updates"]
        seconds += float(rows[-1]["seconds"]) if rows else 0.0
    return out


def paper_family(config) -> str:
    """The key of PAPER for a model: data set and variant, whatever its size (mnist_doubling_wide ->
    mnist_doubling)."""
    data = "mnist" if config.dataset == "binarized_mnist" else "noto"
    variant = {"DoublingConfig": "doubling", "NonDoublingConfig": "nondoubling", "BaselineConfig": "baseline"}
    return f"{data}_{variant[type(config).__name__]}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="storage type of the shipped weights (float16 halves the file)")
    p.add_argument("--notes", default="")
    p.add_argument("--trained-on", default=None,
                   help="the CPUs training ran on, if not (only) this machine's: it goes into the card")
    p.add_argument("--training-precision", default=None, metavar="TEXT",
                   help="the card's training precision when phases differed (default: the last phase's)")
    p.add_argument("--candidate", action="store_true",
                   help="export to candidates/ instead of the package: a model that ships only once its "
                        "whole-test figure is measured (scripts/evaluate_pretrained.py --candidate)")
    p.add_argument("--best", action="store_true",
                   help="ship the run's best.safetensors (a run of train_pretrained.py --early-stopping): the "
                        "weights of its best validation ELBO, not its last")
    p.add_argument("--earlier-phase", action="append", default=[], metavar="RUN_DIR[:N]",
                   help="a run whose weights this one started from (train_pretrained.py --init-from): its "
                        "updates, hours and curve are counted in the card too; give them in order; RUN_DIR:N "
                        "if the next phase started from its update N; card:NAME for the training a shipped "
                        "card records (a phase without a curve)")
    p.add_argument("--earlier-validated", action="store_true",
                   help="with --best: the --earlier-phase runs were early-stopped too, so the ELBOs they logged "
                        "are on the validation images: they go into the card's validation curve, not into its "
                        "training curve of test-subset ELBOs")
    a = p.parse_args(argv)
    if a.earlier_validated and not a.best:
        p.error("--earlier-validated goes with --best (the validation curve is that of an early-stopped run)")
    run = Path("runs/pretrained") / a.name
    ckpt = run / (BEST if a.best else CHECKPOINT)
    meta = read_metadata(ckpt)
    trained = load_model(ckpt).eval()
    folder = CANDIDATES if a.candidate else HERE
    folder.mkdir(exist_ok=True)
    out = folder / f"{a.name}.safetensors"
    # the shipped model computes in float32 (its card's bound too), whatever precision it was trained in
    save_checkpoint(out, trained, trained.config.replace(bf16=False), int(meta["step"]),
                    weights_dtype=getattr(torch, a.dtype))
    model = load_model(out).eval()                                   # evaluate exactly what ships
    if not all(torch.isfinite(t).all() for t in model.state_dict().values()):
        raise SystemExit(f"{out}: weights overflow {a.dtype}; export with --dtype float32")
    phases = [read_phase(d) for d in a.earlier_phase]
    stopping = None
    if a.best:
        before = chain_phases(phases)
        last, stopping = early_stopped(run, sum(ph["updates"] for ph in phases),
                                       float(before[-1]["seconds"]) if before else 0.0)
        if a.earlier_validated:
            stopping["validation_curve"] = curve_points(before) + stopping["validation_curve"]
            phases = [{**ph, "rows": [{**r, "val_elbo": ""} for r in ph["rows"]]} for ph in phases]
        phases.append(last)
    else:
        phases.append(read_phase(run))
    rows = chain_phases(phases)
    dataset = model.config.dataset
    test = load_dataset(dataset, "test")
    whole = a.images >= len(test)
    images = test.images if whole else subset(test, a.images, seed=0).images
    start = time.time()
    # resumable: run the same command again after an interruption (the file is tied to these weights)
    progress_file = run / f"eval_k{a.k}_{len(images)}.safetensors"
    result = evaluate_bound(model, images, k=a.k, progress=True, resume_file=progress_file)
    card = {
        "name": a.name, "sha256": sha256(out), "config": config_to_dict(model.config),
        "parameters": model.n_parameters(), "stored_dtype": a.dtype,
        "data": {"train": f"{Path(test.source.split(' [')[0]).name} {TRAIN_DATA[dataset]}"
                          + (f"; its {'early-stopped phases' if a.earlier_validated else 'last phase'} on "
                             f"{FIT_DATA[dataset]}" if a.best else ""),
                 "test": f"{f'all {len(test):,}' if whole else f'a fixed-seed random subset of {a.images}'} "
                         "test images"},
        "updates": int(rows[-1]["step"]) if rows else int(meta["step"]), "batch_size": model.config.batch_size,
        "phases": [{"run": str(ph["run"]), "updates": ph["updates"], "config": ph["config"]} for ph in phases]
        if len(phases) > 1 else None,
        "train_wall_time_hours": round(float(rows[-1]["seconds"]) / 3600, 2) if rows else None,
        "hardware": a.trained_on or f"{cpu_description()}, one torch thread per process",
        "precision": {"training": a.training_precision or ("bf16 autocast (update network)" if trained.config.bf16
                                                           else "float32"),
                      "evaluation": "float32"},
        "test_bound": {**result.as_dict(), "evaluation_seconds": round(time.time() - start, 1)},
        "paper": PAPER.get(paper_family(model.config)),
        # the ELBO on the training run's fixed random subset of test images, logged while training
        # (monitoring only: no choice was made by it): [update, hours of training, ELBO in nats]
        "training_curve": curve_points(rows) or None,
        "early_stopping": stopping,
        "notes": a.notes,
    }
    save_card(a.name, card, folder)
    print(json.dumps(card["test_bound"], indent=2))


if __name__ == "__main__":
    main()
