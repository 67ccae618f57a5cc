"""How a non-doubling VNCA loses its digit over time, and how far a damaged digit comes back (issue 15).

    python benchmarks/drift.py                                        # the shipped mnist_nondoubling_small
    python benchmarks/drift.py --checkpoint runs/x/checkpoint.safetensors

On 200 fixed-seed random test digits (the same as benchmarks/attractors.py), decoded from their posterior
means: at step counts from T_max to 1,000, the drop of log p(x|state) since T_max (mean, median, and how
many digits are within 10 nats) and the max |state| (median, largest); then, after a random H/2 x W/2
square or the right half is zeroed at T_max, the share of digits within 10 and 20 nats of their undamaged
value and the quartiles of the gap, 16 to 128 steps later. A finer view than attractors.py of the two
criteria that issue 15 has not met. Printed with the CPU it ran on.
"""
from __future__ import annotations

import argparse

import torch

from vnca_tutorial import pretrained
from vnca_tutorial.attractors import log_px_given_state, run_on, t_max
from vnca_tutorial.checkpoint import load_model
from vnca_tutorial.damage import damage_random_square, damage_right_half
from vnca_tutorial.data import load_dataset, subset
from vnca_tutorial.hardware import cpu_description

STEPS = (1, 1.5, 2, 3, 4, 6, 10, 20)        # multiples of T_max, then 1,000 steps
AFTER_DAMAGE = (16, 32, 64, 128)


@torch.no_grad()
def drift(model, x: torch.Tensor) -> None:
    T = t_max(model)
    state = model.decode(model.q_z_given_x(x).mean)                  # (B, Z, H, W) at T_max
    before = log_px_given_state(model, state, x)                     # (B,)
    done = T
    for n in sorted({int(T * m) for m in STEPS} | {1000}):
        state = run_on(model, state, n - done)
        done = n
        drop = before - log_px_given_state(model, state, x)
        size = state.abs().flatten(1).max(1).values
        print(f"step {n:5d}: drop mean {drop.nanmean():9.2f}, median {drop.nanmedian():7.2f}, within 10 nats "
              f"{int((drop <= 10).sum()):3d}/{len(x)}; max|s| median {size.median():.3g}, largest {size.max():.3g}")
    start = model.decode(model.q_z_given_x(x).mean)
    for name, damage in (("square", lambda s: damage_random_square(s, torch.Generator().manual_seed(0))),
                         ("right half", damage_right_half)):
        state, done = damage(start), 0
        for n in AFTER_DAMAGE:
            state = run_on(model, state, n - done)
            done = n
            gap = before - log_px_given_state(model, state, x)
            q = torch.quantile(gap, torch.tensor([0.25, 0.5, 0.75, 0.9])).tolist()
            print(f"{name:>10} + {n:3d} steps: within 10 nats {(gap <= 10).float().mean():.0%}, within 20 "
                  f"{(gap <= 20).float().mean():.0%}; gap quartiles (and 90%) {', '.join(f'{v:.1f}' for v in q)}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a trained non-doubling VNCA (default: the shipped one)")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = (load_model(a.checkpoint) if a.checkpoint else pretrained.load("mnist_nondoubling_small")).eval()
    x = subset(load_dataset(model.config.dataset, "test"), a.images, seed=0).images
    print(f"{a.checkpoint or 'mnist_nondoubling_small'}: {a.images} random test digits, T_max = {t_max(model)} "
          f"({cpu_description()}, {torch.get_num_threads()} threads)")
    torch.manual_seed(0)
    drift(model, x)


if __name__ == "__main__":
    main()
