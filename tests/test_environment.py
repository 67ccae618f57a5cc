"""environment.yml must list every dependency of pyproject.toml with the same version constraints.

Covers the base dependencies and the `book` and `test` extras. Conda-forge spells two of them
differently (CONDA_NAMES). A constraint is compatible when every specifier pyproject.toml states
(e.g. ">=1.0" and "<2") also appears in environment.yml, which may add tighter ones of its own.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the `test` extra installs tomli there)
    import tomli as tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("book", "test")
ENV_PYTHON = "3.11"  # the Python environment.yml pins (test_environment_pins_env_python checks it)
CONDA_NAMES = {"torch": "pytorch", "build": "python-build"}  # PyPI name -> conda-forge name


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pyproject_requirements() -> dict[str, Requirement]:
    project = pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    reqs: dict[str, Requirement] = {}
    for line in lines:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"python_version": ENV_PYTHON}):
            continue  # not needed on environment.yml's Python (e.g. tomli before 3.11)
        name = canonicalize_name(req.name)
        if name in reqs and str(reqs[name].specifier) != str(req.specifier):
            pytest.fail(f"pyproject.toml lists {req.name} twice with different constraints: "
                        f"{reqs[name]} and {req}")
        reqs[name] = req
    return reqs


def conda_requirement(spec: str) -> Requirement:
    """Parse a conda match spec written in pip syntax; conda's 'name=X.Y' means '==X.Y.*'."""
    spec = spec.split("#")[0].strip()
    single_equals = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*=\s*([0-9][0-9A-Za-z.]*)", spec)
    if single_equals:
        spec = f"{single_equals[1]}=={single_equals[2]}.*"
    return Requirement(spec.replace(" ", ""))


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def conda_requirements() -> dict[str, Requirement]:
    reqs = {}
    for entry in environment()["dependencies"]:
        if isinstance(entry, str):
            req = conda_requirement(entry)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def pip_section() -> list[str]:
    for entry in environment()["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            return [str(line).split("#")[0].strip() for line in entry["pip"]]
    return []


def test_environment_uses_conda_forge():
    assert environment()["channels"][0] == "conda-forge"


def test_environment_installs_the_package():
    assert any(line in ("-e .", ".", "-e ./") for line in pip_section()), (
        "environment.yml's pip section must install this repository (\"-e .\")")


def test_python_version_allowed_by_pyproject():
    requires_python = SpecifierSet(pyproject()["project"]["requires-python"])
    python = conda_requirements()["python"]
    versions = [Version(f"3.{minor}") for minor in range(8, 20)]
    allowed_by_env = [v for v in versions if python.specifier.contains(v)]
    assert allowed_by_env, f"environment.yml allows no Python 3.x: {python}"
    assert all(requires_python.contains(v) for v in allowed_by_env), (
        f"environment.yml's {python} allows Pythons that pyproject.toml's requires-python "
        f"{requires_python} excludes")


@pytest.mark.parametrize("name", sorted(pyproject_requirements()))
def test_dependency_in_environment(name: str):
    req = pyproject_requirements()[name]
    conda_name = canonicalize_name(CONDA_NAMES.get(name, name))
    conda = conda_requirements()
    pip = {canonicalize_name(Requirement(line).name): Requirement(line)
           for line in pip_section() if line and not line.startswith(("-", "."))}
    found = conda.get(conda_name) or pip.get(name)
    assert found is not None, (
        f"pyproject.toml requires {req}, but environment.yml lists neither {conda_name} (conda-forge) "
        f"nor {name} (pip section)")
    missing = {str(s) for s in req.specifier} - {str(s) for s in found.specifier}
    assert not missing, (
        f"environment.yml has {found}, which lacks pyproject.toml's constraint(s) {sorted(missing)} "
        f"for {req}")


def test_environment_pins_env_python():
    assert conda_requirements()["python"].specifier.contains(ENV_PYTHON), (
        f"environment.yml's Python is not {ENV_PYTHON}: update ENV_PYTHON so the markers are read for it")
