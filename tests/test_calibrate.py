"""emucal.calibrate on problems whose optimum is known, and on the teaching model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from emucal import calibrate, emulators, ensemble, sampling
from emucal.parameters import Parameter, ParameterSpace

SPACE = ParameterSpace([Parameter(f"p{i}", 0.5, 0.0, 1.0) for i in range(4)])
OPTIMA = np.array([[0.2, 0.8, 0.5, 0.3], [0.7, 0.1, 0.9, 0.6]])  # one per "basin"


def _toy_skill(params):
    """KGE-like skill: 1 at each basin's optimum, falling off quadratically."""
    params = np.asarray(params)
    return 1.0 - 3.0 * ((params - OPTIMA[:, None, :]) ** 2).sum(-1)


toy_run = calibrate.Runner(_toy_skill, basins=["a", "b"], names=SPACE.names)


def _runs(params, skill):
    """Runs as a history: params (basin, member, param) and skill (basin, member)."""
    return xr.Dataset({"params": (("basin", "member", "param"), params),
                       "skill": (("basin", "member"), skill)},
                      coords={"basin": [f"b{i}" for i in range(len(params))], "param": SPACE.names})


def test_search_finds_each_basins_maximum():
    predict = lambda u: toy_run(u)
    pop, fit = calibrate.search(predict, 2, 4, popsize=40, generations=80, seed=0)
    np.testing.assert_allclose(pop[:, 0], OPTIMA, atol=0.02)
    assert np.all(np.diff(fit, axis=1) <= 0)  # sorted best first
    again, _ = calibrate.search(predict, 2, 4, popsize=40, generations=80, seed=0)
    np.testing.assert_array_equal(pop, again)


def test_pick_distinct_keeps_candidates_apart():
    rng = np.random.default_rng(0)
    cands = np.concatenate([np.full((1, 5, 4), 0.5), rng.uniform(size=(1, 30, 4))], axis=1)
    chosen = calibrate.pick_distinct(cands, 6, min_distance=0.1)
    assert chosen.shape == (1, 6, 4)
    np.testing.assert_array_equal(chosen[0, 0], cands[0, 0])  # the best is kept
    dist = np.linalg.norm(chosen[0][:, None] - chosen[0][None], axis=-1) / 2.0
    assert dist[np.triu_indices(6, 1)].min() >= 0.1


def test_iterate_improves_and_resumes():
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    full = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5,
                             popsize=30, generations=30, progress=False)
    assert full.params.shape == (2, 30, 4) and list(full.after_iteration.values) == [0, 1, 2]
    best = full.best_skill.values
    assert np.all(np.diff(best, axis=1) >= 0) and np.all(best[:, -1] > best[:, 0])
    assert np.all(best[:, -1] > 0.95)  # near the optimum of 1
    first = calibrate.iterate(toy_run, SPACE, initial, n_iterations=1, n_per_iteration=5,
                              popsize=30, generations=30, progress=False)
    resumed = calibrate.iterate(toy_run, SPACE, None, n_iterations=2, n_per_iteration=5,
                                popsize=30, generations=30, history=first, progress=False)
    np.testing.assert_array_equal(resumed.params.values, full.params.values)


def test_dds_improves_monotonically_and_is_seeded():
    a = calibrate.dds(toy_run, SPACE, 150, seed=3, progress=False)
    b = calibrate.dds(toy_run, SPACE, 150, seed=3, progress=False)
    np.testing.assert_array_equal(a.best_skill.values, b.best_skill.values)
    assert a.best_skill.shape == (2, 150)
    assert np.all(np.diff(a.best_skill.values, axis=1) >= 0)
    assert np.all(a.best_skill.values[:, -1] > 0.97)
    batched = calibrate.dds(toy_run, SPACE, 150, seed=3, batch=5, progress=False)
    assert batched.skill.shape == (2, 150)


def test_model_runner_matches_the_ensemble(toy):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    samples = sampling.sample(space, 4, "lhs", seed=0)
    run = calibrate.model_runner(forcing, attrs, space, period=(2002, 2004))
    skill = run(np.broadcast_to(samples, (2,) + samples.shape))
    ens = ensemble.run_ensemble(samples, forcing, attrs, metrics=("kge_prime",),
                                periods={"c": (2002, 2004)}, progress=False)
    np.testing.assert_allclose(skill, ens.kge_prime.sel(period="c").values.T, rtol=1e-10)
    with pytest.raises(ValueError, match="basin=2"):
        run(samples)


