"""Space-filling designs: the initial ensemble of parameter sets that trains an emulator.

An emulator learns how the model's skill changes with its parameters from a
few hundred runs, so those runs should cover the parameter space evenly: no
large empty regions where the emulator has to guess, and no clumps that waste
expensive model runs on near-duplicates. This module draws such designs in the
unit cube ``[0, 1]^d`` and maps them to parameter values with
:meth:`~emucal.parameters.ParameterSpace.from_unit` (so a log-scaled parameter
is uniform in its logarithm). Three designs are offered:

``"lhs"``, Latin hypercube sampling (McKay, Beckman & Conover 1979)
    Each axis is cut into ``n`` equal strata and every stratum holds exactly
    one point, so each parameter on its own is covered evenly whatever the
    number of parameters. By default the design is then improved with
    scipy's ``"random-cd"`` optimisation, which swaps coordinates between
    points (keeping the one-point-per-stratum property) while that lowers the
    centred discrepancy, so that pairs of parameters are covered evenly too.
``"sobol"``, a scrambled Sobol' sequence (Sobol' 1967; Owen 1998)
    A low-discrepancy sequence, very even in every sub-cube of the design
    when ``n`` is a power of two; Owen's scrambling randomises it while
    keeping that structure, so that several seeds give independent designs.
``"random"``
    Independent uniform points: the baseline that shows what a design buys.
    Clumps and gaps are common.

Tang, Wood & Swenson (2025) started each basin's calibration from 200 runs,
one of them with the CTSM default parameters, so that the ensemble always
contains the model as released. :func:`sample` does the same by default
(``include_default=True``): member 0 is the default and the other ``n - 1``
members come from the design.

How even is a design? :func:`discrepancy` measures how far the empirical
distribution of the points is from uniform (Hickernell's centred L2
discrepancy by default; lower is more uniform), :func:`min_distance` the
closest pair of points (larger is better: no near-duplicates), and
:func:`design_diagnostics` reports both for a sample in parameter units.
:func:`emucal.plotting.pair_plot` shows the design as scatter plots of pairs of parameters.

All functions take an explicit integer ``seed``: the same seed gives the same
design, so a notebook reproduces its ensemble exactly.

References
----------
McKay, M. D., Beckman, R. J. and Conover, W. J. (1979), A comparison of three
methods for selecting values of input variables in the analysis of output
from a computer code, Technometrics 21, 239-245, doi:10.2307/1268522.
Sobol', I. M. (1967), On the distribution of points in a cube and the
approximate evaluation of integrals, USSR Comput. Math. Math. Phys. 7(4),
86-112, doi:10.1016/0041-5553(67)90144-9.
Owen, A. B. (1998), Scrambling Sobol' and Niederreiter-Xing points,
J. Complexity 14, 466-489, doi:10.1006/jcom.1998.0487.
Hickernell, F. J. (1998), A generalized discrepancy and quadrature error
bound, Math. Comp. 67, 299-322, doi:10.1090/S0025-5718-98-00894-1.
Roy, P. T., Owen, A. B., Balandat, M. and Haberland, M. (2023), Quasi-Monte
Carlo methods in Python, J. Open Source Softw. 8(84), 5309,
doi:10.21105/joss.05309 (``scipy.stats.qmc``).
Tang, G., Wood, A. W. and Swenson, S. (2025), Water Resour. Res. 61,
e2024WR039525 (the 200-member initial ensemble with the default included).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Sequence

import numpy as np
import xarray as xr
from scipy.spatial.distance import pdist
from scipy.stats import qmc

from .parameters import ParameterSpace

__all__ = [
    "DISCREPANCY_METHODS",
    "METHODS",
    "OPTIMIZATIONS",
    "design_diagnostics",
    "discrepancy",
    "min_distance",
    "sample",
    "sample_dataset",
    "sample_unit",
]

#: The designs :func:`sample` and :func:`sample_unit` can draw.
METHODS = ("lhs", "sobol", "random")
#: Values of ``optimization`` that scipy's Latin hypercube accepts.
OPTIMIZATIONS = (None, "random-cd", "lloyd")
#: Discrepancies that :func:`discrepancy` can compute (see ``scipy.stats.qmc.discrepancy``).
DISCREPANCY_METHODS = ("CD", "WD", "MD", "L2-star")

# scipy 1.15 renamed the qmc engines' ``seed`` argument to ``rng``.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(qmc.LatinHypercube).parameters else "seed"


# ------------------------------------------------------------------ checks
def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be a non-negative integer so that the design can be reproduced; "
            f"got {seed!r}.")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed}.")
    return int(seed)


def _check_count(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}; got {value}.")
    return int(value)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"Unknown sampling method {method!r}; valid methods are {list(METHODS)}.")
    return method


def _check_optimization(optimization):
    if optimization not in OPTIMIZATIONS:
        raise ValueError(
            f"Unknown optimization {optimization!r}; valid values are {list(OPTIMIZATIONS)}.")
    return optimization


def _check_unit(unit, what: str = "unit") -> np.ndarray:
    """A design in the unit cube as a 2-D float array ``(n_points, d)``."""
    u = np.asarray(unit, dtype=float)
    if u.ndim != 2:
        raise ValueError(
            f"{what} must be a 2-D array of shape (n_points, n_params); got shape {u.shape}.")
    if u.shape[0] < 1 or u.shape[1] < 1:
        raise ValueError(f"{what} must hold at least one point and one column; got shape {u.shape}.")
    bad = ~np.isfinite(u) | (u < 0) | (u > 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{what} must lie in the unit cube [0, 1]; value {float(u[row, col])!r} at row {row}, "
            f"column {col} does not. Map parameter values with ParameterSpace.to_unit first.")
    return u


def _as_samples(space: ParameterSpace, samples) -> np.ndarray:
    """Samples in parameter units as ``(n_members, len(space))``, checked against the ranges.

    Accepts an array or the Dataset of :func:`sample_dataset` (variable ``params``).
    """
    if isinstance(samples, xr.Dataset):
        if "params" not in samples:
            raise ValueError("A Dataset of samples needs the variable 'params(member, param)'.")
        samples = samples["params"]
    if isinstance(samples, xr.DataArray):
        if "param" in samples.dims:
            missing = [n for n in space.names if n not in samples["param"].values]
            if missing:
                raise ValueError(f"The samples lack the parameters {missing}.")
            samples = samples.sel(param=space.names).transpose(..., "param")
        samples = samples.values
    x = np.atleast_2d(space.validate(samples))
    if x.ndim != 2:
        raise ValueError(f"samples must have shape (n_members, {len(space)}); got {x.shape}.")
    return x


# ----------------------------------------------------------------- designs
def _design(d: int, n: int, method: str, seed: int, optimization, *,
            default_added: bool = False, stacklevel: int = 3) -> np.ndarray:
    if method == "random":
        return np.random.default_rng(seed).random((n, d))
    if method == "lhs":
        engine = qmc.LatinHypercube(d, scramble=True, optimization=optimization,
                                    **{_RNG_KEYWORD: seed})
        return engine.random(n)
    # Sobol': the balance properties hold for n = 2**m points only.
    engine = qmc.Sobol(d, scramble=True, **{_RNG_KEYWORD: seed})
    m = int(np.log2(n)) if n > 0 else 0
    if 2**m == n:
        return engine.random_base2(m)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*balance properties.*", category=UserWarning)
        points = engine.random(n)
    hint = (f" With include_default=True the design has n - 1 points, so choose "
            f"n = 2**m + 1 (for example {2 ** max(m, 1) + 1} or {2 ** (m + 1) + 1})."
            if default_added else
            f" Choose n = 2**m (for example {2 ** max(m, 1)} or {2 ** (m + 1)}).")
    warnings.warn(
        f"A Sobol' design of {n} points is not a power of 2, so it loses the balance "
        f"properties that make Sobol' points even.{hint}",
        UserWarning, stacklevel=stacklevel)
    return points


def sample_unit(
    d: int,
    n: int,
    method: str = "lhs",
    *,
    seed: int,
    optimization: str | None = "random-cd",
) -> np.ndarray:
    """Draw a design of ``n`` points in the unit cube ``[0, 1]^d``.

    Parameters
    ----------
    d
        Number of dimensions (parameters).
    n
        Number of points.
    method
        ``"lhs"``, ``"sobol"`` or ``"random"`` (see the module docstring).
    seed
        Seed of the random numbers; the same seed gives the same design.
    optimization
        For ``"lhs"`` only (the other methods ignore it): ``"random-cd"``
        (default) swaps coordinates between points while that lowers the
        centred discrepancy; the result is still a Latin hypercube.
        ``"lloyd"`` moves the points towards the centres of their Voronoi
        cells (a more even spread, but no longer one point per stratum).
        ``None`` keeps the plain random Latin hypercube.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, d)``, values in ``[0, 1)``.

    Raises
    ------
    ValueError
        For an unknown ``method`` or ``optimization``, or ``n`` or ``d`` below 1.

    Warns
    -----
    UserWarning
        For ``method="sobol"`` when ``n`` is not a power of 2.

    Examples
    --------
    >>> u = sample_unit(3, 8, "lhs", seed=1)
    >>> u.shape
    (8, 3)
    >>> sorted(np.floor(u[:, 0] * 8).astype(int).tolist())   # one point per stratum
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    d = _check_count(d, "d (the number of dimensions)", 1)
    n = _check_count(n, "n (the number of points)", 1)
    _check_method(method)
    _check_optimization(optimization)
    return _design(d, n, method, _check_seed(seed), optimization)


