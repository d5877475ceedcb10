"""The book's Thompson loop against BoTorch's TuRBO-1, at the same budget.

Chapter 5 writes Thompson sampling in a trust region by hand
(``calibrate.thompson_batch``: per-basin GPs on the 100 runs nearest each
basin's best, candidates made the way DDS makes its moves, a step that
doubles or halves with the basin's progress). Its model is BoTorch's TuRBO-1
tutorial (``tutorials/turbo_1`` of pytorch/botorch; Eriksson et al. 2019).
Here TuRBO-1 is run with BoTorch's own pieces and the tutorial's settings,
per basin, as a ``propose`` rule of ``calibrate.loop``, so that both loops
see the same runner, the same 20 initial runs and the same batches of 5
(20 + 66 x 5 = 350 runs per basin):

- ``SingleTaskGP`` with a Matérn 5/2 ARD kernel (lengthscales in [0.005, 4]),
  a scale kernel, a noise in [1e-8, 1e-3], fitted with ``fit_gpytorch_mll``
  on all runs of the basin's current trust region, the target standardised;
- the trust region a box around the best run, its sides the region's length
  times the GP's lengthscales (normalised to a geometric mean of 1);
  length 0.8 at the start, doubled after 10 improving batches in a row,
  halved after ``ceil(max(4, d) / batch)`` = 4 failing ones, at most 1.6;
  below 0.5**7 TuRBO restarts: a new Sobol design of 20 runs and the old
  runs forgotten (the tutorial's own rule);
- candidates: ``min(5000, max(2000, 200 d))`` = 3,200 Sobol points in the
  box, each coordinate taken from the point with probability ``min(20/d, 1)``
  (the others stay at the best run's); ``MaxPosteriorSampling`` without
  replacement picks the batch.

When BoTorch's fit gives up on a basin's GP (``ModelFittingError`` after
its retries), the GP keeps its initial hyperparameters for that batch; the
count of such fits is printed and written.

The target of both loops is normKGE, a failed run counting as -1 (as
``calibrate.fit_sse``). The tutorial's state starts with no best value, so
its first batch always counts as a success; here the state starts from the
initial design's best run (it changes only that first count).

Unlike the book's loop, the TuRBO rule keeps its state between calls: the
state is replayed from the history at every call (the history holds every
run and its iteration), so that a run resumed from a checkpoint gives the
same proposals.

Prints, per seed, the median over the 19 basins of the best KGE' after 350
runs (calibration and validation), and the time each loop spends outside
the model (fitting and proposing), per basin-run; then the mean and spread
over seeds and the per-seed difference with a 90% bootstrap interval over
basins. ``--csv`` writes every number.

Run: python benchmarks/turbo.py [--seeds 0,1,2] [--csv FILE]
Needs BoTorch: pip install -e ".[baselines]".
"""

import argparse
import functools
import math
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import protocol
import variants

import emucal
from emucal import calibrate, metrics, sampling

N_INITIAL, BATCH, BUDGET = 20, 5, 350  # the book's Thompson loop (calibration_table.TS)
LENGTH, LENGTH_MIN, LENGTH_MAX, SUCCESS_TOLERANCE = 0.8, 0.5 ** 7, 1.6, 10  # TuRBO-1 tutorial
N_RESAMPLE = 2000
FIT_FAILURES = [0]  # GP fits where fit_gpytorch_mll gave up, reported with the results


def trust_region(batch_best, d, batch):
    """Replay TuRBO-1's trust-region rule over one basin's history.

    ``batch_best[k]``: the best normKGE of iteration ``k`` (0: the initial
    design). Returns the first iteration of the region in force and its
    length, or ``None`` for the length while a restarted region is still
    running its Sobol design (``N_INITIAL / batch`` iterations).
    """
    failure_tolerance = math.ceil(max(4.0 / batch, d / batch))
    start, design = 0, 1
    while True:
        if start + design > len(batch_best):
            return start, None
        length, best, wins, losses = LENGTH, max(batch_best[start:start + design]), 0, 0
        for k in range(start + design, len(batch_best)):
            value = batch_best[k]
            wins, losses = (wins + 1, 0) if value > best + 1e-3 * abs(best) else (0, losses + 1)
            if wins == SUCCESS_TOLERANCE:
                length, wins = min(2 * length, LENGTH_MAX), 0
            elif losses == failure_tolerance:
                length, losses = length / 2, 0
            best = max(best, value)
            if length < LENGTH_MIN:  # collapsed: a new region after this iteration
                start, design = k + 1, N_INITIAL // batch
                break
        else:
            return start, length


