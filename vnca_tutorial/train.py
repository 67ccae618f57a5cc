"""The training loop of the paper: Adam, gradient-norm clipping, single-sample beta-ELBO.

`train(config, data, settings)` trains any preset; the non-doubling variant trains with a pool of states
and damage (vnca_tutorial.pool). Checkpoints are written atomically every ``checkpoint_every`` updates,
and ``resume=True`` continues a killed run with the same result as an uninterrupted one (CPU, same seed).
Under ``torchrun --nproc_per_node N`` the same function trains with DistributedDataParallel: every rank
draws its own shard of each global batch, rank 0 alone writes the checkpoint, metrics and pictures, and
the checkpoint keeps every rank's random-number state. (With pool training each rank keeps its own pool;
the checkpoint holds rank 0's, which every rank starts from when resumed.)
One update is `batch_loss` (the forward pass) then `descend` (backward, clip, Adam step); `_train` adds
the orchestration around them. Explained in chapter 4 (book/04_vae.md) and chapter 10
(book/10_scaling.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checks import check_device
from .checkpoint import (CheckpointError, atomic_write, config_to_dict, load_checkpoint,
                         model_state, optimizer_state, read_metadata, save_checkpoint)
from .config import ModelConfig, NonDoublingConfig
from .model import build_model
from .pool import StatePool, pool_loss
from .viz import save_grid

if TYPE_CHECKING:
    from .vae import VAE

log = logging.getLogger("vnca_tutorial.train")
CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"         # TrainSettings.keep_best: the weights of the best validation ELBO
METRICS = "metrics.csv"


class PoolTraining(nn.Module):
    """One pool-training batch of a non-doubling VNCA as a module call (chapter 8). Pool training is a way
    of training the model, not part of it; it is a module only because DistributedDataParallel
    synchronises gradients through a module's forward."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, pool: StatePool, steps: int, beta: float) -> tuple[Tensor, dict]:
        return pool_loss(self.model, x, pool, beta, steps)


def batch_loss(net: nn.Module, x: Tensor, beta: float, pool: StatePool | None = None,
               steps: int | None = None) -> tuple[Tensor, dict]:
    """The forward pass of one update (chapter 4): minus the mean beta-ELBO of the batch x (B, C, H, W)
    and its terms; with a pool, ``net`` is a `PoolTraining` and the batch a pool-training batch of
    ``steps`` NCA steps (chapter 8)."""
    if pool is None:
        return net(x, terms=True, beta=beta)
    return net(x, pool, steps, beta)


