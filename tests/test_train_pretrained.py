"""scripts/train_pretrained.py: a run's resume point (checkpoint without the pool) restarts it elsewhere."""
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vnca_tutorial.config import get_preset
from vnca_tutorial.train import CHECKPOINT, METRICS, TrainSettings, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train_pretrained  # noqa: E402


def tiny_pool_run(run, n_updates: int):
    """A tiny non-doubling model trained with its pool for n_updates into ``run``: (config, images)."""
    cfg = get_preset("mnist_nondoubling_cpu", z_dim=4, hidden=4, encoder_channels=2, batch_size=4, pool_size=8,
                     min_steps=2, max_steps=3, pool_extra_steps=2)
    x = (torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    train(cfg, x, TrainSettings(run_dir=str(run), n_updates=n_updates, checkpoint_every=n_updates, progress=False))
    return cfg, x


def test_a_resume_point_drops_the_pool_and_resumes_the_run(tmp_path):
    run = tmp_path / "run"
    cfg, x = tiny_pool_run(run, 3)
    assert any(k.startswith("pool.") for k in load_file(str(run / CHECKPOINT)))

    point = tmp_path / "resume"
    train_pretrained.save_resume_point(run, point)
    kept = load_file(str(point / CHECKPOINT))
    assert not any(k.startswith("pool.") for k in kept)
    assert any(k.startswith("optim.") for k in kept) and any(k.startswith("model.") for k in kept)

    elsewhere = tmp_path / "elsewhere"                 # a fresh machine: no run, only the resume point
    train_pretrained.restore_resume_point(point, elsewhere)
    assert (elsewhere / METRICS).read_text() == (run / METRICS).read_text()
    model, history = train(cfg, x, TrainSettings(run_dir=str(elsewhere), n_updates=5, resume=True,
                                                 checkpoint_every=5, progress=False))
    assert [row["step"] for row in history] == [4, 5]     # it continued from update 3
    train_pretrained.restore_resume_point(point, elsewhere)   # an existing run is never overwritten
    assert int(load_file(str(elsewhere / CHECKPOINT))["optim.0.step"].item()) == 5


def test_the_card_counts_every_training_phase():
    import export_pretrained
    first = {"rows": [{"step": "1", "seconds": "2", "val_elbo": ""}, {"step": "2", "seconds": "4", "val_elbo": "-3"},
                      {"step": "3", "seconds": "9", "val_elbo": ""}],   # logged after the last checkpoint
             "updates": 2}
    second = {"rows": [{"step": "1", "seconds": "1", "val_elbo": "-1"}, {"step": "2", "seconds": "3",
                                                                          "val_elbo": ""}], "updates": 2}
    rows = export_pretrained.chain_phases([first, second])
    assert [(int(r["step"]), float(r["seconds"])) for r in rows] == [(1, 2.0), (2, 4.0), (3, 5.0), (4, 7.0)]
    assert [r["val_elbo"] for r in rows] == ["", "-3", "-1", ""]


def test_an_ablation_in_its_own_run_dir_does_not_start_from_the_shipped_runs_resume_point(tmp_path, monkeypatch):
    point = tmp_path / "resume" / "mnist_nondoubling_small"
    point.mkdir(parents=True)
    (point / CHECKPOINT).write_bytes(b"the shipped run's resume point")
    (point / METRICS).write_text("step\n")
    started = []
    monkeypatch.setattr(train_pretrained, "RESUME", tmp_path / "resume")
    monkeypatch.setattr(train_pretrained, "load_dataset", lambda *a, **k: type("D", (), {"images": None})())
    monkeypatch.setattr(train_pretrained, "train", lambda config, images, settings, **k: started.append(settings))
    monkeypatch.chdir(tmp_path)
    ablation = tmp_path / "ablation"
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", "mnist_nondoubling_small", "--set", "lr=3e-4",
                                      "--run-dir", str(ablation)])
    train_pretrained.main()
    assert started and not (ablation / CHECKPOINT).exists()
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", "mnist_nondoubling_small"])
    train_pretrained.main()                                   # the shipped run itself does resume from it
    assert (tmp_path / "runs/pretrained/mnist_nondoubling_small" / CHECKPOINT).exists()


