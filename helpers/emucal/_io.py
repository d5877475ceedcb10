"""Writing files so that a half-written one never replaces a good one."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` through ``path.part`` and an atomic rename.

    An interrupted write leaves at most a ``.part`` file beside the last good
    one, which is what lets ensembles and calibration loops resume.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)
    return path
