"""Pictures of trajectories: PNG bytes, step captions, and a self-contained HTML animation player.

The player (player.html, a package data file: an <img>, buttons, a slider and 30 lines of JavaScript)
shows frames embedded as base64 PNGs, so the static HTML book plays growths and damage without a kernel
and fetches nothing. Explained in chapter 11 (book/11_interactive.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import base64
import html
import io
import json
import string
import uuid
from importlib import resources
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .decoders import StepInfo
from .trajectories import (_check_trajectory, _image_batch, brush_mask, damage_mask, damage_trajectories,
                           default_damage_step, default_steps, encode, grow_frames, prior_z, schedule,
                           to_unit)
from .viz import image_grid

if TYPE_CHECKING:
    from .model import VNCA

DISPLAY_PIXELS = 160  # each image is drawn about this wide (nearest-neighbour upscaling)
_PLAYER = string.Template(resources.files("vnca_tutorial").joinpath("player.html").read_text())


def _scale(size: int) -> int:
    return max(1, DISPLAY_PIXELS // size)


def _png_array(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) array (fast compression: these are made by the dozen)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def frame_png(images: Tensor, likelihood: str, scale: int, nrow: int | None = None) -> bytes:
    """PNG bytes of a row (or grid) of images (B, C, H, W), each upscaled ``scale`` times."""
    return _png_array(image_grid(to_unit(images, likelihood), nrow=nrow or len(images), scale=scale))


def describe_state(info: StepInfo, n_states: int, doubling: bool) -> str:
    """'step 20 of 44 · 8×8 cells · NCA step (after 2 doublings)': what produced a state, for captions."""
    if info.kind == "seed":
        what = "seed: every cell holds z"
    elif info.kind == "double":
        what = f"doubling {info.stage}: every cell copied into four"
    else:
        what = f"NCA step (after {info.stage} doubling{'s' if info.stage != 1 else ''})" if doubling \
            else "NCA step"
    return f"step {info.index} of {n_states - 1} · {info.size}×{info.size} cells · {what}"


def frames_to_html(frames: Sequence[np.ndarray], captions: Sequence[str], interval: int = 120) -> str:
    """A self-contained JavaScript player for uint8 (H, W, 3) frames with a caption each: the frames are
    embedded as base64 PNGs and the player is inline, so it plays in any browser without a kernel and
    fetches nothing. It opens on the last frame; play starts from the first."""
    urls = ["data:image/png;base64," + base64.b64encode(_png_array(f)).decode("ascii") for f in frames]
    h, w = frames[0].shape[:2]
    return _PLAYER.substitute(
        id=uuid.uuid4().hex, first=urls[-1], width=w, height=h, caption=html.escape(captions[-1]),
        last=len(frames) - 1, frames=json.dumps(urls), captions=json.dumps(list(captions)),
        interval=int(interval))


def growth_animation_html(model: VNCA, n: int = 4, seed: int = 0, images: Tensor | None = None,
                          steps: int | None = None, interval: int = 120, scale: int = 3) -> str:
    """HTML of a no-kernel animation of n growths (z ~ p(z) with ``seed``, or the encodings of the first
    n of ``images``): the image mean of every state, upscaled to the final grid."""
    _check_trajectory(model)
    z = encode(model, _image_batch(images)[:n]) if images is not None else prior_z(model, n, seed)
    g = grow_frames(model, z, steps, sample_seed=None)
    lik = model.config.likelihood
    frames = [image_grid(to_unit(m, lik), nrow=len(z), scale=scale) for m in g.means]
    titles = [describe_state(info, len(g.infos), model.doubling) for info in g.infos]
    return frames_to_html(frames, titles, interval)


def damage_animation_html(model: VNCA, damage: str | Tensor = "right half", at_step: int | None = None,
                          n: int = 4, seed: int = 0, images: Tensor | None = None, steps: int | None = None,
                          interval: int = 120, scale: int = 3) -> str:
    """HTML of a no-kernel animation of n growths, undamaged (top row) and damaged at ``at_step`` (bottom
    row). ``damage``: "right half", "square" (the centred half-size square), or a brush mask (see
    `brush_mask`). Defaults: the paper's damage step and, for a non-doubling VNCA, 2 max_steps steps."""
    _check_trajectory(model)
    steps = default_steps(model) if steps is None else steps
    at_step = default_damage_step(model, steps) if at_step is None else at_step
    infos = schedule(model, steps)
    if not 0 <= at_step < len(infos):
        raise ValueError(f"damage step {at_step} is past the end of the trajectory (0 to {len(infos) - 1})")
    size = infos[at_step].size
    if isinstance(damage, str):
        mask = damage_mask(damage, size, size // 4, size // 4, max(1, size // 2))
    else:
        mask = brush_mask(damage, size)
    z = encode(model, _image_batch(images)[:n]) if images is not None else prior_z(model, n, seed)
    r = damage_trajectories(model, z, mask, at_step, steps=steps)
    lik = model.config.likelihood
    frames = [image_grid(to_unit(torch.cat([u, d]), lik), nrow=len(z), scale=scale)
              for u, d in zip(r.undamaged, r.damaged)]
    titles = [f"{describe_state(info, len(infos), model.doubling)}\ntop: undamaged, bottom: damaged at step "
              f"{at_step} · error {r.errors[info.index].mean().item():.3f}" for info in infos]
    return frames_to_html(frames, titles, interval)
