"""Sobol' indices of the teaching model against those of emulators, and the explorer's speed.

The targets of chapter 8 (teaching model, the 19 sample basins, calibration
water years 1995-2007 after a spin-up year; outputs normKGE, mean flow,
baseflow index, half-flow date):

- model-based indices for 19 basins in under 2 minutes: the time, the base
  size N and the median 95% half-width of the five largest total indices;
- emulator-based total indices (a GP per basin on a 200-run Latin hypercube)
  within 0.05 of the model-based ones for the five most influential
  parameters in at least 80% of basins;
- Spearman rank correlation of the total indices at least 0.8 in the median basin;
- one explorer update (model run, scores, drawing) under 0.2 s.

The reference is the model itself at a large base size (``--reference-n``).
The same comparison is made for the model at the chapter's sizes, which
shows how much of the disagreement is sampling noise of the reference
method itself. Emulator rows are repeated over ``--seeds`` (design and fit).
Prints a table and writes it to ``--csv``.

Run: python benchmarks/sensitivity.py [--reference-n 1024] [--seeds 0,1,2] [--csv FILE]
(needs the CAMELS sample: network, cache or EMUCAL_MIRROR; and CARTOPY_DATA_DIR offline)
"""

import argparse
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import emucal
from emucal import camels, emulators, explorer, metrics, sampling, sensitivity
from emucal.parameters import ParameterSpace

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--reference-n", type=int, default=1024)
parser.add_argument("--model-n", default="128,256", help="base sizes timed and compared")
parser.add_argument("--emulator-n", type=int, default=2048)
parser.add_argument("--train", type=int, default=200)
parser.add_argument("--seeds", default="0,1,2")
parser.add_argument("--csv", default=str(Path(__file__).parent / "results" / "sensitivity.csv"))
args = parser.parse_args()
print(emucal.size_thread_pools(), flush=True)

ds = camels.load_basins(start="1993-10-01", end="2007-09-30")
attrs = camels.attributes().loc[ds.basin.values]
space = ParameterSpace.tang2025()
n_basin = ds.sizes["basin"]
OUTPUTS = ["norm_kge", *sensitivity.SIGNATURES]


def model_indices(n: int, seed: int):
    design = sensitivity.sobol_design(space, n, seed=seed)
    start = time.perf_counter()
    out = sensitivity.model_outputs(space.from_unit(design), ds, attrs, space=space,
                                    period="calibration", progress=False)
    ind = sensitivity.sobol_indices(out.to_dataarray("output").transpose("output", "basin", "member"),
                                    space, seed=seed)
    return ind, time.perf_counter() - start, design, out


def agreement(ref: np.ndarray, est: np.ndarray) -> dict:
    """ref, est: (basin, param) total indices."""
    top = np.argsort(-ref, axis=1)[:, :5]
    err = np.abs(np.take_along_axis(est - ref, top, axis=1))
    return {"top5_within_0.05": float(np.mean((err <= 0.05).all(axis=1))),
            "median_abs_error_top5": float(np.median(err)),
            "median_spearman": float(np.median([spearmanr(a, b).statistic for a, b in zip(ref, est)]))}


rows = []
stamp = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": platform.node(),
         "command": "python benchmarks/sensitivity.py " + " ".join(
             f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "csv")}

print(f"reference: the model at N = {args.reference_n} ...", flush=True)
reference, ref_seconds, ref_design, ref_out = model_indices(args.reference_n, seed=12345)
print(f"  {ref_design.shape[0] * n_basin:,} runs in {ref_seconds:.0f} s", flush=True)
for n in [int(v) for v in args.model_n.split(",")]:
    ind, seconds, design, _ = model_indices(n, seed=0)
    for out in OUTPUTS:
        conf = np.take_along_axis(ind.ST_conf.sel(output=out).values,
                                  np.argsort(-ind.ST.sel(output=out).values, axis=1)[:, :5], axis=1)
        rows.append({"method": f"model, N={n}", "output": out, "seed": 0, "seconds": seconds,
                     "runs": design.shape[0] * n_basin, "median_conf_top5": float(np.median(conf)),
                     **agreement(reference.ST.sel(output=out).values, ind.ST.sel(output=out).values)})
    print(f"model N={n}: {design.shape[0] * n_basin:,} runs + indices in {seconds:.1f} s", flush=True)

gp_for_explorer = None
for seed in [int(s) for s in args.seeds.split(",")]:
    train = sampling.sample(space, args.train, "lhs", seed=seed, include_default=False)
    train_out = sensitivity.model_outputs(train, ds, attrs, space=space, period="calibration",
                                          progress=False)
    x = np.broadcast_to(space.to_unit(train), (n_basin, *train.shape))
    x_ref = np.broadcast_to(ref_design, (n_basin, *ref_design.shape))
    for out in OUTPUTS:
        start = time.perf_counter()
        gp = emulators.GPEmulator(seed=seed).fit(x, train_out[out].values)
        emu = sensitivity.emulator_indices(gp, space, args.emulator_n, n_draws=30, seed=seed)
        seconds = time.perf_counter() - start
        ref = reference.ST.sel(output=out).values
        lo, hi = (np.quantile(emu.ST_draws.values, q, axis=0) for q in (0.05, 0.95))
        r2 = np.median(metrics.r2_score(ref_out[out].values[:, :4096], gp.predict(x_ref[:, :4096])))
        rows.append({"method": f"emulator, {args.train} runs", "output": out, "seed": seed,
                     "seconds": seconds, "runs": args.train * n_basin,
                     "emulator_r2": float(r2), "inside_draws_90": float(np.mean((ref >= lo) & (ref <= hi))),
                     **agreement(ref, emu.ST.values)})
        if out == "norm_kge" and gp_for_explorer is None:
            gp_for_explorer = gp
    print(f"emulators, seed {seed}: done", flush=True)

# the explorer: 19 basins, the normKGE emulator; time slider updates (the first compiles)
app = explorer.app(ds, attrs, space=space, emulator=gp_for_explorer, period="calibration")
times = []
for value in np.linspace(0.3, 3.0, 21):
    app.sliders["watsat_sf"].value = float(value)
    times.append(app.update_seconds)
start = time.perf_counter()
app.basin_select.value = app.basins[5]
basin_seconds = time.perf_counter() - start
start = time.perf_counter()
app.draw_curves()
curves_seconds = time.perf_counter() - start
rows.append({"method": "explorer update", "output": "", "seed": 0, "seconds": float(np.median(times)),
             "max_seconds": float(np.max(times)), "basin_change_seconds": basin_seconds,
             "curves_seconds": curves_seconds})

table = pd.DataFrame(rows)
for k, v in stamp.items():
    table[k] = v
table.insert(0, "reference_n", args.reference_n)
Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
table.to_csv(args.csv, index=False)
pd.set_option("display.width", 200)
summary = (table[table.method != "explorer update"]
           .groupby(["method", "output"])[["top5_within_0.05", "median_abs_error_top5", "median_spearman",
                                            "median_conf_top5", "emulator_r2", "inside_draws_90", "seconds"]]
           .agg(["mean", "std"]).round(3))
print(summary.to_string())
print(f"explorer: update median {np.median(times) * 1000:.0f} ms, max {np.max(times) * 1000:.0f} ms "
      f"over {len(times)} slider moves; basin change {basin_seconds * 1000:.0f} ms; "
      f"sensitivity curves {curves_seconds * 1000:.0f} ms")
print(f"wrote {args.csv}")
