"""Pool and damage training for the non-doubling VNCA (paper section 3.3, appendix A.3).

A pool keeps P final cell states with the image each was decoded for. Each training batch takes a share
of its examples from the pool (half of those damaged by zeroing a random H/2 x W/2 square) and the rest
fresh from q(z|x); all run T ~ U[min, max] NCA steps; the final states go back into the pool. (Four
additions, off by default: `state_overflow` penalises states that leave a box, `age` runs pool states
further before the loss sees them, `step_change` penalises pool states that are not fixed points, and
`regrowth` damages final states inside the graph and scores what grows back.) Gradients
stop at pool states. This teaches the NCA stable attractors that regrow after damage.
Explained in chapter 8 (book/08_pool_damage.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .damage import damage_random_square

if TYPE_CHECKING:
    from .model import VNCA


class StatePool:
    """P (state, image) pairs; empty slots are filled as training goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.states: Tensor | None = None   # (P, Z, H, W)
        self.images: Tensor | None = None   # (P, C, H, W)
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """n random slots: (indices, states, images)."""
        idx = torch.randperm(self.filled, generator=generator)[:n]
        return idx, self.states[idx], self.images[idx]

    def put(self, idx: Tensor, states: Tensor, images: Tensor) -> None:
        """Write states (detached) into slots ``idx``; fresh examples fill empty slots first."""
        if self.states is None:
            self.states = torch.zeros(self.size, *states.shape[1:], dtype=states.dtype)
            self.images = torch.zeros(self.size, *images.shape[1:], dtype=images.dtype)
        self.states[idx] = states.detach().to("cpu", self.states.dtype)
        self.images[idx] = images.detach().to("cpu", self.images.dtype)

    def slots_for_fresh(self, n: int, generator: torch.Generator | None = None,
                        exclude: Tensor | None = None) -> Tensor:
        """n distinct slots for fresh states: empty ones while the pool fills, then random ones that are
        not in ``exclude`` (the slots this batch drew, whose states go back where they came from)."""
        if self.filled + n <= self.size:
            idx = torch.arange(self.filled, self.filled + n)
            self.filled += n
            return idx
        empty = torch.arange(self.filled, self.size)
        self.filled = self.size
        taken = torch.zeros(self.size, dtype=torch.bool)
        taken[empty] = True
        if exclude is not None:
            taken[exclude] = True
        free = (~taken).nonzero().flatten()
        if len(free) < n - len(empty):
            raise ValueError(f"a pool of {self.size} states cannot take {n} fresh states beside the "
                             f"{int(taken.sum())} this batch holds; use a pool_size of at least the batch size")
        pick = free[torch.randperm(len(free), generator=generator)[: n - len(empty)]]
        return torch.cat([empty, pick])

    def tensors(self) -> dict[str, Tensor]:
        """For checkpoints: the filled part of the pool."""
        if self.states is None:
            return {}
        return {"pool.states": self.states[:self.filled], "pool.images": self.images[:self.filled]}

    def load(self, tensors: dict[str, Tensor]) -> None:
        if "pool.states" not in tensors:
            return
        states, images = tensors["pool.states"], tensors["pool.images"]
        self.put(torch.arange(len(states)), states, images)
        self.filled = len(states)


def state_overflow(state: Tensor, bound: float) -> Tensor:  # (B, Z, H, W) -> (B,)
    """sum |s - clamp(s, -bound, bound)| over cells and channels: how far the state has left the box
    [-bound, bound] (0 for ``bound == 0``, which switches the penalty off). Not in the paper: an explicit
    bound on the state, as the overflow loss of Niklasson et al.'s texture NCAs (chapter 8)."""
    if bound <= 0:
        return state.new_zeros(state.shape[0])
    return (state - state.clamp(-bound, bound)).abs().sum(dim=(1, 2, 3))


def age(model: VNCA, states: Tensor, max_extra: int, generator: torch.Generator | None = None) -> Tensor:
    """Run pool states E ~ U{0, ..., max_extra} more steps without gradient (identity for max_extra = 0).

    Not in the paper: it makes the states the loss sees older, at a third of the cost of training steps,
    so that the rule is trained to hold its image far beyond T_max (chapter 8)."""
    if max_extra <= 0:
        return states
    extra = int(torch.randint(0, max_extra + 1, (1,), generator=generator))
    with torch.no_grad():
        return model.decoder.run(states, extra)


