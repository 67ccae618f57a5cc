"""Tests for vnca_tutorial.train (Python API): learning, exact resume, divergence, checkpoints, sharding.

Every model here is tiny (|z| = 8, hidden 8, 4-image batches, a handful of updates): the tests check the
mechanics of the training loop, not the quality of the models.
"""
import csv
import os
import re
from pathlib import Path

import pytest
import torch

from vnca_tutorial import checkpoint as ckpt
from vnca_tutorial.checkpoint import CheckpointError, load_checkpoint, load_model, read_metadata
from vnca_tutorial.config import get_preset
from vnca_tutorial.model import build_model
from vnca_tutorial.pool import StatePool
from vnca_tutorial.train import (BEST, CHECKPOINT, METRICS, MetricsLog, TrainingDiverged, TrainSettings,
                                 batch_indices, mirror_half, train)
from vnca_tutorial.vae import VAE

torch.set_num_threads(1)  # tiny tensors: threads only contend on a loaded 2-core machine

TINY = dict(z_dim=8, hidden=8, encoder_channels=4, batch_size=4)


def doubling(**kw):
    """A doubling VNCA with 15 states (K = 4 doublings, 2 steps per stage)."""
    return get_preset("mnist_doubling_cpu", **{**TINY, "n_blocks": 1, "steps_per_stage": 2, **kw})


def nondoubling(**kw):
    """A non-doubling VNCA with pool training; pool_size 7 is not a multiple of the fresh share."""
    return get_preset("mnist_nondoubling_cpu", **{**TINY, "min_steps": 2, "max_steps": 4, "pool_size": 7,
                                                  **kw})


def binary_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 32, 32, generator=g) < 0.2).float()


def settings(run_dir, **kw) -> TrainSettings:
    return TrainSettings(run_dir=str(run_dir), **{"checkpoint_every": 2, "eval_every": 3, "progress": False,
                                                  **kw})


def read_rows(run_dir) -> list[dict]:
    with open(Path(run_dir) / METRICS) as f:
        return list(csv.DictReader(f))


# --- learning -------------------------------------------------------------------------------------
def test_a_few_updates_lower_the_loss_on_a_fixed_batch(tmp_path):
    cfg = doubling(lr=1e-2)
    x = binary_images(4)                                   # one batch: every update sees the same images

    def loss_of(model) -> float:                           # the same z noise before and after
        torch.manual_seed(123)
        with torch.no_grad():
            return model(x).item()

    torch.manual_seed(0)                                   # train() builds its model after this seed
    before = loss_of(build_model(cfg))
    model, history = train(cfg, x, settings(tmp_path, n_updates=12, checkpoint_every=100))
    after = loss_of(model)
    assert len(history) == 12
    assert after < 0.8 * before, (before, after)
    assert history[-1]["loss"] < history[0]["loss"]


def test_mirror_half_mirrors_about_half_the_images_the_same_way_every_time():
    x = torch.rand(400, 3, 5, 7)
    y = mirror_half(x, step=3, seed=0)
    mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(x, y)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(x, y)])
    assert bool((mirrored ^ kept).all())                       # each image mirrored or untouched, never both
    assert 160 < int(mirrored.sum()) < 240                     # binomial(400, 1/2): mean 200, sd 10
    assert torch.equal(mirror_half(x, 3, 0), y)                # a pure function of (seed, step, rank) ...
    assert not torch.equal(mirror_half(x, 4, 0), y) and not torch.equal(mirror_half(x, 3, 0, rank=1), y)


