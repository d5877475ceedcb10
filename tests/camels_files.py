"""Write small CAMELS-format files that reproduce every quirk of the real ones.

The unit tests build their own fixtures with these writers, so that each quirk
listed in DESIGN.md is tested on a file whose content the test knows exactly:

- columns separated by a mix of tabs and spaces;
- a last line with no newline;
- missing flow written as ``-999.00`` with flag ``M``; estimated flow ``A:e``;
- ``NA`` fields and padded text in attribute files;
- capitalised NLDAS headers vs lower-case Daymet headers;
- NLDAS files whose Tmax equals Tmin (a daily mean);
- a header basin area that differs from ``area_gages2``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

NLDAS_HEADER = "Year Mnth Day Hr\tDayl(s)\tPRCP(mm/day)\tSRAD(W/m2)\tSWE(mm)\tTmax(C)\tTmin(C)\tVp(Pa)"
DAYMET_HEADER = "Year Mnth Day Hr\tdayl(s)\tprcp(mm/day)\tsrad(W/m2)\tswe(mm)\ttmax(C)\ttmin(C)\tvp(Pa)"

#: Basins of the synthetic data set: id -> (huc, area_gages2 km2, header area km2)
BASINS = {
    "01000001": ("01", 100.0, 104.0),
    "02000002": ("02", 250.0, 240.0),
    "03000003": ("03", 40.0, 41.5),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def forcing_values(basin: str, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Deterministic daily forcing for a synthetic basin."""
    seed = int(basin) % 1000
    rng = np.random.default_rng(seed)
    n = len(dates)
    doy = dates.day_of_year.to_numpy()
    temp = 10 + 12 * np.sin(2 * np.pi * (doy - 110) / 365.25)
    return pd.DataFrame({
        "dayl": 43200 + 10000 * np.sin(2 * np.pi * (doy - 80) / 365.25),
        "prcp": np.round(rng.gamma(0.5, 6.0, n), 2),
        "srad": np.round(200 + 100 * np.sin(2 * np.pi * (doy - 80) / 365.25), 2),
        "swe": np.zeros(n),
        "tmax": np.round(temp + 5, 2),
        "tmin": np.round(temp - 5, 2),
        "vp": np.round(800 + 300 * np.sin(2 * np.pi * (doy - 110) / 365.25), 2),
    }, index=dates)


def write_forcing(path: Path, basin: str, dates: pd.DatetimeIndex, *, kind: str = "nldas",
                  header_area_km2: float = 100.0, final_newline: bool = False) -> pd.DataFrame:
    """Write a forcing file; NLDAS kind writes Tmax = Tmin = daily mean."""
    values = forcing_values(basin, dates)
    if kind == "nldas":
        mean = np.round((values["tmax"] + values["tmin"]) / 2, 2)
        values["tmax"] = mean
        values["tmin"] = mean
    header = NLDAS_HEADER if kind == "nldas" else DAYMET_HEADER
    lines = ["  46.84", " 353.00", f"{int(header_area_km2 * 1e6)}", header]
    for i, (date, row) in enumerate(values.iterrows()):
        sep = "\t" if i % 2 else "  \t "  # a mix of tabs and spaces
        lines.append(
            f"{date.year} {date.month:02d} {date.day:02d} 12{sep}{row.dayl:.2f}{sep}"
            f"{row.prcp:.2f}\t{row.srad:.2f}\t{row.swe:.2f}\t{row.tmax:.2f}\t"
            f"{row.tmin:.2f}\t{row.vp:.2f}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""))
    return values


def write_streamflow(path: Path, basin: str, dates: pd.DatetimeIndex, *,
                     missing: slice = slice(10, 15), estimated: slice = slice(20, 23),
                     final_newline: bool = False) -> pd.DataFrame:
    """Write a USGS flow file with -999.00/M and A:e rows; return cfs and flags."""
    n = len(dates)
    q = np.round(50 + 40 * np.sin(np.arange(n) / 9.0) ** 2, 2)
    flags = np.array(["A"] * n, dtype=object)
    flags[estimated] = "A:e"
    q[missing] = -999.0
    flags[missing] = "M"
    lines = [f"{basin} {d.year} {d.month:02d} {d.day:02d} {v:8.2f} {f}"
             for d, v, f in zip(dates, q, flags)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""))
    return pd.DataFrame({"q_cfs": np.where(q < 0, np.nan, q), "flag": flags}, index=dates)


