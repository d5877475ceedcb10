"""Run a perturbed-parameter ensemble: every sample in every basin, in chunks, resumable.

An ensemble for calibration is ``members x basins`` model runs, scored against
observed flow. :func:`run_ensemble` splits the members into chunks, runs each
chunk with the teaching model (whose compiled kernel already uses every core
of the machine), scores it, and, when given a ``store`` folder, writes each
finished chunk to its own netCDF file at once. If the run is interrupted, the
same call finds the finished chunks and runs only the missing ones, so nothing
is lost and nothing is redone.

On a cluster, pass a ``dask.distributed.Client``: each chunk becomes a task on
the cluster's workers (for example through dask-jobqueue on PBS or Slurm),
and chunks are written as they come back.

The result has the skill of every member in every basin, ``(member, basin,
period)`` for each metric; :func:`emucal.model.simulate` gives the daily flow of the
members you want to look at.

A calibration runs the model a few parameter sets at a time instead, each
basin with its own: a :class:`Runner` turns parameter sets ``(basin, n,
param)`` into skill ``(basin, n)`` (:func:`model_runner` builds one for the
teaching model; wrap your own model in one), and :func:`fill_defaults` puts
each basin's own default where a design holds NaN.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from . import metrics as skill_metrics
from ._io import atomic_path, digest, write_netcdf_atomic
from .model import ModelInputs, prepare_inputs, run_columns
from .parameters import ParameterSpace

__all__ = ["METRICS", "Runner", "fill_defaults", "model_runner", "run_ensemble"]

#: Skill scores :func:`run_ensemble` can compute, by name.
METRICS = {
    "kge": skill_metrics.kge,
    "kge_prime": skill_metrics.kge_prime,
    "norm_kge": skill_metrics.norm_kge,
    "nse": skill_metrics.nse,
    "log_nse": skill_metrics.log_nse,
    "percent_bias": skill_metrics.percent_bias,
}

SPINUP_YEARS = 1  # years of spin-up before every run of run_ensemble
PROGRESS_DELAY = 2.0  # seconds of work before run_ensemble shows a progress bar
RUNNER_COLUMNS = 8192  # most runs per call of the model in a model_runner (about 0.4 GB for 20 years)
_MANIFEST = "manifest.json"


def _run_chunk(params: np.ndarray, inputs: ModelInputs, qobs: np.ndarray,
               windows: dict[str, np.ndarray], metric_names: Sequence[str],
               spinup_years: int) -> dict[str, np.ndarray]:
    """Run and score one chunk of members in all basins (a plain function, so dask can ship it)."""
    n_member, n_basin = params.shape[0], inputs.shape[0]
    columns = np.repeat(params, n_basin, axis=0)
    col_basin = np.tile(np.arange(n_basin), n_member)
    series, balance = run_columns(columns, col_basin, inputs, outputs=("qsim",),
                                  spinup_years=spinup_years)
    flow = series["qsim"].reshape(n_member, n_basin, -1)
    result = {}
    for name in metric_names:
        scores = np.stack([METRICS[name](flow[..., w], qobs[None, :, w]) for w in windows.values()],
                          axis=-1)
        result[name] = scores.astype(np.float64)
    err = balance[:, 0] - balance[:, 1] - balance[:, 2] - balance[:, 3]
    result["water_balance_error"] = err.reshape(n_member, n_basin)
    return result


def _data_digest(inputs, qobs: np.ndarray) -> str:
    """What the runs read: forcing, attributes (as the model sees them) and observed flow.

    A store or checkpoint made from other forcing (another product, a corrected
    copy, ``area="header"``) must not pass for this one.
    """
    arrays = [inputs.prcp, inputs.tair, inputs.pet, inputs.gamma_frac, inputs.vpd, inputs.lai,
              inputs.statics, inputs.defaults, qobs]
    return digest(np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays]))


def _fingerprint(samples: np.ndarray, basins, time, metric_names, periods, spinup_years,
                 chunk_size, data: str) -> str:
    sha = hashlib.sha256()
    sha.update(np.ascontiguousarray(samples, dtype=np.float64).tobytes())
    sha.update(json.dumps({
        "basins": [str(b) for b in basins], "start": str(time[0]), "end": str(time[-1]),
        "metrics": list(metric_names), "periods": {k: list(v) for k, v in periods.items()},
        "spinup_years": spinup_years, "chunk_size": chunk_size,
        "keep_flow": False,  # an option no more; kept so that stores written before stay valid
        "data": data,
    }, sort_keys=True).encode())
    return sha.hexdigest()


def _chunk_dataset(result: dict, members: np.ndarray, basins, periods, metric_names):
    data_vars = {
        name: (("member", "basin", "period"), result[name], {"long_name": name})
        for name in metric_names
    }
    data_vars["water_balance_error"] = (("member", "basin"), result["water_balance_error"],
                                        {"units": "mm"})
    coords = {"member": members, "basin": np.asarray(basins, dtype=str),
              "period": list(periods)}
    return xr.Dataset(data_vars, coords=coords)


def _values_digest(ds: xr.Dataset) -> str:
    """A checksum of a chunk's values: a chunk edited after it was written is not taken."""
    return digest(np.concatenate([np.asarray(ds[name].values, np.float64).ravel()
                                  for name in sorted(ds.data_vars)]))


