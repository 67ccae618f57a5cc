"""Checkpoints in safetensors (never pickle), written atomically, with the config beside the weights.

A training checkpoint is one `.safetensors` file holding the model weights ("model.*"), the optimizer
state ("optim.*"), the random-number state ("rng.*") and, for pool training, the pool ("pool.*"); its
metadata holds the config and the step as JSON. A shipped model keeps only the "model.*" tensors.
Explained in chapter 10 (book/10_scaling.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .checks import check_device

if TYPE_CHECKING:
    from .vae import VAE
from .config import ModelConfig, config_from_dict, config_to_dict


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to another model."""


def _new_file_mode() -> int:
    """The permissions open() would give a new file: 0666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


STALE_TEMP_S = 3600.0   # a temporary file this old was left by a write that was killed


def _fsync(path: str | Path, directory: bool = False) -> None:
    """Ask the OS to put ``path`` on disk (a directory: the names in it); a no-op where it cannot."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:                       # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files of ``path`` left by killed writes (older than STALE_TEMP_S)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()
        except OSError:                   # removed or finished by another process meanwhile
            pass


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, put it on disk, then rename it onto ``path``: readers never see a
    half-written file, and a crash or power cut leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600 files; give the usual permissions
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)   # the rename itself
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, str]:
    state = optimizer.state_dict()
    tensors = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    return tensors, json.dumps(state["param_groups"])


def _unflatten_optimizer(tensors: dict, param_groups: str) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": json.loads(param_groups)}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: ModelConfig,
                    step: int, optimizer: torch.optim.Optimizer | None = None,
                    extra_tensors: dict | None = None, extra_meta: dict | None = None,
                    weights_dtype: torch.dtype | None = None) -> None:
    """Write a training checkpoint (or, without an optimizer, a weights-only file) atomically.

    ``weights_dtype`` (e.g. ``torch.float16``) stores the model's floating-point tensors in that type, which
    halves a shipped file; loading casts them back to the model's float32 parameters.
    """
    tensors = {f"model.{k}": _stored(v, weights_dtype) for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(config_to_dict(config)), "step": str(step), "format": "vnca_tutorial/1"}
    if optimizer is not None:
        opt_tensors, groups = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        meta["optim.param_groups"] = groups
        tensors["rng.torch"] = torch.get_rng_state()
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().cpu().contiguous()
    meta.update({k: json.dumps(v) for k, v in (extra_meta or {}).items()})
    meta["tensors_sha256"] = tensors_sha256(tensors)
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: written into each checkpoint
    and checked when it is loaded, so that a flipped byte is reported instead of silently trained on."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _stored(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    t = t.detach().cpu().contiguous()
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint (config, step, ...) without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({e}); "
                              "it may be truncated or corrupt") from None
    if "config" not in meta:
        raise CheckpointError(f"{path} holds no vnca_tutorial config; was it written by this package?")
    return meta


def load_checkpoint(path: str | os.PathLike) -> tuple[ModelConfig, dict, dict]:
    """(config, tensors, metadata) of a checkpoint; CheckpointError with the file's name if broken."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
        config = config_from_dict(json.loads(meta["config"]))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} could not be loaded: {e}") from None
    if "tensors_sha256" in meta and tensors_sha256(tensors) != meta["tensors_sha256"]:
        raise CheckpointError(f"{path} is corrupt: its tensors do not match the sha256 written with them; "
                              "use an earlier copy or train again")
    return config, tensors, meta


def model_state(tensors: dict) -> dict:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def optimizer_state(tensors: dict, meta: dict) -> dict | None:
    if "optim.param_groups" not in meta:
        return None
    opt = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    return _unflatten_optimizer(opt, meta["optim.param_groups"])


def load_model(path: str | os.PathLike, expected_preset: str | None = None,
               map_location: str | torch.device = "cpu") -> VAE:
    """Rebuild the model a checkpoint describes and load its weights (nothing is unpickled)."""
    from .model import build_model
    check_device(map_location)
    config, tensors, meta = load_checkpoint(path)
    if expected_preset is not None and config.name != expected_preset:
        raise CheckpointError(f"{path} holds a {config.name!r} model, not {expected_preset!r}")
    with torch.device("meta"):          # check the sizes before allocating what the metadata claims
        wanted = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in model_state(tensors).items()}
    if wanted != found:
        bad = sorted(set(wanted) ^ set(found)) or [k for k in wanted if wanted[k] != found[k]]
        raise CheckpointError(f"{path}: its weights do not fit the {config.name!r} model its metadata "
                              f"describes (first mismatch: {bad[0]}); the file is corrupt or was edited")
    model = build_model(config)
    try:
        model.load_state_dict(model_state(tensors))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the {config.name!r} model: "
                              f"{str(e).splitlines()[0]}") from None
    return model.to(map_location)
