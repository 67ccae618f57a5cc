"""benchmarks/compute_study.py: the candidates train on train digits, validate on valid ones, and the table's
rate is the validation ELBO gained per hour over the last half of a run."""
import csv
import sys
from pathlib import Path

import pytest

from helpers import write_tiny_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compute_study  # noqa: E402


def _write_metrics(run: Path, rows: list[tuple[int, float, str]]) -> None:
    run.mkdir(parents=True)
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "reconstruction", "kl", "val_elbo", "seconds"])
        for step, seconds, val in rows:
            w.writerow([step, 1.0, -1.0, 0.1, val, seconds])


def test_the_report_gives_the_gain_per_hour_over_the_last_half(tmp_path, capsys):
    _write_metrics(tmp_path / "small", [(100, 1800, "-130"), (150, 2700, ""), (200, 3600, "-120"),
                                        (400, 7200, "-100")])
    rows = compute_study.report(tmp_path)
    assert [r["candidate"] for r in rows] == ["small"]          # runs that do not exist are left out
    r = rows[0]
    assert (r["updates"], r["hours"], r["val_elbo"]) == (400, 2.0, -100.0)
    assert r["nats_per_hour_last_half"] == pytest.approx(20.0)  # from (1 h, -120) to (2 h, -100)
    assert (r["preset"], r["changes"]) == ("mnist_doubling_cpu", {})   # the shipped recipe, unchanged
    assert r["parameters"] == 1_183_392                         # as the shipped mnist_doubling_small's card
    assert "small" in capsys.readouterr().out


def test_a_candidate_trains_on_train_digits_and_validates_on_valid_ones(tmp_path, monkeypatch):
    data = write_tiny_mnist(tmp_path / "data").parent            # 24 train, 8 valid, 16 test digits
    monkeypatch.setattr(compute_study, "CANDIDATES", {"tiny": ("mnist_doubling_cpu", dict(
        z_dim=4, hidden=4, encoder_channels=2, batch_size=4, n_blocks=1, steps_per_stage=2, n_updates=4))})
    monkeypatch.setattr(compute_study, "EVAL_EVERY", 2)
    seen = {}
    real_train = compute_study.train

    def spy(config, images, settings, val_images):
        seen.update(config=config, n_train=len(images), n_val=len(val_images), eval_images=settings.eval_images)
        return real_train(config, images, settings, val_images=val_images)
    monkeypatch.setattr(compute_study, "train", spy)
    compute_study.train_candidate("tiny", 5.0, "float32", runs=tmp_path / "runs", data_dir=data)
    assert (seen["n_train"], seen["n_val"], seen["eval_images"]) == (24, 8, 1000)
    assert seen["config"].name == "study_tiny" and seen["config"].bf16 is False
    assert [p[0] for p in compute_study.curve(tmp_path / "runs" / "tiny")] == [2, 4]


def test_minutes_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        compute_study.main(["--minutes", "0"])
    assert "--minutes" in capsys.readouterr().err
