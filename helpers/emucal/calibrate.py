"""Calibration: fit an emulator, propose runs, run them, repeat; and a DDS baseline.

Chapter 5 of the book writes the loop of Tang, Wood and Swenson (2025), after
the MO-ASMO method of Gong et al. (2016), in cells marked
``#@save emucal.calibrate``, and this module keeps the same code
(``tests/test_notebook_code.py`` fails when the two differ):

- :func:`loop` runs an initial design, then, ``n_iterations`` times, asks a
  proposal rule ``propose(unit, skill, iteration)`` for the next runs of every
  basin, runs them and adds them to the history;
- the proposal rules: :func:`tang_batch`, Tang et al.'s batch (one search of
  the emulator's mean per new run, :func:`search`, a differential evolution
  run for all basins at once), and :func:`thompson_batch`, Thompson sampling
  (:func:`thompson`) near each basin's best run in a trust region
  (:func:`trust_steps`, after TuRBO, Eriksson et al. 2019). Both take
  ``fit(unit, skill, seed)``, which returns the emulator: by default
  :func:`fit_sse`, one GP per basin;
- :func:`dds`, Dynamically Dimensioned Search (Tolson and Shoemaker 2007), the
  standard budget-limited optimiser of hydrological models, run on the model
  itself as the baseline at an equal number of model runs.

Around them the module keeps what the chapter does not show: the
:class:`Runner` that turns parameter sets into skill (:func:`model_runner`
for the teaching model), :func:`checkpoint`, which resumes an interrupted
loop with the numbers of one that never stopped, :func:`best`, which reads a
history, and :func:`posterior`, which samples the parameters on an emulator.
The large-sample emulators and regionalisation are in :mod:`emucal.regionalise`.

The best parameter set of a basin is the best *model run* so far, never an
emulator prediction: the emulator proposes, the model decides. Every step
takes a seed; the same seed gives the same parameter sets.

References
----------
Eriksson, D., Pearce, M., Gardner, J., Turner, R. D. and Poloczek, M. (2019). Scalable
global optimization via local Bayesian optimization. NeurIPS 32.
Gong, W., Duan, Q., Li, J., Wang, C., Di, Z., Ye, A., Miao, C. and Dai, Y. (2016).
Multiobjective adaptive surrogate modeling-based optimization for parameter
estimation of large, complex geophysical models. Water Resour. Res. 52, 1984-2008.
Storn, R. and Price, K. (1997). Differential evolution. J. Glob. Optim. 11, 341-359.
Tolson, B. A. and Shoemaker, C. A. (2007). Dynamically dimensioned search algorithm
for computationally efficient watershed model calibration. Water Resour. Res. 43, W01413.
Tang, G., Wood, A. W. and Swenson, S. (2025). Water Resour. Res. 61, e2024WR039525.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from . import metrics as skill_metrics
from .metrics import to_norm
from ._io import write_netcdf_atomic
from .emulators import GPEmulator
from .model import prepare_inputs, run_columns
from .parameters import ParameterSpace

__all__ = [
    "Runner", "best", "best_so_far", "candidates_near_best", "checkpoint", "dds", "dds_move", "describe",
    "fill_defaults", "fit_sse", "loop", "make_history", "model_runner", "nearest_best", "pick_distinct",
    "posterior", "search", "tang_batch", "thompson", "thompson_batch", "trust_steps",
]


# -------------------------------------------------------------- checkpoints
def _settings_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _load_checkpoint(path, settings: dict) -> xr.Dataset | None:
    """The checkpoint at ``path`` if there is one, after checking it matches ``settings``."""
    if path is None or not Path(path).exists():
        return None
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"The checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                         "it is damaged or not a checkpoint. Delete it to start again.") from err
    found = ds.attrs.get("emucal_settings")
    if found != _settings_json(settings):
        raise ValueError(
            f"The checkpoint {path} was written by a run with other settings:\n  {found}\n"
            f"this run has\n  {_settings_json(settings)}\n"
            "Delete the file to start again, or pass another checkpoint path.")
    return ds


def _save_checkpoint(ds: xr.Dataset, path, settings: dict) -> None:
    """Write ``ds`` to ``path`` atomically (a half-written file never replaces a good one)."""
    if path is None:
        return
    ds = ds.copy()
    ds.attrs["emucal_settings"] = _settings_json(settings)
    write_netcdf_atomic(ds, path)


def _fingerprint(array) -> str:
    """A short digest of an array, to tell checkpoints of different inputs apart."""
    import hashlib

    array = np.ascontiguousarray(np.asarray(array, dtype=float))
    return hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]


# ------------------------------------------------------------------- runner
@dataclass(frozen=True)
class Runner:
    """A model as the calibration loop sees it: parameter sets in, skill out.

    :func:`loop` and :func:`dds` call ``runner(params)`` with parameter
    sets ``(basin, n, param)`` in parameter units (basin ``b`` is run with
    its own ``n`` sets) and expect the skill ``(basin, n)`` back.
    :func:`model_runner` builds one for the teaching model; for your own
    model (CTSM through :mod:`emucal.ctsm`, or anything else) build one
    around a function that runs it::

        runner = Runner(run_my_model, basins=["01013500", "01022500"],
                        names=space.names, fingerprint="my model v1, KGE', WY1995-2007")

    Attributes
    ----------
    run
        The function ``(basin, n, param) -> (basin, n)``.
    basins
        Basin ids, in the order of the first axis; they label the results.
    names
        Parameter names, in the order of the last axis; needed by
        :meth:`subset`.
    defaults
        ``(basin, param)``: each basin's default parameter set, which a NaN
        in a parameter set stands for (the default member of
        :func:`emucal.sampling.sample` is NaN where the default differs by
        basin). ``None``: parameter sets must not hold NaN.
    fingerprint
        What the skill depends on besides the parameters (model, basins,
        metric, period, forcing). Checkpoints record it and refuse to mix
        runs of two fingerprints; leave it empty and they cannot tell.
    """

    run: Callable[[np.ndarray], np.ndarray]
    basins: np.ndarray
    names: tuple[str, ...] | None = None
    defaults: np.ndarray | None = None
    fingerprint: str = ""

    def __post_init__(self):
        object.__setattr__(self, "basins", np.asarray(self.basins))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
        if self.defaults is not None:
            defaults = np.asarray(self.defaults, float)
            want = (self.n_basin, len(self.names) if self.names is not None else defaults.shape[-1])
            if defaults.shape != want:
                raise ValueError(f"defaults must be (basin, param) = {want}; got {defaults.shape}.")
            object.__setattr__(self, "defaults", defaults)

    @property
    def n_basin(self) -> int:
        return len(self.basins)

    def __call__(self, params) -> np.ndarray:
        params = np.asarray(params, dtype=float)
        if params.ndim != 3 or params.shape[0] != self.n_basin:
            raise ValueError(f"params must be (basin={self.n_basin}, n, param); got {params.shape}.")
        if self.names is not None and params.shape[-1] != len(self.names):
            raise ValueError(f"params must have {len(self.names)} parameters ({', '.join(self.names)}); "
                             f"got {params.shape[-1]}.")
        return np.asarray(self.run(params), dtype=float)

    def subset(self, names) -> "Runner":
        """The same model with only ``names`` free and every other parameter at the basin's default.

        Calibrate in a reduced space (for example the most influential
        parameters of chapter 8) with ``space.subset(names)`` and this runner.
        """
        if self.names is None or self.defaults is None:
            raise ValueError("subset needs a runner with names and defaults (as model_runner gives).")
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ValueError(f"Unknown parameters {unknown}; the runner has {list(self.names)}.")
        columns = [self.names.index(n) for n in names]
        full_run, n_full = self.run, len(self.names)

        def run(params):
            full = np.full((*params.shape[:-1], n_full), np.nan)
            full[..., columns] = params
            return full_run(np.where(np.isnan(full), self.defaults[:, None, :], full))

        return Runner(run, self.basins, names=tuple(names), defaults=self.defaults[:, columns],
                      fingerprint=f"{self.fingerprint}|free: {','.join(names)}")


def model_runner(forcing: xr.Dataset, attrs, space: ParameterSpace, *, metric: str = "kge_prime",
                 period="calibration", spinup_years: int = 1,
                 snowpack: bool = True) -> Runner:
    """The teaching model as a :class:`Runner`: parameter sets in, skill over ``period`` out.

    The skill (``metric``) is computed over ``period`` (a name in
    :data:`emucal.metrics.PERIODS` or a pair of water years) for every basin of ``forcing``; a NaN in a parameter set stands for the
    basin's default (``runner.defaults``, from
    :func:`emucal.model.default_params`). Model inputs are prepared once, so
    repeated calls cost only the runs. ``snowpack=False`` runs the broken
    model of chapter 7 (see :func:`emucal.model.run_columns`).
    """
    inputs = prepare_inputs(forcing, attrs)
    period = skill_metrics.water_years(period)
    window = skill_metrics.water_year_window(forcing.time.values, period)
    qobs = forcing["qobs"].values[:, window]
    score = {"kge_prime": skill_metrics.kge_prime, "kge": skill_metrics.kge,
             "nse": skill_metrics.nse, "norm_kge": skill_metrics.norm_kge}[metric]
    n_basin = inputs.shape[0]

    def run(params: np.ndarray) -> np.ndarray:
        space.validate(params.reshape(-1, params.shape[-1]))
        n = params.shape[1]
        columns = params.reshape(-1, params.shape[-1])
        col_basin = np.repeat(np.arange(n_basin), n)
        flow = run_columns(columns, col_basin, inputs, spinup_years=spinup_years,
                           snowpack=snowpack)[0]["qsim"]
        flow = flow.reshape(n_basin, n, -1)[..., window]
        return score(flow, qobs[:, None, :])

    fingerprint = "|".join([
        ",".join(map(str, forcing.basin.values)), metric, f"{period[0]}-{period[1]}",
        f"spinup {spinup_years}", f"snowpack {snowpack}", ",".join(space.names),
        _fingerprint(np.stack([inputs.prcp, inputs.tair, inputs.pet])), _fingerprint(qobs)])
    return Runner(run, forcing.basin.values, names=space.names, defaults=inputs.defaults,
                  fingerprint=fingerprint)


def _as_runner(run) -> Runner:
    if not isinstance(run, Runner):
        raise TypeError(f"run must be a calibrate.Runner (from model_runner, or Runner(your_function, "
                        f"basins=...) for your own model); got {type(run).__name__}.")
    return run


def _resolve_defaults(run: Runner, params: np.ndarray) -> np.ndarray:
    """Parameter sets ``(basin, n, param)`` with each NaN replaced by the basin's default."""
    if not np.isnan(params).any():
        return params
    if run.defaults is None:
        raise ValueError("The parameter sets hold NaN (a basin's own default, as in the default "
                         "member of sampling.sample), but the runner has no defaults (basin, param) "
                         "to fill them; give explicit values or Runner(..., defaults=...).")
    return np.where(np.isnan(params), run.defaults[:, None, :], params)


