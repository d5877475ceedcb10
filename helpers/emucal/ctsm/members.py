r"""Writing the members of a CTSM perturbed-parameter ensemble.

The first end of a CTSM ensemble (the second is :mod:`emucal.ctsm.history`);
the book's appendix "Running the ensemble on an HPC system" walks through it.
:func:`example_case` writes a stand-in base case to try it without CTSM, and
:func:`fortran_number` writes a number as a namelist reads it.

Where CTSM reads a parameter (:meth:`emucal.parameters.Parameter.location`,
by CTSM version): the **parameter file** (each member gets a byte copy of the
base file with only its variables rewritten in place, same format and types,
no ``_FillValue`` added, as CTSM's ``set_paramfile.py`` does and as CTSM's
files are since ctsm5.1.dev167, ``doc/ChangeLog``); the **namelist**
(``name = value`` lines in ``user_nl_clm``; ``interception_fraction`` moved
to the paramfile in ctsm5.3.010, ``baseflow_scalar`` and the rain/snow
repartition temperatures in ctsm5.4.025); the **surface dataset** (``FMAX``
and ``zbedrock`` per gridcell: an edited copy). Since ctsm5.2.027 the paramfile
may carry ``zbedrock`` (a value >= 0 overrides the surface field) and
``zbedrock_sf`` (scales it; ``initVerticalMod.F90``); the member's depth is
then written where CTSM uses it, and ``parameters.csv`` says where.

How a sampled value becomes CTSM input follows Tang et al.'s
``MOASMO_parameters.py`` (NCAR/CTSM_calibration), by
:attr:`~emucal.parameters.Parameter.kind`: a ``"value"`` sets a number, or
scales an array (per PFT, per gridcell) by ``sample / mean(array)`` so that
its mean becomes the sample and the ratios stay; zeros (bare soil) and fill
values stay as they are and are left out of the mean (Tang et al. averaged
over every entry, zeros included: ``options={"zeros_in_mean": True}``). A
``"shift"`` (``precip_repartition_nonglc_all_rain_t``) sets the value and
moves the parameters in :attr:`~emucal.parameters.Parameter.bound_with` by
the same difference. A NaN leaves a parameter as the base case has it; a row
equal to the space's defaults, or to the base case's own values, is the base
case itself, with nothing edited (Tang et al.'s member 0, ``adddefault``).
That member is recorded at the base files' own values (:func:`base_values`;
``read_save_load_all_default_parameters`` in ``MOASMO_parameters.py``), and
:func:`ensemble_params` turns the plans of many basins into training inputs.
Base values come from the base files, or for namelist parameters from
``user_nl_clm``, ``Buildconf/clmconf/lnd_in`` and CTSM's defaults.

On the cluster, member ``N``'s ``run_case.sh`` runs CIME's ``create_clone
--keepexe`` (a new case sharing the base case's executable: no build),
optionally ``./xmlchange``, installs the member's ``user_nl_clm`` (the base
case's, with earlier lines that set the same variables commented out), then
``./case.setup`` and ``./case.submit`` (``options={"submit_args":
"--no-batch"}`` runs it inside a job you already hold).

References
----------
Tang, G., Wood, A. W. and Swenson, S. (2025), On using AI-based large-sample
emulators for land/hydrology model calibration and regionalization, Water
Resour. Res. 61, e2024WR039525; code: https://github.com/NCAR/CTSM_calibration.
Lawrence, D. M. et al. (2019), The Community Land Model version 5, J. Adv.
Model. Earth Syst. 11, 4245-4287 (parameter files).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from ..parameters import Parameter, ParameterSpace, _version_key

__all__ = ["NAMELIST_DEFAULTS", "base_values", "ensemble_params", "example_case", "fortran_number",
           "plan_ensemble", "prepare_ensemble"]

#: CTSM's namelist defaults for the parameters that a shift moves, in degC
#: (``namelist_defaults_ctsm.xml``, CLM5 physics). Used only when the base
#: case sets neither in ``user_nl_clm`` nor in ``Buildconf/clmconf/lnd_in``.
NAMELIST_DEFAULTS = {
    "precip_repartition_nonglc_all_rain_t": 2.0,
    "precip_repartition_nonglc_all_snow_t": 0.0,
    "precip_repartition_glc_all_rain_t": 0.0,
    "precip_repartition_glc_all_snow_t": -2.0,
}

_STAMP = ".emucal-member.json"  # what a finished member folder was made from
_BASE_FILE = "base_values.csv"  # the base case's values, in out_dir
_INPUTS = ".emucal-inputs.json"  # sha256 of the base files the members of out_dir are made from
_PART_MARK = ".emucal-part"  # marks a member folder that emucal is still writing
_FILL_LIMIT = 1e30  # CTSM's fill value is 1e36; anything this large is not data
_KELVIN = 273.15
#: what ``options`` of :func:`prepare_ensemble` may set, and the defaults
_OPTIONS = {"case_root": None, "xmlchange": {}, "submit_args": "", "zeros_in_mean": False}


# ====================================================================== helpers
def fortran_number(value: float) -> str:
    """Format a number for a Fortran namelist, exactly and unambiguously.

    The shortest decimal that reads back as the same double, in exponent
    form with at least one digit after the point, e.g. ``1.0e-03`` or
    ``2.5e+00``. Fortran reads it into a ``real(r8)`` without loss.

    Parameters
    ----------
    value
        A finite number.

    Returns
    -------
    str
        The formatted number.

    Raises
    ------
    ValueError
        For NaN or infinite values, which a namelist cannot hold.

    Examples
    --------
    >>> fortran_number(0.001)
    '1.0e-03'
    >>> fortran_number(-2)
    '-2.0e+00'
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"A namelist value must be finite; got {value!r}.")
    return np.format_float_scientific(value, unique=True, exp_digits=2, trim="0")


def _quoted(path: Path) -> str:
    """A Fortran string: in single quotes, with each quote inside doubled."""
    return "'" + str(path).replace("'", "''") + "'"


def _parse_fortran_value(text: str):
    text = text.strip().rstrip(",").strip()
    if text[:1] in "'\"":
        return text.strip("'\"")
    return float(text.lower().replace("d", "e"))


def _namelist_setting(lines: Iterable[str], name: str):
    """Value of ``name = value`` in namelist text (last setting wins), or None."""
    pattern = re.compile(rf"^\s*{re.escape(name)}\s*=\s*(.+?)\s*(?:!.*)?$", re.IGNORECASE)
    found = None
    for line in lines:
        if line.lstrip().startswith("!"):
            continue
        match = pattern.match(line)
        if match:
            found = match.group(1)
    return found


def _case_namelist_files(base_case: Path) -> list[Path]:
    return [p for p in (base_case / "user_nl_clm", base_case / "Buildconf" / "clmconf" / "lnd_in",
                        base_case / "CaseDocs" / "lnd_in") if p.is_file()]


def _case_setting(base_case: Path, name: str, *, text: bool = False):
    """A namelist setting of the base case and its file: user_nl_clm, then lnd_in; (None, None) if unset.

    A number, or with ``text`` a string (a path).
    """
    for path in _case_namelist_files(base_case):
        found = _namelist_setting(path.read_text().splitlines(), name)
        if found is not None:
            try:
                value = _parse_fortran_value(found)
            except ValueError as err:
                raise ValueError(f"{path}: cannot read {name} = {found!r} (a number, or a string in quotes).") from err
            return (str(value) if text else value), path
    return None, None


def _open_copy(path: Path) -> xr.Dataset:
    """A netCDF file in memory, raw (no masking, scaling or time decoding), file closed."""
    with xr.open_dataset(path, decode_times=False, decode_timedelta=False,
                         mask_and_scale=False) as ds:
        return ds.load()


def _valid(da: xr.DataArray, values: np.ndarray) -> np.ndarray:
    """Entries of a raw variable that are data: finite, not a fill or missing value."""
    ok = np.isfinite(values) & (np.abs(values) < _FILL_LIMIT)
    for key in ("_FillValue", "missing_value"):
        fill = da.attrs.get(key, da.encoding.get(key))
        if fill is not None:
            ok &= values != np.asarray(fill, dtype=values.dtype)
    return ok


