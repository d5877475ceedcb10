"""emucal.calibrate on problems whose optimum is known, and on the teaching model."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import xarray as xr

from emucal import calibrate, ensemble, metrics, sampling
from emucal.emulators import GPEmulator
from emucal.parameters import Parameter, ParameterSpace

SPACE = ParameterSpace([Parameter(f"p{i}", 0.5, 0.0, 1.0) for i in range(4)])
OPTIMA = np.array([[0.2, 0.8, 0.5, 0.3], [0.7, 0.1, 0.9, 0.6]])  # one per "basin"


def _toy_skill(params):
    """KGE-like skill: 1 at each basin's optimum, falling off quadratically."""
    params = np.asarray(params)
    return 1.0 - 3.0 * ((params - OPTIMA[:, None, :]) ** 2).sum(-1)


toy_run = ensemble.Runner(_toy_skill, basins=["a", "b"], names=SPACE.names)
TANG = functools.partial(calibrate.tang_batch, n=4, popsize=20, generations=15, seed=0)


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


def test_search_finds_each_basins_maximum():
    pop, fit = calibrate.search(toy_run, 2, 4, popsize=30, generations=60, seed=0)
    np.testing.assert_allclose(pop[:, 0], OPTIMA, atol=0.03)
    assert np.all(np.diff(fit, axis=1) <= 0)  # sorted best first
    again, _ = calibrate.search(toy_run, 2, 4, popsize=30, generations=60, seed=0)
    np.testing.assert_array_equal(pop, again)


def test_the_loop_improves_and_a_history_or_a_checkpoint_continues_it(tmp_path):
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    full = calibrate.loop(toy_run, SPACE, initial, TANG, 2)
    assert full.params.shape == (2, 23, 4) and list(full.after_iteration.values) == [0, 1, 2]
    assert full.iteration.values[0].tolist() == [0] * 15 + [1] * 4 + [2] * 4
    best = full.best_skill.values
    assert np.all(np.diff(best, axis=1) >= 0) and np.all(best[:, -1] > best[:, 0])
    np.testing.assert_array_equal(best, calibrate.best_so_far(full.skill.values, full.iteration.values))
    # a returned history carries on where it stopped
    first = calibrate.loop(toy_run, SPACE, initial, TANG, 1)
    np.testing.assert_array_equal(calibrate.loop(toy_run, SPACE, first, TANG, 2).params.values,
                                  full.params.values)
    # killed during iteration 2 (the third model call), resumed from its checkpoint
    path = tmp_path / "loop.nc"
    start, save = calibrate.checkpoint(path, toy_run, SPACE, initial, TANG)
    assert start is initial and not path.exists()
    with pytest.raises(_Interrupted):
        calibrate.loop(_failing_after(toy_run, 2), SPACE, start, TANG, 2, save=save)
    start, save = calibrate.checkpoint(path, toy_run, SPACE, initial, TANG)
    assert int(start.iteration.max()) == 1  # the initial design and iteration 1 were saved
    resumed = calibrate.loop(toy_run, SPACE, start, TANG, 2, save=save)
    xr.testing.assert_identical(resumed, full)
    # a checkpoint of another rule, design or runner is refused, not mixed in
    for other in [(toy_run, initial, functools.partial(TANG, n=5)), (toy_run, initial[:14], TANG),
                  (dataclasses.replace(toy_run, fingerprint="another model"), initial, TANG)]:
        with pytest.raises(ValueError, match="other settings"):
            calibrate.checkpoint(path, other[0], SPACE, other[1], other[2])
    path.write_bytes(b"not a netCDF file")
    with pytest.raises(ValueError, match="(?s)cannot be read.*Delete it"):
        calibrate.checkpoint(path, toy_run, SPACE, initial, TANG)


def test_a_checkpoint_tells_two_rules_apart(tmp_path):
    path = tmp_path / "loop.nc"
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    start, save = calibrate.checkpoint(path, toy_run, SPACE, initial, TANG)
    calibrate.loop(toy_run, SPACE, start, TANG, 0, save=save)
    # the same rule, built again in a new session, resumes the file
    same = functools.partial(calibrate.tang_batch, n=4, popsize=20, generations=15, seed=0)
    assert isinstance(calibrate.checkpoint(path, toy_run, SPACE, initial, same)[0], xr.Dataset)

    def another_fit(unit, skill, seed=0):
        return calibrate.fit_sse(unit, skill, seed)

    for other in (functools.partial(TANG, seed=1), functools.partial(TANG, fit=another_fit)):
        with pytest.raises(ValueError, match="other settings"):
            calibrate.checkpoint(path, toy_run, SPACE, initial, other)


