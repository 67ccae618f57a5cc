"""Does the half of a grown non-doubling state that survives damage still know its digit? (issue 15)

After the right half of a digit's state is zeroed at T_max, the rule must redraw that half from what the
left half holds. This asks whether the left half holds enough, independently of the rule: a ridge
regression (a linear probe) is fitted on valid digits from the left half's cell states at T_max to the
posterior mean z, and scored on test digits. Then the z the probe reads from each test digit's left half
is decoded from a fresh seed: if that digit is within 10 nats of the one decoded from the true z, the
information to redraw it survives the damage, and a failure to regrow is the rule's, not the state's.

    python benchmarks/identity_probe.py mnist_nondoubling_small          # a shipped model
    python benchmarks/identity_probe.py --checkpoint runs/x/checkpoint.safetensors

Features of the left half (32 rows x 16 columns of cells, Z channels each): the mean state per channel
(Z features), per channel and row (32 Z), or every cell (512 Z); the left half's pixels for comparison.
Ridge in its dual form (an n x n solve), its weight chosen on the test digits from five values (a probe,
not a model selection). Test digits are a fixed-seed random subset (the test split is sorted by label).
"""
from __future__ import annotations

import argparse

import torch
from torch import Tensor

from vnca_tutorial import pretrained
from vnca_tutorial.attractors import log_px_given_state, t_max
from vnca_tutorial.checkpoint import load_model
from vnca_tutorial.data import load_binarized_mnist, subset
from vnca_tutorial.hardware import cpu_description

LAMBDAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def ridge_fit(a: Tensor, b: Tensor, lam: float):  # (n, F), (n, T) -> predict: (m, F) -> (m, T)
    """Ridge regression with an intercept, solved in its dual form: w = A^T (A A^T + lam I)^-1 B."""
    ma, mb = a.mean(0), b.mean(0)
    centred = a - ma
    alpha = torch.linalg.solve(centred @ centred.T + lam * torch.eye(len(a), dtype=a.dtype), b - mb)
    w = centred.T @ alpha                                                  # (F, T)
    return lambda new: (new - ma) @ w + mb


def r_squared(pred: Tensor, target: Tensor, mean: Tensor) -> float:
    """1 - residual sum of squares / sum of squares about ``mean`` (the training targets' mean)."""
    return (1 - ((pred - target) ** 2).sum() / ((target - mean) ** 2).sum()).item()


def grown_left_halves(model, split: str, n: int, seed: int) -> dict[str, Tensor]:
    x = subset(load_binarized_mnist(split), n, seed=seed).images.float()  # (n, 1, H, W)
    with torch.no_grad():
        z = model.q_z_given_x(x).mean                                      # (n, Z)
        torch.manual_seed(seed)
        left = model.decode(z)[..., : x.shape[-1] // 2]                    # (n, Z, H, W/2) at T_max
    return {"x": x, "z": z, "mean state": left.mean((2, 3)), "row means": left.mean(3).flatten(1),
            "every cell": left.flatten(1), "pixels": x[..., : x.shape[-1] // 2].flatten(1)}


def probe(model, n_fit: int = 600, n_test: int = 400) -> None:
    fit, test = grown_left_halves(model, "valid", n_fit, 1), grown_left_halves(model, "test", n_test, 2)
    print(f"{cpu_description()}; T_max {t_max(model)}; probes fitted on {n_fit} valid digits, "
          f"R^2 of z on {n_test} random test digits")
    best = {}
    for name in ("mean state", "row means", "every cell", "pixels"):
        scores = [(r_squared(ridge_fit(fit[name], fit["z"], lam)(test[name]), test["z"], fit["z"].mean(0)),
                   lam) for lam in LAMBDAS]
        best[name] = max(scores)
        print(f"  z from the left half's {name:10} ({fit[name].shape[1]:6,} features): "
              f"R^2 {best[name][0]:.3f} (ridge weight {best[name][1]:g})")
    z_read = ridge_fit(fit["row means"], fit["z"], best["row means"][1])(test["row means"])   # (n_test, Z)
    with torch.no_grad():
        torch.manual_seed(0)
        own = log_px_given_state(model, model.decode(test["z"]), test["x"])                  # (n_test,)
        torch.manual_seed(0)
        read = log_px_given_state(model, model.decode(z_read), test["x"])
    gap = own - read
    print(f"  log p(x|state) decoded from the true z {own.mean():.1f} nats; from the z read off the left "
          f"half's row means {read.mean():.1f}; within 10 nats: {(gap < 10).float().mean():.0%}, within 20: "
          f"{(gap < 20).float().mean():.0%}, median gap {gap.median():.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help=f"a shipped model ({', '.join(pretrained.names())})")
    p.add_argument("--checkpoint", help="a trained non-doubling VNCA's checkpoint file")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if bool(a.name) == bool(a.checkpoint):
        p.error("name one shipped model or give --checkpoint (one of the two)")
    if a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    model = pretrained.load(a.name) if a.name else load_model(a.checkpoint)[0]
    if getattr(model, "doubling", True):
        p.error("the probe reads a non-doubling VNCA's grown grid; this model is not one")
    model.eval()
    print(a.name or a.checkpoint)
    probe(model)


if __name__ == "__main__":
    main()
