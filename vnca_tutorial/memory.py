"""Rough memory estimates, so that `vnca` refuses a size that cannot fit before it allocates anything.

Each estimate counts the large float32 tensors of a task: parameters (and Adam's two moments and the
gradients when training), the cell states and update-network activations kept for the backward pass, the
states a growth keeps. They are lower bounds to within a small factor, not exact figures: enough to tell
"a few GB" from "160 GB". Chapter 10 (book/10_scaling.md) counts the compute the same way.
"""
from __future__ import annotations

import os

import torch

from .config import DoublingConfig, ModelConfig, NonDoublingConfig

FLOAT = 4           # bytes of a float32
GiB = 2 ** 30


def available_bytes() -> int | None:
    """Memory this machine has free now (None where the OS does not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
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
    """Floats one NCA step keeps per cell for the backward pass: the state and the hidden activations."""
    return config.z_dim + config.hidden * (2 + 2 * getattr(config, "n_blocks", 0))


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
    """The importance-weighted bound of a batch: k noise vectors per image, and 64 decodings at a time."""
    cells = max(grid_cells(config) or [config.image_size ** 2])
    return batch_size * k * (config.z_dim + 1) * FLOAT + 64 * cells * _floats_per_cell_step(config) * FLOAT


def too_large(need: int, what: str, hint: str, available: int | None = None) -> str | None:
    """A message if ``need`` bytes exceed the memory free now (None if it fits, or nothing is known)."""
    available = available_bytes() if available is None else available
    if available is None or need <= available:
        return None
    return (f"{what} needs about {need / GiB:,.1f} GiB of memory, and this machine has "
            f"{available / GiB:,.1f} GiB free; {hint}")
