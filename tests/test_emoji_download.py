"""vnca_tutorial.emoji_download against a local HTTP server: the listing must hash to the git tree, every
file to its blob, and nothing reaches the cache unless all of them do. No network."""
import hashlib
import io
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from helpers import http_server
from vnca_tutorial import data as d
from vnca_tutorial import emoji_download as ed


def png(seed: int, size: int = 128) -> bytes:
    rgba = np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


def test_git_hashes_match_git_itself(tmp_path):
    """The two hash functions against `git hash-object` and `git write-tree`, where git is installed."""
    content = png(0)
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not installed")
    for name, body in {"emoji_u1f600.png": content, "emoji_u1f601.png": png(1), "a.txt": b"x"}.items():
        (tmp_path / name).write_bytes(body)
    git = ["git", "-C", str(tmp_path)]
    blob = subprocess.run([*git, "hash-object", "emoji_u1f600.png"], capture_output=True, text=True).stdout.strip()
    assert ed.git_blob_sha1(content) == blob
    subprocess.run([*git, "add", "."], check=True)
    tree = subprocess.run([*git, "write-tree"], capture_output=True, text=True).stdout.strip()
    entries = [{"mode": "100644", "path": n, "sha": ed.git_blob_sha1((tmp_path / n).read_bytes())}
               for n in ("emoji_u1f601.png", "a.txt", "emoji_u1f600.png")]      # any order: sorted inside
    assert ed.git_tree_sha1(entries) == tree


@pytest.fixture
def noto(monkeypatch, tmp_path):
    """Three emoji and a README served like github's API and raw files; returns (files, cache folder)."""
    pngs = {f"emoji_u{cp}.png": png(i) for i, cp in enumerate(["1f600", "1f469_200d_1f692", "2764"])}
    entries = [{"mode": "100644", "path": n, "sha": ed.git_blob_sha1(b), "type": "blob"}
               for n, b in {**pngs, "README": b"not an emoji"}.items()]
    tree = ed.git_tree_sha1(entries)
    files = {f"trees/{tree}": json.dumps({"sha": tree, "tree": entries, "truncated": False}).encode(),
             **{f"raw/{n}": b for n, b in pngs.items()}}
    monkeypatch.setattr(ed, "NOTO_PNG128_TREE", tree)
    monkeypatch.delenv("VNCA_DATA_DIR", raising=False)
    monkeypatch.setenv("VNCA_CACHE_DIR", str(tmp_path / "cache"))
    return files, pngs, tmp_path / "cache"


def _serve(monkeypatch, base: str) -> None:
    monkeypatch.setattr(ed, "TREE_URL", base + "/trees/{tree}")
    monkeypatch.setattr(ed, "FILE_URL", base + "/raw/{name}")


def test_load_noto_emoji_downloads_verifies_and_caches(monkeypatch, noto, recwarn):
    files, pngs, cache = noto
    with http_server(files) as base:
        _serve(monkeypatch, base)
        test = d.load_noto_emoji("test")
        train = d.load_noto_emoji("train")
    assert len(train) + len(test) == 3 and str(cache / d.EMOJI_NPZ) in train.source
    with np.load(cache / d.EMOJI_NPZ) as z:
        assert list(z["names"]) == ["1f469_200d_1f692", "1f600", "2764"]        # the README is not an emoji
        expected = np.asarray(Image.open(io.BytesIO(pngs["emoji_u1f600.png"])).convert("RGBA")
                              .resize((64, 64), Image.BILINEAR))
        assert np.array_equal(z["images"][1], expected)
    # from now on the cache serves it: no server needed
    assert d.load_noto_emoji("train").images.equal(train.images)
    # three test emoji are not the reference copy: resized, they do not hash to it, which is a warning
    assert [str(w.message) for w in recwarn if "differ from the copy" in str(w.message)]


def test_resized_emoji_that_hash_to_the_reference_copy_give_no_warning(monkeypatch, noto, recwarn):
    files, pngs, cache = noto
    expected = np.stack([np.asarray(Image.open(io.BytesIO(pngs[n])).convert("RGBA").resize((64, 64), Image.BILINEAR))
                         for n in sorted(pngs)])
    monkeypatch.setattr(ed, "IMAGES_SHA256", hashlib.sha256(expected.tobytes()).hexdigest())
    with http_server(files) as base:
        _serve(monkeypatch, base)
        ed.download_noto_emoji()
    assert not [w for w in recwarn if "differ from the copy" in str(w.message)]


@pytest.mark.parametrize("tamper", ["file", "listing", "missing"])
def test_a_file_or_listing_that_does_not_hash_to_its_git_name_writes_nothing(monkeypatch, noto, tamper):
    files, _, cache = noto
    tree_key = next(k for k in files if k.startswith("trees/"))
    if tamper == "file":
        files["raw/emoji_u2764.png"] = png(99)
    elif tamper == "listing":
        listing = json.loads(files[tree_key])
        listing["tree"][0]["sha"] = hashlib.sha1(b"something else").hexdigest()
        files[tree_key] = json.dumps(listing).encode()
    else:
        del files["raw/emoji_u2764.png"]                                         # a 404
    with http_server(files) as base:
        _serve(monkeypatch, base)
        with pytest.raises(FileNotFoundError, match="download failed") as e:
            d.load_noto_emoji("train")
    assert ("hash" in str(e.value)) == (tamper != "missing")
    assert not (cache / d.EMOJI_NPZ).exists() and not list(cache.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="synthetic_emoji"):
        d.load_noto_emoji("train", download=False)                              # and no download tried


def test_a_download_past_its_deadline_gives_up(monkeypatch, noto):
    files, _, cache = noto
    with http_server(files) as base:
        _serve(monkeypatch, base)
        with pytest.raises(TimeoutError, match="gave up"):
            ed.download_noto_emoji(deadline=-1.0, workers=1)
    assert not (cache / d.EMOJI_NPZ).exists()