def test_a_runner_subset_frees_only_the_named_parameters(toy):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    run = calibrate.model_runner(forcing, attrs, space, period=(2002, 2004))
    keep = [space.names[3], space.names[0]]
    reduced = run.subset(keep)
    assert reduced.names == tuple(keep) and reduced.n_basin == run.n_basin
    assert reduced.fingerprint != run.fingerprint  # checkpoints of the two are kept apart
    values = np.array([[[0.3 * space[keep[0]].upper + 0.7 * space[keep[0]].lower,
                         0.5 * (space[keep[1]].lower + space[keep[1]].upper)]]] * run.n_basin)
    full = np.broadcast_to(run.defaults[:, None, :], (run.n_basin, 1, len(space))).copy()
    full[..., space.names.index(keep[0])] = values[..., 0]
    full[..., space.names.index(keep[1])] = values[..., 1]
    np.testing.assert_allclose(reduced(values), run(full))
    with pytest.raises(ValueError, match="2 parameters"):
        reduced(full)
    with pytest.raises(ValueError, match="Unknown parameters"):
        run.subset(["no_such_parameter"])


def test_iterate_and_dds_ask_for_a_runner_not_a_bare_function():
    with pytest.raises(TypeError, match="Runner"):
        calibrate.dds(_toy_skill, SPACE, 10, progress=False)
    with pytest.raises(TypeError, match="Runner"):
        calibrate.iterate(_toy_skill, SPACE, np.zeros((5, 4)), progress=False)
    with pytest.raises(ValueError, match="defaults"):
        calibrate.Runner(_toy_skill, basins=["a", "b"], names=SPACE.names, defaults=np.zeros((3, 4)))


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="emulator must be"):
        calibrate.iterate(toy_run, SPACE, np.zeros((2, 4)), emulator="nn")
    with pytest.raises(ValueError, match="basin_attrs"):
        calibrate.iterate(toy_run, SPACE, np.zeros((2, 4)), emulator="lse")


def test_posterior_recovers_a_known_distribution():
    # "emulator": normKGE falls off from 1 at each basin's optimum; no emulator doubt
    centre = OPTIMA[:, None, :]

    def predict(u, return_std=False):
        mu = 1.0 - ((u - centre) ** 2).sum(-1)
        return (mu, np.zeros_like(mu)) if return_std else mu

    # with tau, log L = -(sum of squares)^2 / (2 tau^2): concentrated near the optimum
    post = calibrate.posterior(predict, SPACE, ["a", "b"], tau=0.02, n_steps=1500, burn=700, seed=1)
    assert post.params.dims == ("basin", "member", "param") and post.basin.values.tolist() == ["a", "b"]
    draws, acc = post.params.values, post.acceptance.values  # SPACE spans 0-1: units = unit cube
    assert np.all((acc > 0.1) & (acc < 0.5))
    np.testing.assert_allclose(np.median(draws, axis=1), OPTIMA, atol=0.05)
    # a larger emulator doubt widens the posterior
    def doubtful(u, return_std=False):
        return 1.0 - ((u - centre) ** 2).sum(-1), np.full(u.shape[:-1], 0.2)

    wide = calibrate.posterior(doubtful, SPACE, ["a", "b"], tau=0.02, n_steps=1500, burn=700,
                               seed=1).params.values
    assert np.all(wide.std(axis=1).mean(-1) > 2 * draws.std(axis=1).mean(-1))