def _check_chunk(path: Path, fingerprint: str) -> None:
    """A finished chunk must be readable, carry this ensemble's fingerprint and its own values."""
    try:
        with xr.open_dataset(path) as ds:
            found = ds.attrs.get("emucal_fingerprint")
            checksum = ds.attrs.get("emucal_values")  # absent in chunks written before it existed
            edited = found == fingerprint and checksum is not None and checksum != _values_digest(ds)
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"The chunk {path} cannot be read ({type(err).__name__}: {err}); "
                         "delete it and run again to recompute it.") from err
    if found != fingerprint:
        raise ValueError(
            f"The chunk {path} belongs to another ensemble (other samples, basins, forcing, "
            f"periods or settings) than this store's. Delete the store {path.parent} (or at least its "
            "chunk files) and run again.")
    if edited:
        raise ValueError(f"The values in the chunk {path} are not those it was written with (the "
                         "file was edited or damaged since). Delete it and run again to recompute it.")


def _check_forcing(forcing: xr.Dataset) -> None:
    """Refuse forcing the model would misread: a basin twice, days out of order or missing.

    The model steps through the rows of ``time`` one day at a time, so a row
    missing or out of place shifts every later day against its flow.
    """
    basins = [str(b) for b in forcing.basin.values]
    twice = sorted({b for b in basins if basins.count(b) > 1})
    if twice:
        raise ValueError(f"Forcing holds basins {twice} more than once; give each basin once.")
    t = pd.DatetimeIndex(forcing.time.values)
    bad = np.flatnonzero(np.asarray(t[1:] - t[:-1] != pd.Timedelta(days=1)))
    if bad.size:
        raise ValueError(
            f"Forcing time must be consecutive days in order; {t[bad[0] + 1]:%Y-%m-%d} follows "
            f"{t[bad[0]]:%Y-%m-%d}. Sort it (forcing.sortby('time')) or load a period without "
            "gaps, e.g. load_basins(..., start='1993-10-01', end='2013-09-30').")


