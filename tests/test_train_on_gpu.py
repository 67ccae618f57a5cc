"""scripts/train_on_gpu.py, run on a CPU with a tiny model: the GPU minutes go to training, not to its bugs."""
import json
import sys
from pathlib import Path

import pytest
import torch

from helpers import write_tiny_mnist
from vnca_tutorial.checkpoint import load_model
from vnca_tutorial.data import load_dataset, subset
from vnca_tutorial.evaluate import evaluate_bound

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train_on_gpu  # noqa: E402
from vnca_tutorial.hardware import choose_bf16  # noqa: E402

TINY = ["--set", "z_dim=8", "hidden=8", "encoder_channels=4", "batch_size=4"]
TINY_DOUBLING = ["--preset", "mnist_doubling_cpu", *TINY, "n_blocks=1", "steps_per_stage=2"]
TINY_POOL = ["--preset", "mnist_nondoubling_cpu", *TINY, "min_steps=2", "max_steps=3", "pool_size=8",
             "pool_extra_steps=1"]


@pytest.mark.parametrize("tiny", [TINY_DOUBLING, TINY_POOL], ids=["doubling", "non-doubling with pool"])
def test_it_trains_for_its_minutes_and_writes_weights_a_cpu_can_evaluate(tmp_path, tiny):
    data = write_tiny_mnist(tmp_path / "data").parent          # 32 training, 16 test digits
    out = tmp_path / "out"
    summary = train_on_gpu.main([*tiny, "--device", "cpu", "--minutes", "0.02", "--data-dir", str(data),
                                 "--out", str(out), "--eval-images", "5", "--k", "3", "--half"])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "summary.json", "weights.safetensors"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["updates"] >= 1 and summary["preset"] == tiny[1]
    assert summary["precision"] == choose_bf16("auto", "cpu")[1]     # float32, or bf16 on an AMX CPU
    model = load_model(out / "weights.safetensors").eval()
    assert model.config.bf16 is False and model.config.z_dim == 8
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # the bound it reports is the one a CPU computes from the written file
    test = load_dataset("binarized_mnist", "test", data_dir=data)
    again = evaluate_bound(model, subset(test, 5, seed=0).images, k=3, batch_size=32)
    assert summary["bound"]["nats"] == pytest.approx(again.nats, abs=1e-4)
    assert summary["bound"]["n_images"] == 5 and summary["weights_dtype"] == "float16"
    assert summary["init_from"] is None and summary["diverged"] is None


@pytest.mark.parametrize("argv, needle", [
    (["--minutes", "0"], "--minutes"), (["--minutes", "1", "--eval-images", "0"], "--eval-images"),
    (["--minutes", "1", "--device", "cuda"], "no CUDA GPU"), (["--minutes", "1", "--precision", "fp8"], "fp8")])
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as e:
        train_on_gpu.main([*argv, "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_that_diverges_still_writes_its_last_good_checkpoint(tmp_path, monkeypatch):
    """GPU minutes are not lost to a NaN late in the run: the last checkpoint is written and bounded."""
    real_train = train_on_gpu.train

    def train_then_diverge(config, images, settings, **kwargs):
        _, history = real_train(config, images, settings, **kwargs)   # checkpoints when its minutes are up
        with open(Path(settings.run_dir) / "metrics.csv", "a") as f:  # then logs an update it never saves
            f.write(f"{history[-1]['step'] + 1},nan,nan,nan,,1.0\n")
        raise train_on_gpu.TrainingDiverged("the loss became nan at update 99; stopped without saving")

    monkeypatch.setattr(train_on_gpu, "train", train_then_diverge)
    data = write_tiny_mnist(tmp_path / "data").parent
    summary = train_on_gpu.main([*TINY_DOUBLING, "--device", "cpu", "--minutes", "0.02", "--data-dir",
                                 str(data), "--out", str(tmp_path / "out"), "--eval-images", "3", "--k", "2"])
    assert summary["diverged"] == "the loss became nan at update 99"
    assert summary["updates"] >= 1 and load_model(tmp_path / "out" / "weights.safetensors").config.z_dim == 8
    lines = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert len(lines) == summary["updates"] + 1 and "nan" not in lines[-1]      # the unsaved row is dropped


def test_a_run_that_diverges_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise train_on_gpu.TrainingDiverged("the loss became nan at update 1; stopped without saving")

    monkeypatch.setattr(train_on_gpu, "train", diverge)
    data = write_tiny_mnist(tmp_path / "data").parent
    with pytest.raises(SystemExit, match="the loss became nan at update 1"):
        train_on_gpu.main([*TINY_DOUBLING, "--device", "cpu", "--minutes", "0.02", "--data-dir", str(data),
                           "--out", str(tmp_path / "out")])


def test_a_second_run_starts_from_the_first_runs_weights(tmp_path, caplog):
    data = write_tiny_mnist(tmp_path / "data").parent
    common = [*TINY_POOL, "--device", "cpu", "--minutes", "0.01", "--data-dir", str(data), "--eval-images", "2",
              "--k", "2"]
    train_on_gpu.main([*common, "--out", str(tmp_path / "first"), "--half"])
    first = tmp_path / "first" / "weights.safetensors"
    with caplog.at_level("INFO"):
        summary = train_on_gpu.main([*common, "--out", str(tmp_path / "second"), "--init-from", str(first)])
    assert summary["init_from"] == str(first) and summary["updates"] >= 1
    assert f"starting from the weights of {first}" in caplog.text
