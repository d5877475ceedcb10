"""emucal.camels: parsers on quirky fixture files, loading, and real CAMELS checks."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import camels_files
from emucal import camels, data

DATES = pd.date_range("2001-01-01", periods=40, freq="D")


# ---------------------------------------------------------------- file parsers
@pytest.mark.parametrize("kind", ["nldas", "daymet"])
@pytest.mark.parametrize("final_newline", [False, True])
def test_read_forcing_takes_both_header_styles_mixed_separators_and_no_final_newline(
        tmp_path, kind, final_newline):
    path = tmp_path / "f.txt"
    truth = camels_files.write_forcing(path, "01000001", DATES, kind=kind,
                                       header_area_km2=123.4, final_newline=final_newline)
    frame, header = camels.read_forcing(path)
    assert header == {"latitude": 46.84, "elevation": 353.0, "area_m2": 123_400_000.0}
    assert list(frame.columns) == ["prcp", "srad", "tmax", "tmin", "vp", "dayl", "swe"]
    assert frame.index.equals(pd.DatetimeIndex(DATES, name="time"))
    for column in frame.columns:
        np.testing.assert_allclose(frame[column], truth[column], atol=0.006)
    assert (frame.tmax == frame.tmin).all() == (kind == "nldas")


def test_read_forcing_rejects_a_file_without_header(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("Year Mnth Day\n2000 01 01\n2000 01 02\n2000 01 03\n2000 01 04")
    with pytest.raises(ValueError, match="latitude, elevation and area"):
        camels.read_forcing(path)


def test_read_streamflow_missing_and_estimated_flags(tmp_path):
    path = tmp_path / "q.txt"
    truth = camels_files.write_streamflow(path, "01000001", DATES, missing=slice(3, 6),
                                          estimated=slice(10, 12))
    flow = camels.read_streamflow(path)
    assert len(flow) == len(DATES)  # the last line, without newline, is read
    assert flow.q_cfs.isna().sum() == 3 and (flow.flag == "M").sum() == 3
    assert flow.q_cfs[flow.flag == "M"].isna().all()
    assert list(flow.flag.iloc[10:12]) == ["A:e", "A:e"]
    np.testing.assert_allclose(flow.q_cfs, truth.q_cfs)


def test_cfs_to_mm_per_day_by_hand():
    # 1000 ft3/s over 100 km2: 1000 * 0.028316846592 m3/s * 86400 s / 1e8 m2 = 0.0244657 m/day
    assert camels.cfs_to_mm_per_day(1000.0, 100.0) == pytest.approx(24.4657554555, rel=1e-10)
    for area in (0.0, -100.0, np.nan, [100.0, 0.0]):  # issue 30: inf, negative flow, NaN
        with pytest.raises(ValueError, match="area_km2 must be positive"):
            camels.cfs_to_mm_per_day(1000.0, area)


# ---------------------------------------------------------- loading (synthetic)
def test_attributes_merge_na_padding_and_string_ids(synthetic):
    attrs = camels.attributes()
    assert list(attrs.index) == list(camels_files.BASINS)
    assert attrs.index.name == "basin"  # as the dimension of load_basins
    assert attrs.loc["01000001", "dom_land_cover"] == "Mixed Forests"
    assert attrs.loc["01000001", "huc_02"] == "01"
    assert np.isnan(attrs.loc["01000001", "root_depth_50"])
    assert np.isnan(attrs.loc["03000003", "q_mean"])
    assert attrs.loc["02000002", "area_gages2"] == 250.0
    assert {"gauge_name", "aridity", "soil_porosity", "carbonate_rocks_frac"} <= set(attrs.columns)


def test_load_basins_sample_units_flags_and_area(synthetic):
    ds = camels.load_basins()
    assert list(ds.basin.values) == synthetic.sample
    assert ds.sizes == {"basin": 2, "time": len(synthetic.dates)}
    assert ds.qobs.attrs["units"] == "mm/day" and ds.prcp.attrs["units"] == "mm/day"
    assert ds.srad.attrs["units"] == "W m-2" and ds.tmax.attrs["units"] == "degC"
    first = synthetic.sample[0]
    flow = synthetic.truth_flow[first]
    expected = flow.q_cfs.to_numpy() * 0.3048**3 * 86400 / (100.0 * 1e6) * 1000
    np.testing.assert_allclose(ds.qobs.sel(basin=first), expected, rtol=1e-12)
    assert list(ds.qobs_flag.sel(basin=first).values) == list(flow.flag)
    assert ds.area_km2.sel(basin=first) == 100.0
    assert ds.area_header_km2.sel(basin=first) == 104.0
    # the second basin starts five days later: those days are NaN, not dropped
    second = ds.sel(basin=synthetic.sample[1])
    assert second.prcp[:5].isnull().all() and second.prcp[5:].notnull().all()
    assert "daily mean" in ds.tmax.attrs["comment"]


def test_load_basins_header_area_and_period(synthetic):
    gages2 = camels.load_basins("01000001")
    header = camels.load_basins(["1000001"], area="header", start="2000-02-01", end="2000-02-29")
    assert header.sizes["time"] == 29
    ratio = (gages2.qobs.sel(time=header.time) / header.qobs).mean().item()
    assert ratio == pytest.approx(104.0 / 100.0)


def test_load_basins_bad_input_says_what_is_valid(synthetic):
    with pytest.raises(KeyError, match="sample_basins"):
        camels.load_basins(["09999999"])
    with pytest.raises(KeyError, match="digits"):
        camels.load_basins(["fish-river"])
    with pytest.raises(ValueError, match="NLDAS forcing only"):
        camels.load_basins(forcing="daymet")
    with pytest.raises(FileNotFoundError, match="source must be 'sample', 'full', or the path"):
        camels.load_basins(source="camels-gb")
    with pytest.raises(ValueError, match="start='last autumn' is not a date: write it as 'YYYY-MM-DD'"):
        camels.load_basins(start="last autumn")


def test_load_basins_full_extracts_only_requested_members(synthetic):
    ds = camels.load_basins([synthetic.full_only], source="full", forcing="daymet")
    assert ds.sizes == {"basin": 1, "time": len(synthetic.dates)}
    extracted = sorted(p.name for p in (synthetic.cache / "camels_full").rglob("*.txt"))
    assert extracted == ["03000003_lump_cida_forcing_leap.txt", "03000003_streamflow_qc.txt"]
    assert not (ds.tmax == ds.tmin).all()  # Daymet has real extremes
    truth = camels_files.forcing_values(synthetic.full_only, synthetic.dates)
    np.testing.assert_allclose(ds.prcp.squeeze(), truth.prcp, atol=0.006)
    with pytest.raises(KeyError, match="attributes"):
        camels.load_basins(["09999999"], source="full")


def test_check_and_extract_basins_of_the_full_set(synthetic):
    assert camels.check_basins([3000003, "01000001"]) == ["03000003", "01000001"]
    with pytest.raises(KeyError, match="09999999"):
        camels.check_basins(["09999999"])
    with pytest.raises(ValueError, match="forcing must be one of"):
        camels.extract_basins([synthetic.full_only], forcing="era5")
    paths = camels.extract_basins([synthetic.full_only], forcing="daymet")
    forcing_file, flow_file = paths[synthetic.full_only]
    assert forcing_file.name == "03000003_lump_cida_forcing_leap.txt" and flow_file.is_file()
    # the table is read once; reload reads the files again
    camels.attributes()
    camels.attributes()
    assert camels._attributes_cached.cache_info().hits >= 1
    camels.attributes(reload=True)  # the cache is emptied, then read once
    info = camels._attributes_cached.cache_info()
    assert (info.hits, info.misses) == (0, 1)


# --------------------------------------------------- a CAMELS copy the user has
def _unpack(archive: Path, target: Path, layout: str) -> Path:
    """Unpack a CAMELS zip as it is ("huc"), without HUC folders ("no_huc"), or all in one folder."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            parts = member.split("/")
            if layout == "no_huc" and re.fullmatch(r"\d\d", parts[-2]):
                parts = parts[:-2] + parts[-1:]
            elif layout == "flat":
                parts = parts[-1:]
            out = target.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(member))
    return target


