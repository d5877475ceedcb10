"""Read CAMELS-US basin attributes, forcing and streamflow into pandas and xarray.

CAMELS (Catchment Attributes and MEteorology for Large-sample Studies;
Newman et al. 2015, Addor et al. 2017) describes 671 US basins with little
human influence: daily basin-mean meteorological forcing, daily USGS
streamflow, and static attributes (climate, topography, soils, vegetation,
geology, hydrological signatures).

Two sources are supported:

``"sample"``
    The 19-basin teaching sample of the CUAHSI Summer Institute (NLDAS
    forcing and USGS flow, water years 1994-2013; basin 01022500 for 1980-2014).
    About 12 MB, fetched file by file.
``"full"``
    All 671 basins from the CAMELS-US time-series archive (3.4 GB, fetched
    once; only the requested basins' files are extracted). Daymet, Maurer or
    NLDAS forcing. When ``EMUCAL_CAMELS_DIR`` is set, ``"full"`` reads the
    CAMELS copy it names instead, and downloads nothing.
a folder or zip
    A CAMELS-US copy you already have: the official zip
    ``basin_timeseries_v1p2_metForcing_obsFlow.zip`` or any folder that holds
    its files (for example the unpacked ``basin_dataset_public_v1p2``), with or
    without the HUC subfolders. Files are found by name; a zip is read member
    by member, never extracted.

The readers handle the CAMELS quirks: tabs and spaces mixed, no final newline,
missing flow ``-999.00`` flagged ``M``, estimated flow ``A:e``, ``NA`` in attribute
files, NLDAS headers ``PRCP(mm/day)`` vs Daymet ``prcp(mm/day)``, NLDAS ``Tmax``
equal to ``Tmin`` (both the daily mean), a header area unlike ``area_gages2``.
They refuse damaged files (a cut or repeated row, another gauge's flow), naming
the file and line.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import os
import re
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pandas as pd
import xarray as xr

from . import data

__all__ = [
    "ATTRIBUTE_FILES",
    "CAMELS_DIR_VARIABLE",
    "CFS_TO_M3S",
    "SIGNATURE_ATTRIBUTES",
    "attributes",
    "cfs_to_mm_per_day",
    "check_basins",
    "extract_basins",
    "load_basins",
    "read_forcing",
    "read_streamflow",
    "sample_basins",
]

#: The seven CAMELS-US v2.0 attribute tables, merged by :func:`attributes`.
ATTRIBUTE_FILES = ("name", "topo", "clim", "hydro", "soil", "vege", "geol")

#: Attributes computed from observed streamflow (camels_hydro.txt; Addor et al.
#: 2017, Table 3). An ungauged basin has none of them, so they must not be
#: inputs of a regionalisation model.
SIGNATURE_ATTRIBUTES = (
    "q_mean", "runoff_ratio", "slope_fdc", "baseflow_index", "stream_elas", "q5", "q95",
    "high_q_freq", "high_q_dur", "low_q_freq", "low_q_dur", "zero_q_freq", "hfd_mean",
)

#: One cubic foot in cubic metres (0.3048 m per ft, exactly).
CFS_TO_M3S = 0.3048**3

_FORCING_FILE = {"nldas": "nldas", "daymet": "cida", "maurer": "maurer"}

#: Environment variable naming a local CAMELS-US copy (folder or zip) that
#: ``load_basins(source="full")`` reads instead of downloading the archive.
CAMELS_DIR_VARIABLE = "EMUCAL_CAMELS_DIR"

#: A file that read_forcing and read_streamflow take: a path, or a member of an open zip.
FilePath = str | os.PathLike | zipfile.Path

_VARIABLES = {
    # name: (column in the file, attrs)
    "prcp": ("prcp(mm/day)", {
        "units": "mm/day", "standard_name": "lwe_precipitation_rate",
        "long_name": "precipitation"}),
    "srad": ("srad(w/m2)", {
        "units": "W m-2", "standard_name": "surface_downwelling_shortwave_flux_in_air",
        "long_name": "incoming shortwave radiation, mean over daylight hours"}),
    "tmax": ("tmax(c)", {
        "units": "degC", "standard_name": "air_temperature",
        "long_name": "daily maximum air temperature"}),
    "tmin": ("tmin(c)", {
        "units": "degC", "standard_name": "air_temperature",
        "long_name": "daily minimum air temperature"}),
    "vp": ("vp(pa)", {
        "units": "Pa", "standard_name": "water_vapor_partial_pressure_in_air",
        "long_name": "vapour pressure"}),
    "dayl": ("dayl(s)", {"units": "s", "long_name": "day length"}),
    "swe": ("swe(mm)", {
        "units": "mm", "standard_name": "lwe_thickness_of_surface_snow_amount",
        "long_name": "snow water equivalent (from the forcing product's snow model)"}),
}


# --------------------------------------------------------------------- helpers
def _read_bytes(path: FilePath) -> bytes:
    if not isinstance(path, zipfile.Path):
        return Path(path).read_bytes()
    try:
        return path.read_bytes()
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise zipfile.BadZipFile(f"The zip {path.root.filename} is damaged: member {path.at} "
                                 f"cannot be read ({err}). Download the archive again.") from err


def _read_text(path: FilePath) -> str:
    raw = _read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # older CAMELS releases wrote names in Latin-1
        return raw.decode("latin-1")


def _daily(path: FilePath, lines: list[str], first: int, names: list[str],
           text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows ``lines[first:]`` as columns ``names`` (numbers but ``text``), indexed by ``time``.

    A row with other fields, no such date or a day not after the row before is a
    ValueError naming the file, the line and what was expected.
    """
    def refuse(row, problem=None):
        numbered = [(n, ln.strip()) for n, ln in enumerate(lines[first:], first + 1) if ln.strip()]
        if row is None:  # pandas refused a row with too many fields
            row = next((i for i, (_, ln) in enumerate(numbered) if len(ln.split()) > len(names)), 0)
        n, line = numbered[row]
        fields = line.split()
        nan = [f for c, f in zip(names, fields) if c not in text
               and not np.isfinite(pd.to_numeric(f, errors="coerce"))]
        problem = problem or (f"{len(fields)} fields" if len(fields) != len(names) else
                              f"{', '.join(nan)} not a number" if nan else "no such date, or an NA")
        raise ValueError(f"{path}, line {n}: {problem} in {line!r}; a row holds {len(names)} "
                         f"fields: {' '.join(names)}. Mend the file or fetch it again.")

    try:
        table = pd.read_csv(io.StringIO("\n".join(lines[first:])), sep=r"\s+", header=None,
                            names=names, dtype=dict.fromkeys(text, str), quoting=csv.QUOTE_NONE)
    except pd.errors.ParserError:
        refuse(None)
    if table.empty:
        raise ValueError(f"{path} has no daily rows; fetch it again.")
    numbers = table.drop(columns=list(text))
    for column in numbers.select_dtypes(exclude="number"):  # a field that is no number
        numbers[column] = pd.to_numeric(numbers[column], errors="coerce")
    dates = pd.DatetimeIndex(pd.to_datetime(numbers[["year", "month", "day"]], errors="coerce"))
    bad = (~np.isfinite(numbers.to_numpy(dtype=float))).any(axis=1) \
        | table[list(text)].isna().any(axis=1) | dates.isna()
    if bad.any():
        refuse(int(np.argmax(bad)))
    back = np.flatnonzero(np.diff(dates.asi8) <= 0)
    if back.size:
        day, before = dates[back[0] + 1], dates[back[0]]
        refuse(back[0] + 1, f"the day {day:%Y-%m-%d} written twice" if day == before
               else f"{day:%Y-%m-%d} coming after {before:%Y-%m-%d} (days must increase)")
    return numbers.astype(float).assign(**table[list(text)]).set_index(dates.rename("time"))


