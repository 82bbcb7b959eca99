"""The install story: pyproject.toml and environment.yml name the same dependencies,
and the torch pair that installs offline here satisfies the pyproject ranges."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# conda-forge/pytorch names that differ from PyPI's.
CONDA_TO_PYPI = {"pytorch": "torch"}


def _pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {r.name.lower(): r for r in reqs}


def _environment_requirements() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: dict[str, Requirement] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            entries = [p for p in dep.get("pip", []) if not p.startswith("-e")]
        elif dep.startswith(("python=", "pip")) and not dep.startswith("pip:"):
            continue
        else:
            entries = [dep]
        for entry in entries:
            name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", entry).groups()
            name = CONDA_TO_PYPI.get(name.lower(), name.lower())
            found[name] = Requirement(name + spec)
    return found


def test_environment_and_pyproject_name_the_same_dependencies():
    pyproject = _pyproject_requirements()
    environment = _environment_requirements()
    assert sorted(pyproject) == sorted(environment), (
        f"only in pyproject.toml: {sorted(set(pyproject) - set(environment))}; "
        f"only in environment.yml: {sorted(set(environment) - set(pyproject))}"
    )
    for name, req in pyproject.items():
        assert req.specifier == environment[name].specifier, f"{name}: {req.specifier} vs {environment[name].specifier}"


@pytest.mark.parametrize("name, version", [("torch", "2.14.1"), ("torchvision", "0.29.1")])
def test_offline_torch_pair_satisfies_the_ranges(name, version):
    assert Version(version) in _pyproject_requirements()[name].specifier


def test_console_scripts_point_at_click_groups():
    import importlib

    import click

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(scripts) == ["extract", "features", "manifests", "train"]
    for target in scripts.values():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), click.Group)


def test_the_packages_win_over_folders_of_their_name_where_python_runs(tmp_path):
    """The demo writes demo/features/: Python started in demo/ must still import the package, not that folder."""
    import subprocess
    import sys

    for name in ("features", "train", "extract", "manifests"):
        (tmp_path / name).mkdir()
    code = "import features, train.cli, extract.pipeline, manifests; print(features.open_store.__module__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, "features.store"), result.stderr