def test_regionalise_transfers_an_attribute_driven_optimum():
    # the optimum of every parameter is the basin's single attribute: learnable across basins
    rng = np.random.default_rng(0)
    n_basin = 10
    attr = np.linspace(0.15, 0.85, n_basin)[:, None]
    optimum = np.repeat(attr, 4, axis=1)

    def run(params):
        return 1.0 - 3.0 * ((np.asarray(params) - optimum[:, None, :]) ** 2).sum(-1)

    params = rng.uniform(size=(n_basin, 40, 4))
    out = calibrate.regionalise(_runs(params, run(params)), attr, SPACE, n_splits=5, seed=0,
                                popsize=30, generations=30)
    chosen, fold = out.params.values, out.fold.values
    assert out.params.dims == ("basin", "param") and out.basin.values[3] == "b3"
    assert chosen.shape == (n_basin, 4) and sorted(set(fold)) == [0, 1, 2, 3, 4]
    ungauged = run(chosen[:, None, :])[:, 0]
    default = run(np.broadcast_to(SPACE.defaults, (n_basin, 1, 4)))[:, 0]
    assert np.median(ungauged) > np.median(default)
    assert np.median(ungauged) > 0.8
    forest = calibrate.regionalise(_runs(params, run(params)), attr, SPACE, emulator="lse_rf",
                                   seed=0, popsize=30, generations=30)
    np.testing.assert_array_equal(forest.fold.values, fold)  # the same split
    by_forest = run(forest.params.values[:, None, :])[:, 0]
    assert np.median(by_forest) > np.median(default) and not np.allclose(by_forest, ungauged)
    with pytest.raises(ValueError, match="emulator must be 'lse' or 'lse_rf'"):
        calibrate.regionalise(_runs(params, run(params)), attr, SPACE, emulator="rf")


def test_regionalise_among_donors_picks_the_donor_the_runs_favour():
    # the first attribute sets every parameter's optimum; the second is noise, so
    # the most similar basin by attributes is often the wrong donor
    rng = np.random.default_rng(1)
    n_basin = 10
    attr = np.column_stack([np.linspace(0.15, 0.85, n_basin), rng.permutation(n_basin)])
    optimum = np.repeat(attr[:, :1], 4, axis=1)

    def run(params):
        return 1.0 - 3.0 * ((np.asarray(params) - optimum[:, None, :]) ** 2).sum(-1)

    params = rng.uniform(size=(n_basin, 40, 4))
    runs = _runs(params, run(params))
    out = calibrate.regionalise(runs, attr, SPACE, among="donors", n_splits=5, seed=0)
    donor = np.searchsorted(runs.basin.values, out.donor.values)
    fold = out.fold.values
    assert np.all(fold[donor] != fold)  # never a basin held out with it
    best_runs = params[np.arange(n_basin), run(params).argmax(axis=1)]
    np.testing.assert_array_equal(out.params.values, best_runs[donor])  # a donor's run, as it is
    by_lse = run(out.params.values[:, None])[:, 0]
    by_attributes = run(calibrate.donor_transfer(calibrate.best(runs), attr, fold).params.values[:, None])[:, 0]
    assert np.median(by_lse) > np.median(by_attributes)
    assert np.mean(np.abs(attr[donor, 0] - attr[:, 0])) < 0.2  # donors with a similar optimum
    with pytest.raises(ValueError, match="among must be 'cube' or 'donors'"):
        calibrate.regionalise(runs, attr, SPACE, among="all")


class _Interrupted(RuntimeError):
    pass


def _failing_after(run, n_calls):
    """A runner that breaks down (like a killed job) after ``n_calls`` model calls."""
    calls = {"n": 0}

    def wrapped(params):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise _Interrupted
        return run(params)

    return dataclasses.replace(run, run=wrapped)


