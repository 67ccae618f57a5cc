"""Download the Noto emoji from their public source, verified, into the cache (chapter 9, book/09_colour.md).

The source is the googlefonts/noto-emoji repository at tag v2.028, folder png/128: 3,320 files
emoji_u<code points>.png, 128x128 RGBA (see the data's PROVENANCE for why this version). Git names that
folder by the SHA-1 of its tree, and each file by the SHA-1 of its blob, so the download is checked end to
end without trusting the server: the listing must hash to the tree below, and every file to its entry in
the listing. The files are then resized to 64x64 (RGBA, bilinear; what torchvision's Resize does to a PIL
image) and written as ``noto_emoji_64.npz`` into the cache, where `load_noto_emoji` finds them.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import data
from .checkpoint import atomic_write

logger = logging.getLogger("vnca_tutorial.data")

NOTO_COMMIT = "c05b4b47c8250ccd232780cae46d66a8179e77ab"       # tag v2.028 (2021-07-15)
NOTO_PNG128_TREE = "f00c6f8480eea80c8fa3bec431ae5b40b2963352"  # git tree of png/128 at that commit
TREE_URL = "https://api.github.com/repos/googlefonts/noto-emoji/git/trees/{tree}"
FILE_URL = "https://raw.githubusercontent.com/googlefonts/noto-emoji/{commit}/png/128/{name}"
MAX_FILE_BYTES = 1 << 22       # a 128x128 PNG is a few KiB; a larger reply is not one
# sha256 of the resized images (3320, 64, 64, 4) uint8 of the reference copy the book's figures were measured
# on (made with Pillow 13.0.0). Another Pillow may round the resize differently: then a warning, not an error
# (the source files themselves are verified by their git hashes).
IMAGES_SHA256 = "dc19eb892d5e2e02a260de623b6da022e2eecff8cec4a6fbcd5dedea7d0b0bde"


def git_blob_sha1(content: bytes) -> str:
    """The name git gives a file's content: SHA-1 of 'blob <size>\\0' + content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def git_tree_sha1(entries: list[dict]) -> str:
    """The name git gives a folder of files: SHA-1 of its entries '<mode> <name>\\0<20-byte sha>', by name."""
    body = b"".join(f"{e['mode']} {e['path']}".encode() + b"\0" + bytes.fromhex(e["sha"])
                    for e in sorted(entries, key=lambda e: e["path"].encode()))
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def _fetch(url: str, timeout: float, limit: int) -> bytes:
    with data._open_url(url, timeout) as response:
        content = response.read(limit + 1)
    if len(content) > limit:
        raise data.ChecksumError(f"{url} sent more than {limit} bytes: not the expected file")
    return content


def _verified_listing(timeout: float) -> list[dict]:
    """The png/128 entries, checked against the tree's SHA-1 (the listing comes from GitHub's API)."""
    url = TREE_URL.format(tree=NOTO_PNG128_TREE)
    try:
        listing = json.loads(_fetch(url, timeout, 1 << 24))
        entries = [{k: e[k] for k in ("mode", "path", "sha")} for e in listing["tree"]]
    except (ValueError, KeyError, TypeError) as e:
        raise data.ChecksumError(f"{url} did not send a git tree listing ({e})") from None
    if listing.get("truncated") or git_tree_sha1(entries) != NOTO_PNG128_TREE:
        raise data.ChecksumError(f"the listing from {url} does not hash to tree {NOTO_PNG128_TREE}")
    # sorted by file name, the order of noto_emoji_64.npz, on which the 80/20 split depends
    return sorted((e for e in entries if e["path"].startswith("emoji_u") and e["path"].endswith(".png")),
                  key=lambda e: e["path"])


def _one_emoji(entry: dict, timeout: float) -> np.ndarray:  # (64, 64, 4) uint8 RGBA
    from PIL import Image
    url = FILE_URL.format(commit=NOTO_COMMIT, name=entry["path"])
    content = _fetch(url, timeout, MAX_FILE_BYTES)
    if git_blob_sha1(content) != entry["sha"]:
        raise data.ChecksumError(f"{url}: its content does not hash to blob {entry['sha']}; retry later")
    with Image.open(io.BytesIO(content)) as im:
        return np.asarray(im.convert("RGBA").resize((data.EMOJI_SIZE, data.EMOJI_SIZE), Image.BILINEAR))


def download_noto_emoji(cache_dir: str | os.PathLike | None = None, timeout: float = data.DOWNLOAD_TIMEOUT_S,
                        deadline: float = data.DOWNLOAD_DEADLINE_S, workers: int = 8) -> Path:
    """Download, verify and resize the 3,320 Noto emoji into ``<cache>/noto_emoji_64.npz``; returns its path.

    Nothing is written unless every file verifies. Network errors propagate (``OSError``), a file or
    listing that does not hash to its git name raises `ChecksumError`, and a download that takes longer
    than ``deadline`` seconds in all raises ``TimeoutError``.
    """
    dest = data._cache_dir(cache_dir) / data.EMOJI_NPZ
    entries = _verified_listing(timeout)
    logger.info("Noto emoji: downloading %d PNGs from github.com/googlefonts/noto-emoji at %s",
                len(entries), NOTO_COMMIT[:10])
    give_up = time.monotonic() + deadline

    def one(entry: dict) -> np.ndarray:
        if time.monotonic() > give_up:
            raise TimeoutError(f"the Noto emoji download gave up after {deadline:g} s; nothing was written. "
                               f"Retry later, or place {data.EMOJI_NPZ} yourself in $VNCA_DATA_DIR.")
        return _one_emoji(entry, timeout)

    with ThreadPoolExecutor(workers) as pool:
        images = np.stack(list(pool.map(one, entries)))                        # (N, 64, 64, 4) uint8
    names = np.array([e["path"][len("emoji_u"):-len(".png")] for e in entries])
    if hashlib.sha256(images.tobytes()).hexdigest() != IMAGES_SHA256:
        warnings.warn("the downloaded Noto emoji are verified, but resized they differ from the copy the book's "
                      "figures were measured on (another Pillow version?); numbers may differ slightly",
                      data.FallbackDataWarning, stacklevel=2)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, names=names)
    atomic_write(dest, write)
    return dest
