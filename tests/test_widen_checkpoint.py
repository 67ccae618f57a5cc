"""scripts/widen_checkpoint.py: widening the update network keeps every update, then trains (issue 15)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vnca_tutorial import VNCA, DoublingConfig, NonDoublingConfig
from vnca_tutorial.checkpoint import load_model, save_checkpoint

from helpers import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "widen_checkpoint.py"
CFG = NonDoublingConfig(z_dim=6, hidden=5, image_size=8, min_steps=2, max_steps=3, encoder_channels=4,
                        batch_size=2, pool_size=4)
DOUBLING = DoublingConfig(z_dim=6, hidden=5, n_blocks=2, image_size=8, n_doublings=2, encoder_channels=4)


def widen_module():
    return load_script("scripts/widen_checkpoint.py")


def trained_like(config=CFG) -> VNCA:
    """A model whose zero-initialised last layer has been moved, as training moves it."""
    torch.manual_seed(0)
    model = VNCA(config)
    torch.nn.init.normal_(model.decoder.nca.update_net.out.weight, std=0.3)
    torch.nn.init.normal_(model.decoder.nca.update_net.out.bias, std=0.1)
    return model


def test_widened_network_makes_the_same_updates_and_its_new_units_can_learn():
    old = trained_like()
    new = trained_like(CFG.replace(hidden=9))   # whatever the wider network held before is replaced
    widen_module().widen_update_network(old.decoder.nca.update_net, new.decoder.nca.update_net)
    state = torch.randn(3, CFG.z_dim, 8, 8)
    assert torch.allclose(old.decoder.nca.update_net(state), new.decoder.nca.update_net(state), atol=1e-6)
    # the new units perceive (random, non-zero weights) and their outgoing weights get a gradient
    assert new.decoder.nca.update_net.perceive.weight[5:].abs().sum() > 0
    new.decoder.nca.update_net(state).square().sum().backward()
    assert new.decoder.nca.update_net.out.weight.grad[:, 5:].abs().sum() > 0


def test_narrower_or_residual_networks_are_refused():
    w = widen_module()
    with pytest.raises(ValueError, match="below the old one"):
        w.widen_update_network(trained_like().decoder.nca.update_net, VNCA(CFG.replace(hidden=3)).decoder.nca.update_net)
    from vnca_tutorial.nca import UpdateNetwork
    with pytest.raises(ValueError, match="residual blocks"):
        w.widen_update_network(UpdateNetwork(6, 5, 1), UpdateNetwork(6, 9, 2))


def test_a_doubling_vnca_with_residual_blocks_widens_to_the_same_updates():
    """The emoji model (issue 19): two residual blocks; the old units must not read the new ones."""
    config = DOUBLING
    old, new = trained_like(config), VNCA(config.replace(hidden=9))
    for block in old.decoder.nca.update_net.blocks:          # trained-like blocks, not the default init
        for conv in (block.conv1, block.conv2):
            torch.nn.init.normal_(conv.weight, std=0.5)
    widen_module().widen_update_network(old.decoder.nca.update_net, new.decoder.nca.update_net)
    state = torch.randn(3, config.z_dim, 8, 8)
    assert torch.allclose(old.decoder.nca.update_net(state), new.decoder.nca.update_net(state), atol=1e-6)
    new.decoder.nca.update_net(state).square().sum().backward()
    block = new.decoder.nca.update_net.blocks[0]
    assert block.conv1.weight.grad[:5, 5:].abs().sum() > 0        # what old units read from new ones learns
    assert block.conv1.weight[5:].abs().sum() > 0                 # the new units perceive


@pytest.mark.parametrize("config", [CFG, DOUBLING], ids=["non-doubling", "doubling"])
def test_script_writes_a_checkpoint_that_decodes_like_the_original(tmp_path, monkeypatch, config):
    old = trained_like(config)
    src, out = tmp_path / "old.safetensors", tmp_path / "wide.safetensors"
    save_checkpoint(src, old, config, step=7)
    monkeypatch.setattr("sys.argv", ["widen", str(src), "--hidden", "9", "--out", str(out)])
    widen_module().main()
    wide = load_model(out)
    assert wide.config.hidden == 9 and wide.config.replace(hidden=5) == config
    z, steps = torch.randn(2, config.z_dim), (None if config is DOUBLING else 5)
    with torch.no_grad():
        before, after = old.decoder(z, steps=steps), wide.decoder(z, steps=steps)
    assert torch.allclose(before, after, rtol=1e-5, atol=1e-5 * before.abs().max().item())  # to rounding
    old_rest = {k: v for k, v in old.state_dict().items() if "update_net" not in k}
    wide_rest = {k: v for k, v in wide.state_dict().items() if "update_net" not in k}
    assert old_rest.keys() == wide_rest.keys() and all(torch.equal(old_rest[k], wide_rest[k]) for k in old_rest)