def test_an_interrupted_protocol_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    search = dict(popsize=30, generations=30, progress=False)
    # iterate: killed during iteration 2, resumed from its checkpoint
    full = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5, **search)
    path = tmp_path / "sse.nc"
    with pytest.raises(_Interrupted):
        calibrate.iterate(_failing_after(toy_run, 2), SPACE, initial, n_iterations=2,
                          n_per_iteration=5, checkpoint=path, **search)
    resumed = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5,
                                checkpoint=path, **search)
    np.testing.assert_array_equal(resumed.params.values, full.params.values)
    np.testing.assert_array_equal(resumed.best_skill.values, full.best_skill.values)
    # a checkpoint of other settings is refused, not mixed in
    with pytest.raises(ValueError, match="other settings"):
        calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=6,
                          checkpoint=path, **search)

    # DDS: killed after 7 batches of 5, checkpoints every 10 evaluations
    full = calibrate.dds(toy_run, SPACE, 100, seed=3, batch=5, progress=False)
    path = tmp_path / "dds.nc"
    with pytest.raises(_Interrupted):
        calibrate.dds(_failing_after(toy_run, 8), SPACE, 100, seed=3, batch=5,
                      checkpoint=path, checkpoint_every=10, progress=False)
    calls = []

    def counting(params):
        calls.append(np.shape(params)[1])
        return toy_run(params)

    resumed = calibrate.dds(dataclasses.replace(toy_run, run=counting), SPACE, 100, seed=3, batch=5, checkpoint=path,
                            checkpoint_every=10, progress=False)
    assert sum(calls) == 100 - 31  # the default and six batches were not run again
    for name in ("params", "skill", "best_skill"):
        np.testing.assert_array_equal(resumed[name].values, full[name].values)

    # regionalise: killed in the third fold (its runner is the emulator, so interrupt the search)
    rng = np.random.default_rng(0)
    params = rng.uniform(size=(6, 20, 4))
    skill = 1.0 - ((params - 0.5) ** 2).sum(-1)
    attr = np.linspace(0, 1, 6)[:, None]
    kwargs = dict(n_splits=3, seed=0, popsize=20, generations=10)
    runs = _runs(params, skill)
    first = calibrate.regionalise(runs, attr, SPACE, **kwargs)
    path = tmp_path / "reg.nc"
    real_search = calibrate.search
    seen = {"n": 0}

    def breaking_search(*args, **kw):
        seen["n"] += 1
        if seen["n"] == 3:
            raise _Interrupted
        return real_search(*args, **kw)

    monkeypatch.setattr(calibrate, "search", breaking_search)
    with pytest.raises(_Interrupted):
        calibrate.regionalise(runs, attr, SPACE, checkpoint=path, **kwargs)
    seen["n"] = -10  # no more interruptions; count the folds still to do
    again = calibrate.regionalise(runs, attr, SPACE, checkpoint=path, **kwargs)
    assert seen["n"] == -9  # only the third fold was searched again
    xr.testing.assert_identical(again, first)


def test_thompson_uses_the_uncertainty_and_refines_the_best_run():
    from emucal.emulators import GPEmulator

    rng = np.random.default_rng(0)
    unit = rng.uniform(size=(2, 40, 4))
    skill = toy_run(unit)
    em = GPEmulator(seed=0).fit(unit, skill)
    new = calibrate.thompson(em, unit, skill, 8, n_candidates=256, perturb=0.3, seed=1)
    assert new.shape == (2, 8, 4) and (new >= 0).all() and (new <= 1).all()
    assert len(np.unique(new.reshape(-1, 4), axis=0)) == 16  # no point proposed twice
    # proposals stay near each basin's best run, and are better on average than the runs so far
    best = unit[np.arange(2), skill.argmax(1)]
    assert np.abs(new - best[:, None]).max(axis=2).mean() < 0.6
    assert (toy_run(new).mean(axis=1) > skill.mean(axis=1)).all()
    again = calibrate.thompson(em, unit, skill, 8, n_candidates=256, perturb=0.3, seed=1)
    np.testing.assert_array_equal(new, again)


def test_posterior_draws_match_mean_and_spread():
    from emucal.emulators import GPEmulator

    rng = np.random.default_rng(1)
    x = rng.uniform(size=(3, 30, 2))
    y = np.sin(4 * x[..., 0]) + x[..., 1]
    em = GPEmulator(seed=0, group_size=2).fit(x, y)
    test = rng.uniform(size=(3, 5, 2))
    draws = em.sample_y(test, n_samples=4000, seed=2)
    assert draws.shape == (3, 4000, 5)
    mean, std = em.predict(test, return_std=True)
    np.testing.assert_allclose(draws.mean(axis=1), mean, atol=0.05)
    # the draws are of the latent function: their spread is within the predictive sd
    assert (draws.std(axis=1) <= std * 1.05 + 1e-3).all()


def test_iterate_with_thompson_sampling_improves():
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=3, n_per_iteration=5,
                             acquisition="thompson", n_candidates=200, perturb=0.3,
                             progress=False)
    assert hist.params.shape == (2, 35, 4)
    assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])
    with pytest.raises(ValueError, match="thompson"):
        calibrate.iterate(toy_run, SPACE, initial, acquisition="thompson", emulator="lse",
                          basin_attrs=np.zeros((2, 1)), progress=False)
    with pytest.raises(ValueError, match="acquisition"):
        calibrate.iterate(toy_run, SPACE, initial, acquisition="ucb", progress=False)