def sample(
    space: ParameterSpace,
    n: int,
    method: str = "lhs",
    *,
    seed: int,
    include_default: bool = True,
    optimization: str | None = "random-cd",
) -> np.ndarray:
    """Draw ``n`` parameter sets from ``space``, in parameter units.

    The design is drawn in the unit cube with :func:`sample_unit` and mapped
    with :meth:`ParameterSpace.from_unit`, so log-scaled parameters are
    uniform in their logarithm.

    Parameters
    ----------
    space
        The parameters, their ranges and scales.
    n
        Number of parameter sets (rows), the default member included.
    method
        ``"lhs"`` (Latin hypercube, McKay et al. 1979), ``"sobol"``
        (scrambled Sobol', Sobol' 1967, Owen 1998) or ``"random"``.
    seed
        Seed of the random numbers; the same seed gives the same sample.
    include_default
        If True (default), row 0 is the CTSM default (``space.defaults``) and
        rows 1 to ``n - 1`` are a design of ``n - 1`` points, as in Tang et
        al. (2025), whose 200-member initial ensemble held the default
        parameter set. For ``"sobol"`` choose ``n = 2**m + 1`` then.
    optimization
        Passed to scipy's ``LatinHypercube`` for ``method="lhs"``; see
        :func:`sample_unit`. Ignored by the other methods.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, len(space))``, every value within its parameter's range.

    Raises
    ------
    ValueError
        For an unknown ``method`` (the message lists the valid ones), or
        ``n < 1`` (``n < 2`` with ``include_default``: there would be no
        design left).

    Warns
    -----
    UserWarning
        For ``method="sobol"`` when the design size is not a power of 2.

    Examples
    --------
    >>> space = ParameterSpace.tang2025()
    >>> x = sample(space, 200, "lhs", seed=2025)
    >>> x.shape
    (200, 16)
    >>> bool(np.array_equal(x[0], space.defaults))
    True
    """
    _check_method(method)
    _check_optimization(optimization)
    minimum = 2 if include_default else 1
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n < minimum:
        reason = (" with include_default=True (row 0 is the default, the rest the design)"
                  if include_default else "")
        raise ValueError(f"n must be at least {minimum}{reason}; got {n}.")
    n = _check_count(n, "n (the number of parameter sets)", minimum)
    seed = _check_seed(seed)
    n_design = n - 1 if include_default else n
    unit = _design(len(space), n_design, method, seed, optimization,
                   default_added=include_default)
    values = space.from_unit(unit)
    if include_default:
        values = np.vstack([space.defaults[None, :], values])
    return values


