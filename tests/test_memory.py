"""Tests for vnca_tutorial.memory: the estimates count what the model really allocates."""
import pytest
import torch

from vnca_tutorial.config import get_preset
from vnca_tutorial.memory import (FLOAT, GiB, grid_cells, growth_bytes, n_parameters, too_large,
                                  training_bytes)
from vnca_tutorial.model import build_model

TINY = dict(z_dim=4, hidden=8, encoder_channels=4, batch_size=2)


@pytest.mark.parametrize("preset", ["mnist_doubling", "mnist_doubling_cpu", "noto_doubling_cpu",
                                    "mnist_nondoubling_cpu", "mnist_baseline_cpu"])
def test_parameters_counted_without_allocating_them(preset):
    config = get_preset(preset)
    assert n_parameters(config) == sum(p.numel() for p in build_model(config).parameters())


@pytest.mark.parametrize("preset,steps", [("mnist_doubling_cpu", None), ("mnist_nondoubling_cpu", None),
                                          ("mnist_nondoubling_cpu", 7)])
def test_growth_bytes_are_the_states_grow_keeps(preset, steps):
    config = get_preset(preset, **TINY, **({"n_blocks": 1, "steps_per_stage": 2} if "_doubling" in preset
                                          else {"min_steps": 2, "max_steps": 4, "pool_size": 4}))
    model = build_model(config)
    states, infos = model.grow(torch.randn(3, config.z_dim), steps=steps)
    assert [s.shape[-1] ** 2 for s in states] == grid_cells(config, steps) == [i.size ** 2 for i in infos]
    assert growth_bytes(config, 3, steps) == sum(s.numel() for s in states) * FLOAT


def test_training_grows_with_the_batch_and_shrinks_with_checkpointing():
    config = get_preset("mnist_doubling_cpu")
    assert training_bytes(config.replace(batch_size=64)) > 1.9 * training_bytes(config) - 16 * n_parameters(config)
    assert training_bytes(config.replace(checkpointing=True)) < training_bytes(config) / 2
    assert training_bytes(config) > 4 * FLOAT * n_parameters(config)      # weights, gradients, Adam's m, v


def test_too_large_says_how_much_and_what_to_do():
    assert too_large(GiB, "x", "hint", available=2 * GiB) is None
    message = too_large(3 * GiB, "training 'm'", "choose a smaller batch_size", available=2 * GiB)
    assert message == ("training 'm' needs about 3.0 GiB of memory, and this machine has 2.0 GiB free; "
                       "choose a smaller batch_size")
