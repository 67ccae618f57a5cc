"""Tests for vnca_tutorial.damage: right-half and random-square damage, masks, and the decoder hook."""
import pytest
import torch

from vnca_tutorial.damage import (apply_mask, as_hook, damage_random_square, damage_right_half,
                                  random_square_masks, right_half_mask, square_mask)
from vnca_tutorial.decoders import DoublingDecoder



def nonzero_state(b, c, h, w, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) + 1.0


@pytest.mark.parametrize("h,w", [(8, 8), (4, 7), (5, 2), (3, 1)])
def test_right_half_zeroes_exactly_the_right_columns(h, w):
    state = nonzero_state(2, 5, h, w)
    before = state.clone()
    out = damage_right_half(state)
    assert torch.equal(state, before)                          # not in place
    assert out.shape == state.shape
    cols = torch.arange(w)
    right = cols >= w // 2
    assert torch.count_nonzero(out[..., right]) == 0           # every channel, every row
    assert torch.equal(out[..., ~right], state[..., ~right])   # the rest untouched
    mask = right_half_mask(h, w)
    assert torch.equal(mask, right.expand(h, w))


def test_right_half_keeps_gradients_for_the_left():
    state = nonzero_state(1, 2, 4, 4).requires_grad_()
    damage_right_half(state).sum().backward()
    assert torch.equal(state.grad[..., :2], torch.ones(1, 2, 4, 2))
    assert torch.equal(state.grad[..., 2:], torch.zeros(1, 2, 4, 2))


@pytest.mark.parametrize("h,w", [(8, 8), (16, 12), (5, 7)])
def test_random_squares_are_half_size_and_inside_the_grid(h, w):
    masks = random_square_masks(32, h, w, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (32, h, w) and masks.dtype == torch.bool
    sh, sw = h // 2, w // 2
    for m in masks:
        rows = torch.nonzero(m.any(1)).flatten()
        cols = torch.nonzero(m.any(0)).flatten()
        assert len(rows) == sh and len(cols) == sw                  # H/2 x W/2 ...
        assert rows[-1] - rows[0] == sh - 1 and cols[-1] - cols[0] == sw - 1   # ... contiguous ...
        assert m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # ... and full
        assert m.sum() == sh * sw                                   # nothing outside the square
    # not the same square for every example
    assert len({tuple(torch.nonzero(m)[0].tolist()) for m in masks}) > 1


def test_random_squares_cover_every_position():
    masks = random_square_masks(400, 4, 4, generator=torch.Generator().manual_seed(1))
    corners = {tuple(torch.nonzero(m)[0].tolist()) for m in masks}
    assert corners == {(t, l) for t in range(3) for l in range(3)}


def test_random_squares_are_deterministic_under_a_generator():
    a = random_square_masks(6, 8, 8, generator=torch.Generator().manual_seed(3))
    b = random_square_masks(6, 8, 8, generator=torch.Generator().manual_seed(3))
    c = random_square_masks(6, 8, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_damage_random_square_zeroes_the_mask_in_every_channel():
    state = nonzero_state(6, 3, 8, 8)
    out = damage_random_square(state, generator=torch.Generator().manual_seed(9))
    masks = random_square_masks(6, 8, 8, generator=torch.Generator().manual_seed(9))
    damaged = (out == 0).all(1)                                 # (B, H, W), all channels zero
    assert torch.equal(damaged, masks)
    assert torch.equal(out[~masks[:, None].expand_as(out)], state[~masks[:, None].expand_as(state)])
    again = damage_random_square(state, generator=torch.Generator().manual_seed(9))
    assert torch.equal(out, again)


def test_square_mask():
    m = square_mask(8, 8, top=2, left=3, size=3)
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[2:5, 3:6] = True
    assert torch.equal(m, want)
    assert square_mask(8, 8, 6, 6, 4).sum() == 4                 # clipped at the edge


@pytest.mark.parametrize("top,left,size", [(-1, 0, 2), (0, -1, 2), (8, 0, 2), (0, 8, 2), (0, 0, 0)])
def test_square_mask_outside_the_grid(top, left, size):
    with pytest.raises(ValueError, match="8x8"):
        square_mask(8, 8, top, left, size)


def test_apply_mask_checks_the_grid():
    with pytest.raises(ValueError, match="does not match"):
        apply_mask(torch.ones(1, 2, 4, 4), torch.zeros(5, 5, dtype=torch.bool))
    # per-example masks
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True
    out = apply_mask(torch.ones(2, 3, 4, 4), masks)
    assert torch.count_nonzero(out[0] == 0) == 3 and torch.count_nonzero(out[1] == 0) == 0


@pytest.mark.parametrize("at", [0, 2, 5])
def test_as_hook_fires_at_exactly_one_step(at):
    calls = []

    def damage(state):
        calls.append(state.shape)
        return damage_right_half(state)

    dec = DoublingDecoder(z_dim=4, hidden=4, n_blocks=0, n_doublings=1, steps_per_stage=2)
    with torch.no_grad():
        _, states = dec(torch.ones(2, 4), return_states=True, on_step=as_hook(damage, at))
        _, clean = dec(torch.ones(2, 4), return_states=True)
    assert len(calls) == 1
    size = dec.schedule()[at].size
    assert calls[0] == (2, 4, size, size)
    for i, (s, c) in enumerate(zip(states, clean)):
        if i < at:
            assert torch.equal(s, c)
    assert torch.count_nonzero(states[at][..., size // 2:]) == 0
    assert torch.equal(states[at][..., :size // 2], clean[at][..., :size // 2])


def test_as_hook_leaves_other_states_alone():
    hook = as_hook(lambda s: s * 0, at_step=3)
    s = torch.ones(1, 1, 2, 2)
    assert hook(2, None, s) is s and hook(4, None, s) is s
    assert torch.count_nonzero(hook(3, None, s)) == 0


def test_square_mask_accepts_every_square_at_the_edges_of_what_is_valid():
    one = square_mask(4, 4, top=0, left=0, size=1)                 # one cell, in the corner
    assert one.sum() == 1 and one[0, 0]
    assert square_mask(4, 4, top=3, left=3, size=2).sum() == 1     # clipped to the grid
    for bad in (dict(top=-1, left=0, size=1), dict(top=0, left=-1, size=1), dict(top=4, left=0, size=1),
                dict(top=0, left=4, size=1), dict(top=0, left=0, size=0)):
        with pytest.raises(ValueError, match="does not lie"):
            square_mask(4, 4, **bad)