def test_donor_transfer_borrows_from_the_closest_basin_of_another_fold():
    values = np.arange(5 * 3, dtype=float).reshape(5, 3)
    calibrated = xr.DataArray(values, dims=("basin", "param"),
                              coords={"basin": list("vwxyz"), "param": ["p0", "p1", "p2"]})
    attrs = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.2, 5.1], [0.05, 0.02]])
    fold = np.array([0, 1, 0, 1, 0])
    out = calibrate.donor_transfer(calibrated, attrs, fold)
    # basins 0 and 4 (fold 0) borrow from basin 1, basin 1 from its closest, 4, not from 3
    assert out.donor.values.tolist() == list("wzyxw")
    np.testing.assert_array_equal(out.params.values, values[[1, 4, 3, 2, 1]])
    assert out.param.values.tolist() == ["p0", "p1", "p2"]
    coords = np.array([[45.0, -70.0], [45.1, -70.1], [30.0, -100.0], [44.0, -71.0], [31.0, -99.0]])
    out = calibrate.donor_transfer(calibrated, coords, fold, metric="distance")
    assert out.donor.values.tolist() == list("wvyvy")
    with pytest.raises(ValueError, match="metric"):
        calibrate.donor_transfer(calibrated, attrs, fold, metric="random")
    with pytest.raises(TypeError, match="best"):
        calibrate.donor_transfer(values, attrs, fold)


@pytest.mark.parametrize("budget", [0, -5, 2.5])
def test_dds_refuses_a_budget_that_is_not_a_count_of_runs(budget):
    with pytest.raises(ValueError, match="n_evaluations"):
        calibrate.dds(toy_run, SPACE, budget, progress=False)


def test_a_checkpoint_of_other_basins_or_metric_is_refused(toy, tmp_path):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    path = tmp_path / "dds.nc"
    run_a = calibrate.model_runner(forcing.isel(basin=[0]), attrs, space, period=(2002, 2003))
    calibrate.dds(run_a, space, 6, checkpoint=path, checkpoint_every=2, progress=False)
    run_b = calibrate.model_runner(forcing.isel(basin=[1]), attrs, space, period=(2002, 2003))
    with pytest.raises(ValueError, match="other settings"):
        calibrate.dds(run_b, space, 6, checkpoint=path, checkpoint_every=2, progress=False)
    run_nse = calibrate.model_runner(forcing.isel(basin=[0]), attrs, space, metric="nse",
                                     period=(2002, 2003))
    with pytest.raises(ValueError, match="other settings"):
        calibrate.dds(run_nse, space, 6, checkpoint=path, checkpoint_every=2, progress=False)
    path.write_bytes(b"not a netCDF file")
    with pytest.raises(ValueError, match="(?s)cannot be read.*Delete it"):
        calibrate.dds(run_a, space, 6, checkpoint=path, progress=False)


def test_hierarchical_emulator_loop_improves_with_either_acquisition():
    initial = sampling.sample(SPACE, 20, "lhs", seed=2)
    attrs = np.array([[0.0], [1.0]])
    for acquisition in ("mean", "thompson"):
        hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5,
                                 emulator="hierarchical", basin_attrs=attrs,
                                 acquisition=acquisition, n_candidates=128, popsize=30,
                                 generations=20, progress=False)
        assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0]), acquisition


