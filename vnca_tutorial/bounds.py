"""Bounds on log p(x) and their units. Explained in chapter 5 (book/05_evaluation.md).

ELBO (paper eq. 2):  log p(x) >= E_q[log p(x|z)] - beta KL(q(z|x) || p(z))   (a bound for beta = 1)
IWAE (Burda et al. 2016): log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],  z_i ~ q(z|x),
which equals the single-sample ELBO estimator for k = 1 and does not decrease as k grows.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class ELBO(NamedTuple):
    """Per-example terms of the evidence lower bound, each of shape (B,), in nats."""
    elbo: Tensor            # reconstruction - beta * kl
    reconstruction: Tensor  # log p(x|z), z ~ q(z|x)
    kl: Tensor              # KL(q(z|x) || p(z)), analytic or single-sample


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """log(mean(exp(x))) along ``dim`` without overflow: logsumexp(x) - log(n)."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def bits_per_dim(log_px: Tensor | float, n_dims: int) -> Tensor | float:
    """bpd = -log p(x) / (H W C ln 2), with log p(x) in nats and n_dims = H W C."""
    if n_dims < 1:
        raise ValueError(f"n_dims must be a positive number of image dimensions (H*W*C), got {n_dims}")
    return -log_px / (n_dims * math.log(2.0))


def split_sizes(k: int, chunk: int) -> list[int]:
    """Split k importance samples into chunks of at most ``chunk`` (so k = 128 fits in memory)."""
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be positive integers, got k={k}, chunk={chunk}")
    return [min(chunk, k - i) for i in range(0, k, chunk)]