def sample_dataset(
    space: ParameterSpace,
    n: int,
    method: str = "lhs",
    *,
    seed: int,
    include_default: bool = True,
    **kwargs,
) -> xr.Dataset:
    """:func:`sample` as an xarray Dataset, with the design recorded in its attributes.

    Parameters
    ----------
    space, n, method, seed, include_default
        As for :func:`sample`.
    **kwargs
        Passed to :func:`sample` (``optimization``).

    Returns
    -------
    xarray.Dataset
        ``params(member, param)`` with the parameter metadata of
        :meth:`ParameterSpace.to_dataset`, and the attributes ``method``,
        ``seed``, ``include_default`` (1 or 0, since netCDF has no booleans)
        and ``optimization`` (``"none"`` when not optimised; only for ``"lhs"``).

    Examples
    --------
    >>> ds = sample_dataset(ParameterSpace.tang2025(), 9, "sobol", seed=0)
    >>> ds["params"].shape, ds.attrs["method"]
    ((9, 16), 'sobol')
    """
    values = sample(space, n, method, seed=seed, include_default=include_default, **kwargs)
    ds = space.to_dataset(values)
    ds.attrs.update({
        "title": "parameter sample",
        "method": method,
        "seed": int(seed),
        "include_default": int(bool(include_default)),
    })
    if method == "lhs":
        ds.attrs["optimization"] = str(kwargs.get("optimization", "random-cd") or "none")
    if include_default:
        ds.attrs["default_member"] = 0
    return ds