def test_best_reads_a_history_so_far_or_within_an_iteration():
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5,
                             popsize=30, generations=30, progress=False)
    top = calibrate.best(hist)
    assert top.dims == ("basin", "param")
    np.testing.assert_allclose(top.skill, hist.skill.max("member"))
    np.testing.assert_allclose(toy_run(top.values[:, None])[:, 0], top.skill)
    first = calibrate.best(hist, within_iteration=1)
    runs_1 = np.where(hist.iteration == 1, hist.skill, -np.inf)
    np.testing.assert_allclose(first.skill, runs_1.max(axis=1))
    np.testing.assert_allclose(calibrate.best(hist, after_iteration=0).skill,
                               hist.best_skill.sel(after_iteration=0))
    with pytest.raises(ValueError, match="No runs in iteration 5"):
        calibrate.best(hist, within_iteration=5)
    # member-first order reads the same; another name for the member axis is refused,
    # rather than returned as every run of every basin
    np.testing.assert_array_equal(calibrate.best(hist.transpose("member", "param", "basin", ...)),
                                  top)
    with pytest.raises(ValueError, match="rename"):
        calibrate.best(hist.rename(member="run"))
    from emucal import metrics
    np.testing.assert_allclose(metrics.from_norm(metrics.to_norm(np.array([-5.0, 0.2, 1.0]))),
                               [-5.0, 0.2, 1.0])


def test_local_fit_sees_the_runs_nearest_the_best_and_still_improves():
    unit = np.array([[[0.0, 0.0], [0.9, 0.9], [0.5, 0.5], [0.45, 0.5], [1.0, 1.0]]])
    skill = np.array([[0.1, 0.2, 0.8, 0.3, np.nan]])  # best run: index 2
    assert calibrate._nearest_best(unit, skill, 2).tolist() == [[2, 3]]
    assert calibrate._nearest_best(unit, skill, None).tolist() == [[0, 1, 2, 3, 4]]
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=3, n_per_iteration=5,
                             acquisition="thompson", n_candidates=200, perturb=0.3, n_local=12,
                             progress=False)
    assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])
    for bad in (4, 12.5):  # fewer than twice the 4 parameters; not a count
        with pytest.raises(ValueError, match="n_local"):
            calibrate.iterate(toy_run, SPACE, initial, n_local=bad, progress=False)


def test_tangs_batch_is_the_best_of_independent_searches():
    # two separate peaks per basin: independent searches find both, and rank them
    def predict(u):
        near = lambda c: np.exp(-40 * ((u - c) ** 2).sum(-1))
        return 0.9 * near(np.full(4, 0.2)) + 0.6 * near(np.full(4, 0.8))

    batch = calibrate._independent_searches(predict, 2, 4, 12, 6, cap=1.0, popsize=20,
                                            generations=40, seed=0)
    assert batch.shape == (2, 6, 4)
    np.testing.assert_allclose(batch[:, 0], 0.2, atol=0.05)  # best first
    assert np.all(np.diff(predict(batch), axis=1) <= 1e-12)
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5,
                             acquisition="tang", popsize=20, generations=20, progress=False)
    assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])


def test_trust_steps_grow_after_successes_and_shrink_after_failures():
    rising = np.array([[0.1, 0.2, 0.3, 0.4]])  # three improving iterations: double
    flat = np.array([[0.5, 0.5, 0.5, 0.5]])  # three failures: halve
    mixed = np.array([[0.5, 0.6, 0.6, 0.7]])  # neither three in a row
    assert calibrate.trust_steps(rising).tolist() == [0.4]
    assert calibrate.trust_steps(flat).tolist() == [0.1]
    assert calibrate.trust_steps(mixed).tolist() == [0.2]
    assert calibrate.trust_steps(np.full((1, 40), 0.5)).tolist() == [0.0125]  # floored
    both = calibrate.trust_steps(np.concatenate([rising, flat]))
    assert both.tolist() == [0.4, 0.1]  # one step per basin
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=4, n_per_iteration=4,
                             acquisition="thompson", n_candidates=200, step="trust",
                             progress=False)
    assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])
    with pytest.raises(ValueError, match="step"):
        calibrate.iterate(toy_run, SPACE, initial, step="wide", progress=False)


