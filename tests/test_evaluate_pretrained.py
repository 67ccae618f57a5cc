"""scripts/evaluate_pretrained.py: shards of the test set combine into exactly the whole-set figure."""
import json
import sys
from pathlib import Path

import pytest
import torch

from vnca_tutorial import pretrained
from vnca_tutorial.data import ImageData
from vnca_tutorial.checkpoint import save_checkpoint
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
    kw = dict(k=3, batch_size=2, results=results, progress=False)
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


def test_an_interrupted_shard_goes_on_from_its_partial_record(tiny, monkeypatch):
    """A shard stopped mid-way (the session ends) leaves a partial record; run again, on this or another
    machine, it evaluates only the batches left and gives exactly the values of an uninterrupted run."""
    _, results, _ = tiny
    kw = dict(k=3, batch_size=2, results=results, progress=False, save_every=2)
    whole = evaluate_pretrained.evaluate_shard("tiny", 0, 1, **{**kw, "results": results / "whole"})
    real, calls = evaluate_pretrained.evaluate_log_px, []

    def stops_after_two_slices(*args, **kwargs):
        calls.append(kwargs["first_batch"])
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(evaluate_pretrained, "evaluate_log_px", stops_after_two_slices)
    with pytest.raises(KeyboardInterrupt):
        evaluate_pretrained.evaluate_shard("tiny", 0, 1, **kw)
    partial = evaluate_pretrained.partial_file("tiny", 3, 1, 0, results)
    assert len(json.loads(partial.read_text())["log_px"]) == 8          # batches 0-3 of 2 digits
    assert not evaluate_pretrained.shard_file("tiny", 3, 1, 0, results).exists()
    assert evaluate_pretrained.finished_shards("tiny", 3, 1, results) == []   # a partial is not a shard
    monkeypatch.setattr(evaluate_pretrained, "evaluate_log_px", real)
    monkeypatch.setattr(evaluate_pretrained, "cpu_description", lambda: "Another CPU")
    record = evaluate_pretrained.evaluate_shard("tiny", 0, 1, **kw)
    assert record["log_px"] == whole["log_px"] and not partial.exists()
    assert record["hardware"].startswith(whole["hardware"] + "; then Another CPU")


def test_a_partial_record_of_other_weights_is_not_continued(tiny):
    _, results, _ = tiny
    kw = dict(k=3, batch_size=2, results=results, progress=False)
    partial = evaluate_pretrained.partial_file("tiny", 3, 1, 0, results)
    partial.parent.mkdir(parents=True)
    partial.write_text(json.dumps({"sha256": "0" * 64, "log_px": [0.0] * 4, "seconds": 9.0}))
    record = evaluate_pretrained.evaluate_shard("tiny", 0, 1, **kw)
    assert len(record["log_px"]) == 11 and 0.0 not in record["log_px"] and record["seconds"] < 9.0


def test_shards_of_other_weights_are_not_counted(tiny):
    _, results, progress = tiny
    evaluate_pretrained.evaluate_shard("tiny", 0, 2, k=2, results=results, progress=False)
    file = evaluate_pretrained.shard_file("tiny", 2, 2, 0, results)
    record = json.loads(file.read_text())
    assert len(evaluate_pretrained.finished_shards("tiny", 2, 2, results)) == 1
    file.write_text(json.dumps({**record, "sha256": "0" * 64}))       # written for weights that were replaced
    assert evaluate_pretrained.finished_shards("tiny", 2, 2, results) == []


WHOLE_SET = [n for n in pretrained.names() if pretrained.card(n)["data"]["test"].startswith("all ")]
SUBSET = [n for n in pretrained.names() if n not in WHOLE_SET]


@pytest.mark.parametrize("name", WHOLE_SET)
def test_each_whole_test_set_figure_in_a_card_is_its_committed_shards_of_the_shipped_file(name):
    """card = shards = sha256: the card's bound is recomputed from the per-image bounds committed in
    benchmarks/results/pretrained_eval/, which count only when written for the shipped file's sha256."""
    card = pretrained.card(name)
    k = card["test_bound"]["k"]
    files = sorted((evaluate_pretrained.RESULTS / name).glob(f"k{k}_shard*_of??.json"))
    shards = int(files[0].stem.split("_of")[1])
    result, seconds = evaluate_pretrained.combine(name, k, shards)
    assert result.n_images == card["test_bound"]["n_images"]
    assert result.nats == pytest.approx(card["test_bound"]["nats"], abs=1e-6)
    assert result.stderr == pytest.approx(card["test_bound"]["stderr"], abs=1e-6)
    assert card["sha256"] == pretrained.sha256(pretrained.HERE / f"{name}.safetensors")


