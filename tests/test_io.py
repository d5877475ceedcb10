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
