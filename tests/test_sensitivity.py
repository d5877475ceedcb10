"""Sobol' indices (emucal.sensitivity): the estimators on a function with known
indices, the shapes and errors, an emulator's indices, the model's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from emucal import emulators, sensitivity
from emucal.parameters import Parameter, ParameterSpace


def _space(d: int, lower: float = 0.0, upper: float = 1.0) -> ParameterSpace:
    return ParameterSpace([Parameter(f"x{i}", None, lower, upper) for i in range(d)])


def ishigami(x, a=7.0, b=0.1):
    return np.sin(x[..., 0]) + a * np.sin(x[..., 1]) ** 2 + b * x[..., 2] ** 4 * np.sin(x[..., 0])


def test_indices_of_the_ishigami_function_match_the_analytic_values():
    # Ishigami and Homma (1990) on [-pi, pi]^3, a = 7, b = 0.1: V = a^2/8 + b pi^4/5
    # + b^2 pi^8/18 + 1/2; V1 = (1 + b pi^4/5)^2 / 2, V2 = a^2/8, V13 = b^2 pi^8 (1/18 - 1/50)
    a, b = 7.0, 0.1
    v1, v2 = 0.5 * (1 + b * np.pi ** 4 / 5) ** 2, a ** 2 / 8
    v13 = b ** 2 * np.pi ** 8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    space = _space(3, -np.pi, np.pi)
    design = sensitivity.sobol_design(space, 4096, seed=1)
    y = ishigami(space.from_unit(design))
    ind = sensitivity.sobol_indices(y, space, seed=1)
    np.testing.assert_allclose(ind.S1.values, [v1 / v, v2 / v, 0.0], atol=0.03)
    np.testing.assert_allclose(ind.ST.values, [(v1 + v13) / v, v2 / v, v13 / v], atol=0.03)
    # the bootstrap half-widths are positive and cover the truth's scale of error
    assert (ind.ST_conf > 0).all() and (ind.ST_conf < 0.1).all()


def test_design_shape_seed_and_base_size():
    space = _space(4)
    d1 = sensitivity.sobol_design(space, 64, seed=0)
    assert d1.shape == (64 * (4 + 2), 4) and d1.min() >= 0 and d1.max() <= 1
    np.testing.assert_array_equal(d1, sensitivity.sobol_design(space, 64, seed=0))
    assert not np.array_equal(d1, sensitivity.sobol_design(space, 64, seed=1))
    with pytest.raises(ValueError, match="power of 2"):
        sensitivity.sobol_design(space, 100)


def test_leading_dimensions_are_kept_and_constant_outputs_give_nan():
    space = _space(3)
    design = sensitivity.sobol_design(space, 32)
    y = np.stack([design[:, 0], np.ones(len(design)), design[:, 1] * 2])
    da = xr.DataArray(y, dims=("basin", "member"), coords={"basin": ["a", "b", "c"]})
    ind = sensitivity.sobol_indices(da, space)
    assert ind.ST.dims == ("basin", "param") and list(ind.basin.values) == ["a", "b", "c"]
    assert np.isnan(ind.ST.sel(basin="b")).all()
    # an output of x0 alone: x0 explains all of it
    assert ind.ST.sel(basin="a", param="x0") > 0.9 and ind.ST.sel(basin="a", param="x2") < 0.05
    assert sensitivity.top_parameters(ind.ST.sel(basin="c"), 1) == ["x1"]


def test_bad_outputs_are_refused_with_a_reason():
    space = _space(3)
    design = sensitivity.sobol_design(space, 8)
    with pytest.raises(ValueError, match=r"n \* \(d \+ 2\)"):
        sensitivity.sobol_indices(np.zeros(len(design) + 1), space)
    y = design[:, 0].copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sensitivity.sobol_indices(y, space)
    with pytest.raises(ValueError, match="between 1 and 3"):
        sensitivity.top_parameters(sensitivity.sobol_indices(design[:, 0], space).ST, 4)


def test_emulator_indices_find_the_parameter_that_matters_with_draws():
    rng = np.random.default_rng(0)
    space = _space(4)
    x = rng.uniform(size=(2, 60, 4))
    # basin 0 depends on x0, basin 1 on x2
    y = np.stack([np.sin(3 * x[0, :, 0]), np.sin(3 * x[1, :, 2])])
    gp = emulators.GPEmulator(seed=0).fit(x, y)
    ind = sensitivity.emulator_indices(gp, space, 128, n_draws=5, n_draw_base=16,
                                       basins=["b0", "b1"], seed=0)
    assert sensitivity.top_parameters(ind.ST.sel(basin="b0"), 1) == ["x0"]
    assert sensitivity.top_parameters(ind.ST.sel(basin="b1"), 1) == ["x2"]
    assert ind.ST_draws.dims == ("draw", "basin", "param") and ind.sizes["draw"] == 5
    assert float(ind.ST.sel(basin="b0", param="x0")) > 0.8
    with pytest.raises(ValueError, match="batched over basins"):
        sensitivity.emulator_indices(emulators.GPEmulator().fit(x[0], y[0]), space, 8)
    # a space of other parameters than the emulator's, or basins of another count
    with pytest.raises(ValueError, match="fitted on 4 parameters, the space has 3"):
        sensitivity.emulator_indices(gp, _space(3), 8)
    with pytest.raises(ValueError, match="basins has 3 entries, the emulator 2"):
        sensitivity.emulator_indices(gp, space, 8, basins=["a", "b", "c"])


def test_model_outputs_score_and_summarise_every_run(toy):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    design = sensitivity.sobol_design(space, 2, seed=0)
    out = sensitivity.model_outputs(space.from_unit(design), forcing, attrs, period=(2002, 2004),
                                    progress=False)
    assert set(out.data_vars) == {"norm_kge", *sensitivity.SIGNATURES}
    assert out["norm_kge"].dims == ("basin", "member") and out.sizes["member"] == len(design)
    assert ((out["norm_kge"] >= -1) & (out["norm_kge"] <= 1)).all()
    assert (out["q_mean"] > 0).all() and ((out["baseflow_index"] >= 0) & (out["baseflow_index"] <= 1)).all()
    # the parameters matter: the runs differ
    assert float(out["q_mean"].std("member").min()) > 0


def test_outputs_of_another_space_design_are_refused():
    other = sensitivity.sobol_design(_space(4), 8)  # 8 * 6 = 48 rows
    # 48 = 12 * (2 + 2): the length divides, but 12 is no base size
    with pytest.raises(ValueError, match=r"d = 2 parameters.*got 48 \(n = 12\)"):
        sensitivity.sobol_indices(other[:, 0], _space(2))
    space = _space(3)
    ind = sensitivity.sobol_indices(sensitivity.sobol_design(space, 8)[:, 0], space)
    assert ind.attrs["n_base"] == 8


def test_a_base_size_that_is_not_a_power_of_two_is_refused():
    space = _space(3)
    y = np.random.default_rng(0).uniform(size=12 * (3 + 2))
    with pytest.raises(ValueError, match=r"power of 2.*n = 12\).*40 \(n = 8\) or 80 \(n = 16\)"):
        sensitivity.sobol_indices(y, space)


def test_infinite_outputs_are_refused_with_where():
    space = _space(3)
    y = np.stack([sensitivity.sobol_design(space, 8)[:, 0]] * 2)
    y[1, 5], y[1, 7] = np.inf, -np.inf
    where = r"2 infinite value\(s\) \(at index \[\(1, 5\), \(1, 7\)\]"
    with pytest.raises(ValueError, match=where):
        sensitivity.sobol_indices(y, space)