def _is_kelvin(da: xr.DataArray) -> bool:
    return str(da.attrs.get("units", "")).strip().lower() in {"k", "kelvin", "deg_k", "degk"}


def _counted_mean(da: xr.DataArray, zeros_in_mean: bool) -> float:
    """Mean of the entries of a raw variable that a sampled value stands for (NaN if none).

    All valid entries of a scalar; of an array, the valid non-zero ones
    (zeros too with ``zeros_in_mean``), as :func:`_edit_array` scales them.
    """
    raw = np.asarray(da.values, dtype=np.float64)
    used = _valid(da, raw)
    if raw.size > 1 and not zeros_in_mean:
        used &= raw != 0
    return float(raw[used].mean()) if used.any() else float("nan")


# ======================================================== applying one parameter
def _edit_array(ds: xr.Dataset, name: str, param: Parameter, value: float, *, source: Path,
                zeros_in_mean: bool, delta: float | None = None) -> tuple[xr.DataArray, float, float]:
    """Apply one sampled value to variable ``name`` of ``ds`` (see the module docstring).

    Returns the new variable and the mean of the entries that count, before
    and after. ``delta`` (for ``kind="shift"``) is added to every valid entry.
    """
    da = ds[name]
    old = np.asarray(da.values, dtype=np.float64)
    valid = _valid(da, old)
    if not valid.any():
        raise ValueError(f"{name} in {source} holds no data (only fill values); cannot set it.")
    new = old.copy()
    used = valid
    if delta is not None:
        new[valid] = old[valid] + delta
    elif old.size == 1:
        new[valid] = value
    else:
        used = valid if zeros_in_mean else valid & (old != 0)
        if not used.any() or old[used].mean() == 0:
            raise ValueError(f"{name} in {source} has no non-zero entries, so it cannot be "
                             f"scaled to a mean of {value:g}.")
        new[used] = old[used] * (value / old[used].mean())
        if name == "FMAX" and (new[used] > 1).any():
            raise ValueError(
                f"FMAX = {value:g} would put a gridcell of {source} above 1 (largest "
                f"{new[used].max():.3g}), and FMAX is a fraction; narrow FMAX's range for "
                "this basin.")
    return da.copy(data=new.astype(da.dtype)), float(old[used].mean()), float(new[used].mean())


# ===================================================================== prepare
def _as_sample_table(space: ParameterSpace, samples) -> pd.DataFrame:
    """Samples as a DataFrame (member x parameter), validated against the space.

    The members are numbered by the Dataset's ``member`` coordinate or the
    DataFrame's index; the rows of an array from 0.
    """
    members = None
    if isinstance(samples, xr.Dataset):
        if "params" not in samples:
            raise ValueError("A Dataset of samples needs the variable 'params(member, param)' "
                             "(ParameterSpace.to_dataset).")
        da = samples["params"]
        missing = [n for n in space.names if n not in da["param"].values]
        if missing:
            raise ValueError(f"The samples lack the parameters {missing}.")
        members = list(da["member"].values)
        values = da.sel(param=space.names).transpose("member", "param").values
    elif isinstance(samples, pd.DataFrame):
        missing = [n for n in space.names if n not in samples.columns]
        if missing:
            raise ValueError(f"The samples lack the columns {missing}.")
        members = list(samples.index)
        values = samples[space.names].to_numpy(dtype=float)
    else:
        values = np.asarray(samples, dtype=float)
    values = np.atleast_2d(space.validate(values))
    if values.ndim != 2:
        raise ValueError(f"samples must have shape (n_members, {len(space)}); got {values.shape}.")
    if members is None:
        members = list(range(values.shape[0]))
    bad = [m for m in members if not (isinstance(m, (int, np.integer)) and m >= 0)]
    if bad:
        raise ValueError(f"Member numbers must be non-negative integers; got {bad[:5]} in the "
                         "samples' 'member' coordinate or index. Number them with "
                         "space.to_dataset(values, member_start=N).")
    members = [int(m) for m in members]
    if len(set(members)) != len(members):
        raise ValueError("Member numbers must be unique.")
    return pd.DataFrame(values, index=pd.Index(members, name="member"), columns=space.names)


def _options(options: Mapping[str, object] | None) -> dict:
    """``options`` of :func:`prepare_ensemble` with the defaults filled in."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown options {unknown}; valid are {sorted(_OPTIONS)}.")
    return {**_OPTIONS, **options}


def _member_tag(member: int) -> str:
    return f"member_{member:04d}"


def _script(*, base_case: Path, case: Path, folder: Path, tag: str, xmlchange: dict,
            submit_args: str) -> str:
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        f"# emucal.ctsm {tag}: clone the base case, give it this member's parameters, submit.",
        "# Run it on the cluster (a login node), from any folder:",
        f"#   bash {q(str(folder / 'run_case.sh'))}",
        "# CIMEROOT: set it, or it is read from the base case with ./xmlquery.",
        "set -euo pipefail",
        f"BASE_CASE={q(str(base_case))}",
        f"CASE={q(str(case))}",
        f"MEMBER_DIR={q(str(folder))}",
        'CIMEROOT="${CIMEROOT:-$(cd "$BASE_CASE" && ./xmlquery --value CIMEROOT)}"',
        'if [ -e "$CASE" ]; then',
        '  echo "$CASE exists already: remove it to run this member again." >&2',
        "  exit 1",
        "fi",
        '"$CIMEROOT/scripts/create_clone" --case "$CASE" --clone "$BASE_CASE" --keepexe',
        'cd "$CASE"',
    ]
    for key, val in xmlchange.items():
        lines.append(f"./xmlchange {q(f'{key}={val}')}")
    lines += [
        "# the base case's user_nl_clm with this member's lines appended",
        'cp "$MEMBER_DIR/user_nl_clm" user_nl_clm',
        "./case.setup",
        ("./case.submit " + submit_args).rstrip(),
        "",
    ]
    return "\n".join(lines)


_ASSIGN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_%]*)\s*(?:\([^)]*\))?\s*=")


def _code(line: str) -> str:
    """A namelist line without its strings and its ``!`` comment."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", line).split("!")[0]


def _user_nl_clm(base_lines: list[str], settings: dict[str, str], tag: str, ctsm_version: str,
                 source: Path) -> str:
    """The member's user_nl_clm: base lines (conflicts commented out) + the member's block.

    A conflicting base line that sets another variable too, or whose value
    continues on the next line, cannot be commented out alone: ValueError.
    """
    names = {n.lower() for n in settings}
    out = []
    for i, line in enumerate(base_lines):
        sets = _ASSIGN.findall(_code(line))
        hit = [n for n in sets if n.lower() in names]
        if not hit:
            out.append(line.rstrip("\n"))
            continue
        rest = [_code(ln) for ln in base_lines[i + 1:] if _code(ln).strip()]
        why = (f"shares the line with {[n for n in sets if n != hit[0]]}; put each variable on a "
               "line of its own" if len(sets) > 1 else
               "continues on the next line; write its value on one line"
               if rest and not (_ASSIGN.match(rest[0]) or rest[0].strip()[0] in "/&") else None)
        if why:
            raise ValueError(f"{source}, line {i + 1}: {hit[0]} {why}, so that emucal can comment "
                             "it out and set the member's value.")
        out.append(f"! emucal {tag}: replaced below: {line.strip()}")
    while out and not out[-1].strip():
        out.pop()
    if out:
        out.append("")
    out.append(f"! ---- emucal.ctsm {tag} ({ctsm_version}) ----")
    out += [f"{name} = {text}" for name, text in settings.items()]
    return "\n".join(out) + "\n"


