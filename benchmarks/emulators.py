"""Emulator benchmarks: training and prediction times, held-out skill, GP vs random forest.

Targets (issue "Emulators with GPyTorch"):
- SSE for 19 basins x 200 runs trains in under 30 s on this 2-core machine;
- LSE on 19 basins x 350 runs trains in under 3 minutes and predicts 1e5 points in under 5 s;
- on held-out runs the GP's R2 of normKGE beats the random forest's, for the SSE in most basins.
Also the cost of one exact-GP evaluation of the marginal likelihood on 3,000
LSE rows (33 inputs): its time and the peak memory of the process, which the
appendix on clusters scales to 671 basins.
Run: python benchmarks/emulators.py [--device cuda] [--csv benchmarks/results/emulators.csv]
"""

import argparse
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import emucal
from emucal import camels, emulators, ensemble, metrics, sampling
from emucal.parameters import ParameterSpace

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cpu")
parser.add_argument("--csv", type=Path, default=None, help="write the figures to this CSV file")
args = parser.parse_args()
print(emucal.size_thread_pools())
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")

space = ParameterSpace.tang2025()
ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
attrs = camels.attributes()
samples = sampling.sample(space, 350, "lhs", seed=1)
ens = ensemble.run_ensemble(samples, ds, attrs)

# --- SSE: 200 training runs, 150 held out
x, y = emulators.sse_data(ens, space)
train, test = np.arange(200), np.arange(200, 350)
start = time.perf_counter()
sse = emulators.GPEmulator(device=args.device).fit(x[:, train], y[:, train])
sse_time = time.perf_counter() - start
mean, std = sse.predict(x[:, test], return_std=True)
start = time.perf_counter()
rf = emulators.RandomForestEmulator(seed=0).fit(x[:, train], y[:, train])
rf_time = time.perf_counter() - start
rf_mean = rf.predict(x[:, test])
table = pd.DataFrame({
    "GP R2": metrics.r2_score(y[:, test], mean), "RF R2": metrics.r2_score(y[:, test], rf_mean),
    "GP RMSE": metrics.rmse(y[:, test], mean), "RF RMSE": metrics.rmse(y[:, test], rf_mean),
    "GP 90% coverage": metrics.coverage(y[:, test], mean, std),
}, index=ds.basin.values).round(3)
print(table.to_string())
print(f"SSE (batched GP, {x.shape[0]} basins x {len(train)} runs): fit {sse_time:.1f} s "
      f"; RF fit {rf_time:.1f} s")
print(f"GP beats RF in {int((table['GP R2'] > table['RF R2']).sum())} of {len(table)} basins; "
      f"median R2 GP {table['GP R2'].median():.2f}, RF {table['RF R2'].median():.2f}")

# --- LSE: all 350 runs in 19 basins (6,650 rows), then 100,000 predictions
xl, yl, basins = emulators.lse_data(ens, attrs, space)
lse = emulators.make_lse(len(yl), device=args.device)
start = time.perf_counter()
lse.fit(xl, yl)
lse_time = time.perf_counter() - start
big = np.random.default_rng(0).uniform(xl.min(0), xl.max(0), size=(100_000, xl.shape[1]))
start = time.perf_counter()
lse.predict(big, return_std=True)
pred_time = time.perf_counter() - start
print(f"LSE ({type(lse).__name__}, {len(yl)} runs, {xl.shape[1]} inputs): fit {lse_time:.1f} s "
      f"({lse.n_iter_} epochs), predict 100,000 points with std {pred_time:.2f} s")

# --- LSE held-out runs (last 50 members in every basin) vs random forest
member = np.tile(np.arange(350), len(ds.basin))
tr, te = member < 300, member >= 300
lse_cv = emulators.make_lse(int(tr.sum()), device=args.device).fit(xl[tr], yl[tr])
m, s = lse_cv.predict(xl[te], return_std=True)
rf_l = emulators.RandomForestEmulator(seed=0).fit(xl[tr], yl[tr]).predict(xl[te])
per_basin = lambda pred: np.median(metrics.r2_score(yl[te].reshape(-1, 50), pred.reshape(-1, 50)))
print(f"LSE held-out runs: R2 {metrics.r2_score(yl[te], m):.3f} (median per basin "
      f"{per_basin(m):.2f}), coverage {metrics.coverage(yl[te], m, s):.2f}; RF R2 "
      f"{metrics.r2_score(yl[te], rf_l):.3f} (median per basin {per_basin(rf_l):.2f})")

# --- one exact-GP evaluation (loss and gradient) on n LSE-shaped rows, in a fresh process
EXACT = """
import resource, sys, time
import numpy as np, torch, gpytorch
from emucal import emulators
n, d = int(sys.argv[1]), int(sys.argv[2])
x = np.random.default_rng(0).uniform(size=(n, d))
y = np.sin(x.sum(1))
x, y = torch.as_tensor(x), torch.as_tensor(y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def evaluate():  # the negative marginal likelihood of chapter 4's GP and its gradient
    model = emulators.BatchedGP(x, y, gpytorch.likelihoods.GaussianLikelihood()).double().train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    with gpytorch.settings.max_cholesky_size(emulators.MAX_CHOLESKY_SIZE):
        (-mll(model(x), y)).backward()


evaluate()  # warm-up: PyTorch's first call
start = time.perf_counter()
evaluate()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"RESULT {seconds} {(peak - before) / 1024**2}")
"""
n_exact = 3_000
out = subprocess.run([sys.executable, "-c", EXACT, str(n_exact), str(xl.shape[1])], capture_output=True,
                     text=True, check=True).stdout
exact_s, exact_gb = (float(v) for v in out.split("RESULT")[1].split())
print(f"exact GP, {n_exact:,} rows x {xl.shape[1]} inputs: one evaluation {exact_s:.1f} s, "
      f"{exact_gb:.2f} GB more memory at the peak")

if args.csv is not None:
    pd.DataFrame([
        {"quantity": "SSE fit, 19 basins x 200 runs", "value": sse_time, "unit": "s", "rows": 19 * 200},
        {"quantity": "LSE fit", "value": lse_time, "unit": "s", "rows": len(yl)},
        {"quantity": "LSE predict 100,000 with std", "value": pred_time, "unit": "s", "rows": 100_000},
        {"quantity": "exact GP, one evaluation", "value": exact_s, "unit": "s", "rows": n_exact},
        {"quantity": "exact GP, one evaluation, peak memory", "value": exact_gb, "unit": "GB",
         "rows": n_exact},
    ]).assign(threads=torch.get_num_threads(), device=args.device,
              date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              machine=f"{platform.machine()}, {platform.system()}",
              command="python benchmarks/emulators.py").to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")
