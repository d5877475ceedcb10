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


def test_publishing_workflow_builds_the_full_book_with_cached_executions():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "publish.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job.get("steps", [])]
    script = "\n".join(s.get("run", "") for s in steps)
    # the workflow switches _config.yml from forced execution to jupyter-cache: the line it
    # rewrites must exist, or the published build would rerun every chapter every time
    assert "execute_notebooks: force" in (REPO / "_config.yml").read_text()
    assert "s/execute_notebooks: force/execute_notebooks: cache/" in script
    assert "EMUCAL_FAST=0" in script and "jupyter-book build" in script
    cached = [s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/cache")]
    assert any("_build/.jupyter_cache" in p for p in cached)
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in steps)
    # it publishes the repository the book names
    repo_url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    assert repo_url.startswith("https://github.com/")
