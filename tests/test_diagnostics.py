"""emucal.diagnostics: hydrological signatures against hand-made series and CAMELS."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emucal import camels, diagnostics
from emucal.metrics import water_year
from emucal.diagnostics import CAMELS_TOLERANCE, SIGNATURES, baseflow, seasonal_cycle, signatures

WY = pd.date_range("2000-10-01", "2001-09-30")  # water year 2001, 365 days
WY20 = pd.date_range("1989-10-01", "2009-09-30")  # the CAMELS period, 7305 days


def _da(x, time=WY) -> xr.DataArray:
    """Daily values, time on the last axis, as the DataArray signatures takes."""
    x = np.asarray(x, dtype=float)
    return xr.DataArray(x, dims=[f"dim_{i}" for i in range(x.ndim - 1)] + ["time"], coords={"time": time})


def _sig(q, p=None, time=WY, **kw):
    return signatures(_da(q, time), None if p is None else _da(p, time), **kw).to_series()


# ------------------------------------------------------------- known answers
def test_constant_flow():
    sig = _sig(np.full(WY20.size, 2.0), time=WY20)
    assert sig["q_mean"] == 2.0 and sig["q5"] == 2.0 and sig["q95"] == 2.0
    assert sig["slope_fdc"] == 0.0 and sig["slope_fdc_log"] == 0.0
    # no day is above 9x or below 0.2x the median/mean: no event, duration 0 as in CAMELS
    assert sig[["high_q_freq", "high_q_dur", "low_q_freq", "low_q_dur", "zero_q_freq"]].eq(0).all()
    # half of a constant flow has passed after day 183 of 365 (184 of 366)
    days = pd.Series(1, index=WY20).groupby(water_year(WY20)).size()
    assert sig["hfd_mean"] == pytest.approx(np.where(days == 366, 184, 183).mean())
    # all baseflow, except where the filter warms up at the ends (see baseflow's notes)
    assert 0.998 < sig["baseflow_index"] < 1.0
    base = baseflow(np.full(WY20.size, 2.0))
    assert np.allclose(base[365:-365], 2.0, rtol=1e-9)


def test_high_and_low_flow_events_by_hand():
    q = np.ones(WY.size)
    q[[10, 100, 101, 102, 200, 201]] = 20.0  # > 9 x median (1): events of 1, 3 and 2 days
    q[[300, 301, 302, 303]] = 0.1  # < 0.2 x mean (about 1.3): one 4-day event
    q[350] = 0.0  # and a 1-day event that is also a zero-flow day
    sig = _sig(q)
    assert sig["high_q_freq"] == pytest.approx(6 * 365.25 / 365)
    assert sig["high_q_dur"] == pytest.approx(6 / 3)
    assert sig["low_q_freq"] == pytest.approx(5 * 365.25 / 365)
    assert sig["low_q_dur"] == pytest.approx(5 / 2)
    assert sig["zero_q_freq"] == pytest.approx(1 / 365)
    assert sig["zero_q_freq"] < _sig(q, zero_flow=0.1)["zero_q_freq"]  # 5 days at or below 0.1
    assert sig["q_mean"] == pytest.approx(q.mean())


def test_missing_days_are_skipped_not_filled():
    q = np.ones(WY.size)
    q[[50, 52]] = 20.0
    q[51] = np.nan  # CAMELS drops missing days first: 50 and 52 become one 2-day event
    sig = _sig(q)
    assert sig["high_q_dur"] == pytest.approx(2.0)
    assert sig["high_q_freq"] == pytest.approx(2 * 365.25 / 364)
    assert sig["q_mean"] == pytest.approx(np.nanmean(q))


def test_quantiles_are_r_type_7_and_ignore_nan():
    rng = np.random.default_rng(1)
    q = rng.gamma(0.8, 2.0, (3, WY.size))
    q[1, ::7] = np.nan
    sig = signatures(_da(q))
    for name, p in [("q5", 0.05), ("q95", 0.95)]:
        np.testing.assert_allclose(sig.sel(signature=name), np.nanquantile(q, p, axis=-1), rtol=1e-12)
    q33, q66 = np.nanquantile(q, [0.33, 0.66], axis=-1)
    q_mean = np.nanmean(q, axis=-1)
    np.testing.assert_allclose(sig.sel(signature="slope_fdc"), (q66 - q33) / (q_mean * 0.33))
    np.testing.assert_allclose(sig.sel(signature="slope_fdc_log"), np.log(q66 / q33) / 0.33)


def test_runoff_ratio_and_elasticity_of_proportional_flow():
    rng = np.random.default_rng(2)
    p = rng.gamma(0.5, 6.0, WY20.size) * np.repeat(rng.uniform(0.5, 1.5, 21), 366)[:WY20.size]
    sig = _sig(0.3 * p, p, time=WY20)
    assert sig["runoff_ratio"] == pytest.approx(0.3, rel=1e-12)
    # Q = 0.3 P year by year: a 10 % wetter year is a 10 % higher-flow year
    assert sig["stream_elas"] == pytest.approx(1.0, rel=1e-9)
    # flow that does not respond to the year's precipitation at all
    assert _sig(np.full(WY20.size, 1.0), p, time=WY20)["stream_elas"] == pytest.approx(0.0, abs=1e-12)


def test_half_flow_date_by_hand():
    time = pd.date_range("2000-10-01", "2002-09-30")  # WY2001 (365 days) and WY2002 (365)
    q = np.zeros(time.size)
    q[[99, 365 + 199]] = 5.0  # all of the year's flow on day 100, then on day 200
    assert _sig(q, time=time)["hfd_mean"] == pytest.approx(150.0)
    q[[9, 19]] = 5.0  # WY2001 now: days 10, 20, 100 -> half is passed on day 20
    assert _sig(q, time=time)["hfd_mean"] == pytest.approx((20 + 200) / 2)
    # a part-year (here WY2000, from June) does not count
    early = pd.date_range("2000-06-01", "2000-09-30")
    both = np.concatenate([np.ones(early.size), q])
    assert _sig(both, time=early.append(time))["hfd_mean"] == pytest.approx(110.0)
    # nor a year with more than 5 % of its days missing
    q_gap = q.copy()
    q_gap[200:220] = np.nan
    assert _sig(q_gap, time=time)["hfd_mean"] == pytest.approx(200.0)


def test_baseflow_with_gap_is_the_weighted_mean_of_the_segments():
    rng = np.random.default_rng(3)
    q = 1.0 + rng.gamma(0.3, 5.0, WY.size)
    gap = q.copy()
    gap[150:152] = np.nan
    bfi = _sig(gap)["baseflow_index"]
    left, right = (_sig(q[:150], time=WY[:150])["baseflow_index"],
                   _sig(q[152:], time=WY[152:])["baseflow_index"])
    assert bfi == pytest.approx((150 * left + 213 * right) / 363, rel=1e-12)
    base = baseflow(gap)
    assert np.isnan(base[150:152]).all() and np.all(base[:150] <= q[:150] + 1e-12)
    # a smaller alpha lets more of the flow through as baseflow
    assert baseflow(q, alpha=0.9).sum() > baseflow(q).sum() > baseflow(q, alpha=0.98).sum()


def test_seasonal_cycle_by_hand():
    time = pd.date_range("2001-01-01", "2002-12-31")
    q = np.stack([time.month.to_numpy(float), np.where(time.year == 2001, 1.0, 3.0)])
    q[0, time.month == 5] = np.nan
    cycle = seasonal_cycle(xr.DataArray(q, dims=("basin", "time"), coords={"time": time}))
    assert cycle.dims == ("month", "basin")
    expected = np.arange(1, 13, dtype=float)
    expected[4] = np.nan
    np.testing.assert_array_equal(cycle.isel(basin=0), expected)
    np.testing.assert_allclose(cycle.isel(basin=1), 2.0)


# ------------------------------------------------------------------- layout
def test_layout_coordinates_and_broadcast():
    rng = np.random.default_rng(4)
    p = rng.gamma(0.5, 6.0, (2, WY.size))
    q = rng.uniform(0.5, 1.5, (3, 2, 1)) * 0.2 * p[None] + 0.1
    qa = xr.DataArray(q, dims=("member", "basin", "time"),
                      coords={"basin": ["a", "b"], "time": WY, "area": ("basin", [1.0, 2.0])})
    pa = xr.DataArray(p, dims=("basin", "time"), coords={"basin": ["a", "b"], "time": WY})
    sig = signatures(qa, pa)
    assert sig.dims == ("signature", "member", "basin")
    assert tuple(sig.signature.values) == SIGNATURES
    assert set(camels.SIGNATURE_ATTRIBUTES) <= set(SIGNATURES)
    assert sig.units.sel(signature="q5") == "mm/day"
    assert sig.units.sel(signature="high_q_freq") == "days/yr"
    assert sig.attrs["period"] == "2000-10-01 to 2001-09-30"
    assert list(sig.basin.values) == ["a", "b"] and "area" in sig.coords
    # each series on its own gives the same as all at once
    one = signatures(qa.isel(member=2, basin=1), pa.isel(basin=1))
    np.testing.assert_allclose(one.values, sig.isel(member=2, basin=1).values)
    # precipitation longer than the flow is cut to the flow's dates
    longer = xr.concat([pa, pa.assign_coords(time=WY + pd.Timedelta(days=365))], "time")
    np.testing.assert_allclose(signatures(qa, longer).values, sig.values)
    without_p = signatures(qa)
    assert "runoff_ratio" not in without_p.signature and without_p.sizes["signature"] == 12
    table = sig.isel(member=0).to_pandas()
    assert table.shape == (len(SIGNATURES), 2)


def test_tolerance_table_covers_the_camels_signatures():
    assert set(CAMELS_TOLERANCE) == set(camels.SIGNATURE_ATTRIBUTES)
    for entry in CAMELS_TOLERANCE.values():
        assert entry["rtol"] >= 0 and entry["atol"] >= 0 and entry["why"]
    assert diagnostics.CAMELS_PERIOD == (1990, 2009)


@pytest.mark.parametrize("call, match", [
    (lambda: signatures(_da(-np.ones(WY.size))), ">= 0"),
    (lambda: signatures(_da(np.ones(WY.size), pd.date_range("2000-01-01", periods=WY.size,
                                                            freq="2D"))), "daily"),
    (lambda: signatures(xr.DataArray(np.ones(WY.size), dims="day")), "no dimension 'time'"),
    (lambda: signatures(xr.DataArray(np.ones(WY.size), dims="time", coords={"time": WY}),
                        xr.DataArray(np.ones(100), dims="time", coords={"time": WY[:100]})),
     "cover every date"),
    (lambda: baseflow(np.ones(50), alpha=1.0), "alpha"),
    (lambda: baseflow(np.ones(50), passes=2), "odd"),
])
def test_bad_input_says_what_is_wrong(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_numpy_array_is_refused_with_the_way_to_wrap_it():
    with pytest.raises(TypeError, match=r"xr.DataArray\(q, dims=\(..., 'time'\)"):
        signatures(np.ones(WY.size))
    with pytest.raises(TypeError, match="not ndarray"):
        seasonal_cycle(np.ones(WY.size))


def test_speed_of_an_ensemble():
    """19 basins x 50 members x 20 years in a few seconds (vectorised, no Python loop per series)."""
    import time

    rng = np.random.default_rng(5)
    q = rng.gamma(0.5, 2.0, (19, 50, WY20.size))
    start = time.perf_counter()
    sig = signatures(_da(q, WY20))
    assert time.perf_counter() - start < 15
    assert np.isfinite(sig.values).all()


# ----------------------------------------------------------- real CAMELS data
@functools.lru_cache(maxsize=1)
def _camels_sample():
    """The 19 sample basins over the CAMELS period, their signatures and the CAMELS attributes."""
    ds = camels.load_basins(start="1989-10-01", end="2009-09-30")
    return ds, signatures(ds.qobs, ds.prcp).to_pandas().T, camels.attributes()


def test_real_full_record_reproduces_camels_exactly(real_camels):
    """01022500 has flow for all of WY1990-2009: every flow-only signature equals camels_hydro.txt."""
    ds, ours, attrs = _camels_sample()
    assert int(ds.qobs.sel(basin="01022500").notnull().sum()) == 7305  # complete record
    expected = attrs.loc["01022500"]
    flow_only = [s for s in camels.SIGNATURE_ATTRIBUTES if s not in ("runoff_ratio", "stream_elas")]
    for name in flow_only:
        assert ours.loc["01022500", name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
    # CAMELS's slope_fdc is not the Sawicz et al. (2011) log slope (2.84 here)
    assert ours.loc["01022500", "slope_fdc_log"] > 1.5 * expected["slope_fdc"]
    # the runoff ratio is a ratio of means: with precipitation scaled to the Daymet
    # mean of camels_clim.txt it is CAMELS's value
    p = ds.prcp.sel(basin="01022500")
    p = p * expected["p_mean"] / p.mean()
    rr = signatures(ds.qobs.sel(basin="01022500"), p).sel(signature="runoff_ratio").item()
    assert rr == pytest.approx(expected["runoff_ratio"], rel=1e-12)


def test_real_sample_within_stated_tolerance_of_camels(real_camels):
    """All 19 basins, over what the sample holds of WY1990-2009, with NLDAS precipitation."""
    ds, ours, attrs = _camels_sample()
    assert len(ours) == 19
    for name, tol in CAMELS_TOLERANCE.items():
        expected = attrs.loc[ours.index, name]
        error = (ours[name] - expected).abs()
        bound = tol["atol"] + tol["rtol"] * expected.abs()
        assert (error <= bound).all(), f"{name}: {error[error > bound].to_dict()}"
    # the sample misses WY1990-1993, so the other basins must differ from CAMELS
    others = ours.drop(index="01022500")
    assert (others["q_mean"] - attrs.loc[others.index, "q_mean"]).abs().min() > 1e-4


# ------------------------------------------------------------ history matching
def test_implausibility_is_the_standardised_distance():
    # |10 - 7| / sqrt(1^2 + 0^2 + 0^2) = 3: exactly at the cutoff
    assert diagnostics.implausibility(10.0, 7.0, 0.0, 1.0, 0.0) == pytest.approx(3.0)
    # every variance counts: sqrt(1 + 4 + 4) = 3
    assert diagnostics.implausibility(10.0, 7.0, 2.0, 1.0, 2.0) == pytest.approx(1.0)
    # DataArrays broadcast by name, not by position
    obs = xr.DataArray([1.0, 2.0], dims="basin")
    mean = xr.DataArray([[1.0, 2.0], [1.5, 2.5]], dims=("member", "basin"))
    imp = diagnostics.implausibility(obs, mean, 0.0, 0.5, 0.0)
    np.testing.assert_allclose(imp.transpose("member", "basin").values, [[0, 0], [1, 1]])


def _toy_ensemble(n=80, seed=0):
    """Two 'basins', three parameters, two signatures with known ranges.

    s1 = x0 in [0, 1]; s2 = 5 + x1 in [5, 6]. Basin 0 observes s2 = 20, which no
    parameter set reaches; basin 1 observes values inside both ranges.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 3))
    sim = np.stack([x[:, 0], 5 + x[:, 1]], axis=-1)
    simulated = xr.DataArray(np.broadcast_to(sim, (2, n, 2)), dims=("basin", "member", "signature"),
                             coords={"basin": ["a", "b"], "signature": ["s1", "s2"]})
    observed = xr.DataArray([[0.5, 20.0], [0.3, 5.5]], dims=("basin", "signature"),
                            coords={"basin": ["a", "b"], "signature": ["s1", "s2"]})
    return x, simulated, observed


