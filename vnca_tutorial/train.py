"""The training loop of the paper: Adam, gradient-norm clipping, single-sample beta-ELBO.

`train(config, data, settings)` trains any preset; the non-doubling variant trains with a pool of states
and damage (vnca_tutorial.pool). Checkpoints are written atomically every ``checkpoint_every`` updates,
and ``resume=True`` continues a killed run with the same result as an uninterrupted one (CPU, same seed).
Under ``torchrun --nproc_per_node N`` the same function trains with DistributedDataParallel.
Explained in chapter 4 (book/04_vae.md) and chapter 10 (book/10_scaling.md).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from .checkpoint import (CheckpointError, atomic_write, config_to_dict, load_checkpoint,
                         model_state, optimizer_state, save_checkpoint)
from .config import ModelConfig, NonDoublingConfig
from .model import build_model
from .pool import StatePool
from .viz import save_grid

log = logging.getLogger("vnca_tutorial.train")
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.csv"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainSettings:
    run_dir: str = "runs/default"       # checkpoint, metrics.csv and image grids go here
    n_updates: int | None = None        # default: the config's n_updates
    checkpoint_every: int = 100
    eval_every: int = 500               # validation ELBO and image grids
    eval_images: int = 256              # size of the validation subset
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    max_minutes: float | None = None    # stop (with a checkpoint) after this much wall time


def batch_indices(step: int, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> Tensor:
    """The example indices of update ``step``: a fixed-seed permutation per epoch, sharded by rank.

    A pure function of the step, so a resumed run sees exactly the batches of an uninterrupted one.
    """
    global_batch = batch_size * world
    per_epoch = n // global_batch
    if per_epoch < 1:
        raise ValueError(f"{n} training images are fewer than one batch of {global_batch}")
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    start = i * global_batch + rank * batch_size
    return perm[start:start + batch_size]


def _distributed(device: str) -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _as_float(x: Tensor, device: str) -> Tensor:
    return x.to(device=device, dtype=torch.float32)


@torch.no_grad()
def evaluate_elbo(model, images: Tensor, batch_size: int = 64) -> float:
    """Mean ELBO (nats per image, beta = 1) over ``images``."""
    model.eval()
    total = 0.0
    for x in images.split(batch_size):
        total += model.elbo(_as_float(x, model.device), beta=1.0).elbo.sum().item()
    model.train()
    return total / len(images)


def _save_pictures(model, images: Tensor, run_dir: Path, step: int) -> None:
    with torch.no_grad():
        x = _as_float(images[:16], model.device)
        recon = model.p_x_given_z(model.q_z_given_x(x).mean).mean
        save_grid(torch.cat([x, recon]), run_dir / f"reconstructions_{step:07d}.png", nrow=16)
        save_grid(model.sample(32), run_dir / f"samples_{step:07d}.png", nrow=16)


class MetricsLog:
    """metrics.csv (appended; rows past a resumed checkpoint are dropped) and TensorBoard if installed."""

    FIELDS = ["step", "loss", "reconstruction", "kl", "val_elbo", "seconds"]

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        self.path = run_dir / METRICS
        rows = []
        if self.path.exists() and resume_step > 0:
            with open(self.path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.FIELDS)
            w.writeheader()
            w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow({k: row.get(k, "") for k in self.FIELDS})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])


def _resume(path: Path, config: ModelConfig, model, optimizer, pool) -> int:
    saved, tensors, meta = load_checkpoint(path)
    if config_to_dict(saved) != config_to_dict(config):
        raise CheckpointError(f"{path} was written for preset {saved.name!r} with another config; "
                              f"use a new run directory or the same preset ({config.name!r})")
    model.load_state_dict(model_state(tensors))
    optimizer.load_state_dict(optimizer_state(tensors, meta))
    torch.set_rng_state(tensors["rng.torch"])
    if pool is not None:
        pool.load(tensors)
    return int(meta["step"])


def train(config: ModelConfig, images: Tensor, settings: TrainSettings | None = None,
          val_images: Tensor | None = None):
    """Train ``config`` on ``images`` (N, C, H, W); returns the model and the list of logged rows."""
    s = settings or TrainSettings()
    rank, world = _distributed(s.device)
    run_dir = Path(s.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed + rank)
    model = build_model(config).to(s.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    pool = StatePool(config.pool_size) if isinstance(config, NonDoublingConfig) else None
    step = 0
    if s.resume and (run_dir / CHECKPOINT).exists():
        step = _resume(run_dir / CHECKPOINT, config, model, optimizer, pool)
        log.info("resumed %s from update %d", run_dir / CHECKPOINT, step)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    metrics = MetricsLog(run_dir, step) if rank == 0 else None
    if rank == 0:
        atomic_write(run_dir / "config.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(config_to_dict(config), indent=2)))
    val = val_images[: s.eval_images] if val_images is not None else None
    n_updates = s.n_updates or config.n_updates
    history, start = [], time.time()
    from tqdm.auto import tqdm
    bar = tqdm(total=n_updates, initial=step, disable=not s.progress or rank > 0, desc=config.name)
    while step < n_updates:
        idx = batch_indices(step, len(images), config.batch_size, s.seed, rank, world)
        x = _as_float(images[idx], s.device)
        steps = model.decoder.draw_steps() if pool is not None else None
        loss, stats = net(x, terms=True, pool=pool, steps=steps) if pool is not None else net(x, terms=True)
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at update {step + 1}; stopped without saving. The last "
                f"good checkpoint (if any) is kept in {run_dir / CHECKPOINT}. Try a lower learning rate "
                f"(now {config.lr}) or a smaller gradient-norm clip (now {config.grad_clip}).")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        row = {"step": step, "loss": loss.item(), "reconstruction": stats["reconstruction"],
               "kl": stats["kl"], "seconds": round(time.time() - start, 2)}
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.2f}")
        out_of_time = s.max_minutes is not None and time.time() - start > 60 * s.max_minutes
        if rank == 0:
            if val is not None and (step % s.eval_every == 0 or step == n_updates):
                row["val_elbo"] = evaluate_elbo(model, val)
                _save_pictures(model, val, run_dir, step)
            metrics.write(row)
            if step % s.checkpoint_every == 0 or step == n_updates or out_of_time:
                save_checkpoint(run_dir / CHECKPOINT, model, config, step, optimizer,
                                extra_tensors=pool.tensors() if pool is not None else None)
        history.append(row)
        if out_of_time:
            log.info("stopping after %.1f minutes at update %d (resume to continue)", s.max_minutes, step)
            break
    bar.close()
    return model, history
