"""Train (or resume) the models that ship in vnca_tutorial/pretrained/.

    python scripts/train_pretrained.py mnist_doubling_small --minutes 60     # resumable; run again to continue
    python scripts/train_pretrained.py mnist_nondoubling_small --set state_bound=0 --run-dir runs/ablation/no_bound
                                                                             # an ablation: one field changed

The shipped non-doubling model was trained in phases (its card gives the updates of each), each from the
weights of the one before (--init-from: a new optimizer and pool), except that the fourth resumed its own
run with a lower learning rate. The first four had every cell update on every step,
SYNC="p_update=1 min_steps=16 max_steps=32"; the last two have the reference's asynchronous updates (the
shipped config's p_update 0.5 and T in [32, 64]):
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 2 \
        --set $SYNC lr=1e-3 pool_fraction=0.5 pool_extra_steps=0 damage_fraction=0.5 \
        --run-dir runs/pretrained/mnist_nondoubling_small_phase1
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 2 \
        --set $SYNC lr=1e-3 pool_fraction=0.75 damage_fraction=0.5 \
        --run-dir runs/pretrained/mnist_nondoubling_small_phase2 \
        --init-from runs/pretrained/mnist_nondoubling_small_phase1/checkpoint.safetensors
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 1 --minutes 22 \
        --set $SYNC lr=3e-4 pool_fraction=0.875 damage_fraction=0.5 --run-dir runs/exp/P1 \
        --init-from runs/pretrained/mnist_nondoubling_small_phase2/checkpoint.safetensors
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 1 --minutes 20 \
        --set $SYNC lr=3e-4 pool_fraction=0.875 damage_fraction=0.75 \
        --run-dir runs/pretrained/mnist_nondoubling_small_phase4 \
        --init-from runs/exp/P1/checkpoint.safetensors         # (P1 at update 1,272)
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 2 \
        --set $SYNC \
        --run-dir runs/pretrained/mnist_nondoubling_small_phase4    # resumes it with lr 1e-4
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 1 --minutes 75 \
        --set lr=3e-4 --run-dir runs/exp/async/PU5 \
        --init-from runs/pretrained/mnist_nondoubling_small_phase4/checkpoint.safetensors  # (PU5 at 1,600)
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 1 --minutes 100 \
        --init-from scripts/resume/probe_async_pu5/weights.safetensors      # PU5's weights at update 1,600
        # (in the history, not the tree: scripts/resume/probe_async_pu5/README.md says how to get them)
    python scripts/train_pretrained.py mnist_nondoubling_small --threads 2    # resumes the last phase

The wide doubling model (issue 19) continues chapter 10's compute-study run (1,327 updates on the
training digits) on train + valid, resumably:
    python benchmarks/compute_study.py --minutes 58 --candidates wide        # phase 1 (58 min, then 18 more)
    python scripts/train_pretrained.py mnist_doubling_wide --threads 1 --minutes 110 \
        --init-from runs/compute_study/wide/checkpoint.safetensors          # phase 2, first session
    python scripts/train_pretrained.py mnist_doubling_wide --threads 1 --minutes 110   # resumes it (its resume
        # point is in the history now: scripts/resume/mnist_doubling_wide/README.md says how to get it back)
It ran at lr 1e-3 up to its update 3,300 (session 13), then at 3e-4 to 5,300, then at 1e-4 (its mean
training loss had stayed at 100 +- 0.5 nats per 250 updates from 3,550 to 5,300), which SHIPPED now gives it,
so that the same command resumes it at the lower rate. From update 4,272 it ran on an Intel Xeon with AMX,
where --precision auto chose bf16 autocast; it stops at 7,000 (--updates 7000), 8,327 updates in all.

The emoji model (issue 19, target 3.7 bits/dim; phase 5 below ships) grew from phase 1 (1,998 updates,
1.58 h, trained before runs kept their curves), which shipped alone at 4.02 bits/dim until session 23; its
file and card are in the history:
    git show e233f2b:vnca_tutorial/pretrained/noto_doubling_small.safetensors > runs/noto_phase1.safetensors
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 85 --eval-every 250 \
        --init-from runs/noto_phase1.safetensors                                  # phase 2 (session 12)
Phase 2's curve and config are kept in scripts/resume/noto_doubling_small_phase2. Phase 3 (session 13)
started from its weights at update 2,300 with a new optimizer: 1,300 updates at lr 1e-3, 2,500 at 3e-4,
1,800 at 1e-4 (each resumed with --set lr=...), 5,600 in all:
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 95 --eval-every 250 \
        --run-dir runs/pretrained/noto_doubling_small_phase3 \
        --init-from scripts/resume/noto_doubling_small_weights/checkpoint.safetensors   # (stopped at 1,300)
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 100 --eval-every 250 \
        --run-dir runs/pretrained/noto_doubling_small_phase3 --set lr=3e-4        # (stopped at 3,800)
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 52 --eval-every 250 \
        --run-dir runs/pretrained/noto_doubling_small_phase3 --set lr=1e-4        # (stopped at 5,600)
    python scripts/train_pretrained.py noto_doubling_small --save-resume-point --weights-only \
        --run-dir runs/pretrained/noto_doubling_small_phase3
It overfits the 2,656 training emoji: at its end the ELBO is 3.44 bits/dim on training emoji and 3.85 on
the test emoji (benchmarks/train_test_gap.py), and the logged test-subset ELBO got worse at 1e-4. A next
phase needs a validation split carved from the training emoji to stop on (not the test emoji): phase 4.
Phase 3's weights and curve were scripts/resume/noto_doubling_small_weights until phase 4 took that folder
(session 14); they are in the history. To export them (the card counts all three phases; the whole-test
bound in shards, as for the other models):
    mkdir -p runs/pretrained/noto_doubling_small          # (move any older run of that name away first)
    for f in checkpoint.safetensors metrics.csv; do git show \
        54fcf90:scripts/resume/noto_doubling_small_weights/$f > runs/pretrained/noto_doubling_small/$f; done
    python scripts/export_pretrained.py noto_doubling_small --dtype float16 --images 64 \
        --earlier-phase count:1998:1.58 \
        --earlier-phase scripts/resume/noto_doubling_small_phase2:2300
    python scripts/evaluate_pretrained.py noto_doubling_small --shards 4 --shard I   # I = 0..3, then --card

Phase 4 (session 14, an Intel Xeon with AMX: bf16 autocast, about 1 s per update) starts again from the
weights of phase 1, with a validation split carved from the training emoji (train on fit, 2,391;
stop on valid, 265: --early-stopping keeps the best weights in best.safetensors) and left-right mirroring
of half the training images (hflip); 600 updates at lr 1e-3, then 3e-4, then from 4,800 (the validation ELBO
had stopped improving) 1e-4:
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --updates 1000 --eval-every 250 \
        --early-stopping --set hflip=true --run-dir runs/pretrained/noto_doubling_small_phase4 \
        --init-from runs/noto_phase1.safetensors                                        # (stopped at 600)
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 120 --eval-every 250 \
        --early-stopping --set hflip=true lr=3e-4 --run-dir runs/pretrained/noto_doubling_small_phase4
                                                                                  # (stopped at 4,800)
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 26 --eval-every 250 \
        --early-stopping --set hflip=true lr=1e-4 --run-dir runs/pretrained/noto_doubling_small_phase4
                                                          # (stopped at 5,917; best: update 5,250)
Its weights (the best on valid) and curve are kept in scripts/resume/noto_doubling_small_weights; a next
phase starts from them (--init-from .../checkpoint.safetensors).

Phase 5 (session 22, an AMD EPYC: float32, about 2.3 s per update beside other work) gives phase 4's best
weights three logistic components instead of one (|z| 48 -> 68: ten channels per new component; the
old model is unchanged at first, see the script), then trains them on fit with hflip at lr 1e-4:
    python scripts/add_mixture_components.py \
        scripts/resume/noto_doubling_small_weights/checkpoint.safetensors --n-mix 3 \
        --out runs/exp/noto_mix3_init.safetensors
    python scripts/train_pretrained.py noto_doubling_small --threads 1 --minutes 95 --eval-every 250 \
        --early-stopping --set hflip=true lr=1e-4 z_dim=68 n_mix=3 --run-dir runs/exp/noto_mix3 \
        --init-from runs/exp/noto_mix3_init.safetensors
It stopped at its time limit at update 2,500, its best (3.738 bits/dim on valid, still falling); those
weights ship (session 23). With the run's files in
runs/pretrained/noto_doubling_small (best.safetensors, checkpoint.safetensors and metrics.csv, as in
scripts/resume/noto_doubling_small_mix3), as a candidate until its whole-test figure is in:
    python scripts/export_pretrained.py noto_doubling_small --candidate --best --dtype float16 --images 8 \
        --earlier-validated --earlier-phase count:1998:1.58 \
        --earlier-phase scripts/resume/noto_doubling_small_weights:5250 --notes ... --trained-on ...
    python scripts/evaluate_pretrained.py noto_doubling_small --candidate --shards 4 --shard I  # 0..3
    python scripts/evaluate_pretrained.py noto_doubling_small --candidate --shards 4 --card
(the first phase was card:noto_doubling_small then; --earlier-validated: phase 4 logged validation ELBOs),
then its two files move into vnca_tutorial/pretrained/.

The baseline is trained for as many updates as the doubling model it is compared with (2,121):
    python scripts/train_pretrained.py mnist_baseline_small --threads 1 --updates 2121 --eval-every 250
and, for the wide model (1,327 updates in phase 1 and 7,000 in phase 2), a second one for 8,327:
    python scripts/train_pretrained.py mnist_baseline_long --threads 1 --eval-every 250

Runs live in runs/pretrained/<name>/; `scripts/export_pretrained.py` turns a finished run into the
shipped safetensors file and model card. Runs longer than a session: `--save-resume-point` copies the run's
checkpoint without its pool (which is large and refills in a few hundred updates) and its metrics into
scripts/resume/<name>/, to be committed; on a machine without the run, the script starts from there.
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vnca_tutorial.cli import CLIError, apply_precision, parse_overrides, training_splits
from vnca_tutorial.config import get_preset
from vnca_tutorial.data import load_dataset
from vnca_tutorial.hardware import PRECISIONS
from vnca_tutorial.checkpoint import atomic_write, read_metadata, tensors_sha256
from vnca_tutorial.train import CHECKPOINT, METRICS, TrainSettings, train

# The shipped models: sized to train on two CPU cores in a few hours (see each model card).
SHIPPED = {
    "mnist_doubling_small": get_preset("mnist_doubling_cpu", name="mnist_doubling_small", z_dim=32,
                                       hidden=64, n_blocks=1, encoder_channels=16, lr=1e-3,
                                       n_updates=20_000),
    # chapter 8's recipe: the CPU preset (|z| = 32 channels, width 64, clip 1, a bound on the state and
    # older pool states, not in the paper) trained in phases, see the module docstring. This is the last
    # phase's config: the reference's asynchronous updates (p_update 0.5, T in [32, 64]) and lr of 1e-4,
    # seven eighths of each batch from the pool, three quarters of those damaged.
    # issue 19's long run: the candidate that gained fastest per CPU-hour in chapter 10's compute study
    # (|z| = 64, width 128, two residual blocks). Phase 1 is the study's run (train digits only); phase 2
    # starts from its weights on train + valid (see the module docstring).
    # lr 1e-3 (the compute study's) to phase 2's update 3,300, then 3e-4 (the emoji model gained from it),
    # from 5,300 1e-4 (the training loss had been flat for 1,750 updates)
    "mnist_doubling_wide": get_preset("mnist_doubling_cpu", name="mnist_doubling_wide", z_dim=64, hidden=128,
                                      n_blocks=2, encoder_channels=16, lr=1e-4, n_updates=40_000),
    "mnist_nondoubling_small": get_preset("mnist_nondoubling_cpu", name="mnist_nondoubling_small",
                                          n_updates=40_000, lr=1e-4, pool_fraction=0.875,
                                          damage_fraction=0.75, p_update=0.5, min_steps=32, max_steps=64),
    "mnist_baseline_small": get_preset("mnist_baseline_cpu", name="mnist_baseline_small", z_dim=32,
                                       encoder_channels=16, lr=1e-3, n_updates=20_000),
    # the same baseline trained for as many updates as mnist_doubling_wide (1,327 + 7,000), issue 19
    "mnist_baseline_long": get_preset("mnist_baseline_cpu", name="mnist_baseline_long", z_dim=32,
                                      encoder_channels=16, lr=1e-3, n_updates=8_327),
    # 64x64 RGB, discretized logistic; narrower than noto_doubling_cpu (48 vs 64, 1 residual block vs 2)
    # so that an update of 16 images takes about 2.7 s on one core here instead of 6 s.
    "noto_doubling_small": get_preset("noto_doubling_cpu", name="noto_doubling_small", z_dim=48, hidden=48,
                                      n_blocks=1, steps_per_stage=6, batch_size=16, lr=1e-3,
                                      n_updates=20_000),
}


RESUME = Path(__file__).resolve().parent / "resume"


def save_resume_point(run_dir: Path, folder: Path, weights_only: bool = False) -> None:
    """The run's checkpoint without the pool, and its metrics, into ``folder`` (small enough to commit).

    ``weights_only`` also drops the optimizer and random states (a third of the size): such a point is not
    resumed but started from (--init-from, a new phase), and export_pretrained.py reads it as an earlier
    phase (--earlier-phase)."""
    checkpoint = run_dir / CHECKPOINT
    meta = read_metadata(checkpoint)
    dropped = ("pool.", "optim.", "rng.") if weights_only else ("pool.",)
    tensors = {k: v for k, v in load_file(str(checkpoint)).items() if not k.startswith(dropped)}
    if weights_only:
        meta = {k: v for k, v in meta.items() if not k.startswith("optim.")}
    meta["tensors_sha256"] = tensors_sha256(tensors)             # the hash of what is kept
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / CHECKPOINT, lambda tmp: save_file(tensors, tmp, metadata=meta))
    shutil.copyfile(run_dir / METRICS, folder / METRICS)
    print(f"resume point at update {meta['step']} in {folder}")


def restore_resume_point(folder: Path, run_dir: Path) -> None:
    """Start a run that is not on this machine from its committed resume point (the pool starts empty)."""
    if (run_dir / CHECKPOINT).exists() or not (folder / CHECKPOINT).exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT, METRICS):
        shutil.copyfile(folder / name, run_dir / name)
    logging.info("resuming from the committed resume point %s", folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(SHIPPED))
    p.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--updates", type=int, default=None,
                   help="stop at this update (default: the config's n_updates); e.g. to match another model")
    p.add_argument("--eval-every", type=int, default=1000, help="updates between validation ELBOs (the curve)")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[],
                   help="change config fields for an ablation (use another --run-dir); e.g. --set state_bound=0")
    p.add_argument("--run-dir", default=None, help="default: runs/pretrained/NAME")
    p.add_argument("--save-resume-point", action="store_true",
                   help="copy the run's checkpoint (without the pool) and metrics to scripts/resume/NAME")
    p.add_argument("--weights-only", action="store_true",
                   help="with --save-resume-point: weights and metrics only, to scripts/resume/NAME_weights "
                        "(a third of the size; continue with --init-from)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bf16 autocast where it is the fast path (AMX CPU, GPU), else float32")
    p.add_argument("--early-stopping", action="store_true",
                   help="train without the validation images (MNIST: train, emoji: fit), validate on all of "
                        "them (valid) and keep the best weights in best.safetensors (needs --run-dir)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from these weights (a new optimizer and pool): a second training phase")
    a = p.parse_args()
    if (a.updates is not None and a.updates < 1) or a.eval_every < 1:
        p.error(f"--updates and --eval-every must be >= 1, got {a.updates} and {a.eval_every}")
    try:
        config = SHIPPED[a.name].replace(**parse_overrides(a.set, type(SHIPPED[a.name])))
    except (CLIError, ValueError) as e:
        p.error(str(e))
    if (a.set or a.early_stopping) and a.run_dir is None:
        p.error("--set and --early-stopping train another model: give it its own --run-dir")
    logging.basicConfig(level=logging.INFO)
    try:
        config, why = apply_precision(config, a.precision, a.set)
    except CLIError as e:
        p.error(str(e))
    logging.info("precision: %s", why)
    if a.threads:
        torch.set_num_threads(a.threads)
    run_dir = Path(a.run_dir or f"runs/pretrained/{a.name}")
    if a.weights_only and not a.save_resume_point:
        p.error("--weights-only goes with --save-resume-point")
    if a.save_resume_point:
        folder = RESUME / (f"{a.name}_weights" if a.weights_only else a.name)
        save_resume_point(run_dir, folder, weights_only=a.weights_only)
        return
    if a.run_dir is None:                  # the resume point belongs to the shipped run, not to ablations
        restore_resume_point(RESUME / a.name, run_dir)
    mnist = config.dataset == "binarized_mnist"
    # MNIST: train + valid, as the paper; --early-stopping: stop on held-out training images (never test)
    train_split, val_split = training_splits(config.dataset, a.early_stopping)
    data, val = load_dataset(config.dataset, train_split), load_dataset(config.dataset, val_split)
    eval_images = len(val) if a.early_stopping else 512 if mnist else 64
    settings = TrainSettings(run_dir=str(run_dir), checkpoint_every=50, eval_every=a.eval_every,
                             n_updates=a.updates, eval_images=eval_images, resume=True,
                             progress=False, max_minutes=a.minutes, init_from=a.init_from,
                             keep_best=a.early_stopping)
    train(config, data.images, settings, val_images=val.images)


if __name__ == "__main__":
    main()
