"""The calibration table of chapter 6 / issue "Calibration and large-sample regionalisation".

Teaching model, the 19 sample basins; spin-up WY1994, calibration WY1995-2007,
validation WY2008-2013; KGE'. Rows: default parameters; best of the initial
200 runs; SSE and LSE iterations 1-3 (50 runs each), read as Tang et al. read
them (each basin's best run *within* the iteration), and each loop's best so
far; DDS with 350 and 3,500 runs per basin; LSE in spatial 5-fold
cross-validation (ungauged). Prints median KGE' (calibration, validation),
the share of basins better than default, Tang et al.'s CTSM numbers beside,
and the run time of the protocol.
Run: python benchmarks/calibration_table.py [--checkpoints DIR] [--scale linear|log] [--seed N]
``--scale log`` samples and searches the wide-ranging parameters in their
logarithm (``ParameterSpace.tang2025(scale="log")``); the default is Tang et
al.'s linear scale.
With --checkpoints, every step saves its progress in DIR, and running the
same command again after an interruption resumes the protocol where it
stopped (the table is the same as from an uninterrupted run).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emucal import calibrate, camels, emulators, sampling
from emucal.parameters import ParameterSpace

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--checkpoints", type=Path, default=None,
                    help="folder for the checkpoints of every step (resume by running again)")
parser.add_argument("--scale", choices=("linear", "log"), default="linear",
                    help="sampling scale of the parameter space (default: linear, as Tang et al.)")
parser.add_argument("--seed", type=int, default=0, help="seed of the whole protocol")
args = parser.parse_args()


def checkpoint(name):
    return None if args.checkpoints is None else args.checkpoints / f"{name}.nc"


SEED = args.seed
start_all = time.perf_counter()
space = ParameterSpace.tang2025(scale=args.scale)
print(f"scale {args.scale}, seed {SEED}")
ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
attrs = camels.attributes()
run = calibrate.model_runner(ds, attrs, space, period=(1995, 2007))
validate = calibrate.model_runner(ds, attrs, space, period=(2008, 2013))
basin_attrs = attrs.loc[ds.basin.values, list(emulators.LSE_ATTRIBUTES)].to_numpy(dtype=float)
initial = sampling.sample(space, 200, "lhs", seed=SEED)
n_basin = ds.sizes["basin"]
times = {}


def best_after(history, iteration):
    skill = np.where(history.iteration.values <= iteration,
                     np.nan_to_num(history.skill.values, nan=-np.inf), -np.inf)
    idx = skill.argmax(axis=1)
    return history.params.values[np.arange(n_basin), idx]


def best_within(history, iteration):
    skill = np.where(history.iteration.values == iteration,
                     np.nan_to_num(history.skill.values, nan=-np.inf), -np.inf)
    return history.params.values[np.arange(n_basin), skill.argmax(axis=1)]


t = time.perf_counter()
sse = calibrate.iterate(run, space, initial, n_iterations=3, n_per_iteration=50, seed=SEED,
                        checkpoint=checkpoint("sse"), progress=False)
times["SSE loop"] = time.perf_counter() - t
t = time.perf_counter()
lse = calibrate.iterate(run, space, initial, n_iterations=3, n_per_iteration=50, emulator="lse",
                        basin_attrs=basin_attrs, seed=SEED, checkpoint=checkpoint("lse"), progress=False)
times["LSE loop"] = time.perf_counter() - t
t = time.perf_counter()
dds350 = calibrate.dds(run, space, 350, seed=SEED, checkpoint=checkpoint("dds350"), progress=False)
dds3500 = calibrate.dds(run, space, 3500, seed=SEED, batch=10, checkpoint=checkpoint("dds3500"),
                       progress=False)
times["DDS 350 + 3500"] = time.perf_counter() - t
t = time.perf_counter()
init_params = sse.params.values[:, :200]
init_skill = sse.skill.values[:, :200]
ungauged, _ = calibrate.regionalise(init_params, init_skill, basin_attrs, space, seed=SEED,
                                   checkpoint=checkpoint("regionalise"))
times["LSE spatial CV"] = time.perf_counter() - t

rows = {
    "default": np.broadcast_to(space.defaults, (n_basin, len(space))),
    "best of initial 200": best_after(sse, 0),
    **{f"SSE iteration {i}": best_within(sse, i) for i in (1, 2, 3)},
    **{f"LSE iteration {i}": best_within(lse, i) for i in (1, 2, 3)},
    "SSE loop, best so far": best_after(sse, 3),
    "LSE loop, best so far": best_after(lse, 3),
    "DDS 350": dds350.params.values[np.arange(n_basin), np.nan_to_num(dds350.skill.values, nan=-np.inf).argmax(1)],
    "DDS 3500": dds3500.params.values[np.arange(n_basin), np.nan_to_num(dds3500.skill.values, nan=-np.inf).argmax(1)],
    "LSE spatial CV (ungauged)": ungauged,
}
tang = {"default": 0.195, "best of initial 200": 0.461, "SSE iteration 1": 0.465,
        "SSE iteration 2": 0.493, "SSE iteration 3": 0.514, "LSE iteration 1": 0.505,
        "LSE iteration 2": 0.515, "LSE iteration 3": 0.525}
table = {}
default_cal = run(rows["default"][:, None, :])[:, 0]
for name, sets in rows.items():
    cal = run(sets[:, None, :])[:, 0]
    val = validate(sets[:, None, :])[:, 0]
    table[name] = {"median KGE' cal": np.nanmedian(cal), "median KGE' val": np.nanmedian(val),
                   "basins better than default (cal)": f"{int(np.sum(cal > default_cal))}/{n_basin}",
                   "Tang et al. CTSM (627 basins)": tang.get(name, np.nan)}
table = pd.DataFrame(table).T
print(table.to_string(float_format=lambda v: f"{v:.3f}"))
gain = table["median KGE' cal"] - table.loc["default", "median KGE' cal"]
reference = gain["DDS 3500"]
for name in ("SSE loop, best so far", "LSE loop, best so far", "DDS 350"):
    print(f"{name}: {gain[name] / reference:.0%} of the median KGE' gain of DDS 3500 "
          f"(target: at least 90%)")
print("run times (s):", {k: round(v, 1) for k, v in times.items()},
      f"total {time.perf_counter() - start_all:.0f} s")
