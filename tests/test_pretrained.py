"""The shipped pretrained models: sha256 verified, loadable, usable, with complete model cards."""
import json
import math

import pytest
import torch

from vnca_tutorial import pretrained
from vnca_tutorial.checkpoint import CheckpointError, config_to_dict, save_checkpoint
from vnca_tutorial.config import get_preset
from vnca_tutorial.model import build_model

CARD_FIELDS = {"name", "sha256", "config", "data", "updates", "train_wall_time_hours", "hardware",
               "test_bound", "parameters"}


def _test_digits():
    """Two random binarized MNIST test digits (the package's fallback digits where the data is absent)."""
    from vnca_tutorial.data import load_binarized_mnist, subset
    return subset(load_binarized_mnist("test"), 2, seed=0).images


def test_at_least_the_doubling_model_ships():
    assert "mnist_doubling_small" in pretrained.names()


def test_shipped_weights_stay_under_20_mb():
    total = sum((pretrained.HERE / f"{n}.safetensors").stat().st_size for n in pretrained.names())
    assert total < 20e6


@pytest.mark.parametrize("name", pretrained.names())
def test_every_shipped_model_loads_and_runs(name):
    card = pretrained.card(name)
    assert CARD_FIELDS <= set(card), f"card of {name} lacks {CARD_FIELDS - set(card)}"
    assert card["sha256"] == pretrained.sha256(pretrained.HERE / f"{name}.safetensors")
    bound = card["test_bound"]
    assert bound["k"] >= 1 and bound["n_images"] >= 1 and math.isfinite(bound["nats"]) and bound["nats"] < 0
    model = pretrained.load(name)
    assert model.n_parameters() == card["parameters"]
    assert config_to_dict(model.config) == card["config"]
    x = _test_digits()
    with torch.no_grad():
        elbo = model.elbo(x).elbo
    assert elbo.shape == (2,) and torch.isfinite(elbo).all()


def _ship_tiny(tmp_path, monkeypatch, name="tiny"):
    """Export a tiny model the way scripts/export_pretrained.py does, into a temporary folder."""
    config = get_preset("mnist_doubling_cpu", name=name, z_dim=4, hidden=4, encoder_channels=2)
    path = tmp_path / f"{name}.safetensors"
    save_checkpoint(path, build_model(config), config, step=1)
    card = {"name": name, "sha256": pretrained.sha256(path), "config": config_to_dict(config)}
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    return path


def test_tampered_weights_are_refused_with_the_file_name(tmp_path, monkeypatch):
    path = _ship_tiny(tmp_path, monkeypatch)
    assert pretrained.load("tiny").n_parameters() > 0
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                                   # flip one byte of the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tiny.safetensors"):
        pretrained.load("tiny")


def test_truncated_weights_are_refused(tmp_path, monkeypatch):
    path = _ship_tiny(tmp_path, monkeypatch)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="sha256"):
        pretrained.load("tiny")


def test_unknown_name_lists_the_shipped_models(tmp_path, monkeypatch):
    _ship_tiny(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="tiny"):
        pretrained.card("nope")


def test_load_never_unpickles(tmp_path, monkeypatch):
    import pickle
    _ship_tiny(tmp_path, monkeypatch)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    pretrained.load("tiny")
