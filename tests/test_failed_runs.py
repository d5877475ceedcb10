"""Failed runs (NaN skill) in the emulators' training data, and Tang et al.'s spatial CV.

emucal counts a failed run as normKGE -1 (``calibrate.fit_sse``, the
default); Tang et al.'s code leaves it out, which the benchmarks run as
``variants.drop_failed``. ``protocol.tang_spatial_cv`` is Tang et al.'s
spatial cross-validation of their forest LSE (initial runs only, failed runs
left out, ten proposals per held-out basin).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from emucal import calibrate, emulators, ensemble, regionalise, sampling
from emucal.parameters import Parameter, ParameterSpace


def _load(name):
    """A benchmarks/ module by path, registered under its name (protocol imports variants)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


variants, protocol = _load("variants"), _load("protocol")

SPACE = ParameterSpace([Parameter(f"p{i}", 0.5, 0.0, 1.0) for i in range(4)])
OPTIMA = np.array([[0.2, 0.8, 0.5, 0.3], [0.7, 0.1, 0.9, 0.6]])


def _skill(params):
    """KGE-like skill, 1 at each basin's optimum; a run with p3 above 0.8 fails (NaN)."""
    params = np.asarray(params)
    skill = 1.0 - 3.0 * ((params - OPTIMA[:, None, :]) ** 2).sum(-1)
    return np.where(params[..., 3] > 0.8, np.nan, skill)


failing = ensemble.Runner(_skill, basins=["a", "b"], names=SPACE.names)
never_failing = ensemble.Runner(lambda p: np.nan_to_num(_skill(np.minimum(p, 0.8)), nan=0.0),
                                 basins=["a", "b"], names=SPACE.names)


def test_valid_nearest_best_keeps_as_many_valid_runs_in_every_basin():
    unit = np.array([[[0.0, 0.0], [0.9, 0.9], [0.5, 0.5], [0.45, 0.5], [1.0, 1.0]],
                     [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4], [0.6, 0.6]]])
    skill = np.array([[0.1, np.nan, 0.8, 0.3, np.nan],  # 3 valid runs, best: index 2
                      [0.5, 0.4, 0.3, 0.2, 0.1]])  # 5 valid runs, best: index 0
    assert variants.valid_nearest_best(unit, skill).tolist() == [[0, 2, 3], [0, 1, 2]]
    assert variants.valid_nearest_best(unit, skill, 2).tolist() == [[2, 3], [0, 1]]
    with pytest.raises(ValueError, match="Basin 0 has 1 run"):
        variants.valid_nearest_best(unit, np.where([[1, 0, 0, 0, 0], [1] * 5], skill, np.nan))


def test_drop_trains_on_the_runs_that_did_not_fail_and_floor_on_all(monkeypatch):
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    unit = np.broadcast_to(initial, (2, 20, 4)).copy()
    skill = failing(unit)
    n_valid = np.isfinite(skill).sum(axis=1)
    assert 0 < n_valid.min() < 20  # the design does enter the failing region
    seen = []
    real_fit = emulators.GPEmulator.fit

    def spy(self, x, y):
        seen.append(np.asarray(y).copy())
        return real_fit(self, x, y)

    monkeypatch.setattr(emulators.GPEmulator, "fit", spy)
    variants.drop_failed(unit, skill, seed=0, fit=calibrate.fit_sse)
    assert seen[-1].shape == (2, n_valid.min()) and np.isfinite(seen[-1]).all()
    assert seen[-1].min() > -0.99  # no floored run among them
    calibrate.fit_sse(unit, skill, seed=0)  # emucal's default: every run, a failed one at -1
    assert seen[-1].shape == (2, 20)
    assert np.isclose(seen[-1], -1, atol=1e-5).sum() == np.isnan(skill).sum()


def test_tangs_loop_dropping_failed_runs_calibrates_and_equals_floor_without_failures():
    initial = sampling.sample(SPACE, 15, "lhs", seed=2)

    def tang(fit):
        return functools.partial(calibrate.tang_batch, n=4, fit=fit, popsize=15, generations=10, seed=0)

    drop = tang(functools.partial(variants.drop_failed, fit=variants.fit_gp_or_forest))
    floor = tang(variants.fit_gp_or_forest)
    dropped = calibrate.loop(failing, SPACE, initial, drop, 2)
    floored = calibrate.loop(failing, SPACE, initial, floor, 2)
    assert np.isnan(dropped.skill.values).any()  # failed runs stay in the history
    assert not np.array_equal(dropped.params.values, floored.params.values)
    for hist in (dropped, floored):
        assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])
    np.testing.assert_array_equal(  # nothing failed: the two are one loop
        calibrate.loop(never_failing, SPACE, initial, drop, 1).params.values,
        calibrate.loop(never_failing, SPACE, initial, floor, 1).params.values)


def test_tangs_spatial_cv_trains_on_the_valid_initial_runs_of_the_other_basins(monkeypatch):
    rng = np.random.default_rng(0)
    n_basin, n_initial, n_later = 10, 30, 8
    attr = np.linspace(0.15, 0.85, n_basin)[:, None]  # the optimum of every parameter
    params = rng.uniform(size=(n_basin, n_initial + n_later, 4))
    skill = 1.0 - 3.0 * ((params - attr[:, None, :]) ** 2).sum(-1)
    skill[:, :3] = np.nan  # three failed initial runs per basin
    iteration = np.repeat([[0] * n_initial + [1] * n_later], n_basin, axis=0)
    history = xr.Dataset({"params": (("basin", "member", "param"), params),
                          "skill": (("basin", "member"), skill),
                          "iteration": (("basin", "member"), iteration)})
    rows = []
    real_fit = emulators.RandomForestEmulator.fit

    def spy(self, x, y):
        rows.append((np.asarray(x).copy(), np.asarray(y).copy()))
        return real_fit(self, x, y)

    monkeypatch.setattr(emulators.RandomForestEmulator, "fit", spy)
    monkeypatch.setattr(protocol, "TANG_LSE_SEARCH", dict(popsize=20, generations=15))
    proposals, fold = protocol.tang_spatial_cv(history, attr, SPACE, seed=3)
    assert proposals.shape == (n_basin, protocol.N_PROPOSALS, 4)
    assert np.all(proposals.std(axis=1) > 0)  # independent searches, not one point ten times
    np.testing.assert_array_equal(  # the folds of regionalise with the same seed
        fold, regionalise.regionalise(history, attr, SPACE, seed=3,
                                      search_kw=dict(popsize=10, generations=2)).fold.values)
    for k, (x, y) in enumerate(rows[:5]):
        train = np.flatnonzero(fold != k)
        assert len(y) == 27 * len(train) and np.isfinite(y).all()  # valid initial runs only
        assert set(np.round(x[:, -1], 9)) == set(np.round(attr[train, 0], 9))  # no held-out basin
    own = 1.0 - 3.0 * ((proposals - attr[:, None, :]) ** 2).sum(-1)  # skill in the held-out basin
    assert np.median(np.median(own, axis=1)) > np.nanmedian(skill[:, :n_initial]) + 0.5  # > a random run