def test_a_checkpoint_path_that_is_a_folder_or_a_missing_design_is_explained(tmp_path):
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    # a folder is not "damaged": the advice to delete it would lose whatever it holds
    with pytest.raises(ValueError, match="is a folder; a checkpoint is one netCDF file"):
        calibrate.checkpoint(tmp_path, toy_run, SPACE, initial, TANG)
    assert tmp_path.is_dir()
    (tmp_path / "loop.nc").write_bytes(b"not netCDF")
    with pytest.raises(ValueError, match="needs the initial design"):
        calibrate.checkpoint(tmp_path / "loop.nc", toy_run, SPACE, None, TANG)


def test_tangs_batch_is_the_best_point_of_independent_searches():
    # two separate peaks per basin: each search climbs one, and the points are ranked
    class TwoPeaks:
        def predict(self, u):
            near = lambda c: np.exp(-40 * ((u - c) ** 2).sum(-1))
            return 0.9 * near(np.full(4, 0.2)) + 0.6 * near(np.full(4, 0.8))

    fitted = []

    def fit(unit, skill, seed):
        fitted.append((unit.shape, seed))
        return TwoPeaks()

    unit = np.random.default_rng(0).uniform(size=(2, 10, 4))
    iteration = np.zeros((2, 10), int)
    batch = calibrate.tang_batch(unit, np.zeros((2, 10)), iteration, n=8, fit=fit, popsize=20,
                                 generations=40, seed=3)
    assert fitted == [((2, 10, 4), 3 + 1)]  # fitted once on all runs, seeded with the iteration
    assert batch.shape == (2, 8, 4)
    predicted = TwoPeaks().predict(batch)
    assert np.all(np.diff(predicted, axis=1) <= 0)  # best predicted first
    np.testing.assert_allclose(batch[:, 0], 0.2, atol=0.05)
    assert all(len(np.unique(batch[b], axis=0)) == 8 for b in range(2))  # eight searches, eight points
    # each of the n points is the best of its own search: the first search alone finds the same
    pop, _ = calibrate.search(lambda u: np.minimum(TwoPeaks().predict(u.reshape(2, -1, 4)).reshape(len(u), -1), 1),
                              16, 4, popsize=20, generations=40, seed=3 + 1000)
    winners = pop[:, 0].reshape(2, 8, 4)
    for b in range(2):
        assert sorted(map(tuple, winners[b])) == sorted(map(tuple, batch[b]))


class _Drawn:
    """A stand-in emulator: posterior draws are ``mean(u) + sd * noise``."""

    def __init__(self, sd):
        self.sd = sd

    def mean(self, u):
        return -((u - 0.5) ** 2).sum(-1)

    def sample_y(self, u, n_samples=1, seed=0):
        noise = np.random.default_rng(seed).standard_normal((u.shape[0], n_samples, u.shape[1]))
        return self.mean(u)[:, None, :] + self.sd * noise


def test_thompson_follows_the_mean_when_sure_and_spreads_out_when_unsure():
    rng = np.random.default_rng(0)
    unit = rng.uniform(size=(2, 30, 4))
    skill = _toy_skill(unit)
    kw = dict(n_candidates=200, perturb=0.5, step=0.3, seed=1)
    sure = calibrate.thompson(_Drawn(0.0), unit, skill, 6, **kw)
    # every draw agrees with the mean: the batch is the six best candidates by the mean
    candidates = calibrate.candidates_near_best(unit, skill, 200, 0.5, 0.3, np.random.default_rng(1))
    top = np.take_along_axis(candidates, np.argsort(-_Drawn(0).mean(candidates), axis=1)[:, :6, None], axis=1)
    np.testing.assert_array_equal(sure, top)
    unsure = calibrate.thompson(_Drawn(10.0), unit, skill, 6, **kw)
    assert not np.array_equal(np.sort(unsure, axis=1), np.sort(top, axis=1))

    def spread(batch):
        return np.linalg.norm(batch[:, :, None] - batch[:, None], axis=-1).mean()

    assert spread(unsure) > spread(sure)
    assert len(np.unique(unsure.reshape(-1, 4), axis=0)) == 12  # no point proposed twice
    with pytest.raises(ValueError, match="perturb"):
        calibrate.thompson(_Drawn(0.0), unit, skill, 6, perturb=0)
    with pytest.raises(ValueError, match="n_candidates"):
        calibrate.thompson(_Drawn(0.0), unit, skill, 6, n_candidates=5)