def _check_ids(ids: Iterable[str], valid: Iterable[str], where: str) -> list[str]:
    given = list(ids)
    ids = [_normalise_id(i) for i in given]
    if not ids:
        raise ValueError("No basin ids given; pass at least one (or None for the teaching sample).")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        spelled = {i: sorted({str(g) for g, n in zip(given, ids) if n == i}) for i in twice}
        raise ValueError(f"Basin ids given more than once: {spelled}; each basin would be a "
                         "duplicate row. Give each id once.")
    valid = set(valid)
    bad = [i for i in ids if i not in valid]
    if bad:
        raise KeyError(
            f"Basin id(s) {bad} are not in {where}. Basin ids are 8-digit USGS "
            "gauge ids as strings, e.g. '01013500'. List valid ones with "
            "emucal.camels.sample_basins() (sample) or "
            "emucal.camels.attributes().index (all 671 basins)."
        )
    return ids


def _normalise_id(basin: str | int) -> str:
    text = str(basin).strip()
    if not text.isdigit():
        raise KeyError(f"Basin id {basin!r} is not a USGS gauge number (digits only).")
    return text.zfill(8)


# ------------------------------------------------------------------ attributes
@lru_cache(maxsize=1)
def _attributes_cached() -> pd.DataFrame:
    tables = []
    for key in ATTRIBUTE_FILES:
        path = data.fetch(f"camels_attributes_v2.0/camels_{key}.txt")
        table = pd.read_csv(
            io.StringIO(_read_text(path)),
            sep=";",
            dtype={"gauge_id": str, "huc_02": str},
            na_values=["NA"],
            keep_default_na=False,
        )
        table["gauge_id"] = table["gauge_id"].str.strip().str.zfill(8)
        for column in table.columns:
            if table[column].dtype == object or pd.api.types.is_string_dtype(table[column]):
                table[column] = table[column].str.strip()
        tables.append(table.set_index("gauge_id"))
    merged = pd.concat(tables, axis=1, join="outer")
    merged.index.name = "basin"  # the same name as the dimension of load_basins
    merged["huc_02"] = merged["huc_02"].str.zfill(2)
    return merged.sort_index()


