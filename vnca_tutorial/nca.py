"""The neural cellular automaton: the update network u, one NCA step, and the doubling operator.

Paper eq. (1): every cell updates its state from its 3x3 neighbourhood, s_{t+1} = s_t + u(s_t).
Explained in chapter 1 (book/01_nca.md) and chapter 2 (book/02_doubling.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def per_cell(conv: nn.Conv2d, h: Tensor) -> Tensor:  # (B, H, W, C_in) -> (B, H, W, C_out)
    """A 1x1 conv is the same small linear layer applied to every cell: one matrix multiply over a
    channels-last view of the grid (chapter 1; its speed against F.conv2d is in benchmarks/)."""
    return F.linear(h, conv.weight.flatten(1), conv.bias)


class _ELU(torch.autograd.Function):
    """ELU without expm1: forward exp(min(h, 0)) - 1 + max(h, 0); backward from the output alone, since
    dELU/dh is 1 where h > 0 and exp(h) = ELU(h) + 1 elsewhere, that is min(ELU(h), 0) + 1. (Changing the
    output in place would change the saved gradient: autograd refuses that in the backward pass.)"""

    generate_vmap_rule = True             # torch.func (vmap, jacrev) works through it

    @staticmethod
    def forward(h: Tensor) -> Tensor:
        return torch.exp(h.clamp(max=0)).sub_(1).add_(h.clamp(min=0))

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(output)      # the next layer keeps it too: one tensor for both

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return grad * (out.clamp(max=0) + 1)


def elu(h: Tensor) -> Tensor:  # any shape -> same
    """ELU(h): h where h > 0, exp(h) - 1 elsewhere; the update network's nonlinearity (chapter 1).

    For float32 and float64 on a CPU it is computed as exp(min(h, 0)) - 1 + max(h, 0) (``_ELU``): PyTorch
    2.14's CPU ``F.elu`` calls expm1 one value at a time, which took 38% of an evaluation's time
    (benchmarks/elu_speed.py measures both, in evaluation and in training). On a GPU, and in bf16 or
    float16 (where exp(h) - 1 loses the small negative values that expm1 keeps), ``F.elu``.
    """
    if h.device.type != "cpu" or h.dtype in (torch.bfloat16, torch.float16):
        return F.elu(h)
    return _ELU.apply(h)


class ResidualBlock(nn.Module):
    """x + conv1x1(ELU(conv1x1(x))): a per-cell MLP with a skip connection."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(hidden, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel_size=1)

    def forward(self, h: Tensor) -> Tensor:  # (B, H, W, hidden) channels last -> same
        return h + per_cell(self.conv2, elu(per_cell(self.conv1, h)))


class UpdateNetwork(nn.Module):
    """u(x): one 3x3 conv (perception of the neighbourhood), then per-cell 1x1 layers.

    With ``n_blocks > 0`` (the doubling VNCA): 3x3 conv -> n_blocks residual blocks -> 1x1 conv.
    With ``n_blocks == 0`` (the non-doubling VNCA): 3x3 conv -> ELU -> 1x1 conv.
    The last 1x1 conv starts at zero, so an untrained NCA step is the identity (chapter 1).
    """

    def __init__(self, channels: int, hidden: int, n_blocks: int) -> None:
        super().__init__()
        self.perceive = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(n_blocks)])
        self.n_blocks = n_blocks
        self.out = nn.Conv2d(hidden, channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, state: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        state = state.contiguous(memory_format=torch.channels_last)
        h = self.perceive(state).permute(0, 2, 3, 1)  # (B, H, W, hidden): a view, no copy
        h = self.blocks(h) if self.n_blocks else elu(h)
        return per_cell(self.out, h).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last memory


def reference_update(net: UpdateNetwork, state: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
    """u(s) the straightforward way, with ``net``'s weights: NCHW tensors and one ``F.conv2d`` per layer.
    It computes what ``UpdateNetwork.forward`` computes (the tests check it to rounding); the forward pass
    is the faster route on a CPU (chapter 1; benchmarks/benchmark.py measures both)."""
    h = F.conv2d(state.contiguous(), net.perceive.weight, net.perceive.bias, padding=1)
    if net.n_blocks == 0:
        h = F.elu(h)
    for block in net.blocks:
        h = h + F.conv2d(F.elu(F.conv2d(h, block.conv1.weight, block.conv1.bias)),
                         block.conv2.weight, block.conv2.bias)
    return F.conv2d(h, net.out.weight, net.out.bias)


class NCA(nn.Module):
    """The cellular automaton: a learned update rule applied to every cell at once.

    ``p_update < 1`` makes the updates stochastic, as in the paper's non-doubling code: on every step
    each cell applies its update with probability ``p_update`` and keeps its state otherwise, so cells
    cannot rely on a global clock (chapter 8). ``p_update = 1`` (the default) updates every cell.
    ``bf16=True`` runs u under bfloat16 autocast while the cell states accumulate in float32.
    ``checkpointing=True`` recomputes each step in the backward pass instead of storing it.
    """

    def __init__(self, channels: int, hidden: int, n_blocks: int, bf16: bool = False,
                 checkpointing: bool = False, p_update: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= p_update <= 1.0:
            raise ValueError(f"p_update is the probability that a cell updates on a step and must lie "
                             f"in [0, 1], got {p_update}")
        self.update_net = UpdateNetwork(channels, hidden, n_blocks)
        self.bf16 = bf16
        self.checkpointing = checkpointing
        self.p_update = p_update

    def update_mask(self, state: Tensor) -> Tensor | None:  # (B, C, H, W) -> (B, 1, H, W) or None
        """Which cells update on this step: a Bernoulli(p_update) draw per cell (None: all of them)."""
        if self.p_update >= 1.0:
            return None
        b, _, h, w = state.shape
        return (torch.rand(b, 1, h, w, device=state.device) < self.p_update).to(state.dtype)

    def _step(self, state: Tensor, mask: Tensor | None) -> Tensor:
        with torch.autocast(device_type=state.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            update = self.update_net(state).to(state.dtype)  # (B, C, H, W): bf16 back to the state's
        if mask is not None:
            update = update * mask                       # cells that do not fire keep their state
        return state + update                            # eq. (1): s_{t+1} = s_t + u(s_t)

    def step(self, state: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        """One NCA step for every cell (or, with p_update < 1, for a random subset of the cells)."""
        mask = self.update_mask(state)   # drawn here, so a recomputed (checkpointed) step reuses it
        if self.checkpointing and torch.is_grad_enabled() and state.requires_grad:
            return checkpoint(self._step, state, mask, use_reentrant=False)
        return self._step(state, mask)


def double(state: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
    """The doubling operator: every cell is copied to its right, below, and below-right."""
    b, c, h, w = state.shape
    cells = state.permute(0, 2, 3, 1)[:, :, None, :, None, :]        # (B, H, 1, W, 1, C)
    cells = cells.expand(b, h, 2, w, 2, c).reshape(b, 2 * h, 2 * w, c)  # (B, 2H, 2W, C)
    return cells.permute(0, 3, 1, 2)                                   # channels-last memory
