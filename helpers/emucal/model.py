r"""The teaching model: CTSM's hydrology in a fast, lumped, daily form.

CTSM takes minutes per basin-year; a calibration tutorial needs thousands of
basin-years in seconds. This module is a small land model of one basin,
run at a daily step, in which each of the 16 parameters of
:meth:`emucal.parameters.ParameterSpace.tang2025` plays the role it plays in
CTSM. The equations follow the CLM5 Technical Note (Lawrence et al. 2020,
https://escomp.github.io/ctsm-docs/, "TN" below); every simplification is
listed here so that nobody mistakes this model for CTSM.

One column is one (parameter set, basin) pair. All columns are integrated
together in compiled code (numba, parallel over columns).

Processes, in the order of one daily step
-----------------------------------------
Rain and snow (TN, atmospheric forcing: precipitation phase)
    Rain fraction ramps linearly from 0 at ``all_snow_t`` to 1 at
    ``all_rain_t`` (CTSM defaults 0 and 2 degC for non-glacier land).
    Calibration shifts ``all_rain_t`` and ``all_snow_t`` moves with it.
    *Simplification:* daily mean temperature (CAMELS NLDAS has no other).
Canopy interception (TN Hydrology: canopy water)
    Intercepted fraction ``fpi = interception_fraction * tanh(L)``;
    storage capacity ``W_max = liq_canopy_storage_scalar * L``; water above
    it drips. Evaporation from the wet leaf area ``f_wet * L * PET`` with
    ``f_wet = min((W/W_max)^(2/3), maximum_leaf_wetted_fraction)``.
    *Simplifications:* no stem area; snow is not intercepted; LAI follows a
    cosine cycle between ``lai_max - lai_diff`` and ``lai_max`` (CAMELS),
    peaking on 19 July.
Snow-covered fraction (TN Snow hydrology; Swenson and Lawrence 2012)
    On snowfall ``f_sno = 1 - (1 - tanh(accum_factor * snowfall))(1 - f_sno)``;
    during melt ``f_sno = 1 - (arccos(2 W/W_int - 1)/pi)^N_melt`` with
    ``N_melt = n_melt_coef / max(10, sigma_topo)`` (the code uses ``max``;
    the Technical Note prints ``min``) and ``W_int = min(int_snow, 2000 mm)``.
    As in CTSM, ``int_snow`` is reset after every snowfall so that the melt
    curve starts from the current cover and SWE,
    ``int_snow = W / (0.5 (cos(pi (1 - f_sno)^(1/N_melt)) + 1))``, and never
    falls below ``W`` (``SnowCoverFractionSwensonLawrence2012Mod.F90``,
    ``AddNewsnowToIntsnow`` and ``FracSnowDuringMelt``; ``SnowHydrologyMod.F90``,
    ``int_snow = max(int_snow, h2osno_total)``): ``accum_factor`` therefore
    shapes the whole melt season, not only the first snowfall.
    *Simplification:* CTSM adds the new snow to ``int_snow`` once more after
    the reset; the teaching model keeps the reset consistent with the cover.
    *Simplifications:* melt is a temperature index, ``DDF * T * f_sno``
    (``DDF = 3.5 mm/degC/day``), over the snow-covered fraction, in place of
    CTSM's energy balance; no sublimation; rain passes through the pack.
    ``sigma_topo`` (the standard deviation of elevation, not in CAMELS) is
    approximated by the elevation change over 1 km at ``slope_mean``.
Frozen ground (TN Hydrology: frozen soils)
    Ice impedance ``Theta_ice = 10^(-e_ice F_ice)`` on infiltration, on the
    drainage conductivity and on baseflow, as in CTSM
    (``InfiltrationExcessRunoffMod.F90``; ``SoilWaterMovementMod.F90``,
    ``IceImpedance``; ``SoilHydrologyMod.F90``, ``ice_imped_col`` in
    ``SubsurfaceLateralFlow``).
    *Simplification:* ``F_ice = clip(-T_soil / 2 degC, 0, 1)`` with a soil
    temperature that relaxes with a 10-day time scale towards the air
    temperature damped by snow insulation, ``T_air exp(-SWE / 30 mm)``:
    under a deep pack the soil stays near 0 degC.
Surface runoff and infiltration (TN Hydrology: surface runoff, infiltration)
    Saturated fraction ``f_sat = FMAX exp(-0.5 fff z_wt)``; water on the
    saturated fraction runs off; the rest infiltrates up to
    ``(1 - f_sat) Theta_ice k_sat``.
Depth to bedrock (TN Hydrology: soil water; ``initVerticalMod.F90``)
    ``zbedrock`` is an absolute depth (m). Its default is the basin's own,
    CAMELS ``soil_depth_pelletier``, from the map of Pelletier et al. (2016)
    that CTSM's surface datasets also use. As in CTSM, the soil column ends
    at the bottom of the layer that holds ``zbedrock``, among CTSM's default
    20 soil layers (``20SL_8.5m``: interfaces 0.02, 0.06, ... 7.46, 8.60 m;
    ``clm_varpar.F90``), no shallower than the layer holding
    ``zmin_bedrock = 0.4`` m (``clm_varcon.F90``), i.e. 0.48 m. A value at or
    below 0.32 m (the interface above that layer) matches no layer, and CTSM
    then keeps the full 20 layers (8.60 m); so does any value deeper than
    8.60 m. :func:`bedrock_depth` gives the snapped depth.
Soil hydraulic properties (TN Hydrology: soil water; ``SoilStateInitTimeConstMod.F90``)
    Mineral porosity and conductivity from CAMELS (``soil_porosity``,
    ``soil_conductivity``), Clapp-Hornberger ``b = 2.91 + 0.159 clay`` and
    ``psi_sat = -10 * 10^(1.88 - 0.0131 sand)`` mm (Cosby et al. 1984).
    Organic soil as in CTSM, by depth ``z`` of each of CTSM's layers:
    porosity ``max(0.93 - 0.2 z, 0.83)``, ``b = min(2.7 + 18.6 z, 12)``,
    ``psi_sat = -min(10.3 - 0.4 z, 10.1)`` mm, conductivity ``max(0.28 -
    0.5598 z, k_mineral)`` mm/s (``zsapric = 0.5`` m). They mix with the
    mineral values by the organic fraction ``f = min(organic_frac *
    om_frac_sf, 1)``; porosity is ``min(watsat_sf * mix, 0.93)``; conductivity
    mixes by percolation theory (``pcalpha = 0.5``, ``pcbeta = 0.139``: above
    half organic, a connected organic fraction conducts in parallel with the
    rest in series) and is then times ``hksat_sf``. The lumped model uses the
    thickness-weighted mean of each property over the layers above bedrock.
    *Simplification:* CAMELS gives one organic fraction per basin, so ``f`` is
    the same in every layer (CTSM reads a profile).
Soil water and the water table
    *Simplification:* in place of CTSM's 20-layer Richards equation, two
    stores over the soil column above bedrock. A
    soil-moisture store feeds transpiration and soil evaporation and drains
    above field capacity (-3.4 m suction) at the Clapp-Hornberger
    conductivity ``k_sat (theta/theta_sat)^(2b+3)``; a groundwater store with
    specific yield ``theta_sat - theta_fc`` sets the saturated thickness
    ``dz_sat`` and the water-table depth ``z_wt = zbedrock - dz_sat``.
Baseflow (TN Hydrology: lateral sub-surface runoff)
    ``q_drai = baseflow_scalar tan(beta) dz_sat^n_baseflow`` (mm/s), with
    ``tan(beta)`` from CAMELS ``slope_mean``.
Evapotranspiration
    Potential ET by Priestley and Taylor (1972) with FAO-56 net radiation
    (Allen et al. 1998), the CAMELS ``srad`` being a daylight-hour mean. Wet
    canopy evaporation uses it first. Transpiration: Penman-Monteith ratio
    ``1 / (1 + gamma/(Delta+gamma) r_c/r_a)`` with ``r_a = 50 s/m`` and
    canopy conductance ``0.5 L / 100 s/m`` (FAO-56 eq. 5) times the
    soil-moisture stress ``beta_t`` (suction between -66 m and -255 m, CLM
    PFT defaults) and the Medlyn et al. (2011) response relative to the
    default slope, ``(1 + g1/sqrt(D)) / (1 + 4.84/sqrt(D))``. Soil
    evaporation on the bare, snow-free fraction ``exp(-0.5 L)`` with the dry
    surface layer resistance of Swenson and Lawrence (2014) as CTSM codes it
    (``SurfaceResistanceMod.F90``, ``calc_soil_resistance_sl14``):
    ``DSL = d_max max(0.001, 0.8 theta_sat - theta) / max(0.001, 0.8 theta_sat
    - theta_air)``, capped at 200 mm; ``r_soil = DSL / (D_g eps 1000) + 20``
    s/m (at most 1e6) with ``eps = theta_sat - theta_air`` and ``D_g = eps D_0
    (eps/theta_sat)^(3/max(3, b))``, ``D_0 = 2.12e-5 (T/273.15)^1.75`` m2/s; and
    ``E_soil = PET r_a / (r_a + r_soil)``. Evaporation never takes the soil
    below air-dry. *Simplifications:* one soil layer stands for CTSM's top
    layer, and the soil temperature is the daily proxy above.

Water balance: every flux is limited by the water it draws on, so for each
column ``P = ET + Q + (S_end - S_start)`` holds to rounding, where ``S`` is
canopy + snow + soil + groundwater water (tested to 1e-9 relative).

References
----------
Allen, R. G., Pereira, L. S., Raes, D., Smith, M. (1998). Crop evapotranspiration,
FAO Irrigation and Drainage Paper 56.
Cosby, B. J. et al. (1984). Water Resour. Res. 20, 682-690.
Lawrence, D. M. and Slater, A. G. (2008). Clim. Dyn. 30, 145-160.
Lawrence, D. M. et al. (2019). J. Adv. Model. Earth Syst. 11, 4245-4287 (CLM5).
Pelletier, J. D. et al. (2016). J. Adv. Model. Earth Syst. 8, 41-65.
Medlyn, B. E. et al. (2011). Glob. Change Biol. 17, 2134-2144.
Millington, R. J. and Quirk, J. P. (1961). Trans. Faraday Soc. 57, 1200-1207.
Priestley, C. H. B. and Taylor, R. J. (1972). Mon. Weather Rev. 100, 81-92.
Swenson, S. C. and Lawrence, D. M. (2012). J. Geophys. Res. 117, D21107.
Swenson, S. C. and Lawrence, D. M. (2014). J. Geophys. Res. Atmos. 119, 10299-10312.

CTSM sources: ESCOMP/CTSM at ctsm5.4.053 (commit 53f021b4), files named above
under ``src/main`` and ``src/biogeophys``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import xarray as xr

from ._threads import size_thread_pools
from .parameters import ParameterSpace

__all__ = [
    "OUTPUTS",
    "ModelInputs",
    "basin_properties",
    "bedrock_depth",
    "default_params",
    "potential_et",
    "prepare_inputs",
    "run_columns",
    "simulate",
]

#: Output variables: name -> (units, long name).
OUTPUTS = {
    "qsim": ("mm/day", "total runoff (surface + baseflow)"),
    "qsurf": ("mm/day", "surface runoff (saturation and infiltration excess)"),
    "qsub": ("mm/day", "baseflow (lateral sub-surface runoff)"),
    "et": ("mm/day", "evapotranspiration"),
    "ecan": ("mm/day", "evaporation of intercepted water"),
    "etran": ("mm/day", "transpiration"),
    "esoil": ("mm/day", "soil evaporation"),
    "swe": ("mm", "snow water equivalent"),
    "zwt": ("m", "water-table depth"),
    "soilwater": ("mm", "soil water and groundwater storage"),
    "fsno": ("1", "snow-covered fraction"),
}
_OUT_INDEX = {name: i for i, name in enumerate(OUTPUTS)}

# Order of parameters in the compiled kernel (Tang et al. 2025 order).
_PARAMS = ParameterSpace.tang2025().names

# Teaching-model constants (not calibrated). Sources in the module docstring.
_DDF = 3.5  # degree-day melt factor, mm/degC/day
_FWET_MAX = 0.05  # CTSM maximum_leaf_wetted_fraction default
_RA = 50.0  # aerodynamic resistance, s/m
_DV = 2.12e-5  # water vapour diffusivity in air at 0 degC, m2/s
_PSI_FC = -3400.0  # field-capacity suction, mm
_PSI_OPEN, _PSI_CLOSE = -66000.0, -255000.0  # stomata fully open / closed, mm
# CTSM's default soil layers (20SL_8.5m, clm_varpar.F90): thicknesses 0.02 j m for
# j = 1..4, then +0.04 m per layer to j = 13, then +0.10 m per layer to j = 20.
_DZSOI = np.array([0.02 * j for j in range(1, 5)]
                  + [0.08 + 0.04 * (j - 4) for j in range(5, 14)]
                  + [0.44 + 0.10 * (j - 13) for j in range(14, 21)])
_ZISOI = np.cumsum(_DZSOI)  # layer bottoms (interfaces), 0.02 ... 8.60 m
_ZSOI = _ZISOI - 0.5 * _DZSOI  # layer nodes, 0.01 ... 8.03 m
_ZMIN_BEDROCK = 0.4  # m, clm_varcon.F90
_ZSAPRIC = 0.5  # m, depth scale of organic-soil properties (SoilStateInitTimeConstMod.F90)
_PC_ALPHA, _PC_BETA = 0.5, 0.139  # percolation threshold and exponent (same file)
_WATSAT_MAX = 0.93  # watsat_sf may not push porosity above this (same file)
_DSL_FRAC = 0.8  # frac_sat_soil_dsl_init, CTSM paramfile default
_DSL_CAP = 200.0  # mm, SurfaceResistanceMod.F90
_INT_SNOW_MAX = 2000.0  # mm, namelist default int_snow_max (CLM5)
_LN10 = np.log(10.0)
_TAU_SOIL = 10.0  # relaxation time of soil temperature to air temperature, days
_SNOW_INSULATION = 30.0  # SWE (mm) that damps the air-temperature signal e-fold

_STATICS = ("theta_sat_min", "ksat_min", "depth", "f_om", "clay", "sand", "tan_slope",
            "sigma_topo")
_ZBEDROCK = _PARAMS.index("zbedrock")


def bedrock_depth(zbedrock) -> np.ndarray:
    """Depth (m) where CTSM puts bedrock for a given ``zbedrock`` (m).

    CTSM's ``initVerticalMod.F90`` sets ``nbedrock`` to the layer ``j`` (at
    least the layer holding ``zmin_bedrock = 0.4`` m) with
    ``zisoi(j-1) < zbedrock <= zisoi(j)``, and keeps all 20 layers when no
    layer matches. The soil column then ends at ``zisoi(nbedrock)``.

    >>> bedrock_depth([0.2, 0.4, 1.0, 8.0, 9.0]).round(2).tolist()
    [8.6, 0.48, 1.2, 8.6, 8.6]
    """
    z = np.asarray(zbedrock, dtype=float)
    jmin = int(np.searchsorted(_ZISOI, _ZMIN_BEDROCK))  # 0-based index of layer 6
    j = np.searchsorted(_ZISOI, z, side="left")  # first interface >= z
    matched = (j >= jmin) & (j < _ZISOI.size) & (z > 0)
    return np.where(matched, _ZISOI[np.minimum(j, _ZISOI.size - 1)], _ZISOI[-1])


def default_params(attrs: pd.DataFrame, space: ParameterSpace | None = None) -> pd.DataFrame:
    """Each basin's default parameter set for the teaching model, ``basin x param``.

    The CTSM defaults of :meth:`ParameterSpace.tang2025`, with ``zbedrock``
    set to the basin's own depth to bedrock (CAMELS ``soil_depth_pelletier``,
    kept within the calibration range: CTSM gives every value at or above
    8.60 m, and every value at or below 0.32 m, the same full soil column, so
    this changes nothing in the model). These are the values that a NaN in a
    parameter set stands for.
    """
    space = space or ParameterSpace.tang2025()
    if "soil_depth_pelletier" not in attrs.columns:
        raise KeyError("attrs has no 'soil_depth_pelletier'; pass rows of emucal.camels.attributes().")
    table = pd.DataFrame(np.broadcast_to(space.defaults, (len(attrs), len(space))).copy(),
                         index=attrs.index, columns=space.names)
    if "zbedrock" in space.names:
        p = space["zbedrock"]
        table["zbedrock"] = attrs["soil_depth_pelletier"].clip(p.lower, p.upper).to_numpy()
    bad = table.columns[table.isna().any()].tolist()
    if bad:
        raise ValueError(f"No basin default for {bad}: basins "
                         f"{table.index[table.isna().any(axis=1)].tolist()} lack the attribute.")
    return table


def basin_properties(attrs: pd.DataFrame) -> pd.DataFrame:
    """Static basin properties the model needs, from CAMELS attributes.

    Parameters
    ----------
    attrs
        Rows of :func:`emucal.camels.attributes` for the basins to run.

    Returns
    -------
    pandas.DataFrame
        ``theta_sat_min`` (soil_porosity), ``ksat_min`` (soil_conductivity,
        cm/h -> mm/s), ``depth`` (soil_depth_pelletier, m), ``f_om``
        (organic_frac, % -> fraction), ``clay``, ``sand`` (%), ``tan_slope``
        (slope_mean, m/km -> m/m), ``sigma_topo`` (m, see module docstring),
        ``lai_max``, ``lai_diff``, ``gauge_lat``, ``elev_mean``.
    """
    needed = ["soil_porosity", "soil_conductivity", "soil_depth_pelletier", "organic_frac",
              "clay_frac", "sand_frac", "slope_mean", "lai_max", "lai_diff", "gauge_lat",
              "elev_mean"]
    missing = [c for c in needed if c not in attrs.columns]
    if missing:
        raise KeyError(f"Attributes {missing} are missing; pass rows of emucal.camels.attributes().")
    props = pd.DataFrame({
        "theta_sat_min": attrs["soil_porosity"],
        "ksat_min": attrs["soil_conductivity"] * 10.0 / 3600.0,
        "depth": attrs["soil_depth_pelletier"],
        "f_om": attrs["organic_frac"].fillna(0.0) / 100.0,
        "clay": attrs["clay_frac"],
        "sand": attrs["sand_frac"],
        "tan_slope": attrs["slope_mean"] / 1000.0,
        "sigma_topo": np.maximum(10.0, attrs["slope_mean"]),
        "lai_max": attrs["lai_max"],
        "lai_diff": attrs["lai_diff"],
        "gauge_lat": attrs["gauge_lat"],
        "elev_mean": attrs["elev_mean"],
    }, index=attrs.index)
    bad = props.columns[props.isna().any()].tolist()
    if bad:
        raise ValueError(f"Basins {props.index[props.isna().any(axis=1)].tolist()} have no "
                         f"value for {bad}; the model cannot run them.")
    return props


def potential_et(tair, srad, dayl, vp, time, lat, elev):
    """Priestley-Taylor potential evapotranspiration (mm/day), with FAO-56 radiation.

    Parameters
    ----------
    tair, srad, dayl, vp
        Daily mean air temperature (degC), shortwave radiation averaged over
        daylight hours (W m-2), day length (s) and vapour pressure (Pa);
        arrays of shape ``(basin, time)``.
    time
        The dates (length ``time``).
    lat, elev
        Latitude (degrees) and elevation (m) of each basin.

    Returns
    -------
    pet, gamma_frac
        PET in mm/day (``alpha = 1.26``, ground heat flux neglected at the
        daily step, albedo 0.23) and ``gamma/(Delta+gamma)`` for the
        transpiration ratio.

    Notes
    -----
    Extraterrestrial and clear-sky radiation from FAO-56 eqs. 21-25 and 37;
    net long-wave from eq. 39 with the daily mean temperature (NLDAS CAMELS
    files have no extremes); psychrometric constant from elevation (eqs. 7-8).
    With the daylight-mean reading of ``srad``, the PET of the 19 sample
    basins matches the CAMELS ``pet_mean`` attribute to a median ratio of
    1.01 (a 24-hour reading would double it).
    """
    tair = np.asarray(tair, dtype=float)
    doy = pd.DatetimeIndex(np.asarray(time)).day_of_year.to_numpy()[None, :]
    phi = np.deg2rad(np.asarray(lat, dtype=float))[:, None]
    z = np.asarray(elev, dtype=float)[:, None]
    dr = 1 + 0.033 * np.cos(2 * np.pi * doy / 365)
    dec = 0.409 * np.sin(2 * np.pi * doy / 365 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(dec), -1, 1))
    ra = 24 * 60 / np.pi * 0.0820 * dr * (ws * np.sin(phi) * np.sin(dec)
                                          + np.cos(phi) * np.cos(dec) * np.sin(ws))
    rso = (0.75 + 2e-5 * z) * ra
    rs = np.asarray(srad, dtype=float) * np.asarray(dayl, dtype=float) / 1e6  # MJ m-2 d-1
    ea = np.clip(np.asarray(vp, dtype=float) / 1000.0, 0.0, None)
    rnl = 4.903e-9 * (tair + 273.16) ** 4 * (0.34 - 0.14 * np.sqrt(ea)) * (
        1.35 * np.clip(rs / np.maximum(rso, 1e-6), 0.25, 1.0) - 0.35)
    rn = (1 - 0.23) * rs - rnl
    es = 0.6108 * np.exp(17.27 * tair / (tair + 237.3))
    delta = 4098 * es / (tair + 237.3) ** 2
    pressure = 101.3 * ((293 - 0.0065 * z) / 293) ** 5.26
    gamma = 0.000665 * pressure
    pet = np.clip(1.26 * delta / (delta + gamma) * rn / 2.45, 0.0, None)
    return pet, gamma / (delta + gamma)


@dataclass
class ModelInputs:
    """Everything the model needs for a set of basins, prepared once.

    Build it with :func:`prepare_inputs`; arrays are ``(basin, time)``.
    """

    basins: np.ndarray
    time: np.ndarray
    prcp: np.ndarray
    tair: np.ndarray
    pet: np.ndarray
    gamma_frac: np.ndarray
    vpd: np.ndarray
    lai: np.ndarray
    statics: np.ndarray  # (basin, len(_STATICS))
    defaults: np.ndarray  # (basin, param): what a NaN in a parameter set stands for

    @property
    def shape(self) -> tuple[int, int]:
        return self.prcp.shape


def prepare_inputs(forcing: xr.Dataset, attrs: pd.DataFrame) -> ModelInputs:
    """Turn CAMELS forcing and attributes into model inputs.

    Parameters
    ----------
    forcing
        Output of :func:`emucal.camels.load_basins` (``prcp``, ``tmax``,
        ``tmin``, ``srad``, ``dayl``, ``vp``) for the period to run. Missing
        forcing is not allowed: choose ``start``/``end`` inside the record.
    attrs
        :func:`emucal.camels.attributes` (rows for at least these basins).
    """
    basins = forcing.basin.values
    missing = [b for b in basins if b not in attrs.index]
    if missing:
        raise KeyError(f"Basins {missing} are not in the attributes table.")
    needed = ["prcp", "tmax", "tmin", "srad", "dayl", "vp"]
    for name in needed:
        values = forcing[name].values
        if np.isnan(values).any():
            bad = forcing.basin.values[np.isnan(values).any(axis=1)]
            raise ValueError(
                f"Forcing {name!r} has gaps in basins {list(bad)}; load a period that all "
                "basins cover, e.g. load_basins(..., start='1993-10-01', end='2013-09-30').")
    props = basin_properties(attrs.loc[basins])
    tair = 0.5 * (forcing.tmax.values + forcing.tmin.values)
    pet, gamma_frac = potential_et(tair, forcing.srad.values, forcing.dayl.values,
                                   forcing.vp.values, forcing.time.values,
                                   props.gauge_lat.values, props.elev_mean.values)
    es = 0.6108 * np.exp(17.27 * tair / (tair + 237.3))
    vpd = np.maximum(es - forcing.vp.values / 1000.0, 0.05)  # kPa, floored
    doy = pd.DatetimeIndex(forcing.time.values).day_of_year.to_numpy()[None, :]
    lai = (props.lai_max.values[:, None]
           - props.lai_diff.values[:, None] * 0.5 * (1 - np.cos(2 * np.pi * (doy - 200) / 365.25)))
    return ModelInputs(
        basins=np.asarray(basins), time=forcing.time.values,
        prcp=np.ascontiguousarray(forcing.prcp.values, dtype=np.float64),
        tair=np.ascontiguousarray(tair, dtype=np.float64),
        pet=np.ascontiguousarray(pet), gamma_frac=np.ascontiguousarray(gamma_frac),
        vpd=np.ascontiguousarray(vpd), lai=np.ascontiguousarray(np.maximum(lai, 0.0)),
        statics=np.ascontiguousarray(props[list(_STATICS)].to_numpy(dtype=np.float64)),
        defaults=default_params(attrs.loc[basins]).to_numpy(dtype=np.float64),
    )


@numba.njit(cache=True, fastmath=False, inline="always")
def _clip(x, lo, hi):
    return min(max(x, lo), hi)


@numba.njit(cache=True, parallel=True, fastmath=True)
def _kernel(params, col_basin, prcp, tair, pet, gfrac, sqrt_vpd, lai, tanh_lai, bare, statics,
            zisoi, zsoi, spinup_days, instant_melt,
            out_index, out, balance):
    n_cols = params.shape[0]
    n_time = prcp.shape[1]
    spin_period = min(365, n_time)
    for c in numba.prange(n_cols):
        b = col_basin[c]
        p = params[c]
        watsat_sf, fff, g1, hksat_sf = p[0], p[1], p[2], p[3]
        accum, fmax, om_sf, e_ice = p[4], p[5], p[6], p[7]
        zb_mult, n_melt_coef, d_max, rain_t = p[8], p[9], p[10], p[11]
        icpt, n_bf, liq_scalar, bf_scalar = p[12], p[13], p[14], p[15]
        theta_min, ksat_min, depth0, f_om0 = statics[b, 0], statics[b, 1], statics[b, 2], statics[b, 3]
        clay, sand, tan_slope, sigma_topo = statics[b, 4], statics[b, 5], statics[b, 6], statics[b, 7]

        # --- soil properties, CTSM's layer formulas averaged over the column
        depth = zb_mult  # already snapped to a layer bottom (bedrock_depth)
        f_om = min(1.0, f_om0 * om_sf)
        b_min = 2.91 + 0.159 * clay
        suc_min = 10.0 * 10.0 ** (1.88 - 0.0131 * sand)
        perc_frac = 0.0
        if f_om > _PC_ALPHA:
            perc_frac = (1.0 - _PC_ALPHA) ** (-_PC_BETA) * (f_om - _PC_ALPHA) ** _PC_BETA
        uncon_frac = (1.0 - f_om) + (1.0 - perc_frac) * f_om
        theta_sat = 0.0
        ksat = 0.0
        bexp = 0.0
        suc = 0.0
        z_top = 0.0
        for j in range(zisoi.shape[0]):
            if z_top >= depth - 1e-9:
                break
            dz = zisoi[j] - z_top
            zr = zsoi[j] / _ZSAPRIC
            om_ws = max(0.93 - 0.1 * zr, 0.83)
            om_b = min(2.7 + 9.3 * zr, 12.0)
            om_suc = min(10.3 - 0.2 * zr, 10.1)
            om_k = max(0.28 - 0.2799 * zr, ksat_min)
            ws = min(watsat_sf * ((1 - f_om) * theta_min + f_om * om_ws), _WATSAT_MAX)
            uncon_k = uncon_frac / ((1 - f_om) / ksat_min + ((1 - perc_frac) * f_om) / om_k)
            kj = hksat_sf * (uncon_frac * uncon_k + perc_frac * f_om * om_k)
            theta_sat += ws * dz
            ksat += kj * dz
            bexp += ((1 - f_om) * b_min + f_om * om_b) * dz
            suc += ((1 - f_om) * suc_min + f_om * om_suc) * dz
            z_top = zisoi[j]
        theta_sat /= depth
        ksat /= depth  # mm/s
        bexp /= depth
        psi_sat = -suc / depth
        theta_fc = min(theta_sat * (_PSI_FC / psi_sat) ** (-1.0 / bexp), 0.98 * theta_sat)
        theta_dry = theta_sat * (psi_sat / -1.0e7) ** (1.0 / bexp)
        spec_yield = max(theta_sat - theta_fc, 0.01)
        s_fc = theta_fc * depth * 1000.0
        s_dry = theta_dry * depth * 1000.0
        su_cap = theta_sat * depth * 1000.0
        sg_cap = spec_yield * depth * 1000.0
        n_melt = n_melt_coef / max(10.0, sigma_topo)
        t_snow = rain_t - 2.0
        g1_sqrt_ref = 4.840379695
        perc_exp = 2.0 * bexp + 3.0

        # --- initial state: soil at field capacity, groundwater half full
        wcan = 0.0
        swe = 0.0
        int_snow = 0.0
        fsno = 0.0
        tsoil = 5.0
        su = s_fc
        sg = 0.5 * sg_cap
        sum_p = 0.0
        sum_et = 0.0
        sum_q = 0.0
        s_start = 0.0

        for step in range(spinup_days + n_time):
            if step < spinup_days:
                t = step % spin_period
            else:
                t = step - spinup_days
                if t == 0:
                    s_start = wcan + swe + su + sg
                    sum_p = 0.0
                    sum_et = 0.0
                    sum_q = 0.0
            pr = prcp[b, t]
            ta = tair[b, t]
            pe = pet[b, t]
            leaf = lai[b, t]

            # rain / snow
            f_rain = _clip((ta - t_snow) / 2.0, 0.0, 1.0)
            rain = pr * f_rain
            snow = pr - rain

            # canopy interception and evaporation
            fpi = icpt * tanh_lai[b, t]
            wmax = liq_scalar * leaf
            wcan += fpi * rain
            drip = max(0.0, wcan - wmax)
            wcan -= drip
            through = (1.0 - fpi) * rain + drip
            ecan = 0.0
            if wmax > 0.0 and wcan > 0.0:
                fwet = min((wcan / wmax) ** (2.0 / 3.0), _FWET_MAX)
                ecan = min(wcan, fwet * leaf * pe)
                wcan -= ecan
            pe_rest = max(pe - ecan, 0.0)

            # snow: cover fraction, melt
            if snow > 0.0:
                fsno = 1.0 - (1.0 - np.tanh(accum * snow)) * (1.0 - fsno)
                swe += snow
                # CTSM resets int_snow so that the melt curve starts at this cover
                int_snow = min(1e8, swe / (0.5 * (np.cos(np.pi * (1.0 - max(fsno, 1e-6))
                                                         ** (1.0 / n_melt)) + 1.0)))
            int_snow = max(int_snow, swe)
            melt = 0.0
            if instant_melt and swe > 0.0:
                melt = swe  # the broken model of chapter 7: no snowpack
                swe = 0.0
                int_snow = 0.0
                fsno = 0.0
            elif swe > 0.0:
                melt = min(swe, _DDF * max(ta, 0.0) * fsno)
                swe -= melt
                if swe < 1e-6:
                    melt += swe
                    swe = 0.0
                    int_snow = 0.0
                    fsno = 0.0
                elif melt > 0.0 and snow == 0.0:
                    smr = min(1.0, swe / min(int_snow, _INT_SNOW_MAX))
                    fsno = 1.0 - (np.arccos(min(1.0, 2.0 * smr - 1.0)) / np.pi) ** n_melt
            else:
                fsno = 0.0

            # frozen ground
            tsoil += (ta * np.exp(-swe / _SNOW_INSULATION) - tsoil) / _TAU_SOIL
            f_ice = _clip(-tsoil / 2.0, 0.0, 1.0)
            theta_ice = np.exp(-_LN10 * e_ice * f_ice)

            # surface runoff and infiltration
            qliq = through + melt
            dz_sat = min(sg / (spec_yield * 1000.0), depth)
            zwt = depth - dz_sat
            fsat = fmax * np.exp(-0.5 * fff * zwt)
            q_satx = fsat * qliq
            infl_max = (1.0 - fsat) * theta_ice * ksat * 86400.0
            q_hort = max(0.0, (1.0 - fsat) * qliq - infl_max)
            su += qliq - q_satx - q_hort

            # transpiration and soil evaporation from the soil-moisture store
            theta = max(su / (depth * 1000.0), 1e-6)
            psi = psi_sat * (min(theta / theta_sat, 1.0)) ** (-bexp)
            beta_t = _clip((_PSI_CLOSE - psi) / (_PSI_CLOSE - _PSI_OPEN), 0.0, 1.0)
            sqrt_d = sqrt_vpd[b, t]
            medlyn = (1.0 + g1 / sqrt_d) / (1.0 + g1_sqrt_ref / sqrt_d)
            gc = 0.5 * leaf / 100.0 * beta_t * medlyn
            etran = 0.0
            if gc > 0.0:
                etran = (1.0 - fsno) * pe_rest / (1.0 + gfrac[b, t] / (gc * _RA))
            dsl = d_max * max(0.001, _DSL_FRAC * theta_sat - theta) / max(
                0.001, _DSL_FRAC * theta_sat - theta_dry)
            dsl = min(max(dsl, 0.0), _DSL_CAP)
            d0 = _DV * (max(tsoil + 273.15, 200.0) / 273.15) ** 1.75
            eps = theta_sat - theta_dry
            dg = eps * d0 * (eps / theta_sat) ** (3.0 / max(3.0, bexp))
            rsoil = min(dsl / (dg * eps * 1000.0) + 20.0, 1e6)
            esoil = (1.0 - fsno) * bare[b, t] * pe_rest * _RA / (_RA + rsoil)
            avail = max(su - s_dry, 0.0)
            demand = etran + esoil
            if demand > avail:
                scale = avail / demand
                etran *= scale
                esoil *= scale
            su -= etran + esoil

            # drainage to groundwater above field capacity (Clapp-Hornberger K)
            if su > s_fc:
                k_unsat = theta_ice * ksat * 86400.0 * min(su / su_cap, 1.0) ** perc_exp
                perc = min(k_unsat, su - s_fc)
                su -= perc
                sg += perc

            # baseflow
            dz_sat = min(sg / (spec_yield * 1000.0), depth)
            q_drai = min(sg, theta_ice * bf_scalar * tan_slope * dz_sat ** n_bf * 86400.0)
            sg -= q_drai

            # stores that overflow run off at the surface
            over_g = max(0.0, sg - sg_cap)
            sg -= over_g
            over_u = max(0.0, su - su_cap)
            su -= over_u
            q_surf = q_satx + q_hort + over_g + over_u

            et = ecan + etran + esoil
            if step >= spinup_days:
                sum_p += pr
                sum_et += et
                sum_q += q_surf + q_drai
                for k in range(out_index.shape[0]):
                    v = out_index[k]
                    if v == 0:
                        val = q_surf + q_drai
                    elif v == 1:
                        val = q_surf
                    elif v == 2:
                        val = q_drai
                    elif v == 3:
                        val = et
                    elif v == 4:
                        val = ecan
                    elif v == 5:
                        val = etran
                    elif v == 6:
                        val = esoil
                    elif v == 7:
                        val = swe
                    elif v == 8:
                        val = depth - min(sg / (spec_yield * 1000.0), depth)
                    elif v == 9:
                        val = su + sg
                    else:
                        val = fsno
                    out[k, c, t] = val
        balance[c, 0] = sum_p
        balance[c, 1] = sum_et
        balance[c, 2] = sum_q
        balance[c, 3] = (wcan + swe + su + sg) - s_start


def run_columns(params: np.ndarray, col_basin: np.ndarray, inputs: ModelInputs, *,
                outputs=("qsim",), spinup_years: int = 1, dtype=np.float32, snowpack: bool = True):
    """Run the model for columns = (parameter set, basin) pairs.

    Parameters
    ----------
    params
        ``(n_columns, 16)`` parameter values in the order of
        :meth:`ParameterSpace.tang2025`; NaN stands for the basin's default
        (:func:`default_params`).
    col_basin
        ``(n_columns,)`` index of each column's basin in ``inputs``.
    inputs
        From :func:`prepare_inputs`.
    outputs
        Names from :data:`OUTPUTS` to return (ask only for what you need: each
        is ``n_columns x n_days`` numbers).
    spinup_years
        Years of spin-up (the first year of forcing repeated) before the run.
    dtype
        Float type of the returned series.
    snowpack
        ``False`` switches the snowpack off: snow melts on the day it falls,
        so there is no snow storage, no snow cover and no insulation of the
        soil by snow. A deliberately broken model for chapter 7's experiment
        on structural error; the water balance still closes.

    Returns
    -------
    series : dict
        ``{name: array (n_columns, n_days)}``.
    balance : numpy.ndarray
        ``(n_columns, 4)``: precipitation, ET, runoff and storage change (mm)
        summed over the run after spin-up.
    """
    params = np.array(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != len(_PARAMS):
        raise ValueError(f"params must be (n_columns, {len(_PARAMS)}) in the order {_PARAMS}; "
                         f"got shape {params.shape}.")
    col_basin = np.ascontiguousarray(col_basin, dtype=np.int64)
    if col_basin.shape != (params.shape[0],):
        raise ValueError("col_basin needs one basin index per column.")
    if col_basin.size and (col_basin.min() < 0 or col_basin.max() >= inputs.shape[0]):
        raise ValueError(f"col_basin values must be in [0, {inputs.shape[0] - 1}].")
    base = np.isnan(params)
    params[base] = inputs.defaults[col_basin][base]  # NaN: the basin's default
    params[:, _ZBEDROCK] = bedrock_depth(params[:, _ZBEDROCK])
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise ValueError(f"Unknown outputs {unknown}; choose from {list(OUTPUTS)}.")
    if spinup_years < 0:
        raise ValueError("spinup_years must be >= 0.")
    out_index = np.array([_OUT_INDEX[o] for o in outputs], dtype=np.int64)
    size_thread_pools()  # numba threads sized to the CPU quota, once per calling thread
    out = np.empty((len(outputs), params.shape[0], inputs.shape[1]), dtype=dtype)
    balance = np.zeros((params.shape[0], 4))
    _kernel(params, col_basin, inputs.prcp, inputs.tair, inputs.pet, inputs.gamma_frac,
            np.sqrt(inputs.vpd), inputs.lai, np.tanh(inputs.lai), np.exp(-0.5 * inputs.lai),
            inputs.statics, _ZISOI, _ZSOI, int(spinup_years * 365), bool(not snowpack), out_index,
            out, balance)
    return {name: out[i] for i, name in enumerate(outputs)}, balance


def simulate(params, forcing: xr.Dataset, attrs: pd.DataFrame, *, outputs=("qsim",),
             spinup_years: int = 1, space: ParameterSpace | None = None,
             snowpack: bool = True) -> xr.Dataset:
    """Run parameter sets in CAMELS basins and return the series as a Dataset.

    Parameters
    ----------
    params
        Parameter sets: an array ``(member, param)`` (every member runs in every
        basin), an array ``(member, basin, param)`` (basin-specific sets), a
        Dataset from :meth:`ParameterSpace.to_dataset`, or a 1-D array (one set).
    forcing
        From :func:`emucal.camels.load_basins`, over a period with no gaps.
    attrs
        From :func:`emucal.camels.attributes`.
    outputs
        Names from :data:`OUTPUTS`.
    spinup_years
        Years of spin-up before the period.
    space
        The parameter space (default: :meth:`ParameterSpace.tang2025`); values
        are checked against it.
    snowpack
        ``False``: snow melts the day it falls (see :func:`run_columns`).

    Returns
    -------
    xarray.Dataset
        Variables ``outputs`` with dimensions ``(member, basin, time)`` and
        units; ``water_balance_error`` (member, basin) in mm, P - ET - Q - dS.
    """
    space = space or ParameterSpace.tang2025()
    if space.names != _PARAMS:
        raise ValueError(f"The teaching model needs the 16 parameters of tang2025() in order; "
                         f"got {space.names}.")
    members = params.member.values if isinstance(params, xr.Dataset) else None
    values = space.validate(params)  # named parameters (a Dataset, a DataFrame) are taken by name
    if values.ndim == 1:
        values = values[None, :]
    n_basin = forcing.sizes["basin"]
    if values.ndim == 2:
        values = np.broadcast_to(values[:, None, :], (values.shape[0], n_basin, values.shape[1]))
    elif values.ndim == 3:
        if values.shape[1] != n_basin:
            raise ValueError(f"params has {values.shape[1]} basins, forcing has {n_basin}.")
    else:
        raise ValueError(f"params must be 1-D, 2-D or 3-D, got shape {values.shape}.")
    n_member = values.shape[0]
    inputs = prepare_inputs(forcing, attrs)
    col_basin = np.tile(np.arange(n_basin), n_member)
    series, balance = run_columns(values.reshape(-1, values.shape[-1]), col_basin, inputs,
                                  outputs=outputs, spinup_years=spinup_years, snowpack=snowpack)
    shape = (n_member, n_basin, inputs.shape[1])
    data_vars = {
        name: (("member", "basin", "time"), arr.reshape(shape),
               {"units": OUTPUTS[name][0], "long_name": OUTPUTS[name][1]})
        for name, arr in series.items()
    }
    err = balance[:, 0] - balance[:, 1] - balance[:, 2] - balance[:, 3]
    data_vars["water_balance_error"] = (("member", "basin"), err.reshape(n_member, n_basin),
                                        {"units": "mm", "long_name": "P - ET - Q - dS over the run"})
    return xr.Dataset(data_vars, coords={
        "member": members if members is not None else np.arange(n_member),
        "basin": forcing.basin.values, "time": forcing.time.values,
    }, attrs={"model": "emucal teaching model (CTSM hydrology, lumped, daily)",
              "spinup_years": spinup_years})
