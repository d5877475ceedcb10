"""Throughput of the teaching model (column-days per second) and a Tang-style ensemble.

Targets (issue "Parameter space, sampling, the teaching model and ensembles"):
- at least 10 million column-days per second for 10,000 columns on 2 cores;
- one ensemble of 19 basins x 350 members x 20 years in under 15 s.
Run: python benchmarks/model_throughput.py [--csv benchmarks/results/model_throughput.csv]
(needs the CAMELS sample: network, cache or EMUCAL_MIRROR). The appendix on
clusters reads the CSV.
"""

import argparse
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numba
import numpy as np
import pandas as pd

import emucal
from emucal import camels, model, sampling
from emucal.parameters import ParameterSpace

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--csv", type=Path, default=None, help="write the figures to this CSV file")
args = parser.parse_args()
print(emucal.size_thread_pools())
space = ParameterSpace.tang2025()
ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
attrs = camels.attributes()
inputs = model.prepare_inputs(ds, attrs)
n_basin, n_days = inputs.shape
print(f"numba threads: {numba.get_num_threads()}; {n_basin} basins x {n_days} days")

# compile once
model.run_columns(space.defaults[None, :], np.zeros(1, int), inputs, spinup_years=0)

n_cols = 10_000
params = sampling.sample(space, n_cols, "random", seed=0, include_default=False)
col_basin = np.arange(n_cols) % n_basin
start = time.perf_counter()
series, _ = model.run_columns(params, col_basin, inputs, outputs=("qsim",), spinup_years=0)
elapsed = time.perf_counter() - start
rate = n_cols * n_days / elapsed
print(f"{n_cols} columns x {n_days} days, qsim only: {elapsed:.2f} s, "
      f"{rate / 1e6:.1f} million column-days/s")

samples = sampling.sample(space, 350, "lhs", seed=1)
start = time.perf_counter()
sim = model.simulate(samples, ds, attrs, outputs=("qsim",), spinup_years=1)
elapsed = time.perf_counter() - start
print(f"Tang-style ensemble, {sim.sizes['member']} members x {sim.sizes['basin']} basins x "
      f"{sim.sizes['time']} days (+1 spin-up year): {elapsed:.2f} s, "
      f"output {sim.qsim.nbytes / 1e6:.0f} MB")
if args.csv is not None:
    pd.DataFrame([
        {"quantity": "column-days per second", "value": rate, "unit": "1/s"},
        {"quantity": "ensemble 19 x 350 x 20 years", "value": elapsed, "unit": "s"},
    ]).assign(threads=numba.get_num_threads(),
              date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              machine=f"{platform.machine()}, {platform.system()}",
              command="python benchmarks/model_throughput.py").to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")
