"""Export a training run as a shipped pretrained model: weights-only safetensors + a JSON model card.

    python scripts/export_pretrained.py mnist_doubling_small --k 128 --images 500

The card records the config, the data, the number of updates, wall time and hardware, and the
importance-weighted bound measured here (on the whole 10,000-image test set when --images is 10000;
on a fixed-seed random subset otherwise, which the card says).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import torch

from vnca_tutorial.checkpoint import atomic_write, config_to_dict, load_model, read_metadata, save_checkpoint
from vnca_tutorial.data import load_binarized_mnist, subset
from vnca_tutorial.evaluate import evaluate_bound
from vnca_tutorial.pretrained import HERE, sha256

PAPER = {"mnist_doubling": -84.23, "mnist_nondoubling": -90.97}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--notes", default="")
    a = p.parse_args()
    run = Path("runs/pretrained") / a.name
    ckpt = run / "checkpoint.safetensors"
    meta = read_metadata(ckpt)
    model = load_model(ckpt).eval()
    out = HERE / f"{a.name}.safetensors"
    save_checkpoint(out, model, model.config, int(meta["step"]))            # weights only
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    test = load_binarized_mnist("test")
    images = test.images if a.images >= len(test) else subset(test, a.images, seed=0).images
    start = time.time()
    result = evaluate_bound(model, images, k=a.k, progress=True)
    card = {
        "name": a.name, "sha256": sha256(out), "config": config_to_dict(model.config),
        "parameters": model.n_parameters(),
        "data": {"train": f"{test.source.split(' [')[0]} train+valid (60,000 images, as the paper)",
                 "test": f"{'all 10,000' if a.images >= len(test) else f'a fixed-seed random subset of {a.images}'} test images"},
        "updates": int(meta["step"]), "batch_size": model.config.batch_size,
        "train_wall_time_hours": round(float(rows[-1]["seconds"]) / 3600, 2) if rows else None,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads "
                    "(2-core AMD EPYC, AVX2, shared)",
        "test_bound": {**result.as_dict(), "evaluation_seconds": round(time.time() - start, 1)},
        "paper_nats": PAPER.get(a.name.replace("_small", "")),
        "notes": a.notes,
    }
    atomic_write(HERE / f"{a.name}.json", lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2)))
    print(json.dumps(card["test_bound"], indent=2))


if __name__ == "__main__":
    main()