def write_attributes(folder: Path, basins: dict = BASINS) -> dict[str, Path]:
    """Write the seven attribute files (semicolon separated, NA, padded text)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(basins)
    tables = {
        "name": pd.DataFrame({"huc_02": [basins[b][0] for b in ids],
                              "gauge_name": [f"Test Creek {i} near Nowhere, ST" for i in range(len(ids))]}),
        "topo": pd.DataFrame({"gauge_lat": [45.0, 35.0, 40.0], "gauge_lon": [-70.0, -85.0, -100.0],
                              "elev_mean": [300.0, 500.0, 900.0], "slope_mean": [20.0, 35.0, 10.0],
                              "area_gages2": [basins[b][1] for b in ids],
                              "area_geospa_fabric": [basins[b][1] * 1.05 for b in ids]}),
        "clim": pd.DataFrame({"p_mean": [3.0, 4.0, 1.5], "pet_mean": [2.0, 3.0, 3.5],
                              "aridity": [2 / 3, 0.75, 3.5 / 1.5], "frac_snow": [0.3, 0.05, 0.1]}),
        "hydro": pd.DataFrame({"q_mean": [1.5, 2.0, np.nan], "runoff_ratio": [0.5, 0.5, np.nan]}),
        "soil": pd.DataFrame({"soil_porosity": [0.45, 0.40, 0.38]}),
        "vege": pd.DataFrame({"lai_max": [4.0, 5.0, 1.2],
                              "dom_land_cover": ["    Mixed Forests", "  Croplands", "Grasslands"],
                              "root_depth_50": [np.nan, 0.2, 0.1]}),
        "geol": pd.DataFrame({"geol_1st_class": ["Metamorphics", "Carbonate sedimentary rocks", np.nan],
                              "carbonate_rocks_frac": [0.0, 1.0, np.nan]}),
    }
    paths = {}
    for key, table in tables.items():
        table.insert(0, "gauge_id", ids)
        path = folder / f"camels_{key}.txt"
        text = table.to_csv(sep=";", index=False, na_rep="NA", lineterminator="\n")
        path.write_text(text.rstrip("\n"))  # the real files end without a newline too
        paths[key] = path
    return paths


def write_full_zip(path: Path, basins: list[str], dates: pd.DatetimeIndex,
                   root: str = "basin_dataset_public_v1p2") -> None:
    """Write a small zip laid out like CAMELS basin_timeseries_v1p2 (Daymet, Maurer, NLDAS).

    The three forcing files of a basin differ in their header area (the file's
    ``header_area`` + 0, 1 or 2 km2 for Daymet, Maurer, NLDAS), so a test can
    tell which one was read.
    """
    tmp = path.parent / "zip_src"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for basin in basins:
            huc, area, header_area = BASINS[basin]
            for offset, (kind, tag) in enumerate([("daymet", "cida"), ("maurer", "maurer"),
                                                  ("nldas", "nldas")]):
                f = tmp / f"{basin}_{kind}.txt"
                write_forcing(f, basin, dates, kind=kind, header_area_km2=header_area + offset)
                zf.write(f, f"{root}/basin_mean_forcing/{kind}/{huc}/{basin}_lump_{tag}_forcing_leap.txt")
            q = tmp / f"{basin}_q.txt"
            write_streamflow(q, basin, dates)
            zf.write(q, f"{root}/usgs_streamflow/{huc}/{basin}_streamflow_qc.txt")
        zf.writestr(f"{root}/README.txt", io.StringIO("synthetic").getvalue())
