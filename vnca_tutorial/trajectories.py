"""Growth and damage trajectories: the computation behind chapter 11's widgets and animations.

Every function here is plain PyTorch, runs without a browser, and is what chapter 11
(book/11_interactive.md) explains: `grow_frames` (every state of a growth as an image, paper Fig. 4),
`damage_mask` / `brush_mask` (which cells to kill), `damage_trajectories` (a growth with and without
damage, and the error between them, Figs. 9 and 11). `vnca_tutorial.widgets` puts ipywidgets around them;
`vnca_tutorial.player` turns them into no-kernel HTML animations.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .damage import apply_mask, as_hook, right_half_mask, square_mask
from .decoders import StepInfo
from .evaluate import _rng_devices
from .viz import resize_nearest

if TYPE_CHECKING:
    from .model import VNCA
    from .vae import VAE

DAMAGE_KINDS = ("right half", "square", "brush")


# --------------------------------------------------------------------------- helpers
def has_trajectory(model: VAE) -> bool:
    """True for models whose decoder grows through states (the VNCA); False for the conv baseline."""
    return getattr(model, "grows", False)


def _check_trajectory(model, name: str = "this model") -> None:
    if not has_trajectory(model):
        raise ValueError(f"{name} ({type(model).__name__}) has no growth trajectory: its decoder is not a "
                         f"cellular automaton, so there are no intermediate states to show or damage. "
                         f"Choose a VNCA (doubling or non-doubling).")


def _image_batch(images) -> Tensor | None:
    """ImageData or a tensor (N, C, H, W) -> the tensor (or None)."""
    if images is None:
        return None
    images = getattr(images, "images", images)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a tensor (N, C, H, W) or an ImageData, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    return images


def _one_image(images: Tensor | None, index: int) -> Tensor:  # -> (1, C, H, W)
    if images is None:
        raise ValueError("no test images were given to this widget; pass images=... to encode one")
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(images):
        raise ValueError(f"test image index {index} is out of range: choose 0 to {len(images) - 1}")
    return images[int(index):int(index) + 1]


@torch.no_grad()
def encode(model: VAE, x: Tensor) -> Tensor:
    """The mean of q(z|x), (B, Z): the code the widgets grow from a test image."""
    return model.q_z_given_x(x).mean


def prior_z(model: VAE, n: int = 1, seed: int = 0) -> Tensor:
    """n draws z ~ p(z) = N(0, I), (n, Z), reproducible from ``seed``."""
    z = torch.randn(n, model.config.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    return z.to(model.device)


def to_unit(images: Tensor, likelihood: str) -> Tensor:
    """Images (B, C, H, W) as float in [0, 1] for drawing: probabilities as they are, 8-bit values / 255."""
    x = images.detach().float().cpu()
    return (x / 255.0 if likelihood == "dlogistic" else x).clamp(0, 1)



# --------------------------------------------------------------------------- growth
@dataclass
class Growth:
    """One growth trajectory, ready to draw (chapter 11)."""
    z: Tensor                 # (B, Z) the codes grown
    infos: list[StepInfo]     # what produced each state (decoders.StepInfo)
    means: Tensor             # (T+1, B, C, S, S) mean of p(x | state t), cells upscaled to the final S x S
    samples: Tensor | None    # (T+1, B, C, S, S) a sample of p(x | state t), upscaled the same way


@torch.no_grad()
def image_frames(model: VNCA, states: Sequence[Tensor], sample_seed: int | None = 0
                 ) -> tuple[Tensor, Tensor | None]:
    """The mean and a sample of p(x | state) for every state, upscaled to the last state's grid.

    Every sample is drawn with the same seed, so states of the same size share their noise and a sample
    changes between steps only where the probabilities do (no flicker when the frames are played).
    ``sample_seed=None`` skips the samples.
    """
    size = states[-1].shape[-1]
    means, samples = [], []
    for state in states:
        p = model.likelihood(state)
        means.append(resize_nearest(p.mean, size).cpu())       # (B, C, S, S)
        if sample_seed is not None:
            samples.append(resize_nearest(_seeded(p.sample, sample_seed, state.device), size).cpu())
    return torch.stack(means), (torch.stack(samples) if samples else None)


def _seeded(draw: Callable[[], Tensor], seed: int, device: torch.device) -> Tensor:
    """draw() with the global generator of ``device`` seeded, leaving the global random state as it was.
    (Seeds only that generator: torch.manual_seed would also queue seeds for every lazy accelerator.)"""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        generator = torch.cuda.default_generators[device.index or 0] if cuda else torch.default_generator
        generator.manual_seed(seed)
        return draw()


@torch.no_grad()
def grow_frames(model: VNCA, z: Tensor, steps: int | None = None, sample_seed: int | None = 0) -> Growth:
    """Grow z (B, Z) with ``model.grow`` and keep, per state, the image mean and a sample (chapter 11).
    ``sample_seed=None`` skips the samples."""
    _check_trajectory(model)
    states, infos = model.grow(z, steps=steps)
    means, samples = image_frames(model, states, sample_seed)
    return Growth(z.detach().cpu(), infos, means, samples)


# --------------------------------------------------------------------------- damage
def brush_mask(brush, size: int) -> Tensor:
    """A (size, size) bool mask from a brush: a list of (row, col) cells of that grid, or a square bool
    mask at any resolution that divides or is a multiple of ``size`` (resampled: a cell is damaged if any
    brushed pixel falls in it). Raises ValueError for an empty brush or cells outside the grid."""
    if isinstance(brush, (Tensor, np.ndarray)):
        m = torch.as_tensor(brush).bool()
        if m.dim() != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"a brush mask must be square (n, n), got shape {tuple(m.shape)}")
        n = m.shape[0]
        if n == size:
            out = m.clone()
        elif size % n == 0:
            f = size // n
            out = m.repeat_interleave(f, 0).repeat_interleave(f, 1)
        elif n % size == 0:
            f = n // size
            out = m.view(size, f, size, f).any(3).any(1)
        else:
            raise ValueError(f"a {n}x{n} brush cannot be mapped onto a {size}x{size} grid: use a mask "
                             f"whose side divides or is a multiple of {size}")
    else:
        out = torch.zeros(size, size, dtype=torch.bool)
        for cell in brush or []:
            r, c = (int(v) for v in cell)
            if not (0 <= r < size and 0 <= c < size):
                raise ValueError(f"brushed cell ({r}, {c}) lies outside the {size}x{size} grid at the "
                                 f"damage step (rows and columns run from 0 to {size - 1})")
            out[r, c] = True
    if not out.any():
        raise ValueError("the brush is empty: brush some cells (click the grid, or set_brush(mask)) "
                         "before running")
    return out


def damage_mask(kind: str, size: int, top: int = 0, left: int = 0, square: int = 1, brush=None) -> Tensor:
    """The (size, size) bool mask of the cells to zero: "right half", "square" (a square x square block
    at (top, left), clipped to the grid) or "brush" (see `brush_mask`)."""
    if kind == "right half":
        return right_half_mask(size, size)
    if kind == "square":
        return square_mask(size, size, int(top), int(left), int(square))
    if kind == "brush":
        return brush_mask(brush, size)
    raise ValueError(f"unknown damage {kind!r}; choose one of {DAMAGE_KINDS}")


def default_steps(model: VNCA) -> int | None:
    """Trajectory length for damage experiments: a non-doubling VNCA grows for max_steps and then runs as
    many again to recover (Fig. 9); the doubling VNCA's length is fixed by its schedule (None)."""
    _check_trajectory(model)
    return None if model.doubling else 2 * model.decoder.max_steps


