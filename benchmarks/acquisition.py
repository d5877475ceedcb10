"""How to spend 350 runs per basin: settings of the Thompson-sampling loop, over seeds.

Teaching model, the 19 sample basins, calibration WY1995-2007, KGE'. For each
setting (initial runs, batch size, local GP or not, perturbation probability)
and each seed, the median over basins of the best KGE' after 350 runs per
basin, beside DDS with 350 runs of the same seed. This is the measurement
behind the ``TS`` settings of ``benchmarks/calibration_table.py``. The loop
is ``calibrate.loop`` with ``variants.thompson_step_batch``: chapter 5's
Thompson batch, with a fixed step or the trust region's, and a fixed
perturbation probability or DDS's schedule.

Run: python benchmarks/acquisition.py [--seeds 0,1,2] [--setting NAME ...] [--csv FILE]
"""

import argparse
import functools
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import variants

import emucal
from emucal import calibrate, camels, ensemble, sampling
from emucal.parameters import ParameterSpace

BUDGET = 350
# name: (initial runs, runs per iteration, n_local, perturb, step)
SETTINGS = {
    "50 + 30 x 10, all runs": (50, 10, None, 0.2, 0.2),
    "50 + 60 x 5, local 100": (50, 5, 100, 0.2, 0.2),
    "20 + 66 x 5, local 100": (20, 5, 100, 0.2, 0.2),
    "20 + 66 x 5, local 100, DDS schedule": (20, 5, 100, "dds", 0.2),
    "20 + 66 x 5, local 100, trust region": (20, 5, 100, 0.2, "trust"),
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
parser.add_argument("--setting", action="append", default=None,
                    help="a name of SETTINGS to run; repeat for several (default: all)")
parser.add_argument("--checkpoints", type=Path, default=None,
                    help="folder for checkpoints (resume by running again)")
parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
args = parser.parse_args()
seeds = [int(s) for s in args.seeds.split(",")]
names = list(SETTINGS) if args.setting is None else args.setting
unknown = set(names) - set(SETTINGS)
if unknown:
    parser.error(f"unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
print(emucal.size_thread_pools(), flush=True)

space = ParameterSpace.tang2025()
ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
attrs = camels.attributes()
run = ensemble.model_runner(ds, attrs, space, period="calibration")


def checkpoint(name, seed):
    return None if args.checkpoints is None else args.checkpoints / f"{name}_{seed}.nc"


records = []
for seed in seeds:
    dds = calibrate.dds(run, space, BUDGET, seed=seed)
    dds_median = float(np.median(dds.skill.max("member")))
    for name in names:
        n_initial, batch, n_local, perturb, step = SETTINGS[name]
        path = checkpoint("acq_" + "".join(c for c in name if c.isalnum()), seed)
        resumed = path is not None and path.exists()  # then the seconds are not the run's cost
        start = time.perf_counter()
        n_iterations = (BUDGET - n_initial) // batch
        propose = functools.partial(variants.thompson_step_batch, n=batch, n_local=n_local,
                                    perturb=perturb, step=step, total=n_initial + n_iterations * batch,
                                    seed=seed)
        hist = variants.run_loop(run, space, sampling.sample(space, n_initial, "lhs", seed=seed),
                                 propose, n_iterations, path)
        median = float(np.median(hist.skill.max("member")))
        records.append({"seed": seed, "setting": name, "median KGE' cal": median,
                        "DDS 350": dds_median, "minus DDS 350": median - dds_median,
                        "seconds": np.nan if resumed else time.perf_counter() - start})
        print(records[-1], flush=True)

table = pd.DataFrame(records)
summary = table.groupby("setting", sort=False)[["median KGE' cal", "minus DDS 350", "seconds"]]
summary = summary.agg(["mean", "std", "min"])
pd.set_option("display.width", 200)
print(f"\nseeds {seeds}; median over 19 basins of the best KGE' after {BUDGET} runs")
print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
if args.csv is not None:
    table["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    table["machine"] = f"{platform.machine()}, {platform.system()}"
    table.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")
