"""Stability and regrowth of a VNCA (issue 15): the figures that tell an attractor from a transient.

    python benchmarks/attractors.py mnist_nondoubling_small mnist_doubling_small   # shipped models, side by side
    python benchmarks/attractors.py --checkpoint runs/x/checkpoint.safetensors     # any trained VNCA
    python benchmarks/attractors.py mnist_nondoubling_small --card                 # also write it into the card

For each model, on a fixed-seed random subset of test digits (default 200; never the first ones: the test
split is sorted by label), with every random draw seeded:
1. the k = 128 importance-weighted bound next to the independent-pixel model (each pixel a Bernoulli with
   its training-set mean) on the same digits (`--k 0` skips the bound, the slow part);
2. log p(x|z) with each digit's own posterior-mean z against another digit's;
3. stability: max |state| and log p(x|state) at T_max, 2 T_max, 10 T_max and 1,000 steps;
4. recovery: the state at T_max damaged by a random H/2 x W/2 square (as in pool training) or by zeroing
   the right half (never seen in training), then T_max more steps: the fraction of digits whose
   log p(x|state) is back within 10 nats of its undamaged value.
The card's whole-test-set bound comes from scripts/evaluate_pretrained.py, not from here. The figures are
printed with the CPU they were measured on; times depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time

import torch

from vnca_tutorial import pretrained
from vnca_tutorial.attractors import attractor_report, independent_pixel_log_px
from vnca_tutorial.checkpoint import load_model
from vnca_tutorial.data import load_dataset, source_name, subset
from vnca_tutorial.evaluate import evaluate_log_px
from vnca_tutorial.hardware import cpu_description


def json_safe(value):
    """NaN and infinity (an overflowed state) as null, so that the cards stay standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def measure(model, n_images: int = 200, k: int = 128, seed: int = 0) -> dict:
    """The four figures of the module docstring for ``model`` on ``n_images`` random test digits."""
    model.eval()
    test = load_dataset(model.config.dataset, "test")
    train = load_dataset(model.config.dataset, "trainval" if model.config.dataset == "binarized_mnist" else "train")
    x = subset(test, n_images, seed=seed).images
    start = time.time()
    out = {"test_data": source_name(test.source), "cpu": cpu_description(), "torch_threads": torch.get_num_threads()}
    if model.config.likelihood == "bernoulli":     # the baseline of binary images
        out["independent_pixels_nats"] = independent_pixel_log_px(train.images, x).mean().item()
        out["independent_pixels_whole_test_nats"] = independent_pixel_log_px(train.images,
                                                                             test.images).mean().item()
    if k:
        torch.manual_seed(seed)
        out["bound_nats"] = evaluate_log_px(model, x, k=k, seed=seed).mean().item()
        out["bound_k"] = k
    out.update(attractor_report(model, x, seed=seed).as_dict())
    out["seconds"] = round(time.time() - start, 1)
    return json_safe(out)


def num(value: float | None, spec: str) -> str:
    """A figure, or 'overflow' where the state overflowed (NaN, stored as null)."""
    return format(value, spec) if value is not None else format("overflow", re.sub(r"(\.\d+)?[fg]$", "", spec))


def show(name: str, r: dict) -> None:
    s, (sq, half) = r["stability"], r["recovery"]
    print(f"\n{name}: {r['n_images']} random test digits, T_max = {r['t_max']} ({r['cpu']}, "
          f"{r['torch_threads']} threads, {r['seconds']} s)")
    if "bound_nats" in r:
        print(f"  bound (k = {r['bound_k']}): {r['bound_nats']:.2f} nats")
    if "independent_pixels_nats" in r:
        print(f"  independent pixels: {r['independent_pixels_nats']:.2f} nats on these digits, "
              f"{r['independent_pixels_whole_test_nats']:.2f} on the whole test split")
    z = r["z_use"]
    print(f"  log p(x|z): own z {z['own_z']:.1f}, shuffled z {z['shuffled_z']:.1f} "
          f"(difference {z['difference']:.1f} nats)")
    print(f"  {'steps':>6} {'median max|s|':>14} {'largest max|s|':>15} {'mean log p(x|s)':>16}")
    for i, t in enumerate(s["steps"]):
        print(f"  {t:>6} {num(s['max_abs_state_median'][i], '>14.3g')} "
              f"{num(s['max_abs_state_max'][i], '>15.3g')} {num(s['log_px_mean'][i], '>16.1f')}")
    n = r["n_images"]
    print(f"  digits whose max |s| is within 3x its T_max value: "
          f"{', '.join(f'{c}/{n} at {t}' for c, t in zip(s['digits_state_within_3x'], s['steps']))}")
    print(f"  digits whose log p(x|s) is within 10 nats of its T_max value: "
          f"{', '.join(f'{c}/{n} at {t}' for c, t in zip(s['digits_log_px_within_10_nats'], s['steps']))}")
    print(f"  every state finite: {s['all_finite']} (fraction finite per step count: "
          f"{', '.join(f'{f:.2f}' for f in s['fraction_finite'])})")
    for rec in (sq, half):
        print(f"  damage {rec['damage']:>13}: log p(x|s) {num(rec['log_px_before'], '.1f')} -> "
              f"{num(rec['log_px_damaged'], '.1f')} -> {num(rec['log_px_after'], '.1f')} after T_max steps; "
              f"recovered (within {rec['tolerance_nats']:g} nats): {100 * rec['fraction_recovered']:.0f}%")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"shipped models ({', '.join(pretrained.names())})")
    p.add_argument("--checkpoint", action="append", default=[], help="a trained VNCA's checkpoint file")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--k", type=int, default=128, help="importance samples for the bound (0: skip it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="write all results to this file")
    p.add_argument("--card", action="store_true", help="record the figures in each shipped model's card")
    a = p.parse_args(argv)
    if a.images < 2 or a.k < 0:
        p.error(f"need --images >= 2 and --k >= 0, got --images {a.images}, --k {a.k}")
    if not a.names and not a.checkpoint:
        p.error("name a shipped model or give --checkpoint")
    if a.threads:
        torch.set_num_threads(a.threads)
    models = [(n, lambda n=n: pretrained.load(n)) for n in a.names]
    models += [(c, lambda c=c: load_model(c)) for c in a.checkpoint]
    results = {}
    for name, load in models:
        model = load()
        if not hasattr(model, "doubling"):
            p.error(f"{name} is not a VNCA (the conv baseline has no cells to damage)")
        results[name] = measure(model, a.images, a.k, a.seed)
        show(name, results[name])
        if a.card and name in a.names:
            card = pretrained.card(name)
            options = (f" --images {a.images}" if a.images != 200 else "") + (f" --k {a.k}" if a.k != 128 else "")
            card["attractors"] = {**results[name],
                                  "command": f"python benchmarks/attractors.py {name}{options} --card"}
            pretrained.save_card(name, card)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