def attributes(*, reload: bool = False) -> pd.DataFrame:
    """Return the CAMELS-US v2.0 attributes of all 671 basins.

    The seven attribute files (name, topography, climate, hydrology, soil,
    vegetation, geology) are fetched if needed and merged on the CAMELS ``gauge_id``.

    Returns
    -------
    pandas.DataFrame
        One row per basin, indexed by ``basin`` (the 8-character ``gauge_id``, such
        as ``"01013500"``; the basin dimension of :func:`load_basins`, so
        ``attrs.loc[ds.basin.values]`` and ``attrs.to_xarray()`` line up with it),
        one column per attribute. ``NA`` becomes NaN; text is stripped of padding.
        Units and definitions: Addor et al. (2017), Table 1-3, and the CAMELS
        attribute description file on Zenodo record 15529996.

    Examples
    --------
    >>> attrs = attributes()  # doctest: +SKIP
    >>> attrs.loc["01013500", ["gauge_name", "aridity", "area_gages2"]]  # doctest: +SKIP

    The table is read once per session; ``reload=True`` reads the files
    again (after the cache or the mirror changed).
    """
    if reload:
        _attributes_cached.cache_clear()
    return _attributes_cached().copy()


def check_basins(ids: Iterable[str | int]) -> list[str]:
    """Basin ids as CAMELS-US writes them (8 characters, zero-padded), checked.

    Raises a ``KeyError`` naming the ids that are not among the 671 CAMELS-US
    basins (and a ``ValueError`` for an empty list or an id given twice).
    """
    return _check_ids(ids, attributes().index, "CAMELS-US (671 basins)")


def extract_basins(basins: Iterable[str | int], forcing: str = "nldas") -> dict[str, tuple[Path, Path]]:
    """Fetch the full CAMELS-US archive once and extract only these basins' files.

    This is what ``load_basins(..., source="full")`` reads; the command
    ``emucal fetch --basins`` calls it ahead of a workshop.

    Returns
    -------
    dict
        ``{basin: (forcing file, streamflow file)}`` in the cache
        (``camels_full/`` under :func:`emucal.data.cache_dir`).
    """
    if forcing not in _FORCING_FILE:
        raise ValueError(f"forcing must be one of {sorted(_FORCING_FILE)}, not {forcing!r}.")
    return _full_paths(check_basins(basins), forcing)