def test_history_match_finds_the_signature_no_parameter_set_can_match():
    x, simulated, observed = _toy_ensemble()
    errors = {"s1": (0.0, 0.02), "s2": (0.0, 0.05)}  # absolute standard deviations
    m = diagnostics.history_match(x, simulated, observed, obs_error=errors, discrepancy=errors,
                                  n_candidates=3000, seed=1)
    min_imp = m.min_implausibility.to_pandas()
    assert m.attrs["cutoff"] == 3.0 and m.attrs["emulator_seconds"] > 0
    assert min_imp.loc["a", "s2"] > 50  # 14 units away, sd ~0.07
    assert min_imp.loc["a", "s1"] < 1 and min_imp.loc["b"].max() < 1
    assert float(m.non_implausible_fraction.sel(basin="a")) == 0.0
    # basin b: what is left is the slab around x0 = 0.3 and x1 = 0.5, x2 free
    kept = m.unit.values[m.non_implausible.sel(basin="b").values]
    assert len(kept) > 50
    assert np.all(np.abs(kept[:, 0] - 0.3) < 3 * 0.03 + 0.02)
    assert np.all(np.abs(kept[:, 1] - 0.5) < 3 * 0.08 + 0.02)
    assert kept[:, 2].min() < 0.1 and kept[:, 2].max() > 0.9
    # the same seed gives the same answer
    again = diagnostics.history_match(x, simulated, observed, obs_error=errors, discrepancy=errors,
                                      n_candidates=3000, seed=1)
    np.testing.assert_array_equal(again.implausibility.values, m.implausibility.values)


