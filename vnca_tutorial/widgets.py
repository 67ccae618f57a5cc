"""Interactive widgets: watch a VNCA grow, damage it and watch it recover, walk its latent space.

Explained in chapter 11 (book/11_interactive.md).

Why one module of over 500 lines: the three widgets share their base class (message area, player,
guarded callbacks, ``set_step``); the computing they show lives in `trajectories` and `player`.

- `GrowthExplorer(model, images)`: scrub or play through every state of one growth (paper Fig. 4).
- `DamageLab(models, images)`: damage the cells at any step, then scrub the recovery (Figs. 9 and 11).
- `LatentExplorer(model, images)`: interpolate between two encodings (Fig. 5a) or walk a latent direction.
- `growth_animation_html`, `damage_animation_html`: the same pictures as self-contained JavaScript
  animations for the static HTML book, where no kernel runs the widgets.

The computing is done by plain functions in `vnca_tutorial.trajectories` (`grow_frames`,
`damage_trajectories`), the no-kernel animations by `vnca_tutorial.player`, and plain methods
(``explorer.set_step(t)``, ``lab.run()``) that run without a browser; the ipywidgets only call them.
Every widget precomputes each frame it can show as a PNG, so moving a slider only swaps bytes. Bad input
(an empty brush, a step past the end, a model with no growth) is reported in the widget's message area
and in ``.message``, never as a traceback.

    >>> explorer = GrowthExplorer(model, test_images)
    >>> explorer                         # in Jupyter: the widget
    >>> explorer.set_step(10); explorer.current_frame()   # (C, H, W) mean of p(x | state 10)
"""
from __future__ import annotations

import html
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .decoders import StepInfo
# widgets re-exports the computation and the player, so that `from vnca_tutorial.widgets import ...` finds
# everything chapter 11 uses in one place
from .player import (DISPLAY_PIXELS, _png_array, _scale, damage_animation_html, describe_state,  # noqa: F401
                     frames_to_html, frame_png, growth_animation_html)
from .trajectories import (DAMAGE_KINDS, DamageResult, Growth, _check_trajectory, _one_image,  # noqa: F401
                           _image_batch, brush_mask, damage_mask, damage_trajectories, default_damage_step,
                           default_steps, encode, grow_frames, has_trajectory, image_frames, prior_z,
                           schedule, to_unit)

BRUSH_RESOLUTION = 8  # the UI brush is an 8 x 8 grid of toggles, mapped onto the grid being damaged


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

    def _show_step(self, t: int, ready: bool, not_ready: str) -> None:
        """Move the step slider to t (its observer draws the frame), or say why not."""
        if not ready:
            self._say(not_ready)
            return
        if not 0 <= t < len(self.frames):
            self._say(f"step {t} is outside the trajectory: choose 0 to {len(self.frames) - 1}")
            return
        self.play.value = t        # Play and slider are linked in the browser (jslink), which copies Play's
        if self.slider.value != t:  # value onto the slider when a saved page loads: keep the two equal
            self.slider.value = t  # the observer draws
        else:
            self._draw(t)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


def _show_png(picture, png: bytes) -> None:
    """Put a PNG into an ``ipywidgets.Image`` at the PNG's own size in pixels (IHDR width and height), so
    that a picture is drawn as rendered (already scaled up, nearest-neighbour) and not stretched to the
    width of the output area."""
    picture.value = png
    if png[:8] == b"\x89PNG\r\n\x1a\n":
        picture.width, picture.height = (str(int.from_bytes(png[i:i + 4], "big")) for i in (16, 20))


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
        self.images = _image_batch(images)
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
            z = encode(self.model, _one_image(self.images, index))
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
        self.frames = [frame_png(torch.cat([m, s]), lik, self.scale)
                       for m, s in zip(self.growth.means, self.growth.samples)]
        last = len(self.frames) - 1
        self.play.max = self.slider.max = last
        self._say("")
        self.set_step(last)

    # --- moving through the trajectory
    def set_step(self, t: int) -> None:
        """Show state t (what the slider and Play call)."""
        self._show_step(t, self.growth is not None, "nothing has been grown yet")

    def _draw(self, t: int) -> None:
        self.step = t
        _show_png(self.picture, self.frames[t])
        info = self.growth.infos[t]
        self.caption.value = (f"<b>{html.escape(describe_state(info, len(self.frames), self.model.doubling))}</b>"
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
        self.images = _image_batch(images)
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
        self._connect()
        self.widget = self._layout(w)
        self._reset()
        self._show_controls()

    def _connect(self) -> None:
        """What each control calls when the reader changes it."""
        self.model_menu.observe(self._guarded(lambda _: self._reset()), names="value")
        self.kind.observe(self._guarded(lambda _: self._show_controls()), names="value")
        self.at_step.observe(self._guarded(lambda _: self._describe_at_step()), names="value")
        self.n_steps.observe(self._guarded(lambda _: self._describe_at_step()), names="value")
        for toggle in self.toggles:
            toggle.observe(self._guarded(lambda _: self._brush_from_toggles()), names="value")
        self.clear_button.on_click(self._guarded(lambda _: self.set_brush(None)))
        self.run_button.on_click(self._guarded(lambda _: self.run()))
        self.slider.observe(self._guarded(lambda change: self._draw(change["new"])), names="value")

    def _layout(self, w):
        """The controls, picture and captions, top to bottom."""
        grid = w.GridBox(self.toggles, layout=w.Layout(
            grid_template_columns=f"repeat({BRUSH_RESOLUTION}, 22px)", grid_gap="2px"))
        self.square_box = w.HBox([self.top, self.left, self.size])
        self.brush_box = w.VBox([w.HTML("brush (mapped onto the grid at the damage step):"), grid,
                                 self.clear_button])
        return w.VBox([
            w.HBox([self.model_menu, self.source, self.number]),
            w.HBox([self.kind, self.at_step, self.n_steps]), self.at_step_info,
            self.square_box, self.brush_box, self.run_button, self.message_area,
            w.HBox([self.play, self.slider]), self.picture, self.curve, self.caption, self.scores])

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
        self.at_step_info.value = (html.escape(describe_state(infos[t], len(infos), self.model.doubling))
                                   if 0 <= t < len(infos) else
                                   f"the trajectory has steps 0 to {len(infos) - 1}")

    def _latent(self, model) -> tuple[Tensor, Tensor | None]:
        if self.source.value == "test image":
            x = _one_image(self.images, self.number.value)
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
        self.frames = [frame_png(torch.cat([u, d]), lik, scale) for u, d in zip(result.undamaged, result.damaged)]
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
        self._show_step(t, self.result is not None, "press run first")

    def _draw(self, t: int) -> None:
        if not self.frames:
            return
        self.step = t
        r = self.result
        _show_png(self.picture, self.frames[t])
        _show_png(self.curve, self.bars[t])
        when = ("before the damage" if t < r.at_step else "the damaged state" if t == r.at_step else
                f"{t - r.at_step} steps after the damage")
        self.caption.value = (f"<b>{html.escape(describe_state(r.infos[t], len(self.frames), self.model.doubling))}"
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
            self.images = _image_batch(images)
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
        return [frame_png(torch.stack([ends[0], m] + ends[1:]), lik, self.scale) for m in means]

    def set_pair(self, a: int, b: int) -> None:
        """Encode test images a and b and decode the interpolation between them."""
        try:
            x_a, x_b = _one_image(self.images, a), _one_image(self.images, b)
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
        _show_png(self.picture, self._mode_frames()[1][i])
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
