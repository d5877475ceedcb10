"""Optimisers a user would pick instead of an emulator loop, at the book's budget.

A reader who calibrates models already will ask why not hand the model to
optuna or nevergrad. Here each of them calibrates the teaching model in the
19 basins with 350 runs per basin, the budget of chapter 5's loop, against
DDS (the book's baseline) and the book's Thompson loop (20 + 66 x 5 runs):

- optuna 4: CMA-ES (``CmaEsSampler``, started at the basin's default with
  the sampler's default step) and TPE (``TPESampler(multivariate=True)``);
- nevergrad 1: ``NGOpt`` (its own choice of algorithm for 16 parameters and
  350 runs) and ``CMA``, both started at the basin's default.

All work in the unit cube of ``ParameterSpace.tang2025()`` and maximise
KGE' over the calibration years. Run 1 of every method but the book's loop
is the basin's default (optuna takes it as an enqueued trial; nevergrad gets
it as its starting point and 349 asks). Each step asks every basin's
optimiser for one run and runs the 19 basins in one call of the runner,
then tells each its result (ask/tell); a failed run counts as KGE' -10.

Prints, per seed and method, the median over basins of the best KGE' after
350 runs (calibration, and the validation years with those parameters), the
medians after 20, 50, 100 and 200 runs, and the time the optimiser itself
takes per basin-run (asks and tells, not the model); then mean and spread
over seeds, and each method's difference from the book's loop with a 90%
bootstrap interval over basins (``--methods`` picks some, the first being the
reference of the differences). ``--csv`` writes every number.

Run: python benchmarks/baselines.py [--seeds 0,1,2] [--csv FILE]
Needs the extra: pip install -e ".[baselines]".
"""

import argparse
import functools
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import protocol
import variants

import emucal
from emucal import calibrate, ensemble, sampling

BUDGET, N_INITIAL, BATCH = 350, 20, 5
MARKS = (20, 50, 100, 200, 350)  # runs per basin at which the best so far is reported
N_RESAMPLE = 2000
FAILED = -10.0  # what a failed run tells an optimiser


def optuna_studies(kind, x0, seed):
    """One optuna study per basin; the basin's default is its first trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = x0.shape[1]
    studies = []
    for b, start in enumerate(x0):
        first = {f"x{j}": float(start[j]) for j in range(d)}
        if kind == "cmaes":
            with warnings.catch_warnings():  # x0 is deprecated from optuna 4.9 on, still honoured
                warnings.simplefilter("ignore", FutureWarning)
                sampler = optuna.samplers.CmaEsSampler(x0=first, seed=seed + b)
        else:
            sampler = optuna.samplers.TPESampler(multivariate=True, seed=seed + b)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial(first)
        studies.append(study)

    def ask():
        trials = [s.ask({f"x{j}": optuna.distributions.FloatDistribution(0.0, 1.0) for j in range(d)})
                  for s in studies]
        return np.array([[t.params[f"x{j}"] for j in range(d)] for t in trials]), trials

    def tell(trials, values):
        for s, t, v in zip(studies, trials, values):
            s.tell(t, float(v))

    return ask, tell


def nevergrad_optimisers(name, x0, seed):
    """One nevergrad optimiser per basin, started at the basin's default (run 1, not asked)."""
    import nevergrad as ng

    opts = []
    for b, start in enumerate(x0):
        param = ng.p.Array(init=np.clip(start, 1e-9, 1 - 1e-9), lower=0.0, upper=1.0)
        param.random_state = np.random.RandomState(seed + b)
        opts.append(getattr(ng.optimizers, name)(parametrization=param, budget=BUDGET - 1, num_workers=1))
    first = [True]

    def ask():
        if first[0]:  # run 1: the default, as the other methods
            return x0.copy(), None
        cands = [o.ask() for o in opts]
        return np.stack([c.value for c in cands]), cands

    def tell(cands, values):
        if cands is None:
            first[0] = False
            return
        for o, c, v in zip(opts, cands, values):
            o.tell(c, -float(v))  # nevergrad minimises

    return ask, tell


def ask_tell(run, space, make, seed):
    """Run ``BUDGET`` steps of ask (every basin), run (one call), tell; return the best and the trace."""
    x0 = space.to_unit(ensemble.fill_defaults(run, space.defaults[None])[:, 0])
    ask, tell = make(x0, seed)
    n_basin = x0.shape[0]
    best_f, best_u = np.full(n_basin, -np.inf), x0.copy()
    trace, overhead = [], 0.0
    for _ in range(BUDGET):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unit, handle = ask()
        overhead += time.perf_counter() - t
        skill = run(space.from_unit(unit)[:, None, :])[:, 0]
        skill = np.where(np.isfinite(skill), skill, FAILED)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tell(handle, skill)
        overhead += time.perf_counter() - t
        better = skill > best_f
        best_f, best_u = np.where(better, skill, best_f), np.where(better[:, None], unit, best_u)
        trace.append(best_f.copy())
    return space.from_unit(best_u), np.stack(trace, axis=1), overhead


