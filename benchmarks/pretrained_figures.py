"""Re-measure the test figure of each shipped model's card, and print card and measurement side by side.

    python benchmarks/pretrained_figures.py                                  # every shipped model
    python benchmarks/pretrained_figures.py mnist_baseline_small --json out.json

Each model is loaded as a user loads it (`vnca_tutorial.pretrained.load`, sha256 checked) and evaluated as
`scripts/export_pretrained.py` evaluated it: the importance-weighted bound with the card's k, on the card's
test images (all of them, or the same fixed-seed random subset), with the same sample seed. On the machine
that wrote the card the figures agree to float32 round-off; elsewhere (other BLAS, other thread counts)
expect differences far below the card's standard error. Time: the card's `evaluation_seconds` per model
(the baseline's whole 10,000-image MNIST test set took 12 minutes of one CPU core, the VNCAs' hours;
see each card). `--images N` measures a different, smaller subset instead: a quick
check, not comparable with the card.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from vnca_tutorial import pretrained
from vnca_tutorial.data import load_dataset, source_name, subset
from vnca_tutorial.evaluate import evaluate_bound


def remeasure(name: str, images: int | None = None) -> dict:
    """The card's test figure of ``name`` and the same figure measured now."""
    card = pretrained.card(name)
    model = pretrained.load(name)
    test = load_dataset(model.config.dataset, "test")
    n = images or card["test_bound"]["n_images"]
    x = test.images if n >= len(test) else subset(test, n, seed=0).images
    start = time.time()
    result = evaluate_bound(model, x, k=card["test_bound"]["k"])
    return {"name": name, "card": card["test_bound"], "measured": result.as_dict(),
            "seconds": round(time.time() - start, 1), "same_images": images is None,
            "test_data": source_name(test.source)}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="shipped models (default: all)")
    p.add_argument("--images", type=int, default=None, help="a different subset of N test images (quick)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = []
    print(f"{'model':26s} {'images':>7s} {'k':>4s} {'card nats':>10s} {'now nats':>10s} {'diff':>9s} "
          f"{'stderr':>7s} {'card bpd':>9s} {'now bpd':>8s} {'seconds':>8s}")
    for name in a.names or pretrained.names():
        r = remeasure(name, a.images)
        c, m = r["card"], r["measured"]
        print(f"{name:26s} {m['n_images']:7d} {m['k']:4d} {c['nats']:10.3f} {m['nats']:10.3f} "
              f"{m['nats'] - c['nats']:+9.4f} {m['stderr']:7.3f} {c['bpd']:9.4f} {m['bpd']:8.4f} "
              f"{r['seconds']:8.1f}" + ("" if r["same_images"] else "  (other images: not comparable)"),
              flush=True)
        rows.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