@pytest.mark.parametrize("name", SUBSET)
def test_a_card_without_a_whole_set_figure_says_so_in_its_data_and_notes(name):
    card = pretrained.card(name)
    assert card["test_bound"]["n_images"] < 10_000 and "subset" in card["data"]["test"]
    assert f"{card['test_bound']['n_images']}" in card["data"]["test"]


def test_a_candidate_is_evaluated_in_shards_before_it_ships(tiny, tmp_path, monkeypatch, capsys):
    """A model exported to candidates/ (export_pretrained.py --candidate) is not among the shipped models;
    its shards and card work as a shipped model's, and the script asks for --candidate for it."""
    images, results, progress = tiny
    candidates = tmp_path / "candidates"
    candidates.mkdir()
    for suffix in (".safetensors", ".json"):                   # "tiny" moves from the package to candidates/
        (tmp_path / f"tiny{suffix}").rename(candidates / f"tiny{suffix}")
    assert pretrained.names() == [] and pretrained.names(candidates) == ["tiny"]
    with pytest.raises(ValueError, match="no pretrained model 'tiny'"):
        pretrained.load("tiny")
    kw = dict(k=3, batch_size=2, results=results, progress=False, folder=candidates)
    for i in range(2):
        evaluate_pretrained.evaluate_shard("tiny", i, 2, **kw)
    preview = {"nats": -1.0, "bpd": 0.1, "k": 3, "n_images": 1, "stderr": 0.0}     # as write_subset_card
    pretrained.save_card("tiny", {**pretrained.card("tiny", candidates), "test_bound": preview,
                                  "data": {"test": "a fixed-seed random subset of 1 test images"}}, candidates)
    card = evaluate_pretrained.write_card("tiny", 3, 2, results, folder=candidates)
    whole = evaluate_bound(pretrained.load("tiny", folder=candidates), images, k=3, batch_size=2)
    assert card["test_bound"]["nats"] == pytest.approx(whole.nats, abs=1e-4)
    assert card["subset_preview"] == {**preview, "test": "a fixed-seed random subset of 1 test images"}
    assert evaluate_pretrained.write_card("tiny", 3, 2, results, candidates)["subset_preview"] == \
        card["subset_preview"]                                  # a second --card keeps the preview
    assert pretrained.card("tiny", candidates)["test_bound"] == card["test_bound"]
    monkeypatch.setattr(evaluate_pretrained, "CANDIDATES", candidates)
    monkeypatch.setattr(evaluate_pretrained, "RESULTS", results)
    with pytest.raises(SystemExit):
        evaluate_pretrained.main(["tiny", "--shards", "2", "--status"])
    assert "add --candidate" in capsys.readouterr().err
    evaluate_pretrained.main(["tiny", "--candidate", "--shards", "2", "--k", "3", "--status"])
    assert "2 of 2 shards done" in capsys.readouterr().out


def test_a_finished_shard_is_not_evaluated_again_without_redo(tiny, monkeypatch, capsys):
    images, results, progress = tiny
    monkeypatch.setattr(evaluate_pretrained, "RESULTS", results)
    calls = []
    real = evaluate_pretrained.evaluate_shard
    monkeypatch.setattr(evaluate_pretrained, "evaluate_shard",
                        lambda name, i, shards, **kw: calls.append(i) or real(name, i, shards, **kw, progress=False))
    evaluate_pretrained.main(["tiny", "--shards", "2", "--shard", "0", "--k", "3"])
    record = evaluate_pretrained.shard_file("tiny", 3, 2, 0, results)
    before = record.read_text()
    evaluate_pretrained.main(["tiny", "--shards", "2", "--shard", "0", "1", "--k", "3"])
    assert calls == [0, 1] and record.read_text() == before           # shard 0 kept, shard 1 evaluated
    assert "shard 0/2 is done already" in capsys.readouterr().out
    evaluate_pretrained.main(["tiny", "--shards", "2", "--shard", "0", "--k", "3", "--redo"])
    assert calls == [0, 1, 0]


def test_evaluate_bound_refuses_first_batch(tiny):
    with pytest.raises(TypeError, match="takes no first_batch.*evaluate_log_px"):
        evaluate_bound(pretrained.load("tiny"), tiny[0], k=2, first_batch=1)