def book_loop(run, space, seed):
    """Chapter 5's Thompson loop (as calibration_table.TS), with the best-so-far trace per run."""
    t_propose = [0.0]
    rule = functools.partial(calibrate.thompson_batch, n=BATCH, n_local=100, n_candidates=1024, seed=seed)

    def timed(*args):
        t = time.perf_counter()
        out = rule(*args)
        t_propose[0] += time.perf_counter() - t
        return out

    initial = sampling.sample(space, N_INITIAL, "lhs", seed=seed)
    history = variants.run_loop(run, space, initial, timed, (BUDGET - N_INITIAL) // BATCH)
    skill = np.where(np.isfinite(history.skill.values), history.skill.values, -np.inf)
    trace = np.maximum.accumulate(skill, axis=1)  # members are in the order they were run
    return calibrate.best(history).values, trace, t_propose[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated subset of the methods; the first is the reference")
    parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(emucal.size_thread_pools(), flush=True)
    setup = protocol.setting("linear")
    space, run, validate, n_basin = setup.space, setup.run, setup.validate, setup.n_basin
    methods = {
        "book: Thompson, trust region": None,
        "DDS": "dds",
        "optuna CMA-ES": lambda x0, seed: optuna_studies("cmaes", x0, seed),
        "optuna TPE (multivariate)": lambda x0, seed: optuna_studies("tpe", x0, seed),
        "nevergrad NGOpt": lambda x0, seed: nevergrad_optimisers("NGOpt", x0, seed),
        "nevergrad CMA": lambda x0, seed: nevergrad_optimisers("CMA", x0, seed),
    }
    if args.methods:  # the first one kept is the reference of the differences
        keep = args.methods.split(",")
        unknown = [k for k in keep if k not in methods]
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {list(methods)}")
        methods = {k: methods[k] for k in keep}
    reference = next(iter(methods))
    records = []
    for seed in seeds:
        for name, make in methods.items():
            t = time.perf_counter()
            if make is None:
                params, trace, overhead = book_loop(run, space, seed)
            elif make == "dds":
                out = calibrate.dds(run, space, BUDGET, seed=seed)
                params, trace, overhead = calibrate.best(out).values, out.best_skill.values, np.nan
            else:
                params, trace, overhead = ask_tell(run, space, make, seed)
            total = time.perf_counter() - t
            cal, val = run(params[:, None, :])[:, 0], validate(params[:, None, :])[:, 0]
            row = {"seed": seed, "method": name, "cal": cal, "val": val,
                   "median KGE' cal": np.nanmedian(cal), "median KGE' val": np.nanmedian(val),
                   **{f"median best after {m}": float(np.median(trace[:, m - 1])) for m in MARKS},
                   "overhead s per basin-run": overhead / (n_basin * BUDGET), "total s": total}
            records.append(row)
            print(f"seed {seed}, {name}: median KGE' cal {np.nanmedian(cal):.3f}, "
                  f"val {np.nanmedian(val):.3f}; after 20/50/100/200 runs "
                  + "/".join(f"{row[f'median best after {m}']:.3f}" for m in MARKS[:-1])
                  + f"; {total:.0f} s", flush=True)
    table = pd.DataFrame(records)
    columns = ["median KGE' cal", "median KGE' val", "overhead s per basin-run", "total s"]
    summary = table.groupby("method", sort=False)[columns].agg(["mean", "std"])
    pd.set_option("display.width", 220)
    print(f"\nseeds {seeds}, {n_basin} basins, {BUDGET} runs per basin; mean and sd over seeds")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    rng = np.random.default_rng(0)
    book = table[table.method == reference].set_index("seed")
    diffs = []
    print(f"\nmethod minus {reference}, median KGE' over basins (per seed, 90% bootstrap interval):")
    for _, r in table[table.method != reference].iterrows():
        for column in ("cal", "val"):
            a, b = r[column], book.loc[r.seed, column]
            pick = rng.integers(n_basin, size=(N_RESAMPLE, n_basin))
            boot = np.nanmedian(a[pick], axis=1) - np.nanmedian(b[pick], axis=1)
            lo, hi = np.percentile(boot, [5, 95])
            diffs.append({"seed": r.seed, "method": r.method, "reference": reference, "period": column,
                          "difference": np.nanmedian(a) - np.nanmedian(b), "5%": lo, "95%": hi})
            print(f"  {r.method}, seed {r.seed} {column}: {diffs[-1]['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    if args.csv is not None:
        out = table.drop(columns=["cal", "val"]).assign(
            date=datetime.now(timezone.utc).date().isoformat(), machine=f"{platform.machine()}, {platform.system()}",
            command="python benchmarks/baselines.py --seeds " + args.seeds
            + (f" --methods {args.methods!r}" if args.methods else ""))
        out.to_csv(args.csv, index=False)
        pd.DataFrame(diffs).to_csv(args.csv.with_name(args.csv.stem + "_differences.csv"), index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