# ------------------------------------------------------------------- search
def search(predict: Callable[[np.ndarray], np.ndarray], n_basin: int, n_dim: int, *,
           popsize: int = 150, generations: int = 60, f: float = 0.7, cr: float = 0.9,
           seed: int = 0):
    """Maximise an emulator's mean in the unit cube, for all basins at once (DE/rand/1/bin).

    Parameters
    ----------
    predict
        ``predict(u)`` with ``u`` of shape ``(basin, m, n_dim)`` in the unit
        cube, returning the predicted skill ``(basin, m)`` (higher is better).
    n_basin, n_dim
        Basins and parameters.
    popsize, generations
        Population per basin and generations: ``popsize * generations``
        emulator evaluations per basin.
    f, cr
        Differential weight and crossover probability (Storn and Price 1997).
    seed
        Random seed.

    Returns
    -------
    population : ndarray ``(basin, popsize, n_dim)``
        The final population, best first in each basin.
    fitness : ndarray ``(basin, popsize)``
        Their predicted skill.
    """
    rng = np.random.default_rng(seed)
    pop = rng.uniform(size=(n_basin, popsize, n_dim))
    fit = predict(pop)
    idx = np.arange(popsize)
    for _ in range(generations):
        # three distinct partners per member, different from the member itself
        r = np.stack([rng.permutation(np.delete(idx, i))[:3] for i in idx])  # (popsize, 3)
        mutant = pop[:, r[:, 0]] + f * (pop[:, r[:, 1]] - pop[:, r[:, 2]])
        # reflect into the cube
        mutant = np.abs(mutant)
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