def sample_basins() -> list[str]:
    """Return the gauge ids of the 19 basins in the teaching sample, sorted."""
    pattern = re.compile(r"^camels_sample/usgs_streamflow/\d\d/(\d{8})_streamflow_qc\.txt$")
    ids = {m.group(1) for name in data.registry() if (m := pattern.match(name))}
    return sorted(ids)


# ------------------------------------------------------------------ file parsers
def read_forcing(path: FilePath) -> tuple[pd.DataFrame, dict[str, float]]:
    """Read one CAMELS basin-mean forcing file (Daymet, Maurer or NLDAS).

    Parameters
    ----------
    path
        A ``*_lump_*_forcing_leap.txt`` file, or a :class:`zipfile.Path` to
        one inside a zip archive. Header names are matched case-insensitively
        (NLDAS ``PRCP(mm/day)``, Daymet ``prcp(mm/day)``); columns may be
        separated by any mix of tabs and spaces.

    Returns
    -------
    frame : pandas.DataFrame
        Daily values indexed by date, columns ``prcp``, ``srad``, ``tmax``,
        ``tmin``, ``vp``, ``dayl``, ``swe`` (units as in the file: mm/day,
        W m-2, degC, degC, Pa, s, mm).
    header : dict
        ``latitude`` (deg N), ``elevation`` (m) and ``area_m2`` (basin area,
        m2, positive) from the first three lines of the file.

    Raises ValueError naming the file and line for a damaged header or row.
    """
    lines = _read_text(path).splitlines()
    if len(lines) < 5:
        raise ValueError(f"{path} has {len(lines)} lines; a CAMELS forcing file has a "
                         "3-line header, a column line and daily rows.")
    try:
        header = dict(zip(["latitude", "elevation", "area_m2"], map(float, lines[:3])))
    except ValueError as err:
        raise ValueError(f"{path}: the first three lines must be latitude, elevation and area; "
                         f"got {lines[:3]!r}.") from err
    if not 0 < header["area_m2"] < np.inf:
        raise ValueError(f"{path}, line 3: the basin area {lines[2].strip()!r} m2 is not a "
                         "positive number; flow per area would be wrong. Fetch the file again.")
    columns = ["month" if c == "mnth" else c for c in lines[3].lower().split()]
    wanted = [col for col, _ in _VARIABLES.values()]
    missing = [c for c in ["year", "month", "day", *wanted] if c not in columns]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if missing or twice:
        problem = f"columns {missing} missing" if missing else f"columns {twice} given twice"
        raise ValueError(f"{path}, line 4: {problem} in {lines[3]!r}; the column line names "
                         f"Year Mnth Day and {', '.join(wanted)} once each.")
    frame = _daily(path, lines, 4, columns)[wanted].set_axis(list(_VARIABLES), axis=1)
    # CAMELS forcing has no missing-value code: -999 (or any negative rain) is a damaged or
    # edited file, and would be read as weather
    bad = (frame <= -999).any(axis=1) | (frame["prcp"] < 0)
    if bad.any():
        day = frame.index[int(np.argmax(bad.to_numpy()))]
        row = frame.loc[day]
        what = ("prcp" if row["prcp"] < 0 and not (row <= -999).any()
                else ", ".join(row.index[row <= -999]))
        raise ValueError(f"{path}: {what} is {', '.join(f'{v:g}' for v in row[what.split(', ')])} on "
                         f"{day:%Y-%m-%d} ({int(bad.sum())} such day(s)): CAMELS forcing has no "
                         "missing-value code and no negative precipitation, so the file is damaged "
                         "or edited. Fetch it again.")
    return frame, header


