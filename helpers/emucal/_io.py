"""Files that let ensembles and calibration loops resume: written atomically, checked when read."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import xarray as xr
# numpy and xarray load on first use: the `emucal` command (workshop.py) uses
# atomic_path and stays quick to start


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    The temporary name is unique (``.<name>.<random>.part``), so two
    processes writing the same file never write into each other's file; the
    last one to finish wins, whole. If the block raises, the temporary file
    is removed and ``path`` keeps what it had. The rename also breaks a hard
    link at ``path`` instead of writing through it into the linked file.

    Examples
    --------
    >>> with atomic_path("out.nc") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:16]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` through a unique temporary file and an atomic rename.

    An interrupted write leaves ``path`` as it was (see :func:`atomic_path`),
    which is what lets ensembles and calibration loops resume.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return path


def digest(array) -> str:
    """A short digest of an array, to tell checkpoints of different inputs apart."""
    import numpy as np

    array = np.ascontiguousarray(np.asarray(array, dtype=float))
    return hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]


def _settings_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def load_checkpoint(path, settings: dict) -> xr.Dataset | None:
    """The checkpoint at ``path`` if there is one, after checking it was written with ``settings``."""
    if path is None or not Path(path).exists():
        return None
    if Path(path).is_dir():
        raise ValueError(f"The checkpoint {path} is a folder; a checkpoint is one netCDF file, "
                         f"for example {Path(path) / 'loop.nc'}.")
    import xarray as xr

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
