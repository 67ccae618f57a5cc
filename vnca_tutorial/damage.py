"""Damage operators on cell states (paper Fig. 9 and Fig. 11), usable after any step.

Each takes states (B, C, H, W) and returns a damaged copy; `as_hook` turns one into a decoder hook that
fires at a chosen step. Explained in chapter 7 (book/07_damage.md) and chapter 8 (book/08_pool_damage.md).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def right_half_mask(height: int, width: int,
                    device: torch.device | str | None = None) -> Tensor:  # (H, W) bool, True = damaged
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[:, width // 2:] = True
    return mask


def square_mask(height: int, width: int, top: int, left: int, size: int,
                device: torch.device | str | None = None) -> Tensor:
    """An (H, W) bool mask with a size x size square at (top, left) set (clipped to the grid)."""
    if size < 1 or not (0 <= top < height and 0 <= left < width):
        raise ValueError(f"square of size {size} at (top={top}, left={left}) does not lie in a "
                         f"{height}x{width} grid; need size >= 1 and a corner inside the grid")
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:top + size, left:left + size] = True
    return mask


def apply_mask(state: Tensor, mask: Tensor) -> Tensor:
    """Zero every channel of the cells where ``mask`` (H, W) or (B, H, W) is True."""
    if mask.shape[-2:] != state.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the grid "
                         f"{tuple(state.shape[-2:])}")
    keep = (~mask).to(state.dtype)
    return state * (keep[:, None] if keep.dim() == 3 else keep)


def damage_right_half(state: Tensor) -> Tensor:  # (B, C, H, W) -> same
    """Zero the right half of all cells (Fig. 11)."""
    return apply_mask(state, right_half_mask(*state.shape[-2:], device=state.device))


def random_square_masks(batch: int, height: int, width: int, generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> Tensor:  # (B, H, W) bool
    """For each example, a random H/2 x W/2 square (the damage of pool training, appendix A.3)."""
    sh, sw = height // 2, width // 2
    tops = torch.randint(0, height - sh + 1, (batch,), generator=generator)
    lefts = torch.randint(0, width - sw + 1, (batch,), generator=generator)
    rows, cols = torch.arange(height), torch.arange(width)
    in_rows = (rows[None] >= tops[:, None]) & (rows[None] < tops[:, None] + sh)   # (B, H)
    in_cols = (cols[None] >= lefts[:, None]) & (cols[None] < lefts[:, None] + sw)  # (B, W)
    return (in_rows[:, :, None] & in_cols[:, None, :]).to(device)


def damage_random_square(state: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Zero a random H/2 x W/2 square of cells in each example."""
    b, _, h, w = state.shape
    return apply_mask(state, random_square_masks(b, h, w, generator, device=state.device))


def as_hook(damage: Callable[[Tensor], Tensor], at_step: int) -> Callable[..., Tensor]:
    """A decoder ``on_step`` hook that applies ``damage`` to the state with trajectory index ``at_step``."""
    def hook(index: int, info, state: Tensor) -> Tensor:
        return damage(state) if index == at_step else state
    return hook
