"""scripts/add_mixture_components.py: more logistic components for a trained RGB VNCA (issue 19)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vnca_tutorial import VNCA, DoublingConfig
from vnca_tutorial.checkpoint import load_model, save_checkpoint

from helpers import load_script, randomise

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "add_mixture_components.py"
RGB = DoublingConfig(z_dim=14, hidden=6, n_blocks=1, image_size=8, n_doublings=2, steps_per_stage=2,
                     encoder_channels=4, image_channels=3, likelihood="dlogistic", n_mix=1)


def script():
    return load_script("scripts/add_mixture_components.py")


def trained_like(config=RGB) -> VNCA:
    """Random weights everywhere, the zero-initialised last layer included, as training leaves them."""
    return randomise(VNCA(config)).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_channel_sources_follow_the_likelihood_layout():
    """L 1 -> 2 on 12 channels: logits [0, 0*], means [1,2,3, 1*,2*,3*], scales [4..6, 4*..6*], ..."""
    sources = script().channel_sources(12, 1, 2)
    assert len(sources) == 22
    assert [s for s, _ in sources[:8]] == [0, 0, 1, 2, 3, 1, 2, 3]
    assert [c for _, c in sources[:8]] == [False, True, False, False, False, True, True, True]
    assert [s for s, _ in sources[8:14]] == [4, 5, 6, 4, 5, 6] and [s for s, _ in sources[14:20]] == [7, 8, 9] * 2
    assert sources[20:] == [(10, False), (11, False)]                        # memory keeps its order
    assert sorted({s for s, c in sources if not c}) == list(range(12))        # every old channel once


def test_channel_sources_from_two_components_keep_each_in_its_place():
    """L 2 -> 3 on 22 channels: component 2 copies component 0; components 0 and 1 stay themselves."""
    sources = script().channel_sources(22, 2, 3)
    assert [s for s, _ in sources[:3]] == [0, 1, 0]                          # logits
    assert [s for s, _ in sources[3:12]] == [2, 3, 4, 5, 6, 7, 2, 3, 4]       # means
    assert [s for s, _ in sources[12:21]] == [8, 9, 10, 11, 12, 13, 8, 9, 10]  # log-scales
    assert [s for s, _ in sources[21:30]] == [14, 15, 16, 17, 18, 19, 14, 15, 16]
    assert sources[30:] == [(20, False), (21, False)]


@pytest.mark.parametrize("old_mix, new_mix", [(1, 3), (2, 3)])
def test_with_a_very_low_logit_the_new_model_computes_the_old_likelihood(old_mix, new_mix):
    """The old channels are only permuted: on the same z (new dimensions 0) the likelihood is the old one."""
    config = RGB.replace(n_mix=old_mix, z_dim=4 + 10 * old_mix)
    old, new = trained_like(config), VNCA(config.replace(n_mix=new_mix, z_dim=4 + 10 * new_mix)).eval()
    script().add_components(old, new, logit_offset=-1e4)
    x = images()
    with torch.no_grad():
        q_old, q_new = old.q_z_given_x(x), new.q_z_given_x(x)
        sources = script().channel_sources(config.z_dim, old_mix, new_mix)
        copied = torch.tensor([c for _, c in sources])
        kept = torch.tensor([s for s, c in sources if not c])
        assert torch.allclose(q_new.base_dist.loc[:, ~copied], q_old.base_dist.loc[:, kept], atol=1e-6)
        assert torch.allclose(q_new.base_dist.scale[:, ~copied], q_old.base_dist.scale[:, kept], rtol=1e-5)
        assert torch.all(q_new.base_dist.loc[:, copied] == 0)
        assert torch.allclose(q_new.base_dist.scale[:, copied], torch.tensor(math.exp(-2.0)))
        z_new = q_new.base_dist.loc.clone()
        z_new[:, copied] = 0
        before = old.p_x_given_z(q_old.base_dist.loc).log_prob(x)
        after = new.p_x_given_z(z_new).log_prob(x)
    assert torch.allclose(before, after, rtol=1e-5), (before, after)


def test_the_default_offset_starts_the_new_components_small_and_they_learn():
    old, new = trained_like(), VNCA(RGB.replace(n_mix=2, z_dim=24))
    script().add_components(old, new, logit_offset=-4.0)
    x = images()
    with torch.no_grad():
        z = new.q_z_given_x(x).base_dist.loc
        weights = new.p_x_given_z(z).mix_logits.softmax(dim=-3)           # (B, 2, H, W)
    assert weights[:, 1].max() < 0.2 and weights[:, 1].min() > 0           # small, not dead
    new.train()
    (-new.p_x_given_z(new.q_z_given_x(x).rsample()).log_prob(x).sum()).backward()
    net = new.decoder.nca.update_net
    copied = torch.tensor([c for _, c in script().channel_sources(14, 1, 2)])
    assert net.perceive.weight.grad[:, copied].abs().sum() > 0              # the new channels can be read
    assert net.out.weight.grad[copied].abs().sum() > 0


def test_wrong_shapes_and_likelihoods_are_refused():
    s = script()
    with pytest.raises(ValueError, match="10 more channels"):
        s.add_components(trained_like(), VNCA(RGB.replace(n_mix=2, z_dim=20)), -4.0)
    binary = DoublingConfig(z_dim=8, hidden=6, n_blocks=1, image_size=8, n_doublings=2, encoder_channels=4)
    with pytest.raises(ValueError, match="dlogistic"):
        s.add_components(VNCA(binary), VNCA(binary.replace(z_dim=18)), -4.0)


def test_the_command_line_writes_a_checkpoint_and_refuses_bad_flags(tmp_path):
    path = tmp_path / "old.safetensors"
    save_checkpoint(path, trained_like(), RGB, step=7)
    run = lambda *flags: subprocess.run([sys.executable, str(SCRIPT), str(path), *flags],
                                        capture_output=True, text=True)
    done = run("--n-mix", "2", "--out", str(tmp_path / "new.safetensors"))
    assert done.returncode == 0, done.stderr
    assert "z_dim 14 -> 24" in done.stdout
    assert load_model(tmp_path / "new.safetensors").config.n_mix == 2
    assert "must exceed" in run("--n-mix", "1", "--out", str(tmp_path / "x")).stderr
    assert "must be negative" in run("--n-mix", "2", "--logit-offset", "0", "--out", str(tmp_path / "x")).stderr


@pytest.mark.parametrize("n_mix", [1, 3])
def test_the_readout_probe_starts_from_the_models_own_likelihood(n_mix):
    """benchmarks/mixture_readout_probe.py: every component starts as the model's readout of channels 0..9,
    so without the nudge its mixture is the model's own p(x|z)."""
    probe = load_script("benchmarks/mixture_readout_probe.py")
    model, x = trained_like(), images()
    with torch.no_grad():
        z = model.q_z_given_x(x).base_dist.loc
        head = probe.readout(RGB.z_dim, n_mix, noise=0.0)
        ours = probe.DiscretizedLogisticMixture(head(model.decode(z)), n_mix).log_prob(x)
        assert torch.allclose(ours, model.p_x_given_z(z).log_prob(x), rtol=1e-5)
        expected = -model.p_x_given_z(z).log_prob(x).sum().item() / (x[0].numel() * len(x) * math.log(2))
        assert math.isclose(probe.readout_bpd(head, model.decode(z), x, n_mix), expected, rel_tol=1e-5)
