"""Evaluation: the importance-weighted bound over a test split, in nats and bits per dimension.

The paper reports log p(x) >= IWAE bound with k = 128 importance samples on the whole test set.
Explained in chapter 5 (book/05_evaluation.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .bounds import bits_per_dim


@dataclass
class BoundResult:
    """Mean importance-weighted bound over a test set."""
    nats: float       # mean log-likelihood bound per image (negative), e.g. -84.23 for the paper's MNIST
    bpd: float        # bits per dimension: -nats / (H W C ln 2)
    k: int            # importance samples per image
    n_images: int
    stderr: float     # standard error of the mean over images, in nats

    def as_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def evaluate_bound(model, images: Tensor, k: int = 128, batch_size: int = 8, chunk: int | None = None,
                   seed: int = 0, progress: bool = False, **decode_kwargs) -> BoundResult:
    """IWAE bound with ``k`` samples for every image; deterministic under ``seed``; memory-bounded
    by evaluating ``batch_size`` images and ``chunk`` samples at a time."""
    from tqdm.auto import tqdm
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    values = []
    for x in tqdm(images.split(batch_size), disable=not progress, desc=f"IWAE k={k}"):
        x = x.to(model.device, torch.float32)
        values.append(model.iwae(x, k=k, chunk=chunk, generator=generator, **decode_kwargs).cpu())
    log_px = torch.cat(values).double()                               # (N,)
    n_dims = int(torch.tensor(images.shape[1:]).prod())
    mean = log_px.mean().item()
    stderr = (log_px.std().item() / len(log_px) ** 0.5) if len(log_px) > 1 else float("nan")
    return BoundResult(nats=mean, bpd=float(bits_per_dim(mean, n_dims)), k=k, n_images=len(log_px),
                       stderr=stderr)
