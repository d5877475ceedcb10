"""emucal.ctsm: CTSM ensemble files written where each CTSM version reads them, and read back.

The tests build small netCDF files with CTSM's structure (a parameter file
with scalars and a per-PFT ``medlynslope``, a surface dataset with ``FMAX``
and ``zbedrock`` on ``(lsmlat, lsmlon)``, a CIME case folder) and daily
history files in CTSM's naming and time encoding, written from the teaching
model.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import warnings
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emucal import ctsm, metrics, model, sampling
from emucal.parameters import ParameterSpace

SPACE = ParameterSpace.tang2025()
OLD, NEW = "ctsm5.2.005", "ctsm5.4.025"
PARAMFILE_NAME = "clm5_params.c200624.nc"
# medlynslope of the 17 natural and generic crop PFTs, bare soil first (zero)
SLOPE = np.array([0.0, 2.35, 2.35, 2.35, 4.12, 4.12, 4.45, 4.45, 4.45, 4.70, 4.70, 4.70,
                  2.22, 5.25, 1.62, 5.79, 5.79])
REPARTITION = ("precip_repartition_nonglc_all_rain_t", "precip_repartition_nonglc_all_snow_t",
               "precip_repartition_glc_all_rain_t", "precip_repartition_glc_all_snow_t")
# the base case's lnd_in values (not CTSM's defaults, so that a shift from them is visible)
CASE_TEMPS = dict(zip(REPARTITION, (1.5, -0.5, 0.5, -1.5)))
FILE_TEMPS = dict(zip(REPARTITION, (2.0, 0.0, 0.0, -2.0)))
FMAX = np.array([[0.30, 0.32], [0.34, 0.36]])
ZBEDROCK = np.array([[2.0, 3.0], [4.0, 5.0]])
CASE_INTERCEPTION = 0.75  # the base case's lnd_in value (not the table's default 1)


# ------------------------------------------------------------------ fixtures
def write_paramfile(path: Path, version: str, *, kelvin: bool = False, drop=()) -> Path:
    """A CTSM-like parameter file with what ``version`` reads from it."""
    data = {
        "pftname": ("pft", np.array([f"pft{i}".encode() for i in range(SLOPE.size)], dtype="S40")),
        "slatop": ("pft", np.linspace(0.0, 0.03, SLOPE.size), {"units": "m^2/gC"}),
    }
    for p in SPACE:
        if p.location(version) != "paramfile" or p.name in drop:
            continue
        if p.name == "medlynslope":
            data[p.name] = ("pft", SLOPE.copy(), {"long_name": "Medlyn slope", "units": "unitless"})
        elif p.kind == "shift":
            for name, value in FILE_TEMPS.items():
                data[name] = ((), value + (273.15 if kelvin else 0.0),
                              {"units": "K" if kelvin else "degC"})
        else:
            # a base value other than the default, so that 'set' is visible
            data[p.name] = ((), 0.5 * (p.lower + p.upper), {"units": p.units})
    ds = xr.Dataset(data, attrs={"title": "CTSM parameter file (test)"})
    # like CTSM's paramfiles since ctsm5.1.dev167: no _FillValue on any variable
    ds.to_netcdf(path, format="NETCDF3_64BIT", encoding={v: {"_FillValue": None} for v in ds})
    return path


def write_surfdata(path: Path, fmax=FMAX, drop=()) -> Path:
    dims = ("lsmlat", "lsmlon")
    data = {
        "FMAX": (dims, np.asarray(fmax, dtype=float), {"units": "unitless"}),
        "zbedrock": (dims, ZBEDROCK.copy(), {"units": "m"}),
        "PCT_NATVEG": (dims, np.full(ZBEDROCK.shape, 100.0)),
        "LONGXY": (dims, np.array([[-70.0, -69.9], [-70.0, -69.9]])),
        "LATIXY": (dims, np.array([[45.0, 45.0], [45.1, 45.1]])),
    }
    ds = xr.Dataset({k: v for k, v in data.items() if k not in drop})
    ds.to_netcdf(path, format="NETCDF3_64BIT", encoding={v: {"_FillValue": None} for v in ds})
    return path


def make_case(root: Path, name: str = "camels_01013500") -> Path:
    """A CIME case folder as far as prepare_ensemble looks at it."""
    case = root / name
    (case / "Buildconf" / "clmconf").mkdir(parents=True)
    (case / "env_case.xml").write_text("<?xml version='1.0'?>\n<file id='env_case.xml'/>\n")
    (case / "user_nl_clm").write_text(
        "! user changes for the base case\n"
        "hist_nhtfrq = 0, -24\n"
        "hist_fincl2 = 'QRUNOFF', 'QOVER', 'QDRAI'\n"
        "fsurdat = '/inputdata/surfdata_01013500.nc'\n")
    temps = "\n".join(f" {k} = {v}" for k, v in CASE_TEMPS.items())
    (case / "Buildconf" / "clmconf" / "lnd_in").write_text(
        "&atm2lnd_inparm\n"
        f"{temps}\n"
        " repartition_rain_snow = .true.\n/\n"
        "&clm_inparm\n"
        f" paramfile = '/inputdata/lnd/clm2/paramdata/{PARAMFILE_NAME}'\n"
        " fsurdat = '/inputdata/surfdata_01013500.nc'\n/\n"
        "&soilhydrology_inparm\n baseflow_scalar = 0.1d-02\n/\n"
        f"&clm_canopyhydrology_inparm\n interception_fraction = {CASE_INTERCEPTION}d0\n/\n")
    return case


def base_case_reads(version: str, paramfile: Path, fmax=FMAX, zbedrock=ZBEDROCK) -> dict:
    """What the unedited base case runs with, from the test's own constants (the expected record)."""
    out = {}
    with xr.open_dataset(paramfile) as params:
        for p in SPACE:
            where = p.location(version)
            if p.name == "medlynslope":
                out[p.name] = SLOPE[SLOPE != 0].mean()  # the vegetated PFTs, bare soil left out
            elif p.name == "FMAX":
                out[p.name] = np.mean(fmax)
            elif p.name == "zbedrock":
                out[p.name] = np.mean(zbedrock)
            elif p.kind == "shift":
                out[p.name] = (CASE_TEMPS if where == "namelist" else FILE_TEMPS)[p.name]
            elif p.name == "baseflow_scalar" and where == "namelist":
                out[p.name] = 1e-3  # 0.1d-02 in lnd_in
            elif p.name == "interception_fraction" and where == "namelist":
                out[p.name] = CASE_INTERCEPTION
            else:
                out[p.name] = float(params[p.name])
    return out