def test_history_match_explains_bad_input():
    x, simulated, observed = _toy_ensemble(n=20)
    with pytest.raises(ValueError, match="unit cube"):
        diagnostics.history_match(x * 10, simulated, observed)
    with pytest.raises(ValueError, match=r"No error given for signatures \['s2'\]"):
        diagnostics.history_match(x, simulated, observed, obs_error={"s1": (0.1, 0.0)})
    with pytest.raises(ValueError, match="observed must be"):
        diagnostics.history_match(x, simulated.values, observed.values[:, :1])


def test_default_errors_cover_every_signature():
    assert set(diagnostics.OBS_ERROR) == set(SIGNATURES) == set(diagnostics.DISCREPANCY)
    assert all(rel >= 0 and absolute >= 0 for rel, absolute in diagnostics.OBS_ERROR.values())


# ---------------------------------------------------------------- FDC biases
def test_fdc_biases_of_a_scaled_and_a_flattened_series():
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.8, 2.0, size=(3, 2000)) + 0.01
    scaled = diagnostics.fdc_biases(1.2 * obs, obs)
    np.testing.assert_allclose(scaled["fhv"], 20.0)  # 20% more in the highest 2%
    np.testing.assert_allclose(scaled["fms"], 0.0, atol=1e-9)  # log slopes ignore a factor
    np.testing.assert_allclose(scaled["flv"], 0.0, atol=1e-9)
    # a damped series (less variable): peaks too low, mid-segment too flat
    damped = diagnostics.fdc_biases(obs.mean(-1, keepdims=True) + 0.5 * (obs - obs.mean(-1, keepdims=True)), obs)
    assert np.all(damped["fhv"] < 0) and np.all(damped["fms"] < 0)
    # DataArrays: a Dataset over the other dimensions
    da = xr.DataArray(obs, dims=("basin", "time"))
    out = diagnostics.fdc_biases(1.2 * da, da)
    assert set(out.data_vars) == {"fhv", "fms", "flv"} and out.fhv.dims == ("basin",)


def test_implausibility_matrix_marks_the_cells_above_the_cutoff():
    import matplotlib

    matplotlib.use("Agg")
    from emucal import plotting

    x, simulated, observed = _toy_ensemble(n=40)
    errors = {"s1": (0.0, 0.02), "s2": (0.0, 0.05)}
    m = diagnostics.history_match(x, simulated, observed, obs_error=errors, discrepancy=errors,
                                  n_candidates=500, seed=0)
    ax = plotting.implausibility_matrix(m)
    assert [t.get_text() for t in ax.texts] == [">99"]  # only basin a, s2; far beyond
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["s1", "s2"]
