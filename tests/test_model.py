"""emucal.model: water balance, process signs, and behaviour on the CAMELS sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emucal import model
from emucal.parameters import ParameterSpace

SPACE = ParameterSpace.tang2025()
IDX = {n: i for i, n in enumerate(SPACE.names)}


def _with(name, values):
    params = np.tile(SPACE.defaults, (len(values), 1))
    params[:, IDX[name]] = values
    return params


def test_water_balance_closes_for_random_parameters(toy):
    forcing, attrs = toy
    rng = np.random.default_rng(0)
    params = SPACE.from_unit(rng.uniform(size=(40, len(SPACE))))
    sim = model.simulate(params, forcing, attrs, outputs=("qsim", "et", "swe", "soilwater"))
    total_p = forcing.prcp.sum("time")
    relative = abs(sim.water_balance_error) / total_p
    assert float(relative.max()) < 1e-9
    assert (sim.qsim >= 0).all() and (sim.et >= 0).all() and (sim.swe >= 0).all()


def test_outputs_add_up(toy):
    forcing, attrs = toy
    sim = model.simulate(SPACE.defaults, forcing, attrs,
                         outputs=("qsim", "qsurf", "qsub", "et", "ecan", "etran", "esoil"))
    np.testing.assert_allclose(sim.qsim, sim.qsurf + sim.qsub, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sim.et, sim.ecan + sim.etran + sim.esoil, rtol=1e-5, atol=1e-6)
    assert sim.qsim.attrs["units"] == "mm/day" and sim.qsim.dims == ("member", "basin", "time")


def test_more_baseflow_scalar_gives_larger_baseflow_share(toy):
    forcing, attrs = toy
    sim = model.simulate(_with("baseflow_scalar", [1e-4, 1e-3, 1e-2]), forcing, attrs,
                         outputs=("qsim", "qsub"), spinup_years=3)
    share = (sim.qsub.sum("time") / sim.qsim.sum("time")).values  # member x basin
    assert np.all(np.diff(share, axis=0) > 0)


def test_warmer_rain_threshold_gives_more_snow(toy):
    # all_rain_t up => at a given temperature less of the precipitation is rain
    forcing, attrs = toy
    sim = model.simulate(_with("precip_repartition_nonglc_all_rain_t", [0.5, 2.0, 3.5]),
                         forcing, attrs, outputs=("swe",))
    snowy = sim.swe.sel(basin="00000001").sum("time").values
    assert np.all(np.diff(snowy) > 0)


def test_fmax_raises_surface_runoff_and_medlyn_raises_transpiration(toy):
    forcing, attrs = toy
    sim = model.simulate(_with("FMAX", [0.1, 0.5, 0.9]), forcing, attrs, outputs=("qsurf",))
    assert np.all(np.diff(sim.qsurf.sum("time").values, axis=0) > 0)
    sim = model.simulate(_with("medlynslope", [1.0, 4.84, 15.0]), forcing, attrs, outputs=("etran",))
    assert np.all(np.diff(sim.etran.sum("time").values, axis=0) > 0)


def test_same_parameters_same_numbers_and_basin_specific_sets(toy):
    forcing, attrs = toy
    a = model.simulate(SPACE.defaults, forcing, attrs)
    b = model.simulate(SPACE.defaults[None, None, :].repeat(2, axis=1), forcing, attrs)
    np.testing.assert_array_equal(a.qsim.values, b.qsim.values)


def test_bad_input_is_explained(toy):
    forcing, attrs = toy
    bad = SPACE.defaults.copy()
    bad[IDX["fff"]] = 50
    with pytest.raises(ValueError, match="fff = 50"):
        model.simulate(bad, forcing, attrs)
    with pytest.raises(ValueError, match="Unknown outputs"):
        model.simulate(SPACE.defaults, forcing, attrs, outputs=("runoff",))
    gappy = forcing.copy(deep=True)
    gappy["prcp"][0, 3] = np.nan
    with pytest.raises(ValueError, match="gaps"):
        model.simulate(SPACE.defaults, gappy, attrs)
    with pytest.raises(KeyError, match="soil_porosity"):
        model.simulate(SPACE.defaults, forcing, attrs.drop(columns="soil_porosity"))


def test_potential_et_matches_camels_pet(real_camels):
    """Priestley-Taylor PET of the sample is within 35% of CAMELS pet_mean, median within 5%."""
    from emucal import camels

    ds = camels.load_basins(start="1993-10-01", end="2009-09-30")
    attrs = camels.attributes().loc[ds.basin.values]
    inputs = model.prepare_inputs(ds, attrs)
    ratio = inputs.pet.mean(axis=1) / attrs.pet_mean.to_numpy()
    assert 0.95 < np.median(ratio) < 1.05
    assert np.all((ratio > 0.65) & (ratio < 1.35))


def test_default_runoff_ratio_within_factor_two_in_most_sample_basins(real_camels):
    from emucal import camels

    ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
    attrs = camels.attributes()
    sim = model.simulate(SPACE.defaults, ds, attrs)
    observed = ds.qobs.notnull()
    ratio_sim = sim.qsim.isel(member=0).where(observed).sum("time") / ds.prcp.where(observed).sum("time")
    ratio = ratio_sim.values / attrs.loc[ds.basin.values, "runoff_ratio"].to_numpy()
    assert np.sum((ratio > 0.5) & (ratio < 2.0)) >= 14  # of 19


def test_without_a_snowpack_winter_flow_rises_and_spring_flow_falls(toy):
    forcing, attrs = toy
    normal = model.simulate(SPACE.defaults, forcing, attrs, outputs=("qsim", "swe"))
    broken = model.simulate(SPACE.defaults, forcing, attrs, outputs=("qsim", "swe"), snowpack=False)
    assert float(normal.swe.sel(basin="00000001").max()) > 50  # the cold basin keeps snow...
    assert float(broken.swe.max()) == 0.0  # ...unless the snowpack is switched off
    assert float(abs(broken.water_balance_error).max()) < 1e-9 * float(forcing.prcp.sum())
    month = broken.time.dt.month
    cold = dict(member=0, basin="00000001")
    winter, spring = month.isin([12, 1, 2]), month.isin([4, 5, 6])
    assert broken.qsim.sel(**cold)[winter].mean() > 1.5 * normal.qsim.sel(**cold)[winter].mean()
    assert broken.qsim.sel(**cold)[spring].mean() < normal.qsim.sel(**cold)[spring].mean()
    # the warm basin has no snow: the switch changes nothing there
    warm = dict(member=0, basin="00000002")
    np.testing.assert_allclose(broken.qsim.sel(**warm), normal.qsim.sel(**warm), rtol=1e-6)
