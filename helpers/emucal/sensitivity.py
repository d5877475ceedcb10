"""Which parameters matter: Sobol' indices of a model or of an emulator, with SALib.

A Sobol' index splits the variance of an output (a skill score, a signature)
over the ranges of the parameters into shares (Saltelli et al. 2010):

- the **first-order** index ``S1`` of a parameter is the share explained by
  that parameter alone;
- the **total** index ``ST`` adds every interaction it takes part in: a
  parameter with ``ST`` near 0 can be fixed anywhere in its range without
  changing the output.

Both come from Saltelli's design (two independent base samples ``A`` and
``B`` of ``n`` points each, and ``d`` mixed matrices, ``n * (d + 2)`` runs),
estimated by :mod:`SALib` (Saltelli et al. 2010 for ``S1``, Jansen 1999 for
``ST``) with bootstrap confidence intervals. This module only shapes the
inputs and outputs: the design lives in the unit cube of a
:class:`~emucal.parameters.ParameterSpace` (``space.from_unit`` turns it into
parameter values), and the indices come back as an ``xarray.Dataset`` over
``param`` and whatever leading dimensions the outputs had (``basin``, a
signature, a posterior draw).

Indices of an emulator cost only predictions, so they can use a large
design; :func:`emulator_indices` also propagates the emulator's own
uncertainty by computing the indices of posterior draws.

A perturbed-parameter ensemble (PPE) of any model can be explored the same
way. Its format is an ``xarray.Dataset`` with ``params(member, param)``, each
parameter's ``lower``, ``upper`` (and optionally ``log_scale``, ``units``,
``default``) as ``param`` coordinates, as :meth:`ParameterSpace.to_dataset`
writes them, and one or more outputs over ``member`` and any other
dimensions (``basin``, ``period``, a month). :func:`check_ensemble` says
what a file lacks, :func:`ensemble_from_tables` builds one from two tables,
and :func:`response` emulates one output: cross-validated skill, Sobol'
indices with intervals, one-at-a-time curves and 2-D maps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from SALib.analyze import sobol as salib_sobol
from SALib.sample import sobol as salib_sample

from .parameters import Parameter, ParameterSpace

__all__ = ["SIGNATURES", "MEMBERS_PER_PARAM", "sobol_design", "model_outputs", "sobol_indices",
           "emulator_indices", "top_parameters", "check_ensemble",
           "ensemble_from_tables", "ensemble_outputs", "output_problems", "response",
           "Response"]

#: Signatures :func:`model_outputs` computes by default (names of
#: :func:`emucal.diagnostics.signatures`): mean flow, baseflow index, half-flow date.
SIGNATURES = ("q_mean", "baseflow_index", "hfd_mean")


def _problem(space: ParameterSpace) -> dict:
    """SALib's problem description for the unit cube of ``space``."""
    return {"num_vars": len(space), "names": list(space.names), "bounds": [[0.0, 1.0]] * len(space)}


def _check_base(n: int) -> int:
    if int(n) != n or n < 2 or (int(n) & (int(n) - 1)):
        raise ValueError(f"n must be a power of 2 (at least 2) for Sobol' sequences; got {n}. "
                         "Try 64, 128, 256 or 512.")
    return int(n)


def sobol_design(space: ParameterSpace, n: int, *, seed: int = 0) -> np.ndarray:
    """Saltelli's design for first-order and total Sobol' indices, in the unit cube.

    Parameters
    ----------
    space
        The parameters (``d`` of them).
    n
        Base sample size, a power of 2. The design has ``n * (d + 2)`` points;
        the bootstrap interval of an index shrinks like ``1 / sqrt(n)``.
    seed
        Seeds the scrambling of the Sobol' sequence (SALib, ``scramble=True``).

    Returns
    -------
    ndarray ``(n * (d + 2), d)``
        Unit-cube points, in the order :func:`sobol_indices` expects. Turn
        them into parameter values with ``space.from_unit``.
    """
    n = _check_base(n)
    return salib_sample.sample(_problem(space), n, calc_second_order=False, scramble=True,
                               seed=int(seed))