def run_ensemble(
    samples,
    forcing: xr.Dataset,
    attrs: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("kge_prime", "norm_kge"),
    periods: Sequence[str] | dict[str, tuple[int, int]] = ("calibration", "validation"),
    chunk_size: int = 50,
    store: str | os.PathLike | None = None,
    client=None,
) -> xr.Dataset:
    """Run every parameter set in every basin and score the runs.

    Each run starts with :data:`SPINUP_YEARS` of spin-up (the first year of
    the forcing, as :func:`emucal.model.simulate`). A progress bar over
    chunks appears when the work takes longer than :data:`PROGRESS_DELAY`
    seconds. The daily flows are not kept: :func:`emucal.model.simulate` runs
    the members you want to look at and returns them.

    Parameters
    ----------
    samples
        ``(member, param)`` values in the ranges of
        :meth:`ParameterSpace.tang2025` (from :func:`emucal.sampling.sample`),
        or the Dataset of :meth:`ParameterSpace.to_dataset`, whose values are
        read by parameter name and checked against the ranges it carries (a
        space of your own, for example with a range widened).
    forcing
        :func:`emucal.camels.load_basins` over the simulation period (no gaps
        in the forcing; missing flow is fine).
    attrs
        :func:`emucal.camels.attributes`.
    metrics
        Names from :data:`METRICS`.
    periods
        Names of :data:`emucal.metrics.PERIODS` to score, or ``{label: (first
        water year, last water year)}`` for periods of your own; the labels
        become the ``period`` coordinate (periods outside the forcing are
        refused).
    chunk_size
        Members per chunk: the unit of work, of the progress bar and of resuming.
    store
        Folder for finished chunks (netCDF, one file each). With a store, an
        interrupted run resumes where it stopped; a store made for other inputs
        is refused.
    client
        A ``dask.distributed.Client``: chunks run as tasks on its workers.
        Default: chunks run one after the other here, each on all cores.

    Returns
    -------
    xarray.Dataset
        Each metric as ``(member, basin, period)``, ``water_balance_error``
        ``(member, basin)``, the parameter values ``params(member, param)`` (NaN:
        the basin's default, as in the default member of
        :func:`emucal.sampling.sample`), each basin's default parameters
        ``defaults(basin, param)``.
    """
    space = ParameterSpace.tang2025()
    if isinstance(samples, xr.Dataset) and "params" not in samples:
        raise ValueError(f"samples is a Dataset without 'params' (variables: {list(samples.data_vars)})"
                         ": the order is run_ensemble(samples, forcing, attrs).")
    if isinstance(samples, xr.Dataset):
        if {"lower", "upper"} <= set(samples["params"].coords):  # the ranges it was drawn in
            own = ParameterSpace.from_dataset(samples)
            if sorted(own.names) == sorted(space.names):  # else validate says what is missing
                space = own.subset(space.names)
        samples = samples["params"].transpose("member", "param")
    samples = np.atleast_2d(space.validate(samples))
    metrics = (metrics,) if isinstance(metrics, str) else metrics
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metrics {unknown}; choose from {list(METRICS)}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    if isinstance(periods, str):
        periods = (periods,)
    if not isinstance(periods, dict):
        periods = {name: skill_metrics.water_years(name) for name in periods}
    periods = {name: skill_metrics.water_years(years) for name, years in periods.items()}
    windows = {}
    for name, years in periods.items():
        try:
            windows[name] = skill_metrics.water_year_window(forcing.time.values, years)
        except ValueError as err:
            raise ValueError(f"Period {name!r}: {err}") from None

    _check_forcing(forcing)
    inputs = prepare_inputs(forcing, attrs)
    qobs = forcing["qobs"].values.astype(np.float64)
    basins, time = forcing.basin.values, forcing.time.values
    n_member = samples.shape[0]
    starts = list(range(0, n_member, chunk_size))

    store_path = Path(store) if store is not None else None
    done: dict[int, Path] = {}
    if store_path is not None:
        if store_path.exists() and not store_path.is_dir():
            raise ValueError(f"store={str(store_path)!r} is a file; the store is a folder of chunk "
                             f"files, for example {store_path.with_suffix('')}_chunks.")
        store_path.mkdir(parents=True, exist_ok=True)
        print_ = _fingerprint(samples, basins, time, metrics, periods, SPINUP_YEARS,
                              chunk_size, _data_digest(inputs, qobs))
        manifest = store_path / _MANIFEST
        recorded = None
        if manifest.exists():
            try:
                recorded = json.loads(manifest.read_text())
            except ValueError as err:  # each chunk carries its own fingerprint: keep the good ones
                warnings.warn(f"{manifest} is damaged ({err}); it is written again, and the "
                              "finished chunks that carry this ensemble's fingerprint are kept.",
                              UserWarning, stacklevel=2)
        if isinstance(recorded, dict):
            if recorded.get("fingerprint") != print_:
                raise ValueError(
                    f"The store {store_path} holds an ensemble made with other samples, basins, "
                    "forcing, observed flow, periods or settings. Use a new folder, or delete "
                    "this one to start again.")
        else:
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps({"fingerprint": print_, "n_member": n_member,
                                           "chunk_size": chunk_size}, indent=1))
        for i, start in enumerate(starts):
            path = store_path / f"chunk_{i:05d}.nc"
            if path.exists():
                _check_chunk(path, print_)
                done[i] = path

    todo = [i for i in range(len(starts)) if i not in done]
    results: dict[int, xr.Dataset] = {}

    def finish(i: int, result: dict) -> None:
        members = np.arange(starts[i], min(starts[i] + chunk_size, n_member))
        ds = _chunk_dataset(result, members, basins, periods, metrics)
        if store_path is not None:
            ds.attrs["emucal_fingerprint"] = print_
            ds.attrs["emucal_values"] = _values_digest(ds)
            path = store_path / f"chunk_{i:05d}.nc"
            write_netcdf_atomic(ds, path)
            done[i] = path
        else:
            results[i] = ds

    bar = tqdm(total=len(starts), initial=len(done), desc="ensemble chunks", unit="chunk",
               delay=PROGRESS_DELAY)
    try:
        if client is None:
            for i in todo:
                chunk = samples[starts[i]:starts[i] + chunk_size]
                finish(i, _run_chunk(chunk, inputs, qobs, windows, metrics, SPINUP_YEARS))
                bar.update()
        else:
            from distributed import as_completed

            inputs_f, qobs_f = client.scatter([inputs, qobs], broadcast=True, hash=False)
            futures = {
                client.submit(_run_chunk, samples[starts[i]:starts[i] + chunk_size], inputs_f,
                              qobs_f, windows, list(metrics), SPINUP_YEARS, pure=False): i
                for i in todo
            }
            for future in as_completed(futures):
                finish(futures[future], future.result())
                bar.update()
    finally:
        bar.close()

    if store_path is not None:
        parts = []
        for i in range(len(starts)):
            with xr.open_dataset(done[i]) as part:
                parts.append(part.load())
    else:
        parts = [results[i] for i in range(len(starts))]
    out = xr.concat(parts, dim="member")
    out["params"] = space.to_dataset(samples)["params"]
    out["defaults"] = (("basin", "param"), inputs.defaults,
                       {"long_name": "each basin's default parameters (what NaN in params stands for)"})
    out.attrs.update({
        "title": "teaching-model ensemble",
        "periods": json.dumps({k: list(v) for k, v in periods.items()}),
        "spinup_years": SPINUP_YEARS,
    })
    return out


