"""Ungauged basins over many seeds: the regionalisation rows of the calibration table.

The ungauged rows of ``calibration_table.py`` move much more from seed to
seed than the calibration rows (a median over 19 basins of parameter sets that
were never checked against the basin's flow), and a seed of the whole table
takes about 20 minutes. This script runs only what those rows need, about
4 minutes a seed: Tang et al.'s SSE loop (whose runs train the LSE and whose
best runs the donors hand over) and, with spatial 5-fold cross-validation,

- the random-forest LSE searched over the whole parameter space
  (``regionalise(emulator="lse_rf")``, as Tang et al.);
- the same LSE choosing among the training basins' best runs
  (``among="donors"``);
- the SSE-calibrated parameters of the most similar basin (attributes) and of
  the nearest basin (great-circle distance).

It shares the checkpoints of ``calibration_table.py`` (same names, same
settings), so seeds that the table ran cost only the regionalisation here.

Run: python benchmarks/ungauged.py [--seeds 0,1,...,9] [--checkpoints DIR] [--csv FILE]
"""

import argparse
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import protocol

import emucal
from emucal import calibrate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="comma-separated seeds")
parser.add_argument("--checkpoints", type=Path, default=None,
                    help="folder for checkpoints (those of calibration_table.py are reused)")
parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
args = parser.parse_args()
seeds = [int(s) for s in args.seeds.split(",")]
print(emucal.size_thread_pools(), flush=True)

setup = protocol.setting()
space, run, validate, n_basin = setup.space, setup.run, setup.validate, setup.n_basin
basin_attrs, coords = setup.basin_attrs, setup.coords
default = np.broadcast_to(space.defaults, (n_basin, 1, len(space))).copy()
default_cal = run(default)[:, 0]

records = []
for seed in seeds:
    def checkpoint(name):
        return None if args.checkpoints is None else args.checkpoints / f"{name}_linear_{seed}.nc"

    start = time.perf_counter()
    sse = protocol.tang_sse_loop(setup, seed, checkpoint("sse_gp_or_rf_tang"))
    sse_seconds = time.perf_counter() - start
    start = time.perf_counter()
    cube = calibrate.regionalise(sse, basin_attrs, space, emulator="lse_rf", seed=seed,
                                 checkpoint=checkpoint("regionalise_rf"))
    donors = calibrate.regionalise(sse, basin_attrs, space, emulator="lse_rf", among="donors",
                                   seed=seed, checkpoint=checkpoint("regionalise_rf_donors"))
    fold = cube.fold.values
    calibrated = calibrate.best(sse)
    rows = {
        "SSE loop (Tang), calibrated": calibrated.values,
        "ungauged: LSE, spatial CV": cube.params.values,
        "ungauged: LSE chooses the donor": donors.params.values,
        "ungauged: most similar donor": calibrate.donor_transfer(calibrated, basin_attrs, fold).params.values,
        "ungauged: nearest donor": calibrate.donor_transfer(
            calibrated, coords, fold, metric="distance").params.values,
    }
    for name, sets in rows.items():
        cal = run(sets[:, None, :])[:, 0]
        records.append({"seed": seed, "row": name, "median KGE' cal": np.nanmedian(cal),
                        "median KGE' val": np.nanmedian(validate(sets[:, None, :])[:, 0]),
                        "basins better than default": int(np.sum(cal > default_cal))})
    print(f"seed {seed}: SSE loop {sse_seconds:.0f} s, regionalisation "
          f"{time.perf_counter() - start:.0f} s", flush=True)

table = pd.DataFrame(records)
order = list(dict.fromkeys(table.row))
pd.set_option("display.width", 200)
summary = table.groupby("row", sort=False)[["median KGE' cal", "median KGE' val",
                                            "basins better than default"]].agg(["mean", "std"])
print(f"\n{n_basin} basins, seeds {seeds}; mean and sd over seeds")
print(summary.loc[order].to_string(float_format=lambda v: f"{v:.3f}"))
per_seed = table.pivot(index="seed", columns="row", values="median KGE' cal")
for lse in ("ungauged: LSE, spatial CV", "ungauged: LSE chooses the donor"):
    for donor in ("ungauged: most similar donor", "ungauged: nearest donor"):
        gap = per_seed[lse] - per_seed[donor]
        print(f"{lse} minus {donor}: mean {gap.mean():+.3f}, ahead in {int((gap > 0).sum())} "
              f"of {len(gap)} seeds")
gap = per_seed["ungauged: LSE chooses the donor"] - per_seed["ungauged: LSE, spatial CV"]
print(f"choosing the donor minus searching the cube: mean {gap.mean():+.3f} (sd {gap.std():.3f}), "
      f"ahead in {int((gap > 0).sum())} of {len(gap)} seeds")
if args.csv is not None:
    table["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    table["machine"] = f"{platform.machine()}, {platform.system()}"
    table["command"] = f"python benchmarks/ungauged.py --seeds {args.seeds}"
    table.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")
