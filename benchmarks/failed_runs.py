"""Failed runs in the training data: emucal's floor (normKGE -1) against Tang et al.'s drop.

A run fails when it has no skill score: in CTSM a run that crashed, in the
teaching model a run whose flow never varies (KGE' undefined), which happens
in a dry basin at some parameter sets. emucal's emulators learn such a run as
the worst possible one, normKGE -1 (``failed="floor"``, the default); Tang et
al.'s code leaves it out of the training data (``failed="drop"``,
``variants.drop_failed`` in the loop; for :func:`regionalise`, the failed
runs' parameters set to NaN):
``surrogate_model_train_and_pareto_points_oneobjfunc`` in
``MOASMO_parameters.py`` (lines 618-619) and the large-sample emulator in
``MOASMO_parameter_allbasin_emulator.py`` (lines 768-771, 951-954) of
NCAR/CTSM_calibration (commit 46d99b2f1c9c9285e9930a3eec896942fd51ba3c)
keep only the runs whose metric is not NaN.

The setting of ``protocol.py`` (19 basins, calibration WY1995-2007, KGE').
For each seed:

1. the 200-run LHS design of Tang et al.'s SSE loop is run in every basin, and
   its failed runs are counted per basin;
2. Tang et al.'s SSE loop (``protocol.tang_sse_loop``: 200 + 3 x 50,
   ``variants.fit_gp_or_forest``) runs with each handling in the basins where
   an initial run failed in any seed (per-basin emulators: what one basin
   learns does not reach another, so these are the basins where the handling
   can matter; ``--all-basins`` runs the loop in all 19, where emucal's
   batched per-basin fits also trim every basin to the fewest valid runs);
   reported: the failed proposals and the basins' best KGE';
3. the random-forest LSE regionalises with each handling from the initial
   runs of all 19 basins (``regionalise.regionalise``, spatial 5-fold
   CV; the failed runs of a training basin are floored or dropped); reported:
   the median KGE' of the regionalised parameters over the 19 basins and the
   number of basins whose KGE' the handling changed (a held-out basin's own
   failed runs never reach its emulator; those of its training basins do).

Run: python benchmarks/failed_runs.py [--seeds 0,1,...,9] [--all-basins] [--checkpoints DIR] [--csv FILE]
"""

import argparse
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

import protocol

import emucal
from emucal import calibrate, ensemble, regionalise, sampling

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="comma-separated seeds")
parser.add_argument("--all-basins", action="store_true",
                    help="run the SSE loop in all 19 basins, not only where runs failed")
parser.add_argument("--checkpoints", type=Path, default=None,
                    help="folder for checkpoints (with --all-basins, those of ungauged.py are reused)")
parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
args = parser.parse_args()
seeds = [int(s) for s in args.seeds.split(",")]
print(emucal.size_thread_pools(), flush=True)

setup = protocol.setting()
space, run, validate, n_basin = setup.space, setup.run, setup.validate, setup.n_basin
basins = np.asarray(setup.ds.basin.values)

initial = {seed: calibrate.loop(  # the initial runs of Tang et al.'s loop, in all basins
    run, space, sampling.sample(space, 200, "lhs", seed=seed), None, 0) for seed in seeds}
failed_initial = np.stack([np.isnan(initial[s].skill.values).sum(axis=1) for s in seeds])  # seed x basin
hit = failed_initial.sum(axis=0) > 0
print(f"failed initial runs: {int(failed_initial.sum())} of {failed_initial.size * 200} "
      f"({n_basin} basins x 200 runs x {len(seeds)} seeds), by basin: "
      + ", ".join(f"{b} {n}" for b, n in zip(basins[hit], failed_initial.sum(axis=0)[hit])), flush=True)
if not hit.any() and not args.all_basins:
    raise SystemExit(f"No initial run failed in seeds {seeds}: floor and drop are one loop there. "
                     "Add seeds, or run --all-basins.")