def default_damage_step(model: VNCA, steps: int | None = None) -> int:
    """Where the paper damages: a non-doubling VNCA once fully grown (step max_steps, Fig. 9); a
    doubling VNCA right after its last doubling, leaving the last M NCA steps to repair it."""
    _check_trajectory(model)
    if not model.doubling:
        return min(model.decoder.max_steps, steps if steps is not None else model.decoder.max_steps)
    return [i.index for i in model.decoder.schedule() if i.kind == "double"][-1]


def schedule(model: VNCA, steps: int | None = None) -> list[StepInfo]:
    """The StepInfo of every state a growth passes through (no computation)."""
    _check_trajectory(model)
    return model.decoder.schedule(steps)


@dataclass
class DamageResult:
    """An undamaged and a damaged growth of the same z (chapter 11)."""
    z: Tensor                      # (B, Z)
    x: Tensor                      # (B, C, S, S) the data image the log-likelihoods score
    at_step: int                   # the trajectory index of the damaged state
    mask: Tensor                   # (h, w) bool: the zeroed cells of the grid at ``at_step``
    infos: list[StepInfo]
    undamaged: Tensor              # (T+1, B, C, S, S) image means of the undamaged growth
    damaged: Tensor                # (T+1, B, C, S, S) image means of the damaged growth
    state_before: Tensor           # (B, Z, h, w) the undamaged state at ``at_step``
    state_after: Tensor            # (B, Z, h, w) the same state once damaged
    errors: Tensor                 # (T+1, B) mean |damaged - undamaged| per pixel at every step, in [0, 1]
    log_likelihoods: dict          # name -> (B,) log p(x | state) in nats, or None where undefined


