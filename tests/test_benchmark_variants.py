"""benchmarks/variants.py: the research variants of the calibration loop that only the benchmarks run."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from emucal import calibrate, emulators, ensemble, regionalise, sampling
from emucal.parameters import Parameter, ParameterSpace

_spec = importlib.util.spec_from_file_location(
    "variants", Path(__file__).resolve().parents[1] / "benchmarks" / "variants.py")
variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(variants)

SPACE = ParameterSpace([Parameter(f"p{i}", 0.5, 0.0, 1.0) for i in range(4)])
OPTIMA = np.array([[0.2, 0.8, 0.5, 0.3], [0.7, 0.1, 0.9, 0.6]])
toy_run = ensemble.Runner(lambda p: 1.0 - 3.0 * ((np.asarray(p) - OPTIMA[:, None, :]) ** 2).sum(-1),
                           basins=["a", "b"], names=SPACE.names)


def test_gp_or_forest_takes_per_basin_the_emulator_that_cross_validates_best():
    # a smooth basin (a GP fits it) and a step-shaped one (a forest fits it better)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 30, 4))
    y = np.stack([np.sin(3 * x[0, :, 0]) + x[0, :, 1], np.where(x[1, :, 2] > 0.5, 1.0, -1.0)])
    em = variants.GPOrForest(seed=0).fit(x, y)
    assert em.cv_rmse_.shape == (3, 2) and np.isinf(em.cv_rmse_[2]).all()  # no LSE without attributes
    assert em.choice_.tolist() == ["gp", "rf"]
    u = rng.uniform(size=(2, 30, 4))
    pred = em.predict(u)
    np.testing.assert_array_equal(pred[1], em.forest_.predict(u[[1]])[0])  # the forest's basin
    np.testing.assert_array_equal(pred[0], em.gp_.predict(u)[0])
    # six basins: the GPs are fitted in two groups, and only groups with a GP basin predict
    x6, y6 = rng.uniform(size=(6, 20, 4)), rng.normal(size=(6, 20))
    six = variants.GPOrForest(seed=0)  # fitted state set by hand: one GP basin, five forests
    six.choice_, six.lse_ = np.array(["rf"] * 5 + ["gp"]), None
    six.gp_ = emulators.GPEmulator(max_iter=20, group_size=3).fit(x6, y6)
    six.forest_ = emulators.RandomForestEmulator(seed=0).fit(x6[:5], y6[:5])
    u6 = rng.uniform(size=(6, 10, 4))
    pred6 = six.predict(u6)
    assert len(six.gp_.groups_) == 2
    np.testing.assert_array_equal(pred6[5], six.gp_.predict(u6)[5])
    np.testing.assert_array_equal(pred6[:5], six.forest_.predict(u6[:5]))


def test_the_forest_lse_competes_where_basins_share_a_surface():
    # four basins share one step-shaped surface: the LSE learns it from all of them
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 12, 4))
    y = np.where(x[..., 2] > 0.5, 1.0, -1.0) + 0.01 * rng.normal(size=(4, 12))
    attrs = np.arange(4.0)[:, None]
    both = variants.GPOrForest(n_splits=3, seed=0, basin_attrs=attrs).fit(x, y)
    alone = variants.GPOrForest(n_splits=3, seed=0).fit(x, y)
    np.testing.assert_array_equal(both.cv_rmse_[:2], alone.cv_rmse_[:2])  # the same folds
    assert (both.cv_rmse_.min(axis=0) <= alone.cv_rmse_.min(axis=0)).all()  # never worse
    lse = both.choice_ == "lse"
    assert lse.sum() >= 3
    u = rng.uniform(size=(4, 10, 4))
    np.testing.assert_array_equal(both.predict(u)[lse], both.lse_.predict(u)[lse])


def test_tangs_loops_with_the_variant_emulators_improve():
    initial = sampling.sample(SPACE, 15, "lhs", seed=1)
    attrs = np.array([[0.0], [1.0]])
    for fit in (variants.fit_gp_or_forest, functools.partial(variants.fit_gp_or_forest, basin_attrs=attrs)):
        propose = functools.partial(calibrate.tang_batch, n=3, fit=fit, popsize=15, generations=10, seed=0)
        hist = calibrate.loop(toy_run, SPACE, initial, propose, 1)
        assert hist.params.shape == (2, 18, 4)
        assert np.all(hist.best_skill.values[:, -1] > hist.best_skill.values[:, 0])


def test_the_copula_target_is_the_normal_scores_of_each_basins_ranks(monkeypatch):
    seen = []
    real_fit = emulators.GPEmulator.fit

    def spy(self, x, y):
        seen.append(np.asarray(y).copy())
        return real_fit(self, x, y)

    monkeypatch.setattr(emulators.GPEmulator, "fit", spy)
    unit = np.random.default_rng(2).uniform(size=(2, 9, 4))
    skill = toy_run(unit)
    skill[0, 3] = np.nan  # a failed run ranks lowest
    em = variants.fit_copula(unit, skill, seed=0)
    scores = seen[-1]
    np.testing.assert_allclose(np.sort(scores, axis=1), np.broadcast_to(norm.ppf(np.arange(1, 10) / 10), (2, 9)))
    np.testing.assert_array_equal(np.argsort(scores, axis=1)[1], np.argsort(skill[1]))
    assert scores[0, 3] == scores[0].min()
    assert em.predict(unit).shape == (2, 9)


def test_a_fixed_step_or_the_dds_schedule_reaches_thompson(monkeypatch):
    seen = {}

    def spy(emulator, unit, skill, n, **kw):
        seen.update(kw, n=n, n_runs=unit.shape[1])
        return np.zeros((len(unit), n, unit.shape[-1]))

    monkeypatch.setattr(calibrate, "thompson", spy)

    class Flat:  # the rule only hands the emulator to thompson
        pass

    rng = np.random.default_rng(3)
    unit = rng.uniform(size=(2, 24, 4))
    skill = np.tile(np.linspace(0, 0.5, 24), (2, 1))
    iteration = np.repeat([[0] * 12 + [1] * 4 + [2] * 4 + [3] * 4], 2, axis=0)  # 3 improving iterations
    rule = functools.partial(variants.thompson_step_batch, n=4, fit=lambda u, s, seed: Flat(), seed=5)
    rule(unit, skill, iteration, step=0.3)
    assert seen["step"] == 0.3 and seen["perturb"] == 0.2 and seen["seed"] == 5 + 1000 * 4
    rule(unit, skill, iteration, step="trust")
    np.testing.assert_array_equal(seen["step"], calibrate.trust_steps(calibrate.best_so_far(skill, iteration)))
    assert seen["step"].tolist() == [0.4, 0.4]  # doubled after three improving iterations
    rule(unit, skill, iteration, perturb="dds", total=100)
    assert seen["perturb"] == pytest.approx(1 - np.log(24) / np.log(100))  # 0.31: from global to local
    rule(unit, skill, iteration, perturb="dds", total=25)
    assert seen["perturb"] == 0.25  # at least one parameter in four
    with pytest.raises(ValueError, match="total"):
        rule(unit, skill, iteration, perturb="dds")
    with pytest.raises(ValueError, match="step must be"):
        rule(unit, skill, iteration, step="wide")


def test_thompson_with_a_fixed_step_improves_and_trust_is_chapter_5s_batch():
    initial = sampling.sample(SPACE, 15, "lhs", seed=4)
    kw = dict(n=3, n_local=12, n_candidates=64, seed=1)
    fixed = calibrate.loop(toy_run, SPACE, initial, functools.partial(variants.thompson_step_batch, **kw), 2)
    assert np.all(fixed.best_skill.values[:, -1] > fixed.best_skill.values[:, 0])
    trust = calibrate.loop(toy_run, SPACE, initial, functools.partial(
        variants.thompson_step_batch, step="trust", **kw), 2)
    chapter = calibrate.loop(toy_run, SPACE, initial, functools.partial(calibrate.thompson_batch, **kw), 2)
    np.testing.assert_array_equal(trust.params.values, chapter.params.values)


def test_run_loop_resumes_from_its_checkpoint(tmp_path):
    initial = sampling.sample(SPACE, 12, "lhs", seed=2)
    propose = functools.partial(calibrate.tang_batch, n=2, popsize=10, generations=5, seed=0)
    whole = variants.run_loop(toy_run, SPACE, initial, propose, 2)
    path = tmp_path / "loop.nc"
    first = variants.run_loop(toy_run, SPACE, initial, propose, 1, path)
    assert first.params.shape == (2, 14, 4)
    resumed = variants.run_loop(toy_run, SPACE, initial, propose, 2, path)
    np.testing.assert_array_equal(resumed.params.values, whole.params.values)
    with pytest.raises(ValueError, match="other settings"):
        variants.run_loop(toy_run, SPACE, initial, functools.partial(propose, n=3), 2, path)
