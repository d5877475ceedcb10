"""A stand-in for the full CAMELS-US set, built from the 19-basin teaching sample.

Not data: each of the 671 CAMELS-US basins (or ``n`` of them) gets its own
attribute row (the real CAMELS attributes, which emucal ships for all 671)
and the forcing and streamflow of one of the 19 sample basins: the sample
basin nearest to it in the large-sample emulator's attributes
(``emucal.emulators.LSE_ATTRIBUTES``, each scaled by its standard deviation
over the 671 basins; a sample basin is its own nearest). The files are
written in the layout of the unpacked CAMELS-US archive
(``basin_mean_forcing/nldas/<huc_02>/<id>_lump_nldas_forcing_leap.txt`` and
``usgs_streamflow/<huc_02>/<id>_streamflow_qc.txt``), so that
``emucal.camels.load_basins(ids, source=OUT_DIR)`` (or ``source="full"`` with
``EMUCAL_CAMELS_DIR=OUT_DIR``) reads it as it reads a real copy:

- the forcing file is the sample basin's, with the target basin's header
  (``gauge_lat``, ``elev_mean``, ``area_geospa_fabric`` in m2);
- the flow file carries the target basin's gauge id, and the sample basin's
  flow times ``area_gages2`` of the target over that of the sample basin, so
  that the flow as a depth (mm/day, what ``load_basins`` returns) is the
  sample basin's; missing days stay ``-999.00`` with flag ``M``.

It exercises the reader, the protocol and the costs of a large sample (the
basins, the attributes, the spatial folds), never its science: a file
``STANDIN.txt`` at the top says so and lists the pairs, and the benchmarks
refuse to write results from a folder that holds it (``benchmarks/protocol.py``).
The sample has NLDAS forcing only, so the stand-in has too.

Run: python benchmarks/standin.py OUT_DIR [--n-basins 671]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emucal import camels, data, emulators

MARKER = "STANDIN.txt"
_SAMPLE = re.compile(r"^camels_sample/(basin_mean_forcing/nldas|usgs_streamflow)/\d\d/(\d{8})_")


def pairs(targets, attrs: pd.DataFrame | None = None) -> pd.Series:
    """The sample basin whose forcing and flow each target basin gets.

    The nearest sample basin in ``emulators.LSE_ATTRIBUTES``, each attribute
    divided by its standard deviation over all 671 basins (ties: the lower id).

    Returns
    -------
    pandas.Series
        Indexed by target basin id, the sample basin id.
    """
    attrs = camels.attributes() if attrs is None else attrs
    targets = camels.check_basins(targets)
    sample = camels.sample_basins()
    table = attrs[list(emulators.LSE_ATTRIBUTES)].astype(float)
    z = table / table.std()
    dist = ((z.loc[targets].to_numpy()[:, None, :] - z.loc[sample].to_numpy()[None]) ** 2).sum(-1)
    return pd.Series(np.asarray(sample)[dist.argmin(1)], index=pd.Index(targets, name="basin"),
                     name="sample_basin")


def _sample_files() -> dict[str, dict[str, Path]]:
    """``{sample basin: {"forcing": path, "flow": path}}``, fetched through the registry."""
    files: dict[str, dict[str, Path]] = {}
    for name in data.registry():
        if m := _SAMPLE.match(name):
            kind = "flow" if m.group(1) == "usgs_streamflow" else "forcing"
            files.setdefault(m.group(2), {})[kind] = Path(data.fetch(name))
    return files


def _flow_text(path: Path, basin: str, factor: float) -> str:
    """A sample flow file rewritten for ``basin``: its gauge id, flow times ``factor``."""
    table = pd.read_csv(path, sep=r"\s+", header=None, dtype={"gauge_id": str, "flag": str},
                        names=["gauge_id", "year", "month", "day", "q", "flag"])
    q = table.q.to_numpy(dtype=float)
    text = np.where(q < 0, "-999.00", np.char.mod("%.6f", q * factor))
    return "\n".join(f"{basin} {y} {m:02d} {d:02d} {v} {f}" for y, m, d, v, f in zip(
        table.year, table.month, table.day, text, table.flag)) + "\n"


def build(out_dir, n_basins: int | None = None, basins=None) -> pd.Series:
    """Write a stand-in CAMELS-US folder of ``n_basins`` (or the given ``basins``).

    Parameters
    ----------
    out_dir
        Folder to write (created; an existing stand-in there is overwritten,
        any other non-empty folder refused).
    n_basins
        How many of the 671 basins, evenly spaced in id order (default: all 671).
    basins
        Or the gauge ids to write.

    Returns
    -------
    pandas.Series
        The pairs: target basin id -> sample basin id (also in ``STANDIN.txt``).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} is not empty and holds no {MARKER}: give an empty or new "
                              "folder for the stand-in (it never writes over other files).")
    attrs = camels.attributes()
    if basins is None:
        n = len(attrs) if n_basins is None else int(n_basins)
        if not 1 <= n <= len(attrs):
            raise ValueError(f"n_basins must be between 1 and {len(attrs)}, not {n_basins!r}.")
        basins = attrs.index[np.linspace(0, len(attrs) - 1, n).round().astype(int)]
    paired = pairs(basins, attrs)
    files = _sample_files()
    for target, source in paired.items():
        huc = attrs.at[target, "huc_02"]
        raw = files[source]["forcing"].read_bytes()
        body = raw.split(b"\n", 3)[3]  # the column line and the daily rows, as in the sample
        header = (f"{attrs.at[target, 'gauge_lat']:8.4f}\n{attrs.at[target, 'elev_mean']:8.2f}\n"
                  f"{attrs.at[target, 'area_geospa_fabric'] * 1e6:.0f}\n").encode()
        forcing = out / "basin_mean_forcing" / "nldas" / huc / f"{target}_lump_nldas_forcing_leap.txt"
        forcing.parent.mkdir(parents=True, exist_ok=True)
        forcing.write_bytes(header + body)
        factor = attrs.at[target, "area_gages2"] / attrs.at[source, "area_gages2"]
        flow = out / "usgs_streamflow" / huc / f"{target}_streamflow_qc.txt"
        flow.parent.mkdir(parents=True, exist_ok=True)
        flow.write_text(_flow_text(files[source]["flow"], target, factor))
    lines = [
        "STAND-IN, NOT DATA. Built by benchmarks/standin.py from the 19-basin CAMELS-US teaching",
        f"sample for timing the benchmarks on {len(paired)} basins. Each basin below has its real",
        "CAMELS attributes but the NLDAS forcing and the USGS flow (as a depth) of the sample",
        "basin beside it, its nearest in emucal.emulators.LSE_ATTRIBUTES. Skill scores computed",
        "from this folder say nothing about these basins; benchmarks/calibration_table.py",
        "refuses to write results from it unless --timing is given.",
        "",
        "basin sample_basin",
        *(f"{t} {s}" for t, s in paired.items()),
    ]
    (out / MARKER).write_text("\n".join(lines) + "\n")
    return paired


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the stand-in to")
    parser.add_argument("--n-basins", type=int, default=671,
                        help="number of CAMELS basins, evenly spaced in id order (default: 671)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paired = build(args.out_dir, args.n_basins)
    size = sum(p.stat().st_size for p in args.out_dir.rglob("*") if p.is_file())
    print(f"stand-in of {len(paired)} basins ({paired.nunique()} sample basins) in {args.out_dir}: "
          f"{size / 1e6:.0f} MB, {time.perf_counter() - start:.1f} s. Not data: see "
          f"{args.out_dir / MARKER}.")


if __name__ == "__main__":
    main()