# ------------------------------------------------------------------ the runner
@dataclass(frozen=True)
class Runner:
    """A model as a calibration sees it: parameter sets in, skill out.

    :func:`emucal.calibrate.loop` and :func:`emucal.calibrate.dds` call
    ``runner(params)`` with parameter sets ``(basin, n, param)`` in parameter
    units (basin ``b`` runs its own ``n`` sets) and expect the skill ``(basin,
    n)`` back, higher being better. :func:`model_runner` builds one for the
    teaching model; for your own model (CTSM through :mod:`emucal.ctsm`, or
    anything else) wrap the function that runs it::

        runner = Runner(run_my_model, basins=["01013500", "01022500"],
                        names=space.names, fingerprint="my model v1, KGE', WY1995-2007")

    Attributes
    ----------
    run
        The function ``(basin, n, param) -> (basin, n)``.
    basins
        Basin ids, in the order of the first axis.
    names
        Parameter names, in the order of the last axis (:meth:`subset` needs them).
    defaults
        ``(basin, param)``: each basin's default parameter set, which a NaN in a
        parameter set stands for (see :func:`fill_defaults`). ``None``:
        parameter sets must not hold NaN.
    fingerprint
        What the skill depends on besides the parameters (model, basins, metric,
        period, forcing). A checkpoint (:func:`emucal.calibrate.checkpoint`)
        refuses to mix the runs of two fingerprints; leave it empty and it
        cannot tell them apart.
    """

    run: Callable[[np.ndarray], np.ndarray]
    basins: np.ndarray
    names: tuple[str, ...] | None = None
    defaults: np.ndarray | None = None
    fingerprint: str = ""

    def __post_init__(self):
        object.__setattr__(self, "basins", np.asarray(self.basins))
        twice = sorted({str(b) for b in self.basins if (self.basins == b).sum() > 1})
        if twice:
            raise ValueError(f"basins {twice} are given twice; a runner's rows are one per basin.")
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
        skill = self.run(params)
        if isinstance(skill, xr.DataArray) and "basin" in skill.dims:  # labelled: put basins first
            skill = skill.transpose("basin", ...)
        skill = np.asarray(skill, dtype=float)
        if skill.shape != params.shape[:2]:
            raise ValueError(f"The model returned skill of shape {skill.shape}; a runner returns "
                             f"one value per basin and parameter set, (basin, n) = "
                             f"{params.shape[:2]}.")
        return skill

    def subset(self, names) -> "Runner":
        """The same model with only ``names`` free and every other parameter at the basin's default.

        Calibrate in a reduced space (the most influential parameters of
        chapter 8, say) with ``space.subset(names)`` and this runner.
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


def model_runner(forcing: xr.Dataset, attrs: pd.DataFrame, space: ParameterSpace, *,
                 metric: str = "kge_prime", period="calibration", spinup_years: int = 1,
                 snowpack: bool = True) -> Runner:
    """The teaching model as a :class:`Runner`: parameter sets in, skill over ``period`` out.

    Parameters
    ----------
    forcing, attrs
        :func:`emucal.camels.load_basins` and :func:`emucal.camels.attributes`,
        as for :func:`run_ensemble`; the runner's basins are those of ``forcing``.
    space
        The parameter space of the parameter sets.
    metric
        The skill (higher is better): ``"kge_prime"``, ``"kge"``, ``"norm_kge"``,
        ``"nse"`` or ``"log_nse"`` (see :data:`METRICS`).
    period
        A name in :data:`emucal.metrics.PERIODS` or a pair of water years.
    spinup_years
        Spin-up years before each run.
    snowpack
        ``False`` runs chapter 7's model without snow (see
        :func:`emucal.model.run_columns`).

    Returns
    -------
    Runner
        With each basin's defaults (:func:`emucal.model.default_params`) and a
        fingerprint of the forcing, flow, metric and period. The inputs are
        prepared once, so a call costs only the runs. The model gets
        :data:`RUNNER_COLUMNS` runs at a time (whole basins), so that the memory
        of a call stays bounded however many basins it runs. Runs that fit in
        one call (the 19 sample basins up to 431 runs each) give the skill of
        one call bit for bit; more give it up to the last digits (numpy's sums
        depend on the shape of an array).
    """
    if metric not in ("kge_prime", "kge", "norm_kge", "nse", "log_nse"):
        raise ValueError(f"Unknown metric {metric!r}; choose kge_prime, kge, norm_kge, nse or log_nse.")
    _check_forcing(forcing)
    inputs = prepare_inputs(forcing, attrs)
    period = skill_metrics.water_years(period)
    window = skill_metrics.water_year_window(forcing.time.values, period)
    qobs = forcing["qobs"].values[:, window]
    score = METRICS[metric]
    n_basin = inputs.shape[0]

    def run(params: np.ndarray) -> np.ndarray:
        space.validate(params.reshape(-1, params.shape[-1]))
        n = params.shape[1]
        per_call = max(1, RUNNER_COLUMNS // max(n, 1))  # basins per call: the flows of all basins
        skill = []                                      # at once would not fit in memory
        for first in range(0, n_basin, per_call):
            # a slice, not a list of basins: views, as one call takes them, give the same sums
            basins = slice(first, min(first + per_call, n_basin))
            flow = run_columns(params[basins].reshape(-1, params.shape[-1]),
                               np.repeat(np.arange(n_basin)[basins], n), inputs,
                               spinup_years=spinup_years, snowpack=snowpack)[0]["qsim"]
            skill.append(score(flow.reshape(-1, n, flow.shape[-1])[..., window], qobs[basins, None, :]))
        return np.concatenate(skill)

    fingerprint = "|".join([
        ",".join(map(str, forcing.basin.values)), metric, f"{period[0]}-{period[1]}",
        f"spinup {spinup_years}", f"snowpack {snowpack}", ",".join(space.names),
        _data_digest(inputs, qobs)])
    return Runner(run, forcing.basin.values, names=space.names, defaults=inputs.defaults,
                  fingerprint=fingerprint)


def fill_defaults(run: Runner, params) -> np.ndarray:
    """Parameter sets for every basin of ``run``, each NaN replaced by that basin's default.

    Parameters
    ----------
    run
        The :class:`Runner`; its ``defaults`` fill the NaN.
    params
        ``(n, param)``, the same sets for every basin (a design of
        :func:`emucal.sampling.sample`, whose default member is NaN where the
        default differs by basin), or ``(basin, n, param)``.

    Returns
    -------
    ndarray ``(basin, n, param)``
        A new array, in parameter units.
    """
    if not isinstance(run, Runner):
        raise TypeError(f"run must be an ensemble.Runner (from model_runner, or Runner(your_function, "
                        f"basins=...) for your own model); got {type(run).__name__}.")
    params = np.asarray(params, dtype=float)
    width = len(run.names) if run.names is not None else (
        run.defaults.shape[-1] if run.defaults is not None else params.shape[-1])
    if params.ndim not in (2, 3) or params.shape[-1] != width:
        raise ValueError(f"params must be (n, param) or (basin, n, param) with {width} parameters"
                         f"{' (' + ', '.join(run.names) + ')' if run.names is not None else ''}; "
                         f"got shape {params.shape}.")
    if params.ndim == 2:
        params = np.broadcast_to(params, (run.n_basin,) + params.shape)
    if not np.isnan(params).any():
        return params.copy()
    if run.defaults is None:
        raise ValueError("The parameter sets hold NaN (a basin's own default, as in the default "
                         "member of sampling.sample), but the runner has no defaults (basin, param) "
                         "to fill them; give explicit values or Runner(..., defaults=...).")
    return np.where(np.isnan(params), run.defaults[:, None, :], params)
