"""emucal.regionalise: large-sample emulators in the loop, and parameters for basins without flow."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import xarray as xr

from emucal import calibrate, ensemble, regionalise, sampling
from emucal.parameters import Parameter, ParameterSpace

SPACE = ParameterSpace([Parameter(f"p{i}", 0.5, 0.0, 1.0) for i in range(4)])
OPTIMA = np.array([[0.2, 0.8, 0.5, 0.3], [0.7, 0.1, 0.9, 0.6]])
toy_run = ensemble.Runner(lambda p: 1.0 - 3.0 * ((np.asarray(p) - OPTIMA[:, None, :]) ** 2).sum(-1),
                           basins=["a", "b"], names=SPACE.names)


def _runs(params, skill):
    """Runs as a history: params (basin, member, param) and skill (basin, member)."""
    return xr.Dataset({"params": (("basin", "member", "param"), params),
                       "skill": (("basin", "member"), skill)},
                      coords={"basin": [f"b{i}" for i in range(len(params))], "param": SPACE.names})


def _attribute_driven(n_basin, n_run, seed, noise_attribute=False):
    """Runs of basins whose optimum (every parameter) is their first attribute."""
    rng = np.random.default_rng(seed)
    attr = np.linspace(0.15, 0.85, n_basin)[:, None]
    if noise_attribute:  # a second attribute that says nothing about the optimum
        attr = np.column_stack([attr, rng.permutation(n_basin)])
    optimum = np.repeat(attr[:, :1], 4, axis=1)

    def run(params):
        return 1.0 - 3.0 * ((np.asarray(params) - optimum[:, None, :]) ** 2).sum(-1)

    params = rng.uniform(size=(n_basin, n_run, 4))
    return _runs(params, run(params)), attr, run


def test_regionalise_transfers_an_attribute_driven_optimum():
    runs, attr, run = _attribute_driven(16, 30, seed=0)  # a forest needs a few training basins
    default = run(np.broadcast_to(SPACE.defaults, (16, 1, 4)))[:, 0]
    forest = regionalise.regionalise(runs, attr, SPACE, n_splits=4, seed=0,
                                     search_kw=dict(popsize=15, generations=15))
    chosen, fold = forest.params.values, forest.fold.values
    assert forest.params.dims == ("basin", "param") and forest.basin.values[3] == "b3"
    assert chosen.shape == (16, 4) and sorted(set(fold)) == [0, 1, 2, 3]
    ungauged = run(chosen[:, None, :])[:, 0]
    # well above the default, and near each basin's own best run, which it never saw
    assert np.median(ungauged) > np.median(default) + 0.1
    assert np.median(ungauged) > np.median(runs.skill.max("member")) - 0.1
    with pytest.raises(ValueError, match="search_kw takes popsize and generations"):
        regionalise.regionalise(runs, attr, SPACE, search_kw=dict(popsize=15, maxiter=3))


def test_regionalise_among_donors_picks_the_donor_the_runs_favour():
    # the second attribute is noise, so the most similar basin by attributes is often the wrong donor
    runs, attr, run = _attribute_driven(16, 30, seed=1, noise_attribute=True)
    out = regionalise.regionalise(runs, attr, SPACE, among="donors", n_splits=4, seed=0)
    donor = np.array([list(runs.basin.values).index(b) for b in out.donor.values])
    fold = out.fold.values
    assert np.all(fold[donor] != fold)  # never a basin held out with it
    params = runs.params.values
    best_runs = params[np.arange(16), runs.skill.values.argmax(axis=1)]
    np.testing.assert_array_equal(out.params.values, best_runs[donor])  # a donor's run, as it is
    by_lse = run(out.params.values[:, None])[:, 0]
    similar = regionalise.donor_transfer(calibrate.best(runs), attr, fold)
    assert np.median(by_lse) > np.median(run(similar.params.values[:, None])[:, 0])
    assert np.mean(np.abs(attr[donor, 0] - attr[:, 0])) < 0.2  # donors with a similar optimum
    with pytest.raises(ValueError, match="among must be 'cube' or 'donors'"):
        regionalise.regionalise(runs, attr, SPACE, among="all")


def test_regionalise_floors_failed_runs_and_leaves_out_runs_without_parameters(monkeypatch):
    runs, attr, _ = _attribute_driven(6, 20, seed=2)
    runs["skill"][:, :5] = np.nan  # five failed runs in every basin
    rows = []
    fit = regionalise.RandomForestEmulator.fit

    def spy(self, x, y):
        rows.append(np.asarray(y).copy())
        return fit(self, x, y)

    monkeypatch.setattr(regionalise.RandomForestEmulator, "fit", spy)
    kw = dict(n_splits=3, seed=0, search_kw=dict(popsize=10, generations=5))
    dropped = regionalise.regionalise(  # Tang et al.'s way: the failed runs are not learnt
        runs.assign(params=runs.params.where(runs.skill.notnull())), attr, SPACE, **kw)
    n_train = [6 - np.sum(dropped.fold.values == k) for k in range(3)]
    assert [len(y) for y in rows] == [15 * n for n in n_train]  # 15 valid runs per training basin
    assert all(np.isfinite(y).all() for y in rows)
    rows.clear()
    floored = regionalise.regionalise(runs, attr, SPACE, **kw)
    assert [len(y) for y in rows] == [20 * n for n in n_train]
    assert all(np.isclose(y, -1, atol=1e-5).sum() == 5 * n for y, n in zip(rows, n_train))
    assert not np.allclose(dropped.params.values, floored.params.values)


class _Interrupted(RuntimeError):
    pass


def test_an_interrupted_regionalisation_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    params = rng.uniform(size=(6, 15, 4))
    runs = _runs(params, 1.0 - ((params - 0.5) ** 2).sum(-1))
    attr = np.linspace(0, 1, 6)[:, None]
    kwargs = dict(n_splits=3, seed=0, search_kw=dict(popsize=10, generations=5))
    first = regionalise.regionalise(runs, attr, SPACE, **kwargs)
    path = tmp_path / "reg.nc"
    real_search = regionalise.search
    seen = {"n": 0}

    def breaking_search(*args, **kw):  # killed in the third fold
        seen["n"] += 1
        if seen["n"] == 3:
            raise _Interrupted
        return real_search(*args, **kw)

    monkeypatch.setattr(regionalise, "search", breaking_search)
    with pytest.raises(_Interrupted):
        regionalise.regionalise(runs, attr, SPACE, checkpoint=path, **kwargs)
    seen["n"] = -10  # no more interruptions; count the folds still to do
    again = regionalise.regionalise(runs, attr, SPACE, checkpoint=path, **kwargs)
    assert seen["n"] == -9  # only the third fold was searched again
    xr.testing.assert_identical(again, first)
    with pytest.raises(ValueError, match="other settings"):
        regionalise.regionalise(runs, attr, SPACE, checkpoint=path, **{**kwargs, "seed": 1})


def test_donor_transfer_borrows_from_the_closest_basin_of_another_fold():
    values = np.arange(5 * 3, dtype=float).reshape(5, 3)
    calibrated = xr.DataArray(values, dims=("basin", "param"),
                              coords={"basin": list("vwxyz"), "param": ["p0", "p1", "p2"]})
    attrs = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.2, 5.1], [0.05, 0.02]])
    fold = np.array([0, 1, 0, 1, 0])
    out = regionalise.donor_transfer(calibrated, attrs, fold)
    # basins 0 and 4 (fold 0) borrow from basin 1, basin 1 from its closest, 4, not from 3
    assert out.donor.values.tolist() == list("wzyxw")
    np.testing.assert_array_equal(out.params.values, values[[1, 4, 3, 2, 1]])
    assert out.param.values.tolist() == ["p0", "p1", "p2"]
    coords = np.array([[45.0, -70.0], [45.1, -70.1], [30.0, -100.0], [44.0, -71.0], [31.0, -99.0]])
    out = regionalise.donor_transfer(calibrated, coords, fold, metric="distance")
    assert out.donor.values.tolist() == list("wvyvy")
    with pytest.raises(ValueError, match="metric"):
        regionalise.donor_transfer(calibrated, attrs, fold, metric="random")
    with pytest.raises(TypeError, match="best"):
        regionalise.donor_transfer(values, attrs, fold)
    with pytest.raises(ValueError, match="another fold"):
        regionalise.donor_transfer(calibrated, attrs, np.zeros(5, int))


def test_the_forest_lse_learns_from_every_basin_and_improves_tangs_loop():
    unit = np.random.default_rng(3).uniform(size=(2, 12, 4))
    skill = toy_run(unit)
    skill[0, 0] = np.nan
    attrs = np.array([[0.0], [1.0]])
    lse = regionalise.lse_forest(unit, skill, 0, basin_attrs=attrs)
    x, y = regionalise.lse_rows(unit, skill, attrs, np.arange(2))
    assert x.shape == (24, 5) and y[0] == pytest.approx(-1, abs=1e-5)  # a failed run is the worst
    pred = lse.predict(unit)
    assert pred.shape == (2, 12) and (np.abs(pred) <= 1).all()
    assert np.corrcoef(pred[1], skill[1])[0, 1] > 0.5  # it has seen these runs
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    propose = functools.partial(calibrate.tang_batch, n=4, fit=functools.partial(
        regionalise.lse_forest, basin_attrs=attrs), popsize=15, generations=10, seed=0)
    hist = calibrate.loop(toy_run, SPACE, initial, propose, 2)
    assert hist.params.shape == (2, 23, 4)
    # a forest predicts averages of runs it has seen: its search proposes where the runs were good
    new = hist.iteration.values > 0
    assert np.all(np.where(new, hist.skill, np.nan).mean(axis=1, where=new)
                  > np.where(~new, hist.skill, np.nan).mean(axis=1, where=~new))


def test_lse_by_folds_predicts_each_basin_from_the_other_basins(monkeypatch):
    sizes = []
    original = regionalise.make_lse

    def spy(n_train, **kw):
        sizes.append(n_train)
        return original(n_train, **kw)

    monkeypatch.setattr(regionalise, "make_lse", spy)
    unit = np.random.default_rng(4).uniform(size=(3, 10, 4))
    lse = regionalise.lse_by_folds(unit, np.zeros((3, 10)), np.arange(3.0)[:, None], seed=0)
    held = [h.tolist() for h, _ in lse.models]
    assert sorted(b for h in held for b in h) == [0, 1, 2]  # every basin in one fold
    assert sizes == [10 * (3 - len(h)) for h in held]  # trained on the other basins' runs only


def test_the_hierarchical_loop_refits_its_lse_on_schedule_and_resumes_exactly(tmp_path, monkeypatch):
    initial = sampling.sample(SPACE, 12, "lhs", seed=3)
    attrs = np.array([[0.0], [1.0]])
    settings = dict(n=3, n_candidates=32, seed=0)
    sizes = []
    original = regionalise.make_lse

    def spy(n_train, **kw):
        sizes.append(n_train)
        return original(n_train, **kw)

    monkeypatch.setattr(regionalise, "make_lse", spy)
    whole = calibrate.loop(toy_run, SPACE, initial, regionalise.hierarchical_rule(attrs, 2, **settings), 3)
    # refit at iterations 1 and 3 on the runs before each; each basin's LSE has not seen it
    assert sizes == [12, 12, 18, 18]
    assert np.all(whole.best_skill.values[:, -1] > whole.best_skill.values[:, 0])
    sizes.clear()
    path = tmp_path / "h.nc"
    rule = regionalise.hierarchical_rule(attrs, 2, **settings)
    start, save = calibrate.checkpoint(path, toy_run, SPACE, initial, rule)
    calibrate.loop(toy_run, SPACE, start, rule, 2, save=save)
    rule = regionalise.hierarchical_rule(attrs, 2, **settings)  # a new session
    start, save = calibrate.checkpoint(path, toy_run, SPACE, initial, rule)
    resumed = calibrate.loop(toy_run, SPACE, start, rule, 3, save=save)
    np.testing.assert_array_equal(resumed.params.values, whole.params.values)
    assert sizes == [12, 12, 18, 18]  # the resumed part refits at iteration 3 as planned
