"""Tests for vnca_tutorial.decoders: the doubling and non-doubling NCA decoders."""
import functools

import pytest
import torch

from vnca_tutorial.config import PRESETS, BaselineConfig, DoublingConfig
from vnca_tutorial.decoders import DoublingDecoder, NonDoublingDecoder, StepInfo
from vnca_tutorial.model import make_decoder
from vnca_tutorial.nca import double

from helpers import randomise as _randomise

randomise = functools.partial(_randomise, std=0.1)   # this module's scale of random weights


def tiny_doubling(k=2, m=3, z=6, seed=0):
    dec = DoublingDecoder(z_dim=z, hidden=8, n_blocks=1, n_doublings=k, steps_per_stage=m)
    randomise(dec, seed)
    return dec


def tiny_nondoubling(size=5, lo=2, hi=4, z=6, seed=0):
    dec = NonDoublingDecoder(z_dim=z, hidden=8, n_blocks=0, size=size, min_steps=lo, max_steps=hi)
    randomise(dec, seed)
    return dec


VNCA_PRESETS = sorted(n for n, c in PRESETS.items() if not isinstance(c, BaselineConfig))


@pytest.mark.parametrize("name", VNCA_PRESETS)
def test_every_preset_decodes_to_the_image_size(name):
    cfg = PRESETS[name]
    # shrink the widths only; K, M, T and the image size stay those of the preset
    tiny = cfg.replace(z_dim=max(4, cfg.n_likelihood_channels + 2), hidden=4, n_blocks=min(cfg.n_blocks, 1))
    dec = make_decoder(tiny)
    z = torch.randn(2, tiny.z_dim)
    with torch.no_grad():
        if isinstance(cfg, DoublingConfig):
            assert (dec.n_doublings, dec.steps_per_stage) == (cfg.n_doublings, cfg.steps_per_stage)
            out = dec(z)
        else:
            assert (dec.min_steps, dec.max_steps, dec.size) == (cfg.min_steps, cfg.max_steps, cfg.image_size)
            out = dec(z, steps=cfg.min_steps)
    assert out.shape == (2, tiny.z_dim, cfg.image_size, cfg.image_size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("k,m", [(1, 1), (2, 3), (4, 8), (5, 8)])
def test_doubling_schedule(k, m):
    dec = DoublingDecoder(z_dim=4, hidden=4, n_blocks=0, n_doublings=k, steps_per_stage=m)
    sched = dec.schedule()
    kinds = [s.kind for s in sched]
    assert len(sched) == 1 + m * (k + 1) + k
    assert kinds.count("seed") == 1 and kinds[0] == "seed"
    assert kinds.count("nca") == m * (k + 1)
    assert kinds.count("double") == k
    # M NCA steps before every doubling and after the last one
    assert kinds == ["seed"] + (["nca"] * m + ["double"]) * k + ["nca"] * m
    assert [s.index for s in sched] == list(range(len(sched)))
    size, stage = 2, 0
    for s in sched:
        if s.kind == "double":
            size, stage = size * 2, stage + 1
        assert (s.size, s.stage) == (size, stage)
    assert sched[-1].size == 2 * 2 ** k


def test_doubling_return_states_follow_the_schedule():
    dec = tiny_doubling(k=2, m=3)
    z = torch.randn(2, 6)
    with torch.no_grad():
        final, states = dec(z, return_states=True)
        plain = dec(z)
    sched = dec.schedule()
    assert len(states) == len(sched)
    for s, info in zip(states, sched):
        assert s.shape == (2, 6, info.size, info.size)
    assert torch.equal(final, states[-1])
    torch.testing.assert_close(plain, final)
    # seed: z in every cell of a 2x2 grid
    assert torch.equal(states[0], z[:, :, None, None].expand(2, 6, 2, 2))
    # each state comes from the previous one by exactly what the schedule says
    with torch.no_grad():
        for i in range(1, len(sched)):
            want = double(states[i - 1]) if sched[i].kind == "double" else dec.nca.step(states[i - 1])
            torch.testing.assert_close(states[i], want)
            if sched[i].kind == "nca":
                assert not torch.equal(states[i], states[i - 1])   # the randomised NCA moves


def test_hook_called_once_per_state_in_order():
    dec = tiny_doubling(k=1, m=2)
    calls = []

    def hook(index, info, state):
        calls.append((index, info, tuple(state.shape)))
        return state

    with torch.no_grad():
        dec(torch.randn(1, 6), on_step=hook)
    sched = dec.schedule()
    assert [c[0] for c in calls] == [s.index for s in sched]
    assert [c[1] for c in calls] == sched
    assert all(isinstance(c[1], StepInfo) for c in calls)
    assert [c[2][-1] for c in calls] == [s.size for s in sched]


@pytest.mark.parametrize("at", [0, 3, 4, 9])
def test_hook_can_change_the_state(at):
    dec = tiny_doubling(k=2, m=3)
    z = torch.randn(2, 6)

    def zero_at(index, info, state):
        return torch.zeros_like(state) if index == at else state

    with torch.no_grad():
        _, clean = dec(z, return_states=True)
        final, hit = dec(z, return_states=True, on_step=zero_at)
    for i in range(at):
        assert torch.equal(hit[i], clean[i])
    assert torch.count_nonzero(hit[at]) == 0
    for i in range(at + 1, len(clean)):
        assert not torch.allclose(hit[i], clean[i])
    assert torch.equal(final, hit[-1])


# --- non-doubling ---------------------------------------------------------------------------------
def test_nondoubling_fixed_steps():
    dec = tiny_nondoubling(size=5, lo=2, hi=4)
    z = torch.randn(2, 6)
    with torch.no_grad():
        final, states = dec(z, steps=3, return_states=True)
        assert torch.equal(dec(z, steps=3), final)
        default = dec(z)                                            # max_steps
        _, all_max = dec(z, return_states=True)
    assert len(states) == 3 + 1
    assert all(s.shape == (2, 6, 5, 5) for s in states)
    assert torch.equal(states[0], z[:, :, None, None].expand(2, 6, 5, 5))
    assert len(all_max) == 4 + 1
    torch.testing.assert_close(default, all_max[-1])
    assert [s.index for s in dec.schedule(3)] == [0, 1, 2, 3]
    assert [s.kind for s in dec.schedule()] == ["seed"] + ["nca"] * 4
    assert all(s.size == 5 for s in dec.schedule())


def test_nondoubling_draw_steps():
    dec = tiny_nondoubling(lo=2, hi=5)
    draws = [dec.draw_steps(torch.Generator().manual_seed(s)) for s in range(200)]
    assert set(draws) == {2, 3, 4, 5}                    # within [min, max], both ends reachable
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [dec.draw_steps(g1) for _ in range(10)] == [dec.draw_steps(g2) for _ in range(10)]
    # a drawn T is run as given
    t = dec.draw_steps(torch.Generator().manual_seed(3))
    with torch.no_grad():
        final, states = dec(torch.randn(1, 6), steps=t, return_states=True)
    assert len(states) == t + 1 and len(dec.schedule(t)) == t + 1
    fixed = tiny_nondoubling(lo=3, hi=3)
    assert {fixed.draw_steps() for _ in range(20)} == {3}


def test_nondoubling_run_from_a_given_state():
    dec = tiny_nondoubling(size=4, lo=1, hi=6)
    z = torch.randn(2, 6)
    with torch.no_grad():
        start = torch.randn(2, 6, 4, 4)
        s = start
        for _ in range(3):
            s = dec.nca.step(s)
        torch.testing.assert_close(dec.run(start, 3), s)
        # growing 2 + 3 steps equals growing 2 steps and then running 3 more
        torch.testing.assert_close(dec.run(dec(z, steps=2), 3), dec(z, steps=5))
        seen = []
        final, states = dec.run(start, 3, return_states=True, start_index=10,
                                on_step=lambda i, info, st: seen.append((i, info.kind)) or st)
    assert len(states) == 3 and torch.equal(final, states[-1])
    assert seen == [(11, "nca"), (12, "nca"), (13, "nca")]
    with torch.no_grad():
        assert torch.equal(dec.run(start, 0), start)


def test_nondoubling_hook_changes_later_states():
    dec = tiny_nondoubling(size=4, lo=1, hi=4)
    z = torch.randn(1, 6)
    with torch.no_grad():
        _, clean = dec(z, steps=4, return_states=True)
        _, hit = dec(z, steps=4, return_states=True,
                     on_step=lambda i, info, st: st * 0 if i == 2 else st)
    assert torch.equal(hit[1], clean[1])
    assert torch.count_nonzero(hit[2]) == 0
    assert not torch.allclose(hit[3], clean[3]) and not torch.allclose(hit[4], clean[4])


def test_both_decoders_take_steps_and_the_doubling_one_only_its_own_count():
    dec = DoublingDecoder(z_dim=4, hidden=8, n_blocks=1, n_doublings=2, steps_per_stage=3)
    z = torch.randn(2, 4)
    assert dec.n_steps == 9
    assert torch.equal(dec(z, steps=9), dec(z)) and dec.schedule(9) == dec.schedule()
    for bad in (8, 10):
        with pytest.raises(ValueError, match=r"always runs M \(K \+ 1\) = 9 NCA steps.*steps=None"):
            dec(z, steps=bad)
        with pytest.raises(ValueError, match="steps=None"):
            dec.schedule(bad)


def test_every_model_says_whether_it_grows():
    from vnca_tutorial.model import build_model
    assert build_model("mnist_doubling_cpu").grows and build_model("mnist_nondoubling_cpu").grows
    assert not build_model("mnist_baseline_cpu").grows


def test_every_state_of_the_non_doubling_decoder_is_at_stage_0_and_full_size():
    """Without doublings there is one stage: the schedule, the hooks of forward and of run (which the pool
    continues from stored states) all say stage 0, at the grid's size, with consecutive indices."""
    dec = tiny_nondoubling(size=6)
    z = torch.randn(2, 6)
    seen = []
    dec(z, steps=3, on_step=lambda index, info, s: seen.append(info) or s)
    _, states = dec(z, steps=3, return_states=True)
    dec.run(torch.randn(2, 6, 6, 6), steps=2, on_step=lambda index, info, s: seen.append(info) or s, start_index=5)
    want = [StepInfo(0, "seed", 0, 6)] + [StepInfo(i, "nca", 0, 6) for i in (1, 2, 3)]
    assert dec.schedule(3) == want and seen[:4] == want and len(states) == 4
    assert seen[4:] == [StepInfo(6, "nca", 0, 6), StepInfo(7, "nca", 0, 6)]
