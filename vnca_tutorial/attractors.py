"""Does a VNCA hold its image, and does it regrow it? Measurements of stability and recovery.

The non-doubling VNCA is trained with a pool of states and damage so that each digit becomes a stable
attractor of the update rule (paper section 3.3, Fig. 9); the doubling VNCA is not (Fig. 11). These
functions measure that, for any VNCA, from the posterior mean z of test digits:

- `z_use`: log p(x|z) with the digit's own z against another digit's z (does the decoder use z?);
- `stability`: max |state| and log p(x|state) after T_max, 2 T_max, 10 T_max and 1,000 steps;
- `recovery`: damage the state at T_max and run T_max more steps: does log p(x|state) come back?

T_max is the number of NCA steps the model was trained to decode with (non-doubling: max_steps; doubling:
M (K + 1)). Steps beyond it run the same rule on the final grid. `benchmarks/attractors.py` prints these
figures for the shipped models and writes them into their cards. Explained in chapter 8
(book/08_pool_damage.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor

from .damage import damage_random_square, damage_right_half

if TYPE_CHECKING:
    from .model import VNCA

DAMAGES: dict[str, Callable[..., Tensor]] = {
    "random_square": damage_random_square,   # an H/2 x W/2 square, as in pool training
    "right_half": damage_right_half,         # never seen in training
}


def t_max(model: VNCA) -> int:
    """The number of NCA steps the model decodes with (what training saw last)."""
    c = model.config
    return c.max_steps if not model.doubling else c.n_steps


def log_px_given_state(model: VNCA, state: Tensor, x: Tensor) -> Tensor:  # (B, Z, H, W), (B, C, H, W) -> (B,)
    """log p(x | cell states): the likelihood read from the states' first channels, in nats; NaN for
    images whose state has overflowed (some value NaN or infinite)."""
    finite = torch.isfinite(state).flatten(1).all(1)                 # (B,)
    safe = torch.where(finite[:, None, None, None], state, torch.zeros_like(state))
    log_px = model.likelihood(safe).log_prob(x.to(state.device, torch.float32))
    return torch.where(finite, log_px, torch.full_like(log_px, float("nan")))


def run_on(model: VNCA, state: Tensor, steps: int) -> Tensor:  # (B, Z, H, W) -> same
    """``steps`` more NCA steps on the grid as it is (no doubling)."""
    for _ in range(steps):
        state = model.decoder.nca.step(state)
    return state


@torch.no_grad()
def z_use(model: VNCA, x: Tensor, seed: int = 0) -> dict[str, float]:
    """Mean log p(x|z) with each digit's posterior mean z and with a shuffled one (another digit's)."""
    z = model.q_z_given_x(x).mean                                   # (B, Z)
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))
    perm = torch.where(perm == torch.arange(len(z)), (perm + 1) % len(z), perm)  # never the own z
    own = model.p_x_given_z(z).log_prob(x).mean().item()
    shuffled = model.p_x_given_z(z[perm]).log_prob(x).mean().item()
    return {"own_z": own, "shuffled_z": shuffled, "difference": own - shuffled}


@dataclass
class Stability:
    """Per-image figures at each step count of ``steps``: max |state| and log p(x|state)."""
    steps: list[int]
    max_abs: Tensor         # (len(steps), B)
    log_px: Tensor          # (len(steps), B)

    def summary(self) -> dict:
        finite = torch.isfinite(self.max_abs) & torch.isfinite(self.log_px)     # (len(steps), B)
        within_3x = self.max_abs <= 3 * self.max_abs[0]                          # NaN compares False
        within_10 = self.log_px >= self.log_px[0] - 10
        return {"steps": self.steps,
                "digits_state_within_3x": (finite & within_3x).sum(1).tolist(),   # per step count
                "digits_log_px_within_10_nats": (finite & within_10).sum(1).tolist(),
                "max_abs_state_median": self.max_abs.median(1).values.tolist(),
                "max_abs_state_max": self.max_abs.max(1).values.tolist(),
                "log_px_mean": self.log_px.mean(1).tolist(),       # NaN once any image has overflowed
                "fraction_finite": finite.float().mean(1).tolist(),
                "all_finite": bool(finite.all())}


@torch.no_grad()
def stability(model: VNCA, x: Tensor, multiples: tuple[int, ...] = (1, 2, 10), long: int = 1000) -> Stability:
    """Decode each digit's posterior mean z and keep running: the figures at T_max times ``multiples``
    and at ``long`` steps."""
    T = t_max(model)
    if long < T or min(multiples) < 1:
        raise ValueError(f"stability starts at T_max = {T} steps: need long >= {T} (got {long}) and "
                         f"multiples >= 1 (got {multiples})")
    steps = sorted({T * m for m in multiples} | {long})
    state = model.decode(model.q_z_given_x(x).mean)                 # (B, Z, H, W) at T_max
    done, max_abs, log_px = T, [], []
    for n in steps:
        state = run_on(model, state, n - done)
        done = n
        max_abs.append(state.abs().flatten(1).max(1).values)
        log_px.append(log_px_given_state(model, state, x))
    return Stability(steps, torch.stack(max_abs), torch.stack(log_px))


@dataclass
class Recovery:
    """log p(x|state) of each digit at T_max undamaged, right after damage, and T_max steps later."""
    damage: str
    before: Tensor          # (B,)
    damaged: Tensor         # (B,)
    after: Tensor           # (B,)
    tolerance: float

    @property
    def recovered(self) -> Tensor:  # (B,) bool
        return self.after >= self.before - self.tolerance

    def summary(self) -> dict:
        return {"damage": self.damage, "tolerance_nats": self.tolerance,
                "fraction_recovered": self.recovered.float().mean().item(),
                "log_px_before": self.before.mean().item(), "log_px_damaged": self.damaged.mean().item(),
                "log_px_after": self.after.mean().item()}


@torch.no_grad()
def recovery(model: VNCA, x: Tensor, damage: str = "random_square", tolerance: float = 10.0,
             seed: int = 0) -> Recovery:
    """Damage the state of each digit at T_max, run T_max more steps: is log p(x|state) back within
    ``tolerance`` nats of its undamaged value at T_max?"""
    if damage not in DAMAGES:
        raise ValueError(f"unknown damage {damage!r}; choose one of {sorted(DAMAGES)}")
    T = t_max(model)
    state = model.decode(model.q_z_given_x(x).mean)
    before = log_px_given_state(model, state, x)
    kw = {"generator": torch.Generator().manual_seed(seed)} if damage == "random_square" else {}
    hurt = DAMAGES[damage](state, **kw)
    damaged = log_px_given_state(model, hurt, x)
    after = log_px_given_state(model, run_on(model, hurt, T), x)
    return Recovery(damage, before, damaged, after, tolerance)


def independent_pixel_log_px(train: Tensor, test: Tensor) -> Tensor:  # (N, C, H, W), (M, C, H, W) -> (M,)
    """log p(x) of binary images under independent Bernoulli pixels with the training set's means: the
    simplest baseline a generative model of binary images must beat."""
    p = train.float().mean(0).clamp(1e-6, 1 - 1e-6)                # (C, H, W)
    x = test.float()
    return (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)


@dataclass
class AttractorReport:
    """Everything `benchmarks/attractors.py` records for one model on one set of test digits."""
    n_images: int
    t_max: int
    z_use: dict
    stability: dict
    recovery: list

    def as_dict(self) -> dict:
        return asdict(self)


def attractor_report(model: VNCA, x: Tensor, seed: int = 0) -> AttractorReport:
    """`z_use`, `stability` and `recovery` (both damages) of ``model`` on test digits ``x``, with every
    random draw (update masks, damage squares) made under ``seed``."""
    torch.manual_seed(seed)
    return AttractorReport(
        n_images=len(x), t_max=t_max(model), z_use=z_use(model, x, seed),
        stability=stability(model, x).summary(),
        recovery=[recovery(model, x, d, seed=seed).summary() for d in DAMAGES])
