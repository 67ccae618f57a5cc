"""How the cost of one training update grows with the image size, for the doubling and non-doubling VNCA.

For image sizes 16, 32, 64 and 128 (the doubling decoder grows its 2x2 seed with K = 3, 4, 5, 6
doublings), it measures one training update (ELBO, backward, Adam; as `vnca_tutorial.train` does it,
without the pool, so that both decoders are compared on the same objective) of two small models with the
same update network (3x3 conv, one residual block, 1x1 conv; z_dim 16, hidden 32, batch 4):

* doubling: M = 4 NCA steps per stage, so 4 (K + 1) steps, most of them on small grids;
* non-doubling: T = 16 steps, every one on the full grid (the non-doubling VNCA seeds every cell with z, so
  T need not grow with the image).

Reported per point: median wall-clock and process-CPU seconds of the timed updates, FLOPs counted with
``FlopCounterMode``, the peak tensor memory of one update (TorchDispatchMode tracker) and the peak RSS
growth. With ``--checkpointing`` the same models are measured again with activation checkpointing.
Writes JSON and a PNG plot (default benchmarks/results/scaling.{json,png}) for the book's scaling chapter.

    python benchmarks/scaling.py --threads 1                  # a few minutes on 2 CPU cores
    python benchmarks/scaling.py --sizes 16,32 --repeats 1    # quick
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as B  # noqa: E402
import instruments as I  # noqa: E402

from vnca_tutorial.config import DoublingConfig, NonDoublingConfig  # noqa: E402
from vnca_tutorial.viz import plot_scaling  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SMALL = dict(z_dim=16, hidden=32, n_blocks=1, batch_size=4, encoder_channels=8, lr=1e-3)


def configs(size: int, steps_per_stage: int, nd_steps: int, checkpointing: bool) -> dict:
    k = (size // 2).bit_length() - 1                      # size = 2 * 2**K
    if 2 * 2 ** k != size:
        raise ValueError(f"image size {size} is not 2 * 2**K")
    return {
        "doubling": DoublingConfig(name=f"doubling_{size}", image_size=size, n_doublings=k,
                                   steps_per_stage=steps_per_stage, checkpointing=checkpointing, **SMALL),
        "nondoubling": NonDoublingConfig(name=f"nondoubling_{size}", image_size=size, min_steps=nd_steps,
                                         max_steps=nd_steps, checkpointing=checkpointing, **SMALL),
    }


def measure_point(config, warmup: int, repeats: int) -> dict:
    model = B.build(config)
    x = B.fake_images(config, config.batch_size)
    update = B.TrainingUpdate(model, x, pool=False)
    info = I.instrumented(update)
    t = B.interleaved({"u": update}, warmup, repeats)["u"]
    steps = (config.steps_per_stage * (config.n_doublings + 1) if isinstance(config, DoublingConfig)
             else config.max_steps)
    cell_updates = sum(i.size ** 2 for i in model.decoder.schedule() if i.kind == "nca")
    return {"image_size": config.image_size, "n_doublings": getattr(config, "n_doublings", None),
            "nca_steps": steps, "cell_updates_per_image": cell_updates, "batch": config.batch_size,
            **info, **t, "gflops": info["gflop"] / t["wall_s"]}


def plot(result: dict, path: Path) -> None:
    """Write the figure of ``vnca_tutorial.viz.plot_scaling`` (the plot chapter 10 shows) to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_scaling(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="16,32,64,128")
    p.add_argument("--steps-per-stage", type=int, default=4, help="M of the doubling decoder")
    p.add_argument("--nd-steps", type=int, default=16, help="T of the non-doubling decoder")
    p.add_argument("--checkpointing", action="store_true", help="also measure with activation checkpointing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=str(RESULTS / "scaling.json"))
    p.add_argument("--png", default=str(RESULTS / "scaling.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": args.threads, "sizes": sizes,
              "nd_steps": args.nd_steps, "steps_per_stage": args.steps_per_stage, "model": SMALL,
              "machine": I.cpu_info(), "load_start": I.load_average(), "series": {}}
    modes = [False, True] if args.checkpointing else [False]
    for ckpt in modes:
        for size in sizes:
            for decoder, config in configs(size, args.steps_per_stage, args.nd_steps, ckpt).items():
                series = decoder + ("+ckpt" if ckpt else "")
                point = measure_point(config, args.warmup, args.repeats)
                result["series"].setdefault(series, []).append(point)
                print(f"{series:18s} {size:4d}x{size:<4d} K={point['n_doublings']!s:4s} "
                      f"steps={point['nca_steps']:3d}  {point['wall_s']:7.3f} s wall  {point['cpu_s']:7.3f} s cpu  "
                      f"{point['gflop']:8.2f} GFLOP  peak tensors {point['peak_tensor_mib']:8.1f} MiB  "
                      f"RSS+ {point['rss_delta_mib']:8.1f} MiB", flush=True)
    result["load_end"] = I.load_average()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    plot(result, Path(args.png))
    print(f"wrote {args.json} and {args.png}")
    return result


if __name__ == "__main__":
    main()