def test_hflip_trains_on_mirrored_images_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = doubling(hflip=True)
    x, val = binary_images(12), binary_images(4, seed=1)
    whole, _ = train(cfg, x, settings(tmp_path / "whole", n_updates=6), val_images=val)
    train(cfg, x, settings(tmp_path / "split", n_updates=3), val_images=val)
    resumed, _ = train(cfg, x, settings(tmp_path / "split", n_updates=6, resume=True), val_images=val)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    seen = []                                                  # the batches the loss was given
    import vnca_tutorial.train as train_module
    real = train_module.batch_loss
    monkeypatch.setattr(train_module, "batch_loss", lambda net, xb, *a: (seen.append(xb), real(net, xb, *a))[1])
    train(cfg, x, settings(tmp_path / "seen", n_updates=3, eval_every=100))

    def among(img, images) -> bool:
        return any(torch.equal(img, other) for other in images)
    images = [img for batch in seen for img in batch]
    mirrored = [img for img in images if not among(img, x)]
    assert mirrored and all(among(img.flip(-1), x) for img in mirrored)     # some mirrored, nothing else


def test_keep_best_keeps_the_weights_of_the_best_validation_elbo_across_a_resume(tmp_path):
    cfg = doubling(lr=1e-2)
    x, val = binary_images(12), binary_images(4, seed=1)
    run = tmp_path / "run"
    train(cfg, x, settings(run, n_updates=4, eval_every=1, keep_best=True), val_images=val)
    train(cfg, x, settings(run, n_updates=9, eval_every=1, keep_best=True, resume=True), val_images=val)
    rows = read_rows(run)
    elbos = [float(r["val_elbo"]) for r in rows]
    best_step = 1 + max(range(len(elbos)), key=elbos.__getitem__)
    meta = read_metadata(run / BEST)
    assert int(meta["step"]) == best_step and float(meta["val_elbo"]) == pytest.approx(max(elbos))
    assert "optim.param_groups" not in meta                   # weights only
    best = load_model(run / BEST)
    last = load_model(run / CHECKPOINT)
    assert (best_step == 9) == all(torch.equal(a, b) for a, b in zip(best.state_dict().values(),
                                                                       last.state_dict().values()))
    train(cfg, x, settings(tmp_path / "off", n_updates=2, eval_every=1), val_images=val)
    assert not (tmp_path / "off" / BEST).exists()


