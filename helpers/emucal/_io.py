"""Files that let ensembles and calibration loops resume: written atomically, checked when read."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
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


def digest(array) -> str:
    """A short digest of an array, to tell checkpoints of different inputs apart."""
    array = np.ascontiguousarray(np.asarray(array, dtype=float))
    return hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]


def _settings_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def load_checkpoint(path, settings: dict) -> xr.Dataset | None:
    """The checkpoint at ``path`` if there is one, after checking it was written with ``settings``."""
    if path is None or not Path(path).exists():
        return None
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"The checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                         "it is damaged or not a checkpoint. Delete it to start again.") from err
    found = ds.attrs.get("emucal_settings")
    if found != _settings_json(settings):
        raise ValueError(
            f"The checkpoint {path} was written by a run with other settings:\n  {found}\n"
            f"this run has\n  {_settings_json(settings)}\n"
            "Delete the file to start again, or pass another checkpoint path.")
    return ds


def save_checkpoint(ds: xr.Dataset, path, settings: dict) -> None:
    """Write ``ds`` with its ``settings`` to ``path`` atomically; nothing when ``path`` is None."""
    if path is None:
        return
    ds = ds.copy()
    ds.attrs["emucal_settings"] = _settings_json(settings)
    write_netcdf_atomic(ds, path)
