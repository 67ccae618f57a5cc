"""Input checks with errors that say what was wrong and what was expected.

Not a chapter's subject: the model, training, checkpoints and the CLI call them so that bad input fails
early with a message (README, "Using the package").
"""
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
    if x.shape[0] == 0:
        raise ValueError(f"an empty batch: expected at least one image of shape {expected[4:-1]}")
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
    if likelihood == "dlogistic" and x.is_floating_point() and x.max() <= 1 and x.min() < x.max():
        raise ValueError("these float images hold only the values 0 and 1: they look scaled to [0, 1], but "
                         "the discretized logistic likelihood reads 8-bit values 0..255; multiply by 255 "
                         "(then round), or pass them as uint8 if they really are 8-bit values")


def check_latents(z: Tensor, z_dim: int) -> None:
    """Raise ValueError unless z is a non-empty (B, z_dim) batch of finite latent vectors."""
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise ValueError(f"expected z as a float tensor of shape (B, {z_dim}), got "
                         f"{type(z).__name__ if not isinstance(z, Tensor) else z.dtype}")
    if z.dim() != 2 or z.shape[1] != z_dim or z.shape[0] == 0:
        hint = f"; add a batch dimension: z[None]" if z.dim() == 1 and z.shape[0] == z_dim else ""
        raise ValueError(f"expected z of shape (B, {z_dim}) with B >= 1, got {tuple(z.shape)}{hint}")
    if not torch.isfinite(z).all():
        raise ValueError("z contains NaN or infinite values")


def check_count(value: object, name: str) -> None:
    """Raise ValueError unless value is a positive integer (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_beta(beta: float) -> None:
    """The KL weight: a finite number >= 0."""
    if not (isinstance(beta, (int, float)) and beta == beta and 0 <= beta < float("inf")):
        raise ValueError(f"beta weights the KL term and must be a finite number >= 0, got {beta!r}")


def check_device(device: str | torch.device) -> torch.device:
    """The device, if it names one and this machine has it; else a ValueError that says what to use."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{device!r} is not a device: use 'cpu', 'cuda' (or 'cuda:N') or 'mps'") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: no CUDA GPU is available here "
                         "(torch.cuda.is_available() is False); use 'cpu'")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if d.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r}: Apple's MPS backend is not available here; use 'cpu'")
    if d.type not in ("cpu", "cuda", "mps", "meta"):
        raise ValueError(f"device {str(device)!r}: the package runs on 'cpu', 'cuda' or 'mps'")
    return d
