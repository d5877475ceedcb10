"""Calibration: fit an emulator, propose runs, run them, repeat; DDS; the posterior.

Chapter 5 writes these methods in cells marked ``#@save emucal.calibrate``;
this module keeps the same code (``tests/test_notebook_code.py`` compares
them): :func:`loop`, the loop of Tang, Wood and Swenson (2025) after MO-ASMO
(Gong et al. 2016), with its proposal rules :func:`tang_batch` (independent
searches of the emulator's mean, :func:`search`) and :func:`thompson_batch`
(Thompson sampling in a trust region after TuRBO, Eriksson et al. 2019);
:func:`dds`, Dynamically Dimensioned Search (Tolson and Shoemaker 2007), the
baseline on the model; and :func:`posterior`, Metropolis on the emulator.
Around them: :func:`checkpoint`, which resumes an interrupted loop with the
numbers of one that never stopped, and :func:`best`. The model is an
:class:`emucal.ensemble.Runner`. A basin's best parameter set is its best
*model run*, never an emulator prediction; every step takes a seed.

References
----------
Eriksson, D. et al. (2019). Scalable global optimization via local Bayesian optimization. NeurIPS 32.
Gong, W. et al. (2016). Multiobjective adaptive surrogate modeling-based optimization for parameter
estimation of large, complex geophysical models. Water Resour. Res. 52, 1984-2008.
Storn, R. and Price, K. (1997). Differential evolution. J. Glob. Optim. 11, 341-359.
Tolson, B. A. and Shoemaker, C. A. (2007). Water Resour. Res. 43, W01413.
Tang, G., Wood, A. W. and Swenson, S. (2025). Water Resour. Res. 61, e2024WR039525.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import numpy as np
import xarray as xr

from ._io import digest, load_checkpoint, save_checkpoint
from .emulators import GPEmulator
from .ensemble import Runner, fill_defaults
from .metrics import to_norm
from .parameters import ParameterSpace

__all__ = [
    "best", "best_so_far", "candidates_near_best", "checkpoint", "dds", "dds_move", "fit_sse",
    "log_likelihood", "loop", "make_history", "nearest_best", "posterior", "search", "tang_batch",
    "thompson", "thompson_batch", "trust_steps",
]


# -------------------------------------------------------------- emulator search
def search(predict: Callable, n_basin: int, n_dim: int, *, popsize: int = 150, generations: int = 60,
           f: float = 0.7, cr: float = 0.9, seed: int = 0):
    """Maximise an emulator's mean in the unit cube, for all basins at once (DE/rand/1/bin).

    ``predict(u)`` takes ``u`` ``(basin, m, n_dim)`` and returns the predicted
    skill ``(basin, m)``; ``popsize * generations`` evaluations per basin;
    ``f``, ``cr``: differential weight and crossover probability (Storn and
    Price 1997).

    Returns
    -------
    population, fitness : ndarray ``(basin, popsize, n_dim)``, ``(basin, popsize)``
        The final population, best first in each basin, and its predicted skill.
    """
    rng = np.random.default_rng(seed)
    pop = rng.uniform(size=(n_basin, popsize, n_dim))
    fit = predict(pop)
    idx = np.arange(popsize)
    for _ in range(generations):
        # three distinct partners per member, different from the member itself
        r = np.stack([rng.permutation(np.delete(idx, i))[:3] for i in idx])  # (popsize, 3)
        mutant = pop[:, r[:, 0]] + f * (pop[:, r[:, 1]] - pop[:, r[:, 2]])
        mutant = np.abs(mutant)  # reflect into the cube
        mutant = np.where(mutant > 1, 2 - mutant, mutant).clip(0, 1)
        cross = rng.uniform(size=pop.shape) < cr
        forced = rng.integers(n_dim, size=(n_basin, popsize))
        cross[np.arange(n_basin)[:, None], idx[None, :], forced] = True
        trial = np.where(cross, mutant, pop)
        trial_fit = predict(trial)
        better = trial_fit > fit
        pop = np.where(better[..., None], trial, pop)
        fit = np.where(better, trial_fit, fit)
    order = np.argsort(-fit, axis=1)
    return (np.take_along_axis(pop, order[..., None], axis=1),
            np.take_along_axis(fit, order, axis=1))


def candidates_near_best(unit, skill, n_candidates, perturb, step, rng):
    """``(basin, n_candidates, param)`` around each basin's best run: each parameter moves with
    probability ``perturb`` (at least one does) by ``step`` (per basin) times a normal draw."""
    n_basin, _, d = unit.shape
    best = unit[np.arange(n_basin), np.nan_to_num(skill, nan=-np.inf).argmax(axis=1)]
    mask = rng.uniform(size=(n_basin, n_candidates, d)) < perturb
    forced = rng.integers(d, size=(n_basin, n_candidates))
    mask[np.arange(n_basin)[:, None], np.arange(n_candidates)[None, :], forced] = True
    step = np.broadcast_to(np.asarray(step, float), (n_basin,))[:, None, None]
    candidates = np.abs(best[:, None, :] + np.where(mask, step * rng.standard_normal(mask.shape), 0.0))
    return np.where(candidates > 1, 2 - candidates, candidates).clip(0, 1)


def thompson(emulator, unit: np.ndarray, skill: np.ndarray, n: int, *, n_candidates: int = 1024,
             perturb: float = 0.2, step=0.2, seed: int = 0) -> np.ndarray:
    """Propose ``n`` runs per basin by Thompson sampling near each basin's best run.

    ``n`` functions are drawn from the ``emulator``'s posterior (``sample_y``)
    jointly over ``n_candidates`` :func:`candidates_near_best` of the runs
    ``unit`` ``(basin, k, param)`` with ``skill`` ``(basin, k)``, and each
    contributes the candidate where it is highest (the next when that one is taken).

    Returns
    -------
    ndarray ``(basin, n, param)``
    """
    if not 0 < perturb <= 1:
        raise ValueError(f"perturb must be in (0, 1]; got {perturb}.")
    if n > n_candidates:
        raise ValueError(f"n ({n}) must not exceed n_candidates ({n_candidates}).")
    rng = np.random.default_rng(seed)
    candidates = candidates_near_best(unit, skill, n_candidates, perturb, step, rng)
    draws = emulator.sample_y(candidates, n_samples=n, seed=seed)  # (basin, n, n_candidates)
    order = np.argsort(-draws, axis=-1)
    out = np.empty((len(unit), n, unit.shape[-1]))
    for b in range(len(unit)):
        taken = set()
        for j in range(n):  # draw j's best candidate, the next best when that one is taken
            pick = next(int(i) for i in order[b, j] if int(i) not in taken)
            taken.add(pick)
            out[b, j] = candidates[b, pick]
    return out


def trust_steps(best_skill: np.ndarray, *, start: float = 0.2, smallest: float = 0.0125,
                largest: float = 0.4, patience: int = 3) -> np.ndarray:
    """Each basin's step ``(basin,)`` for the next batch: TuRBO's trust region.

    From ``best_skill`` ``(basin, k)`` after each iteration so far: the step
    starts at ``start``, doubles (at most ``largest``) after ``patience``
    iterations in a row that raised the best skill by over 0.1%, halves (at
    least ``smallest``) after ``patience`` that did not. TuRBO (Eriksson et
    al. 2019) waits ``max(4, d) / batch`` failures and restarts a collapsed
    region; here both counts are ``patience`` and the step stops at ``smallest``.
    """
    best_skill = np.nan_to_num(np.asarray(best_skill, float), nan=-np.inf)
    step = np.full(best_skill.shape[0], float(start))
    wins = np.zeros(best_skill.shape[0], int)
    losses = np.zeros(best_skill.shape[0], int)
    for before, after in zip(best_skill.T[:-1], best_skill.T[1:]):
        improved = after > before + 1e-3 * np.abs(before)
        wins, losses = np.where(improved, wins + 1, 0), np.where(improved, 0, losses + 1)
        step = np.where(wins >= patience, np.minimum(2 * step, largest), step)
        step = np.where(losses >= patience, np.maximum(step / 2, smallest), step)
        wins, losses = np.where(wins >= patience, 0, wins), np.where(losses >= patience, 0, losses)
    return step


# ---------------------------------------------------------- the loop and its rules
def fit_sse(unit, skill, seed=0):
    """One GP per basin (:class:`~emucal.emulators.GPEmulator`) on the normKGE of runs ``unit``
    ``(basin, n, param)`` with KGE' ``skill``; a failed run (NaN) counts as normKGE -1, the worst."""
    target = to_norm(np.where(np.isfinite(skill), skill, -1e6)).clip(-1, 1)
    return GPEmulator(seed=seed).fit(unit, target)


