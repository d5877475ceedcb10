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


def test_named_parameters_are_taken_by_name_not_position(toy):
    """A Dataset or DataFrame with its parameters in another order runs the same sets."""
    forcing, attrs = toy
    params = _with("baseflow_scalar", [1e-4, 1e-2])
    as_array = model.simulate(params, forcing, attrs)
    backwards = SPACE.to_dataset(params).isel(param=slice(None, None, -1))
    from_dataset = model.simulate(backwards, forcing, attrs)
    np.testing.assert_array_equal(from_dataset.qsim.values, as_array.qsim.values)
    np.testing.assert_array_equal(from_dataset.member.values, [0, 1])
    table = pd.DataFrame(params, columns=SPACE.names)[list(reversed(SPACE.names))]
    np.testing.assert_array_equal(model.simulate(table, forcing, attrs).qsim.values, as_array.qsim.values)


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


# ---------------------------------------------------------------- fidelity to CTSM
def test_bedrock_snaps_to_ctsm_layer_interfaces():
    # initVerticalMod.F90: bedrock at the bottom of the layer holding zbedrock, no
    # shallower than the layer holding zmin_bedrock = 0.4 m; no match -> all 20 layers
    z = model.bedrock_depth([0.1, 0.32, 0.33, 0.48, 0.5, 1.0, 1.2, 1.21, 8.03, 8.6, 8.61, 10.0])
    np.testing.assert_allclose(z, [8.6, 8.6, 0.48, 0.48, 0.68, 1.2, 1.2, 1.52, 8.6, 8.6, 8.6, 8.6])


def test_zbedrock_is_an_absolute_depth_and_nan_is_the_basin_default(toy):
    forcing, attrs = toy
    params = _with("zbedrock", [1.0, 1.1, 0.2, 9.0, 2.0])
    params = np.vstack([params, SPACE.defaults])  # last row: zbedrock NaN
    q = model.simulate(params, forcing, attrs).qsim.sel(basin="00000001").values
    np.testing.assert_array_equal(q[0], q[1])  # 1.0 and 1.1 m share the layer ending at 1.2 m
    np.testing.assert_array_equal(q[2], q[3])  # <= 0.32 m keeps the full column, like > 8.6 m
    assert not np.array_equal(q[0], q[2])
    # the basin's soil_depth_pelletier is 2.0 m: NaN runs it
    np.testing.assert_array_equal(q[5], q[4])
    defaults = model.default_params(attrs)
    assert defaults.loc["00000002", "zbedrock"] == 5.0 and defaults.loc["00000001", "fff"] == 0.5


def test_accum_factor_shapes_cover_during_melt(toy):
    # CTSM resets int_snow after each snowfall, so the melt curve continues from
    # the cover that accum_factor built (the old model forgot it on the first melt day)
    forcing, attrs = toy
    sim = model.simulate(_with("accum_factor", [0.02, 0.5]), forcing, attrs,
                         outputs=("fsno", "swe")).sel(basin="00000001")
    melting = ((sim.swe.diff("time") < 0) & (forcing.prcp.sel(basin="00000001").isel(time=slice(1, None)) == 0)
               & (sim.swe.isel(time=slice(1, None)) > 0)).all("member")
    fsno = sim.fsno.isel(time=slice(1, None)).where(melting)
    assert int(melting.sum()) > 20
    assert float(abs(fsno.isel(member=0) - fsno.isel(member=1)).mean()) > 0.01


def test_ice_impedance_acts_on_baseflow(toy):
    # SoilHydrologyMod.F90: ice_imped_col multiplies baseflow, not only infiltration
    forcing, attrs = toy
    cold = forcing.copy(deep=True)
    dry_cold = (cold.time.dt.year == 2003) & (cold.time.dt.month <= 3)
    cold["tmax"] = cold.tmax.where(~dry_cold, -25.0)
    cold["tmin"] = cold.tmin.where(~dry_cold, -25.0)
    cold["prcp"] = cold.prcp.where(~dry_cold, 0.0)
    sim = model.simulate(_with("e_ice", [0.01, 20.0]), cold, attrs, outputs=("qsub",))
    late = dry_cold & (cold.time.dt.month == 3)
    q = sim.qsub.sel(basin="00000002").where(late, drop=True).sum("time").values
    assert q[0] > 1.0 and q[1] < 1e-3 * q[0]


def test_dry_surface_layer_is_capped_at_200_mm(toy):
    # SurfaceResistanceMod.F90: dsl = min(dsl, 200 mm), so beyond the cap d_max does nothing
    forcing, attrs = toy
    inputs = model.prepare_inputs(forcing, attrs)
    params = np.tile(SPACE.defaults, (2, 1))
    params[:, IDX["d_max"]] = [1e6, 1e7]
    out, _ = model.run_columns(params, np.zeros(2, int), inputs, outputs=("esoil",))
    np.testing.assert_array_equal(out["esoil"][0], out["esoil"][1])
    params[:, IDX["d_max"]] = [5.0, 50.0]
    out, _ = model.run_columns(params, np.zeros(2, int), inputs, outputs=("esoil",))
    assert out["esoil"][0].sum() > out["esoil"][1].sum()
