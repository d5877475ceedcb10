"""Ungauged basins over many seeds: the regionalisation rows of the calibration table.

The ungauged rows of ``calibration_table.py`` move much more from seed to
seed than the calibration rows (a median over 19 basins of parameter sets that
were never checked against the basin's flow), and a seed of the whole table
takes about 20 minutes. This script runs only what those rows need, about
4 minutes a seed where the table's seeds took 20 (the SSE loop is most of it;
on a shared 2-core machine one seed took 46 minutes, Tang et al.'s spatial CV
20 to 95 s of it): Tang et al.'s SSE loop (whose runs train the LSE and whose
best runs the donors hand over) and, with spatial 5-fold cross-validation,

- the random-forest LSE searched over the whole parameter space
  (``regionalise``): trained on all 350 runs of every
  training basin (the SSE loop's 200 initial runs and its 3 x 50 proposals),
  one search of population 150 for 60 generations per held-out basin, whose
  best point is run once;
- the same LSE as Tang et al.'s spatial cross-validation ran it
  (``protocol.tang_spatial_cv``): trained on the 200 initial runs only, ten
  independent searches of population 100 for 100 generations per held-out
  basin, the best point of each run, and the basin scored by the median
  KGE' of its ten runs;
- the LSE of the first row choosing among the training basins' best runs
  (``among="donors"``);
- the SSE-calibrated parameters of the most similar basin (attributes) and of
  the nearest basin (great-circle distance).

Tang et al.'s spatial CV is ``main_MOASMO_Derecho_part3_newparam_LargeSampleEmu_LSEspaceCV.ipynb``
(cells 1-2) and ``allbasin_emulator_CV_traintest_and_optimize`` in
``MOASMO_parameter_allbasin_emulator.py`` of NCAR/CTSM_calibration at commit
fabddd923ae13ea14b6cb76b08a3606a5804fc9f: ``iterend = 1`` (the initial runs
only), ``numruns = 10``, five folds of basins, a random forest (100 trees,
depth 40) on normKGE with the failed runs dropped, and ``run_ga_optimization``
(then one GA of population 100 for 100 generations per proposal, each
contributing its best point). ``src/LSE_exps/emulator_regionalization/LSE_spaceCV.ipynb``
(cell 2) scores each held-out basin by the median KGE of its ten runs. Still
unlike theirs here: the teaching model, 19 basins instead of 627, 200
initial runs instead of 400, 17 attributes instead of 27, folds drawn with
the seed instead of every fifth basin, and :func:`emucal.calibrate.search`
(differential evolution in the unit cube) instead of pymoo's GA within each
basin's parameter bounds.

It shares the checkpoints of ``calibration_table.py`` (same names, same
settings), so seeds that the table ran cost only the regionalisation here.
The row "as Tang" needs only the loop's initial runs, which are the same on
every machine. The loop's later iterations, and with them the other ungauged
rows, were not: with the same code, seed 0's history on a later machine
(2026-12-03) matched the one behind ``results/ungauged.csv`` in iterations
0 and 1 and differed from iteration 2 on; compare rows run on one machine.

Run: python benchmarks/ungauged.py [--seeds 0,1,...,9] [--checkpoints DIR] [--csv FILE]
     [--basins sample|tang2025|all|N] [--timing] [--block-size B [--workers W | --scheduler ADDR]]
``--basins`` and ``--timing`` are those of ``calibration_table.py``: other than
``sample`` (the default: the 19 sample basins), the CAMELS-US copy named by
``EMUCAL_CAMELS_DIR`` (``protocol.basin_selection``; checkpoints named as the
table's); ``--timing`` prints the wall time and the peak memory of each step
and writes them to ``--csv`` instead of the results; from a stand-in
(``benchmarks/standin.py``) that is the only CSV written.
``--block-size`` runs the SSE loop by blocks of basins (``protocol.by_blocks``),
here or on a dask cluster (``--workers`` on this machine, ``--scheduler`` for
one started elsewhere, such as dask-jobqueue's), with the same numbers either way on
the same threads (W workers share this process's threads);
the peak memory that ``--timing`` records is then this process's only, not the workers'.
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
from emucal import calibrate, regionalise


times = []  # the steps of --timing


def timed(step, fn, seed=None):
    """``fn()``, its wall time and the process's peak memory meanwhile recorded under ``step``."""
    protocol.reset_peak()
    start = time.perf_counter()
    out = fn()
    times.append({"seed": seed, "step": step, "seconds": time.perf_counter() - start,
                  "peak MB": protocol.peak_mb()})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="comma-separated seeds")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="folder for checkpoints (those of calibration_table.py are reused)")
    parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
    parser.add_argument("--basins", default="sample",
                        help="sample (default, 19 basins), tang2025 (627), all (671) or a number N of "
                             "random basins, from the CAMELS-US copy in EMUCAL_CAMELS_DIR")
    parser.add_argument("--timing", action="store_true",
                        help="print the wall time and peak memory of each step; --csv gets them, "
                             "not the results")
    protocol.add_block_arguments(parser)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(emucal.size_thread_pools(), flush=True)

    selected, standin = protocol.chosen_basins(args, parser)
    blocks = protocol.block_options(args, parser)

    setup = timed("load basins", lambda: protocol.setting(basins=selected))
    space, run, validate, n_basin = setup.space, setup.run, setup.validate, setup.n_basin
    basin_attrs, coords = setup.basin_attrs, setup.coords
    default = np.broadcast_to(space.defaults, (n_basin, 1, len(space))).copy()
    default_cal = timed("default run", lambda: run(default)[:, 0])

    records = []
    for seed in seeds:
        def checkpoint(name):
            selection = "" if args.basins == "sample" else f"_{args.basins}basins"
            return (None if args.checkpoints is None
                    else args.checkpoints / f"{name}_linear_{seed}{selection}.nc")

        sse = timed("SSE loop (Tang)", lambda: protocol.by_blocks(
            protocol.tang_sse_loop, setup, seed, checkpoint("sse_gp_or_rf_tang"), **blocks), seed)
        cube = timed("LSE spatial CV", lambda: regionalise.regionalise(
            sse, basin_attrs, space, seed=seed, checkpoint=checkpoint("regionalise_rf")), seed)
        donors = timed("LSE chooses the donor", lambda: regionalise.regionalise(
            sse, basin_attrs, space, among="donors", seed=seed,
            checkpoint=checkpoint("regionalise_rf_donors")), seed)
        fold = cube.fold.values
        tang, tang_fold = timed("Tang's spatial CV", lambda: protocol.tang_spatial_cv(
            sse, basin_attrs, space, seed=seed), seed)
        assert np.array_equal(tang_fold, fold), "tang_spatial_cv must hold out the folds of regionalise"
        sse_seconds, cube_seconds, donors_seconds, tang_seconds = (t["seconds"] for t in times[-4:])
        calibrated = calibrate.best(sse)
        rows = {  # (basin, n, param): a basin's score is the median KGE' of its n runs
            "SSE loop (Tang), calibrated": calibrated.values[:, None],
            "ungauged: LSE, spatial CV": cube.params.values[:, None],
            "ungauged: LSE on initial runs, median of 10 (as Tang)": tang,
            "ungauged: LSE chooses the donor": donors.params.values[:, None],
            "ungauged: most similar donor": regionalise.donor_transfer(
                calibrated, basin_attrs, fold).params.values[:, None],
            "ungauged: nearest donor": regionalise.donor_transfer(
                calibrated, coords, fold, metric="distance").params.values[:, None],
        }

        def score(rows=rows, seed=seed):
            for name, sets in rows.items():
                cal = np.nanmedian(run(sets), axis=1)
                records.append({"seed": seed, "row": name, "median KGE' cal": np.nanmedian(cal),
                                "median KGE' val": np.nanmedian(np.nanmedian(validate(sets), axis=1)),
                                "basins better than default": int(np.sum(cal > default_cal))})

        timed("scores of the rows", score, seed)
        print(f"seed {seed}: SSE loop {sse_seconds:.0f} s, "
              f"regionalisation {cube_seconds + donors_seconds:.0f} s, "
              f"Tang's spatial CV {tang_seconds:.0f} s", flush=True)

    table = pd.DataFrame(records)
    order = list(dict.fromkeys(table.row))
    pd.set_option("display.width", 200)
    summary = table.groupby("row", sort=False)[["median KGE' cal", "median KGE' val",
                                                "basins better than default"]].agg(["mean", "std"])
    print(f"\n{n_basin} basins, seeds {seeds}; mean and sd over seeds")
    print(summary.loc[order].to_string(float_format=lambda v: f"{v:.3f}"))
    per_seed = table.pivot(index="seed", columns="row", values="median KGE' cal")
    for lse in ("ungauged: LSE, spatial CV", "ungauged: LSE on initial runs, median of 10 (as Tang)",
                "ungauged: LSE chooses the donor"):
        for donor in ("ungauged: most similar donor", "ungauged: nearest donor"):
            gap = per_seed[lse] - per_seed[donor]
            print(f"{lse} minus {donor}: mean {gap.mean():+.3f}, ahead in {int((gap > 0).sum())} "
                  f"of {len(gap)} seeds")
    gap = per_seed["ungauged: LSE chooses the donor"] - per_seed["ungauged: LSE, spatial CV"]
    print(f"choosing the donor minus searching the cube: mean {gap.mean():+.3f} (sd {gap.std():.3f}), "
          f"ahead in {int((gap > 0).sum())} of {len(gap)} seeds")
    gap = per_seed["ungauged: LSE on initial runs, median of 10 (as Tang)"] - per_seed["ungauged: LSE, spatial CV"]
    print(f"as Tang minus the LSE over the cube: mean {gap.mean():+.3f} (sd {gap.std():.3f}), "
          f"ahead in {int((gap > 0).sum())} of {len(gap)} seeds")
    if args.timing:
        steps = pd.DataFrame(times)
        print(f"\nrun time and peak memory of each step ({n_basin} basins; per seed: mean and max):\n"
              + steps.groupby("step", sort=False)[["seconds", "peak MB"]].agg(["mean", "max"])
              .round(1).to_string())
    if standin is not None:
        print(f"STAND-IN data ({standin}): timing only, the skill scores above mean nothing.")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    machine = f"{platform.machine()}, {platform.system()}"
    if args.csv is not None and args.timing:
        steps.assign(basins=args.basins, n_basin=n_basin, data="stand-in" if standin else "CAMELS-US",
                     date=date, machine=machine).to_csv(args.csv, index=False)
        print(f"wrote {args.csv} (run times)")
    elif args.csv is not None:
        table["date"] = date
        table["machine"] = machine
        table["command"] = f"python benchmarks/ungauged.py --seeds {args.seeds}" + (
            "" if args.basins == "sample" else f" --basins {args.basins}")
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