def _zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def _local_copy(synthetic, tmp_path: Path, kind: str) -> Path:
    """The synthetic full archive as a user might hold it: folder or zip, with or without HUCs.

    The copy is alone in its parent folder, so a test can check that nothing is
    written beside it.
    """
    archive = synthetic.mirror / data.FULL_ZIP
    home = tmp_path / "user"
    home.mkdir()
    if kind == "zip":  # the official zip as downloaded
        return Path(shutil.copy(archive, home / data.FULL_ZIP))
    layout, _, as_zip = kind.partition("+")
    if as_zip:
        folder = _unpack(archive, tmp_path / "staging", layout)
        return _zip_folder(folder, home / f"camels_{layout}.zip")
    return _unpack(archive, home / "camels", layout)


def _same_data(local: xr.Dataset, normal: xr.Dataset) -> None:
    assert "local copy" in local.attrs["source"]
    xr.testing.assert_identical(local.assign_attrs(source=""), normal.assign_attrs(source=""))


@pytest.mark.parametrize("kind", ["huc", "no_huc", "flat", "zip", "no_huc+zip"])
def test_load_basins_from_a_local_copy_equals_the_archive(synthetic, tmp_path, kind):
    copy = _local_copy(synthetic, tmp_path, kind)
    basins = [synthetic.full_only, synthetic.sample[0]]
    local = {f: camels.load_basins(basins, source=copy, forcing=f)
             for f in ("daymet", "maurer", "nldas")}
    # nothing downloaded or extracted: a zip is read member by member
    assert f"/{data.FULL_ZIP}" not in synthetic.server.requests_seen
    assert not (synthetic.cache / "camels_full").exists()
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]
    for forcing, ds in local.items():
        assert ds.attrs["forcing"] == forcing and str(copy) in ds.attrs["source"]
        _same_data(ds, camels.load_basins(basins, source="full", forcing=forcing))
    # each forcing's own file was read (their header areas differ by 0, 1, 2 km2)
    header = {f: local[f].area_header_km2.sel(basin=synthetic.full_only).item() for f in local}
    assert header == {"daymet": 41.5, "maurer": 42.5, "nldas": 43.5}
    assert (local["nldas"].tmax == local["nldas"].tmin).all()


