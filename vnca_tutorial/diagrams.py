"""Block diagrams of the VNCA, drawn with matplotlib from the model's own config (chapters 2 and 8).

Each diagram is a row of labelled boxes joined by arrows; the labels are computed from a config, so a
diagram of another preset shows that preset's sizes. The paper's Fig. 2 (doubling VNCA and its update
network) and Fig. 12 (non-doubling VNCA) are the models drawn here.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .config import DoublingConfig, NonDoublingConfig

STEP = r"$s_{t+1} = s_t + u(s_t)$"   # eq. (1), with s for cell states and x for images
COLOURS = {"latent": "#f4d6a0", "cells": "#b9d7ea", "op": "#e6e6e6", "out": "#c8e6c0"}


@dataclass(frozen=True)
class Box:
    label: str              # text inside the box (may hold line breaks)
    kind: str = "op"        # a key of COLOURS: latent, cells, op (an operation) or out (the likelihood)
    note: str = ""          # smaller text under the box
    loop: str = ""          # if set: an arrow from this box back to itself, labelled with this text
    back_to: int = -1       # if >= 0: an arrow under the row from this box back to box ``back_to``
    back_label: str = ""    # the text on that arrow


def draw_row(boxes: list[Box], title: str = "", width: float = 1.6, gap: float = 0.55) -> Figure:
    """Draw ``boxes`` left to right, joined by arrows; returns the figure."""
    n = len(boxes)
    below = any(b.back_to >= 0 for b in boxes)
    fig, ax = plt.subplots(figsize=(n * (width + gap) * 0.95, 2.9 if below else 2.2))
    for i, b in enumerate(boxes):
        x = i * (width + gap)
        ax.add_patch(FancyBboxPatch((x, 0), width, 1, boxstyle="round,pad=0.04,rounding_size=0.12",
                                    facecolor=COLOURS[b.kind], edgecolor="#444444", linewidth=1))
        ax.text(x + width / 2, 0.5, b.label, ha="center", va="center", fontsize=8.5)
        if b.note:
            ax.text(x + width / 2, -0.18, b.note, ha="center", va="top", fontsize=7.5, color="#444444")
        if b.loop:
            ax.add_patch(FancyArrowPatch((x + width * 0.75, 1.04), (x + width * 0.25, 1.04),
                                         connectionstyle="arc3,rad=0.9", arrowstyle="-|>",
                                         mutation_scale=10, color="#aa3333"))
            ax.text(x + width / 2, 1.5, b.loop, ha="center", va="bottom", fontsize=7.5, color="#aa3333")
        if b.back_to >= 0:
            x_to = b.back_to * (width + gap) + width / 2
            ax.add_patch(FancyArrowPatch((x + width / 2, -0.55), (x_to, -0.55), connectionstyle="arc3,rad=-0.2",
                                         arrowstyle="-|>", mutation_scale=10, color="#3355aa"))
            ax.text((x + width / 2 + x_to) / 2, -1.12, b.back_label, ha="center", va="top", fontsize=7.5,
                    color="#3355aa")
        if i < n - 1:
            ax.add_patch(FancyArrowPatch((x + width + 0.04, 0.5), (x + width + gap - 0.04, 0.5),
                                         arrowstyle="-|>", mutation_scale=12, color="#222222"))
    ax.set_xlim(-0.1, n * (width + gap) - gap + 0.1)
    ax.set_ylim(-1.5 if below else -0.75, 1.95)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def doubling_boxes(c: DoublingConfig) -> list[Box]:
    """The generative process of the doubling VNCA (paper Fig. 2, left): z -> seed -> growth -> p(x|z)."""
    seed = c.image_size >> c.n_doublings
    return [Box("z ~ N(0, I)", "latent", f"|z| = {c.z_dim}"),
            Box(f"seed\n{seed}x{seed} cells", "cells", "z copied into every cell"),
            Box(f"{c.steps_per_stage} NCA steps,\nthen double\nevery cell", "op", STEP,
                loop=f"{c.n_doublings} times: {seed}x{seed} -> {c.image_size}x{c.image_size}"),
            Box(f"{c.steps_per_stage} NCA steps", "op", f"{c.steps_per_stage * (c.n_doublings + 1)} steps in all"),
            Box(f"{c.image_size}x{c.image_size} cells", "cells", f"{c.z_dim} channels each"),
            Box("p(x | z)", "out", f"{c.likelihood}, first channels")]


def update_boxes(c: DoublingConfig | NonDoublingConfig) -> list[Box]:
    """The update network u (paper Fig. 2, right): 3x3 perception, per-cell layers, a zero-initialised
    last layer, and the residual update of the state."""
    middle = ([Box(f"{c.n_blocks} residual\nblock{'s' if c.n_blocks > 1 else ''}", "op",
                   "1x1 conv, ELU, 1x1 conv")] if c.n_blocks else [Box("ELU", "op", "per cell")])
    return [Box("cell states", "cells", f"{c.z_dim} x H x W"),
            Box("3x3 conv", "op", f"{c.z_dim} -> {c.hidden}"),
            *middle,
            Box("1x1 conv", "op", f"{c.hidden} -> {c.z_dim}, starts at 0"),
            Box("add to the\ncell states", "cells", STEP)]


def nondoubling_boxes(c: NonDoublingConfig) -> list[Box]:
    """The non-doubling VNCA (paper Fig. 12): z fills the whole grid, T steps, p(x|z); pool training."""
    fire = "every cell" if c.p_update >= 1 else f"each cell with p = {c.p_update:g}"
    return [Box("z ~ q(z | x)\nor N(0, I)", "latent", f"|z| = {c.z_dim}"),
            Box(f"{c.image_size}x{c.image_size} cells", "cells", "z copied into every cell"),
            Box("NCA step", "op", f"updates {fire}", loop=f"T ~ U{{{c.min_steps}..{c.max_steps}}} times"),
            Box(f"{c.image_size}x{c.image_size} cells", "cells", "final states", back_to=1,
                back_label=f"training: the pool ({c.pool_size} states) returns old final states as starting "
                           f"grids, {c.damage_fraction:.0%} of them damaged"),
            Box("p(x | z)", "out", f"{c.likelihood}, first channels")]
