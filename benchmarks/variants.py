"""Research variants of the calibration loop that only the benchmarks run.

Chapter 5 writes the loop (:func:`emucal.calibrate.loop`) and its proposal
rules, chapter 6 the large-sample emulators; ``emucal`` keeps what they
save. The benchmarks also measure variants that the book reports but does
not teach. They live here, in the two shapes the loop takes:

- ``fit(unit, skill, seed)`` returns an emulator, for
  :func:`emucal.calibrate.tang_batch` or :func:`emucal.calibrate.thompson_batch`:
  :func:`fit_gp_or_forest` (Tang et al.'s per-basin emulator, a GP or a
  random forest per basin chosen by 5-fold cross-validation; with
  ``basin_attrs`` their random-forest LSE competes too, the LSE-or-SSE loop),
  :func:`drop_failed` (failed runs left out of the training data, as Tang et
  al.'s code does, where emucal counts them as normKGE -1) and
  :func:`fit_copula` (a GP on the normal scores of each basin's ranks);
- ``propose(unit, skill, iteration)``, for :func:`emucal.calibrate.loop`:
  :func:`thompson_step_batch`, Thompson sampling with a fixed step or DDS's
  perturbation schedule (``acquisition.py``).

:func:`run_loop` runs the loop with a checkpoint file, freeing each
iteration's emulator as it goes.

Every variant gives, bit for bit, the parameter sets that the package's
former ``calibrate.iterate`` gave with the matching options
(``emulator="sse_gp_or_rf"``, ``"lse_or_sse"``, ``failed="drop"``, a
numeric ``step``, ``perturb="dds"``; checked on 3-6 basins when it was
removed); ``tests/test_benchmark_variants.py`` and ``tests/test_failed_runs.py``
test them.

Source of Tang et al.'s choices: ``surrogate_model_train_and_pareto_points_oneobjfunc``
in ``MOASMO_parameters.py`` (lines 618-619 drop the runs whose metric is NaN;
the GP and the forest compete by the RMSE of 5-fold cross-validation) and
``MOASMO_parameter_allbasin_emulator.py`` (the forest LSE, 100 trees, depth
at most 40) of NCAR/CTSM_calibration, commit 46d99b2f1c9c9285e9930a3eec896942fd51ba3c.
"""

from __future__ import annotations

import gc
from typing import Callable

import numpy as np
import xarray as xr

from emucal import calibrate, emulators, ensemble, regionalise
from emucal.metrics import to_norm
from emucal.parameters import ParameterSpace

__all__ = ["GPOrForest", "drop_failed", "fit_copula", "fit_gp_or_forest", "norm_target",
           "run_loop", "thompson_step_batch", "valid_nearest_best"]


def norm_target(skill: np.ndarray) -> np.ndarray:
    """normKGE, what the emulators learn, from KGE' ``skill``; a failed run (NaN) is -1, the worst."""
    skill = np.asarray(skill, float)
    return to_norm(np.where(np.isfinite(skill), skill, -1e6)).clip(-1, 1)