def thompson(emulator, unit: np.ndarray, skill: np.ndarray, n: int, *, n_candidates: int = 1024,
             perturb: float = 0.2, step=0.2, seed: int = 0) -> np.ndarray:
    """Propose ``n`` new runs per basin by Thompson sampling near each basin's best run.

    For every basin, ``n_candidates`` points are made from its best run so far
    the way DDS makes one (Tolson and Shoemaker 2007): each parameter moves
    with probability ``perturb`` (at least one does) by a normal step of
    ``step`` times its range, reflected at the bounds of the unit cube. Then
    ``n`` functions are drawn from the emulator's posterior over all the
    candidates jointly (:meth:`emucal.emulators.GPEmulator.sample_y`), and
    each draw contributes the candidate where it is highest (the next highest
    when that one is taken). Where the emulator is sure, the draws agree and
    the batch refines the best region; where it is unsure, they disagree and
    the batch spreads out: the uncertainty decides how much to explore.

    Parameters
    ----------
    emulator
        A fitted batched emulator with ``sample_y`` (one GP per basin).
    unit, skill
        The runs so far, ``(basin, k, d)`` in the unit cube, and their skill
        ``(basin, k)`` (NaN counts as the worst).
    n
        New runs per basin.
    n_candidates, perturb, step
        Candidates per basin and how they are made (see above); ``step`` is
        one number or one per basin (see :func:`trust_steps`).
    seed
        Seed of the candidates and the draws.

    Returns
    -------
    ndarray ``(basin, n, d)``
        The proposals in the unit cube.
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


def candidates_near_best(unit, skill, n_candidates, perturb, step, rng):
    """Candidates around each basin's best run, made the way DDS makes its moves.

    Each parameter of the best run moves with probability ``perturb`` (at
    least one does) by a normal step of ``step`` times its range (one number,
    or one per basin), reflected at the bounds of the unit cube.

    Returns
    -------
    ndarray ``(basin, n_candidates, param)``
    """
    n_basin, _, d = unit.shape
    best = unit[np.arange(n_basin), np.nan_to_num(skill, nan=-np.inf).argmax(axis=1)]
    mask = rng.uniform(size=(n_basin, n_candidates, d)) < perturb
    forced = rng.integers(d, size=(n_basin, n_candidates))
    mask[np.arange(n_basin)[:, None], np.arange(n_candidates)[None, :], forced] = True
    step = np.broadcast_to(np.asarray(step, float), (n_basin,))[:, None, None]
    candidates = np.abs(best[:, None, :] + np.where(mask, step * rng.standard_normal(mask.shape), 0.0))
    return np.where(candidates > 1, 2 - candidates, candidates).clip(0, 1)


def trust_steps(best_skill: np.ndarray, *, start: float = 0.2, smallest: float = 0.0125,
                largest: float = 0.4, patience: int = 3) -> np.ndarray:
    """Each basin's step size for the next batch, from how its search has gone (a trust region).

    The rule of TuRBO's trust region (Eriksson et al. 2019): a basin's step
    starts at ``start`` (in unit-cube units); after ``patience`` iterations in
    a row that improved its best skill it doubles (at most ``largest``), after
    ``patience`` in a row that did not it halves (at least ``smallest``), and
    the count starts again. (TuRBO waits ``max(4, d) / batch`` failures, which
    is 4 for 16 parameters in batches of 5, and restarts a region that
    collapses; here both counts are ``patience`` and the step stops at
    ``smallest``.) A search that keeps succeeding takes bolder steps; one that keeps
    failing looks closer to its best run, where a smooth surface must improve
    if anything does. An iteration counts as improving when the best skill
    rose by more than 0.1% of its size.

    Parameters
    ----------
    best_skill
        ``(basin, k)``: the best skill after the initial design and after each
        of the iterations so far (``best_skill`` of a :func:`loop` history).

    Returns
    -------
    ndarray ``(basin,)``
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