def _write_edited(source: Path, target: Path, edited: xr.Dataset, names, note: str) -> None:
    """Copy ``source`` byte for byte, then rewrite the values of ``names`` and ``history``.

    Format, types, attributes and (absent) fill values stay as they are.
    """
    shutil.copyfile(source, target)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    with netCDF4.Dataset(target, "r+") as nc:
        for name in names:
            var = nc.variables[name]
            var.set_auto_maskandscale(False)
            var[...] = np.asarray(edited[name].values, dtype=var.dtype)
        history = str(getattr(nc, "history", ""))
        nc.setncattr("history", f"{stamp}: {note}" + (f"\n{history}" if history else ""))


def _member_edits(values: pd.Series, by_place: dict, base: dict, sources: dict, targets: dict,
                  namelist_base: dict, zeros_in_mean: bool, bedrock: dict):
    """One member's edited datasets, namelist settings and changes (none for a NaN value)."""
    edited = {place: ds.copy() for place, ds in base.items() if ds is not None}
    settings: dict[str, str] = {}
    changes: list[dict] = []

    def record(p, variable, place, old, new):
        changes.append({"parameter": p.name, "sampled": float(values[p.name]), "kind": p.kind,
                        "location": place, "variable": variable, "file": str(targets[place]),
                        "base": old, "new": new})

    for place in ("paramfile", "surface"):
        for p in by_place[place]:
            ds, value = edited[place], float(values[p.name])
            if np.isnan(value):
                continue
            if p.name == "zbedrock" and bedrock["sf"] != 1.0:
                value = value / bedrock["sf"]  # CTSM multiplies by zbedrock_sf
            if p.name == "zbedrock" and bedrock["override"]:
                # the paramfile's zbedrock >= 0 replaces the surface field in CTSM
                pds = edited["paramfile"]
                pds["zbedrock"], b, n = _edit_array(pds, "zbedrock", p, value,
                                                    source=sources["paramfile"], zeros_in_mean=True)
                record(p, "zbedrock", "paramfile", b, n)
                continue
            if p.kind == "shift":
                primary = ds[p.name]
                raw = np.asarray(primary.values, dtype=np.float64)
                old = float(raw[_valid(primary, raw)].mean())
                if _is_kelvin(primary) and p.units == "degC":
                    old -= _KELVIN  # the sample is in degC, the file in K
                delta = value - old
                for name in (p.name, *p.bound_with):
                    ds[name], b, n = _edit_array(ds, name, p, value, source=sources[place],
                                                 zeros_in_mean=True, delta=delta)
                    record(p, name, place, b, n)
            else:
                ds[p.name], b, n = _edit_array(ds, p.name, p, value, source=sources[place],
                                               zeros_in_mean=zeros_in_mean)
                record(p, p.name, place, b, n)
    for p in by_place["namelist"]:
        value = float(values[p.name])
        if np.isnan(value):
            continue
        if p.kind == "shift":
            delta = value - namelist_base[p.name]
            for name in (p.name, *p.bound_with):
                new = namelist_base[name] + delta
                settings[name] = fortran_number(new)
                record(p, name, "namelist", namelist_base[name], new)
        else:
            settings[p.name] = fortran_number(value)
            record(p, p.name, "namelist", namelist_base[p.name], value)
    return edited, settings, changes