@pytest.fixture
def files(tmp_path):
    """Base case, paramfiles for both versions, surface dataset."""
    inputs = tmp_path / "inputs"
    (inputs / "old").mkdir(parents=True)
    (inputs / "new").mkdir()
    return {
        "case": make_case(tmp_path / "cases"),
        OLD: write_paramfile(inputs / "old" / PARAMFILE_NAME, OLD),
        NEW: write_paramfile(inputs / "new" / PARAMFILE_NAME, NEW),
        "surf": write_surfdata(inputs / "surfdata_01013500.nc"),
        "out": tmp_path / "ens",
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def namelist(path: Path) -> dict[str, str]:
    """Active ``name = value`` lines of a user_nl_clm (comments skipped)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", line)
        if match and not line.lstrip().startswith("!"):
            assert match.group(1) not in out, f"{match.group(1)} set twice in {path}"
            out[match.group(1)] = match.group(2)
    return out


def load(path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def ctsm_reads(row: pd.Series, version: str, base_surf: Path) -> np.ndarray:
    """What CTSM would read for one member, as values of SPACE (the test's 'CTSM')."""
    nl = namelist(row.user_nl_clm)
    params = load(nl["paramfile"].strip("'"))
    surf = load(nl["fsurdat"].strip("'"))
    base = load(base_surf)
    values = []
    for p in SPACE:
        where = p.location(version)
        if where == "namelist":
            values.append(float(nl[p.name]))
        elif where == "paramfile" and p.name == "medlynslope":
            slope = params[p.name].values
            values.append(slope[slope != 0].mean())
        elif where == "paramfile":
            values.append(float(params[p.name]))
        else:
            values.append(float(surf[p.name].mean()))
    return np.array(values)


# ------------------------------------------------------------------ prepare
@pytest.mark.parametrize("version", [OLD, NEW])
def test_values_go_where_the_version_reads_them(files, version):
    samples = sampling.sample(SPACE, 4, "lhs", seed=11, include_default=False)
    hashes = {k: sha256(files[k]) for k in (version, "surf")}
    plan = ctsm.prepare_ensemble(SPACE, samples, files["case"], files[version], files["out"],
                                 ctsm_version=version, surfdata=files["surf"])
    assert list(plan.index) == [0, 1, 2, 3]
    assert plan.attrs["locations"]["baseflow_scalar"] == ("namelist" if version == OLD
                                                          else "paramfile")
    for member, row in plan.iterrows():
        x = dict(zip(SPACE.names, samples[member]))
        assert row.folder == files["out"] / f"member_{member:04d}"
        for key in ("script", "user_nl_clm", "paramfile", "surfdata", "parameters"):
            assert Path(row[key]).is_file(), key
        nl = namelist(row.user_nl_clm)
        params, surf = load(row.paramfile), load(row.surfdata)
        # the paths in user_nl_clm are absolute and point at this member's copies
        assert nl["paramfile"] == f"'{row.paramfile}'" and Path(row.paramfile).is_absolute()
        assert nl["fsurdat"] == f"'{row.surfdata}'"
        assert nl["hist_nhtfrq"] == "0, -24"  # the base case's other settings stay
        assert "! emucal member_" in row.user_nl_clm.read_text()  # old fsurdat commented out
        # the input's format, and no _FillValue added (CTSM removed them, ctsm5.1.dev167)
        for path in (row.paramfile, row.surfdata):
            with netCDF4.Dataset(path) as nc:
                assert nc.data_model == "NETCDF3_64BIT_OFFSET"
                for var in nc.variables.values():
                    assert "_FillValue" not in var.ncattrs(), var.name
        # where each parameter went
        if version == OLD:
            for name in ("baseflow_scalar", "interception_fraction", *REPARTITION):
                assert name not in params, name
            assert float(nl["baseflow_scalar"]) == pytest.approx(x["baseflow_scalar"], rel=1e-15)
            assert float(nl["interception_fraction"]) == x["interception_fraction"]
            assert re.fullmatch(r"-?\d\.\d+e[+-]\d\d", nl["baseflow_scalar"])
        else:
            for name in ("baseflow_scalar", "interception_fraction", *REPARTITION):
                assert name not in nl, name
            assert float(params.baseflow_scalar) == x["baseflow_scalar"]
            assert float(params.interception_fraction) == x["interception_fraction"]
        for name in ("fff", "d_max", "e_ice", "watsat_sf", "n_baseflow"):
            assert float(params[name]) == x[name]
        # per-PFT: the mean of the vegetated PFTs is the sample, bare soil stays 0, ratios stay
        slope = params.medlynslope.values
        assert slope[0] == 0.0
        assert slope[1:].mean() == pytest.approx(x["medlynslope"], rel=1e-12)
        np.testing.assert_allclose(slope[1:] / SLOPE[1:], x["medlynslope"] / SLOPE[1:].mean())
        # per-gridcell FMAX and zbedrock (an absolute depth) scaled so the mean is the sample
        assert float(surf.FMAX.mean()) == pytest.approx(x["FMAX"], rel=1e-12)
        np.testing.assert_allclose(surf.FMAX / FMAX, x["FMAX"] / FMAX.mean())
        np.testing.assert_allclose(surf.zbedrock, ZBEDROCK * x["zbedrock"] / ZBEDROCK.mean())
        np.testing.assert_array_equal(surf.PCT_NATVEG, 100.0)
        np.testing.assert_array_equal(params.slatop, np.linspace(0.0, 0.03, SLOPE.size))
        assert params.pftname.values[1] == b"pft1"
        # what CTSM reads is the sample
        np.testing.assert_allclose(ctsm_reads(row, version, files["surf"]), samples[member],
                                   rtol=1e-12)
        # the changes table
        changes = pd.read_csv(row.parameters)
        assert set(changes.parameter) == set(SPACE.names)
        assert (changes.member == member).all()
    # the base files are never modified
    assert {k: sha256(files[k]) for k in (version, "surf")} == hashes


def test_script_clones_with_keepexe_and_submits(files):
    plan = ctsm.prepare_ensemble(SPACE, SPACE.to_dataset(SPACE.defaults, member_start=7),
                                 files["case"], files[NEW], files["out"],
                                 ctsm_version=NEW, surfdata=files["surf"],
                                 options={"case_root": files["out"] / "cases",
                                          "xmlchange": {"DOUT_S_ROOT": "{folder}/archive",
                                                        "JOB_WALLCLOCK_TIME": "00:30:00"},
                                          "submit_args": "--no-batch"})
    row = plan.loc[7]
    assert row.case == files["out"] / "cases" / "camels_01013500_member_0007"
    script = Path(row.script)
    assert script.stat().st_mode & 0o111  # executable
    lines = [ln for ln in script.read_text().splitlines() if ln and not ln.startswith("#")]
    commands = [ln for ln in lines if ln.startswith(("\"$CIMEROOT", "./", "cp", "cd"))]
    assert commands == [
        '"$CIMEROOT/scripts/create_clone" --case "$CASE" --clone "$BASE_CASE" --keepexe',
        'cd "$CASE"',
        f"./xmlchange DOUT_S_ROOT={row.folder}/archive",
        "./xmlchange JOB_WALLCLOCK_TIME=00:30:00",
        'cp "$MEMBER_DIR/user_nl_clm" user_nl_clm',
        "./case.setup",
        "./case.submit --no-batch",
    ]
    assert f"BASE_CASE={files['case']}" in lines
    assert f"CASE={row.case}" in lines


def test_shift_moves_bound_temperatures_in_the_namelist(files):
    space = SPACE.subset(["precip_repartition_nonglc_all_rain_t"])
    plan = ctsm.prepare_ensemble(space, [[3.0]], files["case"], files[OLD], files["out"],
                                 ctsm_version=OLD)
    nl = namelist(plan.user_nl_clm.iloc[0])
    delta = 3.0 - CASE_TEMPS["precip_repartition_nonglc_all_rain_t"]  # from the case's lnd_in
    for name in REPARTITION:
        assert float(nl[name]) == pytest.approx(CASE_TEMPS[name] + delta, abs=1e-12)
    assert "fsurdat" not in nl or "emucal" not in nl["fsurdat"]
    assert plan.surfdata.iloc[0] is None


@pytest.mark.parametrize("kelvin", [False, True])
def test_shift_moves_bound_temperatures_in_the_paramfile(files, tmp_path, kelvin):
    paramfile = write_paramfile(tmp_path / PARAMFILE_NAME, NEW, kelvin=kelvin)
    space = SPACE.subset(["precip_repartition_nonglc_all_rain_t"])
    plan = ctsm.prepare_ensemble(space, [[0.5]], files["case"], paramfile, files["out"],
                                 ctsm_version=NEW)
    params = load(plan.paramfile.iloc[0])
    nl = namelist(plan.user_nl_clm.iloc[0])
    delta = 0.5 - FILE_TEMPS["precip_repartition_nonglc_all_rain_t"]
    for name in REPARTITION:
        expected = FILE_TEMPS[name] + delta + (273.15 if kelvin else 0.0)
        assert float(params[name]) == pytest.approx(expected, abs=1e-9)
        assert name not in nl


def test_zeros_in_mean_follows_tang_et_al(files):
    space = SPACE.subset(["medlynslope"])
    plan = ctsm.prepare_ensemble(space, [[6.0]], files["case"], files[NEW], files["out"],
                                 ctsm_version=NEW, options={"zeros_in_mean": True})
    slope = load(plan.paramfile.iloc[0]).medlynslope.values
    assert slope.mean() == pytest.approx(6.0) and slope[0] == 0.0


def test_plan_ensemble_writes_nothing(files, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    plan = ctsm.plan_ensemble(SPACE, sampling.sample(SPACE, 3, seed=1), files["case"],
                              files[NEW], files["out"], ctsm_version=NEW, surfdata=files["surf"])
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not files["out"].exists()
    assert len(plan) == 3 and plan.attrs["dry_run"]
    assert plan.script.iloc[2] == files["out"] / "member_0002" / "run_case.sh"


def test_surfdata_found_in_the_case(files, tmp_path):
    case = make_case(tmp_path / "other")
    text = (case / "user_nl_clm").read_text().replace("/inputdata/surfdata_01013500.nc",
                                                      str(files["surf"]))
    (case / "user_nl_clm").write_text(text)
    plan = ctsm.prepare_ensemble(SPACE.subset(["FMAX"]), [[0.5]], case, files[NEW], files["out"],
                                 ctsm_version=NEW)
    assert float(load(plan.surfdata.iloc[0]).FMAX.mean()) == pytest.approx(0.5)


# ------------------------------------------------------------------- errors
def test_parameter_missing_from_the_paramfile(files, tmp_path):
    # ctsm5.4.025 reads baseflow_scalar from the paramfile; an older file lacks it
    with pytest.raises(KeyError, match="baseflow_scalar"):
        ctsm.prepare_ensemble(SPACE, SPACE.defaults, files["case"], files[OLD], files["out"],
                              ctsm_version=NEW, surfdata=files["surf"])
    surf = write_surfdata(tmp_path / "nozb.nc", drop=("zbedrock",))
    with pytest.raises(KeyError, match="zbedrock"):
        ctsm.prepare_ensemble(SPACE, SPACE.defaults, files["case"], files[NEW], files["out"],
                              ctsm_version=NEW, surfdata=surf)
    assert not files["out"].exists()


def test_value_out_of_range(files):
    x = SPACE.defaults.copy()
    x[SPACE.names.index("fff")] = 50.0
    with pytest.raises(ValueError, match=r"fff = 50 .*outside its range"):
        ctsm.prepare_ensemble(SPACE, x, files["case"], files[NEW], files["out"],
                              ctsm_version=NEW, surfdata=files["surf"])


def test_existing_member_folder_is_refused(files):
    kwargs = dict(ctsm_version=NEW, surfdata=files["surf"])
    ctsm.prepare_ensemble(SPACE, SPACE.defaults, files["case"], files[NEW], files["out"], **kwargs)
    stamp = sha256(files["out"] / "member_0000" / "user_nl_clm")
    other = sampling.sample(SPACE, 2, "lhs", seed=4, include_default=False)[:1]
    with pytest.raises(ValueError, match="member_0000"):
        ctsm.prepare_ensemble(SPACE, other, files["case"], files[NEW], files["out"], **kwargs)
    assert sha256(files["out"] / "member_0000" / "user_nl_clm") == stamp
    # adding members after the first ones is fine
    plan = ctsm.prepare_ensemble(SPACE, SPACE.to_dataset(SPACE.defaults, member_start=1),
                                 files["case"], files[NEW], files["out"], **kwargs)
    assert list(plan.index) == [1]


def test_other_bad_input(files, tmp_path):
    args = (SPACE, SPACE.defaults)
    with pytest.raises(ValueError, match="not a CIME case"):
        ctsm.prepare_ensemble(*args, tmp_path, files[NEW], files["out"], ctsm_version=NEW,
                              surfdata=files["surf"])
    with pytest.raises(ValueError, match="ctsm5.3.012"):
        ctsm.prepare_ensemble(*args, files["case"], files[NEW], files["out"],
                              ctsm_version="latest", surfdata=files["surf"])
    with pytest.raises(FileNotFoundError, match="nothere.nc"):
        ctsm.prepare_ensemble(*args, files["case"], tmp_path / "nothere.nc", files["out"],
                              ctsm_version=NEW, surfdata=files["surf"])
    wide = write_surfdata(tmp_path / "wide.nc", fmax=[[0.1, 0.9], [0.1, 0.1]])
    with pytest.raises(ValueError, match="FMAX = 0.8 would put a gridcell"):
        ctsm.prepare_ensemble(SPACE.subset(["FMAX"]), [[0.8]], files["case"], files[NEW],
                              files["out"], ctsm_version=NEW, surfdata=wide)
    with pytest.warns(UserWarning, match="base case reads the parameter file"):
        other = write_paramfile(tmp_path / "other_params.nc", NEW)
        ctsm.prepare_ensemble(SPACE.subset(["fff"]), [[1.0]], files["case"], other,
                              tmp_path / "ens2", ctsm_version=NEW)


def test_fortran_number():
    assert ctsm.fortran_number(0.001) == "1.0e-03"
    assert ctsm.fortran_number(2) == "2.0e+00"
    for value in (1 / 3, 4.840379695, 1e-5, -273.15):
        assert float(ctsm.fortran_number(value)) == value
    with pytest.raises(ValueError):
        ctsm.fortran_number(float("nan"))


# ------------------------------------------------------------- history files
def _noleap_ordinal(dates: pd.DatetimeIndex) -> np.ndarray:
    cum = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    return dates.year.to_numpy() * 365 + cum[dates.month.to_numpy() - 1] + dates.day.to_numpy() - 1


def write_history(folder: Path, case: str, flow: pd.Series, *, tape: str = "h1",
                  calendar: str = "noleap", bounds: bool = True, stamp: str = "end",
                  grid: str = "lndgrid", extra: dict | None = None) -> list[Path]:
    """Daily CTSM history files, one a year, from a flow series in mm/day.

    QRUNOFF in mm/s (float32, as CTSM writes it), time as days since the
    first day with the value at the end of each day (``stamp="end"``, CTSM's
    convention for averages) or its middle (``stamp="mid"``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if calendar == "noleap":
        flow = flow[~((flow.index.month == 2) & (flow.index.day == 29))]
        day = _noleap_ordinal(flow.index) - _noleap_ordinal(flow.index[:1])[0]
    else:
        day = (flow.index - flow.index[0]).days.to_numpy()
    units = f"days since {flow.index[0]:%Y-%m-%d} 00:00:00"
    paths = []
    for year in sorted(set(flow.index.year)):
        sel = flow.index.year == year
        t = day[sel] + (1.0 if stamp == "end" else 0.5)
        dims = ("time", "lndgrid") if grid == "lndgrid" else ("time", "lat", "lon")
        shape = (1,) if grid == "lndgrid" else (1, 1)
        q = (flow.to_numpy()[sel] / 86400.0).astype(np.float32).reshape((-1,) + shape)
        data = {"QRUNOFF": (dims, q, {"units": "mm/s", "long_name": "total liquid runoff"}),
                "area": (dims[1:], np.full(shape, 100.0), {"units": "km^2"}),
                "landfrac": (dims[1:], np.ones(shape))}
        for name, series in (extra or {}).items():
            data[name] = (dims, (series.reindex(flow.index).to_numpy()[sel] / 86400.0).astype(np.float32)
                          .reshape((-1,) + shape), {"units": "kg/m2/s"})
        if bounds:
            data["time_bounds"] = (("time", "hist_interval"),
                                   np.stack([day[sel], day[sel] + 1.0], axis=1))
        ds = xr.Dataset(data, coords={"time": ("time", t, {
            "units": units, "calendar": calendar, "long_name": "time",
            **({"bounds": "time_bounds"} if bounds else {})})})
        path = folder / f"{case}.clm2.{tape}.{year}-01-01-00000.nc"
        ds.to_netcdf(path, format="NETCDF3_64BIT")
        paths.append(path)
    return paths


def test_round_trip_gives_the_kge_of_the_teaching_model(toy, tmp_path):
    forcing, attrs = toy
    samples = sampling.sample(SPACE, 4, "lhs", seed=5, include_default=False)
    paramfile = write_paramfile(tmp_path / PARAMFILE_NAME, NEW)
    surf = write_surfdata(tmp_path / "surfdata.nc")
    recovered = np.empty((len(samples), forcing.sizes["basin"], len(SPACE)))
    plans = {}
    for j, basin in enumerate(forcing.basin.values):
        case = make_case(tmp_path / "cases", f"camels_{basin}")
        plans[basin] = ctsm.prepare_ensemble(
            SPACE, samples, case, paramfile, tmp_path / "ens" / basin, ctsm_version=NEW,
            surfdata=surf, options={"xmlchange": {"DOUT_S_ROOT": "{folder}/archive"}})
        for m, row in plans[basin].iterrows():
            recovered[m, j] = ctsm_reads(row, NEW, surf)
    np.testing.assert_allclose(recovered, np.broadcast_to(samples[:, None], recovered.shape),
                               rtol=1e-12)
    # "CTSM": the teaching model with what each member's files say
    run = model.simulate(recovered, forcing, attrs, outputs=("qsim", "qsub"))
    for j, basin in enumerate(forcing.basin.values):
        for m, row in plans[basin].iterrows():
            flow = run.qsim.isel(member=m, basin=j).to_series()
            write_history(row.folder / "archive" / "lnd" / "hist", row.case.name, flow,
                          tape="h1a" if j else "h1", grid="lndgrid" if j else "latlon",
                          extra={"QDRAI": run.qsub.isel(member=m, basin=j).to_series()})
    flows = ctsm.read_history({(m, b): plans[b].folder[m] / "archive"
                               for b in plans for m in plans[b].index})
    assert flows.qsim.dims == ("member", "basin", "time")
    assert flows.qsim.attrs["units"] == "mm/day" and "qdrai" in flows
    assert flows.attrs["missing"] == "" and flows.attrs["incomplete"] == ""
    assert len(ctsm.incomplete_members(flows)) == 0
    # noleap: every day but 29 February 2004, labelled with the day it averages
    no_feb29 = ~((forcing.time.dt.month == 2) & (forcing.time.dt.day == 29))
    np.testing.assert_array_equal(flows.time.values, forcing.time.values[no_feb29.values])
    direct = model.simulate(samples, forcing, attrs)
    np.testing.assert_allclose(flows.qsim.values, direct.qsim.values[..., no_feb29.values],
                               rtol=1e-6, atol=1e-9)
    got = metrics.kge_prime(flows.qsim, forcing.qobs)
    expected = metrics.kge_prime(direct.qsim.isel(time=no_feb29), forcing.qobs)
    np.testing.assert_allclose(got.values, expected.values, atol=1e-6)
    assert np.isfinite(got.values).all()


@pytest.mark.parametrize("bounds,stamp", [(True, "end"), (False, "end"), (False, "mid")])
def test_time_stamps_give_the_day_averaged(tmp_path, bounds, stamp):
    days = pd.date_range("2003-12-30", "2004-03-02", freq="D")
    flow = pd.Series(np.arange(len(days), dtype=float), index=days)
    write_history(tmp_path, "case", flow, calendar="gregorian", bounds=bounds, stamp=stamp)
    out = ctsm.read_history([tmp_path], basin="b1")
    np.testing.assert_array_equal(out.time.values, days.values)  # 29 Feb 2004 kept
    np.testing.assert_allclose(out.qsim.values[0, 0], flow.values, rtol=1e-6)


def test_gridcells_are_area_weighted(tmp_path):
    t = np.arange(3.0)
    q = np.array([[1.0, 4.0]] * 3) / 86400.0
    ds = xr.Dataset({
        "QRUNOFF": (("time", "lndgrid"), q, {"units": "mm/s"}),
        "area": ("lndgrid", [1.0, 3.0]), "landfrac": ("lndgrid", [1.0, 1.0]),
        "time_bounds": (("time", "nb"), np.stack([t, t + 1], 1)),
    }, coords={"time": ("time", t + 1, {"units": "days since 2000-01-01 00:00:00",
                                        "calendar": "noleap", "bounds": "time_bounds"})})
    ds.to_netcdf(tmp_path / "c.clm2.h1.2000-01-01-00000.nc")
    out = ctsm.read_history({0: tmp_path}, basin="b")
    np.testing.assert_allclose(out.qsim.values.ravel(), 3.25)


def test_missing_and_partial_members_are_reported(tmp_path):
    days = pd.date_range("2001-01-01", "2002-12-31", freq="D")
    flow = pd.Series(1.0, index=days)
    write_history(tmp_path / "m0", "c0", flow)
    write_history(tmp_path / "m2", "c2", flow[flow.index.year == 2001])  # stopped after a year
    with pytest.warns(UserWarning, match=r"no history files .*1:b.*too few days.*2:b"):
        out = ctsm.read_history({m: tmp_path / f"m{m}" for m in range(3)}, basin="b")
    assert out.sizes == {"member": 3, "basin": 1, "time": 730}
    assert out.attrs["missing"] == "1:b"
    assert out.attrs["incomplete"].startswith("2:b (365 of 730")
    assert np.isnan(out.qsim.sel(member=1)).all()
    assert np.isnan(out.qsim.sel(member=2, time="2002")).all()
    assert not np.isnan(out.qsim.sel(member=2, time="2001")).any()
    table = ctsm.incomplete_members(out)
    assert table[["member", "status"]].values.tolist() == [[1, "missing"], [2, "incomplete"]]
    assert table.days_read.tolist() == [0, 365]


def test_read_history_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ctsm.read_history([tmp_path], basin="b")
    with pytest.raises(ValueError, match="basin="):
        ctsm.read_history([tmp_path])
    flow = pd.Series(1.0, index=pd.date_range("2001-01-01", periods=3))
    write_history(tmp_path, "c", flow)
    with pytest.raises(KeyError, match="QSOIL"):
        ctsm.read_history([tmp_path], basin="b", variables=["QRUNOFF", "QSOIL"])
    with pytest.raises(ValueError, match="Unknown variables"):
        ctsm.read_history([tmp_path], basin="b", variables=["RAIN"])
    path = next(tmp_path.glob("*.nc"))
    with xr.open_dataset(path, decode_times=False) as ds:
        ds = ds.load()
    ds["QRUNOFF"].attrs["units"] = "mm/d"
    (tmp_path / "bad").mkdir()
    ds.to_netcdf(tmp_path / "bad" / path.name)
    with pytest.raises(ValueError, match="mm/d"):
        ctsm.read_history([tmp_path / "bad"], basin="b")


def test_samples_as_dataset_or_dataframe(files):
    x = sampling.sample(SPACE, 3, seed=4)
    ds = SPACE.to_dataset(x, member_start=20)
    plan = ctsm.plan_ensemble(SPACE, ds, files["case"], files[OLD], files["out"],
                              ctsm_version=OLD, surfdata=files["surf"])
    assert list(plan.index) == [20, 21, 22]
    np.testing.assert_array_equal(plan[SPACE.names].to_numpy()[1:], x[1:])
    # member 20 is the default row, so the base case: recorded at its own values
    assert plan.base_case.tolist() == [True, False, False]
    expected = base_case_reads(OLD, files[OLD])
    np.testing.assert_allclose(plan.loc[20, SPACE.names].to_numpy(float),
                               [expected[n] for n in SPACE.names], rtol=1e-12)
    # any column order; the index numbers the members
    frame = pd.DataFrame(x[:, ::-1], columns=SPACE.names[::-1], index=[5, 6, 7])
    plan = ctsm.prepare_ensemble(SPACE, frame, files["case"], files[OLD], files["out"],
                                 ctsm_version=OLD, surfdata=files["surf"])
    assert list(plan.index) == [5, 6, 7]
    np.testing.assert_array_equal(plan[SPACE.names].to_numpy()[1:], x[1:])
    changes = pd.read_csv(plan.parameters[6]).set_index("variable")
    # a namelist value records the base case's setting (0.1d-02 in lnd_in)
    assert changes.loc["baseflow_scalar", "base"] == pytest.approx(1e-3)
    assert changes.loc["baseflow_scalar", "new"] == x[1, SPACE.names.index("baseflow_scalar")]
    # a plain array numbers its rows from 0
    plan = ctsm.plan_ensemble(SPACE, x, files["case"], files[OLD], files["out"] / "array",
                              ctsm_version=OLD, surfdata=files["surf"])
    assert list(plan.index) == [0, 1, 2]
    for bad in (frame.set_axis(["a", "b", "c"]), frame.set_axis([5, -1, 7])):
        with pytest.raises(ValueError, match=r"non-negative integers.*member_start"):
            ctsm.plan_ensemble(SPACE, bad, files["case"], files[OLD], files["out"],
                               ctsm_version=OLD, surfdata=files["surf"])


def test_options_name_what_is_valid(files):
    with pytest.raises(ValueError, match=r"Unknown options \['dry_run'\]; valid are \['case_root', "
                                         r"'submit_args', 'xmlchange', 'zeros_in_mean'\]"):
        ctsm.plan_ensemble(SPACE, SPACE.defaults, files["case"], files[NEW], files["out"],
                           ctsm_version=NEW, surfdata=files["surf"], options={"dry_run": True})


def test_public_functions_take_at_most_8_parameters():
    for name in ("prepare_ensemble", "plan_ensemble"):
        assert len(inspect.signature(getattr(ctsm, name)).parameters) <= 8, name


def test_period_files_and_tapes(tmp_path):
    days = pd.date_range("2001-01-01", "2002-12-31", freq="D")
    write_history(tmp_path / "a", "c", pd.Series(2.0, index=days), tape="h1a")
    # instantaneous and other tapes are not read
    write_history(tmp_path / "a", "c", pd.Series(9.0, index=days), tape="h1i")
    write_history(tmp_path / "a", "c", pd.Series(9.0, index=days), tape="h0")
    write_history(tmp_path / "b", "c", pd.Series(2.0, index=days[:500]))
    runs = {(0, "x"): tmp_path / "a", (1, "x"): str(tmp_path / "b" / "c.clm2.h1.*.nc")}
    out = ctsm.read_history(runs, start="2001-03-01", end="2001-12-31")
    assert out.sizes["time"] == 306
    np.testing.assert_allclose(out.qsim, 2.0, rtol=1e-6)
    assert out.attrs["missing"] == out.attrs["incomplete"] == ""
    with pytest.warns(UserWarning, match="too few days"):
        out = ctsm.read_history(runs, start="2001-01-01", end="2003-12-31")
    assert out.sizes["time"] == 3 * 365  # noleap runs: no 29 February expected
    assert ctsm.incomplete_members(out).days_read.tolist() == [730, 500]


def test_example_case_feeds_prepare_ensemble(tmp_path):
    files = ctsm.example_case(tmp_path / "example", ctsm_version="ctsm5.3.012")
    samples = sampling.sample(SPACE, 3, "lhs", seed=0)
    table = ctsm.prepare_ensemble(SPACE, samples, files["case"], files["paramfile"],
                                  tmp_path / "members", ctsm_version="ctsm5.3.012",
                                  surfdata=files["surfdata"])
    assert len(table) == 3
    member = tmp_path / "members" / "member_0001"
    nl = namelist(member / "user_nl_clm")
    assert float(nl["baseflow_scalar"].replace("d", "e")) == pytest.approx(samples[1, -1])
    with xr.open_dataset(next(member.glob("*param*.nc"))) as p:
        slope = p["medlynslope"].values
        assert slope[0] == 0 and slope[1:].mean() == pytest.approx(samples[1, 2])


def test_default_member_is_the_base_case_unedited(files):
    # Tang et al.'s member 0 is the base case itself (MOASMO_parameters.py, adddefault)
    samples = sampling.sample(SPACE, 3, "lhs", seed=2)
    plan = ctsm.prepare_ensemble(SPACE, samples, files["case"], files[NEW], files["out"],
                                 ctsm_version=NEW, surfdata=files["surf"])
    row = plan.loc[0]
    assert row.paramfile is None and row.surfdata is None
    assert sorted(p.name for p in row.folder.iterdir() if not p.name.startswith(".")) == [
        "parameters.csv", "run_case.sh",
                                                          "user_nl_clm"]
    nl = namelist(row.user_nl_clm)
    assert "emucal" not in nl.get("fsurdat", "") and "paramfile" not in nl
    assert pd.read_csv(row.parameters).empty
    # a NaN elsewhere leaves just that parameter alone
    x = samples[1].copy()
    x[SPACE.names.index("fff")] = np.nan
    plan = ctsm.prepare_ensemble(SPACE, SPACE.to_dataset(x, member_start=5), files["case"],
                                 files[NEW], files["out"], ctsm_version=NEW, surfdata=files["surf"])
    params = load(plan.paramfile.iloc[0])
    with xr.open_dataset(files[NEW]) as base:
        assert float(params.fff) == float(base.fff)
    assert float(params.d_max) == x[SPACE.names.index("d_max")]
    assert "fff" not in set(pd.read_csv(plan.parameters.iloc[0]).parameter)


@pytest.mark.parametrize("zbedrock, sf", [(-1.0, 2.0), (3.0, 1.0), (3.0, 0.5)])
def test_paramfile_zbedrock_and_scale_factor_are_honoured(files, tmp_path, zbedrock, sf):
    # ctsm5.2.027+: paramfile zbedrock >= 0 replaces the surface field; zbedrock_sf scales it
    path = tmp_path / "zb_params.nc"
    with xr.open_dataset(files[NEW]) as ds:
        ds = ds.load()
    ds["zbedrock"] = ((), zbedrock)
    ds["zbedrock_sf"] = ((), sf)
    ds.to_netcdf(path, format="NETCDF3_64BIT")
    space = SPACE.subset(["zbedrock"])
    plan = ctsm.prepare_ensemble(space, [[4.0]], files["case"], path, files["out"],
                                 ctsm_version=NEW, surfdata=files["surf"])
    params = load(plan.paramfile.iloc[0]) if plan.paramfile.iloc[0] is not None else ds
    surf = load(plan.surfdata.iloc[0]) if plan.surfdata.iloc[0] is not None else load(files["surf"])
    # what CTSM uses (initVerticalMod.F90)
    used = surf.zbedrock.values
    if float(params.zbedrock) >= 0:
        used = np.full_like(used, float(params.zbedrock))
    used = float(params.zbedrock_sf) * used
    assert used.mean() == pytest.approx(4.0, rel=1e-12)


def test_perturbing_what_the_base_case_ignores_warns(files):
    case = files["case"]
    with open(case / "user_nl_clm", "a") as f:
        f.write("use_hillslope = .true.\nuse_hillslope_routing = .true.\nuse_bedrock = .false.\n")
    with pytest.warns(UserWarning, match="hillslope.*baseflow_scalar"):
        with pytest.warns(UserWarning, match="use_bedrock"):
            ctsm.plan_ensemble(SPACE, SPACE.defaults, case, files[NEW], files["out"],
                               ctsm_version=NEW, surfdata=files["surf"])


def test_paths_with_quotes_stay_valid_fortran_strings(files, tmp_path):
    out = tmp_path / "Tang's runs"
    plan = ctsm.prepare_ensemble(SPACE.subset(["fff"]), [[1.0]], files["case"], files[NEW], out,
                                 ctsm_version=NEW)
    text = namelist(plan.user_nl_clm.iloc[0])["paramfile"]
    assert re.fullmatch(r"'([^']|'')*'", text)  # a single Fortran string
    assert text[1:-1].replace("''", "'") == str(plan.paramfile.iloc[0])


def test_an_interrupted_preparation_resumes_and_deletes_only_its_own_files(files, monkeypatch):
    samples = sampling.sample(SPACE, 4, "lhs", seed=3)
    kwargs = dict(ctsm_version=NEW, surfdata=files["surf"])
    real, calls = ctsm.members._write_edited, []

    def dies_on_member_2(source, target, *args):
        calls.append(target)
        if "member_0002" in str(target):
            raise KeyboardInterrupt
        return real(source, target, *args)

    monkeypatch.setattr(ctsm.members, "_write_edited", dies_on_member_2)
    with pytest.raises(KeyboardInterrupt):
        ctsm.prepare_ensemble(SPACE, samples, files["case"], files[NEW], files["out"], **kwargs)
    assert (files["out"] / "member_0002.part").is_dir()
    before = sha256(files["out"] / "member_0001" / "user_nl_clm")
    monkeypatch.setattr(ctsm.members, "_write_edited", real)
    plan = ctsm.prepare_ensemble(SPACE, samples, files["case"], files[NEW], files["out"], **kwargs)
    assert list(plan.index) == [0, 1, 2, 3]
    assert sorted(p.name for p in files["out"].iterdir()) == (
        [".emucal-inputs.json", "base_values.csv"] + [f"member_{m:04d}" for m in range(4)])
    assert sha256(files["out"] / "member_0001" / "user_nl_clm") == before  # kept, not rewritten
    # a .part folder that emucal did not make is never deleted
    stranger = files["out"] / "member_0004.part"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    more = sampling.sample(SPACE, 2, "lhs", seed=9, include_default=False)[:1]
    with pytest.raises(ValueError, match="not made by emucal"):
        ctsm.prepare_ensemble(SPACE, SPACE.to_dataset(more, member_start=4), files["case"],
                              files[NEW], files["out"], **kwargs)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_history_dates_outside_the_calendar_range_are_refused():
    import cftime

    from emucal.ctsm import history

    ok = history._dates([cftime.DatetimeNoLeap(2001, 3, 1)])
    assert str(ok[0].date()) == "2001-03-01"
    with pytest.raises(ValueError, match="model years 1 to 1"):
        history._dates([cftime.DatetimeNoLeap(1, 1, 1)])


# ------------------------------------------------------ the base case's own values
@pytest.mark.parametrize("version", [OLD, NEW])
def test_base_case_member_is_recorded_at_the_base_case_values(files, version):
    # Tang et al. record member 0 at the case's own values (MOASMO_parameters.py lines 130-155,
    # 220-231), not at their table's defaults (FMAX 0.3817, medlynslope 4.84)
    samples = sampling.sample(SPACE, 3, "lhs", seed=8)
    x = samples[2].copy()
    x[SPACE.names.index("FMAX")] = np.nan  # a NaN keeps the basin's own FMAX
    plan = ctsm.prepare_ensemble(SPACE, np.vstack([samples[:2], x]), files["case"], files[version],
                                 files["out"], ctsm_version=version, surfdata=files["surf"])
    expected = base_case_reads(version, files[version])
    names = SPACE.names
    want = np.array([expected[n] for n in names])
    np.testing.assert_allclose(plan.loc[0, names].to_numpy(float), want, rtol=1e-12)
    assert plan.loc[0, "FMAX"] == pytest.approx(FMAX.mean()) != pytest.approx(SPACE["FMAX"].default)
    assert plan.loc[0, "medlynslope"] != pytest.approx(SPACE["medlynslope"].default)
    assert plan.base_case.tolist() == [True, False, False]
    np.testing.assert_allclose(pd.Series(plan.attrs["base_values"])[names].to_numpy(), want, rtol=1e-12)
    # the sampled members are recorded at their samples, the NaN at the base value
    np.testing.assert_array_equal(plan.loc[1, names].to_numpy(float), samples[1])
    assert plan.loc[2, "FMAX"] == pytest.approx(FMAX.mean())
    assert float(load(plan.loc[2, "surfdata"]).FMAX.mean()) == pytest.approx(FMAX.mean())
    # and out_dir keeps the record
    table = pd.read_csv(files["out"] / "base_values.csv", index_col="parameter")
    np.testing.assert_allclose(table.loc[names, "base"].to_numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(table.loc[names, "default"].to_numpy(), SPACE.defaults, equal_nan=True)


def test_base_values_lists_the_files_beside_the_defaults(files, tmp_path):
    table = ctsm.base_values(SPACE, files[OLD], ctsm_version=OLD, surfdata=files["surf"],
                             base_case=files["case"])
    expected = base_case_reads(OLD, files[OLD])
    assert list(table.index) == SPACE.names
    np.testing.assert_allclose(table["base"].to_numpy(), [expected[n] for n in SPACE.names], rtol=1e-12)
    np.testing.assert_allclose(table["default"].to_numpy(), SPACE.defaults, equal_nan=True)
    assert table.loc["baseflow_scalar", "location"] == "namelist"
    assert table.loc["baseflow_scalar", "file"].endswith("lnd_in")
    assert table.loc["FMAX", "file"] == str(files["surf"].resolve())
    assert table.in_range.all()
    # where the base value sits in the range: FMAX 0.33 in [0.1, 0.9]
    assert table.loc["FMAX", "unit"] == pytest.approx((FMAX.mean() - 0.1) / 0.8)
    # Tang et al.'s mean over every PFT, zeros included
    with_zeros = ctsm.base_values(SPACE, files[NEW], ctsm_version=NEW, zeros_in_mean=True)
    assert with_zeros.loc["medlynslope", "base"] == pytest.approx(SLOPE.mean())
    # without a surface dataset or a case: surface values unknown, shifts at CTSM's defaults
    alone = ctsm.base_values(SPACE, files[OLD], ctsm_version=OLD)
    assert np.isnan(alone.loc["FMAX", "base"]) and np.isnan(alone.loc["baseflow_scalar", "base"])
    assert alone.loc["precip_repartition_nonglc_all_rain_t", "base"] == 2.0
    # a paramfile value outside the range, and a temperature in kelvin
    odd = write_paramfile(tmp_path / "odd_params.nc", NEW, kelvin=True)
    with xr.open_dataset(odd) as ds:
        ds = ds.load()
    ds["fff"] = ((), 30.0)
    ds.to_netcdf(tmp_path / "odd2.nc", format="NETCDF3_64BIT")
    odd_table = ctsm.base_values(SPACE, tmp_path / "odd2.nc", ctsm_version=NEW)
    assert not odd_table.loc["fff", "in_range"] and odd_table.loc["fff", "unit"] > 1
    assert odd_table.loc["precip_repartition_nonglc_all_rain_t", "base"] == pytest.approx(2.0)
    with pytest.raises(KeyError, match="baseflow_scalar"):
        ctsm.base_values(SPACE, files[OLD], ctsm_version=NEW)
    # prepare_ensemble says when the base-case member lies outside the space
    with pytest.warns(UserWarning, match=r"outside the space: fff = 30"):
        ctsm.plan_ensemble(SPACE, SPACE.defaults, files["case"], tmp_path / "odd2.nc",
                           files["out"], ctsm_version=NEW, surfdata=files["surf"])


def test_ensemble_params_place_the_base_member_at_each_basins_values(tmp_path):
    from emucal import emulators

    paramfile = write_paramfile(tmp_path / PARAMFILE_NAME, NEW)
    samples = sampling.sample(SPACE, 4, "lhs", seed=6)
    fmax = {"01013500": FMAX, "01022500": FMAX * 2}
    plans = {}
    for basin in fmax:
        surf = write_surfdata(tmp_path / f"surfdata_{basin}.nc", fmax=fmax[basin])
        case = make_case(tmp_path / "cases", f"camels_{basin}")
        plans[basin] = ctsm.plan_ensemble(SPACE, samples, case, paramfile, tmp_path / "ens" / basin,
                                          ctsm_version=NEW, surfdata=surf)
    params = ctsm.ensemble_params(SPACE, plans)
    assert params.params.dims == ("member", "param") and params.defaults.dims == ("basin", "param")
    np.testing.assert_array_equal(params.params.values[1:], samples[1:])
    # member 0: FMAX differs by basin (NaN: each basin's own), the shared paramfile's values do not
    row = params.params.sel(member=0).to_series()
    assert np.isnan(row["FMAX"]) and row["fff"] == float(xr.open_dataset(paramfile).fff)
    np.testing.assert_allclose(params.defaults.sel(param="FMAX"), [FMAX.mean(), 2 * FMAX.mean()])
    # an emulator's training data puts member 0 where each basin's base case ran
    skill = xr.DataArray(np.zeros((4, 2, 1)), dims=("member", "basin", "period"),
                         coords={"member": range(4), "basin": list(fmax), "period": ["calibration"]})
    x, _ = emulators.sse_data(xr.merge([params, skill.rename("norm_kge")]), SPACE)
    for j, basin in enumerate(fmax):
        want = base_case_reads(NEW, paramfile, fmax=fmax[basin])
        np.testing.assert_allclose(x[j, 0], SPACE.to_unit(np.array([want[n] for n in SPACE.names])),
                                   rtol=1e-12)
        np.testing.assert_allclose(x[j, 1:], SPACE.to_unit(samples[1:]), rtol=1e-12)
    # a basin prepared from other samples is refused, as is a table of something else
    other = ctsm.plan_ensemble(SPACE, sampling.sample(SPACE, 4, "lhs", seed=7), make_case(
        tmp_path / "cases", "camels_x"), paramfile, tmp_path / "ens" / "x", ctsm_version=NEW,
        surfdata=tmp_path / "surfdata_01013500.nc")
    with pytest.raises(ValueError, match="Member 1 has"):
        ctsm.ensemble_params(SPACE, {**plans, "x": other})
    with pytest.raises(ValueError, match="not a table of prepare_ensemble"):
        ctsm.ensemble_params(SPACE, {"01013500": pd.DataFrame(samples, columns=SPACE.names)})


def test_a_row_at_the_base_values_is_the_base_case(files):
    base = ctsm.base_values(SPACE, files[NEW], ctsm_version=NEW, surfdata=files["surf"],
                            base_case=files["case"])
    plan = ctsm.prepare_ensemble(SPACE, base["base"].to_numpy()[None], files["case"], files[NEW],
                                 files["out"], ctsm_version=NEW, surfdata=files["surf"])
    assert plan.base_case.iloc[0] and plan.paramfile.iloc[0] is None and plan.surfdata.iloc[0] is None


def test_a_changed_base_case_is_refused_in_the_same_out_dir(files, tmp_path):
    kwargs = dict(ctsm_version=NEW, surfdata=files["surf"])
    ctsm.prepare_ensemble(SPACE, SPACE.defaults, files["case"], files[NEW], files["out"], **kwargs)
    write_surfdata(files["surf"], fmax=FMAX * 2)  # the basin's FMAX changed since
    more = SPACE.to_dataset(sampling.sample(SPACE, 2, seed=1, include_default=False)[:1],
                            member_start=1)
    with pytest.raises(ValueError, match=r"records other base values.*FMAX: 0.33 there, 0.66 now"):
        ctsm.prepare_ensemble(SPACE, more, files["case"], files[NEW], files["out"], **kwargs)


def test_members_read_the_given_paramfile_when_the_case_reads_another(files, tmp_path):
    other = write_paramfile(tmp_path / "other_params.nc", NEW)
    with pytest.warns(UserWarning, match="base case reads the parameter file"):
        plan = ctsm.prepare_ensemble(SPACE.subset(["fff"]), [[0.5 * (0.001 + 20.0)], [1.0]],
                                     files["case"], other, files["out"], ctsm_version=NEW)
    # member 0 sits at the given file's value, so it is the base member and reads that file
    assert plan.base_case.tolist() == [True, False]
    assert namelist(plan.user_nl_clm.iloc[0])["paramfile"] == f"'{other.resolve()}'"
    assert namelist(plan.user_nl_clm.iloc[1])["paramfile"] == f"'{plan.paramfile.iloc[1]}'"


@pytest.mark.parametrize("method, warns", [("SetLowlandUpland", True), ("FromFile", True),
                                           ("Uniform", False)])
def test_zbedrock_with_a_hillslope_soil_profile_warns(files, method, warns):
    # HillslopeHydrologyMod.F90 (ctsm5.4.053), SetHillslopeSoilThickness: profiles other than
    # 'Uniform' reset the bedrock layer of hillslope columns after initVertical read zbedrock
    with open(files["case"] / "user_nl_clm", "a") as f:
        f.write(f"use_hillslope = .true.\nhillslope_soil_profile_method = '{method}'\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctsm.plan_ensemble(SPACE.subset(["zbedrock"]), [[2.0]], files["case"], files[NEW],
                           files["out"], ctsm_version=NEW, surfdata=files["surf"])
    said = [str(w.message) for w in caught if "hillslope_soil_profile_method" in str(w.message)]
    assert bool(said) == warns
    if warns:
        assert method in said[0] and "zbedrock" in said[0]


def test_read_history_start_leaves_out_the_first_year(tmp_path):
    # runs start from a restart spun up with the default parameters: the first year is discarded
    days = pd.date_range("2000-10-01", "2002-09-30", freq="D")
    flow = pd.Series(np.where(days < "2001-10-01", 50.0, 1.0), index=days)
    write_history(tmp_path / "m0", "c0", flow)
    out = ctsm.read_history([tmp_path / "m0"], basin="b", start="2001-10-01", end="2002-09-30")
    assert str(out.time.values[0])[:10] == "2001-10-01" and out.sizes["time"] == 365
    np.testing.assert_allclose(out.qsim.values, 1.0, rtol=1e-6)
    assert out.expected_days.item() == 365 and out.days_read.item() == 365


# ------------------------------------------------------- nothing read wrong (issue 30)
@pytest.mark.parametrize("hole", ["file", "inside"])
def test_holes_in_the_history_are_named_and_listed(tmp_path, hole):
    days = pd.date_range("2001-01-01", "2003-12-31", freq="D")
    flow = pd.Series(1.0, index=days)
    if hole == "inside":  # five days missing between two records of one file with time_bounds
        lost = pd.date_range("2002-03-10", "2002-03-14")
        write_history(tmp_path / "m0", "c0", flow.drop(lost))
        where = "inside c0.clm2.h1.2002-01-01-00000.nc"
    else:  # the history file of 2002 is missing
        lost = pd.date_range("2002-01-01", "2002-12-31")
        write_history(tmp_path / "m0", "c0", flow)[1].unlink()
        where = "between c0.clm2.h1.2001-01-01-00000.nc and c0.clm2.h1.2003-01-01-00000.nc"
    said = f"0:b ({1095 - len(lost)} of 1095 days; missing {lost[0]:%Y-%m-%d} to {lost[-1]:%Y-%m-%d} {where})"
    with pytest.warns(UserWarning, match=re.escape(said)):
        out = ctsm.read_history([tmp_path / "m0"], basin="b")
    assert out.sizes["time"] == 1095 and np.isnan(out.qsim.sel(time=lost)).all()
    assert ctsm.incomplete_members(out)[["member", "status", "days_read"]].values.tolist() == [
        [0, "incomplete", 1095 - len(lost)]]


@pytest.mark.parametrize("lines, why", [
    ("interception_fraction = 0.5, baseflow_scalar = 0.01", r"shares the line with \['interception_fraction'\]"),
    ("baseflow_scalar = 0.01, hist_mfilt = 365", r"shares the line with \['hist_mfilt'\]"),
    ("hist_mfilt = 1; baseflow_scalar = 0.01 ! one line", "shares the line"),
    ("baseflow_scalar = 0.01,\n\n  0.02", "continues on the next line"),
    ("hist_fincl3 = 'QRUNOFF',\n  'QOVER'\nbaseflow_scalar = 0.01", None),  # not ours to edit: kept
])
def test_base_user_nl_clm_lines_that_cannot_be_edited_are_refused(files, lines, why):
    path = files["case"] / "user_nl_clm"
    line = len(path.read_text().splitlines()) + 1
    path.write_text(path.read_text() + lines + "\n")
    args = (SPACE.subset(["baseflow_scalar"]), [[0.03]], files["case"], files[OLD], files["out"])
    if why is None:
        plan = ctsm.prepare_ensemble(*args, ctsm_version=OLD)
        assert namelist(plan.user_nl_clm.iloc[0])["baseflow_scalar"] == "3.0e-02"
        assert "  'QOVER'\n" in plan.user_nl_clm.iloc[0].read_text()
        return
    with pytest.raises(ValueError, match=rf"user_nl_clm, line {line}: baseflow_scalar {why}"):
        ctsm.prepare_ensemble(*args, ctsm_version=OLD)
    assert not files["out"].exists()


def test_a_replaced_paramfile_is_refused_in_the_same_out_dir(files, tmp_path):
    kwargs = dict(ctsm_version=NEW, surfdata=files["surf"])
    samples = sampling.sample(SPACE, 3, "lhs", seed=12, include_default=False)
    moved = tmp_path / "moved" / PARAMFILE_NAME  # the same bytes elsewhere are the same file
    moved.parent.mkdir()
    moved.write_bytes(files[NEW].read_bytes())
    ctsm.prepare_ensemble(SPACE, samples[:1], files["case"], files[NEW], files["out"], **kwargs)
    ctsm.prepare_ensemble(SPACE, SPACE.to_dataset(samples[1:2], member_start=1), files["case"],
                          moved, files["out"], **kwargs)
    with xr.open_dataset(files[NEW]) as ds:  # replaced: a variable that is not sampled changed
        ds = ds.load()
    ds["slatop"] = ds.slatop * 2
    ds.to_netcdf(files[NEW], format="NETCDF3_64BIT", encoding={v: {"_FillValue": None} for v in ds})
    with pytest.raises(ValueError, match=rf"paramfile: {re.escape(str(moved))} \(sha256 \w{{12}}\) "
                                         rf"there, {re.escape(str(files[NEW]))} \(sha256 \w{{12}}\) now"):
        ctsm.prepare_ensemble(SPACE, SPACE.to_dataset(samples[2:], member_start=2), files["case"],
                              files[NEW], files["out"], **kwargs)
    assert not (files["out"] / "member_0002").exists()


def test_folders_with_brackets_are_not_glob_patterns(tmp_path):
    days = pd.date_range("2001-01-01", "2001-12-31", freq="D")
    write_history(tmp_path / "ens[1]" / "m0", "c0", pd.Series(1.0, index=days))
    write_history(tmp_path / "ens1" / "m0", "c0", pd.Series(5.0, index=days))  # what [1] matches
    for where in (tmp_path / "ens[1]" / "m0", tmp_path / "ens[1]" / "m0" / "c0.clm2.h1.*.nc"):
        out = ctsm.read_history([where], basin="b")
        np.testing.assert_allclose(out.qsim, 1.0, rtol=1e-6)


def test_runs_that_would_take_another_runs_days_are_refused(tmp_path):
    # issue 30: two members given one folder read the same flow; a folder holding two
    # cases' files gave the run the later case's days; an int basin lost its zero;
    # start before the runs was dropped and the runs counted complete
    days = pd.date_range("2001-01-01", "2001-12-31", freq="D")
    write_history(tmp_path / "m0", "c0", pd.Series(1.0, index=days))
    write_history(tmp_path / "m1", "c1", pd.Series(2.0, index=days))
    with pytest.raises(ValueError, match=r"Runs 0:b and 1:b .*same history files"):
        ctsm.read_history([tmp_path / "m0", tmp_path / "m0"], basin="b")
    write_history(tmp_path / "m0", "c1", pd.Series(2.0, index=days))
    with pytest.raises(ValueError, match=r"2 cases \['c0', 'c1'\]"):
        ctsm.read_history([tmp_path / "m0"], basin="b")
    with pytest.raises(TypeError, match="'01013500'"):
        ctsm.read_history([tmp_path / "m1"], basin=1013500)
    with pytest.raises(ValueError, match="start 2001-06-01 is after end 2001-02-01"):
        ctsm.read_history([tmp_path / "m1"], basin="b", start="2001-06-01", end="2001-02-01")
    with pytest.warns(UserWarning, match="missing 2000-12-01 to 2000-12-31 before"):
        out = ctsm.read_history([tmp_path / "m1"], basin="b", start="2000-12-01")
    assert out.sizes["time"] == 396 and out.attrs["incomplete"].startswith("0:b (365 of 396")
    out = ctsm.read_history([tmp_path / "m1"], basin="b", variables="QRUNOFF")  # one name
    assert list(out.data_vars) == ["qsim", "days_read"]


def test_a_history_file_cut_short_is_named_as_damaged(tmp_path):
    days = pd.date_range("2001-01-01", "2001-12-31", freq="D")
    (path,) = write_history(tmp_path / "a", "c", pd.Series(2.0, index=days))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # a run that stopped while writing
    with pytest.raises(ValueError, match="have no time interval.*cut short"):
        ctsm.read_history({(0, "01013500"): tmp_path / "a"})