def pick_distinct(candidates: np.ndarray, n: int, *, min_distance: float = 0.05,
                  avoid: np.ndarray | None = None) -> np.ndarray:
    """Take ``n`` candidates per basin, best first, none closer than ``min_distance``.

    ``candidates`` is ``(basin, m, d)`` sorted best first (as :func:`search`
    returns them); ``avoid`` ``(basin, k, d)`` are points already run, which
    new candidates also keep away from. Distances are Euclidean in the unit
    cube divided by ``sqrt(d)``. When too few candidates are far enough
    apart, the remaining slots take the next best ones regardless.
    """
    n_basin, m, d = candidates.shape
    out = np.empty((n_basin, n, d))
    scale = np.sqrt(d)
    for b in range(n_basin):
        chosen: list[np.ndarray] = []
        taken = np.zeros(m, bool)
        existing = avoid[b] if avoid is not None else np.empty((0, d))
        for i in range(m):
            if len(chosen) == n:
                break
            ref = np.concatenate([existing, np.array(chosen).reshape(-1, d)])
            if ref.size == 0 or np.min(np.linalg.norm(ref - candidates[b, i], axis=1)) / scale >= min_distance:
                chosen.append(candidates[b, i])
                taken[i] = True
        rest = iter(np.flatnonzero(~taken))
        while len(chosen) < n:
            chosen.append(candidates[b, next(rest)])
        out[b] = np.array(chosen)
    return out


