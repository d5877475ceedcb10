"""Tang et al.'s whole protocol on N basins: the run time and peak memory of each step.

How the cost of the large-sample protocol grows with the number of basins,
one step at a time, for the reader who wants to run it on all CAMELS-US
basins (issue "Large sample for real"). The steps are those of Tang et al.
(2025) as ``calibration_table.py`` runs them (its docstring gives the
sources), with one seed:

- ``ensemble of 200 runs``: the initial Latin hypercube of every basin run by
  the teaching model (the same runs open both loops; timed alone here to
  show the model's share);
- ``SSE loop (Tang)``: 200 + 3 x 50 runs per basin, per basin a GP or a
  random forest, whichever cross-validates better, 50 searches of its mean per
  iteration (``protocol.tang_sse_loop``; by blocks of basins with
  ``--block-size``, on a dask cluster with ``--workers``);
- ``LSE loop (Tang)``: the same design with the random-forest LSE (100 trees,
  depth at most 40) on parameters and attributes of all basins, refit every
  iteration (needs every basin at once: it runs here);
- ``DDS 350``: DDS with the same budget (by blocks, as the SSE loop);
- ``LSE spatial CV``: regionalisation, 5 spatial folds, the forest LSE on the
  other basins' 350 runs, one search per held-out basin
  (``emucal.regionalise.regionalise``);
- ``whole protocol``: the sum of the steps above but the ensemble, which
  each loop runs again as its first iteration.

Then, outside the protocol's total, the two large-sample emulators alone on
every run of the SSE loop (N x 350 rows of parameters and attributes):
``LSE fit: forest, all runs`` (``regionalise.lse_forest``) and ``LSE fit:
sparse GP, all runs`` (``emulators.SparseGPEmulator`` with its defaults).

Each step's wall time and the peak resident memory of this process during it
go to ``--csv``; a CSV that exists keeps its rows of other basin counts (rows
of the same count are replaced), so that one command per count builds the
table of the "Measured performance" page. With ``--workers W`` the blocks run
on a dask ``LocalCluster`` of W one-task workers that share this process's
threads (``threads`` in the CSV; W workers of ``threads // W`` each), while
this process keeps them all for the LSE loop and the regionalisation; the
peak memory is then this process's only, not the workers'.

``--skip-per-basin`` leaves out the two steps whose basins are independent (the
SSE loop and DDS: their cost is the sum of their blocks', in proportion to the
basins by construction) and the two fits below, and runs the spatial
cross-validation on the LSE loop's runs (as many per basin as the SSE loop's):
the steps whose cost could grow faster than the basins, at a basin count whose
whole protocol would take hours. It writes no ``whole protocol`` row, and
refuses a basin count that ``--csv`` holds a whole protocol of.

``--lse-fits-only`` times the two large-sample emulators alone, at a basin
count whose whole protocol would take hours on a laptop (all 671 basins: about
three hours on 2 cores): the loops' shape of history without the loops, each
basin's 200 initial Latin-hypercube runs (one design for all basins, as the
loops start) and 150 runs of its own drawn uniformly at random (where the
loops put them near each basin's best), then ``LSE fit: forest`` and ``LSE
fit: sparse GP`` on those N x 350 rows. These rows go to their own CSV
(``benchmarks/results/large_sample_lse_fits.csv``); the performance page sets
them beside the fits on the SSE loop's runs at the basin counts both have.

The basins are ``--basins N`` of the 671 at random (``protocol.SUBSET_SEED``:
the 19 of a 100-basin run are not nested in it) from the CAMELS-US copy named
by ``EMUCAL_CAMELS_DIR``, which may be the stand-in of ``standin.py``: the
times are real, the skill means nothing, and no skill is written.

Run: python benchmarks/large_sample.py --basins N [--seed 0] [--csv FILE]
     [--block-size B [--workers W | --scheduler ADDR]]
     python benchmarks/large_sample.py --basins all --skip-per-basin [--csv FILE]
     python benchmarks/large_sample.py --basins all --lse-fits-only [--csv FILE]
"""

import argparse
import functools
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import protocol
import variants