def best_so_far(skill, iteration):
    """``(basin, iteration)``: the best skill up to and including each iteration (0: the initial design)."""
    return np.stack([np.nanmax(np.where(iteration <= k, skill, -np.inf), axis=1)
                     for k in range(int(iteration.max()) + 1)], axis=1)


def tang_batch(unit, skill, iteration, *, n, fit=fit_sse, popsize=60, generations=60, seed=0):
    """Propose ``n`` runs per basin as Tang et al.'s code does: the best points of ``n`` searches.

    ``run_ga_optimization`` (``MOASMO_parameters.py``, NCAR/CTSM_calibration)
    runs one search of the emulator's mean per new run, a GA of population 60
    for 60 generations; here each is a :func:`search` of ``popsize`` for
    ``generations``, predictions above normKGE's best (1) counting as 1. The
    runs so far are ``unit`` ``(basin, k, param)`` in the unit cube, their
    ``skill`` and ``iteration`` ``(basin, k)``; ``fit(unit, skill, seed)``
    returns the emulator; the ``seed`` is offset by the iteration.

    Returns
    -------
    ndarray ``(basin, n, param)``, best predicted first.
    """
    it = int(iteration.max()) + 1
    predict = fit(unit, skill, seed=seed + it).predict
    n_basin, _, d = unit.shape

    def predict_all(u):  # (basin * n, popsize, d): one search per new run
        return np.minimum(predict(u.reshape(n_basin, -1, d)).reshape(len(u), -1), 1.0)

    population, fitness = search(predict_all, n_basin * n, d, popsize=popsize,
                                 generations=generations, seed=seed + 1000 * it)
    winners = population[:, 0].reshape(n_basin, n, d)
    order = np.argsort(-fitness[:, 0].reshape(n_basin, n), axis=1, kind="stable")
    return np.take_along_axis(winners, order[..., None], axis=1)


