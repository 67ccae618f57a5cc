"""The ``vnca`` command: train, evaluate, sample, grow and damage VNCA models from the shell.

    vnca train  --preset mnist_doubling_cpu --updates 3000          # runs/mnist_doubling_cpu/
    vnca eval   --checkpoint runs/mnist_doubling_cpu/checkpoint.safetensors --k 128
    vnca sample --checkpoint runs/mnist_doubling_cpu/checkpoint.safetensors --out samples.png
    vnca grow   --pretrained mnist_doubling_small --out growth.gif
    vnca damage --pretrained mnist_doubling_small --at-step 30 --out damage.gif

Multi-process training: ``torchrun --nproc_per_node 2 -m vnca_tutorial train --preset ...``.
Bad input (a missing checkpoint, an unknown preset, a data folder without the data, ...) gives one line
``vnca: error: ...`` on stderr and exit status 1 (2 for a malformed command line), never a traceback.
Explained in chapter 10 (book/10_scaling.md).

Why one module of over 500 lines: five subcommands, each a small parser function and a ``cmd_*``
function, share the checks that turn every bad flag into one line; the sections below keep them apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .checks import check_device
from .config import PRESETS, get_preset
from .data import ChecksumError
from .hardware import PRECISIONS, choose_bf16
from .train import TrainingDiverged
from .trajectories import default_damage_step, prior_z, to_unit

log = logging.getLogger("vnca_tutorial.cli")
PROG = "vnca"
DEVICES = ("cpu", "cuda", "mps")
MIN_DISPLAY_PX = 128   # a growth frame shows each image at least this many pixels wide


class CLIError(Exception):
    """Bad input: `main` prints ``vnca: error: <message>`` on one line and exits with status 1."""


class UsageError(CLIError):
    """A malformed command line (argparse's complaints): exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, so that `main` prints them like every other error)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of the descriptions (examples); options state their defaults themselves."""


# --------------------------------------------------------------------------- small helpers
def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _device(name: str) -> str:
    """The device if this machine has it, else a CLIError."""
    try:
        check_device(name)
    except ValueError as e:
        raise CLIError(f"--device {name}: {e}") from None
    return name


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


_PARSERS = {"int": int, "float": float, "bool": _parse_bool, "str": str}


# --- flag values: argparse turns the ValueError of these into "vnca <cmd>: error: argument --x: ..." ---
def _number(kind: type, low: float, what: str):
    """An argparse type: a finite ``kind`` >= ``low`` (what: how the error names the allowed values)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what           # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, "a positive integer")
non_negative_int = _number(int, 0, "an integer >= 0")
positive_float = _number(float, 1e-300, "a finite number > 0")


def seed_value(text: str) -> int:
    """A random seed: an integer in [0, 2**63)."""
    value = non_negative_int(text)
    if value >= 2 ** 63:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**63), got {text!r}")
    return value


def parse_overrides(items: list[str], config_type: type) -> dict:
    """``["z_dim=16", "lr=1e-3"]`` -> {"z_dim": 16, "lr": 0.001}, typed from ``config_type``'s fields."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--set {item!r}: expected key=value, e.g. --set z_dim=16")
        if key == "name":
            raise CLIError("--set name: a model keeps its preset's name (checkpoints record it with the "
                           "whole config); choose another --preset, or change fields and give a --run-dir")
        if key not in fields:
            raise CLIError(f"--set {key}: {config_type.__name__} has no field {key!r}; its fields are: "
                           f"{', '.join(fields)}")
        type_name = fields[key].type if isinstance(fields[key].type, str) else fields[key].type.__name__
        parse = _PARSERS.get(type_name, str)
        try:
            out[key] = parse(text.strip())
        except ValueError:
            raise CLIError(f"--set {key}={text}: expected a value of type {type_name}") from None
    return out


def _config(preset: str, overrides: list[str] | None):
    """The preset with its ``--set`` overrides; CLIError for unknown presets and invalid values."""
    if preset not in PRESETS:
        raise CLIError(f"unknown preset {preset!r}; the presets are: {', '.join(sorted(PRESETS))}")
    changes = parse_overrides(overrides or [], type(PRESETS[preset]))
    try:
        return get_preset(preset, **changes)
    except ValueError as e:
        raise CLIError(f"invalid config for preset {preset!r}: {e}") from None


def _check_output(out: str, flag: str, inputs: list[str | None], suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work, an output that is a folder, has a suffix we cannot write, or is one of
    the command's inputs (never overwrite what the user had: ``--json`` onto the checkpoint it evaluates)."""
    path = Path(out)
    if path.is_dir():
        raise CLIError(f"{flag} {out}: is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise CLIError(f"{flag} {out}: cannot write a {path.suffix or 'suffix-less'} file; use "
                       f"{' or '.join(suffixes)}")
    for source in filter(None, inputs):
        if Path(source).exists() and path.exists() and path.resolve() == Path(source).resolve():
            raise CLIError(f"{flag} {out}: is an input of this command ({source}) and would be overwritten; "
                           "choose another file")
    return path


def _write(path: Path, what: str, write) -> Path:
    """Run ``write(path)``; a folder that cannot be written becomes a CLIError."""
    try:
        return write(path)
    except OSError as e:
        raise CLIError(f"cannot write {what} {path}: {e.strerror or e}") from None


# --------------------------------------------------------------------------- data
class LazyImages:
    """A lazy image Dataset (CelebA) indexed like a tensor: ``x[idx]`` stacks the images it names."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx):
        if isinstance(idx, int):
            return self.dataset[idx]
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        return torch.stack([self.dataset[int(i)] for i in idx])


def _load_splits(config, splits: tuple[str, ...], data_dir: str | None) -> list:
    """[(images, source)] for each split of ``config.dataset``: images a tensor (N, C, H, W), or LazyImages
    for CelebA. A folder of images is read once for all the splits."""
    from . import data
    if config.dataset not in (*data.DATASETS, "celeba", "folder"):
        known = ", ".join(sorted(data.DATASETS))
        raise CLIError(f"data set {config.dataset!r}: the vnca command loads {known}, celeba, and a folder "
                       f"of your own images (--set dataset=folder --data-dir FOLDER); "
                       f"sample, grow and damage need no data")
    split = splits[0]
    try:
        if config.dataset == "folder":
            if data_dir is None:
                raise CLIError("dataset=folder: name the folder of your images with --data-dir FOLDER")
            from .own_images import folder_splits
            loaded = folder_splits(data_dir, splits, config.image_size,
                                   binary=config.likelihood == "bernoulli", invert=config.invert)
            return [(d.images, d.source) for d in loaded]
        out = []
        for split in splits:
            if config.dataset == "celeba":
                if data_dir is None:
                    raise CLIError("the celeba presets need --data-dir DIR, the folder that holds celeba/ "
                                   "(CelebA cannot be downloaded automatically)")
                ds = data.load_celeba(data_dir, split, size=config.image_size)
                out.append((LazyImages(ds), ds.source))
            else:
                loaded = data.load_dataset(config.dataset, split, data_dir=data_dir)
                out.append((loaded.images, loaded.source))
        return out
    except ChecksumError:
        raise
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise CLIError(f"cannot load the {config.dataset} {split} data: {e}") from None


def _load_split(config, split: str, data_dir: str | None):
    """(images, source) of one split of ``config.dataset`` (see ``_load_splits``)."""
    return _load_splits(config, (split,), data_dir)[0]


def _check_images_fit(images, config, what: str) -> None:
    shape = tuple(images.shape[1:]) if hasattr(images, "shape") else tuple(images[0].shape)
    want = (config.image_channels, config.image_size, config.image_size)
    if shape != want:
        raise CLIError(f"the {what} images are {shape[0]}x{shape[1]}x{shape[2]} but the model "
                       f"{config.name!r} makes {want[0]}x{want[1]}x{want[2]} images")


# --------------------------------------------------------------------------- models
def _pretrained(name: str):
    try:
        from . import pretrained
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("vnca_tutorial.pretrained"):
            raise CLIError(f"cannot load pretrained model {name!r}: no pretrained models in this "
                           "installation (the module vnca_tutorial.pretrained is missing); use --checkpoint "
                           "PATH") from None
        raise
    if not (hasattr(pretrained, "load") and hasattr(pretrained, "names")):
        raise CLIError(f"cannot load pretrained model {name!r}: no pretrained models in this installation "
                       "(vnca_tutorial.pretrained has no load()/names()); use --checkpoint PATH")
    names = sorted(pretrained.names())
    if name not in names:
        raise CLIError(f"unknown pretrained model {name!r}; available: {', '.join(names) or '(none)'}")
    return pretrained.load(name)


def _model(args, allow_untrained: bool):
    """The model the options name: --checkpoint, --pretrained, or (untrained) --preset."""
    from .checkpoint import load_model
    from .model import build_model
    device = _device(args.device)
    if args.set and (args.checkpoint or args.pretrained):
        raise CLIError("--set changes an untrained --preset model; it cannot change a --checkpoint or "
                       "--pretrained model")
    if args.checkpoint:
        model = load_model(args.checkpoint, expected_preset=args.preset)
        log.info("loaded %s (%s, %d parameters)", args.checkpoint, model.config.name, model.n_parameters())
    elif args.pretrained:
        model = _pretrained(args.pretrained)
        if args.preset and model.config.name != args.preset:
            raise CLIError(f"pretrained model {args.pretrained!r} is a {model.config.name!r} model, "
                           f"not {args.preset!r}")
    elif args.preset and allow_untrained:
        from .memory import FLOAT, n_parameters
        config = _config(args.preset, args.set)
        _check_memory(n_parameters(config) * FLOAT, f"the {config.name!r} model",
                      "choose smaller z_dim / hidden / n_blocks with --set")
        model = build_model(config)
        log.warning("UNTRAINED model: --preset %s without --checkpoint has random weights", args.preset)
    elif args.preset:
        raise CLIError(f"--preset alone gives an untrained model; give --checkpoint PATH or --pretrained "
                       f"NAME to choose the {args.preset!r} model to evaluate")
    else:
        raise CLIError("choose a model: --checkpoint PATH, --pretrained NAME"
                       + (" or --preset NAME (untrained)" if allow_untrained else ""))
    return model.to(device).eval()


def _check_memory(need: int, what: str, hint: str) -> None:
    """Refuse, before allocating, a task that cannot fit in the memory available now."""
    from .memory import too_large
    message = too_large(need, what, hint)
    if message:
        raise CLIError(message)


def _require_growth(model, command: str) -> None:
    if not model.grows:
        raise CLIError(f"'{command}' needs a VNCA; the convolutional baseline {model.config.name!r} "
                       "decodes in one pass and has no growth to show")


# --------------------------------------------------------------------------- frames
def _display(model, state: torch.Tensor) -> torch.Tensor:
    """The image mean of p(x | current cells), in [0, 1], as (B, C, h, w)."""
    return to_unit(model.likelihood(state).mean, model.config.likelihood)


def _progress_strip(width: int, fraction: float, colour: tuple[int, int, int], height: int = 6):
    """A progress bar (height, width, 3) uint8 that makes every frame of a growth distinct."""
    import numpy as np
    strip = np.full((height, width, 3), 225, dtype=np.uint8)
    strip[:, : int(round(fraction * width))] = colour
    return strip


def _growth_frames(model, state_lists: list[list[torch.Tensor]], schedule, n: int,
                   marks: dict[int, tuple[int, int, int]] | None = None) -> list:
    """One uint8 frame per state: the panels (one per list of states) side by side, each a grid of the n
    images upscaled (nearest neighbour) to at least MIN_DISPLAY_PX, and a progress strip below."""
    import numpy as np

    from .viz import image_grid, resize_nearest
    size = model.config.image_size
    scale = max(1, math.ceil(MIN_DISPLAY_PX / size))
    nrow = math.ceil(math.sqrt(n))
    frames = []
    for i, info in enumerate(schedule):
        panels = [image_grid(resize_nearest(_display(model, states[i]), size), nrow=nrow, scale=scale)
                  for states in state_lists]
        gap = np.full((panels[0].shape[0], 12, 3), 255, dtype=np.uint8)
        row = panels[0]
        for p in panels[1:]:
            row = np.concatenate([row, gap, p], axis=1)
        width = max(row.shape[1], len(schedule))
        if width > row.shape[1]:
            row = np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)
        colour = (marks or {}).get(i, (60, 110, 200) if info.kind == "nca" else (230, 140, 30))
        fraction = i / max(1, len(schedule) - 1)
        frames.append(np.ascontiguousarray(np.concatenate([row, _progress_strip(width, fraction, colour)])))
    return frames


def _check_animation(out: Path, fps: float, inputs: list[str | None] = ()) -> None:
    """Refuse, before any work, an animation that cannot be written."""
    _check_output(str(out), "--out", list(inputs))
    if fps <= 0:
        raise CLIError(f"--fps must be positive, got {fps}")
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise CLIError(f"--out {out}: the animation must be a .gif (or .mp4 with imageio-ffmpeg)")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise CLIError(f"writing {out} needs imageio-ffmpeg (pip install imageio-ffmpeg); or use a .gif "
                           "--out") from None


def _write_animation(frames: list, out: Path, fps: float) -> Path:
    """A looping GIF, or an MP4 if ``out`` ends in .mp4 and imageio-ffmpeg is installed."""
    from .viz import save_gif
    _check_animation(out, fps)
    if out.suffix.lower() == ".gif":
        return _write(out, "the GIF", lambda p: save_gif(frames, p, ms_per_frame=max(1, round(1000 / fps))))
    import imageio.v2 as imageio
    import numpy as np

    def write(p: Path) -> Path:
        p.parent.mkdir(parents=True, exist_ok=True)
        h, w = frames[0].shape[:2]
        pad = ((0, -h % 16), (0, -w % 16), (0, 0))               # H.264 wants multiples of 16
        with imageio.get_writer(p, fps=fps, codec="libx264", quality=8, macro_block_size=16) as writer:
            for f in frames:
                writer.append_data(np.pad(f, pad, constant_values=255))
        return p
    return _write(out, "the video", write)


def training_splits(dataset: str, early_stopping: bool) -> tuple[str, str]:
    """(training split, validation split) of `vnca train`: the paper's training images and a random subset
    of the test split to monitor; with --early-stopping the validation images are held out of training
    and chosen from (binarized MNIST: valid, Noto emoji and an image folder: a tenth of train, CelebA: its
    valid partition)."""
    if early_stopping:
        return ("fit" if dataset in ("noto_emoji", "folder") else "train"), "valid"
    return ("trainval" if dataset == "binarized_mnist" else "train"), "test"


# --------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from .train import CHECKPOINT, TrainSettings, train
    device = _device(args.device)
    config, precision = apply_precision(_config(args.preset, args.set), args.precision, args.set, device)
    from .memory import training_bytes                   # before any work
    _check_memory(training_bytes(config), f"training {config.name!r}",
                  "choose a smaller batch_size, z_dim, hidden or number of steps with --set, or "
                  "--set checkpointing=true")
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists() and not (args.resume or args.overwrite):
        raise CLIError(f"{checkpoint} exists: pass --resume to continue that run, --overwrite to start "
                       "it again, or choose another --run-dir")
    if args.resume and checkpoint.exists():
        from .checkpoint import read_metadata
        saved = json.loads(read_metadata(checkpoint)["config"]).get("name")
        if saved != config.name:
            raise CLIError(f"{checkpoint} holds a {saved!r} run, not {config.name!r}: resume it with "
                           f"--preset {saved} or choose another --run-dir")
    elif args.resume:
        log.info("no checkpoint in %s yet: starting a new run", run_dir)
    train_split, val_split = training_splits(config.dataset, args.early_stopping)
    (images, source), (val, val_source) = _load_splits(config, (train_split, val_split), args.data_dir)
    _check_images_fit(images, config, "training")
    global_batch = config.batch_size * int(os.environ.get("WORLD_SIZE", "1"))
    if len(images) < global_batch:
        raise CLIError(f"{len(images)} training images are fewer than one batch of {global_batch}")
    log.info("training %s on %d images (%s); validation: %s; precision: %s", config.name, len(images), source,
             val_source, precision)
    settings = TrainSettings(run_dir=str(run_dir), n_updates=args.updates, checkpoint_every=args.checkpoint_every,
                             eval_every=args.eval_every, eval_images=args.eval_images, seed=args.seed,
                             device=device, resume=args.resume, progress=not args.quiet,
                             max_minutes=args.max_minutes, keep_best=args.early_stopping)
    _, history = train(config, images, settings, val_images=val)
    if int(os.environ.get("RANK", "0")) == 0:
        last = history[-1] if history else None
        done = f"update {last['step']}, loss {last['loss']:.2f}" if last else "nothing to do"
        print(f"{config.name}: {done}; checkpoint {checkpoint}, metrics {run_dir / 'metrics.csv'}")
    return 0


def apply_precision(config, precision: str, overrides: list[str], device: str = "cpu"):
    """(config with bf16 set by --precision, why): auto takes the machine's fast path; --set bf16 wins.
    Also used by scripts/train_pretrained.py and scripts/train_on_gpu.py; CLIError if both choose."""
    if any(item.split("=", 1)[0].strip() == "bf16" for item in overrides):
        if precision != "auto":
            raise CLIError(f"--precision {precision} and --set bf16=... both choose the precision: give one")
        return config, f"bf16={config.bf16} as --set"
    bf16, why = choose_bf16(precision, device)
    return config.replace(bf16=bf16), why


def _card_bound(name: str | None) -> dict | None:
    """The test figure in a shipped model's card (None without --pretrained or without a figure)."""
    if not name:
        return None
    from . import pretrained
    return pretrained.card(name).get("test_bound")


def _eval_images(args, images, source: str, card: dict | None):
    """The test images ``vnca eval`` bounds: all, ``--images N`` of them at random, or (for a shipped
    model, without --images) the model card's fixed-seed subset, so that its figure is reproduced."""
    from .data import random_indices
    n = len(images)
    if args.images is None and card and card["n_images"] < n:
        args.images = card["n_images"]             # reproduce the card: its fixed-seed subset of the test set
        log.info("--images not given: the model card's %d test images (--images %d for all of them)",
                 args.images, n)
    if args.images is not None and not 1 <= args.images <= n:
        raise CLIError(f"--images {args.images}: the test split has {n} images")
    if args.images is not None and args.images < n:
        # a random subset, never the head (the MNIST test split is sorted by label); the same images as
        # data.subset, so `--images N` reproduces a model card measured on a subset of N
        images = images[torch.from_numpy(random_indices(n, args.images, args.seed))]
        source += f", random subset of {args.images} (seed {args.seed})"
    elif not isinstance(images, torch.Tensor):            # all of them, in order (as --images N for N = all)
        images = images[range(n)]
    return images, source


def cmd_eval(args) -> int:
    from .evaluate import ResumeFileMismatch, evaluate_bound
    if args.json:
        _check_output(args.json, "--json", [args.checkpoint, args.resume_file])
    model = _model(args, allow_untrained=False)
    config = model.config
    if args.k < 1 or args.batch_size < 1:
        raise CLIError("--k and --batch-size must be positive integers")
    from .memory import iwae_bytes
    _check_memory(iwae_bytes(config, args.k, args.batch_size), f"the bound with --k {args.k} and "
                  f"--batch-size {args.batch_size}", "choose a smaller --k or --batch-size (the paper: k = 128)")
    images, source = _load_split(config, "test", args.data_dir)
    _check_images_fit(images, config, "test")
    card = _card_bound(args.pretrained)
    images, source = _eval_images(args, images, source, card)
    log.info("IWAE bound, k=%d, on %d %s test images (%s)", args.k, len(images), config.dataset, source)
    try:
        result = evaluate_bound(model, images, k=args.k, batch_size=args.batch_size, seed=args.seed,
                                progress=not args.quiet, resume_file=args.resume_file)
    except ResumeFileMismatch as e:
        raise CLIError(str(e)) from None
    print(f"{config.name}: log p(x) >= {result.nats:.2f} nats ({result.bpd:.4f} bits/dim), "
          f"+- {result.stderr:.2f} nats (stderr), k={result.k}, {result.n_images} test images")
    if card:
        print(f"model card of {args.pretrained}: {card['nats']:.2f} nats ({card['bpd']:.4f} bits/dim), "
              f"k={card['k']}, {card['n_images']} test images")
    if args.json:
        record = {**result.as_dict(), "model": config.name, "dataset": config.dataset, "data": source,
                  "checkpoint": args.checkpoint, "pretrained": args.pretrained, "seed": args.seed}
        out = Path(args.json)

        def write(p: Path) -> Path:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(record, indent=2) + "\n")
            return p
        _write(out, "the JSON result", write)
        print(f"wrote {out}")
    return 0


def cmd_sample(args) -> int:
    from .viz import save_grid
    _check_output(args.out, "--out", [args.checkpoint], suffixes=(".png",))
    model = _model(args, allow_untrained=True)
    _check_decode_memory(model, args.n)
    z = prior_z(model, args.n, args.seed)
    with torch.no_grad():
        images = to_unit(model.p_x_given_z(z).mean, model.config.likelihood)
    out = _write(Path(args.out), "the PNG", lambda p: save_grid(images, p, nrow=math.ceil(math.sqrt(args.n))))
    print(f"wrote {out}: {args.n} samples of {model.config.name}")
    return 0


def _check_decode_memory(model, n: int, steps: int | None = None, keep_states: int = 0) -> None:
    """Refuse, before allocating, to decode ``n`` images (keeping ``keep_states`` growths of every state,
    for an animation) when that cannot fit in memory."""
    from .memory import decode_bytes, growth_bytes
    if n < 1:
        raise CLIError(f"--n must be a positive integer, got {n}")
    need = growth_bytes(model.config, n, steps) * keep_states if keep_states else decode_bytes(model.config, n)
    _check_memory(need, f"{'growing' if keep_states else 'decoding'} {n} images"
                  + (f" over {steps} steps" if steps else ""), "choose a smaller --n"
                  + (" or --steps" if steps else ""))


def cmd_grow(args) -> int:
    _check_animation(Path(args.out), args.fps, [args.checkpoint])
    model = _model(args, allow_untrained=True)
    _require_growth(model, "grow")
    kwargs = _step_kwargs(model, args.steps)
    _check_decode_memory(model, args.n, args.steps, keep_states=1)
    z = prior_z(model, args.n, args.seed)
    with torch.no_grad():
        states, schedule = model.grow(z, **kwargs)
    frames = _growth_frames(model, [states], schedule, args.n)
    out = _write_animation(frames, Path(args.out), args.fps)
    print(f"wrote {out}: {len(frames)} frames of the growth of {args.n} samples of {model.config.name}")
    return 0


def _step_kwargs(model, steps: int | None) -> dict:
    if steps is None:
        return {}
    if model.doubling:
        raise CLIError("--steps is for the non-doubling model; the doubling model's schedule is fixed by "
                       "its config (steps_per_stage, n_doublings)")
    if steps < 1:
        raise CLIError(f"--steps must be a positive integer, got {steps}")
    return {"steps": steps}


def cmd_damage(args) -> int:
    from .damage import as_hook, damage_random_square, damage_right_half
    _check_animation(Path(args.out), args.fps, [args.checkpoint])
    model = _model(args, allow_untrained=True)
    _require_growth(model, "damage")
    kind = args.kind or ("right-half" if model.doubling else "square")
    if kind == "square" and model.doubling:
        raise CLIError("--kind square is for the non-doubling model (paper Fig. 9); the doubling model is "
                       "damaged with --kind right-half (Fig. 11)")
    at_step = args.at_step if args.at_step is not None else default_damage_step(model)
    steps = args.steps if args.steps is not None or model.doubling else at_step + model.config.max_steps
    kwargs = _step_kwargs(model, steps)
    _check_decode_memory(model, args.n, kwargs.get("steps"), keep_states=2)    # damaged and intact
    schedule = model.decoder.schedule(**kwargs)
    if not 0 <= at_step < len(schedule):
        raise CLIError(f"--at-step {at_step}: the growth has states 0..{len(schedule) - 1}")
    generator = torch.Generator().manual_seed(args.seed + 1)
    damage = damage_right_half if kind == "right-half" else (lambda s: damage_random_square(s, generator))
    z = prior_z(model, args.n, args.seed)
    with torch.no_grad():
        damaged, schedule = model.grow(z, on_step=as_hook(damage, at_step), **kwargs)
        intact, _ = model.grow(z, **kwargs)
    frames = _growth_frames(model, [damaged, intact], schedule, args.n, marks={at_step: (200, 30, 30)})
    out = _write_animation(frames, Path(args.out), args.fps)
    print(f"wrote {out}: {len(frames)} frames; left: damaged ({kind}) at step {at_step}, right: undamaged")
    return 0


# --------------------------------------------------------------------------- the parser
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where to run (default: cpu)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed (default: 0)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors; no progress bar")


def _add_model_options(p: argparse.ArgumentParser, untrained: bool = True) -> None:
    g = p.add_argument_group("model (one of --checkpoint, --pretrained" + (", --preset)" if untrained else ")"))
    src = g.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PATH", help="a checkpoint written by 'vnca train'")
    src.add_argument("--pretrained", metavar="NAME", help="a model shipped with the package")
    g.add_argument("--preset", metavar="NAME",
                   help=("alone: an UNTRAINED model of this preset; with --checkpoint/--pretrained: check "
                         "that the model is of this preset") if untrained else
                   "check that the --checkpoint/--pretrained model is of this preset")
    if untrained:
        g.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                       help="override config fields of an untrained --preset model (repeatable)")
    else:
        p.set_defaults(set=[])


