"""The shipped pretrained models: sha256 verified, loadable, usable, with complete model cards."""
import json
import math
import re

import pytest
import torch

from vnca_tutorial import pretrained
from vnca_tutorial.checkpoint import CheckpointError, config_to_dict, save_checkpoint
from vnca_tutorial.config import config_from_dict
from vnca_tutorial.config import get_preset
from vnca_tutorial.model import build_model

CARD_FIELDS = {"name", "sha256", "config", "data", "updates", "train_wall_time_hours", "hardware",
               "test_bound", "parameters", "stored_dtype", "paper", "notes", "precision"}


def _test_images(dataset: str):
    """Two test images of the model's data set: random binarized MNIST test digits (the package's fallback
    digits where the data is absent), or generated stand-in emoji."""
    from vnca_tutorial.data import load_binarized_mnist, subset, synthetic_emoji
    if dataset == "noto_emoji":
        return synthetic_emoji(2, seed=0).images
    return subset(load_binarized_mnist("test"), 2, seed=0).images


def test_at_least_the_doubling_model_ships():
    assert "mnist_doubling_small" in pretrained.names()


@pytest.mark.parametrize("name", pretrained.names())
def test_every_shipped_model_loads_and_runs(name):
    card = pretrained.card(name)
    assert CARD_FIELDS <= set(card), f"card of {name} lacks {CARD_FIELDS - set(card)}"
    assert card["sha256"] == pretrained.sha256(pretrained.HERE / f"{name}.safetensors")
    bound = card["test_bound"]
    assert bound["k"] >= 1 and bound["n_images"] >= 1 and math.isfinite(bound["nats"]) and bound["nats"] < 0
    n_dims = card["config"]["image_channels"] * card["config"]["image_size"] ** 2
    assert bound["bpd"] == pytest.approx(-bound["nats"] / (n_dims * math.log(2)), rel=1e-6)
    assert card["stored_dtype"] in ("float32", "float16") and card["notes"]
    # a shipped model computes in float32 whatever it was trained in, and its card says both
    assert card["precision"]["evaluation"] == "float32" and card["config"]["bf16"] is False
    assert pretrained.load(name).config.bf16 is False
    model = pretrained.load(name)
    assert model.n_parameters() == card["parameters"]
    # the card's config, with the defaults of fields added since (e.g. hflip) filled in
    assert config_to_dict(model.config) == config_to_dict(config_from_dict(card["config"]))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = _test_images(card["config"]["dataset"])
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


def test_float16_storage_halves_the_file_and_loads_as_rounded_float32(tmp_path):
    from vnca_tutorial.checkpoint import load_model
    config = get_preset("mnist_doubling_cpu", z_dim=4, hidden=8, encoder_channels=2)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()                                # the last layer starts at zero; make every weight count
    save_checkpoint(tmp_path / "f32.safetensors", model, config, step=1)
    save_checkpoint(tmp_path / "f16.safetensors", model, config, step=1, weights_dtype=torch.float16)
    size32, size16 = ((tmp_path / f).stat().st_size for f in ("f32.safetensors", "f16.safetensors"))
    assert size16 < 0.55 * size32
    loaded = load_model(tmp_path / "f16.safetensors")
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert q.dtype == p.dtype
        assert torch.equal(q, p.half().float()), name


def test_the_benchmark_reproduces_a_card_figure(tmp_path, monkeypatch):
    """benchmarks/pretrained_figures.py re-measures a card exactly as the export script measured it."""
    import sys
    from pathlib import Path
    from vnca_tutorial.data import load_binarized_mnist, subset
    from vnca_tutorial.evaluate import evaluate_bound
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pretrained_figures
    path = _ship_tiny(tmp_path, monkeypatch)
    card = json.loads((tmp_path / "tiny.json").read_text())
    images = subset(load_binarized_mnist("test"), 3, seed=0).images
    card["test_bound"] = evaluate_bound(pretrained.load("tiny"), images, k=4).as_dict()
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    row = pretrained_figures.remeasure("tiny")
    assert row["same_images"] and row["measured"]["n_images"] == 3
    assert row["measured"]["nats"] == pytest.approx(card["test_bound"]["nats"], abs=1e-4)
    other = pretrained_figures.remeasure("tiny", images=2)
    assert not other["same_images"] and other["measured"]["n_images"] == 2
    assert path.exists()