def test_load_basins_full_reads_emucal_camels_dir_instead_of_downloading(synthetic, tmp_path,
                                                                         monkeypatch):
    copy = _local_copy(synthetic, tmp_path, "no_huc")
    monkeypatch.setenv(camels.CAMELS_DIR_VARIABLE, str(copy))
    local = camels.load_basins([synthetic.full_only], source="full", forcing="daymet")
    assert f"/{data.FULL_ZIP}" not in synthetic.server.requests_seen
    assert str(copy) in local.attrs["source"]
    sample = camels.load_basins()  # the teaching sample is never redirected
    assert "teaching sample" in sample.attrs["source"]
    monkeypatch.delenv(camels.CAMELS_DIR_VARIABLE)
    _same_data(local, camels.load_basins([synthetic.full_only], source="full", forcing="daymet"))
    monkeypatch.setenv(camels.CAMELS_DIR_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"EMUCAL_CAMELS_DIR=.*nowhere.*does not exist.*unset"):
        camels.load_basins([synthetic.full_only], source="full")


@pytest.mark.parametrize("kind", ["huc", "zip"])
def test_load_basins_local_copy_says_what_is_missing_and_where(synthetic, tmp_path, kind):
    copy = _local_copy(synthetic, tmp_path, kind)
    where = "zip" if kind == "zip" else "folder"
    # 02000002 is a CAMELS basin (in the attributes) that this copy lacks
    expected = (rf"Not found in the {where} {re.escape(str(copy))} .*"
                r"basin 02000002: no maurer forcing file '02000002_lump_maurer_forcing_leap\.txt'; "
                r"basin 02000002: no streamflow file '02000002_streamflow_qc\.txt'")
    with pytest.raises(FileNotFoundError, match=expected):
        camels.load_basins(["03000003", "02000002"], source=copy, forcing="maurer")
    with pytest.raises(KeyError, match="attributes"):  # not a CAMELS basin at all
        camels.load_basins(["09999999"], source=copy)
    not_zip = tmp_path / "notes.txt"
    not_zip.write_text("not a zip")
    with pytest.raises(FileNotFoundError, match="is a file but not a zip archive"):
        camels.load_basins(["03000003"], source=not_zip)