@torch.no_grad()
def damage_trajectories(model: VNCA, z: Tensor, mask: Tensor, at_step: int, x: Tensor | None = None,
                        steps: int | None = None) -> DamageResult:
    """Grow z twice, once untouched and once with ``mask`` zeroed in the state with index ``at_step``
    (via `damage.as_hook`), and measure the damage and the recovery. With stochastic cell updates
    (``p_update < 1``) both growths draw the same updates, so until ``at_step`` they are the same and every
    difference after it is the damage's.

    ``x`` is the image the log-likelihoods score; without it, the undamaged final mean rounded to a valid
    image (binarised, or rounded to 8 bits) stands in for the data. ``log_likelihoods`` holds log p(x |
    state) for the undamaged and the damaged final states, and, when the grid at ``at_step`` already has
    the image's size, for the state just before and just after the damage.
    """
    _check_trajectory(model)
    infos = schedule(model, steps)
    if not 0 <= at_step < len(infos):
        raise ValueError(f"damage step {at_step} is {'past the end' if at_step > 0 else 'before the start'} "
                         f"of the trajectory: its states are numbered 0 to {len(infos) - 1}")
    size = infos[at_step].size
    if tuple(mask.shape) != (size, size):
        raise ValueError(f"the damage mask is {tuple(mask.shape)} but the grid at step {at_step} is "
                         f"{size}x{size}")
    if not mask.any():
        raise ValueError("the damage mask is empty: it would not damage any cell")
    kw = {"steps": steps}
    mask = mask.to(model.device)
    with torch.random.fork_rng(devices=_rng_devices(model.device)):      # restores the random state, so
        states_u, _ = model.grow(z, **kw)                                  # both growths draw the same
    states_d, _ = model.grow(z, on_step=as_hook(lambda s: apply_mask(s, mask), at_step), **kw)  # cell updates
    lik = model.config.likelihood
    if x is None:
        m = model.likelihood(states_u[-1]).mean
        x = (m > 0.5).float() if lik == "bernoulli" else m.round().clamp(0, 255)
    x = x.to(model.device)

    def log_p(state: Tensor) -> Tensor:  # (B,) nats
        return model.likelihood(state).log_prob(x).cpu()

    same_size = size == states_u[-1].shape[-1]
    log_likelihoods = {
        "before damage": log_p(states_u[at_step]) if same_size else None,
        "just after damage": log_p(states_d[at_step]) if same_size else None,
        "after recovery (damaged, end)": log_p(states_d[-1]),
        "undamaged, end": log_p(states_u[-1]),
    }
    undamaged, _ = image_frames(model, states_u, sample_seed=None)
    damaged, _ = image_frames(model, states_d, sample_seed=None)
    errors = (to_unit(damaged.flatten(0, 1), lik) - to_unit(undamaged.flatten(0, 1), lik)).abs()
    errors = errors.mean((1, 2, 3)).view(len(infos), -1)                    # (T+1, B)
    return DamageResult(z.detach().cpu(), x.cpu(), at_step, mask.cpu(), infos, undamaged, damaged,
                        states_u[at_step].cpu(), states_d[at_step].cpu(), errors, log_likelihoods)
