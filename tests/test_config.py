"""Tests for vnca_tutorial.config: presets, validation, serialisation, and the paper's settings."""
import dataclasses
import json

import pytest
import torch

from vnca_tutorial.baseline import ConvVAE
from vnca_tutorial.config import (PRESETS, BaselineConfig, DoublingConfig, NonDoublingConfig,
                                  config_from_dict, config_to_dict, get_preset)
from vnca_tutorial.decoders import DoublingDecoder, NonDoublingDecoder
from vnca_tutorial.model import VNCA, build_model



@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds(name):
    cfg = PRESETS[name]
    assert cfg.name == name
    model = build_model(name)                      # by name ...
    assert model.config == cfg
    with torch.device("meta"):                     # ... and by config (meta: no init cost)
        model2 = build_model(cfg)
    assert type(model2) is type(model)
    assert model2.n_parameters() == model.n_parameters()
    if isinstance(cfg, BaselineConfig):
        assert isinstance(model, ConvVAE)
    else:
        assert isinstance(model, VNCA)
        expected = DoublingDecoder if isinstance(cfg, DoublingConfig) else NonDoublingDecoder
        assert isinstance(model.decoder, expected)
    assert model.n_parameters() > 0


def test_get_preset_unknown_lists_presets():
    with pytest.raises(ValueError) as err:
        get_preset("nope")
    msg = str(err.value)
    assert "nope" in msg
    for name in PRESETS:
        assert name in msg


def test_get_preset_overrides_do_not_mutate_the_preset():
    original = PRESETS["mnist_doubling_cpu"]
    original_lr = original.lr
    lr = original.lr * 3
    cfg = get_preset("mnist_doubling_cpu", lr=lr)
    assert cfg.lr == lr and cfg.name == "mnist_doubling_cpu"
    assert PRESETS["mnist_doubling_cpu"] is original and original.lr == original_lr
    assert get_preset("mnist_doubling_cpu") is original


@pytest.mark.parametrize("image_size,k", [(28, 4), (64, 4), (16, 4), (32, 5)])
def test_doubling_config_rejects_image_size_that_the_doublings_cannot_reach(image_size, k):
    with pytest.raises(ValueError) as err:
        DoublingConfig(image_size=image_size, n_doublings=k)
    msg = str(err.value)
    reachable = 2 * 2 ** k
    assert f"{reachable}x{reachable}" in msg          # what K doublings grow
    assert f"{image_size}x{image_size}" in msg        # what was asked for
    assert "2 * 2**K" in msg                          # how to fix it


def test_doubling_config_accepts_matching_sizes():
    for k in range(1, 6):
        assert DoublingConfig(image_size=2 * 2 ** k, n_doublings=k).image_size == 2 * 2 ** k


@pytest.mark.parametrize("changes,field", [
    (dict(likelihood="gaussian"), "likelihood"),
    (dict(likelihood="dlogistic", image_channels=1), "image_channels"),
    (dict(z_dim=0), "z_dim"),
    (dict(hidden=-1), "hidden"),
    (dict(lr=0.0), "lr"), (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=1e39), "lr"),
    (dict(grad_clip=0.0), "grad_clip"), (dict(grad_clip=-1.0), "grad_clip"), (dict(grad_clip=float("inf")), "grad_clip"),
    (dict(beta=-1.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(n_updates=0), "n_updates"), (dict(hflip="yes"), "hflip"), (dict(hflip=1), "hflip"),
    (dict(invert=1), "invert"), (dict(invert=True), "invert=True .* dataset='folder'"),    # MNIST: no
    (dict(invert=True, dataset="folder", likelihood="dlogistic", image_channels=3), "likelihood='bernoulli'"),
])
def test_invalid_common_fields_raise(changes, field):
    with pytest.raises(ValueError, match=field):
        DoublingConfig(**changes)


def test_z_dim_must_hold_the_likelihood_channels():
    with pytest.raises(ValueError, match="z_dim"):
        DoublingConfig(likelihood="dlogistic", image_channels=3, z_dim=9)   # needs 10 channels
    DoublingConfig(likelihood="dlogistic", image_channels=3, z_dim=10)


def test_nondoubling_step_range_validated():
    with pytest.raises(ValueError, match="min_steps"):
        NonDoublingConfig(min_steps=10, max_steps=5)
    with pytest.raises(ValueError, match="pool_fraction"):
        NonDoublingConfig(pool_fraction=1.5)


