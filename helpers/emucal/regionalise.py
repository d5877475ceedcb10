"""Large-sample emulators in the calibration loop, and parameters for basins without flow.

A large-sample emulator (LSE) takes basin attributes as inputs beside the
parameters, so the runs of one basin inform similar basins (Tang, Wood and
Swenson 2025). Chapter 6 of the book writes the pieces that later chapters
and the benchmarks use (the cells marked ``#@save emucal.regionalise``):

- :func:`lse_forest`, Tang et al.'s random-forest LSE, as a ``fit`` for
  :func:`emucal.calibrate.tang_batch`;
- :func:`lse_by_folds`, an LSE per fold of basins, trained on the other
  basins only, which is what a basin that has not been seen gets;
- :func:`fit_with_prior_mean` and :func:`hierarchical_rule`, per-basin GPs
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
import os

import numpy as np
import xarray as xr

from ._io import digest, load_checkpoint, save_checkpoint
from .calibrate import search, thompson_batch
from .emulators import GPEmulator, RandomForestEmulator, kfold, lse_features, make_lse
from .metrics import to_norm
from .parameters import ParameterSpace

__all__ = ["LargeSample", "WithPriorMean", "donor_transfer", "fit_with_prior_mean",
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
        ``n_candidates``, ``seed`` (``seed`` is required).

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


# ------------------------------------------------------------ basins without flow
def regionalise(history: xr.Dataset, basin_attrs: np.ndarray, space: ParameterSpace, *,
                among: str = "cube", n_splits: int = 5, seed: int = 0, search_kw: dict | None = None,
                checkpoint: str | os.PathLike | None = None) -> xr.Dataset:
    """Parameters for basins treated as ungauged, from a large-sample emulator (spatial CV).

    The basins are split into ``n_splits`` folds. For each fold, Tang et al.'s
    random-forest LSE (100 trees, depth at most 40, as :func:`lse_forest`) is
    trained on the runs of the *other* basins
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
        KGE' ``skill(basin, member)``, e.g. the history of
        :func:`emucal.calibrate.loop` (``history.isel(member=slice(0, 200))``
        for its initial design). A run with NaN skill (it failed) is learnt
        as normKGE -1, as in :func:`lse_rows`; a run with NaN parameters is
        left out. To train on the runs that did not fail only, as Tang et
        al.'s code does (``MOASMO_parameter_allbasin_emulator.py`` of
        NCAR/CTSM_calibration keeps the runs whose metric is not NaN), pass
        ``history.assign(params=history.params.where(history.skill.notnull()))``.
    basin_attrs
        ``(basin, n_attr)`` attributes (e.g. of
        :data:`emucal.emulators.LSE_ATTRIBUTES`).
    space
        The parameter space.
    among
        ``"cube"``: search the emulator over the unit cube
        (:func:`emucal.calibrate.search`);
        ``"donors"``: score the training basins' best runs only (see above).
    n_splits, seed
        Folds over basins and the seed of the split, training and search.
    search_kw
        ``popsize`` and ``generations`` of the emulator search
        (:func:`emucal.calibrate.search`); ``None``: 150 and 60.
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
    if among not in ("cube", "donors"):
        raise ValueError(f"among must be 'cube' or 'donors', not {among!r}.")
    size = {"popsize": 150, "generations": 60, **(search_kw or {})}
    if set(size) != {"popsize", "generations"}:
        raise ValueError(f"search_kw takes popsize and generations, not {sorted(set(size) - {'popsize', 'generations'})}.")
    basins = history.basin.values if "basin" in history.coords else np.arange(history.sizes["basin"])
    params = np.asarray(history.params.transpose("basin", "member", "param").values, float)
    kge = np.asarray(history.skill.transpose("basin", "member").values, float)  # NaN: a failed run
    skill = np.nan_to_num(kge, nan=-1e6)
    n_basin, n_run, d = params.shape
    unit = space.to_unit(params.reshape(-1, d)).reshape(n_basin, n_run, d)
    folds = kfold(n_basin, n_splits, seed=seed)
    settings = dict(kind="regionalise", n_splits=n_splits, seed=seed, popsize=size["popsize"],
                    emulator="lse_rf", **({} if among == "cube" else {"among": among}),
                    generations=size["generations"], params=digest(params), skill=digest(skill),
                    attrs=digest(basin_attrs))
    saved = load_checkpoint(checkpoint, settings)
    chosen = np.full((n_basin, d), np.nan) if saved is None else saved.chosen.values.copy()
    fold_of = np.full(n_basin, -1) if saved is None else saved.fold.values.copy()
    donor = (np.full(n_basin, -1) if saved is None or "donor" not in saved
             else saved.donor.values.copy())
    skill[~np.isfinite(params).all(axis=-1)] = -np.inf  # a run that is not there is never the best
    best_run = unit[np.arange(n_basin), skill.argmax(axis=1)]  # each basin's best run
    for k, held in enumerate(folds):
        if np.all(fold_of[held] == k):
            continue  # done before an interruption
        train = np.setdiff1d(np.arange(n_basin), held)
        x, y = lse_rows(unit, kge, basin_attrs, train)
        ran = np.isfinite(x).all(axis=1)  # runs with NaN parameters are not there
        em = RandomForestEmulator(100, max_depth=40, seed=seed + k).fit(x[ran], y[ran])
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
            pop, _ = search(predict, len(held), d, seed=seed + 100 * k, **size)
            chosen[held] = space.from_unit(pop[:, 0])
        fold_of[held] = k
        save_checkpoint(xr.Dataset({"chosen": (("basin", "param"), chosen), "fold": ("basin", fold_of),
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
