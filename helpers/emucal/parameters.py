"""The CTSM parameters to calibrate: names, defaults, ranges, scales, and where CTSM reads them.

:class:`ParameterSpace` holds a list of :class:`Parameter` and maps parameter
values to and from the unit cube, which is where samplers, emulators and
optimisers work. :meth:`ParameterSpace.tang2025` returns the 16 parameters
that Tang, Wood & Swenson (2025) calibrated for CTSM runoff in CAMELS basins,
with the defaults and ranges of their file
``src/parameter/CTSM_CAMELS_calibparam_2410.csv`` (NCAR/CTSM_calibration).
"TN" in the meanings names the section of the CLM5 Technical Note
(Lawrence et al. 2020, https://escomp.github.io/ctsm-docs/) that describes
the process.

Kinds of parameter (``kind``):

``"value"``
    The sampled number is the parameter's value. For a per-PFT or
    per-gridcell array in CTSM, the array is scaled so that its mean equals
    the sampled value, as in Tang et al.'s ``MOASMO_parameters.py`` (line 237:
    ``newparam = meanparam / np.nanmean(param0) * param0``). ``zbedrock`` is
    such a parameter: an absolute depth to bedrock in metres, the mean of the
    basin's surface-data field after the edit.
``"shift"``
    The sampled number replaces the default, and related parameters move by
    the same difference (the rain/snow repartition temperatures; Tang et al.'s
    "Additive" binding, ``MOASMO_parameters.py`` lines 91-92).

Defaults that belong to the basin: ``zbedrock`` has no single default (the
``Default`` field of Tang's table is empty); each basin keeps the value of its
own surface data. Its :attr:`Parameter.default` is ``None`` and
:attr:`ParameterSpace.defaults` holds NaN for it. Everywhere in emucal a NaN in
a parameter set means *the base case's value*: the teaching model then uses the
basin's own depth, and :func:`emucal.ctsm.members.prepare_ensemble` leaves
the variable untouched, so that a row of :attr:`ParameterSpace.defaults`
(member 0 of :func:`emucal.sampling.sample`) is the base case exactly, as in
Tang et al.'s runs (``MOASMO_parameters.py`` lines 220-230, ``adddefault``).

Scales: Tang et al. sample every parameter uniformly between its bounds
(``MOASMO_parameters.py`` line 236, ``factor * (upper - lower) + lower``), and
their genetic algorithm searches the same linear bounds, so
:meth:`ParameterSpace.tang2025` is linear by default. ``tang2025(scale="log")``
samples the positive scale factors, rates and conductances whose range spans a
factor of ten or more uniformly in their logarithm (``log=True``): uniform
sampling of ``fff`` on [0.001, 20] puts 95% of the runs above 1 and almost
none near the default 0.5, while in log space each decade gets the same share.
Fractions (``FMAX``, ``interception_fraction``), temperatures and the depth to
bedrock stay linear. Chapter 2 compares the two scales.

Sources: NCAR/CTSM_calibration at commit 46d99b2f (2025-06-27),
``src/parameter/CTSM_CAMELS_calibparam_2410.csv`` and
``src/MOASMO_support/MOASMO_parameters.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["Parameter", "ParameterSpace"]

Kind = Literal["value", "shift"]
_KINDS = ("value", "shift")
_WHERE = ("paramfile", "namelist", "surface")
Where = Literal["paramfile", "namelist", "surface"]


@dataclass(frozen=True)
class Parameter:
    """One calibration parameter.

    Attributes
    ----------
    name
        Name exactly as in CTSM (paramfile variable, namelist entry, or
        surface-dataset field).
    default, lower, upper
        CTSM default and the calibration range. ``default=None``: the
        default is the basin's own value (``zbedrock``), NaN in
        :attr:`ParameterSpace.defaults`.
    log
        Sample uniformly in log space (see the module docstring).
    kind
        ``"value"`` or ``"shift"``.
    units
        Units of the sampled number.
    meaning
        One line on what the parameter does.
    where
        Where CTSM reads it in the current CTSM version: ``"paramfile"``,
        ``"namelist"`` or ``"surface"`` (surface dataset).
    moved
        Earlier locations, as ``((ctsm_version, where_from_that_version), ...)``:
        the parameter is read from ``where_from_that_version`` starting with
        ``ctsm_version``; before the first entry it is read from ``where_before``.
    where_before
        Where CTSM versions before the first entry of ``moved`` read it.
    per_pft
        True for parameters that CTSM holds per plant functional type.
    bound_with
        Other CTSM parameters that move with this one (for ``kind="shift"``).
    """

    name: str
    default: float | None
    lower: float
    upper: float
    log: bool = False
    kind: Kind = "value"
    units: str = "1"
    meaning: str = ""
    where: Where = "paramfile"
    moved: tuple[tuple[str, Where], ...] = ()
    where_before: Where | None = None
    per_pft: bool = False
    bound_with: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {_KINDS}.")
        if self.where not in _WHERE:
            raise ValueError(f"{self.name}: where {self.where!r} is not one of {_WHERE}.")
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower < self.upper):
            raise ValueError(f"{self.name}: lower {self.lower} must be below upper {self.upper}.")
        if self.default is None:
            return
        if not self.lower <= self.default <= self.upper:
            raise ValueError(
                f"{self.name}: default {self.default} is outside [{self.lower}, {self.upper}].")
        if self.log and self.lower <= 0:
            raise ValueError(f"{self.name}: a log-scaled parameter needs lower > 0, got {self.lower}.")

    def location(self, ctsm_version: str | None = None) -> Where:
        """Where a given CTSM version (e.g. ``"ctsm5.3.012"``) reads this parameter."""
        if ctsm_version is None or not self.moved:
            return self.where
        version = _version_key(ctsm_version)
        place = self.where_before or self.where
        for since, where in self.moved:
            if version >= _version_key(since):
                place = where
        return place


def _version_key(tag: str) -> tuple[int, ...]:
    digits = tag.lower().removeprefix("ctsm").replace("_", ".").split(".")
    try:
        return tuple(int(d) for d in digits if d)
    except ValueError as err:
        raise ValueError(f"CTSM version {tag!r} is not like 'ctsm5.3.012'.") from err


class ParameterSpace:
    """An ordered set of parameters with their ranges and scales.

    Parameters
    ----------
    parameters
        The :class:`Parameter` objects, in the order of the columns of a sample.

    Examples
    --------
    >>> space = ParameterSpace.tang2025()
    >>> len(space), space.names[:3]
    (16, ['watsat_sf', 'fff', 'medlynslope'])
    >>> u = space.to_unit(space.defaults)       # defaults in the unit cube
    >>> bool(np.allclose(space.from_unit(u), space.defaults))
    True
    """

    def __init__(self, parameters: Sequence[Parameter]):
        parameters = list(parameters)
        names = [p.name for p in parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Parameter names must be unique; repeated: {duplicates}.")
        if not parameters:
            raise ValueError("A ParameterSpace needs at least one parameter.")
        self.parameters = parameters

    # ---------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.parameters)

    def __iter__(self):
        return iter(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"{name!r} is not in this ParameterSpace; its parameters are {self.names}.")

    def __repr__(self) -> str:
        return f"ParameterSpace({len(self)} parameters: {', '.join(self.names)})"

    @property
    def names(self) -> list[str]:
        """Parameter names in column order."""
        return [p.name for p in self.parameters]

    @property
    def defaults(self) -> np.ndarray:
        """CTSM defaults, shape ``(n_params,)``; NaN where the default is the basin's own value."""
        return np.array([np.nan if p.default is None else p.default for p in self.parameters])

    @property
    def lower(self) -> np.ndarray:
        return np.array([p.lower for p in self.parameters])

    @property
    def upper(self) -> np.ndarray:
        return np.array([p.upper for p in self.parameters])

    @property
    def log(self) -> np.ndarray:
        """Boolean mask of the log-scaled parameters."""
        return np.array([p.log for p in self.parameters])

    def subset(self, names: Iterable[str]) -> "ParameterSpace":
        """A new space with only ``names`` (in that order)."""
        return ParameterSpace([self[n] for n in names])

    def with_range(self, name: str, lower: float, upper: float) -> "ParameterSpace":
        """A new space where ``name`` has the range ``[lower, upper]``."""
        self[name]  # a KeyError naming the valid parameters
        return ParameterSpace([replace(p, lower=lower, upper=upper) if p.name == name else p
                               for p in self.parameters])

    def table(self) -> pd.DataFrame:
        """The space as a table, one row per parameter (for the book)."""
        return pd.DataFrame([{
            "parameter": p.name, "default": p.default, "lower": p.lower, "upper": p.upper,
            "scale": "log" if p.log else "linear", "kind": p.kind, "units": p.units,
            "CTSM reads it from": p.where, "meaning": p.meaning,
        } for p in self.parameters]).set_index("parameter")

    # ----------------------------------------------------- unit cube mapping
    def _by_name(self, values):
        """Values whose parameters are named (DataFrame columns, a ``param`` coordinate, the keys
        of a mapping or a list of mappings, a Series' index) in this order.

        Named columns are taken by name, never by position: a table with its
        columns in another order would otherwise give each parameter another's values.
        """
        if isinstance(values, xr.Dataset) and "params" in values:  # a Dataset is a Mapping too
            values = values["params"]
        if isinstance(values, pd.Series) and all(isinstance(i, str) for i in values.index):
            values = values.to_dict()
        one = isinstance(values, Mapping)
        if one or (isinstance(values, (list, tuple)) and values
                   and all(isinstance(v, Mapping) for v in values)):  # {name: value}, or a list of them
            table = self._by_name(pd.DataFrame([values] if one else list(values)))
            return table[0] if one else table
        if isinstance(values, xr.DataArray) and "param" in values.coords and "param" in values.dims:
            names, take = [str(n) for n in values["param"].values], \
                lambda: values.transpose(..., "param").sel(param=list(self.names)).values
        elif isinstance(values, pd.DataFrame) and all(isinstance(c, str) for c in values.columns):
            names, take = list(values.columns), lambda: values[list(self.names)].to_numpy()
        else:
            return values
        if sorted(names) != sorted(self.names):
            missing = [n for n in self.names if n not in names]
            extra = [n for n in names if n not in self.names]
            raise ValueError(f"The values name other parameters than this space: missing {missing}, "
                             f"not in the space {extra}; its parameters are {list(self.names)}.")
        return take()

    def _as_2d(self, values) -> tuple[np.ndarray, bool]:
        array = np.asarray(self._by_name(values), dtype=float)
        single = array.ndim == 1
        array = np.atleast_2d(array)
        if array.shape[-1] != len(self):
            raise ValueError(f"Expected {len(self)} columns ({self.names}), got shape {array.shape}.")
        return array, single

    def to_unit(self, values) -> np.ndarray:
        """Map parameter values, shape ``(..., n_params)``, into the unit cube.

        Values are checked against their ranges first (:meth:`validate`); a
        NaN (a basin's own default) stays NaN.
        """
        x, single = self._as_2d(values)
        self.validate(x)
        lo, hi, log = self.lower, self.upper, self.log
        llo, lhi = np.log(np.where(log, lo, 1.0)), np.log(np.where(log, hi, np.e))
        with np.errstate(divide="ignore", invalid="ignore"):
            lx = np.log(np.where(log, x, 1.0))
        u = np.where(log, (lx - llo) / (lhi - llo), (x - lo) / (hi - lo))
        return u[0] if single else u

    def from_unit(self, unit) -> np.ndarray:
        """Map points of the unit cube, shape ``(..., n_params)``, to parameter values."""
        u, single = self._as_2d(unit)
        if not np.isfinite(u).all() or np.any((u < 0) | (u > 1)):
            bad = u[~(np.isfinite(u) & (u >= 0) & (u <= 1))].ravel()[0]
            raise ValueError(f"Unit-cube coordinates must be numbers in [0, 1]; got {bad!r}.")
        lo, hi, log = self.lower, self.upper, self.log
        llo, lhi = np.log(np.where(log, lo, 1.0)), np.log(np.where(log, hi, np.e))
        x = np.where(log, np.exp(llo + u * (lhi - llo)), lo + u * (hi - lo))
        # keep the bounds exact despite rounding in exp/log
        x = np.clip(x, lo, hi)
        return x[0] if single else x

    def validate(self, values) -> np.ndarray:
        """Check that every value lies in its range; return the values as an array.

        NaN is allowed: it stands for the base case's value of that parameter
        (see the module docstring).

        Raises
        ------
        ValueError
            Naming the first parameter out of range, the offending value, the
            row, and the valid range.
        """
        x, single = self._as_2d(values)
        bad = np.isinf(x) | (x < self.lower) | (x > self.upper)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])  # (row, col) or (..., row, col)
            p = self.parameters[at[-1]]
            where = f"row {at[0]}" if len(at) == 2 else f"index {at[:-1]}"
            raise ValueError(
                f"{p.name} = {float(x[at]):g} ({where}) is outside its range "
                f"[{p.lower}, {p.upper}] {p.units}."
            )
        return x[0] if single else x

    def to_dataset(self, values, member_start: int = 0) -> xr.Dataset:
        """Turn a sample, shape ``(member, param)``, into an xarray Dataset.

        The Dataset has one variable, ``params(member, param)``, and the
        parameters' defaults, ranges, scales and units as ``param`` coordinates.
        """
        x = np.atleast_2d(self.validate(values))
        member = np.arange(member_start, member_start + x.shape[0])
        return xr.Dataset(
            {"params": (("member", "param"), x, {"long_name": "parameter value"})},
            coords={
                "member": member,
                "param": self.names,
                "default": ("param", self.defaults),
                "lower": ("param", self.lower),
                "upper": ("param", self.upper),
                "log_scale": ("param", self.log),
                "units": ("param", np.array([p.units for p in self.parameters], dtype=str)),
            },
            attrs={"title": "parameter sample"},
        )

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> "ParameterSpace":
        """The space of a sample or an ensemble, from the ``param`` coordinates of ``params``.

        The inverse of :meth:`to_dataset`. ``lower`` and ``upper`` are needed;
        ``log_scale`` (default linear), ``units`` (default ``"1"``) and
        ``default`` (NaN: none) are read where present.
        """
        if "params" not in ds:
            raise ValueError(f"Not a sample or an ensemble: no variable 'params(member, param)' "
                             f"(variables: {list(ds.data_vars)}). Write one with "
                             "ParameterSpace.to_dataset or sensitivity.ensemble_from_tables.")
        p = ds["params"]
        missing = [c for c in ("lower", "upper") if c not in p.coords]
        if missing:
            raise ValueError(f"params has no {' or '.join(repr(c) for c in missing)} coordinate along "
                             "param: each parameter's range is needed to map it to the unit cube. Add "
                             "them with ds.assign_coords(lower=('param', [...]), upper=('param', [...]))"
                             " or build the file with ensemble_from_tables(..., ranges=...).")
        n = p.sizes["param"]
        col = {c: p[c].values if c in p.coords else np.full(n, fill)
               for c, fill in (("default", np.nan), ("log_scale", False), ("units", "1"))}
        default = [None if np.isnan(float(v)) else float(v) for v in col["default"]]
        return cls([Parameter(str(name), default[i], float(p["lower"].values[i]),
                              float(p["upper"].values[i]), bool(col["log_scale"][i]),
                              units=str(col["units"][i]))
                    for i, name in enumerate(p["param"].values)])

    # -------------------------------------------------------------- presets
    @classmethod
    def tang2025(cls, scale: Literal["linear", "log"] = "linear") -> "ParameterSpace":
        """The 16 CTSM parameters that Tang, Wood & Swenson (2025) calibrated.

        Defaults and ranges from ``src/parameter/CTSM_CAMELS_calibparam_2410.csv``
        in NCAR/CTSM_calibration (``zbedrock`` has no default there: each
        basin keeps its own); physical meanings from the CLM5 Technical Note
        (Lawrence et al. 2020) sections named in each line; where CTSM reads
        each parameter, and the versions where that changed, from CTSM's
        ChangeLog (ctsm5.3.010 moved ``interception_fraction`` and
        ``maximum_leaf_wetted_fraction`` from the namelist to the paramfile;
        ctsm5.4.025 moved ``baseflow_scalar`` and the rain/snow repartition
        temperatures). Tang's table lists ``interception_fraction``,
        ``baseflow_scalar`` and the repartition temperature as namelist
        variables: their CTSM version read them there.

        Parameters
        ----------
        scale
            ``"linear"`` (default): every parameter uniform between its
            bounds, as Tang et al. sampled and searched them.
            ``"log"``: the wide-ranging scale factors, rates and conductances
            uniform in their logarithm (see the module docstring).
        """
        if scale not in ("linear", "log"):
            raise ValueError(f"scale must be 'linear' or 'log', not {scale!r}.")
        log = scale == "log"
        P = Parameter
        return cls([
            P("watsat_sf", 1.0, 0.1, 10.0, log, units="1",
              meaning="scale factor on soil porosity (TN Hydrology: soil water)"),
            P("fff", 0.5, 0.001, 20.0, log, units="m-1",
              meaning="decay of saturated fraction with water-table depth, fsat = FMAX exp(-0.5 fff zwt) (TN Hydrology: surface runoff)"),
            P("medlynslope", 4.840379695, 0.1, 20.0, log, units="1", per_pft=True,
              meaning="slope g1 of the Medlyn stomatal conductance model, PFT mean (TN Stomatal resistance and photosynthesis)"),
            P("hksat_sf", 1.0, 0.1, 10.0, log, units="1",
              meaning="scale factor on saturated hydraulic conductivity (TN Hydrology: soil water)"),
            P("accum_factor", 0.1, 0.01, 1.0, log, units="1",
              meaning="how fast new snow covers the ground, snow-cover fraction on accumulation (TN Snow hydrology: snow-covered area)"),
            P("FMAX", 0.381669399, 0.1, 0.9, False, units="1", where="surface",
              meaning="maximum saturated fraction of the gridcell (TN Hydrology: surface runoff); default: a typical surface-dataset value"),
            P("om_frac_sf", 1.0, 0.1, 10.0, log, units="1",
              meaning="scale factor on soil organic matter fraction, which raises porosity and conductivity near the surface (TN Hydrology: soil water)"),
            P("e_ice", 6.0, 0.01, 20.0, log, units="1",
              meaning="ice impedance exponent: conductivity, infiltration and baseflow times 10^(-e_ice F_ice) (TN Hydrology: frozen soils; SoilHydrologyMod.F90)"),
            P("zbedrock", None, 0.1, 10.0, False, units="m", where="surface",
              meaning="depth to bedrock, the bottom of the hydrologically active soil, snapped to a soil-layer interface; at or below 0.32 m CTSM keeps the full 8.6 m column (initVerticalMod.F90) (TN Hydrology: soil water); default: the basin's own"),
            P("n_melt_coef", 200.0, 5.0, 800.0, log, units="m",
              meaning="snow-cover depletion during melt, N_melt = n_melt_coef / sigma_topo (TN Snow hydrology: snow-covered area)"),
            P("d_max", 15.0, 0.1, 500.0, log, units="mm",
              meaning="maximum dry surface layer thickness, soil evaporation resistance; CTSM caps the layer at 200 mm (SurfaceResistanceMod.F90) (TN Roughness and resistances; Swenson and Lawrence 2014)"),
            P("precip_repartition_nonglc_all_rain_t", 2.0, 0.0, 4.0, False, kind="shift", units="degC",
              where="paramfile", where_before="namelist", moved=(("ctsm5.4.025", "paramfile"),),
              bound_with=("precip_repartition_nonglc_all_snow_t", "precip_repartition_glc_all_rain_t",
                          "precip_repartition_glc_all_snow_t"),
              meaning="temperature above which all precipitation is rain; all_snow_t shifts with it (TN Atmospheric coupling: precipitation phase)"),
            P("interception_fraction", 1.0, 0.1, 1.0, False, units="1",
              where="paramfile", where_before="namelist", moved=(("ctsm5.3.010", "paramfile"),),
              meaning="scale of the fraction of precipitation intercepted by the canopy (TN Hydrology: canopy water)"),
            P("n_baseflow", 1.0, 0.1, 30.0, log, units="1",
              meaning="exponent of saturated thickness in baseflow, q = k tan(beta) dz_sat^n_baseflow (TN Hydrology: lateral sub-surface runoff); not used by hillslope columns"),
            P("liq_canopy_storage_scalar", 0.1, 0.01, 20.0, log, units="mm",
              meaning="canopy water storage capacity per unit leaf and stem area (TN Hydrology: canopy water)"),
            P("baseflow_scalar", 0.001, 1e-5, 0.1, log, units="mm s-1",
              where="paramfile", where_before="namelist", moved=(("ctsm5.4.025", "paramfile"),),
              meaning="baseflow coefficient k in q = k tan(beta) dz_sat^n_baseflow (TN Hydrology: lateral sub-surface runoff); not used by hillslope columns"),
        ])