def model_outputs(params, forcing: xr.Dataset, attrs, *, space: ParameterSpace | None = None,
                  period="calibration",
                  signatures: Sequence[str] = SIGNATURES, progress: bool = True) -> xr.Dataset:
    """Run the teaching model on parameter sets in every basin: skill and signatures.

    The outputs a sensitivity analysis (or an emulator of it) looks at: the
    skill normKGE and a few signatures of the simulated flow, over the water
    years ``period``. Basins run one at a time, so the daily flow of one
    basin's runs is all that is held in memory (2,304 runs of 14 years are
    about 70 MB).

    Parameters
    ----------
    params
        Parameter sets ``(member, param)`` in parameter units, the same in
        every basin (``space.from_unit(sobol_design(...))``).
    forcing, attrs
        :func:`emucal.camels.load_basins` (with at least one spin-up year
        before ``period``) and :func:`emucal.camels.attributes`.
    space
        The parameter space (default ``ParameterSpace.tang2025()``).
    period
        The period scored and summarised: a name in
        :data:`emucal.metrics.PERIODS` or water years ``(first, last)``.
    signatures
        Names of :func:`emucal.diagnostics.signatures` to keep.
    progress
        Show a progress bar over basins.

    Returns
    -------
    xarray.Dataset
        ``norm_kge`` and each signature as ``(basin, member)``. A run whose
        flow does not vary has no KGE; it counts as the worst possible
        (normKGE -1), and ``attrs["n_no_skill"]`` says how many there were.
    """
    from tqdm.auto import tqdm

    from . import diagnostics
    from . import metrics as skill_metrics
    from .ensemble import _check_forcing
    from .model import simulate

    _check_forcing(forcing)
    params = np.atleast_2d(np.asarray(params, dtype=float))
    period = skill_metrics.water_years(period)
    window = skill_metrics.water_year_window(forcing.time.values, period)
    qobs = forcing["qobs"].values.astype(np.float64)
    parts = []
    for b in tqdm(range(forcing.sizes["basin"]), desc="basins", disable=not progress):
        flow = simulate(params, forcing.isel(basin=[b]), attrs, space=space)["qsim"]
        q = flow.isel(basin=0, time=window).astype(np.float64)
        sig = diagnostics.signatures(q, dim="time").sel(signature=list(signatures))
        part = sig.to_dataset("signature").drop_vars(["units", "long_name"], errors="ignore")
        skill = skill_metrics.norm_kge(flow.values[..., window], qobs[None, b:b + 1, window])
        part["norm_kge"] = ("member", skill[:, 0].astype(np.float64))
        parts.append(part.expand_dims(basin=forcing.basin.values[b:b + 1]))
    out = xr.concat(parts, dim="basin").transpose("basin", "member")
    n_bad = int(out["norm_kge"].isnull().sum())
    out["norm_kge"] = out["norm_kge"].fillna(-1.0)
    out.attrs = {"period": f"water years {period[0]}-{period[1]}", "n_no_skill": n_bad}
    return out


def _check_length(m: int, space: ParameterSpace) -> int:
    """The base size ``n`` of outputs of length ``m = n * (d + 2)``, checked."""
    d = len(space)
    n = m // (d + 2)
    if m % (d + 2) == 0 and n >= 2 and not n & (n - 1):
        return n
    low = max(2, 2 ** int(np.log2(max(m / (d + 2), 1))))
    valid = f"{low * (d + 2)} (n = {low}) or {2 * low * (d + 2)} (n = {2 * low})"
    raise ValueError(f"The last axis of y must hold n * (d + 2) = n * {d + 2} outputs "
                     f"(d = {d} parameters in space), n a power of 2, one per row of "
                     f"sobol_design(space, n); got {m} (n = {m / (d + 2):g}). Were the outputs "
                     f"computed on a design for another space? Valid lengths near it: {valid}.")


