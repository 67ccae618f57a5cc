"""Interactive widgets: watch a VNCA grow, damage it and watch it recover, walk its latent space.

Explained in chapter 11 (book/11_interactive.md).

- `GrowthExplorer(model, images)`: scrub or play through every state of one growth (paper Fig. 4).
- `DamageLab(models, images)`: damage the cells at any step, then scrub the recovery (Figs. 9 and 11).
- `LatentExplorer(model, images)`: interpolate between two encodings (Fig. 5a) or walk a latent direction.
- `growth_animation_html`, `damage_animation_html`: the same pictures as self-contained JavaScript
  animations for the static HTML book, where no kernel runs the widgets.

The computing is done by plain functions (`grow_frames`, `damage_trajectories`) and plain methods
(``explorer.set_step(t)``, ``lab.run()``) that run without a browser; the ipywidgets only call them.
Every widget precomputes each frame it can show as a PNG, so moving a slider only swaps bytes. Bad input
(an empty brush, a step past the end, a model with no growth) is reported in the widget's message area
and in ``.message``, never as a traceback.

    >>> explorer = GrowthExplorer(model, test_images)
    >>> explorer                         # in Jupyter: the widget
    >>> explorer.set_step(10); explorer.current_frame()   # (C, H, W) mean of p(x | state 10)
"""
from __future__ import annotations

import base64
import html
import io
import json
import string
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .damage import apply_mask, as_hook, right_half_mask, square_mask
from .decoders import StepInfo
from .viz import image_grid, resize_nearest

DAMAGE_KINDS = ("right half", "square", "brush")
BRUSH_RESOLUTION = 8  # the UI brush is an 8 x 8 grid of toggles, mapped onto the grid being damaged
DISPLAY_PIXELS = 160  # each image is drawn about this wide (nearest-neighbour upscaling)


# --------------------------------------------------------------------------- helpers
def has_trajectory(model) -> bool:
    """True for models whose decoder grows through states (the VNCA); False for the conv baseline."""
    return getattr(model, "grows", False)


def _check_trajectory(model, name: str = "this model") -> None:
    if not has_trajectory(model):
        raise ValueError(f"{name} ({type(model).__name__}) has no growth trajectory: its decoder is not a "
                         f"cellular automaton, so there are no intermediate states to show or damage. "
                         f"Choose a VNCA (doubling or non-doubling).")


def _images(images) -> Tensor | None:
    """ImageData or a tensor (N, C, H, W) -> the tensor (or None)."""
    if images is None:
        return None
    images = getattr(images, "images", images)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a tensor (N, C, H, W) or an ImageData, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    return images


def _image(images: Tensor | None, index: int) -> Tensor:  # -> (1, C, H, W)
    if images is None:
        raise ValueError("no test images were given to this widget; pass images=... to encode one")
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(images):
        raise ValueError(f"test image index {index} is out of range: choose 0 to {len(images) - 1}")
    return images[int(index):int(index) + 1]


@torch.no_grad()
def encode(model, x: Tensor) -> Tensor:
    """The mean of q(z|x), (B, Z): the code the widgets grow from a test image."""
    return model.q_z_given_x(x).mean


