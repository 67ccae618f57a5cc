"""Data-parallel training: two CPU processes (gloo) under torchrun, through the real ``vnca train``.

``python -m torch.distributed.run --nproc_per_node 2 tests/rank_weights.py train ...`` is what
``torchrun --nproc_per_node 2 -m vnca_tutorial train ...`` runs, plus a hook (VNCA_SAVE_RANK_WEIGHTS, in
tests/rank_weights.py) that makes every rank write its final weights, so we can check that
DistributedDataParallel kept the ranks in step: they start from different seeds and see different
shards of each batch, so equal weights at the end mean that the gradients really were averaged.
"""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vnca_tutorial.checkpoint import load_checkpoint, model_state
from vnca_tutorial.train import CHECKPOINT, METRICS
from helpers import write_tiny_mnist

REPO = Path(__file__).resolve().parent.parent
TINY_DOUBLING = ["--preset", "mnist_doubling_cpu", "--set", "z_dim=8", "hidden=8", "encoder_channels=4",
                 "batch_size=4", "n_blocks=1", "steps_per_stage=2"]
TINY_POOL = ["--preset", "mnist_nondoubling_cpu", "--set", "z_dim=8", "hidden=8", "encoder_channels=4",
             "batch_size=4", "min_steps=2", "max_steps=3", "pool_size=4", "pool_extra_steps=1",
             "stationarity=0.1"]


def environment(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(VNCA_DATA_DIR=str(tmp / "data"), VNCA_CACHE_DIR=str(tmp / "cache"), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("tiny", [TINY_DOUBLING, TINY_POOL], ids=["doubling", "pool_training"])
def test_two_ranks_train_in_step_and_only_rank_0_writes(tmp_path, tiny):
    write_tiny_mnist(tmp_path / "data")
    run, weights = tmp_path / "run", tmp_path / "rank_weights"
    env = environment(tmp_path)
    env.update(VNCA_SAVE_RANK_WEIGHTS=str(weights), MASTER_ADDR="127.0.0.1")
    updates = 3
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(REPO / "tests" / "rank_weights.py"), "train",
           "--run-dir", str(run), "--updates", str(updates), "--checkpoint-every", "2", "--eval-every", "2",
           "--eval-images", "4", "--threads", "1", "--quiet", *tiny]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr

    # every rank ends with the same weights ...
    ranks = [load_file(str(weights / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    # ... which are the weights in the checkpoint, written by rank 0 alone
    config, tensors, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == str(updates) and config.z_dim == 8
    saved = model_state(tensors)
    assert all(torch.equal(saved[k], ranks[0][k]) for k in saved)
    # the checkpoint keeps each rank's random state (different seeds per rank), for an exact resume
    assert not torch.equal(tensors["rng.torch"], tensors["rng.torch.rank1"])
    with open(run / METRICS) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, updates + 1))     # one row per update: rank 0 only
    assert proc.stdout.count("update 3") == 1                               # only rank 0 reports
    assert sorted(p.name for p in run.iterdir() if "tmp" in p.name) == []