def test_hierarchical_loop_refits_the_lse_on_schedule_and_resumes_exactly(tmp_path, monkeypatch):
    initial = sampling.sample(SPACE, 20, "lhs", seed=3)
    attrs = np.array([[0.0], [1.0]])
    kw = dict(n_per_iteration=4, emulator="hierarchical", basin_attrs=attrs,
              acquisition="thompson", n_candidates=64, lse_refit=2, progress=False)
    sizes = []
    original = calibrate.make_lse

    def spy(n_train, **k):
        sizes.append(n_train)
        return original(n_train, **k)

    monkeypatch.setattr(calibrate, "make_lse", spy)
    whole = calibrate.iterate(toy_run, SPACE, initial, n_iterations=4, **kw)
    # refit at iterations 1 and 3 on the runs before each; each basin's LSE has not seen it
    assert sizes == [20, 20, 28, 28]
    sizes.clear()
    path = tmp_path / "h.nc"
    calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, checkpoint=path, **kw)
    resumed = calibrate.iterate(toy_run, SPACE, initial, n_iterations=4, checkpoint=path, **kw)
    np.testing.assert_array_equal(resumed.params.values, whole.params.values)
    assert sizes == [20, 20, 28, 28]  # the resumed part refits at iteration 3 as planned
    with pytest.raises(ValueError, match="lse_refit"):
        calibrate.iterate(toy_run, SPACE, initial, **{**kw, "lse_refit": 0})


def test_tangs_emulators_choose_by_cross_validation_and_improve():
    # a smooth basin (a GP fits it) and a step-shaped one (a forest fits it better)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 60, 4))
    y = np.stack([np.sin(3 * x[0, :, 0]) + x[0, :, 1], np.where(x[1, :, 2] > 0.5, 1.0, -1.0)])
    em = calibrate._ChosenByCV(seed=0).fit(x, y)
    assert em.cv_rmse_.shape == (3, 2) and np.isinf(em.cv_rmse_[2]).all()  # no LSE without attributes
    assert em.choice_.tolist() == ["gp", "rf"]
    u = rng.uniform(size=(2, 30, 4))
    pred = em.predict(u)
    np.testing.assert_allclose(pred[1], em.forest_.predict(u[[1]])[0])  # the forest's basin
    np.testing.assert_allclose(pred[0], em.gp_.predict(u)[0])
    # six basins: the GPs are fitted in two groups, and only groups with a GP basin predict
    x6, y6 = rng.uniform(size=(6, 40, 4)), rng.normal(size=(6, 40))
    six = calibrate._ChosenByCV(seed=0)  # fitted state set by hand: one GP basin, five forests
    six.choice_, six.lse_ = np.array(["rf"] * 5 + ["gp"]), None
    six.gp_ = emulators.GPEmulator(max_iter=20).fit(x6, y6)
    six.forest_ = emulators.RandomForestEmulator(seed=0).fit(x6[:5], y6[:5])
    u6 = rng.uniform(size=(6, 10, 4))
    pred6 = six.predict(u6)
    assert len(six.gp_.groups_) == 2
    np.testing.assert_array_equal(pred6[5], six.gp_.predict(u6)[5])
    np.testing.assert_array_equal(pred6[:5], six.forest_.predict(u6[:5]))
    # eight basins share one step-shaped surface: the LSE learns it from all of them
    x8 = rng.uniform(size=(8, 20, 4))
    y8 = np.where(x8[..., 2] > 0.5, 1.0, -1.0) + 0.01 * rng.normal(size=(8, 20))
    attrs8 = np.arange(8.0)[:, None]
    both = calibrate._ChosenByCV(seed=0, basin_attrs=attrs8).fit(x8, y8)
    assert (both.cv_rmse_.min(axis=0) <= calibrate._ChosenByCV(seed=0).fit(x8, y8).cv_rmse_.min(axis=0)).all()
    assert (both.choice_ == "lse").sum() >= 4
    lse = both.choice_ == "lse"
    u8 = rng.uniform(size=(8, 10, 4))
    np.testing.assert_allclose(both.predict(u8)[lse],
                               calibrate._predict_lse(both.lse_, u8, attrs8)[lse])
    initial = sampling.sample(SPACE, 20, "lhs", seed=1)
    attrs = np.array([[0.0], [1.0]])
    for emulator in ("sse_gp_or_rf", "lse_rf", "lse_or_sse"):
        hist = calibrate.iterate(toy_run, SPACE, initial, n_iterations=2, n_per_iteration=5,
                                 emulator=emulator, basin_attrs=attrs, acquisition="tang",
                                 popsize=20, generations=20, progress=False)
        assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0]), emulator
    with pytest.raises(ValueError, match="needs per-basin GPs"):
        calibrate.iterate(toy_run, SPACE, initial, emulator="lse_rf", basin_attrs=attrs,
                          acquisition="thompson", progress=False)