def prepare_ensemble(
    space: ParameterSpace,
    samples,
    base_case: str | os.PathLike,
    paramfile: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    ctsm_version: str,
    surfdata: str | os.PathLike | None = None,
    options: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """Write the files that run a perturbed-parameter CTSM ensemble on a cluster.

    One call prepares the members of one basin: ``base_case`` is a working
    single-basin CTSM case (built, with the history output you want, e.g.
    ``hist_nhtfrq = 0, -24`` and ``hist_fincl2 = 'QRUNOFF', ...``). For each
    member ``N``, the folder ``out_dir/member_NNNN/`` receives:

    - a copy of ``paramfile`` with the member's values: a byte copy with
      only those variables rewritten, so it keeps the base file's netCDF
      format, variable types and attributes;
    - a copy of the surface dataset with the member's ``FMAX``/``zbedrock``
      (made the same way), if the space has parameters that live there;
    - ``user_nl_clm``: the base case's file, with the member's lines appended
      (``paramfile = '...'``, ``fsurdat = '...'`` and the namelist parameters
      of ``ctsm_version``); earlier lines of the base file that set the same
      variables are commented out (each must be on a line of its own);
    - ``run_case.sh``: CIME commands (``create_clone --keepexe``,
      ``./xmlchange``, ``./case.setup``, ``./case.submit``) to run on the
      cluster;
    - ``parameters.csv``: every edit, with base and new values.

    Each member folder is written under a temporary name and renamed when
    complete, so an interrupted call leaves no half-written member, and the
    same call made again finishes the missing members and keeps the finished
    ones (each folder records what it was made from in
    ``.emucal-member.json``). A folder made from other samples or settings
    is never overwritten, and nothing emucal did not write is deleted. The
    base files are only read. ``out_dir/base_values.csv`` records the base
    case's values (the table of :func:`base_values`), ``.emucal-inputs.json``
    the sha256 of the paramfile, surface dataset and ``user_nl_clm``; a later
    call into the same ``out_dir`` with other values or other files is refused.
    :func:`plan_ensemble` takes the same arguments, checks the same, and
    returns the same table without writing anything: a dry run.

    Parameters
    ----------
    space
        The parameters of the samples (:class:`~emucal.parameters.ParameterSpace`).
    samples
        Parameter sets: an array ``(member, param)`` in the order of
        ``space.names``, a DataFrame with those columns, or the Dataset of
        :meth:`~emucal.parameters.ParameterSpace.to_dataset` (its ``member``
        coordinate numbers the members). The members are numbered by that
        coordinate or the DataFrame's index; the rows of an array from 0. To
        add members later, number them on, e.g.
        ``space.to_dataset(more, member_start=200)``. Values are checked with
        :meth:`~emucal.parameters.ParameterSpace.validate`.
    base_case
        The CIME case directory of the base case (holds ``env_case.xml``).
    paramfile
        The base CTSM parameter file (netCDF) to copy and edit. Usually the
        file the base case reads (``paramfile`` in its
        ``Buildconf/clmconf/lnd_in``); a warning says when it is not.
    out_dir
        Folder for the member folders (created if needed).
    ctsm_version
        The CTSM tag of the base case, e.g. ``"ctsm5.2.005"``: decides where
        each parameter goes (:meth:`~emucal.parameters.Parameter.location`).
    surfdata
        The base surface dataset, needed when the space has surface
        parameters (``FMAX``, ``zbedrock``). Default: ``fsurdat`` of the base
        case's ``user_nl_clm`` or ``Buildconf/clmconf/lnd_in``.
    options
        How the members' cases are made and run, and how arrays are scaled;
        each key optional:

        ``case_root``
            Folder where the scripts create the member cases, named
            ``<base case name>_member_NNNN``. Default: beside the base case.
        ``xmlchange``
            ``{VARIABLE: value}`` for ``./xmlchange`` in every member case,
            e.g. ``{"JOB_WALLCLOCK_TIME": "00:30:00"}``. Values may contain
            ``{member}``, ``{folder}`` and ``{case}``, filled in per member,
            e.g. ``{"DOUT_S_ROOT": "{folder}/archive"}`` to archive each
            member's history files into its folder.
        ``submit_args``
            Extra arguments of ``./case.submit``: ``"--no-batch"`` runs the
            case in the current job, for job arrays.
        ``zeros_in_mean``
            True counts zero entries in the mean that a per-PFT or
            per-gridcell array is scaled to, as Tang et al. did
            (``np.nanmean`` over the array). Default False: zeros (bare soil)
            are left out of the mean. Zeros stay zero either way.

    Returns
    -------
    pandas.DataFrame
        One row per member (index ``member``): the paths ``folder``, ``case``
        (the case the script creates), ``script``, ``user_nl_clm``,
        ``paramfile``, ``surfdata`` (None when the member has no edited
        copy) and ``parameters``; ``base_case`` (True for a member that is
        the base case unedited); then the value of each parameter in the
        member's run: the sampled value, or the base case's own value where
        the member keeps it (the base-case member, NaN entries).
        ``attrs["base_values"]`` maps each parameter to the base case's
        value (:func:`base_values`), ``attrs["locations"]`` to where
        ``ctsm_version`` reads it. Each member's ``parameters.csv`` lists
        every edit: parameter, sampled value, kind, location, variable, file,
        and the mean of the variable before (``base``) and after (``new``).
        :func:`ensemble_params` turns the tables of many basins into
        training inputs.

    Raises
    ------
    ValueError
        A value outside its range (naming it), an unknown CTSM version, a
        member folder or member case that exists already, a base case that is
        not a CIME case, an array that cannot be scaled, a base
        ``user_nl_clm`` line that cannot be commented out alone (the message
        names the line), base files other than those of ``out_dir``'s members,
        a key of ``options`` not listed above.
    KeyError
        A parameter that ``ctsm_version`` reads from the paramfile or the
        surface dataset is not in that file (the message names the file and
        the variables it has).
    FileNotFoundError
        ``paramfile`` or the surface dataset does not exist.

    Notes
    -----
    A row equal to ``space.defaults`` (row 0 of
    :func:`emucal.sampling.sample`), or to the base case's own values, is
    the base case exactly: its folder has the base case's ``user_nl_clm``
    and no edited files (``paramfile`` and ``surfdata`` are None in the
    table), as Tang et al.'s member 0. Its row in the table holds the base
    case's values, not the space's defaults: the basin's own ``FMAX`` and
    ``zbedrock`` and the base paramfile's values, which is where an
    emulator must place that run. A NaN in any other row leaves that
    parameter as the base case has it. A warning names base values that lie
    outside the space's ranges, and base values the case does not say.

    When the base case runs with hillslope hydrology (``use_hillslope``, as
    Tang et al. did), CTSM ignores ``baseflow_scalar`` and ``n_baseflow`` and
    a warning says so; likewise ``zbedrock`` with ``use_bedrock = .false.``
    or in hillslope columns whose soil thickness comes from
    ``hillslope_soil_profile_method`` other than ``'Uniform'``.

    Examples
    --------
    >>> plan = prepare_ensemble(space, samples, "/glade/work/me/cases/camels_01013500",
    ...                         "/glade/work/me/params/ctsm60_params.c250311.nc",
    ...                         "/glade/work/me/ens/01013500", ctsm_version="ctsm5.3.012",
    ...                         options={"submit_args": "--no-batch"})  # doctest: +SKIP
    >>> plan.script.iloc[0]  # doctest: +SKIP
    PosixPath('/glade/work/me/ens/01013500/member_0000/run_case.sh')
    """
    return _prepare(space, samples, base_case, paramfile, out_dir, ctsm_version=ctsm_version,
                    surfdata=surfdata, options=options, write=True)


def plan_ensemble(
    space: ParameterSpace,
    samples,
    base_case: str | os.PathLike,
    paramfile: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    ctsm_version: str,
    surfdata: str | os.PathLike | None = None,
    options: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """The table :func:`prepare_ensemble` would return, with nothing written: a dry run.

    Takes the arguments of :func:`prepare_ensemble` and checks what it checks
    (base files, variables, ranges, folders and cases that exist already),
    then returns its table (``attrs["dry_run"]`` True). Use it before writing
    an ensemble, or to get the table back for members written earlier (for
    :func:`ensemble_params`).

    Examples
    --------
    >>> plan = plan_ensemble(space, samples, "/glade/work/me/cases/camels_01013500",
    ...                      "/glade/work/me/params/ctsm60_params.c250311.nc",
    ...                      "/glade/work/me/ens/01013500",
    ...                      ctsm_version="ctsm5.3.012")  # doctest: +SKIP
    """
    return _prepare(space, samples, base_case, paramfile, out_dir, ctsm_version=ctsm_version,
                    surfdata=surfdata, options=options, write=False)


def _prepare(space, samples, base_case, paramfile, out_dir, *, ctsm_version, surfdata, options,
             write) -> pd.DataFrame:
    """:func:`prepare_ensemble` (``write=True``) or :func:`plan_ensemble`."""
    _version_key(ctsm_version)  # a clear error for a malformed tag
    options = _options(options)
    case_root, zeros_in_mean = options["case_root"], options["zeros_in_mean"]
    xmlchange, submit_args = dict(options["xmlchange"] or {}), options["submit_args"]
    table = _as_sample_table(space, samples)
    base_case = Path(base_case).expanduser().resolve()
    if not base_case.is_dir() or not (base_case / "env_case.xml").is_file():
        raise ValueError(f"{base_case} is not a CIME case directory (no env_case.xml); pass the "
                         "folder that create_newcase made for the base case.")
    paramfile = Path(paramfile).expanduser().resolve()
    if not paramfile.is_file():
        raise FileNotFoundError(f"The parameter file {paramfile} does not exist.")
    out_dir = Path(out_dir).expanduser().resolve()
    case_root = (Path(case_root).expanduser().resolve() if case_root is not None
                 else base_case.parent)

    where, by_place = _places(space, ctsm_version)

    # the base case's own settings: a different paramfile is worth a warning, and then every
    # member (the base-case member too) reads the given file, so that its values are the record
    case_paramfile, found_in = _case_setting(base_case, "paramfile", text=True)
    redirect_param = case_paramfile is not None and Path(case_paramfile).name != paramfile.name
    if redirect_param:
        warnings.warn(f"The base case reads the parameter file {case_paramfile} ({found_in}), "
                      f"but the members get copies of {paramfile}; the members that leave it "
                      "unedited (the base-case member too) are pointed at it.", stacklevel=3)
    user_nl = base_case / "user_nl_clm"
    base_user_nl = user_nl.read_text().splitlines() if user_nl.is_file() else []
    # what members may set must be editable in the base user_nl_clm, checked before any writing
    _user_nl_clm(base_user_nl, dict.fromkeys(
        [n for p in by_place["namelist"] for n in (p.name, *(p.bound_with if p.kind == "shift" else ()))]
        + ["paramfile"] * bool(by_place["paramfile"] or by_place["surface"] or redirect_param)
        + ["fsurdat"] * bool(by_place["surface"]), ""), "", ctsm_version, user_nl)

    # base files, read once
    base_param = _open_copy(paramfile)
    surf_path, base_surf, redirect_surf = None, None, False
    if by_place["surface"]:
        case_surf, _ = _case_setting(base_case, "fsurdat", text=True)
        if surfdata is None:
            if case_surf is None:
                raise ValueError(
                    f"The parameters {[p.name for p in by_place['surface']]} live in the surface "
                    f"dataset, but the base case sets no fsurdat that can be found; pass surfdata=.")
            surfdata = case_surf
        surf_path = Path(surfdata).expanduser().resolve()
        if not surf_path.is_file():
            raise FileNotFoundError(f"The surface dataset {surf_path} does not exist.")
        base_surf = _open_copy(surf_path)
        redirect_surf = case_surf is not None and Path(case_surf).name != surf_path.name
        if redirect_surf:
            warnings.warn(f"The base case reads the surface dataset {case_surf}, but the members "
                          f"get copies of {surf_path}; the members that leave it unedited (the "
                          "base-case member too) are pointed at it.", stacklevel=3)
    _check_variables(by_place, base_param, paramfile, base_surf, surf_path, ctsm_version)
    namelist_base, namelist_from = _namelist_bases(by_place, base_case)

    # nothing may be overwritten; members this very call wrote before an interruption are kept
    common = {"ctsm_version": ctsm_version, "base_case": str(base_case), "paramfile": str(paramfile),
              "surfdata": str(surf_path), "case_root": str(case_root), "xmlchange": xmlchange,
              "submit_args": submit_args, "zeros_in_mean": bool(zeros_in_mean)}
    stamps = {m: json.dumps({**common, "member": int(m), "values": [None if np.isnan(v) else v
                                                                     for v in table.loc[m]]},
                            sort_keys=True, default=str) for m in table.index}
    finished, existing = set(), []
    for m in table.index:
        folder = out_dir / _member_tag(m)
        if not folder.exists():
            continue
        stamp = folder / _STAMP
        if stamp.is_file() and stamp.read_text() == stamps[m]:
            finished.add(m)  # written by an earlier call with the same inputs: resume
        else:
            existing.append(str(folder))
    if existing:
        raise ValueError(f"Member folders exist already, from other samples or settings: "
                         f"{existing[:5]}{' ...' if len(existing) > 5 else ''}. Choose another "
                         "out_dir or other member numbers (space.to_dataset(values, "
                         "member_start=N)), or remove them.")
    cases = {m: case_root / f"{base_case.name}_{_member_tag(m)}" for m in table.index}
    taken = [str(c) for m, c in cases.items() if c.exists() and m not in finished]
    if taken:
        raise ValueError(f"Member cases exist already: {taken[:5]}; create_clone would fail. "
                         "Remove them or pass another options['case_root'].")

    bedrock = _bedrock_settings(base_param, paramfile, [p.name for p in by_place["surface"]])
    _warn_ignored(space, base_case)
    base = _base_table(space, where, base_param, paramfile, base_surf, surf_path, namelist_base,
                       namelist_from, bedrock, zeros_in_mean)
    base_row = base["base"].to_numpy(dtype=float)
    if write:
        _record_base(out_dir, base, {"paramfile": paramfile, "surfdata": surf_path,
                                     "user_nl_clm": user_nl})

    rows = []
    for member, values in table.iterrows():
        tag = _member_tag(member)
        folder = out_dir / tag
        is_base = _is_base_row(values.to_numpy(dtype=float), space.defaults, base_row)
        if is_base:
            values = values * np.nan  # the base case, unedited
        # the values this member's run uses: the sample, or the base case's where it has none
        used = pd.Series(np.where(np.isnan(values.to_numpy(dtype=float)), base_row, values),
                         index=values.index)
        targets = {"paramfile": folder / f"{paramfile.stem}.{tag}.nc",
                   "namelist": folder / "user_nl_clm"}
        if surf_path is not None:
            targets["surface"] = folder / f"{surf_path.stem}.{tag}.nc"
        edited, settings, member_changes = _member_edits(
            values, by_place, {"paramfile": base_param, "surface": base_surf},
            {"paramfile": paramfile, "surface": surf_path}, targets, namelist_base,
            zeros_in_mean, bedrock)
        member_changes = [{"member": member, **c} for c in member_changes]
        changed = {c["location"] for c in member_changes}
        targets = {place: path for place, path in targets.items()
                   if place == "namelist" or place in changed}
        read_param = targets.get("paramfile", paramfile if redirect_param else None)
        read_surf = targets.get("surface", surf_path if redirect_surf else None)
        settings = {**({"paramfile": _quoted(read_param)} if read_param is not None else {}),
                    **({"fsurdat": _quoted(read_surf)} if read_surf is not None else {}),
                    **settings}

        fill = {"member": member, "folder": folder, "case": cases[member]}
        try:
            xml = {k: str(v).format(**fill) for k, v in xmlchange.items()}
        except (KeyError, IndexError) as err:
            raise ValueError(f"options['xmlchange'] values may use {{member}}, {{folder}} and "
                             f"{{case}}; got {xmlchange!r}.") from err
        row = {
            "member": member, "folder": folder, "case": cases[member],
            "script": folder / "run_case.sh", "user_nl_clm": folder / "user_nl_clm",
            "paramfile": targets.get("paramfile"), "surfdata": targets.get("surface"),
            "parameters": folder / "parameters.csv", "base_case": bool(is_base), **used.to_dict(),
        }
        rows.append(row)
        if not write or member in finished:
            continue

        part = folder.with_name(folder.name + ".part")
        if part.exists():
            if not (part / _PART_MARK).is_file():
                raise ValueError(f"{part} exists and was not made by emucal; move it away "
                                 "(emucal writes each member there before renaming it).")
            shutil.rmtree(part)  # left by an interrupted call of this function
        part.mkdir(parents=True)
        (part / _PART_MARK).write_text("written by emucal.ctsm.prepare_ensemble\n")
        for place, source in (("paramfile", paramfile), ("surface", surf_path)):
            if place in targets:
                mine = [c for c in member_changes if c["location"] == place]
                note = (f"emucal.ctsm.prepare_ensemble {tag} ({ctsm_version}) from {source}: "
                        + ", ".join(f"{c['variable']} = {c['new']:.6g}" for c in mine))
                _write_edited(source, part / targets[place].name, edited[place],
                              sorted({c["variable"] for c in mine}), note)
        (part / "user_nl_clm").write_text(
            _user_nl_clm(base_user_nl, settings, tag, ctsm_version, user_nl))
        script = part / "run_case.sh"
        script.write_text(_script(base_case=base_case, case=cases[member], folder=folder, tag=tag,
                                  xmlchange=xml, submit_args=submit_args))
        script.chmod(0o755)
        pd.DataFrame(member_changes, columns=["member", "parameter", "sampled", "kind", "location",
                                              "variable", "file", "base", "new"]
                     ).to_csv(part / "parameters.csv", index=False)
        (part / _PART_MARK).unlink()
        (part / _STAMP).write_text(stamps[member])
        os.replace(part, folder)

    plan = pd.DataFrame(rows).set_index("member")
    plan.attrs.update(ctsm_version=ctsm_version, locations=where, dry_run=not write,
                      base_values={n: float(v) for n, v in base["base"].items()})
    _warn_recorded(plan, space, base)
    return plan


def _places(space: ParameterSpace, ctsm_version: str):
    """Where ``ctsm_version`` reads each parameter, and the parameters of each place."""
    where = {p.name: p.location(ctsm_version) for p in space}
    by_place = {place: [p for p in space if where[p.name] == place]
                for place in ("paramfile", "namelist", "surface")}
    return where, by_place


def _check_variables(by_place, base_param, paramfile, base_surf, surf_path, ctsm_version) -> None:
    """A KeyError naming the variables that a base file lacks."""
    for place, ds, path in (("paramfile", base_param, paramfile), ("surface", base_surf, surf_path)):
        if ds is None:
            continue
        needed = [n for p in by_place[place]
                  for n in (p.name, *(p.bound_with if p.kind == "shift" else ()))]
        missing = [n for n in needed if n not in ds.data_vars]
        if missing:
            what = "parameter file" if place == "paramfile" else "surface dataset"
            raise KeyError(
                f"{ctsm_version} reads {missing} from the {what}, but {path} has no such "
                f"variable (it has {sorted(map(str, ds.data_vars))}). Check ctsm_version "
                "and the file.")


def _namelist_bases(by_place, base_case: Path | None) -> tuple[dict, dict]:
    """Base values of the namelist parameters (and bound ones) and where each was read.

    ``user_nl_clm``, then ``lnd_in``; else CTSM's default for a shifted
    temperature, NaN for a ``value`` (``lnd_in`` lists it after ``preview_namelists``).
    """
    base, source = {}, {}
    for p in by_place["namelist"]:
        for name in [p.name] + (list(p.bound_with) if p.kind == "shift" else []):
            value, path = _case_setting(base_case, name) if base_case is not None else (None, None)
            if value is None and p.kind == "shift":
                if name not in NAMELIST_DEFAULTS:
                    raise ValueError(
                        f"{name}: {p.kind} needs its base value, but the base case sets none "
                        "(user_nl_clm, Buildconf/clmconf/lnd_in) and emucal knows no CTSM default.")
                value, path = NAMELIST_DEFAULTS[name], "CTSM namelist default"
            base[name] = float(value) if value is not None else np.nan
            source[name] = str(path) if path is not None else ""
    return base, source


def _unit_position(p: Parameter, value: float) -> float:
    """Where ``value`` lies in ``p``'s range on its sampling scale: 0 lower, 1 upper (unclipped)."""
    if not np.isfinite(value):
        return float("nan")
    if p.log:
        if value <= 0:
            return float("nan")
        return float(np.log(value / p.lower) / np.log(p.upper / p.lower))
    return float((value - p.lower) / (p.upper - p.lower))


def _base_table(space, where, base_param, paramfile, base_surf, surf_path, namelist_base,
                namelist_from, bedrock, zeros_in_mean) -> pd.DataFrame:
    """The base case's value of every parameter, as a sampled value would stand for it."""
    rows = []
    for p in space:
        place, variable, source, value = where[p.name], p.name, "", float("nan")
        if place == "namelist":
            value, source = namelist_base.get(p.name, np.nan), namelist_from.get(p.name, "")
        elif place == "paramfile":
            da = base_param[p.name]
            value = _counted_mean(da, zeros_in_mean or p.kind == "shift")
            if p.kind == "shift" and _is_kelvin(da) and p.units == "degC":
                value -= _KELVIN  # the sample is in degC, the file in K
            source = str(paramfile)
        elif p.name == "zbedrock" and bedrock["override"]:
            value = float(np.asarray(base_param["zbedrock"].values, float).ravel()[0])
            source = str(paramfile)
        elif base_surf is not None:
            value, source = _counted_mean(base_surf[p.name], zeros_in_mean), str(surf_path)
        if p.name == "zbedrock" and bedrock["sf"] != 1.0:
            value *= bedrock["sf"]  # CTSM multiplies the depth by the paramfile's zbedrock_sf
            variable = "zbedrock x zbedrock_sf"
        rows.append({"parameter": p.name, "default": np.nan if p.default is None else p.default,
                     "base": value, "lower": p.lower, "upper": p.upper,
                     "unit": _unit_position(p, value),
                     "in_range": bool(p.lower <= value <= p.upper),
                     "location": place, "variable": variable, "file": source})
    return pd.DataFrame(rows).set_index("parameter")


def _is_base_row(values: np.ndarray, defaults: np.ndarray, base: np.ndarray) -> bool:
    """Whether a sampled row is the base case: the defaults, or the base values (NaN: either)."""
    if np.array_equal(values, defaults, equal_nan=True):
        return True
    return bool(np.all(np.isnan(values) | np.isclose(values, base, rtol=1e-12, atol=0)))


def _record_base(out_dir: Path, base: pd.DataFrame, files: dict) -> None:
    """Record the base values and the sha256 of ``files`` in ``out_dir``; refuse other ones."""
    path, record = out_dir / _BASE_FILE, out_dir / _INPUTS
    digests = {k: [str(f), hashlib.sha256(f.read_bytes()).hexdigest()]
               for k, f in files.items() if f is not None and f.is_file()}
    table, old_digests = base, json.loads(record.read_text()) if record.is_file() else {}
    if path.is_file():
        old = pd.read_csv(path, index_col="parameter")
        common = old.index.intersection(base.index)
        before, now = old.loc[common, "base"].to_numpy(float), base.loc[common, "base"].to_numpy(float)
        differ = ~np.isclose(before, now, rtol=1e-12, atol=0, equal_nan=True)
        if differ.any():
            listed = ", ".join(f"{n}: {b:.6g} there, {x:.6g} now"
                               for n, b, x in zip(common[differ], before[differ], now[differ]))
            raise ValueError(
                f"{path} records other base values than this call's base files hold ({listed}); "
                "the members of one out_dir share one base case. Choose another out_dir.")
        table = pd.concat([old, base.loc[base.index.difference(old.index, sort=False)]])
    other = [f"{k}: {old_digests[k][0]} (sha256 {old_digests[k][1][:12]}) there, {f} (sha256 "
             f"{d[:12]}) now" for k, (f, d) in digests.items()
             if k in old_digests and old_digests[k][1] != d]
    if other:
        raise ValueError(f"The members in {out_dir} were made from other base files ({'; '.join(other)}"
                         "), so one ensemble would mix both. Give the files they were made from, "
                         "or choose another out_dir.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, write in ((path, table.to_csv), (record, lambda part: part.write_text(
            json.dumps({**old_digests, **digests}, indent=1)))):
        part = target.with_name(target.name + ".part")
        write(part)
        os.replace(part, target)


