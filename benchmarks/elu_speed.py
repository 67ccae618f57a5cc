"""The ELU on a CPU, and the chunk size of the k = 128 bound: PyTorch's against the package's, side by side.

    python benchmarks/elu_speed.py mnist_doubling_wide --candidate --json benchmarks/results/elu_speed.json
    python benchmarks/elu_speed.py mnist_doubling_wide --candidate --batch 1 --k 64 --chunks 8 16 64 \\
        --updates 0 --json benchmarks/results/elu_speed_batch1.json   # one image at a time (`--batch-size 1`)
    python benchmarks/elu_speed.py mnist_doubling_small --chunks 1 8 --json benchmarks/results/elu_speed_small.json
    python benchmarks/elu_speed.py mnist_nondoubling_small --chunks 1 8 \\
        --json benchmarks/results/elu_speed_nondoubling.json

Profiling a whole-test evaluation of mnist_doubling_wide showed F.elu taking a third of its time: PyTorch's
CPU ELU calls expm1 value by value. ``vnca_tutorial.nca.elu`` computes exp(min(h, 0)) - 1 + max(h, 0)
instead, with a backward pass from its output. This script measures, on one thread:

1. the two ELUs on one (16, 32, 32, 128) tensor (a chunk of the last stage's hidden activations), forward,
   and forward with backward;
2. ``model.iwae`` on ``--batch`` random test images (8, as the whole-test shards) with k = 16 samples (an
   eighth of one k = 128 batch), with each ELU and several chunk sizes (how many of the k samples are
   decoded at once, for all the batch's images together);
3. training updates of the model's config (batch_loss and descend, as vnca_tutorial.train), with each ELU,
   interleaved update by update (``--updates`` of each; the first of each is left out).

Times are process CPU seconds (this machine's other processes count less than in wall time; they still share
caches and memory bandwidth, so compare rows of one run, not of different runs). It also checks that every
row gives the same bound.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
from vnca_tutorial import nca, pretrained  # noqa: E402
from vnca_tutorial.data import load_dataset  # noqa: E402
from vnca_tutorial.evaluate import batch_generator  # noqa: E402
from vnca_tutorial.hardware import cpu_description  # noqa: E402
from vnca_tutorial.train import batch_loss, descend  # noqa: E402


def cpu_ms(f, repeats: int = 20) -> float:
    """Median process CPU milliseconds of f() over ``repeats`` calls (after one to warm up)."""
    f()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        f()
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2] * 1e3


def iwae_seconds(model: torch.nn.Module, x: torch.Tensor, k: int, chunk: int, elu) -> tuple[float, float]:
    """CPU seconds of one ``model.iwae`` call with the update network's ELU set to ``elu``, and its mean."""
    with mock.patch.object(nca, "elu", elu), torch.no_grad():
        torch.manual_seed(0)                    # the non-doubling model's update masks, as evaluate_log_px
        start = time.process_time()
        bound = model.iwae(x, k=k, chunk=chunk, generator=batch_generator(0, 0))   # (8,)
        return time.process_time() - start, bound.mean().item()


def forward_backward(elu, h: torch.Tensor) -> None:
    h = h.detach().requires_grad_()
    elu(h).backward(torch.ones_like(h))


def train_seconds(model: torch.nn.Module, x: torch.Tensor, updates: int) -> dict[str, list[float]]:
    """CPU seconds of ``updates`` training updates with each ELU, interleaved update by update."""
    cfg = model.config
    optimizer = torch.optim.Adam(model.parameters(), cfg.lr)
    times: dict[str, list[float]] = {"F.elu": [], "nca.elu": []}
    for _ in range(updates + 1):                         # the first of each: allocator warm-up, left out
        for label, elu in (("F.elu", F.elu), ("nca.elu", nca.elu)):
            with mock.patch.object(nca, "elu", elu):
                start = time.process_time()
                loss, _ = batch_loss(model, x, cfg.beta)
                descend(model, optimizer, loss, cfg.grad_clip)
                times[label].append(time.process_time() - start)
    return {label: t[1:] for label, t in times.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="a shipped model (or a candidate, with --candidate)")
    p.add_argument("--candidate", action="store_true", help="take the model from candidates/")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--batch", type=int, default=8, help="images evaluated together (default: 8)")
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--updates", type=int, default=4, help="training updates with each ELU (default: 4)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{a.name}, one thread of {cpu_description()}, torch {torch.__version__}")
    h = torch.randn(16, 32, 32, 128)
    assert torch.allclose(nca.elu(h), F.elu(h), atol=1e-6)
    elu_ms = {"F.elu": cpu_ms(lambda: F.elu(h)), "nca.elu": cpu_ms(lambda: nca.elu(h)),
              "F.elu forward+backward": cpu_ms(lambda: forward_backward(F.elu, h)),
              "nca.elu forward+backward": cpu_ms(lambda: forward_backward(nca.elu, h))}
    print("ELU of 2,097,152 values, CPU ms: " + ", ".join(f"{n} {t:.2f}" for n, t in elu_ms.items()))

    model = pretrained.load(a.name, "cpu", ROOT / "candidates" if a.candidate else None).eval()
    test = load_dataset(model.config.dataset, "test").images
    x = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:a.batch]].float()
    rows = []
    for chunk in a.chunks:
        for label, elu in (("F.elu", F.elu), ("nca.elu", nca.elu)):
            seconds, mean = iwae_seconds(model, x, a.k, chunk, elu)
            rows.append({"chunk": chunk, "elu": label, "cpu_s": round(seconds, 2), "mean": round(mean, 5)})
            print(f"chunk {chunk:2d} ({a.batch * min(chunk, a.k):3d} decodes at once), {label:7s}: {seconds:6.2f} CPU s for "
                  f"{a.batch} images x {a.k} samples (bound {mean:.5f})", flush=True)
    spread = max(r["mean"] for r in rows) - min(r["mean"] for r in rows)
    fastest = min(rows, key=lambda r: r["cpu_s"])
    print(f"all bounds within {spread:.1e} nats of each other; fastest: chunk {fastest['chunk']} with {fastest['elu']}")
    train = {}
    if a.updates:
        batch = test[:model.config.batch_size].float()
        train = {label: [round(t, 3) for t in times] for label, times in train_seconds(model, batch, a.updates).items()}
        median = {label: statistics.median(t) for label, t in train.items()}
        print(f"training update (batch {model.config.batch_size}), CPU s: "
              + "; ".join(f"{label} {t} (median {median[label]:.2f})" for label, t in train.items())
              + f"; nca.elu / F.elu {median['nca.elu'] / median['F.elu']:.2f}x")
    result = {"name": a.name, "cpu": cpu_description(), "torch": torch.__version__, "k": a.k, "batch": a.batch,
              "elu_ms": elu_ms, "rows": rows, "train_cpu_s": train}
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
