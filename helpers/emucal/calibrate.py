"""Calibration: search the emulator, run the best candidates, learn, repeat; and a DDS baseline.

The loop of Tang, Wood & Swenson (2025), after the MO-ASMO method of Gong et
al. (2016):

1. run an initial design (here 200 runs per basin, member 0 the default);
2. train an emulator of skill (one GP per basin, or one large-sample GP);
3. search the emulator for parameter sets with high predicted skill and pick
   a batch (Tang et al.'s code runs one genetic-algorithm search per new run
   and keeps the best point of each; for their LSE, three times as many
   searches, keeping the best third);
4. run the model for the candidates, add the runs to the training data,
   retrain, and go back to 3 (three iterations in the paper).

:func:`iterate` runs this loop with Tang et al.'s batch (``acquisition=
"tang"``), or with Thompson sampling near each basin's best run, which uses
the emulator's uncertainty (``"thompson"``, optionally in a trust region,
after TuRBO, Eriksson et al. 2019). Its emulators are one GP per basin
(``"sse"``), one large-sample GP over all basins (``"lse"``), or per-basin
GPs whose prior mean is the large-sample GP times a weight fitted per basin
(``"hierarchical"``, the autoregressive model of Kennedy and O'Hagan 2000);
Tang et al.'s own code used a GP or a random forest per basin, chosen by
cross-validation (``"sse_gp_or_rf"``), and a random-forest LSE (``"lse_rf"``).

The best parameter set of a basin is the best *model run* so far, never an
emulator prediction: the emulator proposes, the model decides.

:func:`search` is a differential evolution (Storn and Price 1997) on the
emulator's mean, run for all basins at once: every generation asks the
emulator for the whole population of every basin in one batched call, which
is far faster than scipy's ``differential_evolution`` basin by basin, and it
leaves a final population from which a batch of distinct candidates is
taken. DE is a good fit because the predicted skill surface is cheap,
smooth but multimodal, and has no gradients we want to trust at the edges
of the data.

:func:`dds` is Dynamically Dimensioned Search (Tolson and Shoemaker 2007),
the standard budget-limited optimiser of hydrological models, run directly
on the model as the baseline at an equal number of model runs.

Every step takes a seed; the same seed gives the same parameter sets. And
every long step takes a ``checkpoint`` file: :func:`iterate` saves after each
iteration, :func:`dds` every ``checkpoint_every`` evaluations, and
:func:`regionalise` after each fold. Call the step again with the same file
after an interruption and it carries on where it stopped, with the same
numbers as a run that was never interrupted; a file written with other
settings is refused rather than silently mixed in.

References
----------
Eriksson, D., Pearce, M., Gardner, J., Turner, R. D. and Poloczek, M. (2019). Scalable
global optimization via local Bayesian optimization. NeurIPS 32.
Gong, W., Duan, Q., Li, J., Wang, C., Di, Z., Ye, A., Miao, C. and Dai, Y. (2016).
Multiobjective adaptive surrogate modeling-based optimization for parameter
estimation of large, complex geophysical models. Water Resour. Res. 52, 1984-2008.
Kennedy, M. C. and O'Hagan, A. (2000). Predicting the output from a complex computer code
when fast approximations are available. Biometrika 87, 1-13.
Storn, R. and Price, K. (1997). Differential evolution. J. Glob. Optim. 11, 341-359.
Tolson, B. A. and Shoemaker, C. A. (2007). Dynamically dimensioned search algorithm
for computationally efficient watershed model calibration. Water Resour. Res. 43, W01413.
Tang, G., Wood, A. W. and Swenson, S. (2025). Water Resour. Res. 61, e2024WR039525.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from . import metrics as skill_metrics
from .metrics import to_norm
from ._io import write_netcdf_atomic
from .emulators import GPEmulator, RandomForestEmulator, kfold, lse_features, make_lse
from .model import prepare_inputs, run_columns
from .parameters import ParameterSpace

__all__ = [
    "Runner", "best", "best_so_far", "candidates_near_best", "checkpoint", "dds", "dds_move", "describe", "donor_transfer",
    "fill_defaults", "fit_sse", "iterate", "loop", "make_history", "model_runner", "nearest_best",
    "pick_distinct", "posterior", "regionalise", "search", "tang_batch", "thompson",
    "thompson_batch", "trust_steps",
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

    :func:`iterate` and :func:`dds` call ``runner(params)`` with parameter
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
        of the iterations so far (``best_skill`` of an :func:`iterate` history).

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


# ----------------------------------------------------------------- iterate
_to_norm = skill_metrics.to_norm
_FAILED = ("floor", "drop")


def _training_target(skill: np.ndarray, failed: str = "floor") -> np.ndarray:
    """normKGE, what the emulators learn, from KGE' ``skill``; a failed run is one with NaN skill.

    ``failed="floor"``: a failed run counts as the worst possible run,
    normKGE -1. ``failed="drop"``: its target is NaN, and the caller leaves
    it out of the emulator's training data, as Tang et al.'s code did
    (``MOASMO_parameters.py`` and ``MOASMO_parameter_allbasin_emulator.py``
    of NCAR/CTSM_calibration drop every run whose metric is NaN).
    """
    if failed not in _FAILED:
        raise ValueError(f"failed must be 'floor' (a failed run counts as normKGE -1) or 'drop' "
                         f"(failed runs are left out of the training data), not {failed!r}.")
    skill = np.asarray(skill, float)
    if failed == "drop":
        return _to_norm(np.where(np.isfinite(skill), skill, np.nan)).clip(-1, 1)
    return _to_norm(np.where(np.isfinite(skill), skill, -1e6)).clip(-1, 1)


def best(history: xr.Dataset, *, after_iteration: int | None = None,
         within_iteration: int | None = None) -> xr.DataArray:
    """Each basin's best parameter set in a calibration history.

    Parameters
    ----------
    history
        A result of :func:`iterate` or :func:`dds` (``params(basin, member,
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
                         f"iterate() and dds() return; got params{dims} and "
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


def iterate(run: Runner, space: ParameterSpace, initial: np.ndarray, *, n_iterations: int = 3,
            n_per_iteration: int = 50, emulator: str = "sse", basin_attrs: np.ndarray | None = None,
            seed: int = 0, popsize: int = 150, generations: int = 60,
            acquisition: str = "mean", n_candidates: int = 1024, perturb: float = 0.2,
            step: float | str = 0.2, n_local: int | None = None, lse_refit: int = 1,
            target: str = "norm_kge", failed: str = "floor",
            history: xr.Dataset | None = None, checkpoint: str | os.PathLike | None = None,
            progress: bool = True) -> xr.Dataset:
    """Iterative emulator-based calibration (MO-ASMO style, one objective).

    Parameters
    ----------
    run
        The model, as a :class:`Runner` (for example from
        :func:`model_runner`; skill: KGE', and the emulators learn normKGE).
    space
        The parameter space.
    initial
        Initial design ``(n, param)`` run in every basin, or ``(basin, n,
        param)``; member 0 is usually the default.
    n_iterations, n_per_iteration
        Iterations and new runs per basin in each (3 and 50 in Tang et al.).
    emulator
        ``"sse"``: one GP per basin (batched); ``"lse"``: one large-sample
        emulator over all basins, with ``basin_attrs`` ``(basin, n_attr)``.
        Tang et al.'s own emulators (``MOASMO_parameters.py`` and
        ``MOASMO_parameter_allbasin_emulator.py`` of NCAR/CTSM_calibration):
        ``"sse_gp_or_rf"`` gives each basin a GP or a random forest
        (scikit-learn's defaults, 100 trees), whichever predicts held-out
        runs with the lower RMSE in 5-fold cross-validation, refit every
        iteration; ``"lse_rf"`` is their large-sample emulator, a random
        forest (100 trees, depth at most 40) on parameters and attributes.
        A random forest's prediction is an average of runs it has seen, so
        it never extrapolates beyond the best run: a search of it proposes
        points near runs already made. ``"lse_or_sse"`` lets that LSE
        compete with each basin's GP and forest in the same
        cross-validation: a basin takes the LSE only where it predicts the
        basin's held-out runs better, so in cross-validation it is never
        worse than the SSE.
        ``"hierarchical"``: per-basin GPs whose prior mean is the large-sample
        emulator, scaled per basin by a fitted weight (Kennedy and O'Hagan's
        autoregressive model, ``GPEmulator(mean="last_input")``): what other
        basins teach is used where it fits and ignored (weight near 0, the
        SSE) where it does not. Each basin's prior mean comes from an LSE
        trained on the other basins only (five folds of basins, as in
        :func:`regionalise`), so that the weight measures what the LSE
        knows of a basin it has not seen, not how well it reproduces runs
        it was trained on.
    seed, popsize, generations
        Seed and the size of the emulator search (:func:`search`).
    acquisition
        How the emulator chooses the next runs. ``"mean"``: maximise the
        predicted mean (:func:`search`) and take distinct points of the final
        population (:func:`pick_distinct`); the uncertainty plays no part.
        ``"thompson"``: Thompson sampling among perturbations of each basin's
        best run (:func:`thompson`, SSE only), which uses the uncertainty.
        ``"tang"``: as Tang et al.'s code picks a batch
        (``run_ga_optimization`` in ``MOASMO_parameters.py`` and
        ``MOASMO_parameter_allbasin_emulator.py`` of NCAR/CTSM_calibration):
        ``n_per_iteration`` independent searches of the predicted mean, each
        from its own random population, and the best point of each is run.
        Their searches were a genetic algorithm (pymoo's GA, population 60
        and 60 generations per basin); here they are :func:`search` with
        ``popsize`` and ``generations``. For the large-sample emulator they
        ran three times as many searches of population 100 for 100
        generations and kept the best third, eight times the emulator
        predictions of the per-basin searches; that is left out here for time.
    target
        What the emulators learn: ``"norm_kge"`` (Tang et al.) or ``"copula"``,
        each basin's normKGE ranks mapped to standard normal quantiles. The
        ranks keep which runs are better, which is all a search needs, and
        stop a few very poor runs from dominating the fit.
    failed
        What the emulators learn from a failed run (NaN skill: a model run
        that crashed, or flow that never varies). ``"floor"``: it counts as
        the worst possible run, normKGE -1, so the search learns to avoid
        where it failed. ``"drop"``: it is left out of the training data, as
        Tang et al.'s code does. The per-basin emulators are fitted as one
        batch with the same number of runs in every basin, so with
        ``"drop"`` each basin keeps its valid runs nearest its best run, as
        many as the basin with the fewest valid runs has (with ``n_local``,
        at most that many). Every run, failed or not, stays in the history.
    n_candidates, perturb
        Candidates per basin and per-parameter perturbation probability for
        ``acquisition="thompson"``; ``perturb="dds"`` follows DDS's schedule,
        ``1 - ln(runs so far) / ln(total runs)`` (at least ``1/d``).
    step
        Standard deviation of the candidates' moves for
        ``acquisition="thompson"``, in unit-cube units, or ``"trust"``: each
        basin's own step, adapted to how its search goes (:func:`trust_steps`).
    n_local
        Fit each basin's GP on only the ``n_local`` runs nearest its best run
        so far (unit-cube distance), as the trust-region method TuRBO fits a
        local model (Eriksson et al. 2019); ``None`` fits all runs. A skill
        surface in 16 dimensions is far from stationary: one set of
        lengthscales for poor runs far away and good runs close by fits
        neither well, and the search only proposes near the best run. A
        local fit also costs less, so more, smaller batches are affordable.
        Used by per-basin GPs (``"sse"``, and the residual GPs of
        ``"hierarchical"``).
    lse_refit
        Refit the large-sample emulator every ``lse_refit`` iterations (on
        the runs there were then); the per-basin GPs are refit every
        iteration. The LSE learns from every run of every basin, which costs
        far more than the local per-basin fits, and a few more runs per basin
        change it little.
    history
        A result of an earlier call: the loop resumes from it (its runs are
        kept, and iterations continue where it stopped).
    checkpoint
        A netCDF file. The history is saved there after the initial design
        and after every iteration; if the file exists, the loop resumes from
        it (``initial`` is then only used to check that the file belongs to
        this run). Raising ``n_iterations`` and calling again continues a
        finished loop.
    progress
        Show a progress bar over iterations.

    Returns
    -------
    xarray.Dataset
        Every run: ``params(basin, member, param)``, ``skill(basin, member)``,
        ``iteration(basin, member)`` (0 for the initial design), and
        ``best_skill(basin, after_iteration)``: the best skill found up to and
        including each iteration (0: the initial design).
    """
    emulators_ = ("sse", "sse_gp_or_rf", "lse", "lse_rf", "lse_or_sse", "hierarchical")
    if emulator not in emulators_:
        raise ValueError(f"emulator must be one of {emulators_}, not {emulator!r}.")
    target_kind = target
    if target_kind not in ("norm_kge", "copula"):
        raise ValueError(f"target must be 'norm_kge' or 'copula', not {target_kind!r}.")
    if acquisition not in ("mean", "thompson", "tang"):
        raise ValueError(f"acquisition must be 'mean', 'thompson' or 'tang', not {acquisition!r}.")
    if acquisition == "thompson" and emulator not in ("sse", "hierarchical"):
        raise ValueError("acquisition='thompson' needs per-basin GPs (emulator='sse' or "
                         "'hierarchical').")
    if not (step == "trust" or (isinstance(step, (int, float)) and 0 < step <= 1)):
        raise ValueError(f"step must be a number in (0, 1] or 'trust'; got {step!r}.")
    if n_local is not None and (int(n_local) != n_local or n_local < 2 * len(space)):
        raise ValueError(f"n_local must be a whole number of runs, at least twice the number of "
                         f"parameters ({2 * len(space)}), or None; got {n_local!r}.")
    if int(lse_refit) != lse_refit or lse_refit < 1:
        raise ValueError(f"lse_refit must be a whole number of iterations, at least 1; got {lse_refit!r}.")
    _training_target(np.zeros(1), failed)  # checks failed
    if emulator in ("lse", "lse_rf", "lse_or_sse", "hierarchical") and basin_attrs is None:
        raise ValueError("The large-sample emulator needs basin_attrs (basin, n_attr).")
    if emulator == "hierarchical" and len(basin_attrs) < 2:
        raise ValueError("emulator='hierarchical' needs at least 2 basins: each basin's prior "
                         "mean comes from an LSE trained on the other basins.")
    run = _as_runner(run)
    n_basin, basins = run.n_basin, run.basins
    if history is None and initial is None:
        if checkpoint is None or not Path(checkpoint).exists():
            raise ValueError("Give an initial design, a history to resume from, or an existing checkpoint.")
        with xr.open_dataset(checkpoint, engine="netcdf4") as ds:
            history = ds.load()  # checked against the settings below
    if history is not None:
        initial = history.params.values[:, history.iteration.values[0] == 0]
    else:
        initial = np.asarray(initial, dtype=float)
        if initial.ndim == 2:
            initial = np.broadcast_to(initial, (n_basin,) + initial.shape).copy()
        initial = _resolve_defaults(run, initial)
    settings = dict(kind="iterate", emulator=emulator, n_per_iteration=n_per_iteration, seed=seed,
                    runner=run.fingerprint or None,
                    popsize=popsize, generations=generations, initial=_fingerprint(initial),
                    acquisition=acquisition, n_candidates=n_candidates, perturb=perturb,
                    target=target_kind, **({} if n_local is None else {"n_local": int(n_local)}),
                    **({} if step == 0.2 else {"step": step}),
                    **({} if lse_refit == 1 else {"lse_refit": int(lse_refit)}),
                    **({} if failed == "floor" else {"failed": failed}),
                    attrs=None if basin_attrs is None else _fingerprint(basin_attrs))
    saved = _load_checkpoint(checkpoint, settings)
    history = saved if saved is not None else history
    if history is None:
        params = initial
        skill = np.asarray(run(params), dtype=float)
        iteration = np.zeros(skill.shape, int)
        start = 1
        _save_checkpoint(_history(params, skill, iteration, space, basins), checkpoint, settings)
    else:
        params = history.params.values
        skill = history.skill.values
        iteration = history.iteration.values
        start = int(iteration.max()) + 1
    n_basin = params.shape[0]
    d = len(space)
    lse, lse_fitted_at = None, None
    bar = tqdm(range(start, n_iterations + 1), desc=f"{emulator.upper()} iterations",
               disable=not progress)
    for it in bar:
        unit = space.to_unit(params)
        target = _training_target(skill, failed)  # failed="drop": NaN where a run failed
        valid = np.isfinite(target)
        if target_kind == "copula":
            from scipy.stats import norm, rankdata

            target = norm.ppf(rankdata(target, axis=1, nan_policy="omit")
                              / (valid.sum(axis=1, keepdims=True) + 1))
        # (basin, k): the runs the per-basin GPs see
        near = _nearest_best(unit, skill, n_local, valid=None if valid.all() else valid)
        local_unit = np.take_along_axis(unit, near[..., None], axis=1)
        if emulator == "sse":
            em = GPEmulator(seed=seed + it).fit(
                local_unit, np.take_along_axis(target, near, axis=1))
            predict = em.predict
        elif emulator in ("sse_gp_or_rf", "lse_or_sse"):
            em = _ChosenByCV(seed=seed + it,
                             basin_attrs=basin_attrs if emulator == "lse_or_sse" else None).fit(
                local_unit, np.take_along_axis(target, near, axis=1))
            predict = em.predict
        else:
            refit_at = 1 + (it - 1) // lse_refit * lse_refit  # same schedule when resumed
            if lse is None or lse_fitted_at != refit_at:
                seen = iteration[0] < refit_at  # the runs there were when it was due
                lse = _fit_lse(unit[:, seen], target[:, seen], basin_attrs,
                               folds=emulator == "hierarchical", seed=seed + refit_at,
                               forest=emulator == "lse_rf")
                lse_fitted_at = refit_at

            def predict(u, lse=lse):
                return _predict_lse(lse, u, basin_attrs)
            em = lse
            if emulator == "hierarchical":
                em = _WithPriorMean(predict, np.take_along_axis(target, near, axis=1), local_unit,
                                    seed=seed + it)
                predict = em.predict
        if acquisition == "thompson":
            p_it = perturb
            if perturb == "dds":  # DDS's schedule: from global to local as the budget is spent
                budget = params.shape[1] + (n_iterations - it + 1) * n_per_iteration
                p_it = max(1.0 - np.log(params.shape[1]) / np.log(budget), 1.0 / d)
            if step == "trust":
                best_so_far = np.stack([np.nanmax(np.where(iteration <= k, skill, -np.inf), axis=1)
                                        for k in range(it)], axis=1)
                step_it = trust_steps(best_so_far)
            else:
                step_it = step
            new_unit = thompson(em, unit, skill, n_per_iteration, n_candidates=n_candidates,
                                perturb=p_it, step=step_it, seed=seed + 1000 * it)
        elif acquisition == "tang":
            new_unit = _independent_searches(predict, n_basin, d, n_per_iteration, n_per_iteration,
                                             cap=1.0 if target_kind == "norm_kge" else np.inf,
                                             popsize=popsize, generations=generations,
                                             seed=seed + 1000 * it)
        else:
            best_idx = np.argsort(-np.nan_to_num(skill, nan=-np.inf), axis=1)[:, :10]
            seeds = np.take_along_axis(unit, best_idx[..., None], axis=1)
            cap = 1.0 if target_kind == "norm_kge" else np.inf  # normKGE <= 1
            pop, _ = search(lambda u: np.minimum(predict(u), cap), n_basin, d, popsize=popsize,
                            generations=generations, seed=seed + 1000 * it, init=seeds)
            new_unit = pick_distinct(pop, n_per_iteration, avoid=unit)
        new_params = space.from_unit(new_unit.reshape(-1, d)).reshape(n_basin, n_per_iteration, d)
        new_skill = np.asarray(run(new_params), dtype=float)
        params = np.concatenate([params, new_params], axis=1)
        skill = np.concatenate([skill, new_skill], axis=1)
        iteration = np.concatenate([iteration, np.full(new_skill.shape, it)], axis=1)
        _save_checkpoint(_history(params, skill, iteration, space, basins), checkpoint, settings)
        bar.set_postfix(median_best=float(np.median(np.nanmax(skill, axis=1))))
        # GPyTorch models hold reference cycles: free each iteration's emulator now, or a
        # loop of many small batches grows by tens of MB per iteration (2 GB after 66)
        del em, predict
        gc.collect()
    done = _history(params, skill, iteration, space, basins)
    if int(iteration.max()) > n_iterations:  # a checkpoint that went further than asked
        keep = iteration[0] <= n_iterations
        done = _history(params[:, keep], skill[:, keep], iteration[:, keep], space, basins)
    return done


def _independent_searches(predict: Callable, n_basin: int, d: int, n_search: int, n_keep: int,
                          cap: float, **search_kw) -> np.ndarray:
    """The best point of each of ``n_search`` independent searches per basin, the ``n_keep`` best.

    The searches run as one batched :func:`search` over ``basin x search``
    populations, so that each generation costs one call of ``predict``;
    predictions above ``cap`` (1 for normKGE) count as ``cap``.
    """
    def predict_all(u):  # u: (basin * n_search, popsize, d)
        m = u.shape[1]
        return predict(u.reshape(n_basin, n_search * m, d)).reshape(n_basin * n_search, m)

    pop, fit = search(lambda u: np.minimum(predict_all(u), cap), n_basin * n_search, d,
                      **search_kw)
    winners = pop[:, 0].reshape(n_basin, n_search, d)
    order = np.argsort(-fit[:, 0].reshape(n_basin, n_search), axis=1, kind="stable")[:, :n_keep]
    return np.take_along_axis(winners, order[..., None], axis=1)


def _fit_lse(unit: np.ndarray, target: np.ndarray, basin_attrs: np.ndarray, *, folds: bool,
             seed: int, forest: bool = False) -> list:
    """Large-sample emulators as ``[(basins, emulator), ...]``, each to predict for its ``basins``.

    Without ``folds``, one emulator trained on every basin's runs predicts for
    all. With ``folds``, the basins are split into (at most) five folds and
    each fold is predicted by an emulator trained on the *other* basins only,
    as in :func:`regionalise`. The hierarchical emulator needs this: an LSE
    that has seen a basin's runs reproduces them, so that basin's GP would
    trust it fully (weight 1, nothing left to learn) where its real skill
    there, on runs it has not seen, is much lower. ``forest``: Tang et al.'s
    random forest (``allbasin_emulator_train_and_optimize`` in
    ``MOASMO_parameter_allbasin_emulator.py``: 100 trees, depth at most 40)
    instead of a GP.
    """
    n_basin, n_run, d = unit.shape
    groups = kfold(n_basin, min(5, n_basin), seed=seed) if folds else [np.arange(n_basin)]
    out = []
    for k, held in enumerate(groups):
        train = np.setdiff1d(np.arange(n_basin), held) if folds else held
        x = lse_features(unit[train].reshape(-1, d), np.repeat(basin_attrs[train], n_run, axis=0))
        y = target[train].ravel()
        if not np.isfinite(y).all():  # iterate(failed="drop"): failed runs are NaN, left out
            x, y = x[np.isfinite(y)], y[np.isfinite(y)]
        model = (RandomForestEmulator(100, max_depth=40, seed=seed + k)
                 if forest else make_lse(len(x), seed=seed + k))
        out.append((held, model.fit(x, y)))
    return out


def _predict_lse(models: list, unit: np.ndarray, basin_attrs: np.ndarray) -> np.ndarray:
    """Predicted normKGE ``(basin, m)`` at ``unit`` ``(basin, m, d)`` from :func:`_fit_lse` models."""
    n_basin, m, d = unit.shape
    out = np.empty((n_basin, m))
    for held, em in models:
        feats = lse_features(unit[held].reshape(-1, d), np.repeat(basin_attrs[held], m, axis=0))
        out[held] = em.predict(feats).reshape(len(held), m)
    return out.clip(-1, 1)


def _nearest_best(unit: np.ndarray, skill: np.ndarray, k: int | None,
                  valid: np.ndarray | None = None) -> np.ndarray:
    """Indices ``(basin, k)`` of each basin's ``k`` runs nearest its best run (all runs if ``k`` is None).

    ``valid`` ``(basin, run)``: the runs that may be chosen (``None``: all).
    Every basin gets the same number of runs (the per-basin emulators are
    one batch), so ``k`` is at most the fewest valid runs of any basin.
    """
    n_basin, n_run, _ = unit.shape
    if valid is not None:
        fewest = int(valid.sum(axis=1).min())
        if fewest < 2:
            raise ValueError(f"Basin {int(valid.sum(axis=1).argmin())} has {fewest} run(s) that did not "
                             "fail; an emulator needs at least 2. Use failed='floor' or run more.")
        k = min(n_run if k is None else k, fewest)
    if valid is None and (k is None or k >= n_run):
        return np.broadcast_to(np.arange(n_run), (n_basin, n_run))
    best = unit[np.arange(n_basin), np.nan_to_num(skill, nan=-np.inf).argmax(axis=1)]
    dist = np.linalg.norm(unit - best[:, None, :], axis=-1)
    if valid is not None:
        dist = np.where(valid, dist, np.inf)
    return np.sort(np.argsort(dist, axis=1, kind="stable")[:, :k], axis=1)


class _ChosenByCV:
    """Per basin, the emulator that cross-validates best: a GP, a random forest, or the LSE.

    Tang et al.'s per-basin emulator (``surrogate_model_train_and_pareto_points_oneobjfunc``
    in ``MOASMO_parameters.py`` of NCAR/CTSM_calibration): the mean RMSE over
    5 folds of the basin's runs decides between a GP and a random forest,
    and the winner is refit on all of them. The GPs of all basins are fitted
    as one batch (:class:`GPEmulator`); the forests are scikit-learn's
    defaults (100 trees), one per basin. With ``basin_attrs``, Tang et al.'s
    random-forest LSE (:func:`_fit_lse`) competes too, scored on the same
    held-out runs (its training set in each fold leaves out those runs of
    every basin): a basin whose own runs the LSE predicts better takes it,
    any other keeps its own emulator, so the choice is never worse than the
    SSE's in cross-validation.
    """

    CHOICES = ("gp", "rf", "lse")

    def __init__(self, *, n_splits: int = 5, seed: int = 0, basin_attrs: np.ndarray | None = None):
        self.n_splits, self.seed, self.basin_attrs = n_splits, seed, basin_attrs

    def fit(self, x: np.ndarray, y: np.ndarray):
        n_basin, n = y.shape
        with_lse = self.basin_attrs is not None
        rmse = np.zeros((3, n_basin))  # GP, forest, LSE
        rmse[2] = np.inf if not with_lse else 0.0
        for k, test in enumerate(kfold(n, self.n_splits, seed=self.seed)):
            train = np.setdiff1d(np.arange(n), test)
            preds = [GPEmulator(seed=self.seed + k).fit(x[:, train], y[:, train]).predict(x[:, test]),
                     RandomForestEmulator(seed=self.seed + k).fit(x[:, train], y[:, train]).predict(
                         x[:, test])]
            if with_lse:
                lse = _fit_lse(x[:, train], y[:, train], self.basin_attrs, folds=False,
                               seed=self.seed + k, forest=True)
                preds.append(_predict_lse(lse, x[:, test], self.basin_attrs))
            for i, pred in enumerate(preds):
                rmse[i] += np.sqrt(((pred - y[:, test]) ** 2).mean(axis=1))
        self.cv_rmse_ = rmse / self.n_splits
        self.choice_ = np.array(self.CHOICES)[self.cv_rmse_.argmin(axis=0)]
        self.gp_ = GPEmulator(seed=self.seed).fit(x, y)
        rf = self.choice_ == "rf"
        self.forest_ = (RandomForestEmulator(seed=self.seed + self.n_splits).fit(x[rf], y[rf])
                        if rf.any() else None)
        self.lse_ = (_fit_lse(x, y, self.basin_attrs, folds=False, seed=self.seed, forest=True)
                     if (self.choice_ == "lse").any() else None)
        return self

    def predict(self, u: np.ndarray) -> np.ndarray:
        """Predictions ``(basin, m)`` at ``u`` ``(basin, m, d)``.

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
            out[lse] = _predict_lse([(lse, self.lse_[0][1])], u, self.basin_attrs)[lse]
        return out


class _WithPriorMean:
    """Per-basin GPs whose prior mean is ``a * g(x) + b``, ``g`` the large-sample emulator.

    ``a`` and ``b`` are fitted per basin with the kernel (``GPEmulator(mean=
    "last_input")``, Kennedy and O'Hagan's autoregressive model): a basin
    whose surface the LSE gets wrong sets ``a`` near 0 and is left with its
    own GP, so the hierarchical emulator is the SSE plus what the LSE adds.
    """

    def __init__(self, prior: Callable, y: np.ndarray, unit: np.ndarray, *, seed: int):
        self.prior = prior
        d = unit.shape[-1]
        self.gp = GPEmulator(mean="last_input", lower=[0.0] * d + [-1.0], upper=[1.0] * (d + 1),
                             seed=seed).fit(self._inputs(unit), y)

    def _inputs(self, u):
        return np.concatenate([u, self.prior(u)[..., None]], axis=-1)

    def predict(self, u, return_std: bool = False):
        return self.gp.predict(self._inputs(u), return_std=return_std)

    def sample_y(self, u, n_samples: int = 1, seed: int = 0):
        return self.gp.sample_y(self._inputs(u), n_samples, seed=seed)


def _history(params, skill, iteration, space, basins) -> xr.Dataset:
    n_iter = int(iteration.max())
    best = np.stack([np.nanmax(np.where(iteration <= k, skill, -np.inf), axis=1)
                     for k in range(n_iter + 1)], axis=1)
    return xr.Dataset({
        "params": (("basin", "member", "param"), params),
        "skill": (("basin", "member"), skill),
        "iteration": (("basin", "member"), iteration),
        "best_skill": (("basin", "after_iteration"), best),
    }, coords={"param": space.names, "after_iteration": np.arange(n_iter + 1),
               "basin": basins})


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


# ------------------------------------------------------------ regionalise
def regionalise(history: xr.Dataset, basin_attrs: np.ndarray, space: ParameterSpace, *,
                emulator: str = "lse", among: str = "cube", n_splits: int = 5, seed: int = 0,
                popsize: int = 150, generations: int = 60, failed: str = "floor",
                checkpoint: str | os.PathLike | None = None) -> xr.Dataset:
    """Parameters for basins treated as ungauged, from a large-sample emulator (spatial CV).

    The basins are split into ``n_splits`` folds. For each fold, a
    large-sample emulator is trained on the runs of the *other* basins
    (parameters and attributes -> normKGE), and the held-out basins get the
    parameter set that maximises its prediction given their attributes
    alone: no streamflow of a held-out basin is used. Run the model with the
    result to score it, as for a basin without a gauge.

    Where that parameter set is looked for is ``among``. In the whole unit
    cube (``"cube"``, as Tang et al.), the search can end on a peak of the
    emulator where no training basin ever ran, and with a few dozen training
    basins such peaks are often artefacts. Among the donors (``"donors"``),
    the candidates are the best run of each training basin, the parameter sets
    a donor-basin transfer (:func:`donor_transfer`) would hand over, and the
    emulator picks the one it predicts best for the held-out basin: a donor
    chosen by what the runs say about basins like it, not by a distance
    between attributes.

    Parameters
    ----------
    history
        Runs: ``params(basin, member, param)`` in parameter units and their
        KGE' ``skill(basin, member)``, e.g. the history of :func:`iterate`
        (``history.isel(member=slice(0, 200))`` for its initial design).
    basin_attrs
        ``(basin, n_attr)`` attributes (e.g. of
        :data:`emucal.emulators.LSE_ATTRIBUTES`).
    space
        The parameter space.
    emulator
        ``"lse"``: the large-sample GP (:func:`emucal.emulators.make_lse`);
        ``"lse_rf"``: Tang et al.'s random forest (100 trees, depth at most
        40), as in :func:`iterate`. A forest predicts averages of runs it has
        seen, so its search lands where similar training basins did well; a
        GP's mean can also peak between and beyond the runs.
    among
        ``"cube"``: search the emulator over the unit cube (:func:`search`);
        ``"donors"``: score the training basins' best runs only (see above).
    n_splits, seed
        Folds over basins and the seed of the split, training and search.
    popsize, generations
        Size of the emulator search (:func:`search`).
    failed
        A run with NaN skill (it failed) counts as normKGE -1 (``"floor"``)
        or is left out of the emulator's training data (``"drop"``, as Tang
        et al.'s code does); see :func:`iterate`.
    checkpoint
        A netCDF file: the result is saved after every fold, and a call with
        the same file skips the folds already done.

    Returns
    -------
    xarray.Dataset
        ``params(basin, param)``: the regionalised parameters of every basin,
        each chosen while it was held out; ``fold(basin)``: the fold in which
        it was held out; with ``among="donors"``, ``donor(basin)``: the
        training basin whose best run was chosen.
    """
    if emulator not in ("lse", "lse_rf"):
        raise ValueError(f"emulator must be 'lse' or 'lse_rf', not {emulator!r}.")
    if among not in ("cube", "donors"):
        raise ValueError(f"among must be 'cube' or 'donors', not {among!r}.")
    basins = history.basin.values if "basin" in history.coords else np.arange(history.sizes["basin"])
    params = np.asarray(history.params.transpose("basin", "member", "param").values, float)
    skill = history.skill.transpose("basin", "member").values
    n_basin, n_run, d = params.shape
    unit = space.to_unit(params.reshape(-1, d)).reshape(n_basin, n_run, d)
    target = _training_target(skill, failed)  # failed="drop": NaN where a run failed
    skill = np.nan_to_num(np.asarray(skill, float), nan=-1e6)
    folds = kfold(n_basin, n_splits, seed=seed)
    settings = dict(kind="regionalise", n_splits=n_splits, seed=seed, popsize=popsize,
                    **({} if emulator == "lse" else {"emulator": emulator}),
                    **({} if among == "cube" else {"among": among}),
                    **({} if failed == "floor" else {"failed": failed}),
                    generations=generations, params=_fingerprint(params), skill=_fingerprint(skill),
                    attrs=_fingerprint(basin_attrs))
    saved = _load_checkpoint(checkpoint, settings)
    chosen = np.full((n_basin, d), np.nan) if saved is None else saved.chosen.values.copy()
    fold_of = np.full(n_basin, -1) if saved is None else saved.fold.values.copy()
    donor = (np.full(n_basin, -1) if saved is None or "donor" not in saved
             else saved.donor.values.copy())
    best_run = unit[np.arange(n_basin), skill.argmax(axis=1)]  # each basin's best run
    for k, held in enumerate(folds):
        if np.all(fold_of[held] == k):
            continue  # done before an interruption
        train = np.setdiff1d(np.arange(n_basin), held)
        x = lse_features(unit[train].reshape(-1, d), np.repeat(basin_attrs[train], n_run, axis=0))
        y = target[train].ravel()
        if not np.isfinite(y).all():  # failed="drop": the failed runs are left out
            x, y = x[np.isfinite(y)], y[np.isfinite(y)]
        em = (RandomForestEmulator(100, max_depth=40, seed=seed + k)
              if emulator == "lse_rf" else make_lse(len(x), seed=seed + k))
        em.fit(x, y)
        attrs_held = basin_attrs[held]

        def predict(u, em=em, attrs_held=attrs_held):
            m = u.shape[1]
            feats = lse_features(u.reshape(-1, d), np.repeat(attrs_held, m, axis=0))
            return np.minimum(em.predict(feats).reshape(len(attrs_held), m), 1.0)  # normKGE <= 1

        if among == "donors":  # every held-out basin scores every training basin's best run
            scores = predict(np.broadcast_to(best_run[train], (len(held), len(train), d)).copy())
            donor[held] = train[scores.argmax(axis=1)]
            chosen[held] = space.from_unit(best_run[donor[held]])
        else:
            pop, _ = search(predict, len(held), d, popsize=popsize, generations=generations,
                            seed=seed + 100 * k)
            chosen[held] = space.from_unit(pop[:, 0])
        fold_of[held] = k
        _save_checkpoint(xr.Dataset({"chosen": (("basin", "param"), chosen), "fold": ("basin", fold_of),
                                     "donor": ("basin", donor)}), checkpoint, settings)
    out = xr.Dataset({"params": (("basin", "param"), chosen), "fold": ("basin", fold_of)},
                     coords={"basin": basins, "param": list(space.names)})
    if among == "donors":
        out["donor"] = ("basin", basins[donor])
    return out


def donor_transfer(calibrated: xr.DataArray, features: np.ndarray, fold, *,
                   metric: str = "attributes") -> xr.Dataset:
    """Classic regionalisation: each held-out basin takes the parameters of one donor.

    For every basin, the donor is the closest basin of *another* fold, so that
    the comparison with :func:`regionalise` uses the same split: no basin
    borrows from a basin held out with it.

    Parameters
    ----------
    calibrated
        Each basin's calibrated parameters ``(basin, param)``, e.g.
        ``best(history)``.
    features
        ``metric="attributes"``: basin attributes ``(basin, n_attr)``, compared
        after standardising each column ("the most similar basin").
        ``metric="distance"``: gauge latitude and longitude in degrees
        ``(basin, 2)``, compared by great-circle distance ("the nearest basin").
    fold
        The fold of each basin ``(basin,)``, e.g. ``regionalise(...).fold``.
    metric
        ``"attributes"`` or ``"distance"``.

    Returns
    -------
    xarray.Dataset
        ``params(basin, param)``: the donors' parameters; ``donor(basin)``:
        each basin's donor basin.
    """
    if not isinstance(calibrated, xr.DataArray) or set(calibrated.dims) != {"basin", "param"}:
        raise TypeError("calibrated must be a DataArray (basin, param), e.g. calibrate.best(history).")
    basins = calibrated.basin.values if "basin" in calibrated.coords else np.arange(calibrated.sizes["basin"])
    names = calibrated.param.values if "param" in calibrated.coords else None
    calibrated = calibrated.transpose("basin", "param").values.astype(float)
    features = np.asarray(features, float)
    fold = np.asarray(fold)
    n_basin = calibrated.shape[0]
    if features.shape[0] != n_basin or fold.shape != (n_basin,):
        raise ValueError(f"calibrated, features and fold need one row per basin ({n_basin}); got "
                         f"{features.shape[0]} and {fold.shape}.")
    if metric == "attributes":
        sd = features.std(axis=0)
        z = (features - features.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        dist = np.linalg.norm(z[:, None, :] - z[None, :, :], axis=-1)
    elif metric == "distance":
        if features.shape[1] != 2:
            raise ValueError("metric='distance' needs features (basin, 2): latitude, longitude.")
        lat, lon = np.deg2rad(features[:, 0]), np.deg2rad(features[:, 1])
        a = (np.sin((lat[:, None] - lat[None]) / 2) ** 2
             + np.cos(lat[:, None]) * np.cos(lat[None]) * np.sin((lon[:, None] - lon[None]) / 2) ** 2)
        dist = 2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    else:
        raise ValueError(f"metric must be 'attributes' or 'distance', not {metric!r}.")
    dist = np.where(fold[:, None] == fold[None, :], np.inf, dist)
    if np.isinf(dist).all(axis=1).any():
        raise ValueError("Every basin needs a basin of another fold to borrow from; use 2 folds or more.")
    donor = dist.argmin(axis=1)
    return xr.Dataset({"params": (("basin", "param"), calibrated[donor]), "donor": ("basin", basins[donor])},
                      coords={"basin": basins, **({"param": names} if names is not None else {})})