def _warn_recorded(plan: pd.DataFrame, space: ParameterSpace, base: pd.DataFrame) -> None:
    """Warn when a member's recorded values are unknown or lie outside the space's ranges."""
    values = plan[space.names]
    unknown = [n for n in space.names if values[n].isna().any()]
    if unknown:
        warnings.warn(
            f"The base case's value of {unknown} is not known (the case sets none in user_nl_clm or "
            "Buildconf/clmconf/lnd_in), so members that keep it (the base-case member, NaN "
            "entries) are recorded as NaN. Run ./preview_namelists in the base case, which writes "
            "every namelist value to Buildconf/clmconf/lnd_in, and prepare again.", UserWarning,
            stacklevel=4)
    outside = [f"{n} = {base.loc[n, 'base']:.4g} (range {space[n].lower:g} to {space[n].upper:g})"
               for n in space.names if np.isfinite(base.loc[n, "base"]) and not base.loc[n, "in_range"]
               and ((values[n] < space[n].lower) | (values[n] > space[n].upper)).any()]
    if outside:
        warnings.warn(
            f"Members that keep the base case's values (the base-case member, NaN entries) lie "
            f"outside the space: {'; '.join(outside)}. An emulator over the space's unit cube cannot "
            "place them: widen the range (space.with_range) or leave those members out of training.",
            UserWarning, stacklevel=4)