# ------------------------------------------------- Tang et al.'s per-basin emulator
class GPOrForest:
    """Per basin, the emulator that predicts held-out runs best: a GP, a random forest or the LSE.

    Tang et al.'s per-basin emulator: the mean RMSE over ``n_splits`` folds
    of the basin's runs decides between a GP and a random forest, and the
    winner is refit on all of them. The GPs of all basins are fitted as one
    batch (:class:`~emucal.emulators.GPEmulator`); the forests are
    scikit-learn's defaults (100 trees), one per basin. With ``basin_attrs``,
    Tang et al.'s random-forest LSE (100 trees, depth at most 40, on
    parameters and attributes) competes too, scored on the same held-out
    runs (in each fold it learns from the other runs of every basin): a basin
    takes it only where it predicts the basin's own runs better, so the
    choice is never worse than the SSE's in cross-validation.

    Parameters
    ----------
    n_splits
        Folds of each basin's runs.
    seed
        Seed of the folds and the fits.
    basin_attrs
        ``None``, or ``(basin, n_attr)``: let the LSE compete.

    Attributes
    ----------
    cv_rmse_ : ndarray ``(3, basin)``
        Mean held-out RMSE of the GP, the forest and the LSE (inf without ``basin_attrs``).
    choice_ : ndarray ``(basin,)``
        ``"gp"``, ``"rf"`` or ``"lse"``.
    """

    CHOICES = ("gp", "rf", "lse")

    def __init__(self, *, n_splits: int = 5, seed: int = 0, basin_attrs: np.ndarray | None = None):
        self.n_splits, self.seed, self.basin_attrs = n_splits, seed, basin_attrs

    def _lse(self, x, y, seed):
        n_basin, n, d = x.shape
        rows = emulators.lse_features(x.reshape(-1, d), np.repeat(self.basin_attrs, n, axis=0))
        forest = emulators.RandomForestEmulator(100, max_depth=40, seed=seed).fit(rows, y.ravel())
        return regionalise.LargeSample([(np.arange(n_basin), forest)], self.basin_attrs)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "GPOrForest":
        """Fit on ``x`` ``(basin, n, param)`` in the unit cube and normKGE ``y`` ``(basin, n)``."""
        n_basin, n = y.shape
        with_lse = self.basin_attrs is not None
        rmse = np.zeros((3, n_basin))  # GP, forest, LSE
        rmse[2] = 0.0 if with_lse else np.inf
        for k, test in enumerate(emulators.kfold(n, self.n_splits, seed=self.seed)):
            train = np.setdiff1d(np.arange(n), test)
            preds = [emulators.GPEmulator(seed=self.seed + k).fit(x[:, train], y[:, train]).predict(x[:, test]),
                     emulators.RandomForestEmulator(seed=self.seed + k).fit(x[:, train], y[:, train]).predict(
                         x[:, test])]
            if with_lse:
                preds.append(self._lse(x[:, train], y[:, train], self.seed + k).predict(x[:, test]))
            for i, pred in enumerate(preds):
                rmse[i] += np.sqrt(((pred - y[:, test]) ** 2).mean(axis=1))
        self.cv_rmse_ = rmse / self.n_splits
        self.choice_ = np.array(self.CHOICES)[self.cv_rmse_.argmin(axis=0)]
        self.gp_ = emulators.GPEmulator(seed=self.seed).fit(x, y)
        rf = self.choice_ == "rf"
        self.forest_ = (emulators.RandomForestEmulator(seed=self.seed + self.n_splits).fit(x[rf], y[rf])
                        if rf.any() else None)
        self.lse_ = self._lse(x, y, self.seed) if (self.choice_ == "lse").any() else None
        return self

    def predict(self, u: np.ndarray) -> np.ndarray:
        """Predictions ``(basin, m)`` at ``u`` ``(basin, m, param)``.

        Each basin's prediction comes from its chosen emulator only: a search
        asks for thousands of points per generation, and most basins choose a
        forest. The GPs are fitted in groups (``GPEmulator(group_size=...)``),
        so a group is predicted when one of its basins chose the GP.
        """
        out = np.full(u.shape[:2], np.nan)
        gp = self.choice_ == "gp"
        start = 0
        for group in getattr(self.gp_, "groups_", None) or [self.gp_]:
            stop = start + group.batch_shape_[0]
            if gp[start:stop].any():
                out[start:stop] = np.where(gp[start:stop, None], group.predict(u[start:stop]), np.nan)
            start = stop
        if self.forest_ is not None:
            rf = self.choice_ == "rf"
            out[rf] = self.forest_.predict(u[rf])
        if self.lse_ is not None:
            lse = np.flatnonzero(self.choice_ == "lse")
            forest = self.lse_.models[0][1]
            out[lse] = regionalise.LargeSample([(lse, forest)], self.basin_attrs).predict(u)[lse]
        return out


def fit_gp_or_forest(unit: np.ndarray, skill: np.ndarray, seed: int = 0, *,
                     basin_attrs: np.ndarray | None = None) -> GPOrForest:
    """:class:`GPOrForest` on normKGE (a failed run counts as -1), as a ``fit`` for the proposal rules.

    For Tang et al.'s SSE loop, ``functools.partial(calibrate.tang_batch, n=50,
    fit=fit_gp_or_forest, popsize=60, generations=60, seed=seed)``; with
    ``basin_attrs`` bound, the LSE-or-SSE loop.
    """
    return GPOrForest(seed=seed, basin_attrs=basin_attrs).fit(unit, norm_target(skill))


def fit_copula(unit: np.ndarray, skill: np.ndarray, seed: int = 0) -> emulators.GPEmulator:
    """One GP per basin on the normal scores of each basin's ranks of normKGE (failed runs lowest).

    The ranks keep which runs are better, which is all a search needs, and
    stop a few very poor runs from dominating the fit. The scores are not
    normKGE: use the emulator with :func:`emucal.calibrate.thompson_batch`
    (:func:`emucal.calibrate.tang_batch` caps predictions at normKGE's best, 1).
    """
    from scipy.stats import norm, rankdata

    target = norm_target(skill)
    scores = norm.ppf(rankdata(target, axis=1) / (target.shape[1] + 1))
    return emulators.GPEmulator(seed=seed).fit(unit, scores)


