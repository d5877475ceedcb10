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
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr
from SALib.analyze import sobol as salib_sobol
from SALib.sample import sobol as salib_sample

from .parameters import ParameterSpace

__all__ = ["SIGNATURES", "sobol_design", "model_outputs", "sobol_indices", "emulator_indices",
           "top_parameters"]

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
        Unit-cube points, in the order :func:`sobol_indices` expects (pass
        them as its ``design`` to have that checked). Turn them into
        parameter values with ``space.from_unit``.
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
    from .ensemble import run_ensemble

    space = space or ParameterSpace.tang2025()
    params = np.atleast_2d(np.asarray(params, dtype=float))
    period = skill_metrics.water_years(period)
    window = skill_metrics.water_year_window(forcing.time.values, period)
    parts = []
    for b in tqdm(range(forcing.sizes["basin"]), desc="basins", disable=not progress):
        ens = run_ensemble(params, forcing.isel(basin=[b]), attrs, space=space,
                           metrics=("norm_kge",), periods={"scored": period},
                           chunk_size=len(params), keep_flow=True)
        q = ens["qsim"].isel(basin=0, time=window).astype(np.float64)
        sig = diagnostics.signatures(q, dim="time").sel(signature=list(signatures))
        part = sig.to_dataset("signature").drop_vars(["units", "long_name"], errors="ignore")
        part["norm_kge"] = ens["norm_kge"].isel(basin=0).sel(period="scored", drop=True)
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


def _check_design(design, space: ParameterSpace, m: int) -> None:
    """Check that ``design`` is Saltelli's design for ``space`` with ``m`` rows.

    Its rows come in blocks ``A, AB_1, ..., AB_d, B`` of ``d + 2``: ``AB_k``
    is ``A`` with column ``k`` taken from ``B``.
    """
    design = np.asarray(design, dtype=float)
    d = len(space)
    if design.shape != (m, d):
        raise ValueError(f"design has shape {design.shape}, but y and space ({d} parameters) need "
                         f"({m}, {d}): pass the sobol_design(space, n) the outputs were computed on.")
    blocks = design.reshape(-1, d + 2, d)
    a, b, ab = blocks[:, :1], blocks[:, -1:], blocks[:, 1:-1]
    wrong = np.argwhere((ab != np.where(np.eye(d, dtype=bool), b, a)).any(axis=-1))
    if len(wrong):
        j, k = wrong[0]
        raise ValueError(f"design is not Saltelli's design for these {d} parameters ({space.names}): "
                         f"row {j * (d + 2) + k + 1} should be row {j * (d + 2)} with column {k} "
                         f"({space.names[k]}) from row {j * (d + 2) + d + 1}. Pass the "
                         "sobol_design(space, n) of this space.")


def sobol_indices(y, space: ParameterSpace, *, dims: Sequence[str] | None = None, coords=None,
                  n_resamples: int = 100, conf_level: float = 0.95, seed: int = 0,
                  design=None) -> xr.Dataset:
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
    design
        The :func:`sobol_design` the outputs were computed on (unit cube or
        parameter units). Optional; given, it is checked to be Saltelli's
        design for ``space`` with one row per output, which catches outputs
        of another space's design even when their number fits this one.

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
        outputs, ``n`` a power of 2, or ``design`` not Saltelli's design for
        ``space``), or ``y`` holds NaN or infinity (fill failed runs first,
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
    if design is not None:
        _check_design(design, space, y.shape[-1])
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
    result = sobol_indices(mean, space, dims=["basin"], coords={"basin": basins}, seed=seed,
                           design=design)
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