def _bedrock_settings(base_param: xr.Dataset, paramfile: Path, surface_names) -> dict:
    """How the base paramfile's ``zbedrock``/``zbedrock_sf`` (ctsm5.2.027+) act on bedrock.

    ``initVerticalMod.F90``: ``if (zbedrock >= 0) zbedrock_in(:) = zbedrock``,
    then ``if (zbedrock_sf /= 1) zbedrock_in(:) = zbedrock_sf * zbedrock_in(:)``.
    """
    out = {"override": False, "sf": 1.0}
    if "zbedrock" not in surface_names:
        return out
    if "zbedrock_sf" in base_param.data_vars:
        out["sf"] = float(np.asarray(base_param["zbedrock_sf"].values, float).ravel()[0])
        if not out["sf"] > 0:
            raise ValueError(f"{paramfile} sets zbedrock_sf = {out['sf']:g}; CTSM would scale every "
                             "depth to bedrock by it, so no sampled depth can be reached. Set it to 1.")
    if "zbedrock" in base_param.data_vars:
        out["override"] = float(np.asarray(base_param["zbedrock"].values, float).ravel()[0]) >= 0
    return out


def _warn_ignored(space: ParameterSpace, base_case: Path) -> None:
    """Warn about sampled parameters that the base case's configuration does not use."""
    def logical(name: str, default: bool) -> bool:
        for path in _case_namelist_files(base_case):
            text = _namelist_setting(path.read_text().splitlines(), name)
            if text is not None:
                return text.strip().strip(",").lower() in (".true.", "t", ".t.", "true")
        return default

    sampled = set(space.names)
    lateral = sorted(sampled & {"baseflow_scalar", "n_baseflow"})
    if lateral and logical("use_hillslope", False):
        warnings.warn(
            f"The base case sets use_hillslope = .true., and CTSM's hillslope columns compute "
            f"lateral flow from transmissivity without {lateral} (SoilHydrologyMod.F90, "
            "SubsurfaceLateralFlow: only non-hillslope columns use them), so perturbing them "
            "changes nothing there; Tang et al. (2025) ran with hillslopes.", UserWarning,
            stacklevel=4)
    if "zbedrock" in sampled and not logical("use_bedrock", True):
        warnings.warn("The base case sets use_bedrock = .false.: CTSM then ignores zbedrock "
                      "(initVerticalMod.F90), so perturbing it changes nothing.", UserWarning,
                      stacklevel=4)
    profile, _ = _case_setting(base_case, "hillslope_soil_profile_method", text=True)
    if ("zbedrock" in sampled and logical("use_hillslope", False) and profile is not None
            and profile.strip().lower() != "uniform"):
        warnings.warn(
            f"The base case sets use_hillslope = .true. with hillslope_soil_profile_method = "
            f"'{profile.strip()}': after reading zbedrock, CTSM resets the bedrock layer of every "
            "active hillslope column (HillslopeHydrologyMod.F90, SetHillslopeSoilThickness: from "
            "the hillslope file's hillslope_bedrock_depth for 'FromFile', from soil depths of "
            "2.0 m upland and 8.5 m lowland, set in clm_instMod.F90, for 'SetLowlandUpland' and "
            "'Linear'), so perturbing zbedrock changes nothing there. Only 'Uniform' (the "
            "default) keeps the depth from zbedrock.", UserWarning, stacklevel=4)