def test_thompson_with_a_gp_refines_the_best_run():
    rng = np.random.default_rng(0)
    unit = rng.uniform(size=(2, 30, 4))
    skill = toy_run(unit)
    em = GPEmulator(seed=0).fit(unit, skill)
    new = calibrate.thompson(em, unit, skill, 6, n_candidates=128, perturb=0.3, seed=1)
    assert new.shape == (2, 6, 4) and (new >= 0).all() and (new <= 1).all()
    assert (toy_run(new).mean(axis=1) > skill.mean(axis=1)).all()  # better on average than the runs so far
    np.testing.assert_array_equal(new, calibrate.thompson(em, unit, skill, 6, n_candidates=128,
                                                          perturb=0.3, seed=1))


def test_trust_steps_grow_after_successes_and_shrink_after_failures():
    rising = np.array([[0.1, 0.2, 0.3, 0.4]])  # three improving iterations: double
    flat = np.array([[0.5, 0.5, 0.5, 0.5]])  # three failures: halve
    mixed = np.array([[0.5, 0.6, 0.6, 0.7]])  # neither three in a row
    assert calibrate.trust_steps(rising).tolist() == [0.4]
    assert calibrate.trust_steps(flat).tolist() == [0.1]
    assert calibrate.trust_steps(mixed).tolist() == [0.2]
    assert calibrate.trust_steps(np.full((1, 40), 0.5)).tolist() == [0.0125]  # floored
    assert calibrate.trust_steps(np.concatenate([rising, flat])).tolist() == [0.4, 0.1]  # per basin


def test_thompson_batch_steps_as_the_trust_region_says_and_fits_locally(monkeypatch):
    # basin 0 improved in each of 12 iterations (step 0.4), basin 1 in none of them (0.0125)
    rng = np.random.default_rng(2)
    unit = rng.uniform(size=(2, 40, 4))
    iteration = np.repeat([[0] * 16 + [k for k in range(1, 13) for _ in range(2)]], 2, axis=0)
    skill = np.stack([np.linspace(0, 1, 40), np.r_[1.0, np.zeros(39)]])
    seen = []

    def fit(u, s, seed):
        seen.append(u)
        return _Drawn(0.1)

    batch = calibrate.thompson_batch(unit, skill, iteration, n=5, n_local=12, n_candidates=100, fit=fit, seed=0)
    assert seen[0].shape == (2, 12, 4)  # each basin's 12 runs nearest its best
    best = unit[np.arange(2), skill.argmax(axis=1)]
    distance = np.linalg.norm(unit - best[:, None], axis=-1)
    np.testing.assert_array_equal(np.sort(seen[0], axis=1), np.sort(
        np.take_along_axis(unit, np.argsort(distance, axis=1)[:, :12, None], axis=1), axis=1))
    moved = np.abs(batch - best[:, None]).max(axis=-1)
    steps = calibrate.trust_steps(calibrate.best_so_far(skill, iteration))
    assert steps.tolist() == [0.4, 0.0125]
    assert moved[1].max() < 5 * 0.0125 < moved[0].max()


def test_the_thompson_loop_improves():
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    propose = functools.partial(calibrate.thompson_batch, n=3, n_local=10, n_candidates=100, seed=0)
    hist = calibrate.loop(toy_run, SPACE, initial, propose, 3)
    assert hist.params.shape == (2, 24, 4)
    assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])


def test_nearest_best_takes_the_runs_closest_to_the_best():
    unit = np.array([[[0.0, 0.0], [0.9, 0.9], [0.5, 0.5], [0.45, 0.5], [1.0, 1.0]]])
    skill = np.array([[0.1, 0.2, 0.8, 0.3, np.nan]])  # best run: index 2
    assert calibrate.nearest_best(unit, skill, 2).tolist() == [[2, 3]]
    assert calibrate.nearest_best(unit, skill, 4).tolist() == [[0, 1, 2, 3]]
    assert calibrate.nearest_best(unit, skill, None).tolist() == [[0, 1, 2, 3, 4]]


