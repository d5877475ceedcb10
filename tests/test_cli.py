"""The emucal command line: fetch, mirror (round trip over HTTP), basins, errors."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import pandas as pd
import numpy as np
import pytest
import xarray as xr

import emucal.camels
import emucal.data
from conftest import NATURAL_EARTH, REPO, serve
from emucal import cli, plotting, workshop


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _load_everything():
    """What the notebooks read: attributes, the sample, and one basin of the full set."""
    emucal.camels._attributes_cached.cache_clear()
    return (emucal.camels.attributes(),
            emucal.camels.load_basins(),
            emucal.camels.load_basins(["03000003"], source="full"))


# -------------------------------------------------------------------- parser
def test_python_m_emucal_help_runs_in_a_fresh_interpreter():
    run = subprocess.run([sys.executable, "-m", "emucal", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: emucal")
    for word in ("fetch", "mirror", "basins", "EMUCAL_MIRROR", "EMUCAL_DATA_DIR"):
        assert word in run.stdout
    bad = subprocess.run([sys.executable, "-m", "emucal", "fetch", "--no-such-option"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--no-such-option" in bad.stderr


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["fetch", "--help"], 0),
    (["mirror", "--help"], 0),
    ([], 2),  # a command is required
    (["mirror"], 2),  # DIR is required
    (["fetch", "--forcing", "cru"], 2),
])
def test_main_returns_the_exit_status_instead_of_exiting(argv, code, capsys):
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    if code == 0:
        assert "usage: emucal" in out
    else:
        assert "usage: emucal" in err


def test_subcommand_help_documents_the_options(capsys):
    cli.main(["fetch", "--help"])
    fetch_help = capsys.readouterr().out
    for option in ("--basins", "--cache", "--forcing", "emucal basins --all"):
        assert option in fetch_help
    cli.main(["mirror", "--help"])
    mirror_help = capsys.readouterr().out
    for option in ("--full", "--natural-earth", "--copy", "3.4 GB", "http.server", "EMUCAL_MIRROR"):
        assert option in mirror_help


# --------------------------------------------------------------------- fetch
def test_fetch_puts_every_sample_file_in_the_cache_with_its_hash(synthetic, tmp_path, capsys):
    cache = tmp_path / "class-cache"
    assert cli.main(["fetch", "--cache", str(cache), "-q"]) == 0
    wanted = [n for n in synthetic.hashes if n != emucal.data.FULL_ZIP]
    for name in wanted:
        assert _sha256(cache / name) == synthetic.hashes[name], name
    assert not (cache / emucal.data.FULL_ZIP).exists()
    assert f"/{emucal.data.FULL_ZIP}" not in synthetic.server.requests_seen
    out = capsys.readouterr().out
    assert str(cache.resolve()) in out and f"{len(wanted)} files" in out
    assert os.environ["EMUCAL_DATA_DIR"] == str(synthetic.cache)  # --cache did not leak


def test_fetch_real_sample_is_the_attributes_and_19_basins(real_camels, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert cli.main(["fetch", "--cache", str(cache), "-q"]) == 0
    registry = emucal.data.registry()
    fetched = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()
                     and not p.name.startswith("."))
    assert fetched == sorted(n for n in registry if n != emucal.data.FULL_ZIP)
    assert len(fetched) == 7 + 2 * 19
    assert all(_sha256(cache / n) == registry[n] for n in fetched)
    for basin in emucal.camels.sample_basins():
        assert sum(basin in n for n in fetched) == 2
    assert "45 files" in capsys.readouterr().out


def test_fetch_basins_extracts_them_from_the_full_archive(synthetic, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    assert cli.main(["fetch", "--basins", "03000003", "1000001", "--cache", str(cache), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "%|" not in err  # -q: no progress bar, not even for the archive
    extracted = sorted(p.relative_to(cache / "camels_full").as_posix()
                       for p in (cache / "camels_full").rglob("*.txt"))
    root = "basin_dataset_public_v1p2"
    assert extracted == sorted([
        f"{root}/basin_mean_forcing/nldas/01/01000001_lump_nldas_forcing_leap.txt",
        f"{root}/basin_mean_forcing/nldas/03/03000003_lump_nldas_forcing_leap.txt",
        f"{root}/usgs_streamflow/01/01000001_streamflow_qc.txt",
        f"{root}/usgs_streamflow/03/03000003_streamflow_qc.txt",
    ])
    assert "01000001" in out and "03000003" in out and "source='full'" in out
    # everything load_basins(source="full") needs is now in the cache: it works offline
    monkeypatch.setenv("EMUCAL_MIRROR", _dead_url())
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(cache))
    emucal.camels._attributes_cached.cache_clear()
    ds = emucal.camels.load_basins(["03000003", "01000001"], source="full")
    assert list(ds.basin.values) == ["03000003", "01000001"]
    assert ds.qobs.notnull().sum() > 0


@pytest.mark.parametrize("ids, named", [
    (["01000001", "99999999"], "99999999"),
    (["01000001", "abc"], "abc"),
])
def test_unknown_basin_fails_with_status_2_before_the_big_download(synthetic, ids, named, capsys):
    assert cli.main(["fetch", "--basins", *ids, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emucal: error:")
    assert named in err and "emucal basins --all" in err
    assert f"/{emucal.data.FULL_ZIP}" not in synthetic.server.requests_seen


def test_fetch_forcing_without_basins_is_a_usage_error(synthetic, tmp_path, capsys):
    assert cli.main(["fetch", "--forcing", "daymet", "--cache", str(tmp_path / "c"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emucal: error: --forcing daymet") and "--basins" in err
    assert synthetic.server.requests_seen == []  # refused before anything is downloaded


def test_no_mirror_and_no_network_says_to_set_emucal_mirror(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(emucal.data, "RETRIES", 0)  # no retry wait: the host is unreachable
    monkeypatch.delenv("EMUCAL_MIRROR")  # the synthetic registry's upstream host does not resolve
    assert cli.main(["fetch", "--cache", str(tmp_path / "empty"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "Could not download" in err and "upstream.invalid" in err
    assert "Set EMUCAL_MIRROR=" in err and "emucal mirror" in err


def test_unreachable_mirror_names_the_mirror(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(emucal.data, "RETRIES", 0)  # no retry wait: the host is unreachable
    dead = _dead_url()
    monkeypatch.setenv("EMUCAL_MIRROR", dead)
    assert cli.main(["mirror", str(tmp_path / "m"), "--cache", str(tmp_path / "empty"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"EMUCAL_MIRROR is set to {dead}" in err and "running" in err


# -------------------------------------------------------------------- mirror
def test_mirror_served_over_http_gives_the_notebooks_the_same_data(synthetic, tmp_path, monkeypatch,
                                                                   capsys):
    expected = _load_everything()  # straight from the synthetic mirror
    folder = tmp_path / "workshop"
    assert cli.main(["mirror", str(folder), "--full", "--cache", str(tmp_path / "build"),
                     "-q", "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert f"python -m http.server 8123 --directory {folder.resolve()}" in out
    assert "export EMUCAL_MIRROR=http://" in out and ":8123" in out

    # the layout is <DIR>/<registry name>, byte for byte, plus a manifest
    for name in synthetic.hashes:
        assert (folder / name).read_bytes() == (synthetic.mirror / name).read_bytes(), name
    rows = [line.split("\t") for line in (folder / "MANIFEST.tsv").read_text().splitlines()[1:]]
    assert {r[0]: r[2] for r in rows} == synthetic.hashes
    assert all(int(r[1]) == (folder / r[0]).stat().st_size for r in rows)

    # a class: a fresh cache, EMUCAL_MIRROR pointing at the served folder
    with serve(folder) as (server, url):
        monkeypatch.setenv("EMUCAL_MIRROR", url)
        monkeypatch.setenv("EMUCAL_DATA_DIR", str(tmp_path / "student"))
        got = _load_everything()
    assert sorted(server.requests_seen) == sorted(f"/{n}" for n in synthetic.hashes)
    pd.testing.assert_frame_equal(got[0], expected[0])
    xr.testing.assert_identical(got[1], expected[1])
    xr.testing.assert_identical(got[2], expected[2])


def test_mirror_hard_links_from_the_cache_leaves_out_the_full_archive_and_can_copy(
        synthetic, tmp_path, capsys):
    cache = tmp_path / "cache"
    name = "camels_attributes_v2.0/camels_topo.txt"
    assert cli.main(["mirror", str(tmp_path / "linked"), "--cache", str(cache), "-q"]) == 0
    assert os.path.samefile(tmp_path / "linked" / name, cache / name)
    assert not (tmp_path / "linked" / emucal.data.FULL_ZIP).exists()
    assert "--full" in capsys.readouterr().out
    assert cli.main(["mirror", str(tmp_path / "copied"), "--cache", str(cache), "--copy", "-q"]) == 0
    assert not os.path.samefile(tmp_path / "copied" / name, cache / name)
    assert _sha256(tmp_path / "copied" / name) == synthetic.hashes[name]
    # running it again over an existing mirror is fine and changes nothing
    assert cli.main(["mirror", str(tmp_path / "linked"), "--cache", str(cache), "-q"]) == 0
    assert os.path.samefile(tmp_path / "linked" / name, cache / name)
    assert not list((tmp_path / "linked").rglob("*.part"))


def test_mirror_copy_over_a_linked_mirror_leaves_no_file_shared_with_the_cache(
        synthetic, tmp_path):
    cache, folder = tmp_path / "cache", tmp_path / "m"
    name = "camels_attributes_v2.0/camels_topo.txt"
    assert cli.main(["mirror", str(folder), "--cache", str(cache), "-q"]) == 0
    assert os.path.samefile(folder / name, cache / name)
    assert cli.main(["mirror", str(folder), "--cache", str(cache), "--copy", "-q"]) == 0
    copied = [p for p in folder.rglob("*.txt") if (cache / p.relative_to(folder)).is_file()]
    assert len(copied) > 1
    assert not any(os.path.samefile(p, cache / p.relative_to(folder)) for p in copied)
    assert _sha256(folder / name) == synthetic.hashes[name]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_mirror_port_outside_1_to_65535_is_a_usage_error_naming_it(synthetic, tmp_path, port,
                                                                  capsys):
    assert cli.main(["mirror", str(tmp_path / "m"), f"--port={port}", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"argument --port: '{port}' is not a port" in err and "1 to 65535" in err
    assert not (tmp_path / "m").exists() and synthetic.server.requests_seen == []


def test_mirror_into_a_file_is_a_usage_error(synthetic, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("")
    assert cli.main(["mirror", str(target), "-q"]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.fixture
def cartopy_offline(monkeypatch, tmp_path):
    """cartopy reading only the shared Natural Earth files; any download fails."""
    if not NATURAL_EARTH.is_dir():
        pytest.skip(f"needs the Natural Earth files at {NATURAL_EARTH}")
    import cartopy
    import cartopy.io

    def no_download(self, url):
        raise urllib.error.URLError(f"test: no network for {url}")

    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", NATURAL_EARTH)
    monkeypatch.setitem(cartopy.config, "data_dir", tmp_path / "cartopy-empty")
    monkeypatch.setattr(cartopy.io.Downloader, "_urlopen", no_download)
    return cartopy


def test_mirror_natural_earth_is_a_ready_cartopy_data_dir(synthetic, cartopy_offline, tmp_path,
                                                          monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emucal import plotting

    folder = tmp_path / "workshop"
    assert cli.main(["mirror", str(folder), "--natural-earth", "-q"]) == 0
    data_dir = folder / "natural_earth"
    shapefiles = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.shp")}
    assert shapefiles == {
        f"shapefiles/natural_earth/{category}/ne_{resolution}_{name}.shp"
        for resolution in plotting.NATURAL_EARTH_RESOLUTIONS
        for category, name in plotting.NATURAL_EARTH_FEATURES
    }
    with zipfile.ZipFile(folder / "natural_earth.zip") as zf:
        zipped = {n for n in zf.namelist() if not n.endswith("/")}
    assert zipped == {f"natural_earth/{p.relative_to(data_dir).as_posix()}"
                      for p in data_dir.rglob("*") if p.is_file()}

    # cartopy finds every layer in the copied folder alone, and the book's map draws from it
    monkeypatch.setitem(cartopy_offline.config, "pre_existing_data_dir", data_dir)
    from cartopy.io import shapereader

    for resolution in plotting.NATURAL_EARTH_RESOLUTIONS:
        for category, name in plotting.NATURAL_EARTH_FEATURES:
            found = Path(shapereader.natural_earth(resolution, category, name))
            assert found.is_relative_to(data_dir)
    ax = plotting.basin_map(pd.DataFrame({"gauge_lon": [-70.0, -100.0], "gauge_lat": [45.0, 40.0]},
                                         index=["01013500", "08013000"]), labels=True)
    assert sorted(t.get_text() for t in ax.texts) == ["01013500", "08013000"]
    ax.figure.canvas.draw()  # reads the shapefiles; a missing one would try to download and fail
    plt.close(ax.figure)
    # colour map through the scatter keywords, sizes spread over SIZE_RANGE, 50m on request
    monkeypatch.setattr(plotting, "MAP_RESOLUTION", "50m")
    three = pd.DataFrame({"gauge_lon": [-70.0, -100.0, -90.0], "gauge_lat": [45.0, 40.0, 35.0]})
    ax = plotting.basin_map(three, color=[0.1, 0.5, 0.9], size=[10.0, 20.0, 30.0], cmap="RdBu")
    points = next(c for c in ax.collections if len(c.get_offsets()) == 3)
    assert points.get_cmap().name == "RdBu"
    np.testing.assert_allclose(points.get_sizes(), [plotting.SIZE_RANGE[0], np.mean(plotting.SIZE_RANGE),
                                                    plotting.SIZE_RANGE[1]])
    plt.close(ax.figure)  # not drawn: the loop above found its 50m layers in the folder
    # values labelled by basin are matched to attrs' rows by id, whatever their order
    by_id = pd.Series([0.9, 0.1, 0.5], index=[2, 0, 1])
    ax = plotting.basin_map(three, color=by_id, size=xr.DataArray([30.0, 10.0, 20.0], dims="basin",
                                                                  coords={"basin": ["2", "0", "1"]}))
    points = next(c for c in ax.collections if len(c.get_offsets()) == 3)
    np.testing.assert_allclose(points.get_array(), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(points.get_sizes(), [plotting.SIZE_RANGE[0], np.mean(plotting.SIZE_RANGE),
                                                    plotting.SIZE_RANGE[1]])
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"no value for basin\(s\) \['1'\]"):
        plotting.basin_map(three, color=by_id.iloc[:2])
    # a Series of values by position (a RangeIndex) is told how to pass them in attrs' order
    with pytest.raises(ValueError, match=r"color\.to_numpy\(\) for values already in attrs' order"):
        plotting.basin_map(three.set_axis(["01013500", "01022500", "08013000"]),
                           color=pd.Series([0.1, 0.5, 0.9]))
    with pytest.raises(ValueError, match="2 values for 3 basins"):
        plotting.basin_map(three, size=[1.0, 2.0])
    monkeypatch.setattr(plotting, "MAP_RESOLUTION", "10m")
    with pytest.raises(ValueError, match="MAP_RESOLUTION must be one of"):
        plotting.basin_map(three)
    monkeypatch.setattr(plotting, "MAP_RESOLUTION", "110m")
    with pytest.raises(ValueError, match="gauge_lon and gauge_lat"):
        plotting.basin_map(three.rename(columns={"gauge_lat": "lat"}))


def test_mirror_natural_earth_missing_without_network_is_explained(synthetic, cartopy_offline,
                                                                   tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cartopy_offline.config, "pre_existing_data_dir", tmp_path / "nothing")
    assert cli.main(["mirror", str(tmp_path / "m"), "--natural-earth", "-q"]) == 1
    err = capsys.readouterr().err
    assert "Natural Earth 110m" in err and "CARTOPY_DATA_DIR" in err and "--natural-earth" in err


# -------------------------------------------------------------------- basins
def test_basins_lists_the_sample_without_downloading_and_all_with_all(synthetic, capsys):
    assert cli.main(["basins"]) == 0
    assert capsys.readouterr().out.split() == synthetic.sample
    assert synthetic.server.requests_seen == []
    assert cli.main(["basins", "--all", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["01000001", "02000002", "03000003"]
    assert lines[2].split("\t")[1] == "03"


# ---------------------------------------------------------------------- handout
def _nb(*cells):
    return {"cells": [{"cell_type": kind, "metadata": {}, "source": src,
                       **({"outputs": [{"output_type": "stream", "name": "stdout", "text": "x"}],
                           "execution_count": 3} if kind == "code" else {})} for kind, src in cells],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_strip_solutions_removes_prose_and_code_between_the_markers():
    nb = _nb(("markdown", "Intro\n\n:::{exercise}\n:label: ex-a\n\nDo A.\n:::\n\n"
                          ":::{solution-start} ex-a\n:class: dropdown\n:::"),
             ("code", "answer_a = 42"),
             ("markdown", "Because 42.\n\n:::{solution-end}\n:::\n\n:::{exercise}\n:label: ex-b\n\nDo B.\n:::\n\n"
                          ":::{solution-start} ex-b\n:class: dropdown\n:::\n\nSay B.\n\n:::{solution-end}\n:::"),
             ("code", "print('after')"))
    out, removed = workshop.strip_solutions(nb)
    assert removed == 2
    text = json.dumps(out)
    assert "answer_a" not in text and "Because 42" not in text and "Say B" not in text
    assert "Do A." in text and "Do B." in text and "print('after')" in text
    assert text.count("The solution is in the book") == 2
    assert [c["cell_type"] for c in out["cells"]] == ["markdown", "markdown", "code"]
    assert out["cells"][-1]["outputs"] == [] and out["cells"][-1]["execution_count"] is None
    with pytest.raises(ValueError, match="solution-end"):
        workshop.strip_solutions(_nb(("markdown", ":::{solution-start} ex-a\n:::"), ("code", "x = 1")))


def test_handout_of_the_book_keeps_every_exercise_and_no_solution(tmp_path, capsys):
    chapters = sorted((REPO / "book").glob("0*.ipynb"))
    assert cli.main(["handout", str(tmp_path), *map(str, chapters)]) == 0
    for chapter in chapters:
        original = chapter.read_text()
        handout = (tmp_path / chapter.name).read_text()
        n_exercises = original.count(":::{exercise}")
        assert n_exercises >= 2 and handout.count(":::{exercise}") == n_exercises
        assert "solution-start" not in handout and "solution-end" not in handout
        assert handout.count("The solution is in the book") == original.count(":::{solution-start}")
        nb = json.loads(handout)
        assert len(nb["cells"]) < len(json.loads(original)["cells"])
    assert "solutions removed" in capsys.readouterr().out
    assert cli.main(["handout", str(tmp_path), "no-such.ipynb"]) == 2


def test_handout_never_writes_over_its_inputs(tmp_path, capsys):
    source = REPO / "book" / "02_parameters_sampling.ipynb"
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    before = copy.read_bytes()
    assert cli.main(["handout", str(tmp_path), str(copy)]) == 2
    assert copy.read_bytes() == before  # solutions still there
    assert "would overwrite a notebook given as input" in capsys.readouterr().err
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert cli.main(["handout", str(tmp_path / "out"), str(broken)]) == 2
    assert str(broken) in capsys.readouterr().err


def test_handout_keeps_a_participants_copy_unless_overwrite_and_never_writes_through_a_link(
        tmp_path, capsys):
    book = tmp_path / "book"
    book.mkdir()
    source = book / "02_parameters_sampling.ipynb"
    source.write_bytes((REPO / "book" / source.name).read_bytes())
    before = source.read_bytes()
    out = tmp_path / "handouts"
    edited = out / source.name
    out.mkdir()
    edited.write_text("a participant's work")
    assert cli.main(["handout", str(out), str(source)]) == 2
    err = capsys.readouterr().err
    assert str(edited) in err and "--overwrite" in err
    assert edited.read_text() == "a participant's work"
    # a handout folder made with hard links (cp -al) shares the source's file
    edited.unlink()
    os.link(source, edited)
    assert cli.main(["handout", str(out), str(source), "--overwrite"]) == 0
    assert source.read_bytes() == before  # the book keeps its solutions
    assert "solution-start" not in edited.read_text()
    assert not os.path.samefile(source, edited)
    assert sorted(p.name for p in out.iterdir()) == [source.name]  # no temporary file left


def test_mirror_files_are_readable_by_everyone(synthetic, tmp_path):
    cache = tmp_path / "cache"
    assert cli.main(["mirror", str(tmp_path / "m"), "--cache", str(cache), "-q"]) == 0
    for path in (tmp_path / "m").rglob("*.txt"):
        assert path.stat().st_mode & 0o444 == 0o444, path
