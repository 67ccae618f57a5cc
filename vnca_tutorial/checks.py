"""Input checks with errors that say what was wrong and what was expected."""
from __future__ import annotations

import torch
from torch import Tensor


def check_images(x: Tensor, channels: int, size: int, likelihood: str) -> None:
    """Raise ValueError unless x is a (B, channels, size, size) batch of valid, finite pixel values."""
    if not isinstance(x, Tensor):
        raise ValueError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    expected = f"(B, {channels}, {size}, {size})"
    if x.dim() != 4:
        raise ValueError(f"expected images of shape {expected}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"expected {channels} image channel(s), got {x.shape[1]}: "
                         f"images must have shape {expected}")
    if tuple(x.shape[-2:]) != (size, size):
        hint = "; pad MNIST 28x28 -> 32x32 with 2 zero pixels per side" if x.shape[-1] == 28 else ""
        raise ValueError(f"this model makes {size}x{size} images, got {x.shape[-2]}x{x.shape[-1]} "
                         f"(shape {expected} expected{hint})")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    if likelihood == "bernoulli" and not ((x == 0) | (x == 1)).all():
        raise ValueError("the Bernoulli likelihood needs binary images with values in {0, 1}; "
                         "binarize them first (e.g. (x > 0.5).float())")
    if likelihood == "dlogistic" and ((x < 0).any() or (x > 255).any() or (x != x.round()).any()):
        raise ValueError("the discretized logistic likelihood needs 8-bit images: integer values "
                         "in [0, 255] (uint8 or float)")
