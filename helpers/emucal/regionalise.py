"""Large-sample emulators in the calibration loop, and parameters for basins without flow.

A large-sample emulator (LSE) takes basin attributes as inputs beside the
parameters, so the runs of one basin inform similar basins (Tang, Wood and
Swenson 2025). Chapter 6 of the book writes the pieces that later chapters
and the benchmarks use (the cells marked ``#@save emucal.regionalise``):

- :func:`lse_forest`, Tang et al.'s random-forest LSE, as a ``fit`` for
  :func:`emucal.calibrate.tang_batch`;
- :func:`lse_by_folds`, an LSE per fold of basins, trained on the other
  basins only, which is what a basin that has not been seen gets;
- :func:`fit_with_prior_mean` and :func:`hierarchical_batch`, per-basin GPs
  whose prior mean is the LSE times a weight fitted per basin (Kennedy and
  O'Hagan's autoregressive model), in chapter 5's Thompson loop.

:func:`regionalise` and :func:`donor_transfer` give basins treated as
ungauged their parameters in spatial cross-validation.

References
----------
Kennedy, M. C. and O'Hagan, A. (2000). Predicting the output from a complex computer code
when fast approximations are available. Biometrika 87, 1-13.
Tang, G., Wood, A. W. and Swenson, S. (2025). Water Resour. Res. 61, e2024WR039525.
"""

from __future__ import annotations

import functools

import numpy as np

from .calibrate import _fingerprint, donor_transfer, regionalise, thompson_batch  # noqa: F401 (moving here)
from .emulators import GPEmulator, RandomForestEmulator, kfold, lse_features, make_lse
from .metrics import to_norm

__all__ = ["LargeSample", "WithPriorMean", "donor_transfer", "fit_with_prior_mean", "hierarchical_batch",
           "hierarchical_rule",
           "lse_by_folds", "lse_forest", "lse_rows", "regionalise"]


class LargeSample:
    """Large-sample emulators seen as per-basin ones: ``predict(unit)`` for ``unit`` ``(basin, m, param)``.

    Parameters
    ----------
    models
        ``[(basins, emulator), ...]``: each emulator, fitted on
        :func:`emucal.emulators.lse_features` rows, predicts for the basins
        (indices) given with it.
    basin_attrs
        ``(basin, n_attr)``: the attributes of every basin.
    """

    def __init__(self, models, basin_attrs):
        self.models, self.basin_attrs = models, np.asarray(basin_attrs, float)

    def predict(self, unit):
        """Predicted normKGE ``(basin, m)``, clipped to [-1, 1]."""
        n_basin, m, d = unit.shape
        out = np.empty((n_basin, m))
        for held, emulator in self.models:
            rows = lse_features(unit[held].reshape(-1, d), np.repeat(self.basin_attrs[held], m, axis=0))
            out[held] = emulator.predict(rows).reshape(len(held), m)
        return out.clip(-1, 1)


def lse_rows(unit, skill, basin_attrs, basins):
    """LSE training rows: parameters and attributes, and normKGE, of the runs of ``basins`` (indices).

    ``unit`` ``(basin, n, param)`` in the unit cube and ``skill`` (KGE')
    ``(basin, n)``; a failed run (NaN) counts as the worst, normKGE -1.
    """
    n_run, d = unit.shape[1:]
    x = lse_features(unit[basins].reshape(-1, d), np.repeat(basin_attrs[basins], n_run, axis=0))
    y = to_norm(np.where(np.isfinite(skill[basins]), skill[basins], -1e6)).clip(-1, 1).ravel()
    return x, y


def lse_forest(unit, skill, seed=0, *, basin_attrs):
    """Tang et al.'s large-sample emulator: a random forest (100 trees, depth at most 40).

    ``allbasin_emulator_train_and_optimize`` in
    ``MOASMO_parameter_allbasin_emulator.py`` of NCAR/CTSM_calibration: one
    forest on the parameters and attributes of every run of every basin.
    Bind ``basin_attrs`` with :func:`functools.partial` to use it as the
    ``fit`` of :func:`emucal.calibrate.tang_batch`.

    Parameters
    ----------
    unit, skill
        The runs: ``(basin, n, param)`` in the unit cube and their KGE'
        ``(basin, n)`` (a failed run, NaN, counts as normKGE -1).
    seed
        Seed of the forest.
    basin_attrs
        ``(basin, n_attr)``, e.g. of :data:`emucal.emulators.LSE_ATTRIBUTES`.

    Returns
    -------
    LargeSample
    """
    every = np.arange(len(unit))
    forest = RandomForestEmulator(100, max_depth=40, seed=seed)
    return LargeSample([(every, forest.fit(*lse_rows(unit, skill, basin_attrs, every)))],
                       basin_attrs)


def lse_by_folds(unit, skill, basin_attrs, seed=0):
    """An LSE GP per fold of basins (at most five), each trained on the other basins' runs.

    Each basin is then predicted by an emulator that has never seen its runs:
    what the other basins know about it. The hierarchical emulator needs
    this, because an LSE trained on a basin's own runs reproduces them, and
    the basin's GP would trust it fully where its real skill on runs it has
    not seen is far lower.

    Returns
    -------
    LargeSample
    """
    models = []
    for k, held in enumerate(kfold(len(unit), min(5, len(unit)), seed=seed)):
        train = np.setdiff1d(np.arange(len(unit)), held)
        x, y = lse_rows(unit, skill, basin_attrs, train)
        models.append((held, make_lse(len(x), seed=seed + k).fit(x, y)))
    return LargeSample(models, basin_attrs)


