"""The calibration table of chapters 5 and 6, over several seeds.

Teaching model, the 19 sample basins; spin-up WY1994, calibration WY1995-2007,
validation WY2008-2013; KGE'. Rows, for each seed:

- default parameters; best of the initial 200 runs;
- Tang et al.'s loop as their code runs it (200 + 3 x 50; each batch the best
  points of independent searches of the emulator mean, ``calibrate.tang_batch``;
  the SSE a GP or a random forest per basin, whichever cross-validates better,
  ``variants.fit_gp_or_forest``; the LSE a random forest on parameters and
  attributes, ``regionalise.lse_forest``): SSE and LSE iterations 1-3 read as
  Tang et al. read them (each basin's best run *within* the iteration), and
  each loop's best so far;
- the same loop with the LSE chosen per basin by cross-validation: each
  basin takes its GP, its forest or the random-forest LSE, whichever predicts
  its held-out runs best (``fit_gp_or_forest`` with ``basin_attrs``),
  iterations 1-3 and best so far;
- the loop that uses the emulator's uncertainty: Thompson sampling near each
  basin's best run, with local GPs (``n_local``), a step that adapts to each
  basin's progress (a trust region), few initial runs and small batches
  (``calibrate.thompson_batch`` with the ``TS`` settings below), with
  per-basin GPs (SSE);
- the same loop with the hierarchical emulator: per-basin GPs whose prior
  mean is the large-sample emulator times a weight fitted per basin
  (``regionalise.hierarchical_rule``), the LSE refit every 11 iterations;
  compared with the SSE loop after every iteration;
- DDS with 350 and 3,500 runs per basin;
- ungauged basins (spatial 5-fold CV): Tang et al.'s random-forest LSE trained
  on the other basins' runs of the SSE loop, searched over the whole cube
  (``regionalise.regionalise``) or among the training
  basins' best runs (``among="donors"``: the LSE chooses the donor), and the
  two donor transfers (SSE-calibrated parameters of the most similar and of
  the nearest basin).

Prints, per row, the mean and standard deviation over seeds of the median
KGE' (calibration, validation), the basins better than default, Tang et al.'s
CTSM medians beside (one column per experiment design, ``TANG``), the run time
of each step, and writes every number to a
CSV file (``--csv``). Per seed, each row's median and its difference from DDS
350 also get a 90% interval from resampling the basins (bootstrap): how much
one seed's median over 19 basins can tell, and what to compare with Tang et
al.'s medians over 627 basins.

Run: python benchmarks/calibration_table.py [--seeds 0,1,2,3,4] [--scale linear|log]
     [--checkpoints DIR] [--csv FILE] [--skip-hierarchical]
     [--basins sample|tang2025|all|N] [--timing] [--block-size B [--workers W | --scheduler ADDR]]
``--basins`` other than ``sample`` (the default: the 19 sample basins) reads the
CAMELS-US copy named by ``EMUCAL_CAMELS_DIR`` (without it, downloads the archive):
Tang et al.'s 627 basins (``data_registry/tang2025_basins.txt``), all 671, or N of
the 671 at random (``protocol.SUBSET_SEED``); its checkpoints carry the selection
in their names. ``--timing`` writes the run time of each step to ``--csv`` instead
of the skill table; from a stand-in (``benchmarks/standin.py``) it is the only CSV
written.
``--block-size B`` runs the steps whose basins are independent (Tang et al.'s SSE
loop, the Thompson SSE loop, DDS) by blocks of B basins (``protocol.by_blocks``: block k with seed + 7919 k),
one after the other or on a dask cluster (``--workers W`` on this machine,
``--scheduler ADDR`` for one started elsewhere, such as dask-jobqueue's), with the
same numbers either way on the same threads (W workers share this process's threads,
so match them with ``EMUCAL_THREADS``); the other steps need every basin at once and run here.
With --checkpoints, every loop saves its progress in DIR, and running the same
command again after an interruption resumes the protocol where it stopped
(DDS, 71 s for 3,500 runs per basin, and the regionalisation run again).
``--scale log`` samples and searches the wide-ranging parameters in their
logarithm (``ParameterSpace.tang2025(scale="log")``); the default is Tang et
al.'s linear scale.
"""

import argparse
import functools
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import protocol
import variants

import emucal
from emucal import calibrate, regionalise, sampling

