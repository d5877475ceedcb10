"""The ensemble explorer's speed on a 19-basin x 350-member ensemble (issue 33's targets).

Targets (this machine, a benchmark, not a timed test): the first view of
``emucal explore`` within 10 s (read the file, fit the GP with its 5-fold
cross-validation, the Sobol' indices with their intervals, every figure), and
a slider move redrawn in under 0.3 s (curves, map and prediction through the
new point).

The ensemble is the teaching model's, as ``run_ensemble`` writes it: a Latin
hypercube of 350 members (member 0 the default) in the 19 sample basins,
KGE' and normKGE over the calibration and validation water years, with the
NaN of failed runs filled (KGE' -10, normKGE -1). Each measurement runs
``--repeats`` times in one process (the first view in a new app each time,
after one warm-up app that pays for imports and compilation); the table
gives the median and the largest. Prints a table and writes it to ``--csv``.

Run: python benchmarks/ppe_explorer.py [--repeats 3] [--csv FILE]
(needs the CAMELS sample: network, cache or EMUCAL_MIRROR)
"""

import argparse
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import emucal
from emucal import camels, ensemble, explorer, sampling
from emucal.parameters import ParameterSpace

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--moves", type=int, default=20, help="slider moves per app")
parser.add_argument("--csv", type=Path, default=None)
args = parser.parse_args()

space = ParameterSpace.tang2025()
forcing = camels.load_basins(start="1993-10-01", end="2013-09-30")
ens = ensemble.run_ensemble(sampling.sample(space, 350, "lhs", seed=0), forcing, camels.attributes())
ens["kge_prime"] = ens.kge_prime.fillna(-10.0)
ens["norm_kge"] = ens.norm_kge.fillna(-1.0)
path = Path(tempfile.mkdtemp(prefix="emucal-ppe-")) / "teaching.nc"
ens.to_netcdf(path)
print(f"ensemble: {ens.sizes['member']} members x {ens.sizes['basin']} basins x "
      f"{ens.sizes['period']} periods, {path.stat().st_size / 1e6:.1f} MB")

basins = [str(b) for b in ens.basin.values]
explorer.ensemble_app(xr.load_dataset(path), output="norm_kge", n_draws=2)  # warm-up
rows = []
rng = np.random.default_rng(0)
for r in range(args.repeats):
    basin = basins[r % len(basins)]
    start = time.perf_counter()
    app = explorer.ensemble_app(xr.load_dataset(path), output="norm_kge",
                                select={"basin": basin, "period": "calibration"})
    rows.append({"step": "first view (read, fit + 5-fold CV, indices, figures)",
                 "seconds": time.perf_counter() - start})
    rows.append({"step": "  of which: emulator, indices, figures", "seconds": app.view_seconds})
    for _ in range(args.moves):
        name = space.names[rng.integers(len(space))]
        p = space[name]
        app.set(**{name: float(rng.uniform(p.lower, p.upper))})
        rows.append({"step": "slider move (curves, map, prediction)", "seconds": app.update_seconds})
    app.set(period="validation")
    rows.append({"step": "another slice (validation)", "seconds": app.view_seconds})
    start = time.perf_counter()
    app.export(path.parent / "export")
    rows.append({"step": "export (CSV + 3 PNG at 150 dpi)", "seconds": time.perf_counter() - start})

table = (pd.DataFrame(rows).groupby("step", sort=False)["seconds"]
         .agg(median="median", largest="max", n="size").reset_index())
stamp = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": platform.node(),
         "cpus": os.cpu_count(),
         "emucal": emucal.__version__}
print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
if args.csv:
    table.assign(**stamp).to_csv(args.csv, index=False, float_format="%.4g")
    print(f"written {args.csv}")