def nearest_best(unit, skill, k):
    """Indices ``(basin, k)`` of each basin's ``k`` runs nearest its best run (unit-cube distance)."""
    if k is None or k >= unit.shape[1]:
        return np.broadcast_to(np.arange(unit.shape[1]), skill.shape)
    best = unit[np.arange(len(unit)), np.nan_to_num(skill, nan=-np.inf).argmax(axis=1)]
    distance = np.linalg.norm(unit - best[:, None, :], axis=-1)
    return np.sort(np.argsort(distance, axis=1, kind="stable")[:, :k], axis=1)


def thompson_batch(unit, skill, iteration, *, n, n_local=None, n_candidates=1024, fit=fit_sse, seed=0):
    """Propose ``n`` runs per basin by Thompson sampling in a trust region (after TuRBO).

    Each basin's emulator learns from its ``n_local`` runs nearest its best run
    (all with ``None``), its step follows :func:`trust_steps`, and
    :func:`thompson` picks the batch among ``n_candidates``. Other arguments
    as in :func:`tang_batch` (``fit`` must give an emulator with ``sample_y``).
    """
    it = int(iteration.max()) + 1
    near = nearest_best(unit, skill, n_local)
    local = np.take_along_axis(unit, near[..., None], axis=1)
    emulator = fit(local, np.take_along_axis(skill, near, axis=1), seed=seed + it)
    step = trust_steps(best_so_far(skill, iteration))
    return thompson(emulator, unit, skill, n, n_candidates=n_candidates, step=step, seed=seed + 1000 * it)