def test_a_local_copy_through_folder_links_and_a_blank_source(synthetic, tmp_path):
    copy = _local_copy(synthetic, tmp_path, "huc")
    # the data folder lives on another disk and is linked in; a link back up must not loop
    disk = tmp_path / "disk2"
    disk.mkdir()
    data_folder = copy / "basin_dataset_public_v1p2"
    data_folder.rename(disk / data_folder.name)
    data_folder.symlink_to(disk / data_folder.name, target_is_directory=True)
    (disk / data_folder.name / "up").symlink_to(copy, target_is_directory=True)
    _same_data(camels.load_basins(["03000003"], source=copy),
               camels.load_basins(["03000003"], source="full"))
    with pytest.raises(ValueError, match="source='' names no CAMELS copy"):
        camels.load_basins(["03000003"], source="")


def test_load_basins_local_copy_with_one_forcing_file_gone(synthetic, tmp_path):
    copy = _local_copy(synthetic, tmp_path, "huc")
    next(copy.rglob("03000003_lump_cida_forcing_leap.txt")).unlink()
    assert camels.load_basins(["03000003"], source=copy, forcing="nldas").sizes["basin"] == 1
    with pytest.raises(FileNotFoundError,
                       match=r"basin 03000003: no daymet forcing file '03000003_lump_cida_forc"):
        camels.load_basins(["03000003"], source=copy, forcing="daymet")


def test_load_basins_local_copy_with_a_file_twice(synthetic, tmp_path):
    copy = _local_copy(synthetic, tmp_path, "huc")
    forcing_file = next(copy.rglob("03000003_lump_nldas_forcing_leap.txt"))
    extended = copy / "basin_dataset_public_v1p2/basin_mean_forcing/nldas_extended/03"
    extended.mkdir(parents=True)
    shutil.copy(forcing_file, extended)  # the copy in the folder named "nldas" is taken
    _same_data(camels.load_basins(["03000003"], source=copy),
               camels.load_basins(["03000003"], source="full"))
    shutil.copy(next(copy.rglob("03000003_streamflow_qc.txt")), copy)
    with pytest.raises(ValueError, match="More than one copy.*03000003_streamflow_qc.txt"):
        camels.load_basins(["03000003"], source=copy)


# -------------------------------------------------------------- real CAMELS data
def test_real_attributes_have_671_basins(real_camels):
    attrs = camels.attributes()
    assert attrs.shape[0] == 671
    assert attrs.index.str.fullmatch(r"\d{8}").all()
    assert attrs.loc["01013500", "gauge_name"] == "Fish River near Fort Kent, Maine"
    assert attrs["aridity"].notna().all()


def test_real_sample_mean_flow_matches_camels_q_mean(real_camels):
    """With area_gages2, basin 01022500's WY1990-2009 mean flow equals CAMELS q_mean."""
    assert len(camels.sample_basins()) == 19
    ds = camels.load_basins(["01022500"], start="1989-10-01", end="2009-09-30")
    q_mean = camels.attributes().loc["01022500", "q_mean"]
    assert ds.qobs.mean().item() == pytest.approx(q_mean, rel=1e-9)


