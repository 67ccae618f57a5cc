"""Tests for the ``vnca`` command (vnca_tutorial.cli) through its real entry points.

Importing torch costs ~10 s on the shared 2-core machine, so most calls share ONE interpreter: a driver
process runs ``python -m vnca_tutorial`` (``runpy.run_module("vnca_tutorial", run_name="__main__")``,
exactly what ``-m`` does) once per command line, with its own sys.argv, environment and captured
stdout/stderr, and records the exit status (an exception escaping the command is recorded as a traceback).
Two further real processes check ``python -m vnca_tutorial`` and the installed ``vnca`` console script.
The data is a tiny packed-bit binarized_mnist.npz (the format of shared/data/PROVENANCE.md) in tmp.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vnca_tutorial import pretrained
from vnca_tutorial.checkpoint import load_checkpoint
from vnca_tutorial.config import PRESETS
from vnca_tutorial.model import build_model
from helpers import write_tiny_mnist

REPO = Path(__file__).resolve().parent.parent
TINY = ["z_dim=8", "hidden=8", "encoder_channels=4", "batch_size=4"]
TINY_DOUBLING = ["--set", *TINY, "n_blocks=1", "steps_per_stage=2"]      # 15 states
TINY_CELEBA = ["--set", "z_dim=16", "hidden=8", "encoder_channels=4", "batch_size=4", "n_blocks=1",
               "steps_per_stage=1"]
FOLDER_8X8 = ["dataset=folder", "image_size=8", "n_doublings=2"]           # after a --set
TINY_NONDOUBLING = ["--set", *TINY, "min_steps=2", "max_steps=4", "pool_size=8"]

T = ["train", "--preset", "mnist_doubling_cpu"]
# name: (command line, words the error must contain, exit status); none of them may touch a file
BAD = {
    "updates_0": (T + ["--updates", "0"], ["--updates", "positive integer", "'0'"], 2),
    "updates_negative": (T + ["--updates", "-5"], ["--updates", "'-5'"], 2),
    "checkpoint_every_0": (T + ["--checkpoint-every", "0"], ["--checkpoint-every", "positive"], 2),
    "eval_every_0": (T + ["--eval-every", "0"], ["--eval-every", "positive"], 2),
    "eval_images_negative": (T + ["--eval-images", "-1"], ["--eval-images", "positive"], 2),
    "max_minutes_inf": (T + ["--max-minutes", "inf"], ["--max-minutes", "finite"], 2),
    "max_minutes_0": (T + ["--max-minutes", "0"], ["--max-minutes", "> 0"], 2),
    "threads_negative": (T + ["--threads", "-1"], ["--threads", "positive"], 2),
    "seed_huge": (T + ["--seed", str(2 ** 70)], ["--seed", "2**63"], 2),
    "lr_negative": (T + ["--set", "lr=-1"], ["lr", "-1"], 1),
    "lr_nan": (T + ["--set", "lr=nan"], ["lr", "nan"], 1),
    "lr_huge": (T + ["--set", "lr=1e39"], ["lr", "(0, 1]"], 1),
    "grad_clip_negative": (T + ["--set", "grad_clip=-1"], ["grad_clip", "> 0"], 1),
    "beta_nan": (T + ["--set", "beta=nan"], ["beta", "nan"], 1),
    "n_updates_0": (T + ["--set", "n_updates=0"], ["n_updates", "positive"], 1),
    "relabel": (T + ["--set", "name=mnist_doubling"], ["--set name", "preset"], 1),
    "precision_float16": (T + ["--precision", "float16"], ["--precision", "'float16'", "auto"], 2),
    "precision_twice": (T + ["--precision", "bf16", "--set", "bf16=false"], ["--precision bf16", "give one"], 1),
    "eval_seed_negative": (["eval", "--pretrained", "mnist_doubling_small", "--seed", "-1"], ["--seed", "'-1'"], 2),
    "eval_k_0": (["eval", "--pretrained", "mnist_doubling_small", "--k", "0"], ["--k", "positive"], 2),
    "eval_batch_size_0": (["eval", "--pretrained", "mnist_doubling_small", "--batch-size", "0"], ["--batch-size"], 2),
    "sample_n_0": (["sample", "--pretrained", "mnist_doubling_small", "--n", "0"], ["--n", "positive"], 2),
    "grow_fps_nan": (["grow", "--pretrained", "mnist_doubling_small", "--fps", "nan"], ["--fps", "finite"], 2),
    "grow_steps_0": (["grow", "--pretrained", "mnist_nondoubling_small", "--steps", "0"], ["--steps"], 2),
    "damage_at_step_negative": (["damage", "--pretrained", "mnist_nondoubling_small", "--at-step", "-3"],
                                ["--at-step", ">= 0"], 2),
    # sizes that cannot fit in memory: refused with the estimate, before anything is allocated
    "train_huge_hidden": (T + ["--set", "hidden=100000000"], ["training", "GiB", "hidden"], 1),
    "train_huge_batch": (T + ["--set", "batch_size=10000000"], ["training", "GiB", "batch_size"], 1),
    "untrained_huge_model": (["sample", "--preset", "mnist_doubling_cpu", "--set", "hidden=100000000"],
                             ["model", "GiB", "hidden"], 1),
    "eval_huge_k": (["eval", "--pretrained", "mnist_doubling_small", "--k", "1000000000"], ["--k", "GiB"], 1),
    "grow_huge_steps": (["grow", "--pretrained", "mnist_nondoubling_small", "--steps", "1000000000"],
                        ["--steps", "GiB"], 1),
    "damage_huge_steps": (["damage", "--pretrained", "mnist_nondoubling_small", "--steps", "1000000000"],
                          ["--steps", "GiB"], 1),
    "sample_huge_n": (["sample", "--pretrained", "mnist_doubling_small", "--n", "1000000000"], ["--n", "GiB"], 1),
}
BAD_VALUES = {name: cmd for name, (cmd, _, _) in BAD.items()}

DRIVER = r'''
import contextlib, io, json, os, runpy, sys, traceback
calls_path, results_path = sys.argv[1], sys.argv[2]
calls = json.load(open(calls_path))
results = {}
for call in calls:
    saved_env = dict(os.environ)
    for key, value in call.get("env", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    exec(call.get("setup", ""), {})
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["vnca"] + call["argv"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module("vnca_tutorial", run_name="__main__", alter_sys=True)
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            rc = -1
    os.environ.clear()
    os.environ.update(saved_env)
    results[call["name"]] = {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}
json.dump(results, open(results_path, "w"))
'''


def write_tiny_celeba(root: Path, n_train: int = 5, n_test: int = 3) -> None:
    """root/celeba/img_align_celeba/*.jpg (178x218 RGB) and list_eval_partition.txt (0 train, 2 test)."""
    from PIL import Image
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, part in enumerate([0] * n_train + [2] * n_test):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / name)
        lines.append(f"{name} {part}")
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def write_tiny_folder(folder: Path, n: int = 12) -> None:
    """A folder of your own images: n random 10x12 RGB PNGs (cropped to 10x10 and shrunk to 8x8 on loading)."""
    from PIL import Image
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(folder / f"picture_{i:02d}.png")


def environment(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(VNCA_DATA_DIR=str(tmp / "data"), VNCA_CACHE_DIR=str(tmp / "cache"), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Run every command line below in one driver process; {name: {"rc", "stdout", "stderr"}} plus paths."""
    tmp = tmp_path_factory.mktemp("cli")
    write_tiny_mnist(tmp / "data")
    write_tiny_celeba(tmp / "celeba_root")
    write_tiny_folder(tmp / "pictures")
    (tmp / "empty").mkdir()
    (tmp / "garbage.safetensors").write_bytes(b"this is not a safetensors file" * 20)
    run = tmp / "run"
    ck = str(run / "checkpoint.safetensors")
    p = {k: str(tmp / v) for k, v in dict(png="samples.png", gif="growth.gif", gif_nd="growth_nd.gif",
                                          damage="damage.gif", damage_nd="damage_nd.gif", json="eval.json",
                                          trunc="truncated.safetensors", mp4="growth.mp4",
                                          progress="eval_progress.safetensors").items()}
    train = ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(run), "--checkpoint-every", "2",
             "--eval-every", "2", "--eval-images", "8", "--threads", "1", *TINY_DOUBLING]
    nd = ["--preset", "mnist_nondoubling_cpu", *TINY_NONDOUBLING]
    calls = [
        # --help of every command
        ("help", ["--help"]), *[(f"help_{c}", [c, "--help"]) for c in ("train", "eval", "sample", "grow", "damage")],
        # the happy path
        ("train", [*train, "--updates", "3"]),
        ("train_again", [*train, "--updates", "3"]),                     # exists: needs --resume
        ("resume", [*train, "--updates", "4", "--resume"]),
        ("train_early_stopping", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "es_run"),
                                  "--updates", "4", "--eval-every", "2", "--threads", "1", "--early-stopping",
                                  *TINY_DOUBLING]),
        ("eval", ["eval", "--checkpoint", ck, "--k", "4", "--images", "8", "--json", p["json"], "--threads", "1"]),
        *[(f"eval_resumable_{i}", ["eval", "--checkpoint", ck, "--k", "4", "--images", "8", "--threads", "1",
                                   "--resume-file", p["progress"]]) for i in (1, 2)],
        ("eval_all_by_number", ["eval", "--checkpoint", ck, "--k", "4", "--images", "16", "--threads", "1"]),
        ("eval_all", ["eval", "--checkpoint", ck, "--k", "4", "--threads", "1"]),
        ("eval_pretrained", ["eval", "--pretrained", "mnist_nondoubling_small", "--k", "2", "--threads", "1"]),
        ("eval_resume_other_k", ["eval", "--checkpoint", ck, "--k", "5", "--images", "8", "--threads", "1",
                                 "--resume-file", p["progress"]]),
        ("sample", ["sample", "--checkpoint", ck, "--n", "4", "--out", p["png"]]),
        ("grow", ["grow", "--checkpoint", ck, "--n", "2", "--out", p["gif"]]),
        ("grow_untrained_nondoubling", ["grow", *nd, "--steps", "5", "--n", "1", "--out", p["gif_nd"]]),
        ("damage", ["damage", "--checkpoint", ck, "--n", "2", "--out", p["damage"]]),
        ("damage_square", ["damage", *nd, "--kind", "square", "--at-step", "3", "--steps", "6", "--n", "2",
                           "--out", p["damage_nd"]]),
        # a folder of your own images: trained on, then its held-out tenth evaluated
        ("folder_train", ["train", "--preset", "celeba_doubling_cpu", "--run-dir", str(tmp / "folder_run"),
                          "--data-dir", str(tmp / "pictures"), "--updates", "2", "--eval-every", "1",
                          "--threads", "1", *TINY_CELEBA, *FOLDER_8X8]),
        ("folder_eval", ["eval", "--checkpoint", str(tmp / "folder_run" / "checkpoint.safetensors"),
                         "--data-dir", str(tmp / "pictures"), "--k", "2", "--json", str(tmp / "folder.json")]),
        # CelebA is read lazily, image by image (RGB, discretized logistic likelihood)
        ("celeba_train", ["train", "--preset", "celeba_doubling_cpu", "--run-dir", str(tmp / "celeba_run"),
                          "--data-dir", str(tmp / "celeba_root"), "--updates", "1", "--eval-every", "1",
                          "--threads", "1", *TINY_CELEBA]),
        ("celeba_eval", ["eval", "--checkpoint", str(tmp / "celeba_run" / "checkpoint.safetensors"), "--data-dir",
                         str(tmp / "celeba_root"), "--k", "2", "--images", "2"]),
        # bad input: one line on stderr, no traceback (data mistakes at tiny sizes: the memory guess comes
        # first, and must not answer instead on a machine with little free memory)
        ("missing_checkpoint", ["eval", "--checkpoint", str(tmp / "nope.safetensors")]),
        ("corrupt_checkpoint", ["sample", "--checkpoint", str(tmp / "garbage.safetensors")]),
        ("truncated_checkpoint", ["grow", "--checkpoint", p["trunc"]],
         f"d = open({ck!r}, 'rb').read(); open({p['trunc']!r}, 'wb').write(d[:len(d) // 2])"),
        ("checkpoint_of_other_preset", ["sample", "--checkpoint", ck, "--preset", "mnist_nondoubling_cpu"]),
        ("resume_other_preset", ["train", "--preset", "mnist_nondoubling_cpu", "--run-dir", str(run),
                                 "--resume", "--updates", "5", *TINY_NONDOUBLING]),
        ("unknown_preset", ["train", "--preset", "mnist_doubling_gpu"]),
        ("unknown_preset_sample", ["sample", "--preset", "nope"]),
        ("empty_data_env", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r1"), *TINY_DOUBLING],
         "", {"VNCA_DATA_DIR": str(tmp / "empty")}),
        ("empty_data_dir", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r2"),
                            "--data-dir", str(tmp / "empty"), *TINY_DOUBLING]),
        ("celeba_without_data_dir", ["train", "--preset", "celeba_doubling_cpu", "--run-dir", str(tmp / "r3"),
                                     *TINY_CELEBA]),
        ("unknown_dataset", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r8"),
                             *TINY_DOUBLING, "dataset=imagenet"]),
        ("folder_without_data_dir", ["train", "--preset", "celeba_doubling_cpu", "--run-dir", str(tmp / "r9"),
                                     *TINY_CELEBA, *FOLDER_8X8]),
        ("image_size", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r4"),
                        "--set", "image_size=30"]),
        ("image_size_vs_data", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r5"),
                                *TINY_DOUBLING, "image_size=64", "n_doublings=5"]),
        ("set_unknown_key", ["train", "--preset", "mnist_doubling_cpu", "--set", "zdim=8"]),
        ("set_bad_value", ["train", "--preset", "mnist_doubling_cpu", "--set", "z_dim=eight"]),
        ("set_p_update", ["train", "--preset", "mnist_nondoubling_cpu", "--set", "p_update=1.5"]),
        ("set_state_bound", ["train", "--preset", "mnist_nondoubling_cpu", "--set", "state_bound=-1"]),
        ("set_kl_warmup", ["train", "--preset", "mnist_doubling_cpu", "--set", "kl_warmup=-5"]),
        ("set_hflip", ["train", "--preset", "mnist_doubling_cpu", "--set", "hflip=sometimes"]),
        ("set_invert", ["train", "--preset", "mnist_doubling_cpu", "--set", "invert=true"]),
        ("diverged", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r6"), "--updates", "6",
                      "--checkpoint-every", "1", "--threads", "1", *TINY_DOUBLING, "lr=1"]),
        ("no_cuda", ["sample", "--preset", "mnist_doubling_cpu", "--device", "cuda"]),
        ("no_mps", ["sample", "--preset", "mnist_doubling_cpu", "--device", "mps"]),
        ("baseline_has_no_growth", ["grow", "--preset", "mnist_baseline_cpu", "--set", "z_dim=8",
                                    "encoder_channels=4"]),
        ("unknown_pretrained", ["eval", "--pretrained", "no_such_model"]),
        ("eval_untrained", ["eval", "--preset", "mnist_doubling_cpu"]),
        ("mp4", ["grow", "--checkpoint", ck, "--n", "1", "--out", p["mp4"]]),
        ("bad_suffix", ["grow", "--checkpoint", ck, "--n", "1", "--out", str(tmp / "growth.png")]),
        ("square_on_doubling", ["damage", "--checkpoint", ck, "--kind", "square"]),
        ("at_step_out_of_range", ["damage", "--checkpoint", ck, "--at-step", "999"]),
        # outputs checked before any work: never onto an input, never a folder or an unwritable suffix
        ("json_onto_checkpoint", ["eval", "--checkpoint", ck, "--json", ck, "--k", "2"]),
        ("grow_onto_checkpoint", ["grow", "--checkpoint", ck, "--out", ck]),
        ("sample_bad_suffix", ["sample", "--checkpoint", ck, "--out", str(tmp / "samples.xyz")]),
        ("sample_into_folder", ["sample", "--checkpoint", ck, "--out", str(tmp)]),
        # bad numbers (issue 17): each refused before any work, in one line
        *[(f"bad_{name}", [*cmd, "--run-dir", str(tmp / "never" / name)] if cmd[0] == "train" else cmd)
          for name, cmd in BAD_VALUES.items()],
        # argparse errors: one line too, exit status 2
        ("no_command", []),
        ("unknown_option", ["train", "--preset", "mnist_doubling_cpu", "--bogus"]),
        ("bad_int", ["eval", "--checkpoint", ck, "--k", "many"]),
        ("bad_choice", ["sample", "--device", "tpu"]),
        ("both_sources", ["sample", "--checkpoint", ck, "--pretrained", "x"]),
        # an installation without the pretrained module (patches sys.modules for the rest of the driver)
        ("pretrained_module_missing", ["sample", "--pretrained", "mnist_doubling_small"],
         "import sys, vnca_tutorial\nsys.modules['vnca_tutorial.pretrained'] = None\n"
         "vnca_tutorial.__dict__.pop('pretrained', None)"),
        # a truncated download (last: it patches the data module for the rest of the driver)
        ("truncated_download", ["train", "--preset", "mnist_doubling_cpu", "--run-dir", str(tmp / "r7"),
                                *TINY_DOUBLING],
         "import io, pathlib, vnca_tutorial.data as d\n"
         "d._open_url = lambda url, timeout: io.BytesIO(b'the first bytes of a file')",
         {"VNCA_DATA_DIR": None}),
    ]
    spec = [{"name": c[0], "argv": c[1], "setup": c[2] if len(c) > 2 else "", "env": c[3] if len(c) > 3 else {}}
            for c in calls]
    (tmp / "calls.json").write_text(json.dumps(spec))
    (tmp / "driver.py").write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(tmp / "driver.py"), str(tmp / "calls.json"), str(tmp / "out.json")],
                          cwd=tmp, env=environment(tmp), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp / "out.json").read_text())
    return {"r": results, "tmp": tmp, "run": run, "ck": ck, **p}


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_error(result: dict, *needles: str, rc: int = 1, alone: bool = True) -> str:
    """Exit status rc, no traceback, and exactly one ``vnca: error:`` line, the last one on stderr
    (``alone``: the only line; otherwise INFO logs and a progress bar may come before it)."""
    err = result["stderr"]
    assert "Traceback" not in err, err
    assert result["rc"] == rc, result
    errs = [line for line in lines(err) if line.startswith("vnca: error:")]
    assert len(errs) == 1 and lines(err)[-1] == errs[0], err
    if alone:
        assert lines(err) == errs, err
    for needle in needles:
        assert needle.lower() in errs[0].lower(), (needle, errs[0])
    return errs[0]


# --- --help ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, options", [
    ("", ["train", "eval", "sample", "grow", "damage", "vnca train"]),
    ("train", ["--preset", "--run-dir", "--updates", "--data-dir", "--device", "--resume", "--seed", "--precision",
               "--checkpoint-every", "--eval-every", "--set", "example", "mnist_doubling_cpu", "invert=true"]),
    ("eval", ["--checkpoint", "--pretrained", "--k", "--images", "--batch-size", "--seed", "--device", "--json",
              "--resume-file", "example"]),
    ("sample", ["--checkpoint", "--preset", "--n", "--out", "--seed", "--device", "example", "UNTRAINED"]),
    ("grow", ["--checkpoint", "--preset", "--n", "--out", "--fps", "--device", "example", ".mp4"]),
    ("damage", ["--checkpoint", "--preset", "--n", "--at-step", "--kind", "right-half", "square", "--out",
                "example"]),
])
def test_help(cli, command, options):
    r = cli["r"][f"help_{command}" if command else "help"]
    assert r["rc"] == 0 and r["stderr"] == ""
    for option in options:
        assert option in r["stdout"], option


# --- the happy path -------------------------------------------------------------------------------
def test_train_writes_a_checkpoint_and_resumes(cli):
    r = cli["r"]["train"]
    assert r["rc"] == 0, r["stderr"]
    assert "Traceback" not in r["stderr"] and "INFO" in r["stderr"]          # logs go to stderr
    assert "update 3" in r["stdout"]
    config, tensors, meta = load_checkpoint(cli["ck"])
    assert config.name == "mnist_doubling_cpu" and config.z_dim == 8 and config.steps_per_stage == 2
    assert meta["step"] == "4"                                               # after the resume
    assert assert_error(cli["r"]["train_again"], "--resume", alone=False)
    r = cli["r"]["resume"]
    assert r["rc"] == 0 and "update 4" in r["stdout"], r["stderr"]
    rows = (cli["run"] / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2", "3", "4"]


def test_train_with_early_stopping_holds_out_valid_and_keeps_the_best_weights(cli):
    r = cli["r"]["train_early_stopping"]
    assert r["rc"] == 0, r["stderr"]
    assert re.search(r"on 24 images \(.*\[train\]\); validation: .*\[valid\]", r["stderr"]), r["stderr"]
    run = cli["run"].parent / "es_run"
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    elbos = {int(row[0]): float(row[4]) for row in rows if row[4]}
    assert sorted(elbos) == [2, 4]
    best = load_checkpoint(run / "best.safetensors")[2]
    assert int(best["step"]) == max(elbos, key=elbos.get)


def test_eval_prints_finite_nats_and_bpd(cli):
    r = cli["r"]["eval"]
    assert r["rc"] == 0, r["stderr"]
    m = re.search(r"log p\(x\) >= (-?[\d.]+) nats \(([\d.]+) bits/dim\)", r["stdout"])
    assert m, r["stdout"]
    nats, bpd = float(m.group(1)), float(m.group(2))
    assert math.isfinite(nats) and math.isfinite(bpd) and nats < 0 < bpd
    assert bpd == pytest.approx(-nats / (32 * 32 * math.log(2)), abs=2e-4)
    record = json.loads(Path(cli["json"]).read_text())
    assert record["n_images"] == 8 and record["k"] == 4 and record["nats"] == pytest.approx(nats, abs=0.01)
    assert "random subset of 8" in record["data"]
    assert "IWAE" in r["stderr"]                                              # the progress bar


def test_eval_with_a_resume_file_continues_and_refuses_another_evaluation(cli):
    first, second = cli["r"]["eval_resumable_1"], cli["r"]["eval_resumable_2"]
    assert first["rc"] == 0 and second["rc"] == 0, first["stderr"] + second["stderr"]
    line = [x for x in first["stdout"].splitlines() if "log p(x)" in x]
    assert line and line == [x for x in second["stdout"].splitlines() if "log p(x)" in x]
    assert line == [x for x in cli["r"]["eval"]["stdout"].splitlines() if "log p(x)" in x]
    assert Path(cli["progress"]).exists()
    assert_error(cli["r"]["eval_resume_other_k"], "eval_progress.safetensors", "differs in: k", alone=False)


def test_eval_images_equal_to_the_split_means_the_whole_split_in_order(cli):
    a, b = cli["r"]["eval_all_by_number"], cli["r"]["eval_all"]
    assert a["rc"] == 0 and b["rc"] == 0, a["stderr"] + b["stderr"]
    line = lambda r: [x for x in r["stdout"].splitlines() if "log p(x)" in x]  # noqa: E731
    assert line(a) and line(a) == line(b) and "16 test images" in line(a)[0]
    assert "random subset" not in a["stderr"]


def test_eval_of_a_pretrained_model_prints_its_card_figure(cli):
    r = cli["r"]["eval_pretrained"]
    assert r["rc"] == 0, r["stderr"]
    card = pretrained.card("mnist_nondoubling_small")["test_bound"]
    assert "16 test images" in r["stdout"]             # the card's images exceed the tiny test split
    assert f"model card of mnist_nondoubling_small: {card['nats']:.2f} nats" in r["stdout"], r["stdout"]
    assert f"k={card['k']}, {card['n_images']} test images" in r["stdout"], r["stdout"]


def test_a_folder_of_images_trains_and_its_held_out_tenth_is_evaluated(cli):
    r = cli["r"]
    assert r["folder_train"]["rc"] == 0, r["folder_train"]["stderr"]
    assert "on 11 images" in r["folder_train"]["stderr"] and "[test: 1 of 12" in r["folder_train"]["stderr"]
    assert (cli["tmp"] / "folder_run" / "checkpoint.safetensors").is_file()
    assert r["folder_eval"]["rc"] == 0, r["folder_eval"]["stderr"]
    record = json.loads((cli["tmp"] / "folder.json").read_text())
    assert record["n_images"] == 1 and "[test: 1 of 12, seed 0]" in record["data"]
    assert math.isfinite(record["nats"]) and record["nats"] < 0


def test_train_reads_a_folder_once_and_inverts_it_when_the_config_says_so(tmp_path, monkeypatch):
    from vnca_tutorial import cli as vnca_cli, own_images
    from vnca_tutorial.config import get_preset
    write_tiny_folder(tmp_path / "pictures")
    reads = []
    real = own_images.load_image_folder
    monkeypatch.setattr(own_images, "load_image_folder", lambda *a, **kw: reads.append(kw) or real(*a, **kw))
    config = get_preset("mnist_doubling_cpu").replace(dataset="folder", image_size=8, n_doublings=2)
    splits = vnca_cli.training_splits("folder", early_stopping=True)                      # fit, valid
    (fit, fit_source), (valid, _) = vnca_cli._load_splits(config, splits, str(tmp_path / "pictures"))
    assert len(reads) == 1 and reads[0]["binary"] and not reads[0]["invert"]
    assert (len(fit), len(valid)) == (10, 1) and "[fit: 10 of 11" in fit_source    # 12 = 1 test + 1 + 10
    inverted, source = vnca_cli._load_split(config.replace(invert=True), "fit", str(tmp_path / "pictures"))
    assert reads[1]["invert"] and "inverted" in source and torch.equal(inverted, 1 - fit)


def test_celeba_is_read_lazily(cli):
    r = cli["r"]["celeba_train"]
    assert r["rc"] == 0, r["stderr"]
    assert "on 5 images" in r["stderr"] and (cli["tmp"] / "celeba_run" / "samples_0000001.png").exists()
    r = cli["r"]["celeba_eval"]
    assert r["rc"] == 0, r["stderr"]
    m = re.search(r"log p\(x\) >= (-?[\d.]+) nats \(([\d.]+) bits/dim\)", r["stdout"])
    assert m and math.isfinite(float(m.group(1))) and "2 test images" in r["stdout"]
    assert float(m.group(2)) == pytest.approx(-float(m.group(1)) / (3 * 32 * 32 * math.log(2)), abs=2e-4)


def test_sample_writes_a_png_of_the_right_size(cli):
    from PIL import Image
    r = cli["r"]["sample"]
    assert r["rc"] == 0, r["stderr"]
    with Image.open(cli["png"]) as im:
        # 4 samples in a 2 x 2 grid, 32 px images drawn at 2x with 2 px padding
        assert im.size == (2 * (64 + 2) + 2,) * 2


def gif_frames(path) -> np.ndarray:
    import imageio.v3 as iio
    return iio.imread(path, index=None)                                     # (F, H, W, C)


def test_grow_writes_one_frame_per_state(cli):
    r = cli["r"]["grow"]
    assert r["rc"] == 0, r["stderr"]
    config, _, _ = load_checkpoint(cli["ck"])
    n_states = len(build_model(config).decoder.schedule())
    assert n_states == 1 + 2 * 5 + 4                                         # seed, 5 stages of 2, 4 doublings
    frames = gif_frames(cli["gif"])
    assert len(frames) == n_states
    assert frames.shape[1] >= 128 and frames.shape[2] >= 2 * 128             # 2 samples, each >= 128 px
    r = cli["r"]["grow_untrained_nondoubling"]
    assert r["rc"] == 0, r["stderr"]
    assert "UNTRAINED" in r["stderr"]
    frames = gif_frames(cli["gif_nd"])
    assert len(frames) == 5 + 1 and frames.shape[1] >= 128 and frames.shape[2] >= 128


def test_damage_writes_a_gif(cli):
    for name, key, n_frames in [("damage", "damage", 15), ("damage_square", "damage_nd", 7)]:
        r = cli["r"][name]
        assert r["rc"] == 0, r["stderr"]
        frames = gif_frames(cli[key])
        assert len(frames) == n_frames
        assert frames.shape[2] >= 2 * 2 * 128                                # damaged | undamaged, 2 samples
    assert "right-half" in cli["r"]["damage"]["stdout"] and "square" in cli["r"]["damage_square"]["stdout"]


# --- bad input ------------------------------------------------------------------------------------
def test_checkpoint_errors(cli):
    r = cli["r"]
    assert_error(r["missing_checkpoint"], "nope.safetensors", "does not exist")
    assert_error(r["corrupt_checkpoint"], "garbage.safetensors")
    assert_error(r["truncated_checkpoint"], "truncated.safetensors")
    assert_error(r["checkpoint_of_other_preset"], "mnist_doubling_cpu", "mnist_nondoubling_cpu")
    assert_error(r["resume_other_preset"], "mnist_doubling_cpu", "mnist_nondoubling_cpu")


def test_preset_and_config_errors(cli):
    r = cli["r"]
    for name in ("unknown_preset", "unknown_preset_sample"):
        line = assert_error(r[name], "unknown preset")
        assert all(p in line for p in PRESETS)                               # lists the valid ones
    assert_error(r["image_size"], "image_size", "30")
    assert_error(r["image_size_vs_data"], "32x32", "64x64", alone=False)
    assert_error(r["set_unknown_key"], "zdim", "z_dim")
    assert_error(r["set_bad_value"], "z_dim=eight", "int")
    assert_error(r["set_p_update"], "p_update", "1.5")
    assert_error(r["set_state_bound"], "state_bound", "-1")
    assert_error(r["set_kl_warmup"], "kl_warmup", "-5")
    assert_error(r["set_hflip"], "hflip=sometimes", "bool")
    assert_error(r["set_invert"], "invert=True", "dataset='folder'", "'binarized_mnist'")
    assert_error(r["baseline_has_no_growth"], "baseline", alone=False)
    assert_error(r["unknown_pretrained"], "pretrained", "no_such_model")
    assert_error(r["pretrained_module_missing"], "mnist_doubling_small", "no pretrained models", "--checkpoint")
    assert_error(r["eval_untrained"], "--checkpoint")
    assert_error(r["bad_suffix"], ".gif")
    assert_error(r["square_on_doubling"], "non-doubling", alone=False)
    assert_error(r["at_step_out_of_range"], "999", alone=False)
    try:
        import imageio_ffmpeg  # noqa: F401
        assert r["mp4"]["rc"] == 0 and Path(cli["mp4"]).stat().st_size > 0
    except ImportError:
        assert_error(r["mp4"], "imageio-ffmpeg", alone=False)


def test_data_errors(cli):
    r = cli["r"]
    assert_error(r["empty_data_env"], "empty", "binarized_mnist.npz", alone=False)
    assert_error(r["empty_data_dir"], "empty", "binarized_mnist.npz", alone=False)
    assert_error(r["celeba_without_data_dir"], "--data-dir")
    assert_error(r["unknown_dataset"], "data set 'imagenet'", "--set dataset=folder --data-dir FOLDER")
    assert_error(r["folder_without_data_dir"], "dataset=folder", "--data-dir FOLDER")
    assert_error(r["truncated_download"], "corrupt or incomplete", "sha256", alone=False)
    assert not list((cli["tmp"] / "cache").glob("*.amat"))                   # nothing half-written kept


def test_divergence_is_one_clear_line(cli):
    line = assert_error(cli["r"]["diverged"], "at update", "learning rate", alone=False)
    assert "checkpoint" in line


def test_missing_devices(cli):
    if not torch.cuda.is_available():
        assert_error(cli["r"]["no_cuda"], "cuda")
    if not (torch.backends.mps.is_available()):
        assert_error(cli["r"]["no_mps"], "mps")


@pytest.mark.parametrize("name, needle", [("no_command", "required"), ("unknown_option", "--bogus"),
                                          ("bad_int", "many"), ("bad_choice", "tpu"),
                                          ("both_sources", "not allowed")])
def test_command_line_errors_are_one_line(cli, name, needle):
    assert_error(cli["r"][name], needle, rc=2)


def test_outputs_are_checked_before_any_work_and_never_overwrite_an_input(cli):
    r = cli["r"]
    assert_error(r["json_onto_checkpoint"], "--json", "input", "overwritten")
    assert_error(r["grow_onto_checkpoint"], "--out", "input", "overwritten")
    assert_error(r["sample_bad_suffix"], ".xyz", ".png")
    assert_error(r["sample_into_folder"], "folder")
    assert not (cli["tmp"] / "samples.xyz").exists()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_flag_values_are_refused_in_one_line_before_any_work(cli, name):
    _, needles, rc = BAD[name]
    assert_error(cli["r"][f"bad_{name}"], *needles, rc=rc)
    assert not (cli["tmp"] / "never").exists()                  # no run folder made, nothing written


# --- real processes -------------------------------------------------------------------------------
def test_real_entry_points(tmp_path):
    """``python -m vnca_tutorial`` and the ``vnca`` console script, as separate processes."""
    env = environment(tmp_path)
    procs = {"module": subprocess.Popen([sys.executable, "-m", "vnca_tutorial", "eval", "--checkpoint",
                                         str(tmp_path / "missing.safetensors")], cwd=tmp_path, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)}
    script = shutil.which("vnca", path=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]))
    if script:
        procs["script"] = subprocess.Popen([script, "train", "--preset", "nope"], cwd=tmp_path, env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        needle = "missing.safetensors" if name == "module" else "unknown preset"
        assert_error({"rc": proc.returncode, "stdout": out, "stderr": err}, needle)
    if not script:
        pytest.skip("the vnca console script is not installed (pip install -e .)")



@pytest.mark.parametrize("command", ["train", "sample"])
def test_every_set_flag_adds_its_keys(command):
    """`--set a=1 --set b=2` keeps both (argparse's default would keep only the last --set, silently dropping
    e.g. dataset=folder when a reader adds the sizes in a second --set)."""
    from vnca_tutorial.cli import build_parser
    extra = ["--preset", "mnist_doubling_cpu"]
    parser = build_parser()
    args = parser.parse_args([command, *extra, "--set", "dataset=folder", "--set", "image_size=16", "n_doublings=3"])
    assert args.set == ["dataset=folder", "image_size=16", "n_doublings=3"]
    assert parser.parse_args([command, *extra]).set == []                 # the default list is not extended