def test_dds_improves_monotonically_and_is_seeded():
    a = calibrate.dds(toy_run, SPACE, 150, seed=3)
    b = calibrate.dds(toy_run, SPACE, 150, seed=3)
    xr.testing.assert_identical(a, b)
    assert a.best_skill.shape == (2, 150) and a.skill.shape == (2, 150)
    assert np.all(np.diff(a.best_skill.values, axis=1) >= 0)
    assert np.all(a.best_skill.values[:, -1] > 0.97)
    np.testing.assert_array_equal(a.params.values[:, 0], np.broadcast_to(SPACE.defaults, (2, 4)))  # the default first
    assert not np.array_equal(calibrate.dds(toy_run, SPACE, 150, seed=4).params, a.params)
    batched = calibrate.dds(toy_run, SPACE, 150, seed=3, batch=7)
    assert batched.skill.shape == (2, 150) and np.all(batched.best_skill.values[:, -1] > 0.9)
    np.testing.assert_array_equal(batched.best_skill.values[:, -1], batched.skill.max("member"))


@pytest.mark.parametrize("budget", [0, -5, 2.5])
def test_dds_refuses_a_budget_that_is_not_a_count_of_runs(budget):
    with pytest.raises(ValueError, match="n_evaluations"):
        calibrate.dds(toy_run, SPACE, budget)


def test_dds_counts_a_failed_run_as_the_worst():
    fails = dataclasses.replace(toy_run, run=lambda p: np.where(p[..., 0] > 0.6, np.nan, _toy_skill(p)))
    out = calibrate.dds(fails, SPACE, 60, seed=0)
    assert np.isneginf(out.skill.values).any()  # failed runs are kept, as the worst
    top = calibrate.best(out)
    assert np.isfinite(top.skill).all() and (top.values[:, 0] <= 0.6).all()
    assert np.all(out.best_skill.values[:, -1] > 0.9)


def test_best_reads_a_history_so_far_or_within_an_iteration():
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    hist = calibrate.loop(toy_run, SPACE, initial, TANG, 2)
    top = calibrate.best(hist)
    assert top.dims == ("basin", "param")
    np.testing.assert_allclose(top.skill, hist.skill.max("member"))
    np.testing.assert_allclose(toy_run(top.values[:, None])[:, 0], top.skill)
    first = calibrate.best(hist, within_iteration=1)
    np.testing.assert_allclose(first.skill, np.where(hist.iteration == 1, hist.skill, -np.inf).max(axis=1))
    np.testing.assert_allclose(calibrate.best(hist, after_iteration=0).skill,
                               hist.best_skill.sel(after_iteration=0))
    with pytest.raises(ValueError, match="No runs in iteration 5"):
        calibrate.best(hist, within_iteration=5)
    with pytest.raises(ValueError, match="no iterations"):
        calibrate.best(calibrate.dds(toy_run, SPACE, 5), after_iteration=1)
    # member-first order reads the same; another name for the member axis is refused,
    # rather than returned as every run of every basin
    np.testing.assert_array_equal(calibrate.best(hist.transpose("member", "param", "basin", ...)), top)
    with pytest.raises(ValueError, match="rename"):
        calibrate.best(hist.rename(member="run"))
    np.testing.assert_allclose(metrics.from_norm(metrics.to_norm(np.array([-5.0, 0.2, 1.0]))),
                               [-5.0, 0.2, 1.0])


def test_best_of_a_basin_whose_runs_all_failed_is_nan_and_other_datasets_are_named():
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    hist = calibrate.loop(toy_run, SPACE, initial, TANG, 1)
    failed = hist.assign(skill=hist.skill.where(hist.basin != hist.basin[0]))  # basin 0: all NaN
    with pytest.warns(UserWarning, match="Every run of 1 basin"):
        top = calibrate.best(failed)
    assert np.isnan(top.values[0]).all() and np.isfinite(top.values[1:]).all()
    np.testing.assert_array_equal(top.values[1:], calibrate.best(hist).values[1:])
    with pytest.raises(ValueError, match="skill.: None.*argmax"):  # run_ensemble's Dataset, say
        calibrate.best(hist.rename(skill="kge_prime"))


def test_the_loop_and_dds_ask_for_a_runner_not_a_bare_function():
    with pytest.raises(TypeError, match="Runner"):
        calibrate.dds(_toy_skill, SPACE, 10)
    with pytest.raises(TypeError, match="Runner"):
        calibrate.loop(_toy_skill, SPACE, np.zeros((5, 4)), TANG, 1)