def sobol_indices(y, space: ParameterSpace, *, dims: Sequence[str] | None = None, coords=None,
                  n_resamples: int = 100, conf_level: float = 0.95, seed: int = 0) -> xr.Dataset:
    """First-order and total Sobol' indices of outputs computed on :func:`sobol_design`.

    Parameters
    ----------
    y
        Outputs ``(..., n * (d + 2))``: the last axis follows the design's
        rows, any leading axes (basins, signatures, draws) are analysed
        one by one. A DataArray brings its own leading dimensions and
        coordinates; the design dimension must be last.
    space
        The parameter space of the design.
    dims, coords
        Names and coordinates of the leading axes of a NumPy ``y`` (default
        ``dim_0``, ``dim_1``, ...).
    n_resamples, conf_level
        Bootstrap resamples and level of the confidence intervals.
    seed
        Seed of the bootstrap.

    Returns
    -------
    xarray.Dataset
        ``S1``, ``ST`` and their confidence half-widths ``S1_conf``,
        ``ST_conf``, each ``(..., param)``. An output that does not vary gives
        NaN indices (there is no variance to split).

    Raises
    ------
    ValueError
        If the last axis does not match a design for ``space`` (``n * (d + 2)``
        outputs, ``n`` a power of 2), or ``y`` holds NaN or infinity (fill failed runs first,
        for example with the basin's worst score, and say so).
    """
    if isinstance(y, xr.DataArray):
        dims, coords = list(y.dims[:-1]), {d: y[d].values for d in y.dims[:-1] if d in y.coords}
        y = y.values
    y = np.asarray(y, dtype=float)
    d = len(space)
    if y.ndim < 1:
        raise ValueError(f"y must have a last axis of n * (d + 2) = n * {d + 2} outputs; "
                         "got a scalar.")
    n = _check_length(y.shape[-1], space)
    if np.isnan(y).any():
        bad = np.argwhere(np.isnan(y).any(axis=-1)) if y.ndim > 1 else [[]]
        raise ValueError(f"y holds NaN (at leading index {[tuple(b) for b in bad[:5]]}); Sobol' "
                         "indices need every run. Fill failed runs explicitly first.")
    if np.isinf(y).any():
        bad = [tuple(int(i) for i in b) for b in np.argwhere(np.isinf(y))[:5]]
        raise ValueError(f"y holds {int(np.isinf(y).sum())} infinite value(s) (at index {bad}, "
                         "the last number the design row); Sobol' indices need finite outputs. "
                         "Replace them explicitly first, for example with the worst finite value, "
                         "and say so.")
    lead = y.shape[:-1]
    dims = list(dims) if dims is not None else [f"dim_{i}" for i in range(len(lead))]
    if len(dims) != len(lead):
        raise ValueError(f"dims {dims} do not match the leading axes of y {lead}.")
    out = {k: np.full((*lead, d), np.nan) for k in ("S1", "ST", "S1_conf", "ST_conf")}
    flat = y.reshape(-1, y.shape[-1])
    for i, row in enumerate(flat):
        if np.ptp(row) == 0:
            continue
        res = salib_sobol.analyze(_problem(space), row, calc_second_order=False,
                                  num_resamples=n_resamples, conf_level=conf_level,
                                  print_to_console=False, seed=int(seed))
        index = np.unravel_index(i, lead) if lead else ()
        for k in out:
            out[k][index] = res[k]
    names = {"S1": "first-order Sobol' index", "ST": "total Sobol' index",
             "S1_conf": f"{conf_level:.0%} bootstrap half-width of S1",
             "ST_conf": f"{conf_level:.0%} bootstrap half-width of ST"}
    all_coords = {"param": list(space.names), **{k: v for k, v in (coords or {}).items() if k in dims}}
    return xr.Dataset({k: ([*dims, "param"], v, {"long_name": names[k]}) for k, v in out.items()},
                      coords=all_coords,
                      attrs={"n_base": n, "n_resamples": n_resamples,
                             "estimators": "Saltelli et al. (2010) S1, Jansen (1999) ST (SALib)"})