# ------------------------------------------------------------------- the loop
# Saved from chapter 5 (book/05_calibration.ipynb, cells marked "#@save emucal.calibrate"):
# the chapter writes the loop, its proposal rules and DDS; tests/test_notebook_code.py
# fails when the chapter's cells and these definitions differ.

def fit_sse(unit, skill, seed=0):
    """One GP per basin (:class:`~emucal.emulators.GPEmulator`) on normKGE.

    Parameters
    ----------
    unit
        ``(basin, n, param)``: the runs so far, in the unit cube.
    skill
        ``(basin, n)``: their KGE'. A failed run (NaN) counts as the worst
        possible run, normKGE -1, so that the search learns to avoid it.
    seed
        Seed of the fit.
    """
    target = to_norm(np.where(np.isfinite(skill), skill, -1e6)).clip(-1, 1)
    return GPEmulator(seed=seed).fit(unit, target)


def best_so_far(skill, iteration):
    """``(basin, iteration)``: the best skill up to and including each iteration (0: the initial design)."""
    return np.stack([np.nanmax(np.where(iteration <= k, skill, -np.inf), axis=1)
                     for k in range(int(iteration.max()) + 1)], axis=1)


def tang_batch(unit, skill, iteration, *, n, fit=fit_sse, popsize=60, generations=60, seed=0):
    """Propose ``n`` runs per basin as Tang et al.'s code does: ``n`` independent searches.

    ``run_ga_optimization`` in ``MOASMO_parameters.py`` of
    NCAR/CTSM_calibration runs one search of the emulator's predicted mean
    per new run, each from its own random population, and runs the best point
    of each. Here the searches are :func:`search` (their GA: population 60, 60
    generations), all basins' and all searches' populations in one batched
    call of the emulator per generation; predictions above 1 (normKGE's best)
    count as 1.

    Parameters
    ----------
    unit, skill, iteration
        The runs so far: ``(basin, k, param)`` in the unit cube, their skill
        ``(basin, k)`` and iteration ``(basin, k)``.
    n
        New runs per basin.
    fit
        ``fit(unit, skill, seed)`` returns an emulator with ``predict(u)``
        for ``u`` ``(basin, m, param)``; by default :func:`fit_sse`.
    popsize, generations, seed
        Size of each search and the seed (the iteration is added to it).

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


def thompson_batch(unit, skill, iteration, *, n, n_local=None, n_candidates=1024, perturb=0.2,
                   fit=fit_sse, seed=0):
    """Propose ``n`` runs per basin by Thompson sampling in a trust region (after TuRBO).

    Each basin's emulator learns from its ``n_local`` runs nearest its best
    run (all runs with ``None``); its step size follows :func:`trust_steps`;
    :func:`thompson` draws the batch among perturbations of the best run.

    Parameters
    ----------
    unit, skill, iteration, n, fit, seed
        As in :func:`tang_batch`; ``fit`` must return an emulator with
        ``sample_y`` (joint posterior draws).
    n_local
        Runs each basin's emulator learns from, nearest its best run.
    n_candidates, perturb
        Candidates per basin and the probability that a parameter moves
        (see :func:`thompson`).

    Returns
    -------
    ndarray ``(basin, n, param)``
    """
    it = int(iteration.max()) + 1
    near = nearest_best(unit, skill, n_local)
    local = np.take_along_axis(unit, near[..., None], axis=1)
    emulator = fit(local, np.take_along_axis(skill, near, axis=1), seed=seed + it)
    step = trust_steps(best_so_far(skill, iteration))
    return thompson(emulator, unit, skill, n, n_candidates=n_candidates, perturb=perturb,
                    step=step, seed=seed + 1000 * it)


def loop(run, space, initial, propose, n_iterations, save=None):
    """Emulator-based calibration: fit, propose, run, append, ``n_iterations`` times.

    Parameters
    ----------
    run
        The model as a :class:`Runner` (parameter sets ``(basin, n, param)``
        in, skill ``(basin, n)`` out).
    space
        The :class:`~emucal.parameters.ParameterSpace`.
    initial
        The initial design, ``(n, param)`` for every basin or ``(basin, n,
        param)``; NaN stands for a basin's own default (``run.defaults``). Or
        a history returned earlier: the loop continues it.
    propose
        ``propose(unit, skill, iteration)`` returns the next runs ``(basin,
        m, param)`` in the unit cube, for example :func:`tang_batch` or
        :func:`thompson_batch` with their settings bound by
        :func:`functools.partial`.
    n_iterations
        Iterations in all (a continued history counts the ones it has).
    save
        Called with the history after the initial design and after every
        iteration (see :func:`checkpoint`).

    Returns
    -------
    xarray.Dataset
        Every run: ``params(basin, member, param)``, ``skill(basin, member)``,
        ``iteration(basin, member)`` (0: the initial design), and
        ``best_skill(basin, after_iteration)``.
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