import emucal
from emucal import calibrate, emulators, regionalise, sampling


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basins", required=True,
                        help="a number N of random CAMELS-US basins, 'tang2025' (627) or 'all' (671)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the designs and searches (default 0)")
    parser.add_argument("--csv", type=Path, default=None,
                        help="add the steps' times to this CSV (rows of the same basin count replaced)")
    parser.add_argument("--skip-per-basin", action="store_true",
                        help="leave out the SSE loop, DDS and the LSE fits; the spatial CV on the LSE loop's runs")
    parser.add_argument("--lse-fits-only", action="store_true",
                        help="time only the two LSE fits, on 200 + 150 runs per basin (no loops)")
    protocol.add_block_arguments(parser)
    args = parser.parse_args()
    if args.basins == "sample":
        parser.error("--basins sample is the teaching sample: give a number of basins, 'tang2025' or 'all'.")
    args.timing = True  # only run times are written, so a stand-in may feed this script
    if args.skip_per_basin and args.lse_fits_only:
        parser.error("give --skip-per-basin or --lse-fits-only, not both.")
    threads = emucal.size_thread_pools()
    print(threads, flush=True)
    selected, standin = protocol.chosen_basins(args, parser)
    if args.csv is not None and args.csv.exists():
        old = pd.read_csv(args.csv)
        fits_only = old.get("command", pd.Series(dtype=str)).str.contains("--lse-fits-only")
        if len(fits_only) and fits_only.any() != args.lse_fits_only:
            parser.error(f"{args.csv} holds the rows of " + (
                "whole protocols: write the --lse-fits-only rows to a CSV of their own." if args.lse_fits_only
                else "--lse-fits-only runs: write the whole protocol's rows to another CSV."))
        if args.skip_per_basin and len(selected) in set(old.basins[old.step == "whole protocol"]):
            parser.error(f"{args.csv} holds a whole protocol on {len(selected)} basins, which "
                         "--skip-per-basin would replace with a part of it.")
    blocks = protocol.block_options(args, parser)
    seed, steps = args.seed, []

    def timed(step, fn):
        protocol.reset_peak()
        start = time.perf_counter()
        out = fn()
        steps.append({"step": step, "seconds": time.perf_counter() - start, "peak MB": protocol.peak_mb()})
        print(f"{step}: {steps[-1]['seconds']:.1f} s, peak {steps[-1]['peak MB']:.0f} MB", flush=True)
        return out

    setup = timed("load basins", lambda: protocol.setting(basins=selected))
    space, run, n_basin = setup.space, setup.run, setup.n_basin
    n_initial, n_per_iteration, n_iterations = protocol.TANG_DESIGN
    initial = sampling.sample(space, n_initial, "lhs", seed=seed)
    if args.lse_fits_only:
        lse_fits_alone(setup, initial, seed, timed)
        return report(args, steps, n_basin, seed, threads, standin)
    timed(f"ensemble of {n_initial} runs", lambda: run(np.broadcast_to(initial, (n_basin, *initial.shape))))
    if not args.skip_per_basin:
        sse = timed("SSE loop (Tang)", lambda: protocol.by_blocks(protocol.tang_sse_loop, setup, seed, **blocks))
    lse_fit = functools.partial(regionalise.lse_forest, basin_attrs=setup.basin_attrs)
    propose = functools.partial(calibrate.tang_batch, n=n_per_iteration, fit=lse_fit, **protocol.TANG_SEARCH,
                                seed=seed)
    lse = timed("LSE loop (Tang)", lambda: variants.run_loop(run, space, initial, propose, n_iterations))
    if args.skip_per_basin:  # the cross-validation on the LSE loop's runs, as many as the SSE loop's
        timed("LSE spatial CV", lambda: regionalise.regionalise(lse, setup.basin_attrs, space, seed=seed))
        return report(args, steps, n_basin, seed, threads, standin)
    timed(f"DDS {protocol.DDS_RUNS}", lambda: protocol.by_blocks(protocol.dds_step, setup, seed, **blocks))
    timed("LSE spatial CV", lambda: regionalise.regionalise(sse, setup.basin_attrs, space, seed=seed))
    # the large-sample emulators alone, on every run of the SSE loop (N x 350 rows)
    params = sse.params.transpose("basin", "member", "param").values
    unit = space.to_unit(params.reshape(-1, len(space))).reshape(params.shape)
    kge = sse.skill.transpose("basin", "member").values
    timed("LSE fit: forest, all runs", lambda: regionalise.lse_forest(unit, kge, seed,
                                                                       basin_attrs=setup.basin_attrs))
    x, y = regionalise.lse_rows(unit, kge, setup.basin_attrs, np.arange(n_basin))
    timed("LSE fit: sparse GP, all runs", lambda: emulators.SparseGPEmulator(seed=seed).fit(x, y))
    table = pd.DataFrame(steps)
    protocol_steps = ~table.step.str.startswith(("LSE fit", "ensemble of"))  # the loops run the ensemble
    total = table.seconds[protocol_steps].sum()
    table.loc[len(table)] = {"step": "whole protocol", "seconds": total,
                             "peak MB": table["peak MB"][protocol_steps].max()}
    report(args, table, n_basin, seed, threads, standin)