def _readme_rows() -> dict[str, list[str]]:
    """The README's table of shipped models: name -> its cells."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = [line.strip("|").split("|") for line in readme.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells] for cells in rows}


@pytest.mark.parametrize("name", pretrained.names())
def test_the_readme_table_states_each_card(name):
    """The README quotes the cards' figures: they must stay what the cards say."""
    rows = _readme_rows()
    assert name in rows, f"README.md's table of pretrained models lacks {name}"
    card, cells = pretrained.card(name), rows[name]
    bound, n = card["test_bound"], card["test_bound"]["n_images"]
    assert cells[2] == f"{card['updates']:,}"
    figure = (f"{bound['bpd']:.2f} bits/dim" if card["config"]["likelihood"] != "bernoulli"
              else f"{bound['nats']:.2f} nats")
    assert cells[3].startswith(figure + " ("), (cells[3], figure)
    assert f"{n:,}" in cells[3] and (("all" in cells[3]) == card["data"]["test"].startswith("all"))
    assert cells[5].split(", ")[0] == f"{card['train_wall_time_hours']:.2f} h", cells[5]
    assert cells[5].endswith(", " + card["precision"]["training"]), (cells[5], card["precision"]["training"])


@pytest.mark.parametrize("name", sorted(pretrained.PAPER_PRESET))
def test_the_paper_against_this_book_table_reads_the_card(name):
    if name not in pretrained.names():
        pytest.skip(f"{name} is not shipped")
    card, table = pretrained.card(name), pretrained.against_paper(name)
    rows = table.splitlines()
    assert rows[:2] == ["| | paper | this book |", "|---|---|---|"]
    assert all(r.startswith("| ") and r.endswith(" |") and r.count(" | ") == 2 for r in rows[2:])  # 3 cells
    unit = "bpd" if card["config"]["likelihood"] == "dlogistic" else "nats"
    assert f"{card['test_bound'][unit]:.2f}" in rows[2] and card["data"]["test"] in rows[2]
    assert rows[2].split(" | ")[2].startswith(f"{card['test_bound'][unit]:.2f}")
    assert f"(k = {card['test_bound']['k']}; " in rows[2].split(" | ")[2]          # the card's k, not the paper's
    if card.get("paper"):
        assert f"{card['paper'][unit]:.2f}" in rows[2] and "(k = 128)" in rows[2].split(" | ")[1]
    assert f"{card['updates']:,} updates" in table and card["hardware"] in table
    assert ("pool training" in table) == ("min_steps" in card["config"])
    if card["config"]["likelihood"] == "dlogistic":                   # the emoji model: L beside the paper's
        paper_mix = get_preset(pretrained.PAPER_PRESET[name]).n_mix
        assert f"| logistic components per pixel | {paper_mix} | {card['config']['n_mix']} |" in rows


@pytest.mark.parametrize("name", pretrained.names())
def test_a_card_names_no_folder_of_the_machine_that_wrote_it(name):
    """Cards are read on every reader's machine (chapter 10 prints them): data files by name only."""
    text = json.dumps(pretrained.card(name))
    found = re.findall(r"(?:/(?:work|home|root|tmp|Users|mnt)/|[A-Z]:\\\\)[^\s\"']*", text)
    assert not found, f"{name}'s card names folders of the machine that wrote it: {found[:3]}"


def test_the_shipped_compute_study_is_consistent_and_not_a_model(tmp_path, monkeypatch):
    study = pretrained.compute_study()
    assert pretrained.STUDY.removesuffix(".json") not in pretrained.names()        # no weights: not a model
    for row in study["rows"]:
        update, hours, elbo = row["curve"][-1]                    # the table is the curve's last point
        assert (row["updates"], row["hours"], row["val_elbo"]) == (update, round(hours, 3), round(elbo, 2))
        assert [p[0] for p in row["curve"]] == sorted(p[0] for p in row["curve"])
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    assert pretrained.compute_study() is None                     # an installation without the study



def test_shipped_weights_stay_under_20_mb():
    """Issue 19: the package's weights stay under 20 MB in all (a wheel readers download)."""
    shipped = sum(p.stat().st_size for p in pretrained.HERE.glob("*.safetensors"))
    assert 0 < shipped < 20e6, f"{shipped / 1e6:.2f} MB of weights in {pretrained.HERE}"
