"""Build the whole book with Jupyter Book, strictly, in FAST mode.

Fails on any Sphinx warning (-W --keep-going) and on any notebook error
(execute.raise_on_error in _config.yml). The build runs in a temporary
output folder and downloads through the mirror served on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_notebooks import toc_files

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.book
def test_book_builds_without_warnings(tmp_path, request):
    from conftest import SHARED_MIRROR

    env = dict(__import__("os").environ)
    if "EMUCAL_MIRROR" not in env and SHARED_MIRROR.is_dir():
        env["EMUCAL_MIRROR"] = request.getfixturevalue("shared_mirror_url")
    env.update(EMUCAL_FAST="1", EMUCAL_DATA_DIR=str(tmp_path / "cache"))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(REPO), "--path-output", str(tmp_path),
         "-W", "--keep-going"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    log = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, log
    html = tmp_path / "_build" / "html"
    for page in toc_files():
        assert (html / f"{page}.html").is_file(), f"{page}.html missing\n{log}"
    api = (html / "book" / "api.html").read_text()
    for name in ["fetch", "load_basins", "attributes", "basin_map"]:
        assert f'id="emucal.' in api and name in api, name
    chapter = (html / "book" / "01_camels.html").read_text()
    assert chapter.count("<img") >= 4  # the chapter's figures are on the page
    assert "Traceback" not in chapter