def loop(run: Runner, space: ParameterSpace, initial, propose: Callable, n_iterations: int,
         save: Callable | None = None) -> xr.Dataset:
    """Emulator-based calibration: fit, propose, run, append, ``n_iterations`` times.

    Parameters
    ----------
    run, space
        The model (:class:`~emucal.ensemble.Runner`) and its parameter space.
    initial
        The design, ``(n, param)`` or ``(basin, n, param)`` (NaN: a basin's
        default); or a history returned earlier, which the loop continues.
    propose
        ``propose(unit, skill, iteration)`` returns the next runs ``(basin, m,
        param)`` in the unit cube (:func:`tang_batch`, :func:`thompson_batch`).
    n_iterations, save
        Iterations in all (a continued history's included); ``save(history)``
        is called after each (see :func:`checkpoint`).

    Returns
    -------
    xarray.Dataset
        ``params(basin, member, param)``, ``skill`` and ``iteration(basin,
        member)`` (0: the initial design), ``best_skill(basin, after_iteration)``.
    """
    history = initial
    if not isinstance(initial, xr.Dataset):
        params = fill_defaults(run, initial)
        history = make_history(params, run(params), np.zeros(params.shape[:2], int), space, run.basins)
        if save is not None:
            save(history)
    for it in range(int(history.iteration.max()) + 1, n_iterations + 1):
        unit = space.to_unit(history.params.values)
        new_unit = propose(unit, history.skill.values, history.iteration.values)
        new = space.from_unit(new_unit.reshape(-1, len(space))).reshape(new_unit.shape)
        history = make_history(np.concatenate([history.params.values, new], axis=1),
                               np.concatenate([history.skill.values, run(new)], axis=1),
                               np.concatenate([history.iteration.values,
                                               np.full(new.shape[:2], it)], axis=1),
                               space, run.basins)
        if save is not None:
            save(history)
    return history


def make_history(params, skill, iteration, space, basins) -> xr.Dataset:
    """The history of a calibration as :func:`loop` returns it."""
    return xr.Dataset({
        "params": (("basin", "member", "param"), params),
        "skill": (("basin", "member"), skill),
        "iteration": (("basin", "member"), iteration),
        "best_skill": (("basin", "after_iteration"), best_so_far(skill, iteration)),
    }, coords={"param": space.names, "after_iteration": np.arange(int(iteration.max()) + 1),
               "basin": basins})


def _describe(fn) -> str:
    """A proposal rule as stable text: its function and the settings a partial binds."""
    if isinstance(fn, functools.partial):
        bound = {k: _describe(v) if callable(v) else v for k, v in sorted(fn.keywords.items())}
        return f"{_describe(fn.func)}({', '.join(map(repr, fn.args))}; {bound})"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def checkpoint(path, run: Runner, space: ParameterSpace, initial, propose: Callable):
    """Resume :func:`loop` from a netCDF file, and save to it after every iteration.

    Returns ``(start, save)``: the history at ``path`` if it belongs to this
    runner (its basins in order), space, design and rule (another is refused),
    else ``initial``; and the ``save`` to give :func:`loop`. After an
    interruption the same two lines carry on as if the loop had never stopped::

        start, save = calibrate.checkpoint("loop.nc", run, space, initial, propose)
        history = calibrate.loop(run, space, start, propose, 3, save=save)
    """
    if initial is None:
        raise ValueError("checkpoint needs the initial design the loop starts from (resuming too).")
    settings = dict(kind="loop", initial=digest(fill_defaults(run, initial)), runner=run.fingerprint or None,
                    propose=_describe(propose), param=list(space.names),
                    basin=[str(b) for b in run.basins],  # a history is per basin, in the runner's order
                    space=digest(np.stack([space.lower, space.upper, space.log])))
    saved = load_checkpoint(path, settings)
    return (initial if saved is None else saved), (lambda h: save_checkpoint(h, path, settings))


