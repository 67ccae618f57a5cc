"""Pretrained VNCAs that ship inside the package: safetensors weights plus a JSON model card each.

    >>> from vnca_tutorial import pretrained
    >>> pretrained.names()                        # what ships
    >>> model = pretrained.load("mnist_doubling_small")
    >>> pretrained.card("mnist_doubling_small")   # how it was trained and what it scores

Every file's sha256 is checked against its card before loading; safetensors holds only tensors, so
nothing is unpickled. `load_or_train` is what the book's chapters call (train-or-load).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ..checkpoint import CheckpointError, atomic_write, load_model

HERE = Path(__file__).parent
log = logging.getLogger("vnca_tutorial.pretrained")


def names() -> list[str]:
    """The names of the shipped models (those with both a card and a weights file)."""
    return sorted(p.stem for p in HERE.glob("*.json") if (HERE / f"{p.stem}.safetensors").exists())


def card(name: str) -> dict:
    """The model card of a shipped model: config, data, updates, wall time, hardware, test figures."""
    path = HERE / f"{name}.json"
    if name not in names():
        raise ValueError(f"no pretrained model {name!r}; the shipped models are: "
                         f"{', '.join(names()) or 'none'}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"model card {path} is not valid JSON: {e}") from None


def save_card(name: str, model_card: dict) -> Path:
    """Write the model card of ``name`` atomically (for the maintainers' export and evaluation scripts)."""
    path = HERE / f"{name}.json"
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(model_card, indent=2)))
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(name: str) -> Path:
    """The weights file of ``name`` after checking its sha256 against the card; CheckpointError if not."""
    path = HERE / f"{name}.safetensors"
    expected = card(name).get("sha256")
    actual = sha256(path)
    if actual != expected:
        raise CheckpointError(f"{path} is corrupt or was changed: its sha256 is {actual}, the model "
                              f"card says {expected}. Reinstall vnca_tutorial to restore it.")
    return path


def load(name: str, device: str = "cpu"):
    """The shipped model ``name``, verified and in eval mode."""
    model = load_model(verify(name), expected_preset=card(name)["config"]["name"], map_location=device)
    return model.eval()


def load_or_train(name: str, fallback_updates: int = 200, images=None, device: str = "cpu"):
    """Train-or-load for the book: the shipped model if present, else a short training run of its
    config (or of the CPU preset). Returns (model, how) where ``how`` says which one happened."""
    if name in names():
        return load(name, device), f"loaded the pretrained model {name!r} shipped with the package"
    from ..train import TrainSettings, train
    import tempfile
    from ..config import get_preset
    config = get_preset(name) if not name.endswith("_small") else get_preset(
        name.replace("_small", "_cpu"))
    if images is None:
        from ..data import load_dataset
        images = load_dataset(config.dataset, "trainval" if "mnist" in config.dataset else "train").images
    with tempfile.TemporaryDirectory() as run_dir:
        model, _ = train(config, images, TrainSettings(run_dir=run_dir, n_updates=fallback_updates,
                                                       progress=False, device=device))
    return model.eval(), (f"no pretrained {name!r} is shipped, so this chapter trained "
                          f"{config.name!r} for {fallback_updates} updates")