def base_values(space: ParameterSpace, paramfile: str | os.PathLike, *, ctsm_version: str,
                surfdata: str | os.PathLike | None = None,
                base_case: str | os.PathLike | None = None,
                zeros_in_mean: bool = False) -> pd.DataFrame:
    """The values a CTSM case runs with, beside the space's defaults and ranges.

    Reads each parameter where ``ctsm_version`` reads it and reduces it as
    :func:`prepare_ensemble` reads a sampled value: a scalar as it is; an
    array (``medlynslope`` per PFT, ``FMAX`` per gridcell) as the mean of
    its entries that count (non-zero ones, or all with ``zeros_in_mean``);
    a shifted temperature in degC; ``zbedrock`` as CTSM uses it (the
    paramfile's ``zbedrock`` where it is >= 0, times ``zbedrock_sf``;
    ``initVerticalMod.F90``). These are the values of the base-case member
    of an ensemble, which :func:`prepare_ensemble` records for training.

    The base case's values need not be
    :meth:`~emucal.parameters.ParameterSpace.tang2025`'s defaults, which
    are those of Tang et al.'s table for their CTSM (``clm5_1`` physics,
    compset ``I2000Clm51Sp``) and, for ``FMAX``, a typical value: each
    basin's surface dataset has its own ``FMAX`` and ``zbedrock``, and the
    paramfile depends on the version and physics (``clm5_1`` was removed in
    ctsm5.3.014; from ctsm5.4.040 a hillslope case reads its own paramfile,
    ``ctsm60-HH_params``). The ranges are absolute: a sampled value replaces
    the base value (or becomes the array's mean), so a different base value
    does not move the range, it moves the base-case member within it
    (``unit``). A base value outside its range (``in_range`` False) puts that
    member outside the unit cube the sampler, the emulators and the search
    work in: widen the range (:meth:`~emucal.parameters.ParameterSpace.with_range`)
    or leave the member out of training. A range that no longer brackets
    the base value with room on both sides may also miss the values near
    it that a calibration would start from.

    Parameters
    ----------
    space
        The parameters (:class:`~emucal.parameters.ParameterSpace`).
    paramfile
        A CTSM parameter file (netCDF), e.g. the ``paramfile`` of the case's
        ``Buildconf/clmconf/lnd_in``.
    ctsm_version
        The CTSM tag that reads the files, e.g. ``"ctsm5.3.012"``
        (:meth:`~emucal.parameters.Parameter.location`).
    surfdata
        The surface dataset, for ``FMAX`` and ``zbedrock``. Default: the
        ``fsurdat`` of ``base_case``, if given and found; else these are NaN.
    base_case
        A CIME case folder, for namelist parameters (its ``user_nl_clm``,
        then ``Buildconf/clmconf/lnd_in``). Without it, or where the case
        sets none, a namelist value is NaN and a shifted temperature has
        CTSM's namelist default (:data:`NAMELIST_DEFAULTS`).
    zeros_in_mean
        Count zero entries of an array in its mean, as Tang et al. did.

    Returns
    -------
    pandas.DataFrame
        One row per parameter (index ``parameter``): ``default`` (the
        space's; NaN for ``zbedrock``), ``base`` (the file's value),
        ``lower``, ``upper``, ``unit`` (where ``base`` lies in the range on
        the parameter's sampling scale, 0 at ``lower`` and 1 at ``upper``,
        not clipped), ``in_range``, ``location``, ``variable`` and ``file``
        (where it was read).

    Raises
    ------
    FileNotFoundError
        A file that does not exist.
    KeyError
        A parameter that ``ctsm_version`` reads from a file is not in it.

    Examples
    --------
    >>> table = base_values(ParameterSpace.tang2025(), "ctsm60-HH_params.c260518.nc",
    ...                     ctsm_version="ctsm5.4.053",
    ...                     surfdata="surfdata_01013500.nc")  # doctest: +SKIP
    >>> table.loc[~table.in_range, ["default", "base", "lower", "upper"]]  # doctest: +SKIP
    """
    _version_key(ctsm_version)
    paramfile = Path(paramfile).expanduser().resolve()
    if not paramfile.is_file():
        raise FileNotFoundError(f"The parameter file {paramfile} does not exist.")
    case = None
    if base_case is not None:
        case = Path(base_case).expanduser().resolve()
        if not case.is_dir():
            raise FileNotFoundError(f"The base case {case} does not exist.")
    where, by_place = _places(space, ctsm_version)
    if surfdata is None and case is not None and by_place["surface"]:
        text, _ = _case_setting(case, "fsurdat", text=True)
        if text is not None and Path(text).expanduser().is_file():
            surfdata = text
    base_param = _open_copy(paramfile)
    surf_path, base_surf = None, None
    if surfdata is not None and by_place["surface"]:
        surf_path = Path(surfdata).expanduser().resolve()
        if not surf_path.is_file():
            raise FileNotFoundError(f"The surface dataset {surf_path} does not exist.")
        base_surf = _open_copy(surf_path)
    _check_variables(by_place, base_param, paramfile, base_surf, surf_path, ctsm_version)
    bedrock = _bedrock_settings(base_param, paramfile, [p.name for p in by_place["surface"]])
    namelist_base, namelist_from = _namelist_bases(by_place, case)
    return _base_table(space, where, base_param, paramfile, base_surf, surf_path, namelist_base,
                       namelist_from, bedrock, zeros_in_mean)


