"""Skill scores: of simulated against observed streamflow (KGE, KGE', normKGE, NSE),
and of an emulator's predictions against model runs (R², RMSE, coverage).

All functions compare ``sim`` with ``obs`` along one dimension (time) and
work on any number of leading dimensions at once (``member x basin x time``
gives ``member x basin`` scores). They take NumPy arrays (time on the last
axis) or xarray DataArrays (time along ``dim``). Days where the observation
(or the simulation) is NaN are left out, as in the CAMELS flow records, where
missing days are common; a series with an infinite value (a run that blew up)
has no score (NaN), never the score of its other days.

References
----------
Nash, J. E. and Sutcliffe, J. V. (1970), River flow forecasting through
conceptual models part I, J. Hydrol. 10, 282-290.
Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009),
Decomposition of the mean squared error and NSE performance criteria,
J. Hydrol. 377, 80-91, doi:10.1016/j.jhydrol.2009.08.003.
Kling, H., Fuchs, M. and Paulin, M. (2012), Runoff conditions in the upper
Danube basin under an ensemble of climate change scenarios, J. Hydrol.
424-425, 264-277, doi:10.1016/j.jhydrol.2012.01.011.
Tang, G., Wood, A. W. and Swenson, S. (2025), Water Resour. Res. 61,
e2024WR039525 (normKGE as the emulators' target).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "kge",
    "kge_components",
    "kge_prime",
    "log_nse",
    "from_norm",
    "norm_kge",
    "nse",
    "percent_bias",
    "r2_score",
    "rmse",
    "coverage",
    "to_norm",
    "PERIODS",
    "water_year",
    "water_year_window",
    "water_years",
]


def _masked(sim: np.ndarray, obs: np.ndarray):
    sim, obs = np.broadcast_arrays(np.asarray(sim, dtype=float), np.asarray(obs, dtype=float))
    valid = np.isfinite(sim) & np.isfinite(obs)
    n = np.where((np.isinf(sim) | np.isinf(obs)).any(axis=-1), 0, valid.sum(axis=-1))
    return np.where(valid, sim, 0.0), np.where(valid, obs, 0.0), valid, n


def _moments(sim, obs):
    s, o, valid, n = _masked(sim, obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_s = s.sum(-1) / n
        mu_o = o.sum(-1) / n
        ds = np.where(valid, s - mu_s[..., None], 0.0)
        do = np.where(valid, o - mu_o[..., None], 0.0)
        sd_s = np.sqrt((ds**2).sum(-1) / n)
        sd_o = np.sqrt((do**2).sum(-1) / n)
        r = (ds * do).sum(-1) / np.sqrt((ds**2).sum(-1) * (do**2).sum(-1))
    too_few = n < 2
    return [np.where(too_few, np.nan, x) for x in (mu_s, mu_o, sd_s, sd_o, r)]


def _blocked(func, sim, obs, n_out: int, block: int = 2_000_000):
    """Apply a kernel over (leading dims x time) in blocks, to bound memory.

    The kernels make several float64 temporaries of the input's size; an
    ensemble of 300 members x 19 basins x 20 years would need gigabytes at
    once. Working on blocks of about two million values keeps that near
    100 MB, and the inputs are never broadcast or converted as a whole.
    """
    sim, obs = np.asarray(sim), np.asarray(obs)
    shape = np.broadcast_shapes(sim.shape, obs.shape)
    nd = len(shape)
    sim = sim.reshape((1,) * (nd - sim.ndim) + sim.shape)
    obs = obs.reshape((1,) * (nd - obs.ndim) + obs.shape)
    if nd > 2 and np.prod(shape) > block:
        parts = [_blocked(func, sim[i if sim.shape[0] > 1 else 0],
                          obs[i if obs.shape[0] > 1 else 0], n_out, block)
                 for i in range(shape[0])]
        if n_out == 1:
            return np.stack(parts)
        return tuple(np.stack([p[k] for p in parts]) for k in range(n_out))
    if nd == 1:
        return func(sim.astype(float), obs.astype(float))
    lead, n_time = shape[:-1], shape[-1]
    sim2 = np.broadcast_to(sim, shape).reshape(-1, n_time)
    obs2 = np.broadcast_to(obs, shape).reshape(-1, n_time)
    rows = max(1, block // max(n_time, 1))
    parts = [func(sim2[i:i + rows].astype(float), obs2[i:i + rows].astype(float))
             for i in range(0, sim2.shape[0], rows)]
    if n_out == 1:
        return np.concatenate(parts).reshape(lead)
    return tuple(np.concatenate([p[k] for p in parts]).reshape(lead) for k in range(n_out))


def _apply(func, sim, obs, dim: str, n_out: int = 1):
    """Run a NumPy kernel on arrays or DataArrays (core dimension ``dim``)."""
    if isinstance(sim, xr.DataArray) or isinstance(obs, xr.DataArray):
        sim = sim if isinstance(sim, xr.DataArray) else xr.DataArray(sim, dims=obs.dims)
        obs = obs if isinstance(obs, xr.DataArray) else xr.DataArray(obs, dims=sim.dims)
        if dim not in sim.dims or dim not in obs.dims:
            raise ValueError(f"Both inputs need the dimension {dim!r}; got {sim.dims} and {obs.dims}.")
        return xr.apply_ufunc(
            lambda s, o: _blocked(func, s, o, n_out), sim, obs,
            input_core_dims=[[dim], [dim]],
            output_core_dims=[[] for _ in range(n_out)] if n_out > 1 else [[]],
            join="inner",
        )
    return _blocked(func, sim, obs, n_out)


def _kge_parts(sim, obs):
    mu_s, mu_o, sd_s, sd_o, r = _moments(sim, obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r, sd_s / sd_o, mu_s / mu_o, (sd_s / mu_s) / (sd_o / mu_o)


def kge_components(sim, obs, dim: str = "time", *, modified: bool = False):
    """Return the three components of KGE (or KGE'): ``r``, variability and bias ratios.

    Parameters
    ----------
    sim, obs
        Simulated and observed flow, time along ``dim`` (DataArray) or the last
        axis (array).
    modified
        If True, the variability term is the ratio of coefficients of variation
        ``gamma = (sd_s/mu_s)/(sd_o/mu_o)`` (Kling et al. 2012); otherwise the
        ratio of standard deviations ``alpha = sd_s/sd_o`` (Gupta et al. 2009).

    Returns
    -------
    r, variability, beta
        Pearson correlation, ``alpha`` or ``gamma``, and ``beta = mu_s/mu_o``.
    """

    def kernel(s, o):
        r, alpha, beta, gamma = _kge_parts(s, o)
        return r, (gamma if modified else alpha), beta

    return _apply(kernel, sim, obs, dim, n_out=3)


def kge(sim, obs, dim: str = "time"):
    """Kling-Gupta efficiency (Gupta et al. 2009), NaN-aware.

    ``KGE = 1 - sqrt((r - 1)**2 + (alpha - 1)**2 + (beta - 1)**2)`` with
    ``alpha = sd_s/sd_o`` and ``beta = mu_s/mu_o``. 1 is perfect; the mean of
    the observations as a forecast scores ``1 - sqrt(2) = -0.41``.
    """

    def kernel(s, o):
        r, alpha, beta, _ = _kge_parts(s, o)
        return 1.0 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)

    return _apply(kernel, sim, obs, dim)


def kge_prime(sim, obs, dim: str = "time"):
    """Modified Kling-Gupta efficiency KGE' (Kling et al. 2012), NaN-aware.

    As :func:`kge`, but with the ratio of coefficients of variation
    ``gamma = (sd_s/mu_s)/(sd_o/mu_o)`` in place of ``alpha``, so that the bias
    and variability terms do not overlap. Tang et al. (2025) report KGE'.
    """

    def kernel(s, o):
        r, _, beta, gamma = _kge_parts(s, o)
        return 1.0 - np.sqrt((r - 1) ** 2 + (gamma - 1) ** 2 + (beta - 1) ** 2)

    return _apply(kernel, sim, obs, dim)


def norm_kge(sim, obs, dim: str = "time", *, modified: bool = True):
    """Normalised KGE, ``KGE / (2 - KGE)``, the emulators' target in Tang et al. (2025).

    Maps KGE from (-inf, 1] onto (-1, 1]: 1 stays 1 and 0 stays 0, while very
    poor runs are squeezed towards -1, so that a few terrible parameter sets do
    not dominate an emulator's loss. Uses KGE' unless ``modified=False``.
    """
    return to_norm((kge_prime if modified else kge)(sim, obs, dim))


def to_norm(kge):
    """KGE (or KGE') to normalised KGE, ``KGE / (2 - KGE)``; see :func:`norm_kge`.

    >>> float(to_norm(0.5)), float(to_norm(1.0))
    (0.3333333333333333, 1.0)
    """
    return kge / (2.0 - kge)


def from_norm(norm):
    """Normalised KGE back to KGE, ``2 n / (1 + n)``: the inverse of :func:`to_norm`.

    >>> float(from_norm(to_norm(-3.0)))
    -3.0
    """
    return 2.0 * norm / (1.0 + norm)


def nse(sim, obs, dim: str = "time"):
    """Nash-Sutcliffe efficiency (Nash and Sutcliffe 1970), NaN-aware.

    ``NSE = 1 - sum((s - o)**2) / sum((o - mean(o))**2)`` over the days with both values.
    """

    def kernel(s, o):
        s, o, valid, n = _masked(s, o)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu_o = o.sum(-1) / n
            err = ((s - o) ** 2).sum(-1)
            var = (np.where(valid, o - mu_o[..., None], 0.0) ** 2).sum(-1)
            return np.where(n < 2, np.nan, 1.0 - err / var)

    return _apply(kernel, sim, obs, dim)


def log_nse(sim, obs, dim: str = "time", *, epsilon: float | None = None):
    """NSE of log-transformed flows, which weights low flows.

    ``epsilon`` is added before the logarithm so that zero flow is allowed;
    by default one hundredth of the mean observed flow (Pushpalatha et al. 2012,
    J. Hydrol. 420-421, 171-182).
    """

    def kernel(s, o):
        eps = epsilon
        if eps is None:
            eps = 0.01 * np.nanmean(np.where(np.isfinite(s), o, np.nan), axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return nse(np.log(s + eps), np.log(o + eps))

    return _apply(kernel, sim, obs, dim)


def percent_bias(sim, obs, dim: str = "time"):
    """Percent bias ``100 * sum(s - o) / sum(o)``; positive when the model makes too much flow."""

    def kernel(s, o):
        s, o, _, n = _masked(s, o)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n < 1, np.nan, 100.0 * (s - o).sum(-1) / o.sum(-1))

    return _apply(kernel, sim, obs, dim)


def water_year(time) -> np.ndarray:
    """US water year of each date: 1 October of year Y-1 to 30 September of year Y is Y."""
    index = pd.DatetimeIndex(np.asarray(time))
    return (index.year + (index.month >= 10)).to_numpy()


#: The book's evaluation periods, in water years ``(first, last)``: WY1994 spins
#: the model up, WY1995-2007 calibrate it and WY2008-2013 validate it. Every
#: ``period`` argument of emucal takes one of these names or a pair of water
#: years, and results label their ``period`` dimension with the names.
PERIODS = {"calibration": (1995, 2007), "validation": (2008, 2013)}


def water_years(period) -> tuple[int, int]:
    """The ``(first, last)`` water years of ``period``: a name in :data:`PERIODS` or a pair.

    >>> water_years("validation")
    (2008, 2013)
    >>> water_years((2001, 2005))
    (2001, 2005)
    """
    if isinstance(period, str):
        if period not in PERIODS:
            raise ValueError(f"Unknown period {period!r}: use one of {list(PERIODS)} or a pair "
                             "of water years such as (1995, 2007).")
        return PERIODS[period]
    try:
        first, last = (_year(year) for year in period)
    except (TypeError, ValueError):
        raise ValueError(f"A period is a name in {list(PERIODS)} or a pair of water years "
                         f"(first, last) given as whole numbers, got {period!r}.") from None
    if first > last:
        raise ValueError(f"first water year {first} is after last {last}.")
    return first, last


def _year(value) -> int:
    """A water year given as a whole number; booleans, fractions and strings are refused."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or float(value) != int(value):
        raise ValueError(value)
    return int(value)


def water_year_window(time, period) -> np.ndarray:
    """Boolean mask of the dates of ``time`` in ``period`` (water years, inclusive).

    ``period`` is a name in :data:`PERIODS` or a pair ``(first, last)``. Use it
    to leave out a spin-up year and to split calibration from validation, e.g.
    ``ds.sel(time=water_year_window(ds.time, "calibration"))``. A period that
    holds none of the dates, or that reaches water years the dates do not
    cover, is refused with the years ``time`` covers: a score labelled with
    years it was not computed on would be a wrong result.
    """
    first, last = water_years(period)
    wy = water_year(time)
    window = (wy >= first) & (wy <= last)
    span = f"water years {wy.min()}-{wy.max()}" if wy.size else "no dates"
    name = f"Period {period!r}: w" if isinstance(period, str) else "W"
    if not window.any():
        raise ValueError(f"{name}ater years {first}-{last} hold none of the dates, which cover "
                         f"{span}.")
    missing = sorted(set(range(first, last + 1)) - set(wy[window].tolist()))
    if missing:
        raise ValueError(f"{name}ater years {first}-{last} reach beyond the dates, which cover "
                         f"{span}; no dates in water year(s) {_ranges(missing)}. Pass a period "
                         "inside the record, e.g. a pair (first, last).")
    return window


def _ranges(years) -> str:
    """``[1995, 1996, 1997, 2001]`` -> ``'1995-1997, 2001'``."""
    runs = []
    for year in years:
        if runs and year == runs[-1][1] + 1:
            runs[-1][1] = year
        else:
            runs.append([year, year])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# ------------------------------------------------------ scores of emulators
def _rows(y_true, y_pred, axis: int):
    """Both arrays with ``axis`` moved last and the rest flattened: ``(rows, n)``."""
    y_true, y_pred = np.broadcast_arrays(np.asarray(y_true, float), np.asarray(y_pred, float))
    y_true, y_pred = np.moveaxis(y_true, axis, -1), np.moveaxis(y_pred, axis, -1)
    return y_true.reshape(-1, y_true.shape[-1]), y_pred.reshape(-1, y_pred.shape[-1]), y_true.shape[:-1]


def r2_score(y_true, y_pred, axis: int = -1):
    """Coefficient of determination ``1 - SSE/SST`` of predictions, along ``axis``.

    scikit-learn's :func:`sklearn.metrics.r2_score`, one score per row: an
    emulator's predictions of ``(basin, member)`` give one R² per basin. A float
    for 1-D input.
    """
    from sklearn.metrics import r2_score as sk_r2

    t, p, lead = _rows(y_true, y_pred, axis)
    scores = sk_r2(t.T, p.T, multioutput="raw_values", force_finite=False)
    return float(scores[0]) if not lead else scores.reshape(lead)


def rmse(y_true, y_pred, axis: int = -1):
    """Root-mean-square error of predictions along ``axis`` (scikit-learn's, one per row)."""
    from sklearn.metrics import root_mean_squared_error

    t, p, lead = _rows(y_true, y_pred, axis)
    scores = root_mean_squared_error(t.T, p.T, multioutput="raw_values")
    return float(scores[0]) if not lead else scores.reshape(lead)


def coverage(y_true, mean, std, level: float = 0.9, axis: int = -1):
    """Share of ``y_true`` inside the central ``level`` interval of a normal prediction.

    For an emulator whose uncertainty is honest the share equals ``level``;
    lower means the intervals are too narrow (over-confident).
    """
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1; got {level}.")
    half = norm.ppf(0.5 + level / 2) * np.asarray(std, float)
    inside = np.abs(np.asarray(y_true, float) - np.asarray(mean, float)) <= half
    return inside.mean(axis)
