"""emucal.metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emucal import metrics

OBS = np.array([1.0, 2.0, 3.0, 4.0])
SIM = np.array([2.0, 2.0, 4.0, 4.0])
# by hand: mu_o = 2.5, mu_s = 3, sd_o = sqrt(1.25), sd_s = 1 (population sd),
# cov = mean((s-3)(o-2.5)) = (1.5 + 0.5 + 0.5 + 1.5)/4 = 1 -> r = 1/sqrt(1.25)
R = 1 / math.sqrt(1.25)
ALPHA = 1 / math.sqrt(1.25)
BETA = 3 / 2.5
GAMMA = (1 / 3) / (math.sqrt(1.25) / 2.5)


def test_kge_by_hand():
    expected = 1 - math.sqrt((R - 1) ** 2 + (ALPHA - 1) ** 2 + (BETA - 1) ** 2)
    assert metrics.kge(SIM, OBS) == pytest.approx(expected, rel=1e-12)
    r, alpha, beta = metrics.kge_components(SIM, OBS)
    assert (r, alpha, beta) == pytest.approx((R, ALPHA, BETA), rel=1e-12)


def test_kge_prime_and_norm_kge_by_hand():
    expected = 1 - math.sqrt((R - 1) ** 2 + (GAMMA - 1) ** 2 + (BETA - 1) ** 2)
    assert metrics.kge_prime(SIM, OBS) == pytest.approx(expected, rel=1e-12)
    assert metrics.norm_kge(SIM, OBS) == pytest.approx(expected / (2 - expected), rel=1e-12)
    assert metrics.kge_components(SIM, OBS, modified=True)[1] == pytest.approx(GAMMA)


def test_nse_pbias_by_hand():
    # sum((s-o)^2) = 1 + 0 + 1 + 0 = 2; sum((o-2.5)^2) = 5
    assert metrics.nse(SIM, OBS) == pytest.approx(1 - 2 / 5)
    assert metrics.percent_bias(SIM, OBS) == pytest.approx(100 * 2 / 10)


def test_perfect_and_mean_benchmarks():
    rng = np.random.default_rng(0)
    obs = rng.gamma(2.0, 1.0, 365)
    assert metrics.kge(obs, obs) == pytest.approx(1.0)
    assert metrics.nse(obs, obs) == pytest.approx(1.0)
    assert metrics.log_nse(obs, obs) == pytest.approx(1.0)
    assert metrics.nse(np.full_like(obs, obs.mean()), obs) == pytest.approx(0.0, abs=1e-12)
    assert metrics.norm_kge(obs, obs) == pytest.approx(1.0)


def test_nan_observations_are_left_out():
    obs = np.array([1.0, np.nan, 2.0, 3.0, 4.0])
    sim = np.array([2.0, 99.0, 2.0, 4.0, 4.0])
    assert metrics.kge(sim, obs) == pytest.approx(metrics.kge(SIM, OBS))
    assert metrics.nse(sim, obs) == pytest.approx(0.6)


def test_vectorised_over_leading_dims_and_xarray():
    rng = np.random.default_rng(1)
    obs = rng.gamma(2.0, 1.0, (3, 100))  # basin x time
    sim = obs[None] * rng.uniform(0.5, 1.5, (4, 3, 1)) + rng.normal(0, 0.1, (4, 3, 100))
    scores = metrics.kge_prime(sim, obs)
    assert scores.shape == (4, 3)
    assert scores[2, 1] == pytest.approx(metrics.kge_prime(sim[2, 1], obs[1]))
    time = pd.date_range("2000-01-01", periods=100)
    da_obs = xr.DataArray(obs, dims=("basin", "time"), coords={"time": time})
    da_sim = xr.DataArray(sim, dims=("member", "basin", "time"), coords={"time": time})
    out = metrics.kge_prime(da_sim, da_obs)
    assert out.dims == ("member", "basin")
    np.testing.assert_allclose(out.values, scores)


def test_water_years():
    time = pd.to_datetime(["1993-09-30", "1993-10-01", "1994-09-30", "2013-10-01"])
    np.testing.assert_array_equal(metrics.water_year(time), [1993, 1994, 1994, 2014])
    np.testing.assert_array_equal(metrics.water_year_window(time, (1994, 1994)),
                                  [False, True, True, False])
    with pytest.raises(ValueError, match="after"):
        metrics.water_year_window(time, (2000, 1999))
    with pytest.raises(ValueError, match="validation.: water years 2008-2013 hold none.*cover water years 1993-2014"):
        metrics.water_year_window(time, "validation")


def test_a_period_is_a_name_or_a_pair_of_water_years():
    assert metrics.water_years("calibration") == metrics.PERIODS["calibration"]
    assert metrics.water_years(np.array([2001, 2005])) == (2001, 2005)
    time = pd.date_range("1994-10-01", "2008-09-30")
    by_name = metrics.water_year_window(time, "calibration")
    assert by_name.sum() == (pd.Timestamp("2007-09-30") - pd.Timestamp("1994-10-01")).days + 1
    np.testing.assert_array_equal(by_name, metrics.water_year_window(time, (1995, 2007)))
    for bad in ("calib", (1995,), "1995-2007", 1995):
        with pytest.raises(ValueError, match="period"):
            metrics.water_years(bad)


def test_a_period_beyond_the_record_is_refused_not_scored_on_fewer_years():
    # a record of water years 1995-2005 scored as "calibration" (1995-2007) would carry the
    # label of years it never saw; so would a hole of a whole water year inside the record
    time = pd.date_range("1994-10-01", "2005-09-30")
    with pytest.raises(ValueError, match=r"'calibration'.*cover water years 1995-2005.*2006-2007"):
        metrics.water_year_window(time, "calibration")
    holed = time[(time < "1998-10-01") | (time >= "1999-10-01")]
    with pytest.raises(ValueError, match=r"water year\(s\) 1999\b"):
        metrics.water_year_window(holed, (1996, 2001))
    assert metrics.water_year_window(time, (1995, 2005)).all()


def test_a_water_year_is_a_whole_number():
    for bad in ((True, 2000), (1995.5, 2000), (1995, "2000"), (np.bool_(True), 2000)):
        with pytest.raises(ValueError, match="whole numbers"):
            metrics.water_years(bad)
    assert metrics.water_years((1995.0, np.int64(2000))) == (1995, 2000)


def test_blocked_evaluation_equals_one_pass():
    rng = np.random.default_rng(5)
    obs = rng.gamma(2.0, 1.0, (3, 50))
    sim = obs * rng.uniform(0.5, 1.5, (4, 3, 1))
    whole = metrics._blocked(metrics._kge_parts, sim, obs, 4, block=10**9)
    pieces = metrics._blocked(metrics._kge_parts, sim, obs, 4, block=60)  # split by member, then row
    for a, b in zip(whole, pieces):
        np.testing.assert_array_equal(a, b)


def test_emulator_scores_are_per_row_and_agree_with_their_definitions():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(4, 50))
    pred = truth + rng.normal(scale=0.5, size=truth.shape)
    r2 = metrics.r2_score(truth, pred)
    assert r2.shape == (4,)
    expected = 1 - ((truth - pred) ** 2).sum(1) / ((truth - truth.mean(1, keepdims=True)) ** 2).sum(1)
    np.testing.assert_allclose(r2, expected)
    np.testing.assert_allclose(metrics.rmse(truth, pred), np.sqrt(((truth - pred) ** 2).mean(1)))
    # another axis, and 1-D input gives a float
    np.testing.assert_allclose(metrics.r2_score(truth.T, pred.T, axis=0), r2)
    assert isinstance(metrics.r2_score(truth[0], pred[0]), float)
    # a predictive sd equal to the true error sd covers about the nominal share
    noise = rng.normal(size=200_000)
    share = metrics.coverage(noise, np.zeros_like(noise), np.ones_like(noise), level=0.9)
    assert abs(share - 0.9) < 0.005
    assert metrics.coverage(noise, 0 * noise, 0.5 * np.ones_like(noise)) < 0.7  # over-confident
    with pytest.raises(ValueError, match="level"):
        metrics.coverage(noise, noise, noise, level=90)


def test_a_series_with_an_infinite_value_has_no_score():
    # issue 30: a run that blew up on one day scored on its other days (KGE' 1.0)
    obs = np.arange(1.0, 11.0)
    blown = np.r_[np.arange(1.0, 10.0), np.inf]
    for score in (metrics.kge_prime, metrics.kge, metrics.nse, metrics.percent_bias,
                  metrics.log_nse, metrics.norm_kge):
        assert np.isnan(score(blown, obs)), score.__name__
        assert np.isnan(score(obs, blown)), score.__name__
    both = np.stack([obs, blown])
    out = metrics.kge_prime(both, obs)
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1])
    assert metrics.kge_prime(np.r_[obs[:9], np.nan], obs) == pytest.approx(1.0)  # NaN: left out