def test_a_checkpoint_of_other_basins_or_metric_is_refused(toy, tmp_path):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    path = tmp_path / "loop.nc"
    initial = sampling.sample(space, 3, "lhs", seed=0)
    run_a = ensemble.model_runner(forcing.isel(basin=[0]), attrs, space, period=(2002, 2003))
    start, save = calibrate.checkpoint(path, run_a, space, initial, TANG)
    calibrate.loop(run_a, space, start, TANG, 0, save=save)
    assert path.exists()
    run_b = ensemble.model_runner(forcing.isel(basin=[1]), attrs, space, period=(2002, 2003))
    run_nse = ensemble.model_runner(forcing.isel(basin=[0]), attrs, space, metric="nse",
                                     period=(2002, 2003))
    for other in (run_b, run_nse):
        with pytest.raises(ValueError, match="other settings"):
            calibrate.checkpoint(path, other, space, initial, TANG)


def test_posterior_recovers_a_known_distribution():
    # "emulator": normKGE falls off from 1 at each basin's optimum; no emulator doubt
    centre = OPTIMA[:, None, :]

    def predict(u, return_std=False):
        mu = 1.0 - ((u - centre) ** 2).sum(-1)
        return (mu, np.zeros_like(mu)) if return_std else mu

    # with tau, log L = -(sum of squares)^2 / (2 tau^2): concentrated near the optimum
    init = np.random.default_rng(0).uniform(size=(2, 16, 4))  # chains started anywhere in the cube
    post = calibrate.posterior(predict, SPACE, init, tau=0.02, n_steps=1500, burn=700, seed=1)
    assert post.params.dims == ("basin", "member", "param") and post.params.shape == (2, 16 * 80, 4)
    draws, acc = post.params.values, post.acceptance.values  # SPACE spans 0-1: units = unit cube
    assert np.all((acc > 0.1) & (acc < 0.5))
    np.testing.assert_allclose(np.median(draws, axis=1), OPTIMA, atol=0.05)

    # a larger emulator doubt widens the posterior
    def doubtful(u, return_std=False):
        return 1.0 - ((u - centre) ** 2).sum(-1), np.full(u.shape[:-1], 0.2)

    wide = calibrate.posterior(doubtful, SPACE, init, tau=0.02, n_steps=1500, burn=700, seed=1).params.values
    assert np.all(wide.std(axis=1).mean(-1) > 2 * draws.std(axis=1).mean(-1))
    with pytest.raises(ValueError, match="burn"):
        calibrate.posterior(predict, SPACE, init, n_steps=10, burn=10)


def test_the_likelihood_averages_the_normal_one_over_the_emulators_doubt():
    mu, sd, tau = np.array([[0.2, 0.7, 0.95, 0.95]]), np.array([[0.1, 0.05, 0.01, 0.3]]), 0.05
    got = calibrate.log_likelihood(lambda u, return_std: (mu, sd), np.zeros((1, 4, 2)), tau)
    # the normal likelihood of a perfect score (1) given normKGE f, averaged over f ~ N(mu, sd^2)
    f = np.linspace(-2.0, 3.0, 500_001)[:, None, None]
    density = np.exp(-0.5 * ((f - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
    averaged = np.trapezoid(np.exp(-0.5 * ((1 - f) / tau) ** 2) / (tau * np.sqrt(2 * np.pi)) * density,
                            f, axis=0)
    np.testing.assert_allclose(np.log(averaged) - got, -0.5 * np.log(2 * np.pi), atol=1e-6)  # a constant


def test_posterior_draws_match_mean_and_spread():
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


def test_a_checkpoint_of_another_space_or_basin_order_is_refused(tmp_path):
    # issue 30: a history resumed with the basins in another order (each basin's runs
    # then another's) or in another parameter space was taken as this loop's
    path = tmp_path / "loop.nc"
    initial = sampling.sample(SPACE, 6, "lhs", seed=1)
    start, save = calibrate.checkpoint(path, toy_run, SPACE, initial, TANG)
    calibrate.loop(toy_run, SPACE, start, TANG, 1, save=save)
    swapped = dataclasses.replace(toy_run, basins=np.array(["b", "a"]))
    with pytest.raises(ValueError, match="other settings"):
        calibrate.checkpoint(path, swapped, SPACE, initial, TANG)
    narrower = SPACE.with_range("p0", 0.0, 0.9)
    with pytest.raises(ValueError, match="other settings"):
        calibrate.checkpoint(path, toy_run, narrower, initial, TANG)
    again, _ = calibrate.checkpoint(path, toy_run, SPACE, initial, TANG)
    assert int(again.iteration.max()) == 1