def test_a_phase_that_went_on_after_the_next_one_started_is_cut_at_that_update(tmp_path):
    import export_pretrained
    run = tmp_path / "run"
    tiny_pool_run(run, 5)
    whole = export_pretrained.read_phase(run)
    cut = export_pretrained.read_phase(f"{run}:3")
    assert (whole["updates"], len(whole["rows"])) == (5, 5)
    assert (cut["updates"], [int(r["step"]) for r in cut["rows"]]) == (3, [1, 2, 3])
    assert cut["run"] == f"{run}:3" and cut["config"] == whole["config"]
    with pytest.raises(SystemExit, match="1..5"):
        export_pretrained.read_phase(f"{run}:9")


@pytest.mark.parametrize("flags", [["--updates", "0"], ["--updates", "-5"], ["--eval-every", "0"]])
def test_bad_update_counts_are_refused_before_any_work(monkeypatch, capsys, flags):
    monkeypatch.setattr(train_pretrained, "train", lambda *a, **k: pytest.fail("it trained"))
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", "mnist_baseline_small", *flags])
    with pytest.raises(SystemExit) as e:
        train_pretrained.main()
    assert e.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_updates_and_eval_every_reach_the_training_settings(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(train_pretrained, "load_dataset", lambda *a, **k: type("D", (), {"images": None})())
    monkeypatch.setattr(train_pretrained, "train", lambda config, images, settings, **k: started.append(settings))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", "mnist_baseline_small", "--updates", "2121",
                                      "--eval-every", "250"])
    train_pretrained.main()
    assert started[0].n_updates == 2121 and started[0].eval_every == 250