def _train_parser(sub) -> None:
    """The `vnca train` options."""
    presets = ", ".join(sorted(PRESETS))
    p = sub.add_parser("train", help="train a preset (resumable, works under torchrun)",
                       formatter_class=_Formatter, description=(
                           "Train a preset with Adam and the beta-ELBO (pool and damage training for the "
                           "non-doubling VNCA). Writes RUN_DIR/checkpoint.safetensors, metrics.csv and image "
                           "grids; --resume continues a killed run exactly.\n\n"
                           "example:\n  vnca train --preset mnist_doubling_cpu --updates 3000 "
                           "--set lr=1e-3 batch_size=16\n"
                           "  torchrun --nproc_per_node 2 -m vnca_tutorial train --preset mnist_doubling_cpu\n"
                           "  vnca train --preset celeba_doubling_cpu --set dataset=folder --data-dir my_pictures "
                           "--early-stopping   # your own 32x32 colour images\n"
                           "  vnca train --preset mnist_doubling_cpu --set dataset=folder invert=true --data-dir "
                           "my_drawings --early-stopping   # dark strokes on light paper, as 32x32 binary images\n\n"
                           f"presets: {presets}"))
    p.add_argument("--preset", required=True, metavar="NAME", help="which model and data set")
    p.add_argument("--run-dir", metavar="DIR", default=None, help="output folder (default: runs/PRESET)")
    p.add_argument("--updates", type=positive_int, default=None, metavar="N",
                   help="train up to this many updates (default: the config's n_updates)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the data set (default: $VNCA_DATA_DIR, then the cache); "
                        "required for celeba and for your own images (--set dataset=folder: a folder of "
                        "image files, a random tenth held out as the test split)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the update network's arithmetic (default: auto, bf16 autocast on a GPU or a CPU with "
                        "AMX units, else float32)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.safetensors")
    p.add_argument("--overwrite", action="store_true", help="start again even if RUN_DIR has a checkpoint")
    p.add_argument("--checkpoint-every", type=positive_int, default=100, metavar="N", help="updates between checkpoints (default: 100)")
    p.add_argument("--eval-every", type=positive_int, default=500, metavar="N",
                   help="updates between validation ELBOs and image grids (default: 500)")
    p.add_argument("--eval-images", type=positive_int, default=256, metavar="N",
                   help="size of the (random, fixed) validation subset of the test split, or of the valid "
                        "split with --early-stopping (default: 256)")
    p.add_argument("--early-stopping", action="store_true",
                   help="hold the validation images out of training (MNIST: valid; emoji: a tenth of train), "
                        "validate on them and keep the weights of the best ELBO in RUN_DIR/best.safetensors")
    p.add_argument("--max-minutes", type=positive_float, default=None, metavar="M",
                   help="stop with a checkpoint after this much wall time (resume to continue)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                   help="override config fields, typed from the config, e.g. --set z_dim=32 lr=1e-3 "
                        "(repeatable: every --set adds its keys)")
    _add_common(p)
    p.set_defaults(func=cmd_train)


