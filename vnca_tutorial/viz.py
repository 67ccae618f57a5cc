"""Pictures: image grids, growth frames and GIFs.

Used by the book (chapters 6-11), the CLI and training logs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def to_display(images: Tensor) -> Tensor:
    """Images (B, C, H, W) as float in [0, 1]: binary/probabilities as they are, 8-bit RGB / 255."""
    images = images.detach().float().cpu()
    return (images / 255.0).clamp(0, 1) if images.max() > 1.0 else images.clamp(0, 1)


def image_grid(images: Tensor, nrow: int = 8, padding: int = 2, scale: int = 1) -> np.ndarray:
    """A uint8 (H', W', 3) grid of images (B, C, H, W), each upscaled ``scale`` times."""
    x = to_display(images)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if scale > 1:
        x = x.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    b, c, h, w = x.shape
    ncol = min(nrow, b)
    nrows = (b + ncol - 1) // ncol
    grid = torch.ones(c, nrows * (h + padding) + padding, ncol * (w + padding) + padding)
    for i in range(b):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def show_grid(ax: Axes, images: Tensor, ncol: int, column_labels: list[str] | None = None,
              row_labels: list[str] | None = None, padding: int = 2) -> None:
    """Draw images (N, C, H, W) on the matplotlib axes ``ax`` as a grid of ``ncol`` columns, optionally
    labelling the columns and rows (the book's figures of chapters 6-9)."""
    ax.imshow(image_grid(images, nrow=ncol, padding=padding))
    side = images.shape[-1]
    centres = [padding + i * (side + padding) + side / 2 for i in range(max(ncol, len(images) // ncol))]
    ax.set_xticks(centres[:ncol] if column_labels else [])
    ax.set_yticks(centres[:len(row_labels)] if row_labels else [])
    if column_labels:
        ax.set_xticklabels(column_labels, fontsize=8)
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int = 8, scale: int = 2) -> Path:
    """Write a PNG grid of images and return its path."""
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, nrow=nrow, scale=scale)).save(path)
    return path


def resize_nearest(images: Tensor, size: int) -> Tensor:
    """Upscale a grid of any side length to ``size`` by copying cells (how a growing grid is drawn)."""
    factor = size // images.shape[-1]
    return images.repeat_interleave(factor, -2).repeat_interleave(factor, -1) if factor > 1 else images


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, ms_per_frame: int = 80,
             last_frame_ms: int = 1000) -> Path:
    """Write uint8 frames as a looping GIF (imageio's ``duration`` is in milliseconds)."""
    import imageio.v3 as iio
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [ms_per_frame] * (len(frames) - 1) + [last_frame_ms]
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=durations, loop=0)
    return path


def plot_scaling(result: dict) -> Figure:
    """Plot a ``benchmarks/scaling.py`` result: CPU time, peak memory and FLOPs of one update vs image size.

    Explained in chapter 10 (book/10_scaling.md). ``result`` is the JSON that the script writes: per series
    ("doubling", "nondoubling", "+ckpt" for activation checkpointing) one point per image size. Returns the
    matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    styles = {"doubling": ("C0", "o"), "nondoubling": ("C1", "s")}
    for series, points in result["series"].items():
        decoder, ckpt = series.split("+")[0], series.endswith("+ckpt")
        color, marker = styles[decoder]
        label = "doubling" if decoder == "doubling" else f"non-doubling (T={result['nd_steps']})"
        sizes = [p["image_size"] for p in points]
        kw = dict(color=color, marker=marker, linestyle="--" if ckpt else "-",
                  label=label + (", checkpointing" if ckpt else ""))
        for ax, key in zip(axes, ("cpu_s", "peak_tensor_mib", "gflop")):
            ax.plot(sizes, [p[key] for p in points], **kw)
    titles = ["CPU seconds per training update", "peak tensor memory of an update (MiB)",
              "GFLOP per update (counted)"]
    for ax, title in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(result["sizes"], [f"{s}\nK={(s // 2).bit_length() - 1}" for s in result["sizes"]])
        ax.set_xlabel("image size (doublings K)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    m = result["model"]
    fig.suptitle(f"One training update vs image size (z_dim {m['z_dim']}, hidden {m['hidden']}, batch "
                 f"{m['batch_size']}, {result['threads']} CPU thread(s); measured {result['started'][:10]})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_learning_curves(cards: dict[str, dict]) -> Figure:
    """The validation ELBO that each model card records during training, against updates and against hours,
    with the paper's test bound of the same family as a dashed line.

    Explained in chapter 10 (book/10_scaling.md). ``cards`` maps a name to its card (`pretrained.card`);
    cards without a ``training_curve`` ([update, hours, ELBO] rows) are left out. Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for i, (name, card) in enumerate(c for c in cards.items() if c[1].get("training_curve")):
        curve = np.asarray(card["training_curve"], dtype=float)                  # (n, 3)
        paper = (card.get("paper") or {}).get("nats")
        for ax, column in zip(axes, (0, 1)):
            ax.plot(curve[:, column], curve[:, 2], marker="o", ms=3, color=f"C{i}", label=name)
            if paper is not None:
                ax.axhline(paper, color=f"C{i}", ls="--", lw=1, label=f"paper ({paper} nats)")
    for ax, label in zip(axes, ("training update", "hours of training (wall time)")):
        ax.set_xlabel(label)
        ax.set_ylabel("ELBO on held-out digits (nats per digit)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig
