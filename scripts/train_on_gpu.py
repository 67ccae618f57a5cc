"""Train a paper-scale model on a GPU for a fixed number of minutes; write what a CPU needs to evaluate it.

Issue 19's one prepared GPU script (chapter 10 says what it is for). It trains `--preset` (default: the
paper's `mnist_doubling`) with the fastest precision the device has (bf16 autocast on a GPU with bf16
units; `--precision` to choose), then bounds `--eval-images` random test digits with k = 128 on the same
device and writes, in `--out`:

    weights.safetensors   the trained weights (float16 if --half: the paper model is 25 MiB in float32)
    metrics.csv           the training curve (update, loss, validation ELBO, seconds)
    summary.json          device, precision, updates, seconds, the bound, and the command to reproduce it

Run it where a GPU is lent; the data file travels with the repository in the ignored folder .devdata/
(`mkdir -p .devdata && cp "$VNCA_DATA_DIR/binarized_mnist.npz" .devdata/` first, then carry `.devdata`):

    PYTHONPATH=. python scripts/train_on_gpu.py --minutes 8 --data-dir .devdata --out "$OUT"

and on a CPU, `vnca eval --checkpoint OUT/weights.safetensors --k 128` gives the card's figure. With
`--preset mnist_nondoubling` it trains the paper's non-doubling model with its pool and damage (issue 15:
a GPU's minutes are worth hours of the two CPU cores), and `benchmarks/attractors.py --checkpoint` then
measures its stability and regrowth. The tests run
it on a CPU with a tiny preset (`--device cpu --preset mnist_doubling_cpu --set ...`), so that GPU minutes
are not spent on its bugs.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from vnca_tutorial.checkpoint import load_model, read_metadata, save_checkpoint
from vnca_tutorial.cli import CLIError, apply_precision, parse_overrides
from vnca_tutorial.config import get_preset
from vnca_tutorial.data import load_dataset, subset
from vnca_tutorial.evaluate import evaluate_bound
from vnca_tutorial.hardware import PRECISIONS, cpu_description
from vnca_tutorial.train import CHECKPOINT, METRICS, TrainingDiverged, TrainSettings, train


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_description()


def write_rows(metrics: Path, out: Path, last_step: int) -> None:
    """Copy a run's metrics.csv up to ``last_step`` (the update the written weights are from)."""
    with open(metrics, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if int(r["step"]) <= last_step]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="training wall time (the bound comes after)")
    p.add_argument("--out", required=True, help="folder for weights.safetensors, metrics.csv, summary.json")
    p.add_argument("--preset", default="mnist_doubling")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[], help="change config fields")
    p.add_argument("--data-dir", default=None, help="folder with the data set (default: $VNCA_DATA_DIR)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--eval-images", type=int, default=1000, help="random test images bounded at the end")
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--init-from", default=None, help="start from this checkpoint's weights (a fresh optimizer)")
    p.add_argument("--half", action="store_true", help="store the weights in float16 (halves the file)")
    a = p.parse_args(argv)
    if not 0 < a.minutes < 600 or a.eval_images < 1 or a.k < 1:
        p.error("need 0 < --minutes < 600, --eval-images >= 1 and --k >= 1")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu")
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        config = get_preset(a.preset).replace(**parse_overrides(a.set, type(get_preset(a.preset))))
        config, why = apply_precision(config, a.precision, a.set, a.device)
    except (CLIError, ValueError) as e:
        sys.exit(f"train_on_gpu.py: error: {e}")
    logging.info("%s on %s; precision: %s", config.name, device_name(a.device), why)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="vnca_gpu_run_"))    # pictures and the full checkpoint stay here
    mnist = config.dataset == "binarized_mnist"
    data = load_dataset(config.dataset, "trainval" if mnist else "train", data_dir=a.data_dir)
    test = load_dataset(config.dataset, "test", data_dir=a.data_dir)
    settings = TrainSettings(run_dir=str(run_dir), device=a.device, max_minutes=a.minutes, progress=False,
                             checkpoint_every=500, eval_every=500, init_from=a.init_from, eval_images=min(512, len(test)))
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True     # the grid's shapes repeat: let cuDNN pick its fastest conv
    start = time.time()
    diverged = None
    try:
        model, history = train(config, data.images, settings, val_images=test.images)
    except TrainingDiverged as e:             # the GPU minutes are spent: keep the last good checkpoint
        if not (run_dir / CHECKPOINT).exists():
            sys.exit(f"train_on_gpu.py: error: {e}")
        diverged = str(e).split(";")[0]
        logging.warning("%s; writing the last good checkpoint instead", diverged)
        model = load_model(run_dir / CHECKPOINT, map_location=a.device)
        history = [{"step": int(read_metadata(run_dir / CHECKPOINT)["step"])}]   # the update it holds
    train_seconds = time.time() - start
    if not history:
        sys.exit(f"train_on_gpu.py: error: no update finished within --minutes {a.minutes}; give it longer")
    weights = out / "weights.safetensors"     # float32 arithmetic from here on: the bound as a card has it
    save_checkpoint(weights, model, config.replace(bf16=False), history[-1]["step"],
                    weights_dtype=torch.float16 if a.half else None)
    write_rows(run_dir / METRICS, out / METRICS, history[-1]["step"])    # rows the weights have seen
    shipped = load_model(weights, map_location=a.device).eval()      # bound exactly what was written
    images = subset(test, min(a.eval_images, len(test)), seed=0).images
    bound = evaluate_bound(shipped, images, k=a.k, batch_size=32)
    summary = {"preset": config.name, "config_changes": a.set, "init_from": a.init_from,
               "device": device_name(a.device),
               "precision": why, "updates": history[-1]["step"], "train_seconds": round(train_seconds, 1),
               "updates_per_second": round(history[-1]["step"] / train_seconds, 3),
               "bound": {**bound.as_dict(), "images": f"{len(images)} random test images (seed 0)"},
               "weights_dtype": "float16" if a.half else "float32", "diverged": diverged,
               "tf32_convolutions": bool(a.device.startswith("cuda") and torch.backends.cudnn.allow_tf32),
               "evaluate_on_cpu": f"vnca eval --checkpoint {weights.name} --k {a.k}"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(run_dir)                    # its checkpoint holds Adam's moments too: 3x the weights
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