def fill_defaults(run, params):
    """Parameter sets ``(basin, n, param)`` from ``(n, param)`` or ``(basin, n, param)``,
    each NaN replaced by the basin's own default (``run.defaults``)."""
    run = _as_runner(run)
    params = np.asarray(params, dtype=float)
    if params.ndim == 2:
        params = np.broadcast_to(params, (run.n_basin,) + params.shape)
    return _resolve_defaults(run, params).copy()


def make_history(params, skill, iteration, space, basins) -> xr.Dataset:
    """The history of a calibration as :func:`loop` returns it."""
    return xr.Dataset({
        "params": (("basin", "member", "param"), params),
        "skill": (("basin", "member"), skill),
        "iteration": (("basin", "member"), iteration),
        "best_skill": (("basin", "after_iteration"), best_so_far(skill, iteration)),
    }, coords={"param": space.names, "after_iteration": np.arange(int(iteration.max()) + 1),
               "basin": basins})


def describe(fn) -> str:
    """A stable text for a proposal rule: a function's name, with the settings a
    :func:`functools.partial` binds (so that a checkpoint can tell two rules apart)."""
    import functools

    if isinstance(fn, functools.partial):
        bound = {k: describe(v) if callable(v) else v for k, v in sorted(fn.keywords.items())}
        return f"{describe(fn.func)}({', '.join(map(repr, fn.args))}; {bound})"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def checkpoint(path, run, space, initial, propose):
    """Resume :func:`loop` from a netCDF file, and save to it after every iteration.

    Returns ``(start, save)``: the history stored at ``path`` if there is one
    (checked to belong to this runner, initial design and proposal rule), else
    ``initial``; and the ``save`` function to give :func:`loop`::

        start, save = calibrate.checkpoint("loop.nc", run, space, initial, propose)
        history = calibrate.loop(run, space, start, propose, 3, save=save)

    Call it again with the same file after an interruption: the loop carries
    on where it stopped, with the numbers of a run that was never
    interrupted. A file written with other settings is refused.
    """
    run = _as_runner(run)
    settings = dict(kind="loop", runner=run.fingerprint or None, propose=describe(propose),
                    initial=_fingerprint(fill_defaults(run, initial)), param=list(space.names))
    saved = _load_checkpoint(path, settings)
    return (initial if saved is None else saved), (lambda h: _save_checkpoint(h, path, settings))


