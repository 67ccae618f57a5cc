"""The whole-test-set figure of a shipped model's card, measured in shards that survive any interruption.

    python scripts/evaluate_pretrained.py mnist_doubling_small --shards 20 --shard 0 1 2   # some shards
                                                   # (a finished one is skipped unless --redo)
    python scripts/evaluate_pretrained.py mnist_doubling_small --shards 20 --status         # what is done
    python scripts/evaluate_pretrained.py mnist_doubling_small --shards 20 --card           # all done: card
    python scripts/evaluate_pretrained.py mnist_nondoubling_small --subset 200   # until then: a subset

The importance-weighted bound with k = 128 on all 10,000 MNIST test images takes hours on a CPU (2.8 s per
image for mnist_doubling_small on one core here). This script splits the test set, in order, into
``--shards`` runs of whole batches and evaluates the shipped file (sha256 checked) shard by shard. Each shard
writes its per-image bounds to ``benchmarks/results/pretrained_eval/NAME/`` (small JSON files, meant to be
committed, so the work survives a change of machine); while it runs, the bounds of its finished batches
go to a partial record there (``*.partial.json``, updated every few minutes): committed at the end of a
session, it lets the shard go on from there on any machine. Shards are independent, so two processes (one
torch thread each) can run different shards side by side. Because batch i of an evaluation draws its noise
from ``batch_generator(seed, i)``, the shards together give exactly the figure of one uninterrupted
``vnca eval --pretrained NAME --images N`` (same k, batch size and seed), which is what ``--card`` writes
into the model card.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vnca_tutorial import pretrained
from vnca_tutorial.checkpoint import atomic_write
from vnca_tutorial.data import load_dataset, source_name
from vnca_tutorial.evaluate import BoundResult, evaluate_log_px
from vnca_tutorial.hardware import cpu_description

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "pretrained_eval"
# exported models that do not ship until their whole-test figure is measured (export_pretrained.py
# --candidate); once it is, move NAME.safetensors and NAME.json into vnca_tutorial/pretrained/ (the shards
# stay valid: they are tied to the file's sha256)
CANDIDATES = Path(__file__).resolve().parents[1] / "candidates"
PROGRESS = Path("runs") / "pretrained_eval"


def shard_batches(n_batches: int, shards: int, i: int) -> range:
    """The batches of shard ``i`` out of ``shards``: consecutive, as equal in number as possible."""
    return range(i * n_batches // shards, (i + 1) * n_batches // shards)


def shard_file(name: str, k: int, shards: int, i: int, results: Path = RESULTS) -> Path:
    return results / name / f"k{k}_shard{i:02d}_of{shards:02d}.json"


def partial_file(name: str, k: int, shards: int, i: int, results: Path = RESULTS) -> Path:
    """Where shard ``i`` keeps the bounds of its finished batches while it runs (committed like a record)."""
    return shard_file(name, k, shards, i, results).with_suffix(".partial.json")


def continue_from(partial: Path, record: dict) -> None:
    """Take the bounds, seconds and hardware of an earlier piece of this shard into ``record``, if
    ``partial`` holds one of the same evaluation (same weights, images and settings); else start afresh."""
    if not partial.exists():
        return
    before = json.loads(partial.read_text())
    if all(before.get(key) == value for key, value in record.items()
           if key not in ("seconds", "hardware", "log_px")):
        here = record["hardware"]
        record.update(seconds=before["seconds"], log_px=before["log_px"],
                      hardware=before["hardware"] if before["hardware"] == here
                      else f"{before['hardware']}; then {here}")


def evaluate_shard(name: str, i: int, shards: int, k: int = 128, batch_size: int = 8, seed: int = 0,
                   results: Path = RESULTS, progress: bool = True, device: str = "cpu",
                   folder: Path | None = None, save_every: int = 4) -> dict:
    """Evaluate shard ``i`` of the test set with the shipped model ``name``; write and return its record.

    Every ``save_every`` batches the bounds so far go to the shard's partial record (``partial_file``),
    a small JSON beside the finished records: committed at the end of a session, it lets the shard go on
    from there on any machine, and the finished record counts the seconds and hardware of every piece."""
    model = pretrained.load(name, device, folder)
    sha = pretrained.card(name, folder)["sha256"]
    test = load_dataset(model.config.dataset, "test")
    images = test.images                                             # the whole split, in order
    batches = shard_batches(-(-len(images) // batch_size), shards, i)
    lo, hi = batches.start * batch_size, min(batches.stop * batch_size, len(images))
    here = (torch.cuda.get_device_name() if device.startswith("cuda") else
            f"{cpu_description()}, {torch.get_num_threads()} torch thread(s)")
    record = {"name": name, "sha256": sha, "k": k, "batch_size": batch_size, "seed": seed, "shard": i,
              "shards": shards, "images": [lo, hi], "n_test": len(images),
              "test_data": source_name(test.source), "seconds": 0.0, "hardware": here, "log_px": []}
    partial = partial_file(name, k, shards, i, results)
    continue_from(partial, record)
    partial.parent.mkdir(parents=True, exist_ok=True)
    todo = range(batches.start + len(record["log_px"]) // batch_size, batches.stop)
    bar = tqdm(total=len(batches), initial=len(batches) - len(todo), disable=not progress, desc=f"IWAE k={k}")
    for first in todo[::save_every]:
        last = min(first + save_every, batches.stop)
        start = time.time()
        log_px = evaluate_log_px(model, images[first * batch_size:min(last * batch_size, hi)], k=k,
                                 batch_size=batch_size, seed=seed, first_batch=first)   # (images,)
        record["seconds"] = round(record["seconds"] + time.time() - start, 1)
        record["log_px"] += [round(v, 5) for v in log_px.tolist()]
        atomic_write(partial, lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))
        bar.update(last - first)
    bar.close()
    out = shard_file(name, k, shards, i, results)
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))
    partial.unlink(missing_ok=True)        # (a shard of no batches wrote none)
    return record


def finished_shards(name: str, k: int, shards: int, results: Path = RESULTS,
                    folder: Path | None = None) -> list[dict]:
    """The records of the shards done so far for the shipped file of ``name`` (others are ignored)."""
    sha = pretrained.card(name, folder)["sha256"]
    records = [json.loads(p.read_text()) for i in range(shards)
               if (p := shard_file(name, k, shards, i, results)).exists()]
    return [r for r in records if r["sha256"] == sha]


def combine(name: str, k: int, shards: int, results: Path = RESULTS,
            folder: Path | None = None) -> tuple[BoundResult, float]:
    """The bound over the whole test set from all shards, and the seconds they took together."""
    records = sorted(finished_shards(name, k, shards, results, folder), key=lambda r: r["shard"])
    missing = sorted(set(range(shards)) - {r["shard"] for r in records})
    if missing:
        raise SystemExit(f"{name}: shards {missing} of {shards} are not done yet; evaluate them with "
                         f"--shard {' '.join(map(str, missing))}")
    log_px = torch.tensor([v for r in records for v in r["log_px"]], dtype=torch.float64)  # (N,)
    if len(log_px) != records[0]["n_test"]:
        raise SystemExit(f"{name}: the shards hold {len(log_px)} images, the test set {records[0]['n_test']}")
    model_config = pretrained.card(name, folder)["config"]
    n_dims = model_config["image_channels"] * model_config["image_size"] ** 2
    return BoundResult.from_log_px(log_px, n_dims, k), sum(r["seconds"] for r in records)


def write_card(name: str, k: int, shards: int, results: Path = RESULTS, folder: Path | None = None) -> dict:
    """Put the whole-test-set bound into the model card (the weights, and so the sha256, stay as they are).
    A bound on a subset that the card held until then is kept as its ``subset_preview``."""
    result, seconds = combine(name, k, shards, results, folder)
    card = pretrained.card(name, folder)
    earlier = card.get("test_bound")
    if earlier and earlier.get("n_images") != result.n_images:      # a preview on fewer test images
        card["subset_preview"] = {**earlier, "test": card.get("data", {}).get("test")}
    card["test_bound"] = {**result.as_dict(), "evaluation_seconds": round(seconds, 1)}
    card.setdefault("data", {})["test"] = f"all {result.n_images:,} test images"
    pretrained.save_card(name, card, folder)
    return card


def write_subset_card(name: str, n: int, k: int = 128, progress_dir: Path = PROGRESS,
                      folder: Path | None = None) -> dict:
    """Measure the card's figure on the fixed-seed random subset of ``n`` test images (as `vnca eval
    --pretrained NAME --images n` does) and put it into the card: for models whose whole test set is not
    evaluated yet."""
    from vnca_tutorial.data import subset
    from vnca_tutorial.evaluate import evaluate_bound
    model = pretrained.load(name, folder=folder)
    images = subset(load_dataset(model.config.dataset, "test"), n, seed=0).images
    resume = progress_dir / name / f"k{k}_subset{n}.safetensors"
    resume.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    result = evaluate_bound(model, images, k=k, progress=True, resume_file=resume)
    card = pretrained.card(name, folder)
    card["test_bound"] = {**result.as_dict(), "evaluation_seconds": round(time.time() - start, 1)}
    card.setdefault("data", {})["test"] = f"a fixed-seed random subset of {n} test images"
    pretrained.save_card(name, card, folder)
    return card


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(set(pretrained.names()) | set(pretrained.names(CANDIDATES))))
    p.add_argument("--candidate", action="store_true",
                   help="the model exported to candidates/ (not shipped until its whole-test figure is in)")
    p.add_argument("--shards", type=int, default=1, help="how many parts the test set is split into")
    p.add_argument("--shard", type=int, nargs="*", default=[], help="evaluate these shards (0-based)")
    p.add_argument("--redo", action="store_true",
                   help="evaluate a --shard again even if its finished record is there (it is replaced)")
    p.add_argument("--status", action="store_true", help="list the shards done so far")
    p.add_argument("--card", action="store_true", help="all shards done: write the figure into the card")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="instead: measure the fixed-seed random subset of N test images into the card")
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (on a GPU a shard takes seconds)")
    a = p.parse_args(argv)
    folder = CANDIDATES if a.candidate else None
    if a.name not in pretrained.names(folder):
        p.error(f"{a.name} is {'not a candidate' if a.candidate else 'a candidate, not shipped: add --candidate'}")
    torch.set_num_threads(a.threads)
    if any(not 0 <= i < a.shards for i in a.shard):
        p.error(f"--shard takes numbers from 0 to {a.shards - 1}")
    finished = {r["shard"] for r in finished_shards(a.name, a.k, a.shards, RESULTS, folder)}
    for i in a.shard:
        if i in finished and not a.redo:
            record = shard_file(a.name, a.k, a.shards, i, RESULTS)
            print(f"{a.name} shard {i}/{a.shards} is done already ({record}); --redo evaluates it again",
                  flush=True)
            continue
        r = evaluate_shard(a.name, i, a.shards, k=a.k, results=RESULTS, device=a.device, folder=folder)
        mean = sum(r["log_px"]) / len(r["log_px"])
        print(f"{a.name} shard {i}/{a.shards}: images {r['images'][0]}-{r['images'][1] - 1}, "
              f"mean {mean:.2f} nats, {r['seconds']:.0f} s", flush=True)
    if a.status:
        done = finished_shards(a.name, a.k, a.shards, RESULTS, folder)
        n = sum(len(r["log_px"]) for r in done)
        print(f"{a.name}: {len(done)} of {a.shards} shards done ({n} images, "
              f"{sum(r['seconds'] for r in done) / 3600:.2f} hours of evaluation); missing: "
              f"{sorted(set(range(a.shards)) - {r['shard'] for r in done})}")
    if a.card:
        print(json.dumps(write_card(a.name, a.k, a.shards, RESULTS, folder)["test_bound"], indent=2))
    if a.subset:
        print(json.dumps(write_subset_card(a.name, a.subset, a.k, folder=folder)["test_bound"], indent=2))


if __name__ == "__main__":
    main()