def ensemble_params(space: ParameterSpace, plans: Mapping[str, pd.DataFrame]) -> xr.Dataset:
    """The parameter values of a CTSM ensemble over many basins, for training emulators.

    Each basin's ensemble is one :func:`prepare_ensemble` table; the
    base-case member (and any value a member keeps from the base case) has
    each basin's own base values, which differ between basins (``FMAX``,
    ``zbedrock``) where the samples do not. The result has the layout of
    :func:`emucal.ensemble.run_ensemble`: ``params(member, param)`` with NaN
    where the value is each basin's own, and ``defaults(basin, param)``
    holding those values. Merge it with the skill of the runs, and
    :func:`emucal.emulators.sse_data` and :func:`~emucal.emulators.lse_data`
    place every run, the base-case member included, where it ran;
    ``defaults`` is also what a :class:`emucal.ensemble.Runner` around CTSM
    takes as its ``defaults``. Tang et al. trained on the same values (see
    the module docstring).

    Parameters
    ----------
    space
        The parameters of the ensemble.
    plans
        ``{basin: table}``, the tables :func:`prepare_ensemble` returned for
        each basin (:func:`plan_ensemble` gives the table back for members
        written earlier).

    Returns
    -------
    xarray.Dataset
        ``params(member, param)`` and ``defaults(basin, param)``, coordinates
        ``member``, ``basin``, ``param``.

    Raises
    ------
    ValueError
        A table that is not from :func:`prepare_ensemble`; a member whose
        values differ between basins other than by the basins' base values
        (different samples per basin); a base value that is needed but
        unknown.

    Warns
    -----
    UserWarning
        When a basin's base value lies outside the space's range.

    Examples
    --------
    >>> plans = {b: prepare_ensemble(space, samples, cases[b], params[b], f"ens/{b}",
    ...                              ctsm_version="ctsm5.3.012") for b in basins}  # doctest: +SKIP
    >>> train = xr.merge([ensemble_params(space, plans), skill])  # doctest: +SKIP
    >>> x, y = emulators.sse_data(train, space)  # doctest: +SKIP
    """
    if not isinstance(plans, Mapping) or not plans:
        raise ValueError("plans must be a non-empty mapping {basin: table of prepare_ensemble}.")
    names = list(space.names)
    basins = [str(b) for b in plans]
    tables = list(plans.values())
    for b, plan in zip(basins, tables):
        if (not isinstance(plan, pd.DataFrame) or "base_values" not in plan.attrs
                or any(n not in plan.columns for n in names)):
            raise ValueError(f"plans[{b!r}] is not a table of prepare_ensemble for these parameters "
                             f"(it needs the columns {names} and attrs['base_values']).")
    members = sorted({int(m) for plan in tables for m in plan.index})
    defaults = np.array([[plan.attrs["base_values"].get(n, np.nan) for n in names] for plan in tables],
                        dtype=float)
    values = np.full((len(basins), len(members), len(names)), np.nan)
    present = np.zeros((len(basins), len(members)), dtype=bool)
    row = {m: i for i, m in enumerate(members)}
    for j, plan in enumerate(tables):
        idx = [row[int(m)] for m in plan.index]
        values[j, idx] = plan[names].to_numpy(dtype=float)
        present[j, idx] = True
    params = np.full((len(members), len(names)), np.nan)
    for i, m in enumerate(members):
        v, d = values[present[:, i], i], defaults[present[:, i]]
        same = np.all((v == v[:1]) | (np.isnan(v) & np.isnan(v[:1])), axis=0)
        at_base = np.all(np.isclose(v, d, rtol=1e-12, atol=0) | (np.isnan(v) & np.isnan(d)), axis=0)
        bad = ~same & ~at_base
        if bad.any():
            k = int(np.argmax(bad))
            got = {b: float(x) for b, x in zip(np.asarray(basins)[present[:, i]], v[:, k])}
            raise ValueError(f"Member {m} has {names[k]} = {got} in different basins, which are "
                             "neither one sampled value nor each basin's base value; prepare every "
                             "basin from the same samples.")
        params[i] = np.where(same, v[0], np.nan)
    resolved = np.where(np.isnan(params)[None], defaults[:, None, :], params[None])
    unknown = np.isnan(resolved) & present[..., None]
    if unknown.any():
        j, _, k = np.argwhere(unknown)[0]
        raise ValueError(f"Basin {basins[j]}: the base case's {names[k]} is not known (its case "
                         "sets none), and members keep it. Run ./preview_namelists in the base "
                         "case (it writes Buildconf/clmconf/lnd_in) and prepare again, with "
                         "plan_ensemble for members already written.")
    lower, upper = space.lower, space.upper
    outside = present[..., None] & ((resolved < lower) | (resolved > upper))
    if outside.any():
        found = sorted({(basins[j], names[k]) for j, _, k in np.argwhere(outside)})
        listed = ", ".join(f"{b}: {n} = {defaults[basins.index(b), names.index(n)]:.4g}"
                           for b, n in found[:10]) + (" ..." if len(found) > 10 else "")
        warnings.warn(f"Base values outside the space's ranges ({listed}): the runs that keep them "
                      "lie outside the unit cube, and emulators.sse_data refuses them. Widen the "
                      "ranges (space.with_range) or drop those members.", UserWarning, stacklevel=2)
    return xr.Dataset({
        "params": (("member", "param"), params, {
            "long_name": "parameter values of the runs (NaN: the basin's base value, in defaults)"}),
        "defaults": (("basin", "param"), defaults, {
            "long_name": "each basin's base case values (what NaN in params stands for)"}),
    }, coords={"member": members, "basin": np.asarray(basins, dtype=str), "param": names},
        attrs={"model": "CTSM", "source": "emucal.ctsm.prepare_ensemble tables"})


def example_case(folder: str | os.PathLike, *, ctsm_version: str = "ctsm5.3.012",
                 basin: str = "01013500", zbedrock: float = 7.4,
                 space: ParameterSpace | None = None) -> dict[str, Path]:
    """Write a stand-in CTSM base case to try :func:`prepare_ensemble` without CTSM.

    The files have CTSM's structure but not CTSM's content: a CIME case
    folder with ``env_case.xml``, ``user_nl_clm`` and a
    ``Buildconf/clmconf/lnd_in`` that sets the namelist parameters of
    ``ctsm_version`` (at their defaults; the repartition temperatures at
    :data:`NAMELIST_DEFAULTS`), a parameter file that
    holds every parameter of ``space`` that ``ctsm_version`` reads from the
    paramfile (at its default; ``medlynslope`` for 17 PFTs, bare soil 0 and
    the others equal to the default), and a one-gridcell surface dataset
    with ``FMAX`` (default) and ``zbedrock`` (``zbedrock`` metres). Use real
    CTSM files (``paramfile`` and ``fsurdat`` of your case) for real runs.

    Returns
    -------
    dict
        Paths ``case``, ``paramfile`` and ``surfdata``.
    """
    space = space or ParameterSpace.tang2025()
    folder = Path(folder)
    case = folder / f"camels_{basin}"
    (case / "Buildconf" / "clmconf").mkdir(parents=True, exist_ok=True)
    (case / "env_case.xml").write_text("<?xml version='1.0'?>\n<file id='env_case.xml'/>\n")
    inputs = folder / "inputdata"
    inputs.mkdir(parents=True, exist_ok=True)
    paramfile = inputs / "clm5_params.example.nc"
    surfdata = inputs / f"surfdata_{basin}.example.nc"
    (case / "user_nl_clm").write_text(
        "! history: daily means of runoff and its components on tape 2\n"
        "hist_nhtfrq = 0, -24\n"
        "hist_mfilt = 1, 365\n"
        "hist_fincl2 = 'QRUNOFF', 'QOVER', 'QDRAI', 'QDRAI_PERCH', 'QRGWL', "
        "'QVEGE', 'QVEGT', 'QSOIL'\n"
        f"paramfile = '{paramfile.resolve()}'\n"
        f"fsurdat = '{surfdata.resolve()}'\n")
    namelist = []
    for p in space:
        if p.location(ctsm_version) == "namelist":
            names = (p.name, *p.bound_with)
            pairs = ([(n, NAMELIST_DEFAULTS[n]) for n in names] if p.kind == "shift"
                     else [(p.name, p.default)])
            namelist += [f" {name} = {fortran_number(value)}" for name, value in pairs]
    (case / "Buildconf" / "clmconf" / "lnd_in").write_text(
        "&clm_inparm\n"
        f" paramfile = '{paramfile.resolve()}'\n"
        f" fsurdat = '{surfdata.resolve()}'\n"
        + "".join(line + "\n" for line in namelist) + "/\n")
    variables = {}
    for p in space:
        if p.location(ctsm_version) != "paramfile":
            continue
        if p.per_pft:
            values = np.full(17, p.default)
            values[0] = 0.0  # bare soil
            variables[p.name] = ("pft", values, {"units": p.units})
        elif p.kind == "shift":
            for name, value in zip((p.name, *p.bound_with), (2.0, 0.0, 0.0, -2.0)):
                variables[name] = ((), value, {"units": "degC"})
        else:
            variables[p.name] = ((), p.default, {"units": p.units})
    xr.Dataset(variables, attrs={"title": "stand-in CTSM parameter file (emucal example)"}).to_netcdf(
        paramfile, format="NETCDF3_CLASSIC")
    dims = ("lsmlat", "lsmlon")
    fmax = space["FMAX"].default if "FMAX" in space.names else 0.38
    xr.Dataset({
        "FMAX": (dims, np.full((1, 1), fmax), {"units": "unitless"}),
        "zbedrock": (dims, np.full((1, 1), zbedrock), {"units": "m"}),
    }, attrs={"title": "stand-in CTSM surface dataset (emucal example)"}).to_netcdf(
        surfdata, format="NETCDF3_CLASSIC")
    return {"case": case, "paramfile": paramfile, "surfdata": surfdata}