def read_streamflow(path: FilePath, basin: str | None = None) -> pd.DataFrame:
    """Read one CAMELS USGS streamflow file.

    Parameters
    ----------
    path
        A ``*_streamflow_qc.txt`` file (gauge id, year, month, day, flow in ft3/s,
        quality flag), or a :class:`zipfile.Path` to one inside a zip archive.
    basin
        The gauge id every row must have. Default: the 8 digits the file name starts with.

    Returns
    -------
    pandas.DataFrame
        Indexed by date, columns ``q_cfs`` (float; ``-999`` becomes NaN) and
        ``flag`` (``"A"`` approved, ``"A:e"`` approved but estimated,
        ``"M"`` missing).

    Raises ValueError naming the file and line for a damaged row, an empty
    file or another gauge's rows.
    """
    names = ["gauge_id", "year", "month", "day", "q_cfs", "flag"]
    table = _daily(path, _read_text(path).splitlines(), 0, names, text=("gauge_id", "flag"))
    named = re.match(r"(\d{8})_", Path(str(path)).name)
    basin = _normalise_id(basin) if basin else named and named.group(1)
    ids = sorted({i.zfill(8) for i in table["gauge_id"].unique()})
    if len(ids) > 1 or (basin and ids != [basin]):
        raise ValueError(f"{path} holds rows of gauge {' and '.join(ids)}, expected only "
                         f"{basin or ids[0]}: another gauge's file or a mix. Fetch the right one.")
    q = np.array(table["q_cfs"], dtype=float)
    q[q < 0] = np.nan  # -999.00 marks a missing day (flag M)
    return pd.DataFrame({"q_cfs": q, "flag": table["flag"].to_numpy(dtype=str)}, index=table.index)


def cfs_to_mm_per_day(q_cfs, area_km2):
    """Convert flow in cubic feet per second to a depth in mm/day over a basin.

    ``q [mm/day] = q [ft3/s] * 0.3048**3 [m3/ft3] * 86400 [s/day] / area [m2] * 1000``.
    Raises ValueError for an area that is not a positive number of km2.
    """
    area = np.asarray(area_km2, dtype=float)
    bad = area[~(np.isfinite(area) & (area > 0))]
    if bad.size:
        raise ValueError(f"area_km2 must be positive numbers of km2; got {bad[:3].tolist()}.")
    return np.asarray(q_cfs) * CFS_TO_M3S * 86400.0 / (area * 1e6) * 1000.0


# --------------------------------------------------------------------- loading
def _file_names(basin: str, forcing: str) -> tuple[str, str]:
    """The CAMELS file names of one basin's forcing and streamflow."""
    return (f"{basin}_lump_{_FORCING_FILE[forcing]}_forcing_leap.txt",
            f"{basin}_streamflow_qc.txt")


def _sample_paths(basin: str, forcing: str) -> tuple[Path, Path]:
    if forcing != "nldas":
        raise ValueError(f"The teaching sample has NLDAS forcing only, not {forcing!r}. "
                         "Use source='full' for Daymet or Maurer.")
    names = data.registry()
    f_file, q_file = _file_names(basin, forcing)
    f_pat = f"camels_sample/basin_mean_forcing/nldas/*/{f_file}"
    q_pat = f"camels_sample/usgs_streamflow/*/{q_file}"
    f_name = next(n for n in names if fnmatch.fnmatch(n, f_pat))
    q_name = next(n for n in names if fnmatch.fnmatch(n, q_pat))
    return data.fetch(f_name), data.fetch(q_name)


def _full_paths(basins: list[str], forcing: str) -> dict[str, tuple[Path, Path]]:
    archive = data.fetch(data.FULL_ZIP)
    patterns = {}
    for basin in basins:
        f_file, q_file = _file_names(basin, forcing)
        patterns[basin] = (f"*basin_mean_forcing/{forcing}/*/{f_file}",
                           f"*usgs_streamflow/*/{q_file}")
    flat = [p for pair in patterns.values() for p in pair]
    extracted = data.extract_members(archive, flat, data.cache_dir() / "camels_full")
    return {b: (extracted[f], extracted[q]) for b, (f, q) in patterns.items()}