def best(history: xr.Dataset, *, after_iteration: int | None = None,
         within_iteration: int | None = None) -> xr.DataArray:
    """Each basin's best parameter set in a calibration history.

    ``history`` is a result of :func:`loop` or :func:`dds`; ``after_iteration``
    or ``within_iteration`` keeps only the runs up to that iteration (0: the
    initial design) or of that iteration, as Tang et al. (2025) report them.
    Returns ``(basin, param)`` in parameter units, each set's ``skill`` as a
    coordinate; NaN for a basin whose every run failed.
    """
    dims = {v: set(history[v].dims) if v in history else None for v in ("params", "skill")}
    if dims != {"params": {"basin", "member", "param"}, "skill": {"basin", "member"}}:
        raise ValueError(f"best() needs params(basin, member, param) and skill(basin, member), as "
                         f"loop() and dds() return; got {dims} (None: missing). Rename other dims "
                         "first, e.g. history.rename(run='member'); of run_ensemble's Dataset take "
                         "a score's best member: ens.kge_prime.sel(period=...).argmax('member').")
    history = history.transpose("basin", "member", ...)
    skill = np.nan_to_num(history.skill.values, nan=-np.inf)
    if after_iteration is not None or within_iteration is not None:
        if "iteration" not in history:
            raise ValueError("This history has no iterations (a DDS run?); give neither "
                             "after_iteration nor within_iteration.")
        it = history.iteration.values
        if after_iteration is not None:
            skill = np.where(it <= after_iteration, skill, -np.inf)
        if within_iteration is not None:
            skill = np.where(it == within_iteration, skill, -np.inf)
        if np.isneginf(skill).all(axis=1).any():
            raise ValueError(f"No runs in iteration {within_iteration or after_iteration}; the "
                             f"history has iterations 0 to {int(it.max())}.")
    top = history.isel(member=xr.DataArray(skill.argmax(axis=1), dims="basin"))
    failed = xr.DataArray(np.isneginf(skill).all(axis=1), dims="basin")
    if failed.any():  # every run failed: there is no best set, not member 0's
        warnings.warn(f"Every run of {int(failed.sum())} basin(s) failed (skill NaN): their best "
                      "set is NaN.", UserWarning, stacklevel=2)
    return top.params.where(~failed).assign_coords(skill=top.skill).drop_vars("member", errors="ignore")


# ------------------------------------------------------------------------- DDS
def dds_move(best_u, p_move, r, rng):
    """DDS's candidates ``(basin, k, param)`` around each basin's best point ``best_u``.

    Each parameter moves with probability ``p_move`` ``(k,)``, one per
    candidate (at least one moves), by ``r`` times a normal draw, reflected
    at the faces of the unit cube; ``rng`` is a :class:`numpy.random.Generator`.
    """
    n_basin, d = best_u.shape
    move = rng.uniform(size=(n_basin, len(p_move), d)) < p_move[None, :, None]
    none, forced = ~move.any(axis=2), rng.integers(d, size=(n_basin, len(p_move)))
    move[none, forced[none]] = True  # at least one parameter moves
    candidates = np.abs(best_u[:, None, :] + np.where(move, r * rng.standard_normal(move.shape), 0))
    return np.where(candidates > 1, 2 - candidates, candidates).clip(0, 1)  # reflect at the bounds


def dds(run: Runner, space: ParameterSpace, n_evaluations: int, *, r: float = 0.2, batch: int = 1,
        seed: int = 0) -> xr.Dataset:
    """Dynamically Dimensioned Search (Tolson and Shoemaker 2007), one search per basin, all at once.

    From each basin's default, every parameter moves at evaluation ``i`` with
    probability ``1 - ln(i) / ln(n_evaluations)`` (:func:`dds_move`), by ``r``
    times its range; ``batch > 1`` runs that many candidates per step (1: the
    original algorithm). A failed run (NaN) counts as the worst.

    Returns
    -------
    xarray.Dataset
        ``params(basin, member, param)``, ``skill(basin, member)``, ``best_skill(basin, evaluation)``.
    """
    if n_evaluations < 1 or int(n_evaluations) != n_evaluations:
        raise ValueError(f"n_evaluations must be a whole number of runs, at least 1; got {n_evaluations!r}.")
    rng = np.random.default_rng(seed)
    best_u = space.to_unit(fill_defaults(run, space.defaults[None])[:, 0])  # each basin's default
    params = [space.from_unit(best_u)[:, None, :]]
    skill = [np.where(np.isfinite(f := run(params[0])), f, -np.inf)]
    best_f, trace = skill[0][:, 0], [skill[0][:, 0]]
    for done in range(1, n_evaluations, batch):  # evaluations done, then batch (or fewer) more
        i = np.arange(done, min(done + batch, n_evaluations)) + 1
        candidates = dds_move(best_u, 1.0 - np.log(i) / np.log(n_evaluations), r, rng)
        params.append(space.from_unit(candidates.reshape(-1, len(space))).reshape(candidates.shape))
        skill.append(np.where(np.isfinite(f := run(params[-1])), f, -np.inf))
        for j in range(len(i)):
            better = skill[-1][:, j] > best_f
            best_f = np.where(better, skill[-1][:, j], best_f)
            best_u = np.where(better[:, None], candidates[:, j], best_u)
            trace.append(best_f)
    return xr.Dataset({
        "params": (("basin", "member", "param"), np.concatenate(params, axis=1)),
        "skill": (("basin", "member"), np.concatenate(skill, axis=1)),
        "best_skill": (("basin", "evaluation"), np.stack(trace, axis=1)),
    }, coords={"param": space.names, "evaluation": np.arange(1, len(trace) + 1), "basin": run.basins})