# ------------------------------------------------- failed runs left out
def valid_nearest_best(unit: np.ndarray, skill: np.ndarray, k: int | None = None) -> np.ndarray:
    """Indices ``(basin, k)`` of each basin's runs that did not fail, nearest its best run.

    The per-basin emulators are fitted as one batch, with the same number of
    runs in every basin, so each basin keeps as many runs as the basin with
    the fewest valid runs has (``k`` at most).
    """
    valid = np.isfinite(skill)
    fewest = int(valid.sum(axis=1).min())
    if fewest < 2:
        raise ValueError(f"Basin {int(valid.sum(axis=1).argmin())} has {fewest} run(s) that did not "
                         "fail; an emulator needs at least 2. Count failed runs as normKGE -1 "
                         "(calibrate.fit_sse) or run more.")
    k = fewest if k is None else min(k, fewest)
    best = unit[np.arange(len(unit)), np.nan_to_num(skill, nan=-np.inf).argmax(axis=1)]
    distance = np.where(valid, np.linalg.norm(unit - best[:, None, :], axis=-1), np.inf)
    return np.sort(np.argsort(distance, axis=1, kind="stable")[:, :k], axis=1)


def drop_failed(unit: np.ndarray, skill: np.ndarray, seed: int = 0, *, fit: Callable):
    """``fit`` on the runs that did not fail only (NaN skill), as Tang et al.'s code trains.

    With no failed run this is ``fit`` itself. Otherwise every basin keeps
    its valid runs nearest its best run, as many as the basin with the fewest
    valid runs has (:func:`valid_nearest_best`); every run, failed or not,
    stays in the loop's history. For example ``functools.partial(drop_failed,
    fit=fit_gp_or_forest)``.
    """
    if np.isfinite(skill).all():
        return fit(unit, skill, seed=seed)
    near = valid_nearest_best(unit, skill)
    return fit(np.take_along_axis(unit, near[..., None], axis=1), np.take_along_axis(skill, near, axis=1),
               seed=seed)


# ------------------------------------------------- Thompson sampling, other steps
def thompson_step_batch(unit: np.ndarray, skill: np.ndarray, iteration: np.ndarray, *, n: int,
                        n_local: int | None = None, n_candidates: int = 1024,
                        perturb: float | str = 0.2, step: float | str = 0.2, total: int | None = None,
                        fit: Callable = calibrate.fit_sse, seed: int = 0) -> np.ndarray:
    """Chapter 5's Thompson batch with a fixed step, or DDS's perturbation schedule.

    As :func:`emucal.calibrate.thompson_batch`, but the candidates' step is
    ``step`` times the range in every basin (``"trust"``: each basin's own,
    :func:`emucal.calibrate.trust_steps`, which is ``thompson_batch``), and
    ``perturb="dds"`` moves each parameter with DDS's probability
    ``1 - ln(runs so far) / ln(total)`` (at least ``1 / param``), from a
    global search to a local one as the budget of ``total`` runs per basin
    is spent.
    """
    if perturb == "dds" and total is None:
        raise ValueError("perturb='dds' needs total, the runs per basin at the end of the loop.")
    if not (step == "trust" or (isinstance(step, (int, float)) and 0 < step <= 1)):
        raise ValueError(f"step must be a number in (0, 1] or 'trust'; got {step!r}.")
    it = int(iteration.max()) + 1
    near = calibrate.nearest_best(unit, skill, n_local)
    local = np.take_along_axis(unit, near[..., None], axis=1)
    emulator = fit(local, np.take_along_axis(skill, near, axis=1), seed=seed + it)
    if perturb == "dds":
        perturb = max(1.0 - np.log(unit.shape[1]) / np.log(total), 1.0 / unit.shape[-1])
    if step == "trust":
        step = calibrate.trust_steps(calibrate.best_so_far(skill, iteration))
    return calibrate.thompson(emulator, unit, skill, n, n_candidates=n_candidates, perturb=perturb,
                              step=step, seed=seed + 1000 * it)


# ------------------------------------------------- the loop with a checkpoint
def run_loop(run: ensemble.Runner, space: ParameterSpace, initial: np.ndarray, propose: Callable,
             n_iterations: int, path=None) -> xr.Dataset:
    """:func:`emucal.calibrate.loop`, resumed from and saved to ``path`` (``None``: no file).

    After every iteration the garbage collector runs: GPyTorch models hold
    reference cycles, and a loop of many small batches (66 in the
    calibration table) otherwise keeps every iteration's emulator for a
    while, tens of MB each.
    """
    start, save = (initial, None) if path is None else calibrate.checkpoint(
        path, run, space, initial, propose)

    def free_and_save(history):
        gc.collect()
        if save is not None:
            save(history)

    return calibrate.loop(run, space, start, propose, n_iterations, save=free_and_save)
