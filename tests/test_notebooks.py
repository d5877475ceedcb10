"""Run every notebook of the book (_toc.yml) with papermill in FAST mode.

Each notebook runs in a temporary working folder with FAST=True injected into
its `parameters` cell, downloading through the CAMELS mirror served on
127.0.0.1 into an empty cache. A notebook test can only say that every cell
ran without error; the chapters' numbers are tested in the unit tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return files


NOTEBOOKS = [f for f in toc_files() if (REPO / f"{f}.ipynb").is_file()]


def test_toc_lists_existing_pages_and_some_notebooks():
    for entry in toc_files():
        assert any((REPO / f"{entry}{ext}").is_file() for ext in (".md", ".ipynb")), entry
    assert NOTEBOOKS, "no notebook in _toc.yml"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_committed_notebook_is_clean_and_parameterised(notebook):
    nb = nbformat.read(REPO / f"{notebook}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "EMUCAL_FAST" in code[0].source


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_in_fast_mode(notebook, tmp_path, monkeypatch, request):
    if os.environ.get("EMUCAL_MIRROR") is None:
        # Use the shared mirror when it exists; otherwise the notebooks fetch upstream.
        from conftest import SHARED_MIRROR

        if SHARED_MIRROR.is_dir():
            url = request.getfixturevalue("shared_mirror_url")
            monkeypatch.setenv("EMUCAL_MIRROR", url)
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EMUCAL_FAST", "1")
    out = tmp_path / Path(notebook).name
    papermill.execute_notebook(
        str(REPO / f"{notebook}.ipynb"), str(out.with_suffix(".ipynb")),
        parameters={"FAST": True}, cwd=str(tmp_path), kernel_name="python3",
        progress_bar=False,
    )
    executed = nbformat.read(out.with_suffix(".ipynb"), as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.notebooks
def test_the_binder_page_of_the_ensemble_explorer_runs(shared_mirror_url, tmp_path, monkeypatch):
    """book/ensemble_explorer.ipynb (chapter 8's Binder link, outside _toc.yml) in FAST mode: its last
    cell shows the app. book/explorer.ipynb, the other page, runs in Voila in test_explorer.py."""
    monkeypatch.setenv("EMUCAL_MIRROR", shared_mirror_url)
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EMUCAL_FAST", "1")
    papermill.execute_notebook(str(REPO / "book" / "ensemble_explorer.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"FAST": True}, cwd=str(tmp_path), kernel_name="python3",
                               progress_bar=False)
    last = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in last.outputs)