def test_baseline_needs_size_divisible_by_16():
    with pytest.raises(ValueError, match="16"):
        BaselineConfig(image_size=28)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["mnist_doubling"].z_dim = 3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_dict_round_trip(name):
    cfg = PRESETS[name]
    d = config_to_dict(cfg)
    assert d["variant"] == type(cfg).__name__
    d = json.loads(json.dumps(d))                     # JSON-ready
    back = config_from_dict(d)
    assert type(back) is type(cfg)
    assert back == cfg


def test_config_from_dict_rejects_bad_input():
    d = config_to_dict(PRESETS["mnist_doubling"])
    with pytest.raises(ValueError, match="variant"):
        config_from_dict({**d, "variant": "Nope"})
    with pytest.raises(ValueError, match="bogus"):
        config_from_dict({**d, "bogus": 1})


# --- the paper's settings (appendix A of Palm et al. 2022) ---------------------------------------
def test_paper_mnist_doubling():
    c = PRESETS["mnist_doubling"]
    assert isinstance(c, DoublingConfig)
    assert (c.z_dim, c.hidden, c.n_blocks) == (256, 256, 4)
    assert (c.n_doublings, c.steps_per_stage, c.n_steps) == (4, 8, 40)
    assert (c.image_size, c.image_channels, c.likelihood) == (32, 1, "bernoulli")
    assert c.batch_size == 32 and c.lr == 1e-4 and c.grad_clip == 10.0 and c.beta == 1.0


def test_paper_mnist_nondoubling():
    c = PRESETS["mnist_nondoubling"]
    assert isinstance(c, NonDoublingConfig)
    assert (c.z_dim, c.hidden, c.n_blocks) == (128, 128, 0)
    assert (c.min_steps, c.max_steps) == (32, 64)
    assert c.batch_size == 128
    assert (c.image_size, c.likelihood) == (32, "bernoulli")
    # the reference code: stochastic cell updates with p = 0.5, gradient norm clipped at 1, Adam 1e-4
    assert (c.p_update, c.grad_clip, c.lr) == (0.5, 1.0, 1e-4)
    assert (c.pool_size, c.pool_fraction, c.damage_fraction, c.state_bound) == (1024, 0.5, 0.5, 0.0)


def test_paper_celeba_doubling():
    c = PRESETS["celeba_doubling"]
    assert isinstance(c, DoublingConfig)
    assert (c.image_size, c.n_doublings, c.n_mix) == (64, 5, 1)
    assert (c.image_channels, c.likelihood) == (3, "dlogistic")
    assert (c.z_dim, c.hidden, c.n_blocks, c.steps_per_stage) == (256, 256, 4, 8)
    assert c.beta == 1.0


def test_paper_celeba_doubling_beta100():
    c = PRESETS["celeba_doubling_beta100"]
    assert c.beta == 100.0
    # otherwise the same model as celeba_doubling
    assert c.replace(beta=1.0, name="celeba_doubling") == PRESETS["celeba_doubling"]


def test_paper_celeba_nondoubling():
    c = PRESETS["celeba_nondoubling"]
    assert isinstance(c, NonDoublingConfig)
    assert (c.image_size, c.image_channels, c.likelihood) == (32, 3, "dlogistic")
    assert (c.z_dim, c.hidden) == (128, 128)
    assert (c.min_steps, c.max_steps) == (64, 128)
    assert (c.p_update, c.grad_clip) == (1.0, 1.0)


@pytest.mark.parametrize("field,value", [("p_update", 0.0), ("p_update", 1.01), ("p_update", float("nan")),
                                         ("state_bound", -1.0), ("state_bound", float("nan")),
                                         ("stationarity", -0.1), ("stationarity", float("nan")),
                                         ("stationarity", float("inf")),
                                         ("regrow_fraction", -0.1), ("regrow_fraction", 1.5),
                                         ("regrow_fraction", float("nan")),
                                         ("pool_size", 3)])
def test_nondoubling_refuses_bad_pool_and_update_settings(field, value):
    with pytest.raises(ValueError, match=field):
        get_preset("mnist_nondoubling_cpu", batch_size=4, **{field: value})


@pytest.mark.parametrize("value", [-1, 2.5])
def test_pool_extra_steps_must_be_a_count(value):
    with pytest.raises(ValueError, match="pool_extra_steps"):
        get_preset("mnist_nondoubling_cpu", pool_extra_steps=value)
