"""The two NCA decoders: doubling (paper section 2) and non-doubling (section 3.3).

A decoder maps z (B, |z|) to final cell states (B, |z|, H, W); the likelihood reads the first channels.
Every decoder can record each intermediate state together with a `StepInfo` that says what produced it,
and accepts an ``on_step`` hook that may change the state after any step (this is how damage is applied).
Explained in chapter 2 (book/02_doubling.md) and chapter 8 (book/08_pool_damage.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from .nca import NCA, double

# A hook called after every state change: (index of the new state, StepInfo, state) -> state.
StepHook = Callable[[int, "StepInfo", Tensor], Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What produced one state of a growth trajectory."""
    index: int   # position in the trajectory (0 = the seed)
    kind: Literal["seed", "nca", "double"]   # the seed, one NCA step, or the doubling operator
    stage: int   # number of doublings done so far
    size: int    # grid side length after this state change


def _apply(states: list[Tensor] | None, hook: StepHook | None, info: StepInfo, state: Tensor) -> Tensor:
    if hook is not None:
        state = hook(info.index, info, state)
    if states is not None:
        states.append(state)
    return state


class DoublingDecoder(nn.Module):
    """z seeds a 2x2 grid; M NCA steps before each of K doublings and M after the last."""

    def __init__(self, z_dim: int, hidden: int, n_blocks: int, n_doublings: int, steps_per_stage: int,
                 bf16: bool = False, checkpointing: bool = False) -> None:
        super().__init__()
        self.nca = NCA(z_dim, hidden, n_blocks, bf16=bf16, checkpointing=checkpointing)
        self.n_doublings, self.steps_per_stage = n_doublings, steps_per_stage

    @property
    def n_steps(self) -> int:
        """M (K + 1): the number of NCA steps of a growth, fixed by the schedule."""
        return self.steps_per_stage * (self.n_doublings + 1)

    def check_steps(self, steps: int | None) -> None:
        """The doubling decoder takes ``steps`` only to share the non-doubling decoder's signature."""
        if steps is not None and steps != self.n_steps:
            raise ValueError(f"the doubling decoder always runs M (K + 1) = {self.n_steps} NCA steps (its "
                             f"steps_per_stage and n_doublings fix them), got steps={steps}; pass steps=None")

    def schedule(self, steps: int | None = None) -> list[StepInfo]:
        """The StepInfo of every state the decoder passes through, seed first."""
        self.check_steps(steps)
        infos, size, i = [StepInfo(0, "seed", 0, 2)], 2, 0
        for stage in range(self.n_doublings + 1):
            for _ in range(self.steps_per_stage):
                i += 1
                infos.append(StepInfo(i, "nca", stage, size))
            if stage < self.n_doublings:
                i, size = i + 1, size * 2
                infos.append(StepInfo(i, "double", stage + 1, size))
        return infos

    def seed(self, z: Tensor) -> Tensor:  # (B, Z) -> (B, Z, 2, 2)
        return z[:, :, None, None].expand(-1, -1, 2, 2).contiguous(memory_format=torch.channels_last)

    def forward(self, z: Tensor, steps: int | None = None, return_states: bool = False,
                on_step: StepHook | None = None):
        """Final states (B, Z, 2*2^K, 2*2^K); with ``return_states`` also the list of all states.
        ``steps``: None (or M (K + 1)); the growth's length is fixed."""
        states: list[Tensor] | None = [] if return_states else None
        infos = self.schedule(steps)
        state = _apply(states, on_step, infos[0], self.seed(z))
        for info in infos[1:]:
            state = self.nca.step(state) if info.kind == "nca" else double(state)
            state = _apply(states, on_step, info, state)
        return (state, states) if return_states else state


class NonDoublingDecoder(nn.Module):
    """z seeds every cell of the H x W grid; T NCA steps (T fixed, or drawn from [min, max])."""

    def __init__(self, z_dim: int, hidden: int, n_blocks: int, size: int, min_steps: int, max_steps: int,
                 bf16: bool = False, checkpointing: bool = False, p_update: float = 1.0) -> None:
        super().__init__()
        self.nca = NCA(z_dim, hidden, n_blocks, bf16=bf16, checkpointing=checkpointing, p_update=p_update)
        self.size, self.min_steps, self.max_steps = size, min_steps, max_steps

    def seed(self, z: Tensor) -> Tensor:  # (B, Z) -> (B, Z, H, W)
        return z[:, :, None, None].expand(-1, -1, self.size, self.size).contiguous(
            memory_format=torch.channels_last)

    def draw_steps(self, generator: torch.Generator | None = None) -> int:
        """T ~ Uniform{min_steps, ..., max_steps}, as in training (appendix A.3)."""
        return int(torch.randint(self.min_steps, self.max_steps + 1, (1,), generator=generator))

    def schedule(self, steps: int | None = None) -> list[StepInfo]:
        steps = self.max_steps if steps is None else steps
        return [StepInfo(0, "seed", 0, self.size)] + [
            StepInfo(i, "nca", 0, self.size) for i in range(1, steps + 1)]

    def run(self, state: Tensor, steps: int, return_states: bool = False,
            on_step: StepHook | None = None, start_index: int = 0):
        """Run ``steps`` NCA steps from any state (the pool algorithm starts from stored states)."""
        states: list[Tensor] | None = [] if return_states else None
        for i in range(1, steps + 1):
            info = StepInfo(start_index + i, "nca", 0, self.size)
            state = _apply(states, on_step, info, self.nca.step(state))
        return (state, states) if return_states else state

    def forward(self, z: Tensor, steps: int | None = None, return_states: bool = False,
                on_step: StepHook | None = None):
        """Final states (B, Z, H, W) after ``steps`` steps (default: max_steps)."""
        steps = self.max_steps if steps is None else steps
        states: list[Tensor] | None = [] if return_states else None
        state = _apply(states, on_step, StepInfo(0, "seed", 0, self.size), self.seed(z))
        if not return_states:
            return self.run(state, steps, on_step=on_step)
        final, rest = self.run(state, steps, return_states=True, on_step=on_step)
        return final, states + rest
