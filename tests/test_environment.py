"""environment.yml (conda, Binder) must install what pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name


def _split(spec: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    name, bounds = match.group(1).lower(), match.group(2).replace(" ", "")
    return CONDA_NAMES.get(name, name), bounds


def _pyproject_specs() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    return dict(_split(s) for s in specs)


def _conda_specs() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    specs = [d for d in env["dependencies"] if isinstance(d, str)]
    return {name: bounds for name, bounds in map(_split, specs) if name not in ("python", "pip")}


def test_environment_yml_has_the_same_packages_and_bounds_as_pyproject():
    assert _conda_specs() == _pyproject_specs()


def test_environment_yml_uses_conda_forge_and_bounded_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    for name, bounds in _conda_specs().items():
        assert bounds.startswith(">="), f"{name} needs a lower bound"


def test_book_needs_jupyter_book_1():
    assert _pyproject_specs()["jupyter-book"] == ">=1.0.4.post1,<2"