@pytest.mark.parametrize("name", pretrained.names(evaluate_pretrained.CANDIDATES))
def test_a_committed_candidate_is_the_file_its_card_describes_and_not_shipped(name):
    card = pretrained.card(name, evaluate_pretrained.CANDIDATES)
    assert card["sha256"] == pretrained.sha256(evaluate_pretrained.CANDIDATES / f"{name}.safetensors")
    assert name not in pretrained.names()                      # it is not in the package
    n = card["test_bound"]["n_images"]
    assert (f"{n:,}" in card["data"]["test"]) or (str(n) in card["data"]["test"])
    model = pretrained.load(name, folder=evaluate_pretrained.CANDIDATES)
    assert model.n_parameters() == card["parameters"] and model.config.bf16 is False


def test_store_float16_rounds_the_weights_and_measures_the_card_again(tiny, monkeypatch):
    import store_float16
    images, results, _ = tiny
    path = pretrained.HERE / "tiny.safetensors"
    with torch.no_grad():                                   # weights that float16 really rounds
        model = pretrained.load("tiny")
        for t in model.parameters():
            t.add_(torch.randn_like(t) * 0.1)
    save_checkpoint(path, model, model.config, step=1)
    old_sha = pretrained.sha256(path)
    card = {**pretrained.card("tiny"), "sha256": old_sha, "stored_dtype": "float32",
            "test_bound": {"nats": -1.0, "k": 3, "n_images": 5}}
    pretrained.save_card("tiny", card)
    stale = results.parent / "runs/pretrained_eval/tiny/k3_subset5.safetensors"     # a --subset run's file
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"of the float32 weights")
    (results / "tiny").mkdir(parents=True)
    for i, sha in enumerate([old_sha, "0" * 64]):           # a shard of these weights, one of others
        (results / "tiny" / f"k3_shard0{i}_of02.json").write_text(json.dumps({"sha256": sha}))
    monkeypatch.setattr(store_float16, "RESULTS", results)
    monkeypatch.chdir(results.parent)                       # its progress file goes to ./runs/
    size = path.stat().st_size
    store_float16.main(["tiny"])
    after = pretrained.card("tiny")
    assert after["stored_dtype"] == "float16" and after["sha256"] == pretrained.sha256(path) != old_sha
    assert path.stat().st_size < 0.6 * size
    assert after["float32_test_bound"] == {"nats": -1.0, "k": 3, "n_images": 5, "sha256": old_sha}
    rounded = pretrained.load("tiny")
    for kept, original in zip(rounded.parameters(), model.parameters()):
        assert torch.equal(kept, original.half().float())
    from vnca_tutorial.data import subset
    test = ImageData(images=images, labels=None, source="x", comparable_with_paper=False)
    five = subset(test, 5, seed=0).images
    assert after["test_bound"]["nats"] == pytest.approx(evaluate_bound(rounded, five, k=3).nats, abs=1e-4)
    assert [p.name for p in (results / "tiny").iterdir()] == ["k3_shard01_of02.json"]
    assert (results / "retired" / f"tiny_{old_sha[:8]}" / "k3_shard00_of02.json").exists()
    store_float16.main(["tiny"])                            # again: nothing rounded twice, nothing lost
    assert pretrained.card("tiny")["sha256"] == after["sha256"]


def test_store_float16_refuses_a_whole_test_card(tiny, capsys):
    import store_float16
    pretrained.save_card("tiny", {**pretrained.card("tiny"), "stored_dtype": "float32",
                                  "test_bound": {"nats": -1.0, "k": 3, "n_images": 11}})
    with pytest.raises(SystemExit):
        store_float16.main(["tiny"])
    assert "whole-test figure" in capsys.readouterr().err
    assert pretrained.card("tiny")["stored_dtype"] == "float32"              # nothing was changed


def test_store_float16_leaves_weights_that_overflow_it_as_they_are(tiny):
    import store_float16
    path = pretrained.HERE / "tiny.safetensors"
    model = pretrained.load("tiny")
    with torch.no_grad():
        next(model.parameters()).fill_(1e6)                   # beyond float16's 65,504
    save_checkpoint(path, model, model.config, step=1)
    pretrained.save_card("tiny", {**pretrained.card("tiny"), "sha256": pretrained.sha256(path)})
    before = path.read_bytes()
    with pytest.raises(SystemExit, match="overflow float16; left as they are"):
        store_float16.round_weights("tiny")
    assert path.read_bytes() == before
