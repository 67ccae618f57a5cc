"""scripts/evaluate_pretrained.py: shards of the test set combine into exactly the whole-set figure."""
import json
import sys
from pathlib import Path

import pytest
import torch

from vnca_tutorial import pretrained
from vnca_tutorial.data import ImageData
from vnca_tutorial.evaluate import evaluate_bound

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import evaluate_pretrained  # noqa: E402

from test_pretrained import _ship_tiny  # noqa: E402


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny shipped model and a test split of 11 digits (so the shards are unequal and end mid-batch)."""
    _ship_tiny(tmp_path, monkeypatch)
    images = (torch.rand(11, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    test = ImageData(images=images, labels=None, source="11 random test digits", comparable_with_paper=False)
    monkeypatch.setattr(evaluate_pretrained, "load_dataset", lambda name, split: test)
    return images, tmp_path / "results", tmp_path / "progress"


def test_shards_combine_into_the_whole_test_set_figure(tiny):
    images, results, progress = tiny
    kw = dict(k=3, batch_size=2, results=results, progress_dir=progress, progress=False)
    records = [evaluate_pretrained.evaluate_shard("tiny", i, 3, **kw) for i in (2, 0)]
    assert [r["images"] for r in records] == [[8, 11], [0, 4]]
    with pytest.raises(SystemExit, match=r"shards \[1\] of 3"):
        evaluate_pretrained.combine("tiny", 3, 3, results)
    evaluate_pretrained.evaluate_shard("tiny", 1, 3, **kw)
    combined, seconds = evaluate_pretrained.combine("tiny", 3, 3, results)
    whole = evaluate_bound(pretrained.load("tiny"), images, k=3, batch_size=2)
    assert combined.n_images == 11 and seconds >= 0
    assert combined.nats == pytest.approx(whole.nats, abs=1e-4)
    assert combined.stderr == pytest.approx(whole.stderr, abs=1e-4)
    card = evaluate_pretrained.write_card("tiny", 3, 3, results)
    assert card["test_bound"]["n_images"] == 11 and card["data"]["test"] == "all 11 test images"
    assert pretrained.card("tiny")["test_bound"]["nats"] == pytest.approx(whole.nats, abs=1e-4)


def test_shards_of_other_weights_are_not_counted(tiny):
    _, results, progress = tiny
    evaluate_pretrained.evaluate_shard("tiny", 0, 2, k=2, results=results, progress_dir=progress,
                                       progress=False)
    file = evaluate_pretrained.shard_file("tiny", 2, 2, 0, results)
    record = json.loads(file.read_text())
    assert len(evaluate_pretrained.finished_shards("tiny", 2, 2, results)) == 1
    file.write_text(json.dumps({**record, "sha256": "0" * 64}))       # written for weights that were replaced
    assert evaluate_pretrained.finished_shards("tiny", 2, 2, results) == []
