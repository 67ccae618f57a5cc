"""Store a shipped model's weights in float16 (half the bytes) and measure its card's figures again on them.

    python scripts/store_float16.py mnist_nondoubling_small --threads 2

The model still computes in float32: only the stored weights are rounded. So the figures of the card are
measured again on the file that now ships: the k = 128 bound on the card's fixed-seed random test subset
(scripts/evaluate_pretrained.py --subset), and, for a model whose card has them, the attractor figures
(benchmarks/attractors.py --card). The float32 figures stay in the card under ``float32_test_bound`` and
``float32_attractors``; the whole-test shards measured on the float32 file move to
benchmarks/results/pretrained_eval/retired/ (they are tied to its sha256). The card's ``notes`` are prose:
edit the figures they quote by hand. After an interruption during the measurements, run the same command
again; one during the rewrite of the weights and the card leaves them disagreeing (the model is then
refused): restore both with git and run it again.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from vnca_tutorial import pretrained
from vnca_tutorial.checkpoint import load_model, read_metadata, save_checkpoint
import evaluate_pretrained
from evaluate_pretrained import RESULTS, write_subset_card


def round_weights(name: str, folder: Path | None = None) -> dict:
    """Rewrite ``name``'s weights in float16 and point its card at the new file; the card as it was."""
    path = pretrained.verify(name, folder)
    model = load_model(path)
    if not all(torch.isfinite(t.half()).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise SystemExit(f"{path}: weights overflow float16; left as they are")
    save_checkpoint(path, model, model.config, int(read_metadata(path)["step"]), weights_dtype=torch.float16)
    before = pretrained.card(name, folder)
    card = {**before, "sha256": pretrained.sha256(path), "stored_dtype": "float16",
            "float32_test_bound": {**before["test_bound"], "sha256": before["sha256"]}}
    if "attractors" in before:
        card["float32_attractors"] = {**before["attractors"], "sha256": before["sha256"]}
    pretrained.save_card(name, card, folder)
    return before


def retire_shards(name: str, sha256: str, results: Path | None = None) -> None:
    """Move the whole-test shards of the file with ``sha256`` out of the way (they do not describe it now)."""
    results = results or RESULTS
    retired = results / "retired" / f"{name}_{sha256[:8]}"
    for shard in sorted((results / name).glob("k*_shard*.json")):
        if f'"sha256": "{sha256}"' in shard.read_text():
            retired.mkdir(parents=True, exist_ok=True)
            shutil.move(shard, retired / shard.name)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=pretrained.names())
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    card = pretrained.card(a.name)
    test = evaluate_pretrained.load_dataset(card["config"]["dataset"], "test")
    if card["test_bound"]["n_images"] >= len(test):
        p.error(f"this script measures a card's figure again on the card's subset of test images; {a.name}'s "
                "card holds a whole-test figure (hours to measure again): export the model with --dtype "
                "float16 (scripts/export_pretrained.py) and measure it in shards (evaluate_pretrained.py)")
    if card["stored_dtype"] != "float16":
        retire_shards(a.name, round_weights(a.name)["sha256"])
    n = card["test_bound"]["n_images"]
    print(f"{a.name}: weights in float16; its bound on {n} test images again (float32 was "
          f"{card.get('float32_test_bound', card['test_bound'])['nats']:.2f} nats)", flush=True)
    progress = evaluate_pretrained.PROGRESS / "float16"     # not a --subset run's file of the float32 weights
    print(f"{write_subset_card(a.name, n, card['test_bound']['k'], progress)['test_bound']['nats']:.2f} nats")
    if "attractors" in card:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        import attractors
        attractors.main([a.name, "--k", "0", "--card", "--threads", str(a.threads)])


if __name__ == "__main__":
    main()