# ------------------------------------------------------------------ results
def best(history: xr.Dataset, *, after_iteration: int | None = None,
         within_iteration: int | None = None) -> xr.DataArray:
    """Each basin's best parameter set in a calibration history.

    Parameters
    ----------
    history
        A result of :func:`loop` or :func:`dds` (``params(basin, member,
        param)`` and ``skill(basin, member)``).
    after_iteration
        Only runs up to and including this iteration (0: the initial design):
        the best found so far at that point.
    within_iteration
        Only the runs of this iteration: how Tang et al. (2025) report each
        iteration (the best of its new runs, not the best so far).

    Returns
    -------
    xarray.DataArray
        ``(basin, param)`` in parameter units, with the skill of each set as
        the coordinate ``skill``.
    """
    dims = tuple(history.params.dims)
    if set(dims) not in ({"basin", "member", "param"}, {"basin", "param"}) or \
            set(history.skill.dims) != set(dims) - {"param"}:
        raise ValueError(f"best() needs params(basin, member, param) and skill(basin, member), as "
                         f"loop() and dds() return; got params{dims} and "
                         f"skill{tuple(history.skill.dims)}. Rename other dimensions first, e.g. "
                         f"history.rename(run='member').")
    history = history.transpose("basin", ...)
    skill = np.nan_to_num(history.skill.transpose("basin", ...).values, nan=-np.inf)
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
    idx = skill.argmax(axis=1)
    rows = np.arange(skill.shape[0])
    out = history.params.isel(member=xr.DataArray(idx, dims="basin")) if "member" in history.params.dims \
        else history.params
    return out.assign_coords(skill=("basin", history.skill.values[rows, idx])).drop_vars(
        "member", errors="ignore")


# --------------------------------------------------------------------- DDS
def dds_move(best_u, p_move, r, rng):
    """DDS's candidates: each basin's best point, every parameter moved with probability ``p_move``.

    Parameters
    ----------
    best_u
        ``(basin, param)``: each basin's best point, in the unit cube.
    p_move
        ``(k,)``: the probability that a parameter moves, one per candidate
        (at least one parameter of each candidate moves).
    r
        Standard deviation of a move, as a fraction of the range.
    rng
        A :class:`numpy.random.Generator`.

    Returns
    -------
    ndarray ``(basin, k, param)``: the candidates, reflected at the bounds of the cube.
    """
    n_basin, d = best_u.shape
    move = rng.uniform(size=(n_basin, len(p_move), d)) < p_move[None, :, None]
    none, forced = ~move.any(axis=2), rng.integers(d, size=(n_basin, len(p_move)))
    move[none, forced[none]] = True  # at least one parameter moves
    candidates = np.abs(best_u[:, None, :] + np.where(move, r * rng.standard_normal(move.shape), 0))
    return np.where(candidates > 1, 2 - candidates, candidates).clip(0, 1)  # reflect at the bounds