# ------------------------------------------------------------- diagnostics
def discrepancy(unit: np.ndarray, method: str = "CD") -> float:
    """Discrepancy of a design in the unit cube: how far it is from uniform.

    Parameters
    ----------
    unit
        Shape ``(n_points, d)``, values in ``[0, 1]``.
    method
        ``"CD"`` (default): Hickernell's (1998) centred L2 discrepancy, which
        compares the fraction of points in boxes anchored at the cube's
        corners with the boxes' volumes, and does not change when the cube is
        reflected about its centre. ``"WD"`` (wrap-around), ``"MD"``
        (mixture) and ``"L2-star"`` are the other measures of
        ``scipy.stats.qmc.discrepancy``.

    Returns
    -------
    float
        The discrepancy; lower is more uniform. Compare designs of the same
        ``n`` and ``d`` only.

    Raises
    ------
    ValueError
        For values outside ``[0, 1]``, a shape that is not 2-D, or an unknown ``method``.
    """
    if method not in DISCREPANCY_METHODS:
        raise ValueError(
            f"Unknown discrepancy {method!r}; valid methods are {list(DISCREPANCY_METHODS)}.")
    return float(qmc.discrepancy(_check_unit(unit), method=method))


def min_distance(unit: np.ndarray) -> float:
    """Smallest Euclidean distance between two points of a design in the unit cube.

    A small value means two nearly identical parameter sets: model runs spent
    twice on the same place. Maximin designs make this as large as possible.

    Parameters
    ----------
    unit
        Shape ``(n_points, d)`` with ``n_points >= 2``, values in ``[0, 1]``.

    Raises
    ------
    ValueError
        For values outside ``[0, 1]``, a shape that is not 2-D, or fewer than two points.

    Examples
    --------
    >>> min_distance(np.array([[0.0, 0.0], [0.3, 0.4], [1.0, 1.0]]))
    0.5
    """
    u = _check_unit(unit)
    if u.shape[0] < 2:
        raise ValueError(f"min_distance needs at least two points; got {u.shape[0]}.")
    return float(pdist(u).min())


def design_diagnostics(space: ParameterSpace, samples) -> dict:
    """Size, centred discrepancy and closest pair of a sample in parameter units.

    The sample is mapped to the unit cube with :meth:`ParameterSpace.to_unit`
    (log-scaled parameters in their logarithm), where the measures are
    computed, so all parameters count alike whatever their units.

    Parameters
    ----------
    space
        The parameter space the sample was drawn from.
    samples
        Shape ``(n_members, len(space))``, or the Dataset of :func:`sample_dataset`.

    Returns
    -------
    dict
        ``{"n": number of members, "centred_discrepancy": discrepancy(method="CD"),
        "min_distance": min_distance}``. Rows with a NaN (the default
        member: NaN stands for a basin's own value) have no place in the
        unit cube and are left out of the two measures.

    Raises
    ------
    ValueError
        If a value is outside its parameter's range (the message names it),
        or the sample has fewer than two members.
    """
    x = _as_samples(space, samples)
    # validated above; clipping only removes rounding in the log mapping
    unit = np.clip(space.to_unit(x), 0.0, 1.0)
    unit = unit[np.isfinite(unit).all(axis=1)]
    return {
        "n": int(x.shape[0]),
        "centred_discrepancy": discrepancy(unit, "CD"),
        "min_distance": min_distance(unit),
    }