def prior_z(model, n: int = 1, seed: int = 0) -> Tensor:
    """n draws z ~ p(z) = N(0, I), (n, Z), reproducible from ``seed``."""
    z = torch.randn(n, model.config.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    return z.to(model.device)


def to_unit(images: Tensor, likelihood: str) -> Tensor:
    """Images (B, C, H, W) as float in [0, 1] for drawing: probabilities as they are, 8-bit values / 255."""
    x = images.detach().float().cpu()
    return (x / 255.0 if likelihood == "dlogistic" else x).clamp(0, 1)


def _scale(size: int) -> int:
    return max(1, DISPLAY_PIXELS // size)


def _png_array(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) array (fast compression: these are made by the dozen)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png(images: Tensor, likelihood: str, scale: int, nrow: int | None = None) -> bytes:
    """PNG bytes of a row (or grid) of images (B, C, H, W), each upscaled ``scale`` times."""
    return _png_array(image_grid(to_unit(images, likelihood), nrow=nrow or len(images), scale=scale))


def describe(info: StepInfo, n_states: int, doubling: bool) -> str:
    """'step 20 of 44 · 8×8 cells · NCA step (after 2 doublings)': what produced a state, for captions."""
    if info.kind == "seed":
        what = "seed: every cell holds z"
    elif info.kind == "double":
        what = f"doubling {info.stage}: every cell copied into four"
    else:
        what = f"NCA step (after {info.stage} doubling{'s' if info.stage != 1 else ''})" if doubling \
            else "NCA step"
    return f"step {info.index} of {n_states - 1} · {info.size}×{info.size} cells · {what}"


# --------------------------------------------------------------------------- growth
@dataclass
class Growth:
    """One growth trajectory, ready to draw (chapter 11)."""
    z: Tensor                 # (B, Z) the codes grown
    infos: list[StepInfo]     # what produced each state (decoders.StepInfo)
    means: Tensor             # (T+1, B, C, S, S) mean of p(x | state t), cells upscaled to the final S x S
    samples: Tensor | None    # (T+1, B, C, S, S) a sample of p(x | state t), upscaled the same way


@torch.no_grad()
def image_frames(model, states: Sequence[Tensor], sample_seed: int | None = 0
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
def grow_frames(model, z: Tensor, steps: int | None = None, sample_seed: int | None = 0) -> Growth:
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


def default_steps(model) -> int | None:
    """Trajectory length for damage experiments: a non-doubling VNCA grows for max_steps and then runs as
    many again to recover (Fig. 11); the doubling VNCA's length is fixed by its schedule (None)."""
    _check_trajectory(model)
    return None if model.doubling else 2 * model.decoder.max_steps


def default_damage_step(model, steps: int | None = None) -> int:
    """Where the paper damages: a non-doubling VNCA once fully grown (step max_steps, Fig. 11); a
    doubling VNCA right after its last doubling, leaving the last M NCA steps to repair it."""
    _check_trajectory(model)
    if not model.doubling:
        return min(model.decoder.max_steps, steps if steps is not None else model.decoder.max_steps)
    return [i.index for i in model.decoder.schedule() if i.kind == "double"][-1]


def schedule(model, steps: int | None = None) -> list[StepInfo]:
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
def damage_trajectories(model, z: Tensor, mask: Tensor, at_step: int, x: Tensor | None = None,
                        steps: int | None = None) -> DamageResult:
    """Grow z twice, once untouched and once with ``mask`` zeroed in the state with index ``at_step``
    (via `damage.as_hook`), and measure the damage and the recovery.

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
    states_u, _ = model.grow(z, **kw)
    states_d, _ = model.grow(z, on_step=as_hook(lambda s: apply_mask(s, mask), at_step), **kw)
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


# --------------------------------------------------------------------------- widget base
class _Widget:
    """What every widget shares: ``.widget`` to display, a message area, and ``.message``."""

    widget = None

    def __init__(self) -> None:
        import ipywidgets as w
        self.message_area = w.HTML()
        self.message = ""

    def _say(self, text: str) -> None:
        """Show a user-facing message (an error or a hint); an empty text clears it."""
        self.message = text
        self.message_area.value = (f'<span style="color:#b00020">{html.escape(text)}</span>'
                                   if text else "")

    def _guarded(self, method: Callable) -> Callable:
        """A widget callback that reports any error in the message area instead of raising."""
        def callback(*args):
            try:
                method(*args)
            except Exception as e:  # noqa: BLE001 -- a browser user must never get a traceback
                self._say(f"{type(e).__name__}: {e}")
        return callback

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


def _player(interval_ms: int = 120):
    """An IntSlider over step indices and a Play button driving it (linked in the browser)."""
    import ipywidgets as w
    play = w.Play(min=0, max=0, step=1, interval=interval_ms, description="play")
    slider = w.IntSlider(min=0, max=0, description="step", continuous_update=True,
                         layout=w.Layout(width="420px"))
    w.jslink((play, "value"), (slider, "value"))
    return play, slider


# --------------------------------------------------------------------------- GrowthExplorer
class GrowthExplorer(_Widget):
    """Watch one z grow: image mean and a sample of p(x | state) at every step (paper Fig. 4).

    "new seed" draws z ~ p(z); with ``images``, "encode" grows the mean of q(z|x) of a test image. The
    whole trajectory is computed once per z; the slider and Play only swap precomputed PNG frames.
    Headless: ``new_seed(s)``, ``encode(i)``, ``set_step(t)``, ``current_frame()``, ``current_sample()``.
    """

    def __init__(self, model, images=None, seed: int = 0, steps: int | None = None,
                 scale: int | None = None) -> None:
        import ipywidgets as w
        super().__init__()
        self.model, self.steps, self.seed = model, steps, seed
        self.images = _images(images)
        self.growth: Growth | None = None
        self.frames: list[bytes] = []
        self.scale = scale or _scale(model.config.image_size)
        self.seed_button = w.Button(description="new seed", tooltip="draw z from the prior p(z)")
        self.index = w.BoundedIntText(value=0, min=0, max=max(0, len(self.images) - 1) if
                                      self.images is not None else 0, description="test image")
        self.encode_button = w.Button(description="encode", tooltip="grow the mean of q(z|x)")
        self.play, self.slider = _player()
        self.picture = w.Image(format="png")
        self.caption = w.HTML()
        self.seed_button.on_click(self._guarded(lambda _: self.new_seed()))
        self.encode_button.on_click(self._guarded(lambda _: self.encode(self.index.value)))
        self.slider.observe(self._guarded(lambda change: self._draw(change["new"])), names="value")
        source = [self.seed_button] + ([self.index, self.encode_button] if self.images is not None else [])
        self.widget = w.VBox([w.HBox(source), w.HBox([self.play, self.slider]), self.picture,
                              self.caption, self.message_area])
        if not has_trajectory(model):
            self._say(f"{type(model).__name__} has no growth trajectory: its decoder is not a cellular "
                      f"automaton. Give GrowthExplorer a VNCA.")
            for control in (self.seed_button, self.encode_button, self.play, self.slider):
                control.disabled = True
            return
        self.new_seed(seed)

    # --- choosing z
    def new_seed(self, seed: int | None = None) -> None:
        """Grow a new z ~ p(z) (the next seed, or ``seed``)."""
        self.seed = self.seed + 1 if seed is None else int(seed)
        self.show_z(prior_z(self.model, 1, self.seed), f"z ~ p(z), seed {self.seed}")

    def encode(self, index: int) -> None:
        """Grow the mean of q(z|x) for test image ``index``."""
        try:
            z = encode(self.model, _image(self.images, index))
        except ValueError as e:
            self._say(str(e))
            return
        self.show_z(z, f"mean of q(z|x) for test image {index}")

    def show_z(self, z: Tensor, source: str = "z") -> None:
        """Grow z (1, Z) and precompute every frame; shows the final state."""
        _check_trajectory(self.model)
        self.growth = grow_frames(self.model, z, self.steps)
        self.z, self.source = self.growth.z, source
        lik = self.model.config.likelihood
        self.frames = [png(torch.cat([m, s]), lik, self.scale)
                       for m, s in zip(self.growth.means, self.growth.samples)]
        last = len(self.frames) - 1
        self.play.max = self.slider.max = last
        self._say("")
        self.set_step(last)

    # --- moving through the trajectory
    def set_step(self, t: int) -> None:
        """Show state t (what the slider and Play call)."""
        if self.growth is None:
            self._say("nothing has been grown yet")
            return
        if not 0 <= t < len(self.frames):
            self._say(f"step {t} is outside the trajectory: choose 0 to {len(self.frames) - 1}")
            return
        if self.slider.value != t:
            self.slider.value = t  # the observer draws
        else:
            self._draw(t)

    def _draw(self, t: int) -> None:
        self.step = t
        self.picture.value = self.frames[t]
        info = self.growth.infos[t]
        self.caption.value = (f"<b>{html.escape(describe(info, len(self.frames), self.model.doubling))}</b>"
                              f"<br>left: mean of p(x | state), right: a sample · "
                              f"{html.escape(self.source)}")

    @property
    def current_info(self) -> StepInfo:
        return self.growth.infos[self.step]

    def current_frame(self) -> Tensor:  # (C, S, S)
        """The displayed image mean of p(x | state t), upscaled to the final grid."""
        return self.growth.means[self.step, 0]

    def current_sample(self) -> Tensor:  # (C, S, S)
        return self.growth.samples[self.step, 0]


# --------------------------------------------------------------------------- DamageLab
class DamageLab(_Widget):
    """Damage the cells of a growing VNCA at a chosen step and scrub the recovery (Figs. 9 and 11).

    Choose a model, where z comes from (the prior, or a test image), the step to damage, and the damage:
    the right half, a square (top, left, size in cells of the grid at that step), or a brushed region (the
    8x8 toggle grid, or ``set_brush``). "run" grows the undamaged and the damaged trajectories; the slider
    then shows both, with the per-pixel error between them and log p(x | state) before and after.
    Headless: ``select(name)``, ``set_damage(...)``, ``set_brush(...)``, ``run()``, ``set_step(t)``.
    """

    def __init__(self, models: dict, images=None, seed: int = 0, scale: int | None = None) -> None:
        import ipywidgets as w
        super().__init__()
        if isinstance(models, dict) and not models:
            raise ValueError("DamageLab needs at least one model")
        self.models = models if isinstance(models, dict) else {type(models).__name__: models}
        self.images = _images(images)
        self.result: DamageResult | None = None
        self.frames: list[bytes] = []
        self.step = 0
        self._brush = None
        self._syncing = False
        self.model_menu = w.Dropdown(options=list(self.models), description="model")
        sources = ["the prior"] + (["test image"] if self.images is not None else [])
        self.source = w.Dropdown(options=sources, description="z from")
        self.number = w.IntText(value=seed, description="seed/index")
        self.kind = w.Dropdown(options=list(DAMAGE_KINDS), description="damage")
        self.at_step = w.IntText(description="at step")
        self.at_step_info = w.HTML()
        self.n_steps = w.IntText(description="NCA steps", tooltip="non-doubling: total steps grown")
        self.top, self.left = w.IntText(description="top"), w.IntText(description="left")
        self.size = w.IntText(description="size")
        self.toggles = [w.ToggleButton(layout=w.Layout(width="20px", height="20px", padding="0"))
                        for _ in range(BRUSH_RESOLUTION ** 2)]
        self.clear_button = w.Button(description="clear brush")
        self.run_button = w.Button(description="run", button_style="primary")
        self.play, self.slider = _player()
        self.picture, self.curve = w.Image(format="png"), w.Image(format="png")
        self.caption, self.scores = w.HTML(), w.HTML()
        self.scale = scale

        self.model_menu.observe(self._guarded(lambda _: self._reset()), names="value")
        self.kind.observe(self._guarded(lambda _: self._show_controls()), names="value")
        self.at_step.observe(self._guarded(lambda _: self._describe_at_step()), names="value")
        self.n_steps.observe(self._guarded(lambda _: self._describe_at_step()), names="value")
        for toggle in self.toggles:
            toggle.observe(self._guarded(lambda _: self._brush_from_toggles()), names="value")
        self.clear_button.on_click(self._guarded(lambda _: self.set_brush(None)))
        self.run_button.on_click(self._guarded(lambda _: self.run()))
        self.slider.observe(self._guarded(lambda change: self._draw(change["new"])), names="value")

        grid = w.GridBox(self.toggles, layout=w.Layout(
            grid_template_columns=f"repeat({BRUSH_RESOLUTION}, 22px)", grid_gap="2px"))
        self.square_box = w.HBox([self.top, self.left, self.size])
        self.brush_box = w.VBox([w.HTML("brush (mapped onto the grid at the damage step):"), grid,
                                 self.clear_button])
        self.widget = w.VBox([
            w.HBox([self.model_menu, self.source, self.number]),
            w.HBox([self.kind, self.at_step, self.n_steps]), self.at_step_info,
            self.square_box, self.brush_box, self.run_button, self.message_area,
            w.HBox([self.play, self.slider]), self.picture, self.curve, self.caption, self.scores])
        self._reset()
        self._show_controls()

    # --- configuration (what the controls set)
    @property
    def model(self):
        return self.models[self.model_menu.value]

    def select(self, name: str) -> None:
        """Choose a model by its name in ``models``."""
        if name not in self.models:
            self._say(f"no model named {name!r}; the models are: {', '.join(self.models)}")
            return
        self.model_menu.value = name

    def set_damage(self, kind: str | None = None, at_step: int | None = None, top: int | None = None,
                   left: int | None = None, size: int | None = None, steps: int | None = None) -> None:
        """Set any of the damage controls (the square's top, left and size are in cells of the grid at
        the damage step)."""
        if kind is not None:
            if kind not in DAMAGE_KINDS:
                self._say(f"unknown damage {kind!r}; choose one of {', '.join(DAMAGE_KINDS)}")
                return
            self.kind.value = kind
        for control, value in ((self.at_step, at_step), (self.top, top), (self.left, left),
                               (self.size, size), (self.n_steps, steps)):
            if value is not None:
                control.value = int(value)

    def set_source(self, source: str = "the prior", number: int = 0) -> None:
        """Grow from z ~ p(z) with seed ``number``, or from test image ``number``."""
        if source not in self.source.options:
            self._say(f"z can come from: {', '.join(self.source.options)}")
            return
        self.source.value, self.number.value = source, int(number)

    def set_brush(self, brush) -> None:
        """Brush the cells to damage: a square bool mask (at the damage step's grid size, or any size
        that divides or is a multiple of it), a list of (row, col) cells of that grid, or None to clear.
        Also selects the "brush" damage."""
        if brush is None or isinstance(brush, (Tensor, np.ndarray)):
            self._brush = None if brush is None else torch.as_tensor(brush).bool()
        else:
            self._brush = [tuple(cell) for cell in brush]
        self._sync_toggles()
        if brush is not None:
            self.kind.value = "brush"

    def _sync_toggles(self) -> None:
        """Show the brush on the toggle grid, where it maps onto it."""
        try:
            shown = brush_mask(self._brush, BRUSH_RESOLUTION) if isinstance(self._brush, Tensor) else None
        except ValueError:
            shown = None
        self._syncing = True
        for i, toggle in enumerate(self.toggles):
            toggle.value = bool(shown.flatten()[i]) if shown is not None else False
        self._syncing = False

    def _brush_from_toggles(self) -> None:
        if self._syncing:
            return
        self._brush = torch.tensor([t.value for t in self.toggles]).view(BRUSH_RESOLUTION, BRUSH_RESOLUTION)
        self.kind.value = "brush"

    def _steps(self) -> int | None:
        if self.model.doubling:
            return None
        if self.n_steps.value < 1:
            raise ValueError(f"the number of NCA steps must be at least 1, got {self.n_steps.value}")
        return self.n_steps.value

    def _reset(self) -> None:
        """A new model: defaults for its trajectory, and nothing computed yet."""
        self.result, self.frames, self.bars = None, [], []
        self.picture.value, self.curve.value = b"", b""
        self.caption.value = self.scores.value = ""
        self.play.max = self.slider.max = 0
        model = self.model
        if not has_trajectory(model):
            self._say(f"{self.model_menu.value!r} ({type(model).__name__}) has no growth trajectory: its "
                      f"decoder is not a cellular automaton, so it cannot be damaged mid-growth. "
                      f"Choose a VNCA.")
            self.n_steps.disabled = True
            return
        self._say("")
        self.n_steps.disabled = model.doubling
        steps = default_steps(model)
        if steps is not None:
            self.n_steps.value = steps
        t = default_damage_step(model, steps)
        size = schedule(model, steps)[t].size
        self.set_damage(at_step=t, top=size // 4, left=size // 4, size=size // 2)
        self._describe_at_step()

    def _show_controls(self) -> None:
        self.square_box.layout.display = "" if self.kind.value == "square" else "none"
        self.brush_box.layout.display = "" if self.kind.value == "brush" else "none"

    def _describe_at_step(self) -> None:
        try:
            infos = schedule(self.model, self._steps())
        except ValueError:
            self.at_step_info.value = ""
            return
        t = self.at_step.value
        self.at_step_info.value = (html.escape(describe(infos[t], len(infos), self.model.doubling))
                                   if 0 <= t < len(infos) else
                                   f"the trajectory has steps 0 to {len(infos) - 1}")

    def _latent(self, model) -> tuple[Tensor, Tensor | None]:
        if self.source.value == "test image":
            x = _image(self.images, self.number.value)
            return encode(model, x), x
        return prior_z(model, 1, self.number.value), None

    # --- running
    def run(self) -> bool:
        """Grow the undamaged and the damaged trajectories; False (and a message) on bad input."""
        try:
            model = self.model
            _check_trajectory(model, repr(self.model_menu.value))
            steps = self._steps()
            infos = schedule(model, steps)
            t = self.at_step.value
            if not 0 <= t < len(infos):
                where = "past the end of" if t > 0 else "before the start of"
                raise ValueError(f"damage step {t} is {where} the trajectory: "
                                 f"{self.model_menu.value!r} has states 0 to {len(infos) - 1}")
            size = infos[t].size
            mask = damage_mask(self.kind.value, size, self.top.value, self.left.value, self.size.value,
                               self._brush)
            z, x = self._latent(model)
            result = damage_trajectories(model, z, mask, t, x=x, steps=steps)
        except ValueError as e:
            self._say(str(e))
            return False
        self._say("")
        self.result = result
        lik, side = model.config.likelihood, model.config.image_size
        scale = self.scale or _scale(side)
        self.frames = [png(torch.cat([u, d]), lik, scale) for u, d in zip(result.undamaged, result.damaged)]
        self.bars = [_png_array(error_bars(result.errors[:, 0], t, now)) for now in range(len(self.frames))]
        self.scores.value = self._scores_html(result)
        last = len(self.frames) - 1
        self.play.max = self.slider.max = last
        self.set_step(min(t, last))
        return True

    @staticmethod
    def _scores_html(r: DamageResult) -> str:
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>"
                       f"{'—' if v is None else f'{v[0].item():.1f}'}</td></tr>"
                       for name, v in r.log_likelihoods.items())
        note = ("" if r.log_likelihoods["before damage"] is not None else
                "<br><i>the grid at the damage step is smaller than the image, so only the ends of growth "
                "are scored</i>")
        return f"<table><tr><th>log p(x | state)</th><th>nats</th></tr>{rows}</table>{note}"

    # --- moving through the result
    def set_step(self, t: int) -> None:
        """Show step t of both trajectories (what the slider and Play call)."""
        if self.result is None:
            self._say("press run first")
            return
        if not 0 <= t < len(self.frames):
            self._say(f"step {t} is outside the trajectory: choose 0 to {len(self.frames) - 1}")
            return
        if self.slider.value != t:
            self.slider.value = t
        else:
            self._draw(t)

    def _draw(self, t: int) -> None:
        if not self.frames:
            return
        self.step = t
        r = self.result
        self.picture.value, self.curve.value = self.frames[t], self.bars[t]
        when = ("before the damage" if t < r.at_step else "the damaged state" if t == r.at_step else
                f"{t - r.at_step} steps after the damage")
        self.caption.value = (f"<b>{html.escape(describe(r.infos[t], len(self.frames), self.model.doubling))}"
                              f"</b> ({when})<br>left: undamaged, right: damaged (image means) · per-pixel "
                              f"error {r.errors[t, 0].item():.3f} (bars below: every step; red: the damage, "
                              f"dark: this step)")

    def current_frame(self) -> Tensor:  # (C, S, S)
        """The damaged trajectory's image mean at the current step."""
        return self.result.damaged[self.step, 0]

    def current_undamaged(self) -> Tensor:  # (C, S, S)
        return self.result.undamaged[self.step, 0]


def error_bars(errors: Tensor, at_step: int, now: int, height: int = 48, width: int = 320) -> np.ndarray:
    """A uint8 (height, W, 3) bar chart of the per-pixel error at every step: the damage step in red,
    the shown step dark, the rest blue. Drawn with numpy, so one per step is cheap to precompute."""
    n = len(errors)
    bar = max(2, width // n)
    top = max(float(errors.max()), 1e-6)
    chart = np.full((height, n * bar, 3), 255, dtype=np.uint8)
    for t, e in enumerate(errors.tolist()):
        colour = (200, 30, 30) if t == at_step else (40, 40, 40) if t == now else (90, 140, 210)
        h = max(1, round((height - 2) * e / top)) if e > 0 else 0
        chart[height - h:, t * bar:(t + 1) * bar - (1 if bar > 2 else 0)] = colour
    chart[-1, :] = 0                                    # the axis
    if now != at_step:
        chart[:2, now * bar:(now + 1) * bar] = (40, 40, 40)  # marks the shown step even where e = 0
    return chart


# --------------------------------------------------------------------------- LatentExplorer
class LatentExplorer(_Widget):
    """Walk the latent space: decode between the encodings of two test images (Fig. 5a), or step along a
    principal component of the encodings or a single latent dimension.

    Images are decoded in batches when the endpoints or the direction change; the sliders only swap
    PNGs. Works for any VAE of the package, the conv baseline included.
    Headless: ``set_pair(a, b)``, ``set_alpha(a)``, ``set_mode("direction")``, ``set_direction("PC 1")``,
    ``set_step_size(s)``, ``current_frame()``, ``strip()``.
    """

    def __init__(self, model, images, a: int = 0, b: int = 1, n_alphas: int = 11, n_pca: int = 512,
                 n_components: int = 8, max_step: float = 3.0, scale: int | None = None) -> None:
        import ipywidgets as w
        super().__init__()
        self.model = model
        self.alphas = torch.linspace(0, 1, n_alphas)
        self.step_sizes = torch.arange(-max_step, max_step + 1e-6, 0.5)
        self.scale = scale or _scale(model.config.image_size)
        self.mode = w.ToggleButtons(options=["interpolate", "direction"], description="mode")
        self.a, self.b = w.IntText(value=a, description="image A"), w.IntText(value=b, description="image B")
        self.alpha = w.SelectionSlider(options=[(f"{v:.2f}", i) for i, v in enumerate(self.alphas)],
                                       description="alpha")
        self.direction = w.Dropdown(description="direction")
        self.step_size = w.SelectionSlider(
            options=[(f"{v:+.1f}σ", i) for i, v in enumerate(self.step_sizes)],
            value=len(self.step_sizes) // 2, description="step")
        self.picture, self.caption = w.Image(format="png"), w.HTML()
        self.widget = w.VBox([self.mode, w.HBox([self.a, self.b]), self.alpha,
                              w.HBox([self.direction, self.step_size]), self.picture, self.caption,
                              self.message_area])
        self.frames: dict[str, tuple[Tensor, list[bytes]]] = {}   # mode -> (means (n, C, H, W), PNGs)
        self._syncing, self._walk_key = False, None
        try:
            self.images = _images(images)
            if self.images is None:
                raise ValueError("LatentExplorer needs test images to encode (images=...)")
            self._fit_directions(n_pca, n_components)
        except ValueError as e:
            self._say(str(e))
            self.images = None
            for control in (self.mode, self.a, self.b, self.alpha, self.direction, self.step_size):
                control.disabled = True
            return
        self.mode.observe(self._guarded(lambda _: self._draw()), names="value")
        for control in (self.a, self.b):
            control.observe(self._guarded(self._pair_changed), names="value")
        self.alpha.observe(self._guarded(lambda _: self._draw()), names="value")
        self.direction.observe(self._guarded(lambda _: self._draw()), names="value")
        self.step_size.observe(self._guarded(lambda _: self._draw()), names="value")
        self.set_pair(a, b)

    def _pair_changed(self, _change) -> None:
        if not self._syncing:
            self.set_pair(self.a.value, self.b.value)

    @torch.no_grad()
    def _fit_directions(self, n_pca: int, n_components: int) -> None:
        """Encode a fixed random subset of the images; its principal components and per-dimension
        spreads give the directions and the unit of the step slider."""
        n = len(self.images)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:n_pca]
        codes = torch.cat([encode(self.model, x).cpu() for x in self.images[idx].split(128)])  # (N, Z)
        centred = codes - codes.mean(0)
        _, s, v = torch.linalg.svd(centred, full_matrices=False)
        k = min(n_components, len(s))
        spread = s / max(1, len(codes) - 1) ** 0.5
        self.directions = {f"PC {i + 1}": (v[i], spread[i].item()) for i in range(k)}
        std = codes.std(0) if len(codes) > 1 else torch.ones(codes.shape[1])
        for d in range(codes.shape[1]):
            self.directions[f"z[{d}]"] = (torch.eye(codes.shape[1])[d], std[d].item())
        self.direction.options = list(self.directions)
        self.direction.value = "PC 1"

    @torch.no_grad()
    def _decode(self, z: Tensor) -> Tensor:  # (B, Z) -> (B, C, H, W) image means, on the CPU
        return self.model.p_x_given_z(z.to(self.model.device)).mean.cpu()

    def _pngs(self, means: Tensor, left: Tensor, right: Tensor | None) -> list[bytes]:
        """One PNG per decoded mean: [left, mean] or [left, mean, right] side by side."""
        lik = self.model.config.likelihood
        ends = [x[0].float().cpu() for x in (left, right) if x is not None]
        return [png(torch.stack([ends[0], m] + ends[1:]), lik, self.scale) for m in means]

    def set_pair(self, a: int, b: int) -> None:
        """Encode test images a and b and decode the interpolation between them."""
        try:
            x_a, x_b = _image(self.images, a), _image(self.images, b)
            z_a, z_b = encode(self.model, x_a).cpu(), encode(self.model, x_b).cpu()   # (1, Z) each
        except ValueError as e:
            self._say(str(e))
            return
        self._say("")
        self._syncing = True
        self.a.value, self.b.value = int(a), int(b)
        self._syncing = False
        self.x_a, self.x_b, self.z_a, self.z_b, self.pair = x_a, x_b, z_a, z_b, (int(a), int(b))
        zs = (1 - self.alphas[:, None]) * z_a + self.alphas[:, None] * z_b   # (n_alphas, Z)
        means = self._decode(zs)
        self.frames["interpolate"] = (means, self._pngs(means, x_a, x_b))
        self._draw()

    def _mode_frames(self) -> tuple[Tensor, list[bytes]]:
        """The frames of the current mode; the walk along a direction is decoded when first shown."""
        if self.mode.value == "direction" and self._walk_key != (self.pair, self.direction.value):
            d, sigma = self.directions[self.direction.value]
            zs = self.z_a + (self.step_sizes * sigma)[:, None] * d                      # (n_steps, Z)
            means = self._decode(zs)
            self.frames["direction"] = (means, self._pngs(means, self.x_a, None))
            self._walk_key = (self.pair, self.direction.value)
        return self.frames[self.mode.value]

    def _index(self) -> int:
        return self.alpha.value if self.mode.value == "interpolate" else self.step_size.value

    def _draw(self) -> None:
        if self.images is None or "interpolate" not in self.frames:
            return
        i = self._index()
        self.picture.value = self._mode_frames()[1][i]
        if self.mode.value == "interpolate":
            text = (f"left: test image {self.pair[0]}, right: test image {self.pair[1]}, middle: the mean of "
                    f"p(x | z) for z = (1 - α) z_A + α z_B, α = {self.alphas[i]:.2f}")
        else:
            text = (f"left: test image {self.pair[0]}, right: the mean of p(x | z) for z = z_A "
                    f"{self.step_sizes[i]:+.1f} σ · {self.direction.value}, where σ is the spread of the "
                    f"encodings along {self.direction.value}")
        self.caption.value = html.escape(text)

    # --- headless controls
    def set_mode(self, mode: str) -> None:
        if mode not in self.mode.options:
            self._say(f"mode must be one of {self.mode.options}")
            return
        self.mode.value = mode

    def set_alpha(self, alpha: float) -> None:
        """Interpolate at the precomputed alpha nearest to ``alpha`` (in [0, 1])."""
        if not 0.0 <= alpha <= 1.0:
            self._say(f"alpha must lie in [0, 1], got {alpha}")
            return
        self.set_mode("interpolate")
        self.alpha.value = int((self.alphas - alpha).abs().argmin())

    def set_direction(self, name: str) -> None:
        if name not in self.directions:
            n_pcs = sum(k.startswith("PC") for k in self.directions)
            self._say(f"no direction {name!r}: choose PC 1..PC {n_pcs} or "
                      f"z[0]..z[{self.model.config.z_dim - 1}]")
            return
        self.set_mode("direction")
        self.direction.value = name

    def set_step_size(self, s: float) -> None:
        """Step ``s`` spreads along the direction (snapped to the slider's half-steps)."""
        self.set_mode("direction")
        self.step_size.value = int((self.step_sizes - s).abs().argmin())

    @property
    def current_z(self) -> Tensor:  # (Z,)
        i = self._index()
        if self.mode.value == "interpolate":
            return ((1 - self.alphas[i]) * self.z_a + self.alphas[i] * self.z_b)[0]
        d, sigma = self.directions[self.direction.value]
        return (self.z_a + self.step_sizes[i] * sigma * d)[0]

    def current_frame(self) -> Tensor:  # (C, H, W)
        """The displayed decoded image mean."""
        return self._mode_frames()[0][self._index()]

    def strip(self) -> Tensor:  # (n, C, H, W)
        """Every decoded image of the current mode, in order (Fig. 5a's row, for a static figure)."""
        return self._mode_frames()[0]


# --------------------------------------------------------------------------- static HTML
_PLAYER = string.Template("""\
<div id="vnca-animation-$id" style="font: 12px sans-serif; margin: 0.5em 0">
  <img src="$first" width="$width" height="$height" alt="animation frame"
       style="image-rendering: pixelated; display: block">
  <div class="vnca-caption" style="margin: 0.3em 0; white-space: pre-line">$caption</div>
  <button class="vnca-first" title="first frame">&#x25C1;&#x25C1;</button>
  <button class="vnca-previous" title="previous frame">&#x25C1;</button>
  <button class="vnca-play" title="play / pause">&#x25B6;</button>
  <button class="vnca-next" title="next frame">&#x25B7;</button>
  <button class="vnca-last" title="last frame">&#x25B7;&#x25B7;</button>
  <input type="range" min="0" max="$last" value="$last" style="vertical-align: middle; width: 12em">
  <label><input type="checkbox"> loop</label>
</div>
<script>
(function vncaAnimation() {  // a player for frames embedded below: nothing is fetched
  var frames = $frames, captions = $captions, interval = $interval, i = $last, timer = null;
  var root = document.getElementById("vnca-animation-$id");
  var image = root.querySelector("img"), caption = root.querySelector(".vnca-caption");
  var slider = root.querySelector("input[type=range]"), loop = root.querySelector("input[type=checkbox]");
  var play = root.querySelector(".vnca-play");
  function show(k) {
    i = Math.max(0, Math.min(frames.length - 1, k));
    image.src = frames[i]; caption.textContent = captions[i]; slider.value = i;
  }
  function stop() { clearInterval(timer); timer = null; play.innerHTML = "&#x25B6;"; }
  function tick() {
    if (i < frames.length - 1) show(i + 1); else if (loop.checked) show(0); else stop();
  }
  play.onclick = function () {
    if (timer) { stop(); return; }
    if (i >= frames.length - 1) show(0);
    timer = setInterval(tick, interval); play.innerHTML = "||";
  };
  root.querySelector(".vnca-first").onclick = function () { stop(); show(0); };
  root.querySelector(".vnca-previous").onclick = function () { stop(); show(i - 1); };
  root.querySelector(".vnca-next").onclick = function () { stop(); show(i + 1); };
  root.querySelector(".vnca-last").onclick = function () { stop(); show(frames.length - 1); };
  slider.oninput = function () { stop(); show(parseInt(slider.value, 10)); };
})();
</script>
""")


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


def growth_animation_html(model, n: int = 4, seed: int = 0, images=None, steps: int | None = None,
                          interval: int = 120, scale: int = 3) -> str:
    """HTML of a no-kernel animation of n growths (z ~ p(z) with ``seed``, or the encodings of the first
    n of ``images``): the image mean of every state, upscaled to the final grid."""
    _check_trajectory(model)
    z = encode(model, _images(images)[:n]) if images is not None else prior_z(model, n, seed)
    g = grow_frames(model, z, steps, sample_seed=None)
    lik = model.config.likelihood
    frames = [image_grid(to_unit(m, lik), nrow=len(z), scale=scale) for m in g.means]
    titles = [describe(info, len(g.infos), model.doubling) for info in g.infos]
    return frames_to_html(frames, titles, interval)


def damage_animation_html(model, damage: str | Tensor = "right half", at_step: int | None = None,
                          n: int = 4, seed: int = 0, images=None, steps: int | None = None,
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
    z = encode(model, _images(images)[:n]) if images is not None else prior_z(model, n, seed)
    r = damage_trajectories(model, z, mask, at_step, steps=steps)
    lik = model.config.likelihood
    frames = [image_grid(to_unit(torch.cat([u, d]), lik), nrow=len(z), scale=scale)
              for u, d in zip(r.undamaged, r.damaged)]
    titles = [f"{describe(info, len(infos), model.doubling)}\ntop: undamaged, bottom: damaged at step "
              f"{at_step} · error {r.errors[info.index].mean().item():.3f}" for info in infos]
    return frames_to_html(frames, titles, interval)