def dds(run, space, n_evaluations, *, r=0.2, batch=1, seed=0):
    """Dynamically Dimensioned Search (Tolson and Shoemaker 2007), one search per basin, all at once.

    Each basin starts from its default (``space.defaults``, with the basin's
    own where that is NaN: :func:`fill_defaults`). At evaluation ``i`` every parameter moves with
    probability ``1 - ln(i) / ln(n_evaluations)`` (:func:`dds_move`); the
    candidate replaces the best point if it is better. With ``batch > 1`` a
    step runs that many perturbations of the best point and keeps the best of
    them (fewer, larger model calls; ``batch=1`` is the original algorithm).
    A failed run (NaN skill) counts as the worst.

    Returns
    -------
    xarray.Dataset
        ``params(basin, member, param)``, ``skill(basin, member)`` and
        ``best_skill(basin, evaluation)`` after each evaluation.
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


def posterior(predict: Callable, space: ParameterSpace, basins, *, tau: float = 0.05,
              n_chains: int = 16, n_steps: int = 2000, burn: int = 1000, thin: int = 10,
              seed: int = 0, init: np.ndarray | None = None) -> xr.Dataset:
    """Posterior samples of the parameters, on the emulator, for all basins at once.

    The skill of a parameter set is treated as an informal likelihood: a
    perfect model would score normKGE = 1, and the distance from 1 is judged
    against a tolerance ``tau`` plus the emulator's own uncertainty. With
    the emulator's prediction ``N(mu(u), s(u)^2)`` for normKGE at unit-cube
    point ``u``, integrating over it gives

    ``log L(u) = -(1 - mu)^2 / (2 (tau^2 + s^2)) - log(tau^2 + s^2) / 2``,

    so parameter sets where the emulator is unsure are neither rewarded nor
    excluded with false confidence. The prior is uniform in the unit cube
    (uniform in log for log-scaled parameters). ``tau`` sets how sharp the
    posterior is: it plays the role of the error that no parameter set can
    remove (chapter 7), and is a choice, not a measured quantity.

    Sampling is random-walk Metropolis with ``n_chains`` chains per basin,
    steps reflected at the cube's faces, and the step size tuned during
    burn-in towards an acceptance rate of about 0.25.

    Parameters
    ----------
    predict
        ``predict(u, return_std=True)`` with unit-cube points ``u`` ``(basin,
        m, param)`` returning mean and standard deviation of normKGE
        ``(basin, m)`` (e.g. a batched
        :class:`~emucal.emulators.GPEmulator`'s ``predict``).
    space
        The parameter space (the draws are returned in its units).
    basins
        The basin ids, one per batch member of ``predict``.
    tau
        Tolerance on normKGE (see above).
    n_chains, n_steps, burn, thin
        Chains per basin, steps per chain, burn-in steps dropped, thinning.
    seed
        Random seed.
    init
        Starting points ``(basin, n_chains, param)`` in the unit cube, e.g.
        the best runs.

    Returns
    -------
    xarray.Dataset
        ``params(basin, member, param)``: the posterior draws, in parameter
        units; ``acceptance(basin)``: the acceptance rate after burn-in.
    """
    if burn >= n_steps:
        raise ValueError(f"burn ({burn}) must be smaller than n_steps ({n_steps}).")
    basins = np.asarray(basins)
    n_basin, n_dim = len(basins), len(space)
    rng = np.random.default_rng(seed)

    def log_like(u):
        mu, sd = predict(u, return_std=True)
        var = tau ** 2 + np.asarray(sd) ** 2
        return -((1.0 - np.asarray(mu)) ** 2) / (2 * var) - 0.5 * np.log(var)

    x = rng.uniform(size=(n_basin, n_chains, n_dim)) if init is None else np.array(init, float)
    lx = log_like(x)
    step = np.full((n_basin, 1, 1), 0.1)
    draws, accepted, counted = [], np.zeros(n_basin), 0
    for i in range(n_steps):
        prop = x + step * rng.standard_normal(x.shape)
        prop = np.abs(prop)
        prop = np.where(prop > 1, 2 - prop, prop).clip(0, 1)
        lp = log_like(prop)
        accept = np.log(rng.uniform(size=lx.shape)) < lp - lx
        x = np.where(accept[..., None], prop, x)
        lx = np.where(accept, lp, lx)
        rate = accept.mean(axis=1)
        if i < burn:
            step = np.clip(step * np.exp(0.5 * (rate - 0.25))[:, None, None], 1e-3, 0.5)  # tune towards 25%
        else:
            accepted += rate
            counted += 1
            if (i - burn) % thin == 0:
                draws.append(x.copy())
    draws = np.concatenate(draws, axis=1)
    return xr.Dataset({
        "params": (("basin", "member", "param"), space.from_unit(draws.reshape(-1, n_dim)).reshape(draws.shape)),
        "acceptance": ("basin", accepted / max(counted, 1)),
    }, coords={"basin": basins, "param": list(space.names)})