def emulator_indices(emulator, space: ParameterSpace, n: int, *, n_draws: int = 0,
                     n_draw_base: int = 64, basins=None, seed: int = 0) -> xr.Dataset:
    """Sobol' indices of a batched per-basin emulator (one GP per basin).

    The indices of the emulator's mean use a design of base size ``n`` (only
    predictions, so ``n`` can be large). With ``n_draws``, the emulator's
    own uncertainty is carried too: each posterior draw (one plausible skill
    surface, :meth:`~emucal.emulators.GPEmulator.sample_y`) gets its indices on
    a smaller design of base size ``n_draw_base`` (draws are joint over the
    design's points, which costs the cube of their number).

    Parameters
    ----------
    emulator
        A fitted emulator on unit-cube inputs, batched over basins
        (``predict`` takes ``(basin, m, d)``), such as
        :class:`~emucal.emulators.GPEmulator` fitted on
        :func:`~emucal.emulators.sse_data`.
    space
        The parameter space the emulator was trained on.
    n, n_draws, n_draw_base
        Base sizes of the designs and number of posterior draws.
    basins
        Coordinates of the ``basin`` dimension.
    seed
        Seed of the designs, the draws and the bootstrap.

    Returns
    -------
    xarray.Dataset
        As :func:`sobol_indices` over ``(basin, param)``; with ``n_draws``
        also ``S1_draws`` and ``ST_draws`` ``(draw, basin, param)``.
    """
    n_basin = emulator.batch_shape_[0] if getattr(emulator, "batch_shape_", ()) else None
    if not n_basin:
        raise ValueError("emulator must be batched over basins (fitted on (basin, member, param) "
                         "inputs, as emulators.sse_data gives).")
    d_fit = getattr(emulator, "n_features_in_", len(space))
    if d_fit != len(space):
        raise ValueError(f"The emulator was fitted on {d_fit} parameters, the space has "
                         f"{len(space)} ({', '.join(space.names)}); pass the space it was trained on.")
    basins = np.arange(n_basin) if basins is None else np.asarray(basins)
    if len(basins) != n_basin:
        raise ValueError(f"basins has {len(basins)} entries, the emulator {n_basin} basins.")
    design = sobol_design(space, n, seed=seed)
    mean = emulator.predict(np.broadcast_to(design, (n_basin, *design.shape)))
    result = sobol_indices(mean, space, dims=["basin"], coords={"basin": basins}, seed=seed)
    if n_draws:
        small = sobol_design(space, n_draw_base, seed=seed + 1)
        draws = emulator.sample_y(np.broadcast_to(small, (n_basin, *small.shape)), n_draws,
                                  seed=seed)  # (basin, draw, m)
        per_draw = sobol_indices(draws.transpose(1, 0, 2), space, dims=["draw", "basin"],
                                 coords={"basin": basins}, seed=seed)
        result["S1_draws"] = per_draw["S1"]
        result["ST_draws"] = per_draw["ST"]
    result.attrs["source"] = "emulator"
    return result


def top_parameters(indices: xr.DataArray, k: int, *, dim: str = "basin") -> list[str]:
    """The ``k`` parameters with the largest median index over ``dim``, largest first."""
    if not 1 <= k <= indices.sizes["param"]:
        raise ValueError(f"k must be between 1 and {indices.sizes['param']}; got {k}.")
    median = indices.median(dim) if dim in indices.dims else indices
    return [str(p) for p in median.sortby(median, ascending=False).param.values[:k]]


# ------------------------------------------------------- a perturbed-parameter ensemble
#: Members an emulator needs per parameter: ``n = 10 d``, the rule of Loeppky, Sacks and
#: Welch (2009, Technometrics 51, 366-376) for a GP of a computer model.
MEMBERS_PER_PARAM = 10


def check_ensemble(ds: xr.Dataset) -> list[str]:
    """Check that ``ds`` is an ensemble (see the module docstring); return its outputs.

    The outputs are the numeric variables other than ``params`` with a
    ``member`` dimension. :func:`~emucal.ensemble.run_ensemble`'s Dataset is an
    ensemble as it is (the NaN of its default member are read from
    ``defaults(basin, param)``) once its scores hold no NaN, for example
    ``ens["norm_kge"] = ens.norm_kge.fillna(-1)``, normKGE's floor.

    An emulator needs :data:`MEMBERS_PER_PARAM` members per parameter (``10 d``:
    a GP of a smooth response is then usually accurate; Loeppky et al. 2009).

    Raises
    ------
    ValueError
        Without ``params(member, param)`` or the parameters' ranges, with
        parameter values outside them, or listing each output with NaN (how
        many members) or without variance across members, and too few members.
    """
    problems = _params_problems(ds)
    outputs = ensemble_outputs(ds)
    if not outputs:
        problems.append("no output: no numeric variable besides params has a 'member' dimension")
    problems += [problem for name in outputs for problem in output_problems(ds, name)]
    if problems:
        raise ValueError("Not an ensemble that can be emulated:\n- " + "\n- ".join(problems))
    return outputs


def _plain(value):
    """A numpy scalar as a Python value (``str``, ``int``, a ``Timestamp``); others as they are."""
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    return value.item() if isinstance(value, np.generic) else value


