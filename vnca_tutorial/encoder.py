"""q(z|x): the paper's convolutional encoder (appendix A), shared by the VNCA and the conv baseline.

5x5 conv with 32 channels, then four stride-2 5x5 convs that double the channels, ELU after each,
and a linear layer to 2|z| numbers: the mean and log-variance of a diagonal Gaussian.
Explained in chapter 4 (book/04_vae.md).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def encoder_output_size(image_size: int, n_down: int = 4) -> int:
    """Side length after ``n_down`` stride-2 5x5 convs with padding 2 (32 -> 2, 28 -> 2, 64 -> 4)."""
    for _ in range(n_down):
        image_size = (image_size - 1) // 2 + 1
    return image_size


class Encoder(nn.Module):
    """x (B, C, H, W) -> (mean, log_var), each (B, |z|)."""

    def __init__(self, image_channels: int, image_size: int, z_dim: int, channels: int = 32,
                 n_down: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(image_channels, channels, 5, padding=2), nn.ELU()]
        for i in range(n_down):
            c_in, c_out = channels * 2 ** i, channels * 2 ** (i + 1)
            layers += [nn.Conv2d(c_in, c_out, 5, stride=2, padding=2), nn.ELU()]
        self.convs = nn.Sequential(*layers)
        side = encoder_output_size(image_size, n_down)
        self.final_channels, self.final_size = channels * 2 ** n_down, side
        self.linear = nn.Linear(self.final_channels * side * side, 2 * z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.convs(x).flatten(1)             # (B, 16 * channels * side^2)
        mean, log_var = self.linear(h).chunk(2, dim=1)  # (B, Z), (B, Z)
        return mean, log_var
