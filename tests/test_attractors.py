"""Tests for vnca_tutorial.attractors: the stability and recovery figures of benchmarks/attractors.py."""
import itertools

import pytest
import torch

from vnca_tutorial.attractors import (attractor_report, independent_pixel_log_px, log_px_given_state,
                                      recovery, run_on, stability, t_max, z_use)
from vnca_tutorial.config import get_preset
from vnca_tutorial.model import VNCA

torch.set_num_threads(1)


def nondoubling(**kw) -> VNCA:
    torch.manual_seed(0)
    return VNCA(get_preset("mnist_nondoubling_cpu", z_dim=4, hidden=8, encoder_channels=2, image_size=16,
                           batch_size=4, min_steps=2, max_steps=3, **kw)).eval()


def images(n=6):
    return (torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.3).float()


def test_t_max_is_what_the_decoder_runs():
    assert t_max(nondoubling()) == 3
    torch.manual_seed(0)
    doubling = VNCA(get_preset("mnist_doubling_cpu", z_dim=4, hidden=8, encoder_channels=2, image_size=8,
                               n_doublings=2, steps_per_stage=3))
    assert t_max(doubling) == 9 == sum(i.kind == "nca" for i in doubling.decoder.schedule())


def test_independent_pixels_normalise_over_all_images():
    train = (torch.rand(50, 1, 2, 2, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    total = independent_pixel_log_px(train, every).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)
    # each pixel has its own mean: pixel 0 always on and the others always off in training makes that
    # image certain and an image with any other pixel on nearly impossible
    corner = torch.zeros(10, 1, 2, 2)
    corner[:, 0, 0, 0] = 1.0
    assert independent_pixel_log_px(corner, corner[:1]).item() == pytest.approx(0.0, abs=1e-4)
    assert independent_pixel_log_px(corner, torch.ones(1, 1, 2, 2)).item() < -40


def test_the_identity_rule_is_perfectly_stable_and_never_repairs():
    model, x = nondoubling(), images()                       # the zero-initialised rule: steps do nothing
    s = stability(model, x, multiples=(1, 2), long=20)
    assert s.steps == [3, 6, 20]
    assert torch.equal(s.max_abs[0], s.max_abs[-1]) and torch.equal(s.log_px[0], s.log_px[-1])
    r = recovery(model, x, "right_half")
    assert torch.equal(r.after, r.damaged)                  # nothing grows back
    assert (r.damaged <= r.before + 1e-4).all() or not r.recovered.all()


def test_a_growing_rule_is_reported_unstable():
    model, x = nondoubling(), images()
    with torch.no_grad():                                    # u(s) = 0.5 s: the state grows by 1.5 per step
        net = model.decoder.nca.update_net
        net.perceive.weight.zero_(); net.perceive.bias.zero_(); net.out.weight.zero_()
        for c in range(4):
            net.perceive.weight[c, c, 1, 1] = 1.0
            net.out.weight[c, c] = 0.5
    net.eval()
    s = stability(model, x, multiples=(1, 2), long=12)
    ratio = s.max_abs[-1] / s.max_abs[0]                    # ELU is the identity for s > 0, shrinks s < 0
    assert (ratio > 5).all()


def test_log_px_of_an_overflowed_state_is_nan_not_an_error():
    model, x = nondoubling(), images(2)
    state = torch.zeros(2, 4, 16, 16)
    state[1, 2, 3, 3] = float("inf")
    log_px = log_px_given_state(model, state, x)
    assert torch.isfinite(log_px[0]) and torch.isnan(log_px[1])
    assert log_px[0].item() == pytest.approx(-16 * 16 * torch.log(torch.tensor(2.0)).item(), rel=1e-5)


def test_stability_counts_the_digits_held_against_their_own_t_max_figures():
    from vnca_tutorial.attractors import Stability
    nan = float("nan")
    s = Stability(steps=[32, 320],
                  max_abs=torch.tensor([[2.0, 10.0, 1.0, 5.0], [6.0, 31.0, 1.0, nan]]),
                  log_px=torch.tensor([[-100.0, -50.0, -80.0, -90.0], [-110.0, -55.0, -90.01, -90.0]]))
    summary = s.summary()
    assert summary["digits_state_within_3x"] == [4, 2]            # 6 <= 3 * 2; 31 > 30; 1 <= 3; NaN is not
    assert summary["digits_log_px_within_10_nats"] == [4, 2]      # -110 >= -110; -55 >= -60; -90.01 < -90


def test_stability_refuses_a_horizon_shorter_than_t_max():
    """Step counts below T_max cannot be run from the state at T_max: refused, not silently mislabelled."""
    model, x = nondoubling(), images(2)
    T = t_max(model)
    with pytest.raises(ValueError, match=f"long >= {T}"):
        stability(model, x, long=T - 1)
    with pytest.raises(ValueError, match="multiples >= 1"):
        stability(model, x, multiples=(0, 1), long=T)
    assert stability(model, x, multiples=(1,), long=T).steps == [T]


def test_recovery_counts_digits_back_within_the_tolerance():
    model, x = nondoubling(), images()
    r = recovery(model, x, "random_square", tolerance=10.0)
    r.after = r.before - torch.tensor([0.0, 5.0, 9.99, 10.01, 50.0, -3.0])
    assert r.recovered.tolist() == [True, True, True, False, False, True]
    assert r.summary()["fraction_recovered"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="unknown damage"):
        recovery(model, x, "left_half")


def test_z_use_compares_with_another_digits_z():
    model, x = nondoubling(), images()
    with torch.no_grad():                                    # a decoder that copies z[0] into the logits
        model.decoder.nca.update_net.out.weight.zero_()
    u = z_use(model, x)
    assert u["difference"] == pytest.approx(u["own_z"] - u["shuffled_z"])
    z = model.q_z_given_x(x).mean
    own = model.p_x_given_z(z).log_prob(x).mean().item()
    assert u["own_z"] == pytest.approx(own, rel=1e-6)
    assert u["shuffled_z"] != pytest.approx(own, rel=1e-6)


def test_the_report_is_reproducible_under_its_seed():
    model, x = nondoubling(p_update=0.5), images()
    with torch.no_grad():
        model.decoder.nca.update_net.out.weight.normal_(0, 0.1)
    a, b = attractor_report(model, x, seed=3).as_dict(), attractor_report(model, x, seed=3).as_dict()
    assert a == b
    assert attractor_report(model, x, seed=4).as_dict() != a
    assert [r["damage"] for r in a["recovery"]] == ["random_square", "right_half"]
    assert a["stability"]["steps"] == [3, 6, 30, 1000]