TANG_SEARCH = protocol.TANG_SEARCH
# the improved loop: 20 + 66 x 5 = 350 runs per basin; chosen with benchmarks/acquisition.py
TS = dict(n_initial=20, n_per_iteration=5, n_local=100, n_candidates=1024)
N_RESAMPLE = 2000  # bootstrap resamples of the basins, for the per-seed intervals
LSE_REFIT = 11  # the hierarchical loop refits its LSE 6 times in 66 iterations
# Tang et al.'s CTSM medians of KGE' over 627 CAMELS basins, by the experiment (design) each
# comes from: the stored outputs of NCAR/CTSM_calibration's notebooks (cells counted from 0).
# None is this table's design exactly (200 initial runs + 3 x 50 of the 16 parameters, runoff
# not routed): the bigrange runs had 400 + 3 x 100 and other parameters, the later runs this
# design, but their iterations were scored on routed runoff. "iteration" rows are each basin's
# best run within the iteration, "best so far" rows the best of all runs up to it. The chapters
# quote these; tests/test_tang_numbers.py keeps them in step.
TANG_DESIGNS = {
    "bigrange": "400 initial runs + 3 x 100 per basin, the parameters of each basin chosen for its "
                "cluster by a sensitivity analysis, runoff not routed",
    "later": "200 initial runs + 50 per iteration, the 16 parameters of ParameterSpace.tang2025(), "
             "runoff not routed",
    "later, mizuRoute": "200 initial runs + 50 per iteration, the 16 parameters of "
                        "ParameterSpace.tang2025(), runoff routed with mizuRoute",
}
TANG = {
    # at 46d99b2 (main): src/LSE_exps/emulator_optz/compare_LSE_SSE.ipynb cell 30 (sizes 400,
    # 100, 100, 100 in cell 42); ungauged: src/LSE_exps/emulator_regionalization/LSE_spaceCV.ipynb
    # cell 10 (LSE trained on the initial runs of the other folds, median KGE' of 10 proposals)
    "bigrange": {"default": 0.195, "best of initial 400": 0.461, "SSE iteration 1": 0.465,
                 "SSE iteration 2": 0.493, "SSE iteration 3": 0.514, "LSE iteration 1": 0.505,
                 "LSE iteration 2": 0.515, "LSE iteration 3": 0.525,
                 "ungauged: LSE on initial runs, median of 10": 0.315},
    # at 46d99b2: src/LSE_exps/emulator_optz_routing/check_iter0_various_routing.ipynb cell 6 ("CLM")
    "later": {"default": 0.195, "best of initial 200": 0.489},
    # the same cell ("mizuroute_s-1"); LSE: src/LSE_exps/emulator_optz_routing/
    # compare_iterations_LSE.ipynb cells 4-5 at 46d99b2; SSE: compare_iterations_SSE.ipynb cells
    # 4-5 on branch develop_pre-v1.0 (e559800, last changed in 1da6d25), not in the release
    "later, mizuRoute": {"default": 0.292, "best of initial 200": 0.503,
                         "SSE iteration 1": 0.537, "SSE iteration 2": 0.583, "SSE iteration 3": 0.602,
                         "LSE iteration 1": 0.544, "LSE iteration 2": 0.582, "LSE iteration 3": 0.604,
                         "SSE loop (Tang), best so far": 0.604,
                         "LSE loop (Tang), best so far": 0.614},
}