def ensemble_outputs(ds: xr.Dataset) -> list[str]:
    """The outputs of an ensemble: numeric variables other than ``params`` with a ``member`` dimension."""
    return [str(k) for k, v in ds.data_vars.items()
            if k not in ("params", "defaults") and "member" in v.dims
            and np.issubdtype(v.dtype, np.number)]


def _params_problems(ds: xr.Dataset) -> list[str]:
    """What is wrong with the parameters of an ensemble (raises where nothing else can be read)."""
    space = ParameterSpace.from_dataset(ds)
    if set(ds["params"].dims) != {"member", "param"}:
        raise ValueError(f"params has dimensions {ds['params'].dims}; an ensemble needs ('member', "
                         "'param'), one row per run (rename with ds.rename(run='member')).")
    params = space.validate(ds["params"].transpose("member", "param").values)
    n, problems = params.shape[0], []
    if np.isnan(params).any() and "defaults" not in ds:
        problems.append(f"params is NaN in {int(np.isnan(params).any(axis=1).sum())} member(s) and "
                        "there is no 'defaults(param)' to read them from: fill or drop them")
    need = MEMBERS_PER_PARAM * len(space)
    if n < need:
        problems.append(f"{n} members for {len(space)} parameters: an emulator needs at least "
                        f"{MEMBERS_PER_PARAM} per parameter, {need} members (Loeppky et al. 2009)")
    return problems