# ------------------------------------------------------------------- posterior
def log_likelihood(predict: Callable, unit: np.ndarray, tau: float) -> np.ndarray:
    """Informal log-likelihood ``(basin, m)`` of parameter sets ``unit`` ``(basin, m, param)``.

    A perfect model scores normKGE 1, give or take ``tau`` (a choice: the error
    no parameter set removes). Averaged over the emulator's prediction ``N(mu,
    s^2)`` (``predict(unit, return_std=True)``), the normal likelihood is, a
    constant aside, ``-(1 - mu)^2 / (2 (tau^2 + s^2)) - log(tau^2 + s^2) / 2``.
    """
    mu, sd = predict(unit, return_std=True)
    var = tau ** 2 + sd ** 2
    return -(1.0 - mu) ** 2 / (2 * var) - 0.5 * np.log(var)


def posterior(predict: Callable, space: ParameterSpace, init: np.ndarray, *, tau: float = 0.05,
              n_steps: int = 2000, burn: int = 1000, thin: int = 10, seed: int = 0) -> xr.Dataset:
    """Draws of each basin's parameters from the posterior on the emulator (random-walk Metropolis).

    The prior is uniform in the unit cube (in log for log-scaled parameters),
    the likelihood :func:`log_likelihood` (``predict``, ``tau``). The chains
    start at ``init`` ``(basin, chain, param)`` in the unit cube (each basin's
    best runs, say) and step by normal moves reflected at the faces; in the
    first ``burn`` steps, dropped, each basin's step is tuned towards an
    acceptance rate of 0.25; then every ``thin``-th state is a draw.

    Returns
    -------
    xarray.Dataset
        ``params(basin, member, param)``, the draws in ``space``'s units, and
        ``acceptance(basin)`` after burn-in. Label basins with ``.assign_coords(basin=...)``.
    """
    if burn >= n_steps:
        raise ValueError(f"burn ({burn}) must be smaller than n_steps ({n_steps}).")
    rng = np.random.default_rng(seed)
    x = np.array(init, dtype=float)
    lx = log_likelihood(predict, x, tau)
    step = np.full((len(x), 1, 1), 0.1)
    draws, rates = [], []
    for i in range(n_steps):
        prop = np.abs(x + step * rng.standard_normal(x.shape))
        prop = np.where(prop > 1, 2 - prop, prop).clip(0, 1)  # reflected at the cube's faces
        lp = log_likelihood(predict, prop, tau)
        accept = np.log(rng.uniform(size=lx.shape)) < lp - lx  # with probability min(1, L(prop) / L(x))
        x, lx = np.where(accept[..., None], prop, x), np.where(accept, lp, lx)
        if i < burn:  # tune each basin's step towards an acceptance rate of 0.25
            step = np.clip(step * np.exp(0.5 * (accept.mean(axis=1) - 0.25))[:, None, None], 1e-3, 0.5)
        else:
            rates.append(accept.mean(axis=1))
            if (i - burn) % thin == 0:
                draws.append(x)
    params = space.from_unit(np.concatenate(draws, axis=1))  # (basin, member, param)
    return xr.Dataset({"params": (("basin", "member", "param"), params),
                       "acceptance": ("basin", np.mean(rates, axis=0))}, coords={"param": list(space.names)})