def test_real_sample_missing_flow_is_flagged(real_camels):
    ds = camels.load_basins()
    has_record = ds.qobs_flag != ""
    missing = ds.qobs.isnull() & has_record
    assert (missing == (ds.qobs_flag == "M")).all()
    assert int((ds.qobs_flag == "M").sum()) > 0
    assert int((ds.qobs < 0).sum()) == 0  # no -999 left


def test_signature_attributes_are_exactly_the_hydro_file_columns(real_camels):
    from emucal import data

    header = data.fetch("camels_attributes_v2.0/camels_hydro.txt").read_text().splitlines()[0]
    assert tuple(header.split(";")[1:]) == camels.SIGNATURE_ATTRIBUTES


def test_real_sample_read_as_a_local_copy_equals_the_registry_path(real_camels):
    """The cached teaching sample is a CAMELS folder (HUC subfolders, NLDAS) as a user has it."""
    normal = camels.load_basins(["01013500", "01022500"])
    copy = data.cache_dir() / "camels_sample"
    local = camels.load_basins(["01013500", "01022500"], source=copy)
    xr.testing.assert_identical(local.assign_attrs(source=""), normal.assign_attrs(source=""))
    with pytest.raises(FileNotFoundError, match=r"basin 01013500: no daymet forcing file "
                                                r"'01013500_lump_cida_forcing_leap\.txt'"):
        camels.load_basins(["01013500"], source=copy, forcing="daymet")


def test_load_basins_refuses_empty_duplicate_and_out_of_record_requests(synthetic):
    with pytest.raises(ValueError, match="No basin ids"):
        camels.load_basins([])
    with pytest.raises(ValueError, match="more than once.*1000001"):
        camels.load_basins(["01000001", "1000001"])
    with pytest.raises(ValueError, match="No days between 1950-01-01 and 1950-12-31"):
        camels.load_basins("01000001", start="1950-01-01", end="1950-12-31")
    with pytest.raises(ValueError, match="after end"):
        camels.load_basins("01000001", start="2001-01-01", end="2000-01-01")


# ------------------------------------------------------ damaged files are refused
def _line(n: int, new):
    """Replace line ``n`` (1-based) of a file's lines by the lines ``new(line)`` returns."""
    return lambda lines: lines[:n - 1] + new(lines[n - 1]) + lines[n:]


