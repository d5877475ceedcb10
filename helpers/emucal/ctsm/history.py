r"""Reading the daily history files of a CTSM ensemble back.

The second end of a CTSM ensemble (the first is :mod:`emucal.ctsm.members`);
:func:`read_history` and :func:`incomplete_members` are introduced in
:mod:`emucal.ctsm`.

History files and CTSM's time stamps
------------------------------------
With ``hist_nhtfrq = 0, -24`` in ``user_nl_clm`` CTSM writes daily means to
the second history tape, files ``CASE.clm2.h1.YYYY-MM-DD-SSSSS.nc``
(``CASE.clm2.h1a.*.nc`` from ctsm5.3.062 on, ``a`` for averages). Fluxes such
as ``QRUNOFF`` are in mm/s (kg m-2 s-1). Where an averaged record is stamped
depends on the version: up to ctsm5.3.017 its ``time`` is the *end* of the
averaging interval (the mean of 1 October 1994 is stamped ``1994-10-02
00:00``); from ctsm5.3.018 on it is the *middle* of the interval
(``1994-10-01 12:00``; ``doc/ChangeLog``: "Change history time to be the
middle of the time bounds"). :func:`read_history` handles both: it decodes
``time`` and ``time_bounds`` in the file's calendar with cftime
(``cftime.num2date``) and labels each daily mean with the day it averages:
the day of the lower edge of ``time_bounds`` where the file has it, otherwise
the first day that ends at or after the stamp (the day before a stamp at
midnight, the stamp's own day at noon), which is the right day for either
stamp. CTSM's default calendar is ``noleap``: its output has no 29 February,
and those days are NaN, like any other missing day, when the result is
aligned with observations. ``gregorian`` output (also ``standard`` and
``proleptic_gregorian``) is read as proleptic Gregorian; other calendars and
time units other than ``days since ...`` are refused.

References
----------
Lawrence, D. M. et al. (2019), The Community Land Model version 5, J. Adv.
Model. Earth Syst. 11, 4245-4287 (history fields).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import cftime
import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from .members import _FILL_LIMIT

__all__ = ["HISTORY_VARIABLES", "read_history", "incomplete_members"]

#: CTSM history fields :func:`read_history` reads: CTSM name -> (name in the
#: result, long name). All are water fluxes in mm/s in the files and mm/day
#: in the result.
HISTORY_VARIABLES = {
    "QRUNOFF": ("qsim", "total liquid runoff, not including correction for land use change"),
    "QOVER": ("qover", "total surface runoff (includes QH2OSFC)"),
    "QDRAI": ("qdrai", "sub-surface drainage"),
    "QDRAI_PERCH": ("qdrai_perch", "perched water table drainage"),
    "QRGWL": ("qrgwl", "surface runoff at glaciers (liquid only), wetlands, lakes"),
    "QVEGE": ("qvege", "canopy evaporation"),
    "QVEGT": ("qvegt", "canopy transpiration"),
    "QSOIL": ("qsoil", "ground evaporation (soil/snow evaporation + soil/snow sublimation - dew)"),
}

_SECONDS_PER_DAY = 86400.0
_FLUX_UNITS = {"mm/s", "mms-1", "mm/sec", "kg/m2/s", "kgm-2s-1", "kg/m2s", "kg/(m2s)"}


# ================================================================= read back
# The calendars of CTSM's output and how cftime decodes them. ``noleap`` is
# CTSM's default; the Gregorian names are read as proleptic Gregorian (as
# pandas dates are), so a date before 1582 is not shifted to Julian.
_CALENDARS = {"noleap": "noleap", "365_day": "noleap", "standard": "proleptic_gregorian",
              "gregorian": "proleptic_gregorian", "proleptic_gregorian": "proleptic_gregorian"}
_TOLERANCE = 1e-6  # days (0.09 s): a time this close to midnight counts as midnight


def _decode(values: np.ndarray, units: str, calendar: str) -> np.ndarray:
    """CF times ``days since ...`` in a CTSM calendar -> cftime datetimes."""
    if not re.match(r"\s*days\s+since\s+(\d{1,4})-(\d{1,2})-(\d{1,2})", units):
        raise ValueError(f"Time units {units!r} are not 'days since YYYY-MM-DD ...'.")
    calendar = (calendar or "standard").lower()
    if calendar not in _CALENDARS:
        raise ValueError(f"Calendar {calendar!r} is not supported; CTSM writes 'noleap' "
                         "(the default) or 'gregorian'.")
    return np.atleast_1d(cftime.num2date(values, units, _CALENDARS[calendar]))


def _dates(days) -> pd.DatetimeIndex:
    """cftime datetimes -> their dates (time of day dropped) as pandas dates.

    A ``noleap`` date is the Gregorian date of the same year, month and day.
    """
    years, months, dom = (np.array([getattr(d, f) for d in days], dtype=np.int64)
                          for f in ("year", "month", "day"))
    if years.size and (years.min() < 1678 or years.max() > 2261):
        raise ValueError(
            f"The history holds model years {years.min()} to {years.max()}; emucal compares "
            "simulated with observed flow on calendar dates, which it can represent for years "
            "1678 to 2261 only. A spin-up that counts years from 0001 cannot be matched to "
            "observations: read the runs whose RUN_STARTDATE is a real date.")
    dates = ((years - 1970).astype("datetime64[Y]").astype("datetime64[M]")
             + (months - 1).astype("timedelta64[M]")).astype("datetime64[D]") \
        + (dom - 1).astype("timedelta64[D]")
    return pd.DatetimeIndex(dates.astype("datetime64[ns]"))


def _as_float(var) -> np.ndarray:
    """A netCDF4 variable as float64 with fill values as NaN."""
    return np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan)


def _history_days(nc, path: Path) -> pd.DatetimeIndex:
    """The day each record of a daily history file averages (see the module docstring)."""
    time = nc.variables["time"]
    units = str(getattr(time, "units", ""))
    calendar = str(getattr(time, "calendar", "standard"))
    t = _as_float(time)
    names = (getattr(time, "bounds", None), "time_bounds", "time_bnds")
    bounds = next((b for b in names if b and b in nc.variables), None)
    if bounds is not None:
        b = _as_float(nc.variables[bounds]).reshape(-1, 2)
        width = b[:, 1] - b[:, 0]
        empty = ~(np.abs(width) > 1e-9)  # 0 or NaN: what the unwritten end of a file reads as
        if empty.any():
            raise ValueError(f"{path}: {int(empty.sum())} of {len(width)} records have no time "
                             f"interval ({bounds} is 0 or missing there): the file is damaged or "
                             "was cut short while the run wrote it. Run that member again (or "
                             "delete the file) and read again.")
        if np.any(np.abs(width - 1.0) > 1e-3):
            raise ValueError(f"{path}: read_history reads daily means (hist_nhtfrq = -24), but "
                             f"this file averages over {np.unique(np.round(width, 3))} days.")
        # the day in which the interval starts
        return _dates(_decode(b[:, 0] + _TOLERANCE, units, calendar))
    if t.size > 1 and np.any(np.abs(np.diff(t) - 1.0) > 1e-3):
        raise ValueError(f"{path}: read_history reads daily means (hist_nhtfrq = -24), but "
                         "the records of this file are not one day apart.")
    # the first day that ends at or after the stamp: the day before a stamp at
    # midnight (end of the interval), the stamp's own day otherwise (its middle)
    stamps = _decode(t - _TOLERANCE, units, calendar)
    return _dates([s - _dt.timedelta(days=1)
                   if (s.hour, s.minute, s.second, s.microsecond) == (0, 0, 0, 0) else s
                   for s in stamps])


def _find_history(spec, tape: str) -> list[Path]:
    """History files for one (member, basin): a file, a glob, or a folder to search."""
    path = Path(str(spec)).expanduser()
    parts, k = path.parts, 0
    while k < len(parts) and Path(*parts[:k + 1]).exists():
        k += 1  # the leading part that exists is literal, '[' in a folder name included
    if k < len(parts):
        return sorted(Path(*parts[:k]).glob(str(Path(*parts[k:]))))
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    patterns = [f"*.clm2.{tape}.*.nc"] + ([f"*.clm2.{tape}a.*.nc"] if tape[-1].isdigit() else [])
    for folder in (path, path / "lnd" / "hist", path / "run"):
        found = sorted({f for pattern in patterns for f in folder.glob(pattern)})
        if found:
            return found
    return []


def _flux_factor(var, path: Path) -> float:
    """Factor from the units of a CTSM water flux to mm/day."""
    units = str(getattr(var, "units", ""))
    key = units.replace(" ", "").replace("^", "").replace("**", "").lower()
    if key not in _FLUX_UNITS:
        raise ValueError(f"{path}: {var.name} has units {units!r}; read_history expects a water "
                         "flux in mm/s (kg m-2 s-1), as CTSM writes it.")
    return _SECONDS_PER_DAY


def _weights(nc, space_dims: tuple[str, ...]) -> np.ndarray | None:
    """Gridcell weights area x landfrac, when the file has them on ``space_dims``."""
    if "area" not in nc.variables or nc.variables["area"].dimensions != space_dims:
        return None
    w = _as_float(nc.variables["area"])
    if "landfrac" in nc.variables and nc.variables["landfrac"].dimensions == space_dims:
        w = w * _as_float(nc.variables["landfrac"])
    return w.reshape(-1)


def _basin_mean(var, nc, path: Path) -> np.ndarray:
    """Daily basin means of one field: over its gridcells, area x landfrac weighted if known."""
    dims = var.dimensions
    if not dims or dims[0] != "time":
        raise ValueError(f"{path}: {var.name} has dimensions {dims}; expected time first.")
    bad = [d for d in dims if d in ("pft", "column", "landunit")]
    if bad:
        raise ValueError(f"{path}: {var.name} is on {bad}; write gridcell averages "
                         "(hist_dov2xy = .true., the default).")
    x = _as_float(var).reshape(var.shape[0], -1) * _flux_factor(var, path)
    w = _weights(nc, dims[1:])
    if w is None or w.size != x.shape[1]:
        w = np.ones(x.shape[1])
    w = np.where(np.isfinite(w) & (np.abs(w) < _FILL_LIMIT), w, 0.0)
    ok = np.isfinite(x) & (np.abs(x) < _FILL_LIMIT * _SECONDS_PER_DAY) & (w[None, :] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, x * w, 0.0).sum(1) / np.where(ok, w, 0.0).sum(1)


def _read_files(files: list[Path], names: list[str], required: bool) -> tuple[dict, dict, pd.Series]:
    """Daily series {CTSM name: Series (mm/day)}, long names and {day: file name} of one run.

    Files are read in name order (chronological for CTSM's names); a day in
    two files (a run restarted over old output) keeps the later file's value.
    """
    series: dict[str, list[pd.Series]] = {n: [] for n in names}
    long_names: dict[str, str] = {}
    origin = [pd.Series(dtype=object)]
    for path in files:
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_mask(True)
            if "time" not in nc.variables or nc.variables["time"].shape[0] == 0:
                continue
            days = _history_days(nc, path)
            origin.append(pd.Series(path.name, index=days))
            for name in names:
                if name not in nc.variables:
                    if required:
                        raise KeyError(f"{path} has no {name}; add it to the history tape "
                                       "(hist_fincl2) or leave it out of variables.")
                    continue
                var = nc.variables[name]
                series[name].append(pd.Series(_basin_mean(var, nc, path), index=days))
                long_names.setdefault(name, str(getattr(var, "long_name", "")))
    out = {}
    for name, parts in series.items():
        if parts:
            s = pd.concat(parts)
            out[name] = s[~s.index.duplicated(keep="last")].sort_index()
    origin = pd.concat(origin)
    return out, long_names, origin[~origin.index.duplicated(keep="last")].sort_index()


def _one_case(files: list[Path], key: tuple[int, str], spec) -> None:
    """Refuse the history files of more than one case for one run (their days would mix)."""
    cases = sorted({f.name.split(".clm2.")[0] for f in files if ".clm2." in f.name})
    if len(cases) > 1:
        raise ValueError(f"{spec} holds the history files of {len(cases)} cases {cases[:4]} for run "
                         f"{key[0]}:{key[1]} (member:basin); one run's days would be taken from "
                         "another. Give each run the folder or glob of its own case.")


def _gaps(lost: pd.DatetimeIndex, expected: pd.DatetimeIndex, origin: pd.Series) -> str:
    """The runs of missing days of one run, each with the history files around it."""
    runs = np.split(np.arange(len(lost)), np.flatnonzero(np.diff(expected.get_indexer(lost)) != 1) + 1)
    text = []
    for run in runs[:5]:
        a, z = lost[run[0]], lost[run[-1]]
        near = [*origin[origin.index < a].iloc[-1:], *origin[origin.index > z].iloc[:1]]
        where = ("inside " if len(set(near)) < len(near) else "between " if len(near) == 2
                 else "after " if origin.index[0] < a else "before ") + " and ".join(dict.fromkeys(near))
        text.append(f"{a:%Y-%m-%d}" + (f" to {z:%Y-%m-%d} " if z != a else " ") + where)
    return "; ".join(text) + (f"; ... ({len(runs) - 5} more gaps)" if len(runs) > 5 else "")


def _basin_id(basin) -> str:
    if not isinstance(basin, str):
        raise TypeError(f"basin {basin!r} must be a string, e.g. '01013500': as a number the "
                        "leading zero of a USGS id is lost and the runs match no observations.")
    return basin


def _normalise_cases(cases, basin) -> dict[tuple[int, str], object]:
    if isinstance(cases, Mapping):
        keys = list(cases)
        if keys and all(isinstance(k, tuple) and len(k) == 2 for k in keys):
            if basin is not None:
                raise ValueError("Give basin= only when the keys of cases are members, "
                                 "not (member, basin) pairs.")
            return {(int(m), _basin_id(b)): v for (m, b), v in cases.items()}
        if basin is None:
            raise ValueError("cases maps members to paths: also give basin=..., or use "
                             "(member, basin) keys.")
        return {(int(m), _basin_id(basin)): v for m, v in cases.items()}
    if isinstance(cases, (str, os.PathLike)):
        raise TypeError("cases must be a mapping or a list of paths, not one path; e.g. "
                        "read_history([path], basin='01013500').")
    if basin is None:
        raise ValueError("A list of paths needs basin=... (members are numbered 0, 1, ...).")
    return {(i, _basin_id(basin)): v for i, v in enumerate(cases)}


def read_history(
    cases,
    *,
    basin: str | None = None,
    variables: Sequence[str] | None = None,
    tape: str = "h1",
    start=None,
    end=None,
) -> xr.Dataset:
    """Read CTSM daily history files of an ensemble into ``(member, basin, time)``.

    Parameters
    ----------
    cases
        Where each run's history files are. Either a mapping
        ``{(member, basin): location}``, or ``{member: location}`` or a list
        of locations (members 0, 1, ...) together with ``basin``. A location
        is a history file, a glob pattern (``".../lnd/hist/*.clm2.h1*.nc"``),
        or a folder: the folder itself, its ``lnd/hist`` (a CIME archive
        folder, ``DOUT_S_ROOT``) and its ``run`` folder are searched, in that
        order, for ``*.clm2.<tape>.*.nc`` and ``*.clm2.<tape>a.*.nc`` (the
        naming from ctsm5.3.062 on). A location with no files is a missing
        member, not an error.
    basin
        The basin of all runs, when ``cases`` does not give (member, basin)
        pairs.
    variables
        CTSM fields to read (keys of :data:`HISTORY_VARIABLES`). Default:
        ``QRUNOFF`` plus whichever of the others the files have. Named
        fields must be in every file.
    tape
        The history tape with the daily means: ``"h1"`` (also matches
        ``h1a``), or e.g. ``"h2"``.
    start, end
        First and last day to return (anything pandas reads as a date).
        A run is complete when it has every day between them (but 29
        February when no run has one, as in CTSM's ``noleap`` calendar);
        default: the first and last day that any run of the basin has. Members
        that start from a restart file spun up with the base case's
        parameters (``finidat``) spend their first months moving their
        water stores towards their own parameters: set ``start`` a year
        after the runs' ``RUN_STARTDATE`` to leave that year out, as Tang et
        al. did (``ignore_month = 12`` in their case configuration,
        NCAR/CTSM_calibration ``create_CAMELS_config_MOASMO_bigrange.py``).

    Returns
    -------
    xarray.Dataset
        ``qsim`` (from ``QRUNOFF``) and the other fields under the names of
        :data:`HISTORY_VARIABLES` (``qover``, ``qdrai``, ...), plus ``et =
        qvege + qvegt + qsoil`` when all three are read; each ``(member,
        basin, time)`` in mm/day, NaN where a run has no value. ``time`` is
        the day each mean covers (see the module docstring). ``days_read``
        ``(member, basin)`` counts the days found; ``attrs["missing"]`` and
        ``attrs["incomplete"]`` list the runs with no files and with fewer
        days than their basin's period: a missing history file, days missing
        inside a file, a run stopped early (each gap named with its dates and
        the files around it; also by a warning and by
        :func:`incomplete_members`).

    Raises
    ------
    FileNotFoundError
        When no run has any history file.
    ValueError
        For files that are not daily means, fluxes not in mm/s, or output on
        PFTs or columns; for two runs given the same files, one location
        holding the files of several cases, or ``start`` after ``end``.
    TypeError
        For a basin id that is not a string (``1013500`` for ``"01013500"``).

    Warns
    -----
    UserWarning
        Naming the missing and incomplete runs.

    Examples
    --------
    >>> plan = prepare_ensemble(...)  # doctest: +SKIP
    >>> flows = read_history({(m, "01013500"): f"{folder}/archive"
    ...                       for m, folder in plan.folder.items()})  # doctest: +SKIP
    >>> metrics.kge_prime(flows.qsim, qobs)  # doctest: +SKIP
    """
    runs = _normalise_cases(cases, basin)
    if not runs:
        raise ValueError("cases is empty.")
    if isinstance(variables, str):
        variables = [variables]
    lo = pd.Timestamp(start) if start is not None else None
    hi = pd.Timestamp(end) if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"start {lo:%Y-%m-%d} is after end {hi:%Y-%m-%d}.")
    unknown = [v for v in (variables or []) if v not in HISTORY_VARIABLES]
    if unknown:
        raise ValueError(f"Unknown variables {unknown}; choose from {list(HISTORY_VARIABLES)}.")
    names = list(variables) if variables else list(HISTORY_VARIABLES)
    required = variables is not None

    data: dict[tuple[int, str], dict[str, pd.Series]] = {}
    long_names: dict[str, str] = {}
    origins: dict[tuple[int, str], pd.Series] = {}
    seen: dict[tuple, tuple[int, str]] = {}
    for key, spec in runs.items():
        files = _find_history(spec, tape)
        _one_case(files, key, spec)
        if files and tuple(files) in seen:
            raise ValueError(f"Runs {seen[tuple(files)][0]}:{seen[tuple(files)][1]} and {key[0]}:{key[1]} "
                             f"(member:basin) have the same history files ({spec}); give each run "
                             "its own location.")
        seen.setdefault(tuple(files), key)
        series, names_found, origins[key] = _read_files(files, names, required)
        if files and "QRUNOFF" not in series and "QRUNOFF" in names:
            raise KeyError(f"The history files of member {key[0]}, basin {key[1]} ({files[0]}, "
                           "...) have no QRUNOFF.")
        data[key] = series
        long_names.update(names_found)
    if not any(data.values()):
        raise FileNotFoundError(
            f"No history files ({tape}) found for any run; looked in e.g. {next(iter(runs.values()))}.")
    present = [n for n in names if any(n in s for s in data.values())]

    members = sorted({m for m, _ in runs})
    basins = list(dict.fromkeys(b for _, b in runs))
    expected: dict[str, pd.DatetimeIndex] = {}
    for b in basins:
        days = [s.index for (m, bb), d in data.items() if bb == b for s in d.values()]
        idx = days[0].append(days[1:]).unique().sort_values() if days else pd.DatetimeIndex([])
        if len(idx):
            # every day of the period (holes included), without 29 February if the runs have none
            full = pd.date_range(idx[0] if lo is None else lo, idx[-1] if hi is None else hi, freq="D")
            if not ((idx.month == 2) & (idx.day == 29)).any():
                full = full[~((full.month == 2) & (full.day == 29))]
            idx = full
        if lo is not None:
            idx = idx[idx >= lo]
        if hi is not None:
            idx = idx[idx <= hi]
        expected[b] = idx
    time = pd.DatetimeIndex(sorted(set().union(*[set(i) for i in expected.values()])))

    shape = (len(members), len(basins), len(time))
    arrays = {n: np.full(shape, np.nan) for n in present}
    days_read = np.zeros(shape[:2], dtype=np.int64)
    missing, incomplete = [], []
    row, col = {m: i for i, m in enumerate(members)}, {b: j for j, b in enumerate(basins)}
    for (m, b), series in data.items():
        i, j = row[m], col[b]
        for n, s in series.items():
            s = s[s.index.isin(time)]
            arrays[n][i, j, time.get_indexer(s.index)] = s.to_numpy()
        if "QRUNOFF" in series:
            have = series["QRUNOFF"].index
        else:
            have = next(iter(series.values())).index if series else pd.DatetimeIndex([])
        n_have = int(have.isin(expected[b]).sum())
        days_read[i, j] = n_have
        if n_have == 0:
            missing.append(f"{m}:{b}")
        elif n_have < len(expected[b]):
            lost = expected[b][~expected[b].isin(have)]
            incomplete.append(f"{m}:{b} ({n_have} of {len(expected[b])} days; missing "
                              f"{_gaps(lost, expected[b], origins[(m, b)])})")
    # (member, basin) pairs not in cases at all are missing too
    for m in members:
        for b in basins:
            if (m, b) not in runs:
                missing.append(f"{m}:{b}")
    if missing or incomplete:
        def listed(items):
            return ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
        parts = ([f"no history files for {len(missing)} (member:basin): {listed(missing)}"]
                 if missing else [])
        parts += ([f"too few days for {len(incomplete)}: {listed(incomplete)}"]
                  if incomplete else [])
        warnings.warn("CTSM runs not complete: " + "; ".join(parts)
                      + ". Their days are NaN; see incomplete_members().", UserWarning,
                      stacklevel=2)

    data_vars = {}
    for n in present:
        out_name, default_long = HISTORY_VARIABLES[n]
        data_vars[out_name] = (("member", "basin", "time"), arrays[n], {
            "units": "mm/day", "long_name": long_names.get(n) or default_long,
            "ctsm_name": n, "ctsm_units": "mm/s"})
    if all(n in present for n in ("QVEGE", "QVEGT", "QSOIL")):
        data_vars["et"] = (("member", "basin", "time"),
                           arrays["QVEGE"] + arrays["QVEGT"] + arrays["QSOIL"],
                           {"units": "mm/day", "long_name": "evapotranspiration, QVEGE + QVEGT + QSOIL"})
    data_vars["days_read"] = (("member", "basin"), days_read,
                              {"long_name": "days of history found for the run"})
    expected_days = np.array([len(expected[b]) for b in basins], dtype=np.int64)
    return xr.Dataset(data_vars, coords={
        "member": members, "basin": np.asarray(basins, dtype=str), "time": time.values,
        "expected_days": ("basin", expected_days, {"long_name": "days in the basin's period"}),
    }, attrs={
        "model": "CTSM",
        "source": f"history tape {tape}",
        "time_convention": "each time is the day the daily mean covers (lower edge of "
                           "time_bounds; else the CTSM time stamp minus one day)",
        "missing": ", ".join(missing),
        "incomplete": ", ".join(incomplete),
    })


def incomplete_members(flows: xr.Dataset) -> pd.DataFrame:
    """The runs of :func:`read_history` output that are missing, stopped early or have gaps.

    Parameters
    ----------
    flows
        The Dataset of :func:`read_history` (uses ``days_read`` and
        ``expected_days``).

    Returns
    -------
    pandas.DataFrame
        One row per incomplete run: ``member``, ``basin``, ``days_read``,
        ``expected_days`` and ``status`` (``"missing"`` or ``"incomplete"``);
        empty when every run is complete. Rerun these members (their
        ``run_case.sh``, after removing the old case) or leave them out.
    """
    if "days_read" not in flows or "expected_days" not in flows.coords:
        raise ValueError("flows must be the Dataset of read_history (days_read, expected_days).")
    table = flows["days_read"].to_dataframe().reset_index()
    table["expected_days"] = table["basin"].map(
        dict(zip(flows.basin.values, flows["expected_days"].values)))
    table = table[table.days_read < table.expected_days].copy()
    table["status"] = np.where(table.days_read == 0, "missing", "incomplete")
    return table[["member", "basin", "days_read", "expected_days", "status"]].reset_index(drop=True)