def _local_copy(source: str | os.PathLike) -> Path | None:
    """The CAMELS folder or zip ``source`` names (``"full"``: ``$EMUCAL_CAMELS_DIR``), or None."""
    variable = os.environ.get(CAMELS_DIR_VARIABLE, "").strip()
    if isinstance(source, str) and source == "sample":
        return None
    if isinstance(source, str) and source == "full":
        if not variable:
            return None
        root, given = Path(variable).expanduser(), f"{CAMELS_DIR_VARIABLE}={variable!r}"
        fix = f"point {CAMELS_DIR_VARIABLE} at your CAMELS-US folder or zip, or unset it " \
              "to download the archive"
    else:
        root, given = Path(source).expanduser(), f"source={str(source)!r}"
        fix = ("source must be 'sample', 'full', or the path of a CAMELS-US folder or of "
               f"{data.FULL_ZIP}")
        if not str(source).strip():  # Path("") is the current folder: never a CAMELS copy by accident
            raise ValueError(f"{given} names no CAMELS copy; {fix}.")
    if root.is_dir() or (root.is_file() and zipfile.is_zipfile(root)):
        return root
    what = "is a file but not a zip archive" if root.is_file() else "does not exist"
    raise FileNotFoundError(f"{given}: {root} {what}; {fix}.")


def _local_paths(root: Path, basins: list[str], forcing: str,
                 stack: contextlib.ExitStack) -> dict[str, tuple[FilePath, FilePath]]:
    """Find each basin's forcing and streamflow file in a CAMELS folder or zip by name.

    HUC subfolders may be there or not. A zip stays open in ``stack`` while its
    members are read. A name found twice counts once if only one copy lies in
    a folder named after the forcing (``nldas``, ``daymet``, ``maurer``).
    """
    wanted = {name: basin for basin in basins for name in _file_names(basin, forcing)}
    found: dict[str, list[str]] = {name: [] for name in wanted}
    if root.is_dir():
        seen = set()  # folders may be links (a copy put together from two disks); a link
        for folder, subfolders, files in os.walk(root, followlinks=True):  # back up is walked once
            if os.path.realpath(folder) in seen:
                subfolders[:] = []
                continue
            seen.add(os.path.realpath(folder))
            for name in files:
                if name in found:
                    found[name].append(os.path.relpath(os.path.join(folder, name), root))
        where, open_file = f"the folder {root}", lambda relative: root / relative
    else:
        archive = stack.enter_context(zipfile.ZipFile(root))
        for member in archive.namelist():
            name = member.rsplit("/", 1)[-1]
            if name in found:
                found[name].append(member)
        where, open_file = f"the zip {root}", lambda member: zipfile.Path(archive, at=member)

    missing, twice, chosen = [], [], {}
    for name, candidates in found.items():
        in_forcing_folder = [c for c in candidates if forcing in Path(c).parts[:-1]]
        if len(candidates) > 1 and len(in_forcing_folder) == 1:
            candidates = in_forcing_folder
        kind = "streamflow" if name.endswith("_streamflow_qc.txt") else f"{forcing} forcing"
        if not candidates:
            missing.append(f"basin {wanted[name]}: no {kind} file {name!r}")
        elif len(candidates) > 1:
            twice.append(f"{name!r} at {sorted(candidates)}")
        else:
            chosen[name] = open_file(candidates[0])
    if missing:
        raise FileNotFoundError(
            f"Not found in {where} (searched by file name, in every subfolder): "
            + "; ".join(missing) + ". CAMELS-US names forcing files "
            "<basin>_lump_{cida|maurer|nldas}_forcing_leap.txt (daymet, maurer, nldas) and "
            "flow files <basin>_streamflow_qc.txt. Check the basin ids and the forcing, or "
            "give another copy; source='full' without "
            f"{CAMELS_DIR_VARIABLE} downloads the complete archive.")
    if twice:
        raise ValueError(f"More than one copy in {where}: " + "; ".join(twice)
                         + f". Point source (or {CAMELS_DIR_VARIABLE}) at a folder that holds one "
                         "CAMELS-US copy.")
    return {b: tuple(chosen[n] for n in _file_names(b, forcing)) for b in basins}


def _day(value, name: str) -> pd.Timestamp | None:
    """``start`` or ``end`` as a day, or a ValueError saying how to write one."""
    if value is None:
        return None
    try:
        day = pd.Timestamp(value)
    except (ValueError, TypeError):
        day = pd.NaT
    if pd.isna(day):
        raise ValueError(f"{name}={value!r} is not a date: write it as 'YYYY-MM-DD', e.g. "
                         f"{name}='1993-10-01'.")
    return day


