"""emucal.camels: parsers on quirky fixture files, loading, and real CAMELS checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import camels_files
from emucal import camels

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


# ---------------------------------------------------------- loading (synthetic)
def test_attributes_merge_na_padding_and_string_ids(synthetic):
    attrs = camels.attributes()
    assert list(attrs.index) == list(camels_files.BASINS)
    assert attrs.index.name == "gauge_id"
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
    with pytest.raises(ValueError, match="source must be"):
        camels.load_basins(source="camels-gb")


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


def test_load_basins_refuses_empty_duplicate_and_out_of_record_requests(synthetic):
    with pytest.raises(ValueError, match="No basin ids"):
        camels.load_basins([])
    with pytest.raises(ValueError, match="more than once.*1000001"):
        camels.load_basins(["01000001", "1000001"])
    with pytest.raises(ValueError, match="No days between 1950-01-01 and 1950-12-31"):
        camels.load_basins("01000001", start="1950-01-01", end="1950-12-31")
    with pytest.raises(ValueError, match="after end"):
        camels.load_basins("01000001", start="2001-01-01", end="2000-01-01")
