"""emucal._io: atomic writes that leave the last good file whole."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from emucal import _io


def test_writers_of_one_file_use_their_own_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "chunk_00000.nc"
    # another process's write in progress under the name every writer used to share
    other = tmp_path / "chunk_00000.nc.part"
    other.write_bytes(b"CDF\x01 half written")
    ds = xr.Dataset({"q": ("t", np.arange(3.0))})
    used = []
    replace = _io.os.replace
    monkeypatch.setattr(_io.os, "replace", lambda src, dst: (used.append(src), replace(src, dst)))
    _io.write_netcdf_atomic(ds, path)
    _io.write_netcdf_atomic(ds, path)
    assert other.read_bytes() == b"CDF\x01 half written"  # the other writer's file is untouched
    assert len(set(used)) == 2 and path not in used
    with xr.open_dataset(path) as got:
        xr.testing.assert_identical(got.load(), ds)


def test_a_failed_write_keeps_the_last_good_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.txt"
    path.write_text("good")
    with pytest.raises(RuntimeError):
        with _io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.txt"]


def test_handouts_and_mirrors_that_would_leak_or_fail_are_refused(tmp_path):
    # issue 30 (emucal.workshop writers): a solution in a backtick fence or with a space
    # before the brace went into the handout; a mirror served a file that fails its hash
    import json

    from emucal import data, workshop

    for start, end in (("````{solution-start} ex\n````", "````{solution-end}\n````"),
                       ("::: {solution-start} ex\n:::", "::: {solution-end}\n:::")):
        nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": start},
            {"cell_type": "code", "metadata": {}, "source": "secret = 1", "outputs": [],
             "execution_count": None},
            {"cell_type": "markdown", "metadata": {}, "source": end},
            {"cell_type": "code", "metadata": {}, "source": "keep = 2", "outputs": [],
             "execution_count": None}]}
        out, removed = workshop.strip_solutions(nb)
        assert removed == 1 and "secret" not in json.dumps(out) and "keep = 2" in json.dumps(out)
    source = tmp_path / "ch.ipynb"
    source.write_text(json.dumps(nb))
    assert list(workshop.write_handouts(tmp_path / "h", source)) == [tmp_path / "h" / "ch.ipynb"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        workshop.write_handouts(tmp_path / "file", [source])
    name = sorted(data.registry())[0]
    with pytest.raises(ValueError, match="has sha256 .* the registry"):
        workshop.mirror(tmp_path / "m", {name: source}, progress=False)
    assert not (tmp_path / "m" / workshop.MANIFEST).exists()
    with pytest.raises(KeyError, match="not registry names"):
        workshop.mirror(tmp_path / "m", {"nope.txt": source}, progress=False)
