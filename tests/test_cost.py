"""vnca_tutorial.cost: the MACs counted from the architecture agree with PyTorch's own FLOP counter."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vnca_tutorial import get_preset
from vnca_tutorial.cost import cell_updates, forward_cost, layer_macs, update_macs_per_cell
from vnca_tutorial.decoders import StepInfo
from vnca_tutorial.model import build_model

TINY = dict(z_dim=6, hidden=10, encoder_channels=4)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            fn()
    return counter.get_total_flops()


def test_cell_updates_sum_the_grid_area_over_the_nca_steps_only():
    schedule = [StepInfo(0, "seed", 0, 2), StepInfo(1, "nca", 0, 2), StepInfo(2, "double", 1, 4),
                StepInfo(3, "nca", 1, 4), StepInfo(4, "nca", 1, 4)]
    assert cell_updates(schedule) == 4 + 16 + 16


@pytest.mark.parametrize("preset, extra", [("mnist_doubling_cpu", dict(n_blocks=2, steps_per_stage=3)),
                                           ("mnist_nondoubling_cpu", dict(min_steps=2, max_steps=5))])
def test_decoder_macs_are_half_the_flops_torch_counts(preset, extra):
    """2 x (u's weights) x (cell updates of the schedule) = what FlopCounterMode counts for a decoding."""
    model = build_model(get_preset(preset, **TINY, **extra))
    cost = forward_cost(model)
    c = model.config
    per_cell = sum(p.numel() for n, p in model.decoder.nca.update_net.named_parameters() if "weight" in n)
    assert cost["per_cell"] == update_macs_per_cell(model.decoder.nca.update_net) == per_cell
    assert cost["cells"] == cell_updates(model.decoder.schedule())
    assert 2 * cost["decoder"] == flops(lambda: model.decoder(torch.zeros(1, c.z_dim)))
    image = torch.zeros(1, c.image_channels, c.image_size, c.image_size)
    assert 2 * cost["encoder"] == flops(lambda: model.encoder(image))


def test_the_baseline_decoder_is_counted_by_running_it():
    model = build_model(get_preset("mnist_baseline_cpu", z_dim=6, encoder_channels=4))
    cost = forward_cost(model)
    assert cost["per_cell"] is None and cost["cells"] is None
    assert 2 * cost["decoder"] == flops(lambda: model.decoder(torch.zeros(1, 6)))
    assert layer_macs(torch.nn.Linear(3, 5), torch.zeros(1, 3)) == 15
