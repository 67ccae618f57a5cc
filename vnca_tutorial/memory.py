"""Rough memory estimates, so that `vnca` refuses a size that cannot fit before it allocates anything.

Each estimate counts the large float32 tensors of a task: parameters (and Adam's two moments and the
gradients when training), the cell states and update-network activations kept for the backward pass, the
states a growth keeps. They are lower bounds to within a small factor, not exact figures: enough to tell
"a few GB" from "160 GB". Chapter 10 (book/10_scaling.md) counts the compute the same way.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import DoublingConfig, ModelConfig, NonDoublingConfig

FLOAT = 4           # bytes of a float32
GiB = 2 ** 30


def available_bytes(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Memory a new task can have now, in bytes (None where the OS does not say).

    Linux: the kernel's ``MemAvailable`` (free memory plus the page cache it can drop), not ``MemFree``: after
    installing PyTorch or reading a dataset the page cache fills the RAM, and MemFree falls to a few hundred
    MB of a machine that has 20 GB to give. Inside a container with a cgroup (v2) limit, at most that limit
    less the memory its processes hold. Elsewhere (macOS) the free pages ``sysconf`` reports.
    """
    available = _meminfo_bytes(meminfo, "MemAvailable")
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_room(Path(cgroup))
    return available if limit is None else min(available, limit)


def _meminfo_bytes(meminfo: str, field: str) -> int | None:
    """One ``kB`` field of /proc/meminfo, in bytes (None if the file or the field is missing)."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key == field:
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room(cgroup: Path) -> int | None:
    """A cgroup v2 ``memory.max`` less the anonymous memory its processes hold (page cache is reclaimable);
    None without a limit."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit == "max":
            return None
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
        return max(int(limit) - int(stat.get("anon", 0)), 0)
    except (OSError, ValueError):
        return None


def n_parameters(config: ModelConfig) -> int:
    """The parameters of the model a config describes, counted without allocating them (meta device)."""
    from .model import build_model
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(config).parameters())


def grid_cells(config: ModelConfig, steps: int | None = None) -> list[int]:  # one entry per state
    """The number of cells of every state a decoding passes through, seed first (baseline: none)."""
    if isinstance(config, DoublingConfig):            # M steps per stage, a doubling between stages
        cells, size = [4], 2
        for stage in range(config.n_doublings + 1):
            cells += [size * size] * config.steps_per_stage
            if stage < config.n_doublings:
                size *= 2
                cells.append(size * size)
        return cells
    if isinstance(config, NonDoublingConfig):
        return [config.image_size ** 2] * (1 + (steps or config.max_steps))
    return []


def _floats_per_cell_step(config: ModelConfig) -> int:
    """Floats one NCA step keeps per cell for the backward pass: the state, and the hidden activations,
    2 per residual block and 1 for the output layer, with the package's CPU ELU (chapter 10, exercise 10.4;
    F.elu, used on a GPU and in bf16, keeps one more per ELU)."""
    return config.z_dim + config.hidden * (1 + 2 * getattr(config, "n_blocks", 0))


def training_bytes(config: ModelConfig) -> int:
    """One training update: weights, gradients and Adam's moments, plus every step's activations of a
    batch (the longest T for the non-doubling VNCA, whose pool is counted too)."""
    total = 4 * n_parameters(config) * FLOAT
    per_cell = config.z_dim if getattr(config, "checkpointing", False) else _floats_per_cell_step(config)
    total += config.batch_size * sum(grid_cells(config)) * per_cell * FLOAT
    if isinstance(config, NonDoublingConfig):
        total += config.pool_size * config.z_dim * config.image_size ** 2 * FLOAT
    return total


def growth_bytes(config: ModelConfig, n: int, steps: int | None = None) -> int:
    """Growing n images and keeping every state (`VNCA.grow`, the animations)."""
    return n * sum(grid_cells(config, steps)) * config.z_dim * FLOAT


def decode_bytes(config: ModelConfig, n: int) -> int:
    """Decoding n images without keeping the states (`sample`): one step's states and activations."""
    return n * max(grid_cells(config) or [config.image_size ** 2]) * _floats_per_cell_step(config) * FLOAT


def iwae_bytes(config: ModelConfig, k: int, batch_size: int) -> int:
    """The importance-weighted bound of a batch: k noise vectors per image, and at most 64 decodings at a
    time (the default chunk decodes 64 on a GPU, 8 on a CPU: an upper bound there)."""
    cells = max(grid_cells(config) or [config.image_size ** 2])
    return batch_size * k * (config.z_dim + 1) * FLOAT + 64 * cells * _floats_per_cell_step(config) * FLOAT


def too_large(need: int, what: str, hint: str, available: int | None = None) -> str | None:
    """A message if ``need`` bytes exceed the memory available now (None if it fits, or nothing is known)."""
    available = available_bytes() if available is None else available
    if available is None or need <= available:
        return None
    return (f"{what} needs about {need / GiB:,.1f} GiB of memory, and this machine has "
            f"{available / GiB:,.1f} GiB available; {hint}")
