"""Evaluation: the importance-weighted bound over a test split, in nats and bits per dimension.

The paper reports log p(x) >= IWAE bound with k = 128 importance samples on the whole test set.
Explained in chapter 5 (book/05_evaluation.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .bounds import bits_per_dim

if TYPE_CHECKING:
    from .vae import VAE


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

    @classmethod
    def from_log_px(cls, log_px: Tensor, n_dims: int, k: int) -> "BoundResult":
        """Summary of per-image bounds ``log_px`` (N,) of images with ``n_dims`` dimensions each."""
        log_px = log_px.double()
        mean = log_px.mean().item()
        stderr = (log_px.std().item() / len(log_px) ** 0.5) if len(log_px) > 1 else float("nan")
        return cls(nats=mean, bpd=float(bits_per_dim(mean, n_dims)), k=k, n_images=len(log_px), stderr=stderr)


class ResumeFileMismatch(ValueError):
    """A resume file written by another evaluation (other model, images or settings)."""


def batch_generator(seed: int, batch: int) -> torch.Generator:
    """The random numbers of batch number ``batch`` of an evaluation with ``seed``.

    Each batch has its own stream, derived from (seed, batch) by numpy's SeedSequence, so an evaluation
    that is interrupted and resumed, or split into shards run in parallel, draws exactly the noise of an
    uninterrupted run, and gives the same figure. The stream is on the CPU whatever device the model is
    on, so a GPU draws the same noise (and gives the figure up to float round-off).
    """
    state = np.random.SeedSequence([seed, batch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@torch.inference_mode()
def evaluate_log_px(model: VAE, images: Tensor, k: int = 128, batch_size: int = 8, chunk: int | None = None,
                    seed: int = 0, progress: bool = False, resume_file: str | os.PathLike | None = None,
                    save_every_s: float = 60.0, first_batch: int = 0, **decode_kwargs) -> Tensor:
    """The IWAE bound with ``k`` samples of every image, in nats, (N,); deterministic under ``seed``;
    memory-bounded by evaluating ``batch_size`` images and ``chunk`` samples at a time.

    Batch i draws its noise from ``batch_generator(seed, first_batch + i)`` (a model with stochastic cell
    updates draws its update masks from the global generator, seeded from that stream and restored
    afterwards): a shard of a larger evaluation that starts at its batch ``first_batch`` gives exactly
    that evaluation's values.
    ``resume_file`` (a .safetensors path) makes a long evaluation resumable: every ``save_every_s``
    seconds and at the end it stores the per-image bounds so far, atomically; called again with the same
    file, model, images and settings, it continues where it stopped and gives the same values as an
    uninterrupted run. A file from another evaluation is refused.
    """
    from tqdm.auto import tqdm
    model.eval()
    batches = images.split(batch_size)
    settings, values = None, []
    if resume_file:      # what the file must have been written for (hashing is skipped without a file)
        settings = {"k": k, "batch_size": batch_size, "chunk": chunk, "seed": seed, "n_images": len(images),
                    "first_batch": first_batch, "decode_kwargs": repr(sorted(decode_kwargs.items())),
                    "images": _fingerprint([images]), "model": _fingerprint(model.state_dict().values())}
        values = _resume(resume_file, settings)
    last_save = time.monotonic()
    for i in tqdm(range(len(values), len(batches)), disable=not progress, desc=f"IWAE k={k}",
                  initial=len(values), total=len(batches)):
        x = batches[i].to(model.device, torch.float32)
        generator = batch_generator(seed, first_batch + i)               # on the CPU, for any device
        with torch.random.fork_rng(devices=_rng_devices(model.device)):  # stochastic cell updates
            torch.manual_seed(int(generator.initial_seed()) ^ 0x5EED)    # (p_update < 1) repeat too
            values.append(model.iwae(x, k=k, chunk=chunk, generator=generator, **decode_kwargs).cpu())
        if resume_file and (time.monotonic() - last_save > save_every_s or i == len(batches) - 1):
            _save_progress(resume_file, settings, values)
            last_save = time.monotonic()
    return torch.cat(values) if values else torch.empty(0)


def _rng_devices(device: torch.device) -> list:
    """The accelerators whose random state `fork_rng` must save and restore (none on the CPU)."""
    return [device] if device.type == "cuda" else []


def evaluate_bound(model: VAE, images: Tensor, k: int = 128, batch_size: int = 8, chunk: int | None = None,
                   seed: int = 0, progress: bool = False, resume_file: str | os.PathLike | None = None,
                   save_every_s: float = 60.0, **decode_kwargs) -> BoundResult:
    """Mean IWAE bound with ``k`` samples over ``images`` (N, C, H, W), with its standard error:
    ``evaluate_log_px`` summarised (the paper's test figure with k = 128 on the whole test set)."""
    if "first_batch" in decode_kwargs:
        raise TypeError("evaluate_bound takes no first_batch: a shard's mean is not the figure. Evaluate "
                        "each shard with evaluate_log_px(..., first_batch=...) and summarise all their "
                        "per-image bounds at once with BoundResult.from_log_px (chapter 12)")
    log_px = evaluate_log_px(model, images, k=k, batch_size=batch_size, chunk=chunk, seed=seed,
                             progress=progress, resume_file=resume_file, save_every_s=save_every_s,
                             **decode_kwargs)                                  # (N,)
    return BoundResult.from_log_px(log_px, n_dims=int(torch.tensor(images.shape[1:]).prod()), k=k)


def _fingerprint(tensors) -> str:
    """sha256 of the bytes of some tensors: which model and which images a resume file belongs to."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _save_progress(path, settings: dict, values: list[Tensor]) -> None:
    from safetensors.torch import save_file
    from .checkpoint import atomic_write
    tensors = {"log_px": torch.cat(values).float(), "batches_done": torch.tensor([len(values)])}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata={"settings": json.dumps(settings)}))


def _resume(path, settings: dict) -> list[Tensor]:
    """The per-batch bounds stored in ``path`` (none if it does not exist)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.exists():
        return []
    with safe_open(str(path), framework="pt") as f:
        stored = json.loads((f.metadata() or {}).get("settings", "{}"))
        if stored != settings:
            differ = sorted(key for key in settings if stored.get(key) != settings[key])
            raise ResumeFileMismatch(f"{path} holds a different evaluation (it differs in: {', '.join(differ)}); "
                             "delete it or give another resume file")
        log_px, done = f.get_tensor("log_px"), int(f.get_tensor("batches_done"))
    batch_size = settings["batch_size"]
    return list(log_px.split(batch_size))[:done]
