"""Packaging: the wheel builds offline, installs into a fresh environment, and works from outside the repo.

The wheel is built from a snapshot of the source tree (so the build leaves no build/ or egg-info behind in
the repository). The fresh venv sees the dependencies (torch, ...) of the project venv through a .pth file
that names that venv's site-packages; a path line in a .pth file does not run the .pth files found there,
so the project's editable install of vnca_tutorial stays inactive and the import must come from the wheel.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package (the `test` extra)
    import tomli as tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOP_LEVEL_FILES = ("pyproject.toml", "README.md", "README.rst", "LICENSE", "LICENSE.txt", "LICENSE.md",
                   "MANIFEST.in", "setup.py", "setup.cfg")


def run(cmd, cwd, env=None, timeout=120):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}"
    return result.stdout


def package_data():
    return PYPROJECT.get("tool", {}).get("setuptools", {}).get("package-data", {})


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_NO_INPUT"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel, install it into a fresh venv; yields (wheel path, venv python, snapshot dir)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in TOP_LEVEL_FILES:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "vnca_tutorial", src / "vnca_tutorial",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    # a package-data pattern that matches nothing yet (no pretrained weights exported) still gets tested:
    # the snapshot, not the repository, gets a small probe file for it
    for package, patterns in package_data().items():
        base = src / package.replace(".", "/")
        for pattern in patterns:
            if not any(p.is_file() for p in base.glob(pattern)) and not set("?[]") & set(pattern) \
                    and "**" not in pattern:
                probe = base / pattern.replace("*", "_packaging_probe")
                probe.parent.mkdir(parents=True, exist_ok=True)
                probe.write_text("{}")
    dist = tmp / "dist"
    env = clean_env()
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
        cwd=tmp, env=env, timeout=180)
    wheels = list(dist.glob("vnca_tutorial-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=tmp, env=env).strip())
    parent = sysconfig.get_paths()["purelib"]                 # torch, numpy, pip, ... of the project venv
    (purelib / "_parent_site_packages.pth").write_text(parent + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
         "--no-cache-dir", str(wheels[0])], cwd=tmp, env=env, timeout=180)
    return wheels[0], python, src


def test_wheel_contents(installed):
    wheel, _, src = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names}
    assert top == {"vnca_tutorial", "vnca_tutorial-" + PYPROJECT["project"]["version"] + ".dist-info"}, top
    # every module of the package
    modules = {p.relative_to(src).as_posix() for p in (src / "vnca_tutorial").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules and modules <= names, sorted(modules - names)
    # every file that a package-data pattern selects
    wanted = set()
    for package, patterns in package_data().items():
        base = src / package.replace(".", "/")
        for pattern in patterns:
            for path in base.glob(pattern):
                if path.is_file():
                    wanted.add(path.relative_to(src).as_posix())
    assert wanted <= names, f"package-data files missing from the wheel: {sorted(wanted - names)}"
    assert len(wanted) >= sum(len(p) for p in package_data().values())   # each pattern selected a file


SMOKE = r"""
import importlib.metadata as md, json, sys, torch
import vnca_tutorial
from vnca_tutorial import build_model, get_preset
cfg = get_preset("mnist_doubling_cpu").replace(z_dim=8, hidden=8, n_blocks=1, steps_per_stage=1,
                                               encoder_channels=4)
model = build_model(cfg)
x = (torch.rand(2, 1, 32, 32) > 0.5).float()
loss = model(x)
loss.backward()
elbo = model.elbo(x).elbo
import numpy as np
from vnca_tutorial.player import frames_to_html        # reads its player.html from the installed package
page = frames_to_html([np.zeros((4, 4, 3), np.uint8)], ["frame 0"])
scripts = {}
for e in md.distribution("vnca_tutorial").entry_points:
    if e.group == "console_scripts":
        try:
            scripts[e.name] = "callable" if callable(e.load()) else "not callable"
        except Exception as err:  # report, do not crash the smoke test
            scripts[e.name] = f"{type(err).__name__}: {err}"
print(json.dumps({
    "file": vnca_tutorial.__file__,
    "version": vnca_tutorial.__version__,
    "dist_version": md.version("vnca_tutorial"),
    "loss": loss.item(),
    "elbo_shape": list(elbo.shape),
    "sample_shape": list(model.sample(2).shape),
    "player_html": "vnca-animation-" in page and "frame 0" in page,
    "prefix": sys.prefix,
    "scripts": scripts,
}))
"""


@pytest.fixture(scope="module")
def smoke(installed, tmp_path_factory):
    """Run SMOKE with the fresh venv's python from a directory outside the repository."""
    _, python, _ = installed
    cwd = tmp_path_factory.mktemp("outside")
    out = run([str(python), "-c", SMOKE], cwd=cwd, env=clean_env(), timeout=180)
    return json.loads(out.strip().splitlines()[-1])


def test_installed_wheel_works_outside_the_repo(installed, smoke):
    _, python, _ = installed
    venv = python.parent.parent.resolve()
    assert Path(smoke["prefix"]).resolve() == venv
    package_file = Path(smoke["file"]).resolve()
    assert venv in package_file.parents, f"imported {package_file}, not the installed wheel"
    assert ROOT not in package_file.parents
    assert smoke["version"] == smoke["dist_version"] == PYPROJECT["project"]["version"]
    assert smoke["elbo_shape"] == [2] and smoke["sample_shape"] == [2, 1, 32, 32]
    assert smoke["player_html"]                       # the player template ships as package data
    assert math.isfinite(smoke["loss"])


def test_console_scripts_resolve(installed, smoke):
    _, python, _ = installed
    declared = PYPROJECT["project"].get("scripts", {})
    assert smoke["scripts"] == {name: "callable" for name in declared}
    for name in declared:
        assert (python.parent / name).is_file()


def test_the_working_tree_fits_what_a_gpu_run_carries():
    """The lent GPU machine receives a copy of the tracked files, at most 64 MiB in all (a run that needs a
    GPU must not find the tree too large): large files (resume points, weights) count against it."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist)")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    sizes = [(ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file()]
    assert sum(sizes) < 64 * 2 ** 20, f"{sum(sizes) / 2 ** 20:.1f} MiB tracked"
