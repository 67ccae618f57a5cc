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
STUDY = "compute_study.json"        # not a model: it has no weights file, so names() leaves it out
log = logging.getLogger("vnca_tutorial.pretrained")


def names(folder: Path | None = None) -> list[str]:
    """The names of the shipped models (those with both a card and a weights file). ``folder``: another
    folder of models in the same layout, e.g. the repository's candidates/ (models exported but not
    shipped until their whole-test figure is measured: scripts/evaluate_pretrained.py --candidate)."""
    folder = folder or HERE
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").exists())


def card(name: str, folder: Path | None = None) -> dict:
    """The model card of a shipped model: config, data, updates, wall time, hardware, test figures."""
    folder = folder or HERE
    path = folder / f"{name}.json"
    if name not in names(folder):
        raise ValueError(f"no pretrained model {name!r}; the {'shipped' if folder == HERE else folder} models "
                         f"are: {', '.join(names(folder)) or 'none'}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"model card {path} is not valid JSON: {e}") from None


def compute_study() -> dict | None:
    """The compute study of chapter 10 (benchmarks/compute_study.py --report --json), or None if none ships:
    {"cpu": ..., "rows": [{"candidate", "preset", "changes", "parameters", "updates", "hours", "val_elbo",
    "nats_per_hour_last_half", "curve": [[update, hours, validation ELBO], ...]}, ...]}."""
    path = HERE / STUDY
    return json.loads(path.read_text()) if path.exists() else None


def save_card(name: str, model_card: dict, folder: Path | None = None) -> Path:
    """Write the model card of ``name`` atomically (for the maintainers' export and evaluation scripts)."""
    path = (folder or HERE) / f"{name}.json"
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(model_card, indent=2)))
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(name: str, folder: Path | None = None) -> Path:
    """The weights file of ``name`` after checking its sha256 against the card; CheckpointError if not."""
    path = (folder or HERE) / f"{name}.safetensors"
    expected = card(name, folder).get("sha256")
    actual = sha256(path)
    if actual != expected:
        raise CheckpointError(f"{path} is corrupt or was changed: its sha256 is {actual}, the model "
                              f"card says {expected}. Reinstall vnca_tutorial to restore it.")
    return path


def load(name: str, device: str = "cpu", folder: Path | None = None):
    """The shipped model ``name``, verified and in eval mode."""
    model = load_model(verify(name, folder), expected_preset=card(name, folder)["config"]["name"],
                       map_location=device)
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


# the paper-scale preset of each shipped model's family: what the paper trained (appendix A)
PAPER_PRESET = {"mnist_doubling_small": "mnist_doubling", "mnist_nondoubling_small": "mnist_nondoubling",
                "noto_doubling_small": "noto_doubling", "mnist_baseline_small": "mnist_baseline"}


def against_paper(name: str) -> str:
    """A Markdown table for the book's "paper against this book" boxes (chapters 4, 5, 8, 9): the paper's
    test figure, model size and training (its paper-scale preset) beside the shipped model's, all read
    from the card, so the box always describes the model that ships."""
    from ..config import get_preset
    c = card(name)
    mine, paper, bound = c["config"], get_preset(PAPER_PRESET[name]), c["test_bound"]
    unit = "bpd" if mine["likelihood"] == "dlogistic" else "nats"

    def figure(value: float) -> str:
        return f"{value:.2f} bits/dim" if unit == "bpd" else f"{value:.2f} nats"
    paper_figure = (c.get("paper") or {}).get(unit)
    paper_bound = f"{figure(paper_figure)} (k = 128)" if paper_figure is not None else "no figure recorded"
    rows = [("test bound", paper_bound,
             f"{figure(bound[unit])} (k = {bound['k']}; {c['data']['test']})"),
            ("\\|z\\| = channels per cell, width of u", f"{paper.z_dim}, {paper.hidden}",
             f"{mine['z_dim']}, {mine['hidden']}") if "n_blocks" in mine else
            ("\\|z\\|", f"{paper.z_dim}", f"{mine['z_dim']}")]
    if "n_doublings" in mine:
        rows.append(("residual blocks, steps per stage M", f"{paper.n_blocks}, {paper.steps_per_stage}",
                     f"{mine['n_blocks']}, {mine['steps_per_stage']}"))
    if mine["likelihood"] == "dlogistic":
        rows.append(("logistic components per pixel", f"{paper.n_mix}", f"{mine['n_mix']}"))
    if "min_steps" in mine:
        rows.append(("steps T, p_update", f"{paper.min_steps} to {paper.max_steps}, {paper.p_update:g}",
                     f"{mine['min_steps']} to {mine['max_steps']}, {mine['p_update']:g}"))
        added = [f"a penalty on \\|state\\| beyond {mine['state_bound']:g}" if mine.get("state_bound") else "",
                 f"pool states aged up to {mine['pool_extra_steps']} steps" if mine.get("pool_extra_steps") else "",
                 f"a penalty of weight {mine['stationarity']:g} on the change of one more step"
                 if mine.get("stationarity") else "",
                 f"{mine['pool_fraction']:g} of each batch from the pool, {mine['damage_fraction']:g} of "
                 "those damaged"]
        rows.append(("pool training", f"{paper.pool_fraction:g} of each batch from the pool, "
                     f"{paper.damage_fraction:g} of those damaged", "; ".join(a for a in added if a)))
    rows.append(("training", f"{paper.n_updates:,} updates of batch {paper.batch_size}, lr {paper.lr:g}, on a GPU",
                 f"{c['updates']:,} updates of batch {c['batch_size']}, lr {mine['lr']:g}"
                 f"{' (last phase)' if c.get('phases') else ''}, "
                 f"{c['train_wall_time_hours']} h on {c['hardware']}"))
    attractors = c.get("attractors") or {}
    for rec in attractors.get("recovery", []):
        what = rec["damage"].replace("_", " ")
        regrows = "regrown, in pictures (Fig. 9)" if "min_steps" in mine else "not regrown (Fig. 11)"
        rows.append((f"back within 10 nats after the {what}", regrows,
                     f"{100 * rec['fraction_recovered']:.0f}% of {attractors['n_images']} random test digits"))
    return "\n".join(["| | paper | this book |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows])