class WithPriorMean:
    """Per-basin GPs on ``[unit, prior(unit)]`` whose mean is ``a * prior + b`` (:func:`fit_with_prior_mean`).

    ``predict`` and ``sample_y`` take ``unit`` ``(basin, m, param)`` and add
    the prior's prediction as the last input column themselves.
    """

    def __init__(self, gp, prior):
        self.gp, self.prior = gp, prior

    def _inputs(self, unit):
        return np.concatenate([unit, self.prior(unit)[..., None]], axis=-1)

    def predict(self, unit, return_std=False):
        return self.gp.predict(self._inputs(unit), return_std=return_std)

    def sample_y(self, unit, n_samples=1, seed=0):
        return self.gp.sample_y(self._inputs(unit), n_samples, seed=seed)


def fit_with_prior_mean(unit, skill, seed=0, *, prior):
    """Per-basin GPs whose prior mean is ``a * prior(unit) + b``, ``a`` and ``b`` fitted per basin.

    The prior (an LSE's ``predict``) enters each basin's GP as an extra input
    that only the mean sees (``GPEmulator(mean="last_input")``): where the
    LSE is right about a basin, its GP starts from a good guess; where it is
    wrong, the fit sets ``a`` near 0 and the basin keeps its own GP.

    Returns
    -------
    An emulator with ``predict`` and ``sample_y`` over ``unit`` ``(basin, m, param)``.
    """
    d = unit.shape[-1]
    emulator = WithPriorMean(None, prior)
    target = to_norm(np.where(np.isfinite(skill), skill, -1e6)).clip(-1, 1)
    emulator.gp = GPEmulator(mean="last_input", lower=[0.0] * d + [-1.0], upper=[1.0] * (d + 1),
                             seed=seed).fit(emulator._inputs(unit), target)
    return emulator


_LSE_CACHE: dict = {}


def hierarchical_batch(unit, skill, iteration, *, n, basin_attrs, n_local=None, n_candidates=1024,
                       perturb=0.2, refit_every=1, seed=0):
    """Chapter 5's Thompson batch with the hierarchical emulator: per-basin GPs, the LSE as prior mean.

    The LSE (:func:`lse_by_folds`) learns from every run of every basin,
    which costs far more than the local per-basin fits, so it is refit only
    every ``refit_every`` iterations, on the runs there were then (the same
    schedule when a loop is resumed); the per-basin GPs are refit every
    iteration. Other arguments as in :func:`emucal.calibrate.thompson_batch`.
    """
    it = int(iteration.max()) + 1
    refit_at = 1 + (it - 1) // refit_every * refit_every
    seen = iteration[0] < refit_at  # the runs there were when the LSE was due
    key = (_fingerprint(unit[:, seen]), _fingerprint(skill[:, seen]), _fingerprint(basin_attrs),
           seed + refit_at)
    if key not in _LSE_CACHE:  # the same data and seed give the same LSE: fit it once
        _LSE_CACHE.clear()
        _LSE_CACHE[key] = lse_by_folds(unit[:, seen], skill[:, seen], basin_attrs, seed=seed + refit_at)
    fit = _bind_prior(_LSE_CACHE[key].predict)
    return thompson_batch(unit, skill, iteration, n=n, n_local=n_local, n_candidates=n_candidates,
                          perturb=perturb, fit=fit, seed=seed)


def _bind_prior(prior):
    def fit(unit, skill, seed=0):
        return fit_with_prior_mean(unit, skill, seed, prior=prior)
    return fit


def hierarchical_rule(basin_attrs, refit_every, **settings):
    """A proposal rule: chapter 5's Thompson batch, per-basin GPs with the LSE as prior mean.

    The LSE (:func:`lse_by_folds`) learns from every run of every basin, which
    costs far more than the local per-basin fits, so it is refit only every
    ``refit_every`` iterations, on the runs there were then; the per-basin
    GPs (:func:`fit_with_prior_mean`) are refit every iteration. A resumed
    loop refits at the same iterations, on the same runs.

    Parameters
    ----------
    basin_attrs
        ``(basin, n_attr)``.
    refit_every
        Iterations between two fits of the LSE.
    **settings
        For :func:`emucal.calibrate.thompson_batch`: ``n``, ``n_local``,
        ``n_candidates``, ``perturb``, ``seed`` (``seed`` is required).

    Returns
    -------
    ``propose(unit, skill, iteration)`` for :func:`emucal.calibrate.loop`.
    """
    lse = {}  # the LSE fitted at each iteration one was due

    def propose(unit, skill, iteration):
        it = int(iteration.max()) + 1
        due = 1 + (it - 1) // refit_every * refit_every  # the last iteration an LSE was due
        if due not in lse:
            seen = iteration[0] < due  # the runs there were then
            lse[due] = lse_by_folds(unit[:, seen], skill[:, seen], basin_attrs, seed=settings["seed"] + due)
        fit = functools.partial(fit_with_prior_mean, prior=lse[due].predict)
        return thompson_batch(unit, skill, iteration, fit=fit, **settings)

    return propose