def best(history, last=None, only=None):
    return calibrate.best(history, after_iteration=last, within_iteration=only).values



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--scale", choices=("linear", "log"), default="linear",
                        help="sampling scale of the parameter space (default: linear, as Tang et al.)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="folder for the checkpoints of every step (resume by running again)")
    parser.add_argument("--csv", type=Path, default=None, help="write every number to this CSV file")
    parser.add_argument("--skip-hierarchical", action="store_true",
                        help="leave out the hierarchical Thompson loop (about 4 minutes per seed)")
    parser.add_argument("--basins", default="sample",
                        help="sample (default, 19 basins), tang2025 (627), all (671) or a number N of "
                             "random basins, from the CAMELS-US copy in EMUCAL_CAMELS_DIR")
    parser.add_argument("--timing", action="store_true",
                        help="write the run times of the steps to --csv, not the skill table")
    protocol.add_block_arguments(parser)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(emucal.size_thread_pools(), flush=True)

    selected, standin = protocol.chosen_basins(args, parser)
    blocks = protocol.block_options(args, parser)
    setup = protocol.setting(args.scale, basins=selected)
    space, run, validate, n_basin = setup.space, setup.run, setup.validate, setup.n_basin
    basin_attrs, coords = setup.basin_attrs, setup.coords
    records, times, by_iteration = [], [], []
    start_all = time.perf_counter()
    for seed in seeds:
        def checkpoint(name):
            selection = "" if args.basins == "sample" else f"_{args.basins}basins"
            return (None if args.checkpoints is None
                    else args.checkpoints / f"{name}_{args.scale}_{seed}{selection}.nc")

        def timed(name, fn):
            t = time.perf_counter()
            out = fn()
            times.append({"seed": seed, "step": name, "seconds": time.perf_counter() - t})
            return out

        initial = sampling.sample(space, 200, "lhs", seed=seed)

        def tang(fit):  # Tang et al.'s batch: 50 independent searches of the emulator per basin
            return functools.partial(calibrate.tang_batch, n=50, fit=fit, **TANG_SEARCH, seed=seed)

        sse = timed("SSE loop (Tang)", lambda: protocol.by_blocks(
            protocol.tang_sse_loop, setup, seed, checkpoint("sse_gp_or_rf_tang"), **blocks))
        lse = timed("LSE loop (Tang)", lambda: variants.run_loop(
            run, space, initial, tang(functools.partial(regionalise.lse_forest, basin_attrs=basin_attrs)),
            3, checkpoint("lse_rf_tang")))
        chosen = timed("LSE or SSE loop (Tang)", lambda: variants.run_loop(
            run, space, initial, tang(functools.partial(variants.fit_gp_or_forest, basin_attrs=basin_attrs)),
            3, checkpoint("lse_or_sse_tang")))
        dds350 = timed("DDS 350", lambda: protocol.by_blocks(protocol.dds_step, setup, seed, **blocks))
        dds3500 = timed("DDS 3500", lambda: protocol.by_blocks(
            functools.partial(protocol.dds_step, n_runs=3500, batch=10), setup, seed, **blocks))
        lse_cv = timed("LSE spatial CV", lambda: regionalise.regionalise(
            sse, basin_attrs, space, seed=seed,
            checkpoint=checkpoint("regionalise_rf")))
        lse_donor = timed("LSE chooses the donor", lambda: regionalise.regionalise(
            sse, basin_attrs, space, among="donors", seed=seed,
            checkpoint=checkpoint("regionalise_rf_donors")))
        ungauged, fold = lse_cv.params.values, lse_cv.fold.values
        assert (lse_donor.fold.values == fold).all()  # the same split
        calibrated = calibrate.best(sse)
        rows = {
            "default": np.broadcast_to(space.defaults, (n_basin, len(space))),
            "best of initial 200": best(sse, last=0),
            **{f"SSE iteration {i}": best(sse, only=i) for i in (1, 2, 3)},
            **{f"LSE iteration {i}": best(lse, only=i) for i in (1, 2, 3)},
            **{f"LSE-or-SSE iteration {i}": best(chosen, only=i) for i in (1, 2, 3)},
            "SSE loop (Tang), best so far": best(sse),
            "LSE loop (Tang), best so far": best(lse),
            "LSE-or-SSE loop (Tang), best so far": best(chosen),
        }
        ts_initial = sampling.sample(space, TS["n_initial"], "lhs", seed=seed)
        n_ts = (350 - TS["n_initial"]) // TS["n_per_iteration"]
        ts_settings = dict(n=TS["n_per_iteration"], n_local=TS["n_local"], n_candidates=TS["n_candidates"],
                           seed=seed)
        ts = timed("SSE loop, Thompson, local", lambda: protocol.by_blocks(functools.partial(
            protocol.thompson_loop, design=(TS["n_initial"], TS["n_per_iteration"], n_ts),
            n_local=TS["n_local"], n_candidates=TS["n_candidates"]), setup, seed, checkpoint("ts_local"),
            **blocks))
        ts_name = (f"SSE loop, Thompson, trust region ({TS['n_initial']} + {n_ts} x "
                   f"{TS['n_per_iteration']})")
        rows[ts_name] = best(ts)
        loops = {"SSE": ts}
        if not args.skip_hierarchical:
            hier = timed("hierarchical loop, Thompson, local", lambda: variants.run_loop(
                run, space, ts_initial, regionalise.hierarchical_rule(basin_attrs, LSE_REFIT, **ts_settings),
                n_ts, checkpoint("ts_hierarchical")))
            rows[ts_name.replace("SSE", "hierarchical")] = best(hier)
            loops["hierarchical"] = hier
        for name, hist in loops.items():  # median best so far after every iteration
            by_iteration += [{"seed": seed, "loop": name, "after_iteration": k,
                              "runs per basin": TS["n_initial"] + k * TS["n_per_iteration"],
                              "median best KGE' cal": float(v)}
                             for k, v in enumerate(hist.best_skill.median("basin").values)]
        rows["DDS 350"] = best(dds350)
        rows["DDS 3500"] = best(dds3500)
        rows["ungauged: LSE, spatial CV"] = ungauged
        rows["ungauged: LSE chooses the donor"] = lse_donor.params.values
        rows["ungauged: most similar donor"] = regionalise.donor_transfer(
            calibrated, basin_attrs, fold).params.values
        rows["ungauged: nearest donor"] = regionalise.donor_transfer(
            calibrated, coords, fold, metric="distance").params.values
        default_cal = run(rows["default"][:, None, :])[:, 0]
        dds_cal = run(rows["DDS 350"][:, None, :])[:, 0]
        dds_val = validate(rows["DDS 350"][:, None, :])[:, 0]
        # how well 19 basins pin down one seed's difference of medians: the basins resampled
        # with replacement (the same resamples for every row), 5% and 95% of the differences
        resample = np.random.default_rng(seed).integers(n_basin, size=(N_RESAMPLE, n_basin))

        def interval(skill, reference=None):  # of the median, or of its difference from reference's
            medians = np.nanmedian(skill[resample], axis=1)
            if reference is not None:
                medians = medians - np.nanmedian(reference[resample], axis=1)
            return np.nanpercentile(medians, [5, 95])

        for name, sets in rows.items():
            cal = run(sets[:, None, :])[:, 0]
            val = validate(sets[:, None, :])[:, 0]
            (cal_lo, cal_hi), (val_lo, val_hi) = interval(cal, dds_cal), interval(val, dds_val)
            # paired, basin by basin: a median of medians hides which method wins where
            records.append({"seed": seed, "row": name, "median KGE' cal": np.nanmedian(cal),
                            "median KGE' val": np.nanmedian(val),
                            **{f"median KGE' {period}, {q}": bound
                               for period, skill in (("cal", cal), ("val", val))
                               for q, bound in zip(("5%", "95%"), interval(skill))},
                            "basins better than default": int(np.sum(cal > default_cal)),
                            "basins better than DDS 350": int(np.sum(cal > dds_cal)),
                            "median difference from DDS 350, cal": float(np.nanmedian(cal - dds_cal)),
                            "median difference from DDS 350, val": float(np.nanmedian(val - dds_val)),
                            "median KGE' cal minus DDS 350, 5%": cal_lo,
                            "median KGE' cal minus DDS 350, 95%": cal_hi,
                            "median KGE' val minus DDS 350, 5%": val_lo,
                            "median KGE' val minus DDS 350, 95%": val_hi})
        print(f"seed {seed} done, {time.perf_counter() - start_all:.0f} s so far", flush=True)

    table = pd.DataFrame(records)
    order = list(dict.fromkeys(table.row))
    summary = table.groupby("row", sort=False)[["median KGE' cal", "median KGE' val",
                                                "basins better than default"]].agg(["mean", "std"])
    paired = table.groupby("row", sort=False)[["basins better than DDS 350",
                                               "median difference from DDS 350, cal",
                                               "median difference from DDS 350, val"]].agg(["mean", "min"])
    summary = summary.loc[order]
    for q in ("5%", "95%"):  # the interval over basins of one seed's median, averaged over seeds
        summary[("median KGE' cal", f"{q}, basins")] = table.groupby("row", sort=False)[
            f"median KGE' cal, {q}"].mean().loc[order]
    for design, medians in TANG.items():  # a number only where the row reads the same way
        summary[(f"Tang et al. CTSM, {design}", "627 basins")] = [medians.get(r, np.nan) for r in order]
    pd.set_option("display.width", 200)
    print(f"\nscale {args.scale}, seeds {seeds}, {n_basin} basins; mean and sd over seeds")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print("Tang et al.'s designs: " + "; ".join(f"{k}: {v}" for k, v in TANG_DESIGNS.items()))
    print(f"\nBasin by basin against DDS 350 (of {n_basin}; mean and worst over seeds):")
    print(paired.loc[order].to_string(float_format=lambda v: f"{v:.3f}"))
    per_seed = table.pivot(index="seed", columns="row", values="median KGE' cal")
    per_seed_val = table.pivot(index="seed", columns="row", values="median KGE' val")
    print("\nEach loop against DDS (per seed: calibration, then validation):")
    for name in [r for r in order if "Thompson" in r or "best so far" in r]:
        margin = per_seed[name] - per_seed["DDS 350"]
        margin_val = per_seed_val[name] - per_seed_val["DDS 350"]
        print(f"{name}: minus DDS 350 per seed {np.round(margin.values, 3).tolist()}, "
              f"validation {np.round(margin_val.values, 3).tolist()}; minus DDS 3500 on average "
              f"{np.mean(per_seed[name] - per_seed['DDS 3500']):+.3f}")
    for name in [r for r in order if "Thompson" in r] + ["DDS 3500"]:
        rows_ = table[table.row == name]
        above = [int((rows_[f"median KGE' {period} minus DDS 350, 5%"] > 0).sum()) for period in ("cal", "val")]
        print(f"{name}: seeds whose 90% interval of the difference from DDS 350 lies above 0: "
              f"{above[0]} of {len(rows_)} (cal), {above[1]} (val)")
    for loop in ("LSE", "LSE-or-SSE"):
        diffs = {i: per_seed[f"{loop} iteration {i}"] - per_seed[f"SSE iteration {i}"] for i in (1, 2, 3)}
        print(f"\n{loop} minus SSE (Tang's loops), per iteration: mean over seeds " + ", ".join(
            f"{i}: {d.mean():+.3f}" for i, d in diffs.items()) + "; seeds behind " + ", ".join(
            f"{i}: {int((d < 0).sum())} of {len(d)}" for i, d in diffs.items()))
    if not args.skip_hierarchical:
        curves = pd.DataFrame(by_iteration).pivot_table(index=["seed", "after_iteration"],
                                                        columns="loop", values="median best KGE' cal")
        gap = (curves["hierarchical"] - curves["SSE"]).groupby("after_iteration").mean()
        print(f"\nHierarchical minus SSE (Thompson loops), median best KGE' after each of "
              f"{len(gap) - 1} iterations, mean over seeds: worst {gap.min():+.3f} (iteration "
              f"{gap.idxmin()}), behind in {int((gap < 0).sum())} iterations; after "
              + ", ".join(f"{k}: {gap[k]:+.3f}" for k in range(0, len(gap), 11)))
        per_seed_gap = (curves["hierarchical"] - curves["SSE"]).unstack("seed").iloc[1:]
        print("  per seed, iterations behind: " + ", ".join(
            f"seed {seed}: {int((g < 0).sum())}" for seed, g in per_seed_gap.items())
              + "; final difference: " + ", ".join(f"{g.iloc[-1]:+.3f}" for _, g in per_seed_gap.items()))
    steps = pd.DataFrame(times).groupby("step", sort=False).seconds.agg(["mean", "max"])
    print("\nrun times per seed (s):\n" + steps.round(1).to_string())
    print(f"total {time.perf_counter() - start_all:.0f} s")
    if standin is not None:
        print(f"STAND-IN data ({standin}): timing only, the skill scores above mean nothing.")
    if args.csv is not None and args.timing:
        pd.DataFrame(times).assign(
            basins=args.basins, n_basin=n_basin, data="stand-in" if standin else "CAMELS-US",
            date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            machine=f"{platform.machine()}, {platform.system()}").to_csv(args.csv, index=False)
        print(f"wrote {args.csv} (run times)")
    elif args.csv is not None:
        table["scale"] = args.scale
        table["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        table["machine"] = f"{platform.machine()}, {platform.system()}"
        table["command"] = "python benchmarks/calibration_table.py " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
            if v not in (None, False) and k != "csv" and (k, v) != ("basins", "sample"))
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
        if by_iteration:
            curves_csv = args.csv.parent / f"calibration_curves_{args.scale}.csv"
            pd.DataFrame(by_iteration).assign(date=table.date[0], command=table.command[0]).to_csv(
                curves_csv, index=False)
            print(f"wrote {curves_csv}")


if __name__ == "__main__":
    main()
