"""emucal.sampling: designs, their reproducibility, their structure and their diagnostics."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emucal import plotting, sampling  # noqa: E402
from emucal.parameters import Parameter, ParameterSpace  # noqa: E402


@pytest.fixture(scope="module")
def space():
    return ParameterSpace.tang2025()


def _cube(d: int) -> ParameterSpace:
    """d parameters with range [0, 1]: parameter values are unit-cube coordinates."""
    return ParameterSpace([Parameter(f"x{i}", 0.5, 0.0, 1.0) for i in range(d)])


def _unit(d: int, n: int, method: str, seed: int) -> np.ndarray:
    """A design of n points in the unit cube (no default row)."""
    return sampling.sample(_cube(d), n, method, seed=seed, include_default=False)


def _is_one_per_stratum(column: np.ndarray) -> bool:
    n = len(column)
    strata = np.floor(column * n).astype(int)
    return sorted(strata.tolist()) == list(range(n))


# ------------------------------------------------------------ shapes, bounds
@pytest.mark.parametrize("method", ["lhs", "random", "sobol"])
@pytest.mark.parametrize("include_default", [True, False])
def test_shape_bounds_and_default(space, method, include_default):
    n = 33 if include_default else 32  # a power-of-two Sobol' design either way
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Sobol' balance warning for these n
        x = sampling.sample(space, n, method, seed=7, include_default=include_default)
    assert x.shape == (n, len(space))
    space.validate(x)  # raises if any value is outside its range
    assert np.array_equal(x[0], space.defaults, equal_nan=True) == include_default
    # the design rows are not the default
    assert not np.any(np.all(np.isclose(x[1:], space.defaults), axis=1))


def test_unit_design_shape_and_range():
    for method in sampling.METHODS:
        u = _unit(5, 16, method, seed=3)
        assert u.shape == (16, 5)
        assert np.all((u >= 0) & (u < 1))


# --------------------------------------------------------- reproducibility
@pytest.mark.parametrize("method", ["lhs", "random", "sobol"])
def test_same_seed_same_numbers_other_seed_other_numbers(space, method):
    a = sampling.sample(space, 17, method, seed=11)
    b = sampling.sample(space, 17, method, seed=11)
    c = sampling.sample(space, 17, method, seed=12)
    assert np.array_equal(a, b, equal_nan=True)
    assert not np.allclose(a[1:], c[1:])
    assert np.array_equal(a[0], c[0], equal_nan=True)  # the default row does not depend on the seed


def test_methods_differ(space):
    lhs = sampling.sample(space, 17, "lhs", seed=0)
    rnd = sampling.sample(space, 17, "random", seed=0)
    sob = sampling.sample(space, 17, "sobol", seed=0)
    assert not np.allclose(lhs[1:], rnd[1:])
    assert not np.allclose(lhs[1:], sob[1:])


# ------------------------------------------------------------ LHS property
def test_lhs_one_point_per_stratum_in_unit_space():
    n = 40
    u = _unit(6, n, "lhs", seed=5)
    for j in range(u.shape[1]):
        assert _is_one_per_stratum(u[:, j]), f"column {j} is not a Latin hypercube"


@pytest.mark.parametrize("include_default", [True, False])
def test_lhs_property_after_mapping_to_parameters(space, include_default):
    n = 50
    x = sampling.sample(space, n, "lhs", seed=21, include_default=include_default)
    design = x[1:] if include_default else x
    u = space.to_unit(design)
    for j, name in enumerate(space.names):
        assert _is_one_per_stratum(u[:, j]), f"{name} is not one point per stratum"


def test_random_design_is_not_a_latin_hypercube():
    # guards the check above: it can fail (plain random points break it)
    u = _unit(6, 40, "random", seed=5)
    assert not all(_is_one_per_stratum(u[:, j]) for j in range(6))


def test_sobol_power_of_two_is_balanced():
    # 2**m scrambled Sobol' points: every one of the 2**m strata of each axis holds one point
    u = _unit(4, 64, "sobol", seed=9)
    for j in range(4):
        assert _is_one_per_stratum(u[:, j])


# -------------------------------------------------------------- log scale
def test_log_parameter_uniform_in_log_space():
    space = ParameterSpace.tang2025(scale="log")
    fff = space["fff"]
    x = sampling.sample(space, 2000, "random", seed=1, include_default=False)
    values = x[:, space.names.index("fff")]
    geometric_mid = math.sqrt(fff.lower * fff.upper)
    linear_mid = 0.5 * (fff.lower + fff.upper)
    below_geometric = np.mean(values < geometric_mid)
    above_linear = np.mean(values > linear_mid)
    assert below_geometric == pytest.approx(0.5, abs=0.04)
    # log-uniform: P(x > 10) = log(20/10) / log(20/0.001) = 0.07; linear sampling would give 0.5
    assert above_linear == pytest.approx(math.log(2) / math.log(2e4), abs=0.02)


def test_linear_parameter_uniform_in_linear_space(space):
    fmax = space["FMAX"]
    x = sampling.sample(space, 2000, "random", seed=1, include_default=False)
    values = x[:, space.names.index("FMAX")]
    assert np.mean(values < 0.5 * (fmax.lower + fmax.upper)) == pytest.approx(0.5, abs=0.04)


# ------------------------------------------------------------- discrepancy
def test_optimised_lhs_more_uniform_than_random():
    cube = _cube(16)
    seeds = range(4)
    lhs = [sampling.design_diagnostics(cube, _unit(16, 64, "lhs", s))["centred_discrepancy"]
           for s in seeds]
    rnd = [sampling.design_diagnostics(cube, _unit(16, 64, "random", s))["centred_discrepancy"]
           for s in seeds]
    from scipy.stats import qmc  # the plain Latin hypercube, before scipy's optimisation
    plain = [float(qmc.discrepancy(qmc.LatinHypercube(16, optimization=None, seed=s).random(64)))
             for s in seeds]
    assert np.mean(lhs) < np.mean(plain) < np.mean(rnd)
    assert all(a < b for a, b in zip(lhs, rnd))


def test_diagnostics_by_hand_and_against_scipy():
    from scipy.stats import qmc

    cube = _cube(2)
    # distances: (0,0)-(0.3,0.4) = 0.5; (0.3,0.4)-(1,1) = sqrt(0.49+0.36); (0,0)-(1,1) = sqrt(2)
    u = np.array([[0.0, 0.0], [0.3, 0.4], [1.0, 1.0]])
    diag = sampling.design_diagnostics(cube, u)
    assert diag["min_distance"] == pytest.approx(0.5)
    assert diag["centred_discrepancy"] == pytest.approx(qmc.discrepancy(u, method="CD"))
    u[1] = [0.6, 0.8]  # now (0.6,0.8)-(1,1) = sqrt(0.16+0.04) is the closest pair
    assert sampling.design_diagnostics(cube, u)["min_distance"] == pytest.approx(math.sqrt(0.2))
    # a grid of centres is more uniform than a clump
    centres = (np.arange(10) + 0.5) / 10
    grid = sampling.design_diagnostics(_cube(1), centres[:, None])["centred_discrepancy"]
    clump = sampling.design_diagnostics(_cube(1), np.linspace(0.0, 0.1, 10)[:, None])
    assert grid < clump["centred_discrepancy"]


def test_design_diagnostics(space):
    x = sampling.sample(space, 65, "sobol", seed=4)
    diag = sampling.design_diagnostics(space, x)
    assert set(diag) == {"n", "centred_discrepancy", "min_distance"}
    assert diag["n"] == 65
    u = np.clip(space.to_unit(x[1:]), 0, 1)  # the default row (zbedrock NaN) has no place
    assert diag["centred_discrepancy"] == pytest.approx(
        sampling.design_diagnostics(_cube(len(space)), u)["centred_discrepancy"])
    # the Dataset form, its columns in another order, gives the same numbers
    ds = space.to_dataset(x).isel(param=slice(None, None, -1))
    assert sampling.design_diagnostics(space, ds) == pytest.approx(diag)
    # duplicating a member makes the closest pair zero
    assert sampling.design_diagnostics(space, np.vstack([x, x[3]]))["min_distance"] == 0.0
    with pytest.raises(ValueError, match="at least two members"):
        sampling.design_diagnostics(space, x[:2])  # the default row and one design point


# ------------------------------------------------------------------ errors
def test_unknown_method_lists_valid_ones(space):
    with pytest.raises(ValueError, match=r"Unknown sampling method 'halton'.*'lhs', 'sobol', 'random'"):
        sampling.sample(space, 10, "halton", seed=0)


def test_bad_n(space):
    with pytest.raises(ValueError, match=r"n must be at least 2 with include_default.*got 1"):
        sampling.sample(space, 1, seed=0)
    with pytest.raises(ValueError, match=r"n must be at least 1; got 0"):
        sampling.sample(space, 0, seed=0, include_default=False)
    assert sampling.sample(space, 1, seed=0, include_default=False).shape == (1, len(space))
    assert np.array_equal(sampling.sample(space, 2, seed=0)[0], space.defaults, equal_nan=True)
    with pytest.raises(TypeError, match=r"n \(the number of parameter sets\) must be an integer"):
        sampling.sample(space, 10.0, seed=0)


def test_bad_seed(space):
    for seed in (None, 1.5, True):
        with pytest.raises(TypeError, match="seed must be a non-negative integer"):
            sampling.sample(space, 10, seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer; got -1"):
        sampling.sample(space, 10, seed=-1)


def test_sobol_warns_when_not_power_of_two(space):
    with pytest.warns(UserWarning, match=r"200 points is not a power of 2") as record:
        _unit(4, 200, "sobol", seed=0)
    # only our warning, not scipy's as well
    assert len([w for w in record if "balance" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match=r"n = 2\*\*m \+ 1 \(for example 129 or 257\)"):
        sampling.sample(space, 200, "sobol", seed=0)


def test_diagnostics_reject_values_outside_the_ranges(space):
    x = sampling.sample(space, 5, seed=0)
    x[2, space.names.index("fff")] = 50.0
    with pytest.raises(ValueError, match=r"fff = \S*50\S* \(row 2\) is outside its range"):
        sampling.design_diagnostics(space, x)


# -------------------------------------------------------------------- plot
def test_pair_plot_grid():
    space = ParameterSpace.tang2025(scale="log")
    x = sampling.sample(space, 30, seed=0)
    names = ["fff", "FMAX", "d_max", "e_ice"]
    fig = plotting.pair_plot(space, x, names=names)
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 16
        visible = [ax for ax in fig.axes if ax.axison]
        assert len(visible) == 10  # 4 histograms + 6 pairs
        bottom_labels = [ax.get_xlabel() for ax in fig.axes[-4:]]
        assert bottom_labels == ["fff (log)", "FMAX", "d_max (log)", "e_ice (log)"]
        # the default is drawn in red in the lower-left panel (e_ice against fff)
        lower_left = fig.axes[12]
        colours = [c.get_facecolor()[0][:3] for c in lower_left.collections]
        assert any(np.allclose(c, (1.0, 0.0, 0.0)) for c in colours)
    finally:
        plt.close(fig)


def test_pair_plot_without_default_and_bad_names(space):
    x = sampling.sample(space, 30, seed=0, include_default=False)
    fig = plotting.pair_plot(space, x, names=["fff", "FMAX"])
    try:
        assert len(fig.axes) == 4
        for ax in fig.axes:
            for c in ax.collections:
                assert not np.allclose(c.get_facecolor()[0][:3], (1.0, 0.0, 0.0))
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"Unknown parameters \['nope'\]"):
        plotting.pair_plot(space, x, names=["fff", "nope"])


def test_pair_plot_reads_a_sample_dataset_by_name(space):
    x = sampling.sample(space, 30, seed=0)
    names = ["fff", "FMAX"]
    fig_a = plotting.pair_plot(space, x, names=names)
    fig_b = plotting.pair_plot(space, space.to_dataset(x).isel(param=slice(None, None, -1)), names=names)
    try:
        for a, b in zip(fig_a.axes, fig_b.axes):
            for ca, cb in zip(a.collections, b.collections):
                np.testing.assert_array_equal(ca.get_offsets(), cb.get_offsets())
    finally:
        plt.close(fig_a)
        plt.close(fig_b)