_CUT = _line(9, lambda ln: [" ".join(ln.split()[:6] + [ln.split()[6][:2]])])  # srad 103.91: 10
DAMAGED = {  # id: (file, damage, what the message says after the file's path)
    "forcing-line-cut": ("forcing", _CUT,
                         r", line 9: 7 fields in '2000 01 05 12 [\d. ]+ 10'; a row holds 11 fields"),
    "flow-line-cut": ("flow", _line(5, lambda ln: [ln[:24]]),  # 57.39 A -> 5
                      r", line 5: 5 fields in '03000003 2000 01 05 +5'"),
    "flow-line-cut-in-the-date": ("flow", _line(5, lambda ln: [ln[:16]]),
                                  r", line 5: 3 fields in '03000003 2000 01'"),
    "forcing-day-twice": ("forcing", _line(9, lambda ln: [ln, ln]),
                          r", line 10: the day 2000-01-05 written twice"),
    "flow-day-twice": ("flow", _line(5, lambda ln: [ln, ln]),
                       r", line 6: the day 2000-01-05 written twice"),
    "flow-days-swapped": ("flow", lambda lines: lines[:4] + [lines[5], lines[4]] + lines[6:],
                          r", line 6: 2000-01-05 coming after 2000-01-06 \(days must increase\)"),
    "flow-no-such-date": ("flow", _line(5, lambda ln: [ln.replace(" 01 05 ", " 13 05 ")]),
                          r", line 5: no such date, or an NA in '03000003 2000 13 05"),
    "flow-empty": ("flow", lambda lines: [], r" has no daily rows"),
    "flow-of-another-gauge": ("flow", lambda lines: [ln.replace("03000003", "03000004")
                                                     for ln in lines],
                              r" holds rows of gauge 03000004, expected only 03000003"),
    "forcing-area-0": ("forcing", _line(3, lambda ln: ["0"]), r", line 3: the basin area '0'"),
    "forcing-area-negative": ("forcing", _line(3, lambda ln: ["-41500000"]),
                              r", line 3: the basin area '-41500000' m2 is not a positive"),
    "forcing-area-nan": ("forcing", _line(3, lambda ln: ["nan"]), r", line 3: the basin area"),
    "forcing-column-renamed": ("forcing", _line(4, lambda ln: [ln.replace("Year", "Yr")]),
                               r", line 4: columns \['year'\] missing in 'Yr Mnth Day"),
    "forcing-column-twice": ("forcing", _line(4, lambda ln: [ln.replace("Hr", "Day")]),
                             r", line 4: columns \['day'\] given twice in 'Year Mnth Day Day"),
    "forcing-column-line-gone": ("forcing", _line(4, lambda ln: []),
                                 r", line 4: columns \['year', 'month', 'day', .* missing in "
                                 r"'2000 01 01 .*Year Mnth Day"),
    "forcing-not-a-number": ("forcing", _line(9, lambda ln: [ln.replace(".", "O", 1)]),
                             r", line 9: \d+O\d\d not a number in '2000 01 05 .*11 fields"),
    "flow-not-a-number": ("flow", _line(5, lambda ln: [ln.replace(".", "O")]),
                          r", line 5: \d+O\d\d not a number in '03000003 2000 01 05 .*: "
                          r"gauge_id year month day q_cfs flag"),
    "flow-extra-field": ("flow", _line(5, lambda ln: [ln + " x"]),
                         r", line 5: 7 fields in '03000003 2000 01 05 .* x'"),
    # issue 30: 'inf' was read as a number (NaN was refused)
    "forcing-inf": ("forcing", _line(9, lambda ln: [" ".join(ln.split()[:5] + ["inf"] + ln.split()[6:])]),
                    r", line 9: inf not a number in '2000 01 05 12 [\d.]+ inf"),
    "flow-inf": ("flow", _line(5, lambda ln: [" ".join(ln.split()[:4] + ["inf", "A"])]),
                 r", line 5: inf not a number in '03000003 2000 01 05 inf A'"),
    # -999 is no missing-value code of CAMELS forcing, and rain is never negative
    "forcing-missing-code": ("forcing", _line(9, lambda ln: [" ".join(ln.split()[:6] + ["-999.00"]
                                                                     + ln.split()[7:])]),
                             r": srad is -999 on 2000-01-05 \(1 such day\(s\)\): CAMELS forcing "
                             r"has no missing-value code"),
    "forcing-negative-rain": ("forcing", _line(9, lambda ln: [" ".join(ln.split()[:5] + ["-2.5"]
                                                                      + ln.split()[6:])]),
                              r": prcp is -2.5 on 2000-01-05"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_camels_file_is_refused_naming_file_and_line(synthetic, tmp_path, case):
    kind, damage, message = DAMAGED[case]
    copy = _local_copy(synthetic, tmp_path, "huc")
    path = next(copy.rglob("03000003_" + ("lump_nldas_forcing_leap.txt" if kind == "forcing"
                                          else "streamflow_qc.txt")))
    path.write_text("\n".join(damage(path.read_text().splitlines())))
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        camels.load_basins(["03000003"], source=copy)


def test_a_bad_crc_in_a_local_zip_names_archive_and_member(synthetic, tmp_path):
    folder = _local_copy(synthetic, tmp_path, "no_huc")
    archive = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # stored: each member's bytes lie as they are
        for path in sorted(folder.rglob("*.txt")):
            zf.write(path, path.relative_to(folder).as_posix())
    raw = archive.read_bytes()
    archive.write_bytes(raw.replace(b"03000003 2000 01 05", b"03000003 2000 01 06", 1))
    with pytest.raises(zipfile.BadZipFile, match=rf"The zip {re.escape(str(archive))} is damaged: "
                       r"member .*/03000003_streamflow_qc\.txt .*Download the archive again"):
        camels.load_basins(["03000003"], source=archive)