def fit_turbo_gp(x, y):
    """The tutorial's GP: SingleTaskGP, Matérn 5/2 ARD, bounded lengthscales and noise."""
    from botorch.exceptions import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.constraints import Interval
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.mlls import ExactMarginalLogLikelihood

    train_y = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)
    covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=x.shape[-1],
                                     lengthscale_constraint=Interval(0.005, 4.0)))
    model = SingleTaskGP(torch.as_tensor(x), torch.as_tensor(train_y)[:, None], covar_module=covar,
                         likelihood=GaussianLikelihood(noise_constraint=Interval(1e-8, 1e-3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        except ModelFittingError:  # BoTorch's retries all failed: the GP keeps its initial
            FIT_FAILURES[0] += 1  # hyperparameters (the tutorial has no rule for this)
    return model


def turbo_batch(unit, skill, iteration, *, n, seed=0):
    """TuRBO-1 with Thompson sampling, per basin, as a ``propose`` rule of ``calibrate.loop``."""
    from botorch.generation import MaxPosteriorSampling
    from torch.quasirandom import SobolEngine

    it = int(iteration.max()) + 1
    n_basin, _, d = unit.shape
    target = metrics.to_norm(np.where(np.isfinite(skill), skill, -1e6)).clip(-1, 1)
    out = np.empty((n_basin, n, d))
    for b in range(n_basin):
        torch.manual_seed(seed + 1000 * it + b)
        batch_best = [target[b, iteration[b] == k].max() for k in range(it)]
        start, length = trust_region(batch_best, d, n)
        if length is None:  # TuRBO restarted: Sobol points for the new region's design
            out[b] = SobolEngine(d, scramble=True, seed=seed + 1000 * it + b).draw(n).double().numpy()
            continue
        in_region = iteration[b] >= start
        x, y = unit[b, in_region], target[b, in_region]
        model = fit_turbo_gp(x, y)
        centre = torch.as_tensor(x[y.argmax()])
        weights = model.covar_module.base_kernel.lengthscale.detach().squeeze()
        weights = weights / weights.mean()
        weights = weights / torch.prod(weights.pow(1.0 / d))
        lower = (centre - weights * length / 2).clamp(0, 1)
        upper = (centre + weights * length / 2).clamp(0, 1)
        n_candidates = min(5000, max(2000, 200 * d))
        sobol = SobolEngine(d, scramble=True, seed=seed + 1000 * it + b).draw(n_candidates).double()
        pert = lower + (upper - lower) * sobol
        mask = torch.rand(n_candidates, d, dtype=torch.double) <= min(20.0 / d, 1.0)
        none = torch.where(mask.sum(dim=1) == 0)[0]
        mask[none, torch.randint(0, d - 1, size=(len(none),))] = True
        candidates = centre.expand(n_candidates, d).clone()
        candidates[mask] = pert[mask]
        with torch.no_grad():
            out[b] = MaxPosteriorSampling(model=model, replacement=False)(candidates, num_samples=n).numpy()
    return out


class Timed:
    """A propose rule that adds up the time it takes (the loop's overhead, not the model's)."""

    def __init__(self, propose):
        self.propose, self.seconds = propose, 0.0

    def __call__(self, *args):
        t = time.perf_counter()
        out = self.propose(*args)
        self.seconds += time.perf_counter() - t
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_default_dtype(torch.float64)
    print(emucal.size_thread_pools(), flush=True)
    setup = protocol.setting("linear")
    space, run, validate, n_basin = setup.space, setup.run, setup.validate, setup.n_basin
    n_iterations = (BUDGET - N_INITIAL) // BATCH
    records = []
    for seed in seeds:
        initial = sampling.sample(space, N_INITIAL, "lhs", seed=seed)
        rules = {
            "book: Thompson, trust region": Timed(functools.partial(
                calibrate.thompson_batch, n=BATCH, n_local=100, n_candidates=1024, seed=seed)),
            "BoTorch TuRBO-1": Timed(functools.partial(turbo_batch, n=BATCH, seed=seed)),
        }
        for name, rule in rules.items():
            t = time.perf_counter()
            history = variants.run_loop(run, space, initial, rule, n_iterations)
            total = time.perf_counter() - t
            params = calibrate.best(history).values
            cal, val = run(params[:, None, :])[:, 0], validate(params[:, None, :])[:, 0]
            records.append({"seed": seed, "loop": name, "cal": cal, "val": val,
                             "median KGE' cal": np.nanmedian(cal), "median KGE' val": np.nanmedian(val),
                             "overhead s per basin-run": rule.seconds / (n_basin * (BUDGET - N_INITIAL)),
                             "total s": total})
            print(f"seed {seed}, {name}: median KGE' cal {np.nanmedian(cal):.3f}, val "
                  f"{np.nanmedian(val):.3f}; {total:.0f} s, of which proposing {rule.seconds:.0f} s"
                  f"; GP fits that failed so far: {FIT_FAILURES[0]}", flush=True)
            records[-1]["GP fits failed (cumulative)"] = FIT_FAILURES[0]
    table = pd.DataFrame(records)
    summary = table.groupby("loop", sort=False)[["median KGE' cal", "median KGE' val",
                                                 "overhead s per basin-run", "total s"]].agg(["mean", "std"])
    pd.set_option("display.width", 200)
    print(f"\nseeds {seeds}, {n_basin} basins, {BUDGET} runs per basin; mean and sd over seeds")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    book, turbo = (table[table.loop == name].reset_index(drop=True) for name in rules)
    rng = np.random.default_rng(0)
    print("\nTuRBO-1 minus the book's loop, median KGE' over basins (per seed, 90% bootstrap interval):")
    diffs = []
    for i, seed in enumerate(seeds):
        for column in ("cal", "val"):
            a, b = turbo.loc[i, column], book.loc[i, column]
            pick = rng.integers(n_basin, size=(N_RESAMPLE, n_basin))
            boot = np.nanmedian(a[pick], axis=1) - np.nanmedian(b[pick], axis=1)
            lo, hi = np.percentile(boot, [5, 95])
            diffs.append({"seed": seed, "period": column, "difference": np.nanmedian(a) - np.nanmedian(b),
                          "5%": lo, "95%": hi})
            print(f"  seed {seed} {column}: {diffs[-1]['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    if args.csv is not None:
        out = table.drop(columns=["cal", "val"]).assign(
            date=datetime.now(timezone.utc).date().isoformat(), machine=f"{platform.machine()}, {platform.system()}",
            command="python benchmarks/turbo.py --seeds " + args.seeds)
        out.to_csv(args.csv, index=False)
        pd.DataFrame(diffs).to_csv(args.csv.with_name(args.csv.stem + "_differences.csv"), index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