loop_basins = basins if args.all_basins else basins[hit]
sub = (setup if args.all_basins else SimpleNamespace(
    space=space, basin_attrs=setup.basin_attrs[hit],
    run=ensemble.model_runner(setup.ds.sel(basin=loop_basins), setup.attrs, space, period="calibration")))
sub_validate = (validate if args.all_basins else
                ensemble.model_runner(setup.ds.sel(basin=loop_basins), setup.attrs, space, period="validation"))
in_loop = np.isin(basins, loop_basins)

records = []
for k, seed in enumerate(seeds):
    def checkpoint(name):
        if args.checkpoints is None:
            return None
        where = "" if args.all_basins else "_failing_basins"
        return args.checkpoints / f"{name}{where}_linear_{seed}.nc"

    for failed, suffix in (("floor", ""), ("drop", "_drop")):
        start = time.perf_counter()
        hist = protocol.tang_sse_loop(sub, seed, checkpoint(f"sse_gp_or_rf_tang{suffix}"), failed=failed)
        loop_seconds = time.perf_counter() - start
        nan = np.isnan(hist.skill.transpose("basin", "member").values)
        first = hist.iteration.transpose("basin", "member").values == 0
        best = calibrate.best(hist).values[:, None]
        best_cal, best_val = sub.run(best)[:, 0], sub_validate(best)[:, 0]
        failing = hit[in_loop]  # the basins of the loop where runs failed
        runs = initial[seed]
        if failed == "drop":  # Tang et al.: a failed run is not learnt
            runs = runs.assign(params=runs.params.where(runs.skill.notnull()))
        ungauged = regionalise.regionalise(runs, setup.basin_attrs, space, seed=seed).params.values[:, None]
        ung_cal, ung_val = run(ungauged)[:, 0], validate(ungauged)[:, 0]
        records.append({
            "seed": seed, "failed": failed, "loop basins": len(loop_basins),
            "failed initial runs": int(failed_initial[k].sum()),
            "failed proposals": int(nan[~first].sum()),
            "median best KGE' cal": np.nanmedian(best_cal),
            "median best KGE' val": np.nanmedian(best_val),
            "best KGE' cal where runs failed": np.nanmedian(best_cal[failing]),
            "best KGE' val where runs failed": np.nanmedian(best_val[failing]),
            "ungauged median KGE' cal": np.nanmedian(ung_cal),
            "ungauged median KGE' val": np.nanmedian(ung_val),
            "ungauged basins changed": int(np.sum(ung_cal != floor_ung_cal)) if failed == "drop" else 0,
            "loop seconds": loop_seconds})
        floor_ung_cal = ung_cal
        print(f"seed {seed}, failed={failed}: {records[-1]['failed proposals']} failed proposals, "
              f"best KGE' where runs failed {np.nanmedian(best_cal[failing]):.3f}, "
              f"loop {loop_seconds:.0f} s", flush=True)

table = pd.DataFrame(records)
pd.set_option("display.width", 200)
columns = [c for c in table.columns if c not in ("seed", "failed", "loop basins", "loop seconds")]
print(f"\nSSE loop in {len(loop_basins)} basin(s) ({' '.join(loop_basins)}), ungauged rows over "
      f"{n_basin}; seeds {seeds}; mean and sd over seeds")
print(table.groupby("failed", sort=False)[columns].agg(["mean", "std"]).T.to_string(
    float_format=lambda v: f"{v:.3f}"))
wide = table.pivot(index="seed", columns="failed")
for column in columns[1:-1]:  # all but the initial failures (equal) and the count of changes
    gap = wide[column]["drop"] - wide[column]["floor"]
    print(f"drop minus floor, {column}: mean {gap.mean():+.3f} (sd {gap.std():.3f}), "
          f"ahead in {int((gap > 0).sum())}, behind in {int((gap < 0).sum())} of {len(gap)} seeds")
if args.csv is not None:
    table["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    table["machine"] = f"{platform.machine()}, {platform.system()}"
    table["command"] = ("python benchmarks/failed_runs.py --seeds " + args.seeds
                        + (" --all-basins" if args.all_basins else ""))
    table.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")