def _eval_parser(sub) -> None:
    """The `vnca eval` options."""
    p = sub.add_parser("eval", help="importance-weighted bound on log p(x) over the test split",
                       formatter_class=_Formatter, description=(
                           "The IWAE bound with k importance samples per test image, in nats and bits/dim "
                           "(the paper: k=128 on the whole test set).\n\n"
                           "example:\n  vnca eval --checkpoint runs/mnist_doubling_cpu/checkpoint.safetensors "
                           "--k 128 --images 1000 --json eval.json"))
    _add_model_options(p, untrained=False)
    p.add_argument("--k", type=positive_int, default=128, help="importance samples per image (default: 128)")
    p.add_argument("--images", type=positive_int, default=None, metavar="N",
                   help="a random subset (fixed by --seed) of N test images (default: all; with --pretrained, "
                        "the images of the model card, so that the command reproduces its figure)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="images evaluated at a time (default: 8)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the data set (for a model trained with dataset=folder: the same "
                        "image folder; its held-out tenth is evaluated)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the result as JSON")
    p.add_argument("--resume-file", metavar="FILE", default=None,
                   help="keep progress in FILE (.safetensors); run the same command again to continue an "
                        "interrupted evaluation")
    _add_common(p)
    p.set_defaults(func=cmd_eval)


def _sample_parser(sub) -> None:
    """The `vnca sample` options."""
    p = sub.add_parser("sample", help="a PNG grid of samples", formatter_class=_Formatter, description=(
        "Images from the model: z ~ N(0, I), then the mean of p(x|z).\n\n"
        "example:\n  vnca sample --checkpoint runs/mnist_doubling_cpu/checkpoint.safetensors --n 64 "
        "--out samples.png"))
    _add_model_options(p)
    p.add_argument("--n", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    p.add_argument("--out", default="samples.png", metavar="PNG", help="output image (default: samples.png)")
    _add_common(p)
    p.set_defaults(func=cmd_sample)


def _grow_parser(sub) -> None:
    """The `vnca grow` options."""
    p = sub.add_parser("grow", help="a GIF of samples growing from their seeds", formatter_class=_Formatter,
                       description=(
                           "Every state of the growth (paper Fig. 4): each frame shows the image mean of "
                           "p(x | current cells), small grids upscaled by nearest neighbour. The bar below "
                           "tracks the step (orange: seed and doublings).\n\n"
                           "example:\n  vnca grow --checkpoint runs/mnist_doubling_cpu/checkpoint.safetensors "
                           "--n 8 --out growth.gif"))
    _add_model_options(p)
    p.add_argument("--n", type=positive_int, default=8, help="number of samples (default: %(default)s)")
    p.add_argument("--out", default="growth.gif", metavar="GIF", help="output .gif (or .mp4 with imageio-ffmpeg; default: %(default)s)")
    p.add_argument("--fps", type=positive_float, default=12.0, help="frames per second (default: 12)")
    p.add_argument("--steps", type=positive_int, default=None, help="NCA steps (non-doubling model; default max_steps)")
    _add_common(p)
    p.set_defaults(func=cmd_grow)


def _damage_parser(sub) -> None:
    """The `vnca damage` options."""
    p = sub.add_parser("damage", help="a GIF of the growth with damage, next to the undamaged growth",
                       formatter_class=_Formatter, description=(
                           "Grow samples, zero part of the cells at step T, and watch them recover (left), "
                           "next to the same samples grown undamaged (right). Doubling model: the right half "
                           "(paper Fig. 11); non-doubling model: the right half or a random square (Fig. 9).\n\n"
                           "example:\n  vnca damage --checkpoint runs/mnist_doubling_cpu/checkpoint.safetensors "
                           "--at-step 30 --kind right-half --out damage.gif"))
    _add_model_options(p)
    p.add_argument("--n", type=positive_int, default=8, help="number of samples (default: %(default)s)")
    p.add_argument("--at-step", type=non_negative_int, default=None, metavar="T",
                   help="damage the state with this index (default: doubling, the last doubling; "
                        "non-doubling, max_steps)")
    p.add_argument("--kind", choices=("right-half", "square"), default=None,
                   help="what to zero (default: right-half for doubling, square for non-doubling)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="total NCA steps (non-doubling model; default at-step + max_steps)")
    p.add_argument("--out", default="damage.gif", metavar="GIF", help="output .gif (or .mp4 with imageio-ffmpeg; default: %(default)s)")
    p.add_argument("--fps", type=positive_float, default=12.0, help="frames per second (default: 12)")
    _add_common(p)
    p.set_defaults(func=cmd_damage)


def build_parser() -> argparse.ArgumentParser:
    """The `vnca` command line: one small function per subcommand."""
    parser = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Variational Neural Cellular Automata (Palm et al., ICLR 2022): train, "
                                 "evaluate and watch the models of the vnca_tutorial book.",
                     epilog=__doc__.split("\n\n")[1] + "\n\nRun 'vnca COMMAND --help' for the options of a command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _train_parser(sub)
    _eval_parser(sub)
    _sample_parser(sub)
    _grow_parser(sub)
    _damage_parser(sub)
    return parser


# --------------------------------------------------------------------------- entry point
class _StderrHandler(logging.StreamHandler):
    """Logs to whatever sys.stderr is at the time of each message."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(quiet: bool) -> None:
    pkg = logging.getLogger("vnca_tutorial")
    if not any(isinstance(h, _StderrHandler) for h in pkg.handlers):
        rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
        prefix = f"[rank {rank}] " if rank is not None else ""
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
                                               datefmt="%H:%M:%S"))
        pkg.addHandler(handler)
        pkg.propagate = False
    other_rank = int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0"
    pkg.setLevel(logging.WARNING if quiet or other_rank else logging.INFO)   # under torchrun rank 0 logs


def main(argv: list[str] | None = None) -> int:
    """Run the ``vnca`` command; returns the exit status (0 success, 1 bad input, 2 bad command line)."""
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.quiet)
        if args.threads:
            torch.set_num_threads(args.threads)
        return args.func(args)
    except (CLIError, CheckpointError, ChecksumError, TrainingDiverged) as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
