"""What a VNCA costs, counted from its architecture: multiply-adds (MACs) of u, of the decoder and the encoder.

Explained in chapters 2 (cell updates, book/02_doubling.md) and 10 (MACs, book/10_scaling.md). A MAC is two
floating-point operations; tests/test_cost.py checks these counts against PyTorch's own FLOP counter.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .decoders import StepInfo

if TYPE_CHECKING:
    from .vae import VAE


def cell_updates(schedule: list[StepInfo]) -> int:
    """Applications of u to one cell over a whole decoding: the grid's area at every NCA step."""
    return sum(info.size ** 2 for info in schedule if info.kind == "nca")


def update_macs_per_cell(update_net: nn.Module) -> int:
    """Multiply-adds of u for one cell: every weight of its convolutions, once (biases ignored)."""
    return sum(m.weight.numel() for m in update_net.modules() if isinstance(m, nn.Conv2d))


def layer_macs(module: nn.Module, x: Tensor) -> int:
    """Multiply-adds of the convolutions and linear layers of ``module`` on input ``x``, counted by running it."""
    total = 0

    def count(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.ConvTranspose2d):    # every weight meets every input position
            total += layer.weight.numel() * inputs[0].shape[-2] * inputs[0].shape[-1]
        elif isinstance(layer, nn.Conv2d):           # every weight meets every output position
            total += layer.weight.numel() * output.shape[-2] * output.shape[-1]
        elif isinstance(layer, nn.Linear):
            total += layer.weight.numel()

    hooks = [m.register_forward_hook(count) for m in module.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def forward_cost(model: VAE) -> dict:
    """MACs of one image through the encoder and the decoder (non-doubling: T = max_steps); for a VNCA also
    u's MACs per cell update and the number of cell updates."""
    c = model.config
    encoder = layer_macs(model.encoder, torch.zeros(1, c.image_channels, c.image_size, c.image_size))
    nca = getattr(model.decoder, "nca", None)
    if nca is None:                                  # the convolutional baseline: count by running it
        return {"per_cell": None, "cells": None, "encoder": encoder,
                "decoder": layer_macs(model.decoder, torch.zeros(1, c.z_dim))}
    per_cell, cells = update_macs_per_cell(nca.update_net), cell_updates(model.decoder.schedule())
    return {"per_cell": per_cell, "cells": cells, "decoder": per_cell * cells, "encoder": encoder}