def step_change(model: VNCA, states: Tensor) -> Tensor:  # (B, Z, H, W) -> (B,)
    """|s_{t+1} - s_t|: the L2 norm of the change one more NCA step makes to each state. Zero at a fixed
    point of the rule; the `stationarity` penalty of pool training (not in the paper; chapter 8)."""
    return (model.decoder.nca.step(states) - states).flatten(1).norm(dim=1)


def regrowth(model: VNCA, grown: Tensor, x: Tensor, steps: int,
             generator: torch.Generator | None = None) -> Tensor:  # (n, Z, H, W), (n, C, H, W) -> (n,)
    """log p(x|state) after a random square of each grown state is zeroed and ``steps`` more steps run.

    Not in the paper: inside the graph, so the gradient reaches the steps before the damage and rewards
    cells that keep what the digit needs where the damage does not reach (chapter 8)."""
    regrown = model.decoder.run(damage_random_square(grown, generator), steps)
    return model.likelihood(regrown).log_prob(x)


def pool_loss(model: VNCA, x: Tensor, pool: StatePool, beta: float, steps: int,
              generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
    """Minus the beta-ELBO of one pool-training batch (appendix A.3); x (B, C, H, W) are fresh images.

    Returns the loss and the batch statistics; updates the pool in place.
    """
    c = model.config
    b = x.shape[0]
    # at least one fresh image per batch, for the encoder and the KL (batch 2 at 0.75 would have none)
    n_pool = min(int(round(b * c.pool_fraction)), b - 1) if len(pool) >= b else 0
    x_fresh = x[: b - n_pool]
    q = model.q_z_given_x(x_fresh)
    z = q.rsample()                                                  # (B - n_pool, Z)
    kl = torch.distributions.kl_divergence(q, model.prior())         # (B - n_pool,)
    states, targets = model.decoder.seed(z), x_fresh.to(model.device)
    if n_pool:
        idx, pool_states, pool_x = pool.draw(n_pool, generator)
        pool_states = pool_states.to(model.device)                   # no gradient flows into the pool
        pool_states = age(model, pool_states, c.pool_extra_steps, generator)
        n_damage = int(round(n_pool * c.damage_fraction))
        pool_states = torch.cat([damage_random_square(pool_states[:n_damage], generator),
                                 pool_states[n_damage:]])
        states = torch.cat([states, pool_states])
        targets = torch.cat([targets, pool_x.to(model.device, targets.dtype)])
    final = model.decoder.run(states, steps)                         # (B, Z, H, W)
    reconstruction = model.likelihood(final).log_prob(targets)       # (B,)
    loss = -(reconstruction.sum() - beta * kl.sum()) / b
    overflow = state_overflow(final, c.state_bound)                  # (B,), zero when switched off
    loss = loss + overflow.sum() / b
    change = step_change(model, final[b - n_pool:]) if n_pool and c.stationarity > 0 else final.new_zeros(0)
    loss = loss + c.stationarity * change.sum() / b                  # (n_pool,): pool rows only
    n_regrow = int(round(b * c.regrow_fraction))                     # the first rows: fresh ones first
    regrown = (regrowth(model, final[:n_regrow], targets[:n_regrow], steps, generator) if n_regrow
               else final.new_zeros(0))                              # (n_regrow,)
    loss = loss - regrown.sum() / b
    fresh_slots = pool.slots_for_fresh(b - n_pool, generator, exclude=idx if n_pool else None)
    slots = torch.cat([fresh_slots, idx]) if n_pool else fresh_slots
    pool.put(slots, final, targets)
    stats = {"reconstruction": reconstruction.mean().item(), "kl": kl.mean().item(),
             "from_pool": n_pool, "overflow": overflow.mean().item(),
             "step_change": change.mean().item() if len(change) else 0.0,
             "regrowth": regrown.mean().item() if len(regrown) else 0.0}
    return loss, stats