# --- resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_config", [doubling, nondoubling], ids=["doubling", "nondoubling_pool"])
def test_resume_gives_the_uninterrupted_run(tmp_path, make_config):
    cfg = make_config()
    x, val = binary_images(12), binary_images(4, seed=1)
    n = 6
    whole, _ = train(cfg, x, settings(tmp_path / "whole", n_updates=n), val_images=val)
    train(cfg, x, settings(tmp_path / "split", n_updates=n // 2), val_images=val)   # "killed" at n/2
    assert int(read_metadata(tmp_path / "split" / CHECKPOINT)["step"]) == n // 2
    resumed, history = train(cfg, x, settings(tmp_path / "split", n_updates=n, resume=True), val_images=val)
    assert [r["step"] for r in history] == list(range(n // 2 + 1, n + 1))   # it did continue

    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name

    def rows(run):  # everything but the wall-clock seconds
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(tmp_path / run)]
    assert rows("whole") == rows("split")
    assert len(rows("whole")) == n and rows("whole")[2]["val_elbo"] != ""
    # the checkpoints agree too (optimizer, random state and, for the pool model, the pool)
    _, t_whole, _ = load_checkpoint(tmp_path / "whole" / CHECKPOINT)
    _, t_split, _ = load_checkpoint(tmp_path / "split" / CHECKPOINT)
    assert t_whole.keys() == t_split.keys()
    for k in t_whole:
        assert torch.equal(t_whole[k], t_split[k]), k
    if make_config is nondoubling:
        assert t_whole["pool.states"].shape[0] == cfg.pool_size


@pytest.mark.parametrize("make_config", [doubling, nondoubling], ids=["doubling", "nondoubling_pool"])
def test_a_run_stopped_between_validations_resumes_into_the_uninterrupted_run(tmp_path, make_config):
    """Stopped by --updates 4 with eval_every 3, the stopped run validates at update 4 and the whole run does
    not: validation must leave the training random stream alone for the weights to agree."""
    cfg = make_config()
    x, val = binary_images(12), binary_images(4, seed=1)
    whole, _ = train(cfg, x, settings(tmp_path / "whole", n_updates=6), val_images=val)
    train(cfg, x, settings(tmp_path / "split", n_updates=4), val_images=val)
    assert read_rows(tmp_path / "split")[3]["val_elbo"] != ""          # the forced last validation
    resumed, _ = train(cfg, x, settings(tmp_path / "split", n_updates=6, resume=True), val_images=val)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_checkpoint_of_another_config_refuses_to_resume(tmp_path):
    x = binary_images(8)
    train(doubling(), x, settings(tmp_path, n_updates=2))
    with pytest.raises(CheckpointError, match="another config.*beta"):
        train(doubling(beta=2.0), x, settings(tmp_path, n_updates=4, resume=True))
    with pytest.raises(CheckpointError, match="another config"):
        train(nondoubling(), x, settings(tmp_path, n_updates=4, resume=True))


def test_a_resume_may_lower_the_learning_rate_and_then_uses_it(tmp_path, monkeypatch):
    """The divergence message advises a lower learning rate: resuming with one is allowed."""
    x = binary_images(8)
    train(doubling(), x, settings(tmp_path, n_updates=2))
    seen = []
    real_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step",
                        lambda self, *a, **k: (seen.append(self.param_groups[0]["lr"]), real_step(self, *a, **k))[1])
    train(doubling(lr=1e-5), x, settings(tmp_path, n_updates=3, resume=True))
    assert seen == [1e-5]


def test_a_resume_may_change_the_precision_and_then_computes_in_it(tmp_path, monkeypatch):
    """A run started in float32 on one machine resumes in bf16 on an AMX machine (--precision auto)."""
    x = binary_images(8)
    train(doubling(), x, settings(tmp_path, n_updates=2))
    seen = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: (seen.append(k.get("enabled")), real_autocast(*a, **k))[1])
    model, _ = train(doubling(bf16=True), x, settings(tmp_path, n_updates=3, resume=True))
    assert model.config.bf16 and seen and all(seen)


def test_checkpoints_that_cannot_be_resumed_say_why(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    x = binary_images(8)
    model, _ = train(doubling(), x, settings(tmp_path / "run", n_updates=2))
    weights_only = tmp_path / "weights" / CHECKPOINT
    ckpt.save_checkpoint(weights_only, model, doubling(), 2)              # no optimizer: weights only
    with pytest.raises(CheckpointError, match="weights only"):
        train(doubling(), x, settings(weights_only.parent, n_updates=4, resume=True))
    path = tmp_path / "run" / CHECKPOINT
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    for key, value in [("step", "two"), ("optim.param_groups", "{not json")]:
        bad = tmp_path / key / CHECKPOINT
        bad.parent.mkdir()
        save_file(tensors, str(bad), metadata={**meta, key: value})
        with pytest.raises(CheckpointError, match="damaged training metadata"):
            train(doubling(), x, settings(bad.parent, n_updates=4, resume=True))


# --- divergence -----------------------------------------------------------------------------------
def _nan_at_update(monkeypatch, k: int) -> None:
    """Make the training loss NaN at update k (the k-th call of the loss)."""
    original, calls = VAE.forward, []

    def forward(self, x, *args, **kw):
        out = original(self, x, *args, **kw)
        if self.training and torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == k:
                loss, stats = out if isinstance(out, tuple) else (out, None)
                loss = loss * float("nan")
                out = (loss, stats) if isinstance(out, tuple) else loss
        return out
    monkeypatch.setattr(VAE, "forward", forward)


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward, infinite backward: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


def _infinite_gradient_at_update(monkeypatch, k: int) -> None:
    original, calls = VAE.forward, []

    def forward(self, x, *args, **kw):
        loss, stats = original(self, x, *args, **kw)
        calls.append(1)
        return (_InfiniteGradient.apply(loss) if len(calls) == k else loss), stats
    monkeypatch.setattr(VAE, "forward", forward)


def _assert_last_good_checkpoint(run_dir: Path, before_update: int) -> None:
    path = run_dir / CHECKPOINT
    step = int(read_metadata(path)["step"])
    assert 1 <= step < before_update
    model = load_model(path)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not [p for p in os.listdir(run_dir) if p.endswith(".tmp")]


@pytest.mark.parametrize("how", ["nan_loss", "infinite_gradient"])
def test_divergence_raises_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, how):
    k = 4
    (_nan_at_update if how == "nan_loss" else _infinite_gradient_at_update)(monkeypatch, k)
    with pytest.raises(TrainingDiverged) as info:
        train(doubling(), binary_images(8), settings(tmp_path, n_updates=8, checkpoint_every=1))
    message = str(info.value)
    assert f"update {k}" in message and "learning rate" in message and str(tmp_path / CHECKPOINT) in message
    assert ("loss became nan" if how == "nan_loss" else "gradient norm became") in message
    assert int(read_metadata(tmp_path / CHECKPOINT)["step"]) == k - 1
    _assert_last_good_checkpoint(tmp_path, k)


def test_a_learning_rate_of_one_diverges(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at update \d+") as info:
        train(doubling(lr=1.0), binary_images(8), settings(tmp_path, n_updates=10, checkpoint_every=1))
    k = int(re.search(r"at update (\d+)", str(info.value)).group(1))
    if k > 1:
        _assert_last_good_checkpoint(tmp_path, k)


# --- checkpoints and metrics ----------------------------------------------------------------------
def test_atomic_write_syncs_before_and_after_the_rename_and_clears_stale_temps(tmp_path, monkeypatch):
    import os
    import time
    target = tmp_path / "card.json"
    stale, fresh = tmp_path / ".card.json.old.tmp", tmp_path / ".card.json.busy.tmp"
    stale.write_text("left by a killed write")
    fresh.write_text("another writer, still busy")
    os.utime(stale, (time.time() - 2 * ckpt.STALE_TEMP_S,) * 2)
    synced, fsync = [], os.fsync
    events = []

    def record_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        events.append("fsync")
        return fsync(fd)
    replace = os.replace
    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), replace(a, b))[1])
    ckpt.atomic_write(target, lambda tmp: Path(tmp).write_text("{}"))
    assert target.read_text() == "{}"
    assert events == ["fsync", "rename", "fsync"]          # the data, then the directory entry
    if os.path.exists("/proc/self/fd"):
        assert synced[0].endswith(".tmp") and synced[1] == str(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_checkpoints_are_atomic_and_corruption_is_reported(tmp_path, monkeypatch):
    cfg = doubling()
    run = tmp_path / "run"
    model, _ = train(cfg, binary_images(8), settings(run, n_updates=3))
    path = run / CHECKPOINT
    assert sorted(p.name for p in run.iterdir() if "tmp" in p.name) == []
    # the checkpoint gets the permissions of an ordinary new file (mkstemp alone would give 0600)
    (tmp_path / "plain").write_text("x")
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777

    # a write that dies half-way leaves the old checkpoint intact and no temporary file
    def dying_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(ckpt, "save_file", dying_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, model, cfg, 99)
    monkeypatch.undo()
    assert int(read_metadata(path)["step"]) == 3 and load_model(path) is not None
    assert sorted(p.name for p in run.iterdir() if "tmp" in p.name) == []

    data = path.read_bytes()
    for name, content in [("truncated", data[: len(data) // 2]), ("garbage", b"not a checkpoint" * 10),
                          ("empty", b"")]:
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(str(bad))):
            load_model(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    # resuming from a corrupt checkpoint names it too
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        train(cfg, binary_images(8), settings(run, n_updates=4, resume=True))


def test_a_flipped_byte_or_edited_metadata_in_a_checkpoint_is_reported_not_used(tmp_path):
    import json
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    run = tmp_path / "run"
    train(doubling(), binary_images(8), settings(run, n_updates=2))
    path = run / CHECKPOINT
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10                                             # one bit of the last tensor's bytes
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    for load in (load_model, lambda p: train(doubling(), binary_images(8),
                                             settings(p.parent, n_updates=4, resume=True))):
        (tmp_path / CHECKPOINT).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="corrupt"):
            load(flipped if load is load_model else tmp_path / CHECKPOINT)

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    meta["config"] = json.dumps({**config, "hidden": 200_000})  # claims a model of ~10 GB of weights
    del meta["tensors_sha256"]                                   # as an older file without the hash
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata=meta)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(edited)


def test_metrics_csv_columns(tmp_path):
    train(doubling(), binary_images(8), settings(tmp_path, n_updates=4, eval_every=2),
          val_images=binary_images(4, seed=1))
    with open(tmp_path / METRICS) as f:
        header = next(csv.reader(f))
    assert header == ["step", "loss", "reconstruction", "kl", "val_elbo", "seconds"] == MetricsLog.FIELDS
    rows = read_rows(tmp_path)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [r["val_elbo"] != "" for r in rows] == [False, True, False, True]
    for r in rows:
        assert float(r["loss"]) == pytest.approx(-float(r["reconstruction"]) + float(r["kl"]), rel=1e-4)
    assert (tmp_path / "samples_0000002.png").exists() and (tmp_path / "config.json").exists()


def test_a_resume_keeps_metrics_csv_whole_even_if_killed_while_rewriting_it(tmp_path, monkeypatch):
    path = tmp_path / METRICS
    fields = MetricsLog.FIELDS
    lines = [",".join(fields)] + [f"{i},1.0,-1.0,0.0,,{i}.5" for i in range(1, 101)]
    path.write_text("\n".join(lines) + "\n6")                    # a last line cut short by a kill
    log = MetricsLog(tmp_path, resume_step=60)                     # resuming from the checkpoint at 60
    log.close()
    rows = read_rows(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(1, 61)) and log.seconds_before == 60.5

    path.write_text("\n".join(lines) + "\n")
    def killed(src, dst):                                           # the process dies inside the rewrite
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        MetricsLog(tmp_path, resume_step=60)
    assert len(read_rows(tmp_path)) == 100                          # the old file is untouched
    assert not list(tmp_path.glob(f".{METRICS}.*"))                 # and no temporary file is left


# --- batches --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [24, 27])
def test_batch_indices_shard_ranks_and_permute_each_epoch(n):
    batch, world, seed = 3, 2, 5
    per_epoch = n // (batch * world)                       # 4 updates an epoch
    epochs = []
    for epoch in range(3):
        seen = []
        for i in range(per_epoch):
            step = epoch * per_epoch + i
            shards = [batch_indices(step, n, batch, seed, rank, world) for rank in range(world)]
            assert all(len(s) == batch for s in shards)
            assert not set(shards[0].tolist()) & set(shards[1].tolist())      # disjoint across ranks
            seen += [j for s in shards for j in s.tolist()]
        assert len(seen) == len(set(seen)) == per_epoch * batch * world    # no repeats in an epoch
        if n % (batch * world) == 0:
            assert sorted(seen) == list(range(n))                         # a full permutation
        epochs.append(seen)
    assert epochs[0] != epochs[1]                                         # reshuffled every epoch
    assert torch.equal(batch_indices(7, n, batch, seed, 1, world), batch_indices(7, n, batch, seed, 1, world))
    assert not torch.equal(batch_indices(0, n, batch, seed), batch_indices(0, n, batch, seed + 1))
    with pytest.raises(ValueError, match="fewer than one batch"):
        batch_indices(0, 5, batch, seed, 0, world)


def test_pool_fills_every_slot_before_reusing_any():
    pool = StatePool(7)
    assert pool.slots_for_fresh(4).tolist() == [0, 1, 2, 3]
    assert pool.slots_for_fresh(2).tolist() == [4, 5]
    slots = pool.slots_for_fresh(2, torch.Generator().manual_seed(0))
    assert slots[0].item() == 6 and len(slots) == 2 and len(pool) == 7


def test_kl_warmup_ramps_beta_linearly_then_holds_it():
    cfg = doubling(kl_warmup=4, beta=2.0)
    assert [cfg.beta_at(u) for u in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert doubling().beta_at(0) == doubling().beta == 1.0            # no warm-up: the config's beta
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="kl_warmup"):
            doubling(kl_warmup=bad)


@pytest.mark.parametrize("make_config", [doubling, nondoubling], ids=["doubling", "nondoubling_pool"])
def test_training_uses_the_warmed_up_beta(make_config, monkeypatch, tmp_path):
    """The loss of update u is computed with beta_at(u): recorded where the loss is computed, the model's
    forward (doubling) or pool_loss (pool training)."""
    import vnca_tutorial.train as training
    from vnca_tutorial.model import VNCA
    seen = []
    forward, pool_loss = VNCA.forward, training.pool_loss

    def spy_forward(self, x, *args, beta=None, **kw):
        seen.append(beta)
        return forward(self, x, *args, beta=beta, **kw)

    def spy_pool_loss(model, x, pool, beta, steps):
        seen.append(beta)
        return pool_loss(model, x, pool, beta, steps)

    monkeypatch.setattr(VNCA, "forward", spy_forward)
    monkeypatch.setattr(training, "pool_loss", spy_pool_loss)
    cfg = make_config(kl_warmup=4)
    train(cfg, binary_images(8), TrainSettings(run_dir=str(tmp_path), n_updates=3, progress=False))
    assert seen == [0.25, 0.5, 0.75]


def test_init_from_starts_from_another_runs_weights(tmp_path):
    first, _ = train(nondoubling(), binary_images(8), settings(tmp_path / "a", n_updates=2))
    cfg = nondoubling(lr=1e-12, pool_fraction=0.75, pool_extra_steps=2)      # other training settings
    second, _ = train(cfg, binary_images(8), settings(tmp_path / "b", n_updates=1,
                                                      init_from=str(tmp_path / "a" / CHECKPOINT)))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    fresh, _ = train(cfg, binary_images(8), settings(tmp_path / "c", n_updates=1))
    assert not torch.allclose(fresh.encoder.linear.weight, first.encoder.linear.weight)


def test_init_from_refuses_another_architecture(tmp_path):
    train(nondoubling(), binary_images(8), settings(tmp_path / "a", n_updates=1))
    with pytest.raises(CheckpointError, match="another architecture"):
        train(nondoubling(hidden=16), binary_images(8),
              settings(tmp_path / "b", n_updates=1, init_from=str(tmp_path / "a" / CHECKPOINT)))


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    from vnca_tutorial.train import RunDirLock
    with RunDirLock(tmp_path):
        with pytest.raises(CheckpointError, match="another training run"):
            train(doubling(), binary_images(8), settings(tmp_path, n_updates=1))
        assert not (tmp_path / METRICS).exists()                  # it wrote nothing
    train(doubling(), binary_images(8), settings(tmp_path, n_updates=1))   # free again afterwards
    assert len(read_rows(tmp_path)) == 1


# --- paths that ran untested (issue 17) -----------------------------------------------------------
def test_max_minutes_stops_with_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    clock = iter(range(0, 10_000, 30))                     # each call of time.time() is 30 s later
    monkeypatch.setattr("vnca_tutorial.train.time.time", lambda: float(next(clock)))
    _, history = train(doubling(), binary_images(8), settings(tmp_path, n_updates=50, max_minutes=1.0,
                                                               checkpoint_every=100))
    assert 1 <= len(history) < 50                          # stopped early ...
    assert int(read_metadata(tmp_path / CHECKPOINT)["step"]) == len(history)   # ... with a checkpoint


def test_a_nan_validation_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import vnca_tutorial.train as T
    monkeypatch.setattr(T, "evaluate_elbo", lambda model, images, batch_size=64: float("nan"))
    with pytest.raises(TrainingDiverged, match="validation ELBO became nan after update 3"):
        train(doubling(), binary_images(8), settings(tmp_path, n_updates=6, eval_every=3, checkpoint_every=1),
              val_images=binary_images(4, seed=1))
    assert int(read_metadata(tmp_path / CHECKPOINT)["step"]) == 2   # the checkpoint of update 3 not written


def test_load_or_train_falls_back_to_a_short_run_when_nothing_is_shipped(monkeypatch):
    from vnca_tutorial import pretrained
    monkeypatch.setattr(pretrained, "names", lambda: [])
    model, how = pretrained.load_or_train("mnist_doubling_small", fallback_updates=2,
                                          images=binary_images(64))
    assert "trained 'mnist_doubling_cpu' for 2 updates" in how and not model.training


def test_a_whole_model_trains_with_bf16_autocast(tmp_path):
    model, history = train(doubling(bf16=True), binary_images(8), settings(tmp_path, n_updates=3))
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert all(p.dtype == torch.float32 for p in model.parameters())   # autocast: weights stay float32


def test_a_vnca_with_a_logistic_mixture_of_several_components_trains_and_bounds(tmp_path):
    cfg = get_preset("noto_doubling_cpu", z_dim=32, hidden=8, n_blocks=1, steps_per_stage=1, n_mix=3,
                     encoder_channels=4, batch_size=2, image_size=16, n_doublings=3)
    x = torch.randint(0, 256, (4, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    model, history = train(cfg, x, settings(tmp_path, n_updates=2))
    assert len(history) == 2
    with torch.no_grad():
        assert model.p_x_given_z(torch.zeros(1, 32)).log_prob(x[:1].float()).isfinite().all()
        assert model.iwae(x[:2].float(), k=3).isfinite().all()


# --- a real kill: the process dies (SIGKILL) or is interrupted (Ctrl-C, SIGINT) mid-run -------------
KILLED_RUN = """
import sys, time, torch
sys.path.insert(0, {tests!r})
import test_train as t
from vnca_tutorial import train as tr
torch.set_num_threads(1)
descend = tr.descend
def slow_descend(*a, **k):          # the same update, slowed so that the parent can kill it mid-run
    time.sleep(0.05)
    return descend(*a, **k)
tr.descend = slow_descend
cfg = t.{make}()
tr.train(cfg, t.binary_images(12), t.settings({run_dir!r}, n_updates={n}, checkpoint_every=4),
         val_images=t.binary_images(4, seed=1))
"""


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("make_config", [doubling, nondoubling], ids=["doubling", "nondoubling_pool"])
def test_a_killed_or_interrupted_run_resumes_into_the_uninterrupted_run(tmp_path, make_config, signal_name):
    import signal
    import subprocess
    import sys
    import time
    n = 30
    run_dir = tmp_path / "killed"
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), make=make_config.__name__, run_dir=str(run_dir), n=n)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:   # kill with rows logged past the checkpoint
        path = run_dir / CHECKPOINT
        if path.exists() and (run_dir / METRICS).exists():
            if len(read_rows(run_dir)) > int(read_metadata(path)["step"]) >= 4:
                break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(getattr(signal, signal_name))
    proc.wait(timeout=60)
    stopped_at = int(read_metadata(run_dir / CHECKPOINT)["step"])
    assert 4 <= stopped_at < n

    cfg, x, val = make_config(), binary_images(12), binary_images(4, seed=1)
    whole, _ = train(cfg, x, settings(tmp_path / "whole", n_updates=n, checkpoint_every=1), val_images=val)
    resumed, _ = train(cfg, x, settings(run_dir, n_updates=n, checkpoint_every=1, resume=True), val_images=val)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name

    def rows(run):  # everything but the wall-clock seconds
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(run)]
    assert rows(tmp_path / "whole") == rows(run_dir)       # no row lost or repeated by the kill
    assert not [p for p in os.listdir(run_dir) if p.endswith(".tmp")]
