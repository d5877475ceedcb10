"""Perturbed-parameter ensembles (emucal.sensitivity): the file format, its checks, and one
output emulated against a function whose Sobol' indices are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emucal import ensemble, sampling, sensitivity
from emucal.parameters import Parameter, ParameterSpace

SPACE = ParameterSpace([Parameter(f"x{i}", None, -np.pi, np.pi, units="rad") for i in (1, 2, 3)])

# Analytic indices of the Ishigami function on [-pi, pi]^3 (Ishigami and Homma 1990; Saltelli
# et al. 2008, Global Sensitivity Analysis: The Primer, section 4.6): with a = 7, b = 0.1,
# V1 = (1 + b pi^4 / 5)^2 / 2, V2 = a^2 / 8, V3 = 0, V13 = b^2 pi^8 (1/18 - 1/50), V = V1 + V2 + V13.
A, B = 7.0, 0.1
V1, V2, V13 = 0.5 * (1 + B * np.pi ** 4 / 5) ** 2, A ** 2 / 8, B ** 2 * np.pi ** 8 * (1 / 18 - 1 / 50)
V = V1 + V2 + V13  # 13.845
S1 = {"x1": V1 / V, "x2": V2 / V, "x3": 0.0}  # 0.314, 0.442, 0
ST = {"x1": (V1 + V13) / V, "x2": V2 / V, "x3": V13 / V}  # 0.558, 0.442, 0.244: x1 > x2 > x3


def ishigami(x):
    return np.sin(x[..., 0]) + A * np.sin(x[..., 1]) ** 2 + B * x[..., 2] ** 4 * np.sin(x[..., 0])


def ishigami_ppe(n: int = 300, seed: int = 0, linear: bool = False) -> xr.Dataset:
    """``n`` Latin-hypercube runs of the Ishigami function (output ``y``) as a PPE.

    ``linear`` adds a second output ``z = x3 + 0.3 x1``, whose total indices
    are 1/1.09 = 0.917 (x3), 0.09/1.09 = 0.083 (x1) and 0 (x2): x3 > x1 > x2.
    """
    x = sampling.sample(SPACE, n, "lhs", seed=seed, include_default=False)
    outputs = {"y": ishigami(x), **({"z": x[:, 2] + 0.3 * x[:, 0]} if linear else {})}
    return sensitivity.ensemble_from_tables(pd.DataFrame(x, columns=SPACE.names),
                                            pd.DataFrame(outputs), ranges=SPACE)


@pytest.fixture(scope="module")
def ppe(tmp_path_factory):
    """300 Latin-hypercube runs of the Ishigami function, written as a PPE and read back."""
    ds = ishigami_ppe()
    path = tmp_path_factory.mktemp("ppe") / "ishigami.nc"
    ds.to_netcdf(path)
    return xr.load_dataset(path)


@pytest.fixture(scope="module")
def fitted(ppe):
    return sensitivity.response(ppe, "y")


def test_a_ppe_file_keeps_its_parameter_space(ppe):
    assert sensitivity.check_ensemble(ppe) == ["y"]
    space = ParameterSpace.from_dataset(ppe)
    assert space.names == SPACE.names and space["x2"].units == "rad" and not space.log.any()
    np.testing.assert_allclose([space.lower, space.upper], [SPACE.lower, SPACE.upper])


def test_emulated_indices_rank_exactly_and_cover_the_analytic_values(fitted):
    ind = fitted.indices
    assert list(ind.param.values) == ["x1", "x2", "x3"]  # ranked by ST, as the analytic values
    for name, truth in (("S1", S1), ("ST", ST)):
        for p, value in truth.items():
            lo, hi = (float(ind[f"{name}_{e}"].sel(param=p)) for e in ("lo", "hi"))
            assert lo <= value <= hi, f"{name}({p}) = {value:.3f} is outside [{lo:.3f}, {hi:.3f}]"
            assert hi - lo < 0.15  # an interval that says something
    assert fitted.skill["r2"].min() > 0.9 and ind.attrs["cv_r2"] > 0.9
    assert fitted.runs["y"].sizes["member"] == 300


def test_curves_and_map_follow_the_function(fitted):
    curves = fitted.curves({"x2": 1.0})  # x1 = x3 = 0 (the centre), x2 = 1
    x = np.tile([0.0, 1.0, 0.0], (3, curves.sizes["step"], 1))
    for k in range(3):
        x[k, :, k] = curves.value[k]
    truth = ishigami(x)  # f ranges over 7 here
    assert float(np.abs(curves["mean"] - truth).max()) < 1.0
    assert float((np.abs(curves["mean"] - truth) < 3 * curves["sd"]).mean()) > 0.9
    assert abs(float(curves.point_mean) - ishigami(np.array([0.0, 1.0, 0.0]))) < 3 * float(curves.point_sd)
    grid = fitted.map(("x1", "x3"), point={"x2": 0.0}, n=21)
    assert grid["mean"].dims == ("x1", "x3")
    xx = np.stack(np.broadcast_arrays(grid.x1.values[:, None], 0.0, grid.x3.values[None]), -1)
    assert float(np.sqrt(((grid["mean"] - ishigami(xx)) ** 2).mean())) < 1.0  # f spans +-10.7
    assert fitted.map(n=5)["mean"].dims == ("x1", "x2")  # default: the two largest ST


def _refused(ds, match):
    with pytest.raises(ValueError, match=match):
        sensitivity.check_ensemble(ds)


def test_what_is_not_an_ensemble_is_named(ppe):
    _refused(ppe.drop_vars("params"), r"no variable 'params\(member, param\)'")
    _refused(ppe.rename(member="run"), r"params has dimensions \('run', 'param'\).*'member'")
    _refused(ppe.drop_vars("upper"), "params has no 'upper' coordinate along param")
    _refused(ppe.drop_vars("y"), "no output")
    bad = ppe.copy(deep=True)
    bad["params"][3, 0] = 4.0
    _refused(bad, r"x1 = 4 \(row 3\) is outside its range")


def test_outputs_with_nan_no_variance_or_too_few_members_are_named(ppe):
    bad = ppe.copy(deep=True)
    bad["y"][:5] = np.nan
    bad["flat"] = ("member", np.ones(300))
    bad["by_basin"] = (("member", "basin"), np.stack([ppe.y.values, np.zeros(300)], 1))
    bad = bad.assign_coords(basin=["a", "b"])
    with pytest.raises(ValueError) as err:
        sensitivity.check_ensemble(bad)
    message = str(err.value)
    assert "y is NaN in 5 of 300 members" in message
    assert "flat does not vary across members in 1 of 1 slice(s)" in message
    assert "by_basin does not vary across members in 1 of 2 slice(s) (first: {'basin': 'b'})" in message
    _refused(ppe.isel(member=slice(20)), r"20 members for 3 parameters.* at least 10 per "
                                         r"parameter, 30 members")
    with pytest.raises(ValueError, match=r"besides member: choose one value of each with select"):
        sensitivity.response(bad, "by_basin")
    with pytest.raises(ValueError, match="'z' is not an output"):
        sensitivity.response(ppe, "z")


def test_tables_need_matching_rows_and_every_range():
    params = pd.DataFrame({"a": [0.0, 1.0], "b": [2.0, 3.0]})
    with pytest.raises(ValueError, match="same rows"):
        sensitivity.ensemble_from_tables(params, pd.DataFrame({"y": [1.0]}))
    with pytest.raises(ValueError, match=r"no \(lower, upper\) for \['b'\]"):
        sensitivity.ensemble_from_tables(params, pd.DataFrame({"y": [1.0, 2.0]}), {"a": (0, 1)})
    ds = sensitivity.ensemble_from_tables(params, pd.DataFrame({"y": [1.0, 2.0]}))
    assert list(ds.upper.values) == [1.0, 3.0]  # default: the range of the runs


def test_run_ensemble_output_is_an_ensemble(toy):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    ens = ensemble.run_ensemble(sampling.sample(space, 7, seed=3), forcing, attrs,
                                periods={"calibration": (2002, 2003)})
    # its only fault: 7 runs are too few to emulate 16 parameters
    with pytest.raises(ValueError, match=r"emulated:\n- 7 members for 16 parameters[^\n]*$"):
        sensitivity.check_ensemble(ens)
    back = ParameterSpace.from_dataset(ens)
    assert back.names == space.names and [p.units for p in back] == [p.units for p in space]
    np.testing.assert_array_equal([back.lower, back.upper, back.defaults, back.log],
                                  [space.lower, space.upper, space.defaults, space.log])
