"""Does torch.compile speed up CPU training? One training update of a shipped model's config, eager against
the update network compiled by inductor, process CPU seconds per update (one thread), side by side.

    python benchmarks/compile_probe.py mnist_doubling_wide --updates 8 > benchmarks/results/compile_probe.txt

The first compiled update includes the compilation. Shapes are static per stage (one compiled graph per
grid size); the recompile limit is raised so that no stage falls back to eager.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch._dynamo

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
from train_pretrained import SHIPPED  # noqa: E402

from vnca_tutorial.hardware import cpu_description  # noqa: E402
from vnca_tutorial.model import build_model  # noqa: E402
from vnca_tutorial.train import batch_loss, descend  # noqa: E402


def cpu_seconds_per_update(name: str, compiled: bool, updates: int) -> list[float]:
    cfg = SHIPPED[name]
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), cfg.lr)
    if compiled:
        model.decoder.nca.update_net = torch.compile(model.decoder.nca.update_net, dynamic=False)
    x = torch.rand(cfg.batch_size, cfg.image_channels, cfg.image_size, cfg.image_size)
    x = (x > 0.5).float() if cfg.likelihood == "bernoulli" else (x * 255).round()
    times = []
    for _ in range(updates):
        start = time.process_time()
        loss, _ = batch_loss(model, x, cfg.beta)
        descend(model, optimizer, loss, cfg.grad_clip)
        times.append(time.process_time() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(SHIPPED))
    p.add_argument("--updates", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch._dynamo.config.recompile_limit = 64
    print(f"{a.name}, one thread of {cpu_description()}, torch {torch.__version__}")
    medians = {}
    for compiled in (False, True):
        times = cpu_seconds_per_update(a.name, compiled, a.updates)
        steady = sorted(times[2:])                       # the first two: compilation, allocator warm-up
        medians[compiled] = steady[len(steady) // 2]
        print(f"{'compiled' if compiled else 'eager':8s}: CPU s per update {[round(t, 2) for t in times]}, "
              f"median after the first two {medians[compiled]:.2f}")
    print(f"compiled / eager: {medians[True] / medians[False]:.2f}x")


if __name__ == "__main__":
    main()
