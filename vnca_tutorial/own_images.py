"""Your own images: a folder of image files as a VNCA's data, and a random train/test split.

Explained in the appendix "Your own images" (book/13_own_images.md). A VNCA models square images of
2 * 2**K pixels a side: binary images (values 0 and 1) with the Bernoulli likelihood, or 8-bit RGB
(integers 0..255) with the discretized logistic mixture. `load_image_folder` turns any folder of PNG,
JPEG, ... files into one of the two; `split` holds out a random test set.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import ImageData, _composite_on_white, random_indices, take

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _to_8_bits(im: Image.Image, path: Path) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (PIL's convert would clip it to white); float images refused."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im).astype(np.float64)                        # (H, W)
        if grey.min() < 0 or grey.max() > 65535:
            raise ValueError(f"{path}: 32-bit integer pixels outside 0..65535; convert it to 8 or 16 bits")
        return Image.fromarray(np.round(grey * 255 / 65535).astype(np.uint8), "L")
    if im.mode == "F":
        raise ValueError(f"{path} holds floating-point pixels, whose range PIL does not know; save it as "
                         f"an 8- or 16-bit image first")
    return im


def _square_rgba(path: Path, size: int) -> np.ndarray:  # -> uint8 (size, size, 4)
    """The file's first frame, upright (EXIF), centre-cropped to a square and resized to size x size."""
    try:
        with Image.open(path) as im:
            im = _to_8_bits(ImageOps.exif_transpose(im), path).convert("RGBA")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path} is not an image PIL can read ({e}); remove it from the folder or "
                         f"convert it to PNG") from None
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    # shrinking: the exact area average (no ringing, unlike Lanczos: fewer stray values to model)
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BILINEAR
    return np.asarray(im.resize((size, size), resample))


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (not in subfolders, not hidden ones such as macOS's ``._x.jpg``),
    sorted by name. Warns about the files of other kinds it leaves out (e.g. ``.heic``: convert them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: give the folder that holds your image files")
    visible = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    files = sorted(p for p in visible if p.suffix.lower() in IMAGE_SUFFIXES)
    others = sorted({p.suffix.lower() or "(no suffix)" for p in visible} - set(IMAGE_SUFFIXES))
    if others:
        warnings.warn(f"{folder}: left out {len(visible) - len(files)} file(s) of other kinds "
                      f"({', '.join(others)}); convert any images among them to PNG", stacklevel=3)
    if not files:
        raise ValueError(f"{folder} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)}; "
                         f"subfolders are not searched)")
    return files


def load_image_folder(folder: str | os.PathLike, size: int, binary: bool = False, threshold: float = 0.5,
                      invert: bool = False) -> ImageData:
    """Every image file in ``folder`` as a VNCA's data set (book/13_own_images.md).

    Each image is centre-cropped to a square, resized to ``size`` x ``size`` (shrunk by area averaging,
    enlarged bilinearly) and put on white where it is transparent; photos are turned upright as their EXIF
    says, and 16-bit greyscale is scaled to 8 bits. By default the result is 8-bit RGB, uint8
    (N, 3, size, size) in [0, 255], for the discretized logistic likelihood. With ``binary=True`` it is
    float32 (N, 1, size, size) in {0, 1}, for the Bernoulli likelihood: a pixel is 1 where its grey level
    (0 black, 1 white) is above ``threshold``. Binarized MNIST draws white digits on black; for dark
    strokes on light paper pass ``invert=True``, which turns the grey levels over (1 - grey) first.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2 (a doubling VNCA makes 2 * 2**K pixels a side: "
                         f"8, 16, 32, 64, ...), got {size!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold is a grey level between 0 (black) and 1 (white), got {threshold}")
    files = image_files(folder)
    rgb = _composite_on_white(np.stack([_square_rgba(p, size) for p in files]))  # (N, 3, size, size)
    if binary:
        grey = torch.from_numpy(rgb).float().mul(torch.tensor([0.299, 0.587, 0.114])[:, None, None])
        grey = grey.sum(1, keepdim=True) / 255                                  # (N, 1, size, size) in [0, 1]
        images = ((1 - grey if invert else grey) > threshold).float()
    else:
        images = torch.from_numpy(rgb)
    kind = ("binary, inverted" if invert else "binary") if binary else "RGB"
    return ImageData(images, None, f"{Path(folder)} ({len(files)} {kind} images, {size}x{size})", False,
                     names=tuple(p.name for p in files))


def split(data: ImageData, n_test: int, seed: int = 0,
          names: tuple[str, str] = ("train", "test")) -> tuple[ImageData, ImageData]:
    """(train, test): ``n_test`` images drawn at random (fixed ``seed``) as the test set, the rest to train.
    ``names`` label the two parts in their ``source`` (e.g. ("fit", "valid") for a validation split).

    Hold the test images out of training and out of every choice you make (checkpoints, settings); report
    the bound on them once, at the end (chapter 5).
    """
    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 1 <= n_test < len(data):
        raise ValueError(f"n_test must be an integer from 1 to {len(data) - 1} (the data has {len(data)} "
                         f"images, and training needs at least one), got {n_test!r}")
    order = torch.from_numpy(random_indices(len(data), len(data), seed))
    train, test = order[n_test:].sort().values, order[:n_test].sort().values   # each in folder order
    return tuple(take(data, idx, f"{data.source} [{name}: {len(idx)} of {len(data)}, seed {seed}]")
                 for name, idx in zip(names, (train, test)))


FOLDER_SPLITS = ("train", "test", "fit", "valid")   # fit + valid = train; train + test = the folder


def folder_splits(folder: str | os.PathLike, which: tuple[str, ...], size: int, binary: bool = False,
                  invert: bool = False) -> tuple[ImageData, ...]:
    """Splits of a folder of images, as ``vnca train`` and ``vnca eval`` use it (``--set dataset=folder
    --data-dir FOLDER``), from one read of its files: "test" is a random tenth of the folder (at least one
    image, seed 0), "train" the rest; with --early-stopping "valid" is a random tenth of "train" (seed 1)
    and "fit" the rest. The same folder gives the same splits on every call, so `vnca eval` measures images
    `vnca train` never saw. ``binary`` and ``invert`` are those of ``load_image_folder``."""
    for w in which or ("(none named)",):
        if w not in FOLDER_SPLITS:
            raise ValueError(f"unknown split {w!r} of an image folder; valid: {', '.join(FOLDER_SPLITS)}")
    data = load_image_folder(folder, size, binary=binary, invert=invert)
    if len(data) < 4:
        raise ValueError(f"{folder} holds {len(data)} images: a folder needs at least 4 (train, test and "
                         f"validation images), and far more to learn from")
    train, test = split(data, max(1, len(data) // 10), seed=0)
    fit, valid = split(train, max(1, len(train) // 10), seed=1, names=("fit", "valid"))
    parts = {"train": train, "test": test, "fit": fit, "valid": valid}
    return tuple(parts[w] for w in which)


def folder_split(folder: str | os.PathLike, which: str, size: int, binary: bool = False,
                 invert: bool = False) -> ImageData:
    """One split of a folder of images ("train", "test", "fit" or "valid"; see ``folder_splits``)."""
    return folder_splits(folder, (which,), size, binary=binary, invert=invert)[0]