def output_problems(ds: xr.Dataset, output: str) -> list[str]:
    """Why one output of an ensemble cannot be emulated: NaN members, slices without variance.

    An empty list: every slice of ``output`` (each value of its dimensions
    other than ``member``) can be emulated.
    """
    y = ds[output].transpose("member", ...)
    n = y.sizes["member"]
    flat = y.values.reshape(n, -1).astype(float)
    problems = []
    nan = np.isnan(flat).any(axis=1)
    if nan.any():
        problems.append(f"{output} is NaN in {int(nan.sum())} of {n} members: fill them (a "
                        "failed run's worst score) or drop them with ds.drop_sel(member=...)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice: reported above
        constant = np.nanmax(flat, axis=0) == np.nanmin(flat, axis=0)
    if constant.any():
        at = dict(zip(y.dims[1:], np.unravel_index(int(np.argmax(constant)), y.shape[1:])))
        first = {d: _plain(y[d].values[i]) for d, i in at.items()}
        problems.append(f"{output} does not vary across members in {int(constant.sum())} of "
                        f"{constant.size} slice(s) (first: {first or 'all of it'}): nothing to "
                        "emulate there")
    return problems


def ensemble_from_tables(params: pd.DataFrame, outputs: pd.DataFrame, ranges=None) -> xr.Dataset:
    """An ensemble from two tables with one row per member: a PPE made elsewhere.

    Parameters
    ----------
    params
        One column per parameter, in parameter units.
    outputs
        One column per output, rows matching ``params`` (same index).
    ranges
        A :class:`ParameterSpace`, or ``{name: (lower, upper)}``; default: the
        range of the runs. Give the design's ranges where known: the unit
        cube of the emulator and the Sobol' indices are over them.

    Examples
    --------
    >>> ds = ensemble_from_tables(pd.read_csv("params.csv"), pd.read_csv("outputs.csv"),
    ...                           ranges={"fff": (0.001, 20.0), "FMAX": (0.1, 0.9)})  # doctest: +SKIP
    >>> ds.to_netcdf("my_ppe.nc")  # doctest: +SKIP
    """
    if not params.index.equals(outputs.index):
        raise ValueError(f"params ({len(params)} rows) and outputs ({len(outputs)} rows) must have "
                         "the same rows (index), one per member.")
    if ranges is None:
        ranges = {c: (params[c].min(), params[c].max()) for c in params.columns}
    if not isinstance(ranges, ParameterSpace):
        missing = [c for c in params.columns if c not in ranges]
        if missing:
            raise ValueError(f"ranges has no (lower, upper) for {missing}.")
        ranges = ParameterSpace([Parameter(str(c), None, *map(float, ranges[c]))
                                 for c in params.columns])
    ds = ranges.subset([str(c) for c in params.columns]).to_dataset(np.array(params, float))
    ds = ds.assign_coords(member=np.asarray(params.index))
    for c in outputs.columns:
        ds[str(c)] = ("member", outputs[c].to_numpy(float))
    ds.attrs["title"] = "perturbed-parameter ensemble"
    return ds


@dataclass
class Response:
    """One output of an ensemble, emulated: what :func:`response` returns.

    Attributes
    ----------
    space
        The ensemble's parameters.
    emulator
        The GP on the unit cube, a batch of one (``predict`` takes ``(1, m, d)``).
    skill
        :func:`~emucal.emulators.cross_validate`'s table (``r2``, ``rmse``,
        ``coverage`` of the 95% interval, ``n_test`` per fold); :attr:`cv_r2`
        pools the folds.
    indices
        ``S1``, ``ST`` over ``param``, ranked by ``ST``, with 95% intervals
        ``S1_lo``, ``S1_hi``, ``ST_lo``, ``ST_hi`` (see :func:`response`).
    runs
        ``params`` and the output of the runs (where the ensemble lies).
    """

    space: ParameterSpace
    emulator: object
    skill: pd.DataFrame
    indices: xr.Dataset
    runs: xr.Dataset

    @property
    def cv_r2(self) -> float:
        """Out-of-fold R2 over all runs: 1 - the folds' pooled squared error / the output's variance.

        Steadier than the mean of the folds' own R2, each measured against its
        few test runs' mean.
        """
        y = self.runs[self.indices.attrs["output"]].values
        mse = float((self.skill["n_test"] * self.skill["rmse"] ** 2).sum() / self.skill["n_test"].sum())
        return 1.0 - mse / float(np.var(y))

    def _unit(self, point) -> np.ndarray:
        """A point (``{name: value}`` or values, parameter units) in the unit cube; default: centre."""
        values = self.space.from_unit(np.full(len(self.space), 0.5))
        if isinstance(point, dict):
            for name, v in point.items():
                values[self.space.names.index(self.space[name].name)] = v
        elif point is not None:
            values = np.asarray(point, float)
        return self.space.to_unit(values)

    def _predict(self, u) -> tuple[np.ndarray, np.ndarray]:
        mean, sd = self.emulator.predict(u.reshape(1, -1, len(self.space)), return_std=True)
        return mean[0].reshape(u.shape[:-1]), sd[0].reshape(u.shape[:-1])

    def curves(self, point=None, n: int = 41) -> xr.Dataset:
        """One-at-a-time curves through ``point`` (default: the centre of the ranges).

        Returns ``mean`` and ``sd`` (predictive, noise included) over ``(param,
        step)`` with each curve's parameter values in ``value``, and the
        prediction at the point, ``point_mean`` and ``point_sd``.
        """
        u0, d = self._unit(point), len(self.space)
        u = np.tile(u0, (d, n, 1))
        u[np.arange(d), :, np.arange(d)] = np.linspace(0, 1, n)
        both_mean, both_sd = self._predict(np.concatenate([u.reshape(-1, d), u0[None]]))  # one call
        mean, sd = both_mean[:-1].reshape(d, n), both_sd[:-1].reshape(d, n)
        at_mean, at_sd = both_mean[-1:], both_sd[-1:]
        values = np.stack([self.space.from_unit(u[k])[:, k] for k in range(d)])
        return xr.Dataset({"mean": (("param", "step"), mean), "sd": (("param", "step"), sd),
                           "point_mean": at_mean[0], "point_sd": at_sd[0]},
                          coords={"param": self.space.names, "value": (("param", "step"), values),
                                  "point": ("param", self.space.from_unit(u0))})

    def map(self, pair=None, point=None, n: int = 41) -> xr.Dataset:
        """The response to two parameters (default: the two of largest ``ST``), others at ``point``.

        Returns ``mean`` and ``sd`` over the two parameters' dimensions, with
        their values in parameter units as coordinates.
        """
        a, b = pair if pair is not None else [str(p) for p in self.indices.param.values[:2]]
        ia, ib = (self.space.names.index(self.space[p].name) for p in (a, b))
        if ia == ib:
            raise ValueError(f"pair must name two different parameters; got {pair}.")
        u = np.tile(self._unit(point), (n, n, 1))
        grid = np.linspace(0, 1, n)
        u[:, :, ia], u[:, :, ib] = grid[:, None], grid[None, :]
        mean, sd = self._predict(u)
        return xr.Dataset({"mean": ((a, b), mean), "sd": ((a, b), sd)},
                          coords={a: self.space.from_unit(u[:, 0])[:, ia],
                                  b: self.space.from_unit(u[0])[:, ib]})


def response(ds: xr.Dataset, output: str, *, select: dict | None = None,
             n_draws: int = 50, seed: int = 0) -> Response:
    """Emulate one output of an ensemble: its skill, Sobol' indices, curves and maps.

    A :class:`~emucal.emulators.GPEmulator` is fitted on the unit cube, and
    scored by 5-fold cross-validation (R2 near 1: trust it; below about 0.8 the
    indices and curves are rough). Its indices come from
    :func:`emulator_indices` on about 32,768 predictions of the emulator's
    mean; each interval is centred there, its half-width the quadrature sum of
    the bootstrap half-width (the design's error) and 1.96 sd of the index
    over ``n_draws`` posterior draws of the emulator (the emulator's error, on
    a smaller design). With fewer than 2 draws only the design's error is in
    it, far too narrow for a rough emulator (``indices.attrs["interval"]``
    says so). The draws understate the emulator's error where its own
    intervals are too narrow (chapter 8): read low CV skill first.

    Parameters
    ----------
    ds
        An ensemble (:func:`check_ensemble`).
    output
        The output to emulate.
    select
        One value for each other dimension of the output, e.g.
        ``{"basin": "01013500", "period": "calibration"}``.
    n_draws, seed
        Posterior draws for the intervals (0: bootstrap only); seed of the
        folds, the fit, the designs and the draws.

    Returns
    -------
    Response
        Its ``curves(point)`` and ``map(pair, point)`` cost only predictions.
    """
    from .emulators import GPEmulator, cross_validate

    if output not in ds.data_vars or "member" not in ds[output].dims:
        outputs = [k for k, v in ds.data_vars.items() if "member" in v.dims and k != "params"]
        raise ValueError(f"{output!r} is not an output of this ensemble (a variable with a "
                         f"'member' dimension): choose one of {outputs}.")
    sub = ds[[v for v in ("params", "defaults", output) if v in ds]].sel(select or {})
    left = [d for d in sub[output].dims if d != "member"]
    if left:
        raise ValueError(f"{output} has dimensions {left} besides member: choose one value of each "
                         f"with select, e.g. select={ {d: _plain(sub[d].values[0]) for d in left} }.")
    extra = [d for d in sub["defaults"].dims if d != "param"] if "defaults" in sub else []
    if extra and sub["params"].isnull().any():
        raise ValueError(f"The NaN in params stand for defaults that depend on {extra}, which "
                         f"{output} does not have: there is no single default to put in their place. "
                         "Fill params, or emulate an output over those dimensions with select.")
    check_ensemble(sub)
    space = ParameterSpace.from_dataset(sub)
    params = sub["params"].transpose("member", "param")
    if "defaults" in sub and not extra:  # run_ensemble's default member: NaN is the basin's default
        params = params.fillna(sub["defaults"])
    x, y = space.to_unit(params.values)[None], sub[output].values[None].astype(float)
    skill = cross_validate(lambda: GPEmulator(seed=seed), x, y, n_splits=5, seed=seed, level=0.95)
    emulator = GPEmulator(seed=seed).fit(x, y)
    d = len(space)
    base = 2 ** int(np.log2(2 ** 15 / (d + 2)))  # about 32,768 predictions
    ind = emulator_indices(emulator, space, base, n_draws=n_draws, seed=seed,
                           n_draw_base=max(2, 2 ** int(np.log2(2048 / (d + 2))))).isel(basin=0)
    for k in ("S1", "ST"):
        spread = 1.96 * ind[f"{k}_draws"].std("draw") if n_draws > 1 else 0.0
        half = np.sqrt(ind[f"{k}_conf"] ** 2 + spread ** 2)
        ind[f"{k}_lo"], ind[f"{k}_hi"] = ind[k] - half, ind[k] + half
    ind = ind.drop_vars("basin").sortby("ST", ascending=False)
    ind.attrs.update(output=output, select=str(select or {}),
                     interval="95%" if n_draws > 1 else "95%, the design error only (no emulator draws)")
    found = Response(space, emulator, skill, ind, xr.Dataset({"params": params, output: sub[output]}))
    ind.attrs["cv_r2"] = found.cv_r2
    return found