def test_the_wide_model_is_the_compute_studys_wide_candidate():
    """Chapter 10's study chose it; the long run must train the same architecture and optimiser."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compute_study
    study, _ = compute_study.candidate_config("wide", precision="float32")
    shipped = train_pretrained.SHIPPED["mnist_doubling_wide"]
    assert shipped.lr < study.lr                                    # the long run lowered its learning rate
    assert shipped.replace(name=study.name, n_updates=study.n_updates, bf16=study.bf16, lr=study.lr) == study


def test_a_weights_only_point_keeps_the_weights_and_curve_and_starts_a_new_phase(tmp_path):
    import export_pretrained
    from vnca_tutorial.checkpoint import CheckpointError, load_checkpoint, load_model, read_metadata
    run = tmp_path / "run"
    cfg, x = tiny_pool_run(run, 3)
    point = tmp_path / "resume" / "tiny_weights"
    train_pretrained.save_resume_point(run, point, weights_only=True)
    kept, full = load_file(str(point / CHECKPOINT)), load_file(str(run / CHECKPOINT))
    assert kept and all(k.startswith("model.") for k in kept)
    assert all(torch.equal(v, full[k]) for k, v in kept.items())
    assert len(kept) < len(full) and not any(k.startswith("optim.") for k in read_metadata(point / CHECKPOINT))
    load_checkpoint(point / CHECKPOINT)                       # its sha256 is that of the tensors kept
    assert load_model(point / CHECKPOINT).config == cfg
    assert export_pretrained.read_phase(point)["updates"] == 3   # an earlier phase for the card
    with pytest.raises(CheckpointError, match="weights only"):   # never mistaken for a resumable run
        train(cfg, x, TrainSettings(run_dir=str(point), n_updates=4, resume=True, progress=False))
    _, history = train(cfg, x, TrainSettings(run_dir=str(tmp_path / "next"), n_updates=2, progress=False,
                                             init_from=str(point / CHECKPOINT)))
    assert [row["step"] for row in history] == [1, 2]


def test_weights_only_without_saving_a_point_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", "noto_doubling_small", "--weights-only"])
    with pytest.raises(SystemExit) as e:
        train_pretrained.main()
    assert e.value.code == 2 and "--save-resume-point" in capsys.readouterr().err


def test_a_phase_kept_without_weights_or_known_only_from_a_card_counts_in_the_card(tmp_path):
    """The emoji model's phases: the first is known only from its old card (no curve), the second is kept
    as metrics.csv and config.json without weights; both count their updates and hours."""
    import json

    import export_pretrained
    from vnca_tutorial import pretrained
    run = tmp_path / "run"
    tiny_pool_run(run, 5)
    kept = tmp_path / "kept"                                 # the run without its weights
    kept.mkdir()
    (kept / METRICS).write_text((run / METRICS).read_text())
    with pytest.raises(SystemExit, match="needs its config.json and FOLDER:N"):
        export_pretrained.read_phase(f"{kept}:3")
    (kept / "config.json").write_text(json.dumps(export_pretrained.read_phase(run)["config"]))
    with pytest.raises(SystemExit, match="needs its config.json and FOLDER:N"):
        export_pretrained.read_phase(kept)                   # without :N: where did the next phase start?
    phase = export_pretrained.read_phase(f"{kept}:4")
    assert phase["updates"] == 4 and [int(r["step"]) for r in phase["rows"]] == [1, 2, 3, 4]

    old = export_pretrained.read_phase("card:noto_doubling_small")
    shipped = pretrained.card("noto_doubling_small")
    assert old["updates"] == shipped["updates"] and old["config"] == shipped["config"]
    rows = export_pretrained.chain_phases([old, phase])
    assert int(rows[-1]["step"]) == shipped["updates"] + 4
    assert float(rows[-1]["seconds"]) == pytest.approx(shipped["train_wall_time_hours"] * 3600
                                                       + float(phase["rows"][-1]["seconds"]))
    assert [r for r in rows if r["val_elbo"]] == [r for r in rows[1:] if r["val_elbo"]]   # no curve point
    with pytest.raises(ValueError, match="no pretrained model 'no_such_model'"):
        export_pretrained.read_phase("card:no_such_model")


@pytest.mark.parametrize("name, fit", [("noto_doubling_small", "fit"), ("mnist_doubling_wide", "train")])
def test_early_stopping_trains_without_the_validation_images_and_stops_on_all_of_them(tmp_path, monkeypatch,
                                                                                      name, fit):
    loaded, started = [], []

    def load(dataset, split):
        loaded.append(split)
        return type("D", (), {"images": split, "__len__": lambda self: 265})()
    monkeypatch.setattr(train_pretrained, "load_dataset", load)
    monkeypatch.setattr(train_pretrained, "train", lambda config, images, settings, val_images: started.append(
        (images, val_images, settings)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", name, "--early-stopping", "--run-dir", "r"])
    train_pretrained.main()
    images, val, settings = started[0]
    assert (images, val) == (fit, "valid") and "test" not in loaded
    assert settings.keep_best and settings.eval_images == 265


def test_early_stopping_without_its_own_run_dir_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(train_pretrained, "train", lambda *a, **k: pytest.fail("it trained"))
    monkeypatch.setattr(sys, "argv", ["train_pretrained.py", "noto_doubling_small", "--early-stopping"])
    with pytest.raises(SystemExit) as e:
        train_pretrained.main()
    assert e.value.code == 2 and "--run-dir" in capsys.readouterr().err


def test_an_early_stopped_run_counts_up_to_its_best_weights_and_keeps_its_validation_curve_apart(tmp_path):
    import export_pretrained
    from vnca_tutorial.checkpoint import read_metadata
    cfg = get_preset("mnist_doubling_cpu", z_dim=4, hidden=4, encoder_channels=2, batch_size=4, n_blocks=1,
                     steps_per_stage=1, lr=1e-2)
    x = (torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    run = tmp_path / "run"
    train(cfg, x, TrainSettings(run_dir=str(run), n_updates=6, eval_every=2, keep_best=True, progress=False),
          val_images=x[:4])
    best = int(read_metadata(run / "best.safetensors")["step"])
    phase, stopping = export_pretrained.early_stopped(run, offset_updates=100, offset_seconds=3600.0)
    assert phase["updates"] == best and [int(r["step"]) for r in phase["rows"]] == list(range(1, best + 1))
    assert not any(r["val_elbo"] for r in phase["rows"])      # valid-split ELBOs stay out of the test curve
    assert (stopping["trained_to_update"], stopping["chosen_update"]) == (106, 100 + best)
    curve = stopping["validation_curve"]
    assert [u for u, _, _ in curve] == [102, 104, 106] and all(h >= 1.0 for _, h, _ in curve)
    assert max(curve, key=lambda row: row[2])[0] == 100 + best


def test_a_phase_known_only_by_its_count_adds_updates_and_hours_but_no_curve(tmp_path):
    import export_pretrained
    run = tmp_path / "run"
    tiny_pool_run(run, 3)
    rows = export_pretrained.chain_phases([export_pretrained.read_phase("count:1327:1.25"),
                                           export_pretrained.read_phase(run)])
    assert int(rows[-1]["step"]) == 1330 and float(rows[-1]["seconds"]) > 4500.0
    assert rows[0]["val_elbo"] == ""
    for bad in ("count:1327", "count:many:1.0", "count:0:1.0", "count:10:-1"):
        with pytest.raises(SystemExit, match="count:"):
            export_pretrained.read_phase(bad)


def test_the_paper_figure_is_looked_up_by_family_whatever_the_size():
    import export_pretrained
    assert export_pretrained.paper_family(train_pretrained.SHIPPED["mnist_doubling_wide"]) == "mnist_doubling"
    assert export_pretrained.paper_family(train_pretrained.SHIPPED["noto_doubling_small"]) == "noto_doubling"
    assert export_pretrained.paper_family(train_pretrained.SHIPPED["mnist_baseline_small"]) == "mnist_baseline"
    assert export_pretrained.PAPER[export_pretrained.paper_family(
        train_pretrained.SHIPPED["mnist_nondoubling_small"])] == {"nats": -90.97}


def test_export_writes_a_candidate_card_whose_curves_keep_test_and_validation_elbos_apart(tmp_path,
                                                                                         monkeypatch):
    """scripts/export_pretrained.py end to end on two tiny phases: the card's figure is measured on the
    stored file; an earlier phase's logged ELBOs are test-subset ELBOs (its training curve) unless
    --earlier-validated says that phase was early-stopped too (its validation curve)."""
    import json

    import export_pretrained
    from vnca_tutorial import pretrained
    cfg = get_preset("mnist_doubling_cpu", z_dim=4, hidden=4, encoder_channels=2, batch_size=4, n_blocks=1,
                     steps_per_stage=1)
    x = (torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    monkeypatch.chdir(tmp_path)
    train(cfg, x, TrainSettings(run_dir="first", n_updates=4, eval_every=2, progress=False), val_images=x[:4])
    train(cfg, x, TrainSettings(run_dir="runs/pretrained/tiny", n_updates=6, eval_every=3, keep_best=True,
                                progress=False, init_from=f"first/{CHECKPOINT}"), val_images=x[:4])
    monkeypatch.setattr(export_pretrained, "CANDIDATES", tmp_path / "candidates")

    def export(*flags: str) -> dict:
        export_pretrained.main(["tiny", "--candidate", "--best", "--k", "2", "--images", "4", "--dtype",
                                "float16", "--earlier-phase", "first", *flags])
        return json.loads((tmp_path / "candidates" / "tiny.json").read_text())
    card = export()
    best = card["early_stopping"]["chosen_update"]
    assert card["updates"] == best and 4 < best <= 10 and card["test_bound"]["n_images"] == 4
    assert card["sha256"] == pretrained.sha256(tmp_path / "candidates" / "tiny.safetensors")
    assert [row[0] for row in card["training_curve"]] == [2, 4]                   # the first phase's
    assert [row[0] for row in card["early_stopping"]["validation_curve"]] == [7, 10]
    assert card["data"]["train"].endswith("; its last phase on " + export_pretrained.FIT_DATA["binarized_mnist"])
    card = export("--earlier-validated")
    assert card["data"]["train"].endswith("; its early-stopped phases on "
                                          + export_pretrained.FIT_DATA["binarized_mnist"])
    assert card["training_curve"] is None
    assert [row[0] for row in card["early_stopping"]["validation_curve"]] == [2, 4, 7, 10]
    hours = [row[1] for row in card["early_stopping"]["validation_curve"]]
    assert hours == sorted(hours) and all(row[2] < 0 for row in card["early_stopping"]["validation_curve"])
    with pytest.raises(SystemExit):                                # a validation curve needs --best
        export_pretrained.main(["tiny", "--candidate", "--earlier-validated"])