def lse_fits_alone(setup, initial, seed, timed) -> None:
    """``--lse-fits-only``: the two LSE fits on each basin's ``initial`` runs and 150 random runs of its own.

    ``timed(step, fn)`` runs and times each step.
    """
    space, n_basin = setup.space, setup.n_basin
    n_more = protocol.TANG_DESIGN[1] * protocol.TANG_DESIGN[2]  # the loops' 3 x 50 runs per basin
    rng = np.random.default_rng(seed)
    params = np.concatenate([calibrate.fill_defaults(setup.run, initial),  # each basin's default, as the loops
                             space.from_unit(rng.uniform(size=(n_basin, n_more, len(space))))], axis=1)
    label = f"{len(initial)} + {n_more} random runs"
    kge = timed(f"ensemble of {label}", lambda: setup.run(params))
    unit = space.to_unit(params.reshape(-1, len(space))).reshape(params.shape)  # as the main path does
    timed(f"LSE fit: forest, {label}", lambda: regionalise.lse_forest(unit, kge, seed,
                                                                      basin_attrs=setup.basin_attrs))
    x, y = regionalise.lse_rows(unit, kge, setup.basin_attrs, np.arange(n_basin))
    timed(f"LSE fit: sparse GP, {label}", lambda: emulators.SparseGPEmulator(seed=seed).fit(x, y))


def report(args, table, n_basin, seed, threads, standin) -> None:
    """Print the ``table`` of steps and add it to ``--csv`` (rows of the same basin count replaced)."""
    table = pd.DataFrame(table)
    print(f"\n{n_basin} basins, seed {seed}, {threads.threads} thread(s)"
          + (f", blocks of {args.block_size} " + (f"on {args.workers} worker(s)" if args.workers else
                                                   "on a cluster" if args.scheduler else "one after another")
             if args.block_size else "")
          + f":\n{table.round(1).to_string(index=False)}")
    if standin is not None:
        print(f"STAND-IN data ({standin}): the times are real; no skill is reported.")
    if args.csv is not None:
        threads_set = os.environ.get(emucal.THREADS_VARIABLE)
        command = " ".join(([f"{emucal.THREADS_VARIABLE}={threads_set}"] if threads_set else [])
                           + ["python benchmarks/large_sample.py", f"--basins {args.basins}", f"--seed {seed}"]
                           + ([f"--block-size {args.block_size}"] if args.block_size else [])
                           + ([f"--workers {args.workers}"] if args.workers else [])
                           + (["--skip-per-basin"] if args.skip_per_basin else [])
                           + (["--lse-fits-only"] if args.lse_fits_only else []))
        table = table.assign(
            basins=n_basin, seed=seed, threads=threads.threads, workers=args.workers or 1,
            data="stand-in" if standin else "CAMELS-US", cpus=emucal.usable_cpus(),
            date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            machine=f"{platform.machine()}, {platform.system()}", command=command)
        if args.csv.exists():
            old = pd.read_csv(args.csv)
            table = pd.concat([old[old.basins != n_basin], table], ignore_index=True).sort_values(
                "basins", kind="stable")
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