def load_basins(
    basins: Iterable[str] | str | None = None,
    *,
    source: Literal["sample", "full"] | str | os.PathLike = "sample",
    forcing: Literal["nldas", "daymet", "maurer"] = "nldas",
    area: Literal["gages2", "header"] = "gages2",
    start: str | None = None,
    end: str | None = None,
) -> xr.Dataset:
    """Load daily forcing and observed streamflow for CAMELS basins.

    Parameters
    ----------
    basins
        Gauge ids (8-digit strings). Default: every basin of the sample.
    source
        ``"sample"``, ``"full"`` or the path of a CAMELS-US copy you have, as in
        the module docstring: the zip (read member by member) or a folder such as
        ``basin_dataset_public_v1p2``, HUC subfolders or not (files found by name).
        ``EMUCAL_CAMELS_DIR`` redirects ``"full"``, never ``"sample"``. Basin
        attributes (names, ``area_gages2``) still come from the registry.
    forcing
        ``"nldas"``, ``"daymet"`` or ``"maurer"`` (the sample has NLDAS only): the
        files ``<basin>_lump_{nldas|cida|maurer}_forcing_leap.txt``.
    area
        Basin area used to turn flow into a depth: ``"gages2"`` (the
        ``area_gages2`` attribute, default) or ``"header"`` (the area on line 3
        of the forcing file). ``area_gages2`` is what CAMELS itself used for its
        hydrological signatures: with it, the mean flow of basin 01022500 over
        water years 1990-2009 equals the ``q_mean`` attribute to 14 digits, while
        the header area (588 vs 574 km2) gives 2.4% less.
    start, end
        Dates (inclusive) to keep, for example ``"1993-10-01"``. Default: from
        the first to the last day found in any basin; days a basin has no data
        for are NaN.

    Returns
    -------
    xarray.Dataset
        Dimensions ``(basin, time)``. Variables ``prcp``, ``srad``, ``tmax``,
        ``tmin``, ``vp``, ``dayl``, ``swe`` (forcing), ``qobs`` (mm/day; NaN
        where missing) and ``qobs_flag`` (USGS flag). Basin coordinates:
        ``gauge_name``, ``gauge_lat``, ``gauge_lon``, ``area_km2`` (the area
        used), ``area_header_km2``, ``huc_02``. Units in each variable's attrs;
        sources in the dataset's attrs.

    Raises
    ------
    KeyError
        A basin id that is not in the chosen source; the message says how to
        list valid ids.
    FileNotFoundError
        ``source`` (or ``EMUCAL_CAMELS_DIR``) names no folder or zip, or the
        copy lacks a basin's forcing or streamflow file; the message names the
        basin, the forcing, the file looked for and where.
    ValueError
        A damaged file (a cut or repeated row, no rows, another gauge's flow, a
        header area not above 0); the message names the file and line.
    zipfile.BadZipFile
        A damaged member of a local zip; the message names archive and member.

    Examples
    --------
    >>> ds = load_basins(["01013500"], source="~/data/basin_dataset_public_v1p2",
    ...                  forcing="daymet")  # doctest: +SKIP
    """
    first, last = _day(start, "start"), _day(end, "end")  # before any file is read
    local = _local_copy(source)
    if forcing not in _FORCING_FILE:
        raise ValueError(f"forcing must be one of {sorted(_FORCING_FILE)}, not {forcing!r}.")
    if area not in ("gages2", "header"):
        raise ValueError(f"area must be 'gages2' or 'header', not {area!r}.")

    attrs = attributes()
    if basins is None:
        basins = sample_basins()
    elif isinstance(basins, (str, int)):
        basins = [basins]
    frames, flows, headers = {}, {}, {}
    with contextlib.ExitStack() as stack:  # holds a local zip open while it is read
        if local is None and source == "sample":
            basins = _check_ids(basins, sample_basins(), "the teaching sample")
            paths = {b: _sample_paths(b, forcing) for b in basins}
        else:
            basins = _check_ids(basins, attrs.index, "CAMELS-US (671 basins)")
            paths = (_full_paths(basins, forcing) if local is None
                     else _local_paths(local, basins, forcing, stack))
        for basin in basins:
            forcing_path, flow_path = paths[basin]
            frames[basin], headers[basin] = read_forcing(forcing_path)
            flows[basin] = read_streamflow(flow_path, basin)

    index = frames[basins[0]].index
    for basin in basins:
        index = index.union(frames[basin].index).union(flows[basin].index)
    if start is not None or end is not None:
        first, last = first or index[0], last or index[-1]
        if first > last:
            raise ValueError(f"start {start} is after end {end}.")
        index = index[(index >= first) & (index <= last)]
        if index.empty:
            raise ValueError(f"No days between {start} and {end}: the record of these basins "
                             f"runs from {frames[basins[0]].index[0]:%Y-%m-%d} to "
                             f"{frames[basins[0]].index[-1]:%Y-%m-%d}.")

    area_header = np.array([headers[b]["area_m2"] / 1e6 for b in basins])
    area_gages2 = attrs.loc[basins, "area_gages2"].to_numpy(dtype=float)
    area_used = area_gages2 if area == "gages2" else area_header

    variables = {}
    for name, (_, var_attrs) in _VARIABLES.items():
        values = np.stack([frames[b][name].reindex(index).to_numpy() for b in basins])
        variables[name] = (("basin", "time"), values, dict(var_attrs))
    q_cfs = np.stack([flows[b]["q_cfs"].reindex(index).to_numpy() for b in basins])
    flags = np.stack([flows[b]["flag"].reindex(index).fillna("").to_numpy(dtype=str)
                      for b in basins])
    variables["qobs"] = (("basin", "time"), cfs_to_mm_per_day(q_cfs, area_used[:, None]), {
        "units": "mm/day",
        "long_name": "observed streamflow as a depth over the basin",
        "comment": f"USGS daily flow (ft3/s) divided by basin area ({area!r}); "
                   "-999 (flag M) set to NaN",
    })
    variables["qobs_flag"] = (("basin", "time"), flags, {
        "long_name": "USGS quality flag",
        "flag_meanings": "A: approved; A:e: approved, estimated; M: missing",
    })

    same_t = [b for b in basins
              if np.allclose(frames[b]["tmax"], frames[b]["tmin"], equal_nan=True)]
    if same_t:
        note = ("In these basins' files tmax equals tmin: both hold the daily mean "
                f"temperature (CAMELS NLDAS files): {same_t}")
        variables["tmax"][2]["comment"] = note
        variables["tmin"][2]["comment"] = note

    coords = {
        "basin": ("basin", np.array(basins, dtype=str)),
        "time": index.to_numpy().astype("datetime64[ns]"),
        "gauge_name": ("basin", attrs.loc[basins, "gauge_name"].to_numpy(dtype=str)),
        "gauge_lat": ("basin", attrs.loc[basins, "gauge_lat"].to_numpy(dtype=float),
                      {"units": "degrees_north"}),
        "gauge_lon": ("basin", attrs.loc[basins, "gauge_lon"].to_numpy(dtype=float),
                      {"units": "degrees_east"}),
        "area_km2": ("basin", area_used, {
            "units": "km2", "long_name": f"basin area used for qobs ({area})"}),
        "area_header_km2": ("basin", area_header, {
            "units": "km2", "long_name": "basin area from the forcing file header"}),
        "huc_02": ("basin", attrs.loc[basins, "huc_02"].to_numpy(dtype=str)),
    }
    if local is not None:
        provenance = f"CAMELS-US basin_timeseries_v1p2, local copy {local}"
    elif source == "sample":
        provenance = ("CAMELS-US teaching sample, NWC-CUAHSI-Summer-Institute/CAMELS_data_sample "
                      "at commit 55b9349f")
    else:
        provenance = "CAMELS-US basin_timeseries_v1p2 (Zenodo record 15529996)"
    return xr.Dataset(variables, coords=coords, attrs={
        "title": "CAMELS-US basin-mean forcing and observed streamflow",
        "source": provenance,
        "forcing": forcing,
        "references": "Newman et al. (2015) doi:10.5194/hess-19-209-2015; "
                      "Addor et al. (2017) doi:10.5194/hess-21-5293-2017",
        "license": "CC BY 4.0 (CAMELS-US); see data_registry/README.md",
    })