def descend(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor, grad_clip: float) -> float:
    """The rest of one update (chapter 4): the gradient of the loss, its norm clipped to ``grad_clip``,
    one optimizer step. Returns the norm before clipping; a NaN or infinite one skips the step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).item()
    if math.isfinite(grad_norm):
        optimizer.step()
    return grad_norm


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
    init_from: str | None = None        # start from this checkpoint's weights (fine-tuning; a new
                                        # optimizer and pool); ignored when resuming
    keep_best: bool = False             # also keep the weights of the best validation ELBO so far in
                                        # best.safetensors (early stopping: choose them after the run)


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


def mirror_half(x: Tensor, step: int, seed: int, rank: int = 0) -> Tensor:
    """Each image of the batch x (B, C, H, W) mirrored left-right with probability 1/2 (``config.hflip``).

    The coins are a pure function of (seed, step, rank), like `batch_indices`, so that a resumed run
    mirrors the same images as an uninterrupted one."""
    coins = torch.Generator().manual_seed((seed * 1_000_003 + step) * 1024 + rank)
    mirrored = (torch.rand(len(x), generator=coins) < 0.5).to(x.device)        # (B,)
    return torch.where(mirrored[:, None, None, None], x.flip(-1), x)


def _distributed(device: str) -> tuple[int, int, str, bool]:
    """(rank, world size, this rank's device, whether the process group was created here).

    Initialises the process group under torchrun; ``cuda`` becomes ``cuda:<LOCAL_RANK>``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device, False
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        created = True
    return dist.get_rank(), world, device, created


def _any_rank(flags: list[bool], world: int, device: str) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks, so that every rank takes the same branch."""
    if world == 1:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _rng_tensors(world: int, device: str) -> dict[str, Tensor]:
    """Every rank's random-number state for the checkpoint (a collective: all ranks must call it).

    Rank 0's CPU state is "rng.torch" (the single-process name); rank r > 0's is "rng.torch.rank<r>".
    """
    states = {"cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        states["cuda"] = torch.cuda.get_rng_state(device)
    gathered = [states]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in states.items()})
    out = {}
    for r, st in enumerate(gathered):
        suffix = "" if r == 0 else f".rank{r}"
        out["rng.torch" + suffix] = st["cpu"]
        if "cuda" in st:
            out["rng.cuda" + suffix] = st["cuda"]
    return out


def _as_float(x: Tensor, device: str) -> Tensor:
    return x.to(device=device, dtype=torch.float32)


@torch.no_grad()
def evaluate_elbo(model: VAE, images: Tensor, batch_size: int = 64) -> float:
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
        rows = self._rows_up_to(resume_step) if self.path.exists() and resume_step > 0 else []
        # wall time already spent before a resume, so that "seconds" counts the whole run
        self.seconds_before = float(rows[-1]["seconds"]) if rows and rows[-1]["seconds"] else 0.0

        def rewrite(tmp: str) -> None:    # atomically: a kill during the rewrite leaves the old file
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.FIELDS)
                w.writeheader()
                w.writerows(rows)
        atomic_write(self.path, rewrite)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def _rows_up_to(self, step: int) -> list[dict]:
        """The rows of updates <= step; a last line cut short by a kill is dropped."""
        rows = []
        with open(self.path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    if int(r["step"]) <= step and r.get("seconds") is not None:
                        float(r["seconds"] or 0.0)
                        rows.append(r)
                except (TypeError, ValueError):
                    continue
        return rows

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow({k: row.get(k, "") for k in self.FIELDS})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# fields that a resume may change: they steer the optimiser or the arithmetic's precision (bf16, chosen per
# machine), not the model or the data order
RESUMABLE_CHANGES = ("lr", "grad_clip", "n_updates", "bf16")


def _resume(path: Path, config: ModelConfig, model, optimizer, pool, rank: int = 0,
            device: str = "cpu", seed: int = 0) -> int:
    saved, tensors, meta = load_checkpoint(path)
    before, now = config_to_dict(saved), config_to_dict(config)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if set(changed) - set(RESUMABLE_CHANGES):
        raise CheckpointError(f"{path} was written for preset {saved.name!r} with another config "
                              f"({', '.join(changed)} differ); use a new run directory or the same preset "
                              f"({config.name!r}); only {', '.join(RESUMABLE_CHANGES)} may change on a resume")
    try:
        step = int(meta["step"])
        state = optimizer_state(tensors, meta)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has damaged training metadata ({type(e).__name__}: {e}); it cannot "
                              "be resumed") from None
    if state is None:
        raise CheckpointError(f"{path} holds weights only (no optimizer state): it cannot be resumed; "
                              "start a new run (TrainSettings.init_from starts from its weights)")
    model.load_state_dict(model_state(tensors))
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its optimizer state does not fit this model ({e})") from None
    for group in optimizer.param_groups:          # a changed lr applies from here on
        group["lr"] = config.lr
    if changed:
        log.info("resuming with %s changed", ", ".join(f"{k} {before.get(k)} -> {now.get(k)}" for k in changed))
    suffix = "" if rank == 0 else f".rank{rank}"
    if "rng.torch" + suffix in tensors:
        torch.set_rng_state(tensors["rng.torch" + suffix])
    else:  # resumed with more ranks than wrote the checkpoint: a fresh stream for this rank
        torch.manual_seed(seed + rank + 1_000_003 * step)
    if device.startswith("cuda") and "rng.cuda" + suffix in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda" + suffix], device)
    if pool is not None:
        pool.load(tensors)
    return step


def _init_weights(path: Path, model) -> None:
    """Copy the weights of the checkpoint ``path`` into ``model``: same architecture, any training settings."""
    saved, tensors, _ = load_checkpoint(path)
    state = model_state(tensors)
    mine = model.state_dict()
    if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
        raise CheckpointError(f"{path} holds a model of another architecture (preset {saved.name!r}); "
                              f"init_from needs the same layers and sizes as {model.config.name!r}")
    model.load_state_dict(state)


def train(config: ModelConfig, images: Tensor, settings: TrainSettings | None = None,
          val_images: Tensor | None = None) -> tuple[VAE, list[dict]]:
    """Train ``config`` on ``images`` (N, C, H, W); returns the model and the list of logged rows.

    A fixed-seed random ``settings.eval_images`` of ``val_images`` are the validation subset (never the
    first ones: the binarized MNIST test split is sorted by label). Raises `TrainingDiverged` if the loss or
    the gradient norm becomes NaN or infinite; the checkpoint on disk is then the last good one.
    """
    s = settings or TrainSettings()
    check_device(s.device)
    rank, world, device, created_group = _distributed(s.device)
    try:
        return _train(config, images, s, val_images, rank, world, device)
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


class RunDirLock:
    """An exclusive lock on a run folder while one training process writes into it (POSIX flock; a
    no-op where fcntl does not exist). A second run into the same folder stops with a clear error
    instead of interleaving metrics.csv and checkpoints. Released when the process ends, even by kill -9."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.file = None

    def __enter__(self) -> "RunDirLock":
        try:
            import fcntl
        except ImportError:             # Windows: no lock
            return self
        self.file = open(self.path, "a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            raise CheckpointError(f"another training run is writing into {self.path.parent}; wait for it "
                                  "to finish, or choose another run folder") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()           # closing releases the lock


def _train(config: ModelConfig, images: Tensor, s: TrainSettings, val_images: Tensor | None,
           rank: int, world: int, device: str):
    run_dir = Path(s.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        with RunDirLock(run_dir):
            return _train_locked(config, images, s, val_images, rank, world, device, run_dir)
    return _train_locked(config, images, s, val_images, rank, world, device, run_dir)


def _start(config: ModelConfig, s: TrainSettings, rank: int, world: int, device: str, run_dir: Path):
    """The model, its optimizer, the pool (non-doubling models) and the first update: fresh, resumed from
    the run's checkpoint, or from another run's weights; and what the training step calls (DDP-wrapped).
    Rank 0 also records the run's config.json."""
    torch.manual_seed(s.seed + rank)
    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    pool = StatePool(config.pool_size) if isinstance(config, NonDoublingConfig) else None
    step = 0
    if s.resume and (run_dir / CHECKPOINT).exists():
        step = _resume(run_dir / CHECKPOINT, config, model, optimizer, pool, rank, device, s.seed)
        log.info("resumed %s from update %d", run_dir / CHECKPOINT, step)
    elif s.init_from:
        _init_weights(Path(s.init_from), model)
        log.info("starting from the weights of %s", s.init_from)
    if rank == 0:
        atomic_write(run_dir / "config.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(config_to_dict(config), indent=2)))
    net = PoolTraining(model) if pool is not None else model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    return model, optimizer, pool, step, net


def _validation_subset(val_images: Tensor | None, n: int) -> Tensor | None:  # (n, C, H, W)
    """A fixed random subset (never the first images: the MNIST test set is sorted by label)."""
    if val_images is None:
        return None
    order = torch.randperm(len(val_images), generator=torch.Generator().manual_seed(0))
    return val_images[order[:n]]


def _best_so_far(run_dir: Path) -> float:
    """The validation ELBO of the run's best.safetensors (-inf if it has none): a resumed run keeps it."""
    if not (run_dir / BEST).exists():
        return -math.inf
    return float(json.loads(read_metadata(run_dir / BEST)["val_elbo"]))


def _checked_loss(net, x: Tensor, beta: float, pool, steps, step: int):
    """batch_loss, and what went wrong if its loss or the model's outputs are not finite (else None)."""
    try:
        loss, stats = batch_loss(net, x, beta, pool, steps)
    except ValueError as e:
        if not _non_finite_error(e):
            raise
        return None, None, f"the model's outputs became NaN or infinite at update {step + 1}"
    problem = None if math.isfinite(loss.item()) else f"the loss became {loss.item()} at update {step + 1}"
    return loss, stats, problem


def _save(run_dir: Path, model, optimizer, pool, step: int, rank: int, world: int, device: str,
          good: bool) -> None:
    """Write the run's checkpoint (weights, optimizer, every rank's random state, the pool) atomically;
    a run whose last validation went NaN keeps its last good checkpoint instead."""
    extra = _rng_tensors(world, device)          # collective: every rank takes part
    if pool is not None:
        extra.update(pool.tensors())
    if rank == 0 and good:
        save_checkpoint(run_dir / CHECKPOINT, model, model.config, step, optimizer, extra_tensors=extra)


def _train_locked(config: ModelConfig, images: Tensor, s: TrainSettings, val_images: Tensor | None,
                  rank: int, world: int, device: str, run_dir: Path):
    model, optimizer, pool, step, net = _start(config, s, rank, world, device, run_dir)
    metrics = MetricsLog(run_dir, step) if rank == 0 else None
    val = _validation_subset(val_images, s.eval_images)
    best = _best_so_far(run_dir) if step > 0 else -math.inf       # a fresh run forgets an older best
    n_updates = s.n_updates or config.n_updates
    history, start = [], time.time()
    seconds_before = metrics.seconds_before if metrics is not None else 0.0
    from tqdm.auto import tqdm
    bar = tqdm(total=n_updates, initial=step, disable=not s.progress or rank > 0, desc=config.name)
    try:
        failed: str | None = None   # rank 0: the validation of the last update went NaN
        while step < n_updates:
            idx = batch_indices(step, len(images), config.batch_size, s.seed, rank, world)
            x = _as_float(images[idx], device)
            if config.hflip:
                x = mirror_half(x, step, s.seed, rank)
            steps = model.decoder.draw_steps() if pool is not None else None
            loss, stats, problem = _checked_loss(net, x, config.beta_at(step), pool, steps, step)
            problem = failed or problem                       # the last validation's NaN comes first
            out_of_time = s.max_minutes is not None and time.time() - start > 60 * s.max_minutes
            # every rank takes the same decisions (a lone rank that stops would hang the others)
            diverged, out_of_time = _any_rank([problem is not None, out_of_time], world, device)
            if diverged:
                raise _diverged(problem or f"training diverged on another rank at update {step + 1}",
                                run_dir, config)
            grad_norm = descend(model, optimizer, loss, config.grad_clip)
            if not math.isfinite(grad_norm):  # the same on every rank: DDP averaged the gradients
                raise _diverged(f"the gradient norm became {grad_norm} at update {step + 1} "
                                f"(loss {loss.item():.4g})", run_dir, config)
            step += 1
            row = {"step": step, "loss": loss.item(), "reconstruction": stats["reconstruction"],
                   "kl": stats["kl"], "seconds": round(seconds_before + time.time() - start, 2)}
            bar.set_postfix(loss=f"{loss.item():.2f}", refresh=False)
            bar.update(1)
            if rank == 0:
                if val is not None and (step % s.eval_every == 0 or step == n_updates):
                    failed = _validate(model, val, run_dir, step, row)
                    if s.keep_best and failed is None and row["val_elbo"] > best:
                        best = row["val_elbo"]
                        save_checkpoint(run_dir / BEST, model, model.config, step,
                                        extra_meta={"val_elbo": best})
                metrics.write(row)
            if step % s.checkpoint_every == 0 or step == n_updates or out_of_time:
                _save(run_dir, model, optimizer, pool, step, rank, world, device, good=failed is None)
            history.append(row)
            if out_of_time:
                log.info("stopping after %.1f minutes at update %d (resume to continue)", s.max_minutes, step)
                break
        if failed is not None:   # the last update's validation (other ranks have finished)
            raise _diverged(failed, run_dir, config)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    return model, history


def _non_finite_error(e: ValueError) -> bool:
    """Whether torch.distributions rejected NaN or infinite parameters (a diverged model)."""
    return "found invalid values" in str(e) or "NaN or infinite" in str(e)


def _validate(model, val: Tensor, run_dir: Path, step: int, row: dict) -> str | None:
    """Validation ELBO into ``row`` and image grids; a description of the problem if it is NaN.

    It draws from its own seeded random stream (the training stream is saved and restored around it), so
    a run that validates at other updates, e.g. one stopped early and resumed, trains exactly the same."""
    on_gpu = model.device.type == "cuda"
    with torch.random.fork_rng(devices=[model.device] if on_gpu else []):
        torch.manual_seed(step)
        return _validate_unseeded(model, val, run_dir, step, row)


def _validate_unseeded(model, val: Tensor, run_dir: Path, step: int, row: dict) -> str | None:
    try:
        row["val_elbo"] = evaluate_elbo(model, val)
        if not math.isfinite(row["val_elbo"]):
            return f"the validation ELBO became {row['val_elbo']} after update {step}"
        _save_pictures(model, val, run_dir, step)
    except ValueError as e:
        if not _non_finite_error(e):
            raise
        return f"the model's outputs became NaN or infinite after update {step}"
    return None


def _diverged(problem: str, run_dir: Path, config: ModelConfig) -> TrainingDiverged:
    first_line = problem.splitlines()[0]
    return TrainingDiverged(
        f"{first_line}; stopped without saving. The last good checkpoint (if any) is kept in "
        f"{run_dir / CHECKPOINT}. Try a lower learning rate (now {config.lr}) or a smaller gradient-norm "
        f"clip (now {config.grad_clip}).")
