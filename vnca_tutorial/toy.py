"""A toy data set small enough to train a VNCA on in seconds: four binary shapes at nine positions.

Chapter 11 (book/11_interactive.md) trains a small non-doubling VNCA on it to watch pool training produce
repair; the widget tests use it the same way.
"""
from __future__ import annotations

import torch


def shapes(size: int = 12) -> torch.Tensor:  # (36, 1, size, size) in {0, 1}
    """A square, a plus, a disc and a diamond, each centred at nine positions around the middle."""
    if size < 8:
        raise ValueError(f"shapes need size >= 8 to fit at nine positions, got {size}")
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    s, images = size // 4, []
    for cy in range(size // 2 - 1, size // 2 + 2):
        for cx in range(size // 2 - 1, size // 2 + 2):
            dy, dx = (yy - cy).abs(), (xx - cx).abs()                # (size, size) distances to the centre
            images += [(dy <= s) & (dx <= s),                                            # square
                       ((dy <= 1) & (dx <= s + 1)) | ((dx <= 1) & (dy <= s + 1)),       # plus
                       dy ** 2 + dx ** 2 <= (s + 1) ** 2,                                # disc
                       dy + dx <= s + 1]                                                 # diamond
    return torch.stack(images).float()[:, None]
