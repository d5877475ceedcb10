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
    number of parameters. The design is then improved with scipy's
    ``"random-cd"`` optimisation, which swaps coordinates between points
    (keeping the one-point-per-stratum property) while that lowers the
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

How even is a design? :func:`design_diagnostics` reports how far the points
are from uniform (Hickernell's centred L2 discrepancy; lower is more uniform)
and the closest pair of points (larger is better: no near-duplicates).
:func:`emucal.plotting.pair_plot` shows the design as scatter plots of pairs of parameters.

:func:`sample` takes an explicit integer ``seed``: the same seed gives the
same design, so a notebook reproduces its ensemble exactly.

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

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import qmc

from .parameters import ParameterSpace

__all__ = ["METHODS", "design_diagnostics", "sample"]

#: The designs :func:`sample` can draw.
METHODS = ("lhs", "sobol", "random")

# scipy 1.15 renamed the qmc engines' ``seed`` argument to ``rng``.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(qmc.LatinHypercube).parameters else "seed"


def _check_count(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}; got {value}.")
    return int(value)


def _design(d: int, n: int, method: str, seed: int, *, default_added: bool) -> np.ndarray:
    """``n`` points of the design ``method`` in the unit cube ``[0, 1)^d``."""
    if method == "random":
        return np.random.default_rng(seed).random((n, d))
    if method == "lhs":
        return qmc.LatinHypercube(d, scramble=True, optimization="random-cd",
                                  **{_RNG_KEYWORD: seed}).random(n)
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
        UserWarning, stacklevel=3)
    return points


def sample(
    space: ParameterSpace,
    n: int,
    method: str = "lhs",
    *,
    seed: int,
    include_default: bool = True,
) -> np.ndarray:
    """Draw ``n`` parameter sets from ``space``, in parameter units.

    The design is drawn in the unit cube and mapped with
    :meth:`ParameterSpace.from_unit`, so log-scaled parameters are uniform in
    their logarithm.

    Parameters
    ----------
    space
        The parameters, their ranges and scales.
    n
        Number of parameter sets (rows), the default member included.
    method
        ``"lhs"`` (Latin hypercube, McKay et al. 1979, optimised with scipy's
        ``"random-cd"``), ``"sobol"`` (scrambled Sobol', Sobol' 1967, Owen
        1998) or ``"random"``.
    seed
        Seed of the random numbers (a non-negative integer); the same seed
        gives the same sample.
    include_default
        If True (default), row 0 is the CTSM default (``space.defaults``) and
        rows 1 to ``n - 1`` are a design of ``n - 1`` points, as in Tang et
        al. (2025), whose 200-member initial ensemble held the default
        parameter set. For ``"sobol"`` choose ``n = 2**m + 1`` then.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, len(space))``, every value within its parameter's range.

    Raises
    ------
    ValueError
        For an unknown ``method`` (the message lists the valid ones), a
        negative ``seed``, or ``n < 1`` (``n < 2`` with ``include_default``:
        there would be no design left).
    TypeError
        For a ``seed`` or ``n`` that is not an integer.

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
    if method not in METHODS:
        raise ValueError(f"Unknown sampling method {method!r}; valid methods are {list(METHODS)}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer so that the design can be "
                        f"reproduced; got {seed!r}.")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed}.")
    minimum = 2 if include_default else 1
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n < minimum:
        reason = (" with include_default=True (row 0 is the default, the rest the design)"
                  if include_default else "")
        raise ValueError(f"n must be at least {minimum}{reason}; got {n}.")
    n = _check_count(n, "n (the number of parameter sets)", minimum)
    unit = _design(len(space), n - 1 if include_default else n, method, int(seed),
                   default_added=include_default)
    values = space.from_unit(unit)
    if include_default:
        values = np.vstack([space.defaults[None, :], values])
    return values


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
        Shape ``(n_members, len(space))``, or the Dataset of
        :meth:`ParameterSpace.to_dataset` (read by parameter name).

    Returns
    -------
    dict
        ``"n"``, the number of members; ``"centred_discrepancy"``,
        Hickernell's (1998) centred L2 discrepancy (``scipy.stats.qmc``;
        lower is more uniform; compare designs of the same size only); and
        ``"min_distance"``, the smallest Euclidean distance between two points
        (small: model runs spent twice on nearly the same place). Rows with a
        NaN (the default member: NaN stands for a basin's own value) have no
        place in the unit cube and are left out of the two measures.

    Raises
    ------
    ValueError
        If a value is outside its parameter's range (the message names it),
        or the sample has fewer than two members with a place in the cube.
    """
    x = np.atleast_2d(space.validate(samples))
    # validated above; clipping only removes rounding in the log mapping
    unit = np.clip(space.to_unit(x), 0.0, 1.0)
    unit = unit[np.isfinite(unit).all(axis=1)]
    if unit.shape[0] < 2:
        raise ValueError(f"design_diagnostics needs at least two members without NaN; "
                         f"got {unit.shape[0]}.")
    return {
        "n": int(x.shape[0]),
        "centred_discrepancy": float(qmc.discrepancy(unit, method="CD")),
        "min_distance": float(pdist(unit).min()),
    }
