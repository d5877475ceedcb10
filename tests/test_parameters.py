"""emucal.parameters: the Tang et al. (2025) space, unit-cube mapping, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emucal.parameters import Parameter, ParameterSpace

TANG = {  # name: (default, lower, upper) from CTSM_CAMELS_calibparam_2410.csv
    "watsat_sf": (1, 0.1, 10), "fff": (0.5, 0.001, 20), "medlynslope": (4.840379695, 0.1, 20),
    "hksat_sf": (1, 0.1, 10), "accum_factor": (0.1, 0.01, 1), "FMAX": (0.381669399, 0.1, 0.9),
    "om_frac_sf": (1, 0.1, 10), "e_ice": (6, 0.01, 20), "zbedrock": (None, 0.1, 10),
    "n_melt_coef": (200, 5, 800), "d_max": (15, 0.1, 500),
    "precip_repartition_nonglc_all_rain_t": (2, 0, 4), "interception_fraction": (1, 0.1, 1),
    "n_baseflow": (1, 0.1, 30), "liq_canopy_storage_scalar": (0.1, 0.01, 20),
    "baseflow_scalar": (0.001, 1e-5, 0.1),
}


def test_tang2025_has_the_published_defaults_and_ranges():
    space = ParameterSpace.tang2025()
    assert space.names == list(TANG)
    for p in space:
        default, lower, upper = TANG[p.name]
        assert (p.lower, p.upper) == pytest.approx((lower, upper)), p.name
        assert p.default == (None if default is None else pytest.approx(default)), p.name
    # zbedrock: an absolute depth (Tang's "Multiplicative, Absolute"; their table has no
    # default: each basin keeps its surface-data value, NaN in the defaults)
    assert space["zbedrock"].kind == "value" and space["zbedrock"].units == "m"
    assert np.isnan(space.defaults[space.names.index("zbedrock")])
    assert np.isfinite(np.delete(space.defaults, space.names.index("zbedrock"))).all()
    assert space["precip_repartition_nonglc_all_rain_t"].kind == "shift"
    assert space["medlynslope"].per_pft


def test_tang2025_samples_linearly_by_default_like_tang():
    # MOASMO_parameters.py: factor * (upper - lower) + lower for every parameter
    space = ParameterSpace.tang2025()
    assert not space.log.any()
    mid = space.from_unit(np.full(len(space), 0.5))
    np.testing.assert_allclose(mid, (space.lower + space.upper) / 2)
    with pytest.raises(ValueError, match="scale"):
        ParameterSpace.tang2025(scale="logarithmic")


def test_log_scale_rule():
    space = ParameterSpace.tang2025(scale="log")
    for p in space:
        spans_decade = p.lower > 0 and p.upper / p.lower >= 10
        linear = p.name in ("FMAX", "interception_fraction", "zbedrock",
                            "precip_repartition_nonglc_all_rain_t")
        assert p.log == (spans_decade and not linear), p.name


def test_unit_cube_round_trip_and_log_midpoint():
    space = ParameterSpace.tang2025(scale="log")
    rng = np.random.default_rng(3)
    u = rng.uniform(size=(50, len(space)))
    np.testing.assert_allclose(space.to_unit(space.from_unit(u)), u, atol=1e-12)
    mid = space.from_unit(np.full(len(space), 0.5))
    assert mid[space.names.index("fff")] == pytest.approx(np.sqrt(0.001 * 20))
    assert mid[space.names.index("FMAX")] == pytest.approx(0.5)
    np.testing.assert_allclose(space.from_unit(np.zeros(len(space))), space.lower)
    np.testing.assert_allclose(space.from_unit(np.ones(len(space))), space.upper)


def test_validate_names_parameter_value_and_range():
    space = ParameterSpace.tang2025()
    values = np.tile(space.defaults, (3, 1))
    values[2, space.names.index("fff")] = 25.0
    with pytest.raises(ValueError, match=r"fff = 25 \(row 2\) is outside its range \[0.001, 20.0\]"):
        space.validate(values)
    with pytest.raises(ValueError, match="16 columns"):
        space.validate(np.ones((2, 3)))
    # (basin, member, param), as a calibration history holds them: named, not "too many values"
    cube = np.tile(space.defaults, (2, 3, 1))
    cube[1, 2, space.names.index("fff")] = 25.0
    with pytest.raises(ValueError, match=r"fff = 25 \(index \(1, 2\)\) is outside its range"):
        space.validate(cube)
    with pytest.raises(ValueError, match=r"fff = 25 \(index \(1, 2\)\) is outside"):
        space.to_unit(cube)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        space.from_unit(np.full(len(space), 1.5))


def test_to_dataset_has_member_and_param():
    space = ParameterSpace.tang2025(scale="log").subset(["fff", "FMAX"])
    ds = space.to_dataset([[0.5, 0.3], [2.0, 0.8]], member_start=10)
    assert ds.params.dims == ("member", "param")
    assert list(ds.member.values) == [10, 11] and list(ds.param.values) == ["fff", "FMAX"]
    assert ds.params.sel(member=11, param="FMAX").item() == 0.8
    assert list(ds.log_scale.values) == [True, False]


def test_location_depends_on_ctsm_version():
    space = ParameterSpace.tang2025()
    icpt = space["interception_fraction"]
    assert icpt.location("ctsm5.2.005") == "namelist"
    assert icpt.location("ctsm5.3.010") == "paramfile"
    assert icpt.location("ctsm5.3.009") == "namelist"
    bf = space["baseflow_scalar"]
    assert bf.location("ctsm5.3.062") == "namelist" and bf.location("ctsm5.4.025") == "paramfile"
    assert space["fff"].location("ctsm5.1.0") == "paramfile"
    assert space["FMAX"].location() == "surface"


def test_bad_parameter_definitions_are_refused():
    with pytest.raises(ValueError, match="outside"):
        Parameter("x", 5.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="lower > 0"):
        Parameter("x", 0.5, 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="unique"):
        ParameterSpace([Parameter("x", 0.5, 0, 1), Parameter("x", 0.5, 0, 1)])
    with pytest.raises(KeyError, match="its parameters are"):
        ParameterSpace.tang2025()["porosity"]


def test_unit_mapping_refuses_what_it_cannot_map():
    space = ParameterSpace.tang2025()
    x = np.nan_to_num(space.defaults, nan=1.0)
    x[space.names.index("fff")] = 100.0
    with pytest.raises(ValueError, match=r"fff = 100"):
        space.to_unit(x)
    x[space.names.index("fff")] = -5.0
    with pytest.raises(ValueError, match=r"fff = -5"):
        space.to_unit(x)
    u = np.full(len(space), 0.5)
    u[3] = np.nan
    with pytest.raises(ValueError, match="nan"):
        space.from_unit(u)
    with pytest.raises(KeyError, match="nope"):
        space.with_range("nope", 0.0, 1.0)
    with pytest.raises(ValueError, match="kind 'bogus'"):
        Parameter("x", 0.5, 0.0, 1.0, kind="bogus")


def test_named_columns_are_taken_by_name():
    # issue 30: a table or DataArray with its parameters in another order gave each
    # parameter another's values (refused only when a value fell out of range)
    space = ParameterSpace.tang2025()
    x = sampling_like(space)
    table = pd.DataFrame(x, columns=space.names)
    shuffled = table[list(space.names)[::-1]]
    np.testing.assert_array_equal(space.to_unit(shuffled), space.to_unit(x))
    np.testing.assert_array_equal(space.to_dataset(shuffled).params.values, x)
    da = space.to_dataset(x).params.isel(param=slice(None, None, -1))
    np.testing.assert_array_equal(space.validate(da), x)
    with pytest.raises(ValueError, match=r"missing \['fff'\]"):
        space.validate(table.drop(columns="fff").assign(ff=1.0))
    np.testing.assert_array_equal(space.validate(pd.DataFrame(x)), x)  # unnamed: by position


def sampling_like(space):
    """Three parameter sets inside the space, the same sets whatever the seed."""
    u = np.linspace(0.1, 0.9, 3)[:, None] * np.ones(len(space))
    return space.from_unit((u + np.arange(len(space)) / 40) % 1)


def test_values_given_by_name_as_mappings_or_a_series():
    space = ParameterSpace.tang2025()
    values = dict(zip(space.names, space.from_unit(np.full(len(space), 0.3))))
    backwards = dict(reversed(list(values.items())))
    np.testing.assert_array_equal(space.validate(backwards), list(values.values()))
    np.testing.assert_allclose(space.to_unit([backwards, values]), np.full((2, len(space)), 0.3))
    np.testing.assert_allclose(space.to_unit(pd.Series(backwards)), np.full(len(space), 0.3))
    with pytest.raises(ValueError, match=r"missing \['watsat_sf'"):
        space.validate({"fff": 1.0})
