"""benchmarks/standin.py and the basin switch of the benchmarks (issue 32).

A stand-in large sample: CAMELS-US files for many basins, each with its own
attributes and the forcing and flow of one of the 19 sample basins, read by
``emucal.camels.load_basins`` as a real copy; the benchmarks refuse to write
results from it unless they are asked for run times.
"""

from __future__ import annotations

import functools
import os
import importlib.util
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emucal import calibrate, camels, regionalise, sampling

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _exit_of(script, *argv, capsys, monkeypatch):
    """Run ``benchmarks/<script>`` with ``argv`` here, as ``python`` would: its exit code and stderr.

    Usage errors stop a script before any work, so they are checked in this
    process rather than in a new Python that imports torch again.
    """
    monkeypatch.setattr(sys, "argv", [script, *map(str, argv)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    return stopped.value.code, capsys.readouterr().err


def _load(name):
    """A benchmarks/ module by path, registered under its name (protocol imports variants)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


variants, protocol, standin = _load("variants"), _load("protocol"), _load("standin")


@pytest.fixture
def standin25(real_camels, tmp_path):
    """A 25-basin stand-in in tmp_path: (folder, pairs)."""
    paired = standin.build(tmp_path / "camels", 25)
    return tmp_path / "camels", paired


def test_standin_reads_as_camels_with_the_paired_basins_forcing_and_the_targets_attributes(standin25):
    folder, paired = standin25
    assert len(paired) == 25 and paired.index.is_unique
    ds = camels.load_basins(list(paired.index), source=folder, start="1993-10-01", end="2013-09-30")
    sample = camels.load_basins(sorted(set(paired)), start="1993-10-01", end="2013-09-30")
    attrs = camels.attributes()
    assert list(ds.basin.values) == list(paired.index)
    for target, source in paired.items():
        got, want = ds.sel(basin=target), sample.sel(basin=source)
        for name in ("prcp", "srad", "tmax", "tmin", "vp", "dayl", "swe"):
            np.testing.assert_array_equal(got[name].values, want[name].values)
        # the flow as a depth is the sample basin's (scaled by the areas in the file)
        np.testing.assert_allclose(got.qobs.values, want.qobs.values, rtol=1e-6, atol=1e-6)
        assert (got.qobs_flag.values == want.qobs_flag.values).all()
        # the attributes and the header are the target basin's
        assert float(got.gauge_lat) == attrs.at[target, "gauge_lat"]
        assert float(got.area_km2) == attrs.at[target, "area_gages2"]
        assert float(got.area_header_km2) == pytest.approx(attrs.at[target, "area_geospa_fabric"])
        flow = folder / "usgs_streamflow" / attrs.at[target, "huc_02"] / f"{target}_streamflow_qc.txt"
        rows = [line.split() for line in flow.read_text().splitlines()]
        assert {r[0] for r in rows} == {target} and {len(r) for r in rows} == {6}
        assert len({tuple(r[1:4]) for r in rows}) == len(rows)  # no day twice
    # a sample basin is its own pair, the others their nearest in the LSE attributes
    in_sample = [b for b in paired.index if b in camels.sample_basins()]
    assert in_sample and all(paired[b] == b for b in in_sample)
    assert (folder / protocol.STANDIN_MARKER).read_text().startswith("STAND-IN, NOT DATA")


def test_a_standin_refuses_a_results_csv_unless_timing(standin25, monkeypatch, tmp_path, capsys):
    folder, _ = standin25
    marker = protocol.standin_marker(folder)
    assert marker == folder / protocol.STANDIN_MARKER
    with pytest.raises(ValueError, match="stand-in"):
        protocol.refuse_standin_results(marker, tmp_path / "results.csv", timing=False)
    protocol.refuse_standin_results(marker, tmp_path / "times.csv", timing=True)
    protocol.refuse_standin_results(marker, None, timing=False)  # printed output only
    protocol.refuse_standin_results(None, tmp_path / "results.csv", timing=False)  # real data
    # found through EMUCAL_CAMELS_DIR, also when it names a subfolder of the stand-in
    monkeypatch.setenv(camels.CAMELS_DIR_VARIABLE, str(folder / "usgs_streamflow"))
    assert protocol.standin_marker() == marker
    monkeypatch.setenv(camels.CAMELS_DIR_VARIABLE, str(tmp_path))
    assert protocol.standin_marker() is None
    # the benchmark stops before any work and writes nothing
    monkeypatch.setenv(camels.CAMELS_DIR_VARIABLE, str(folder))
    code, err = _exit_of("calibration_table.py", "--basins", "25", "--csv", tmp_path / "results.csv",
                         capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "stand-in" in err
    assert not (tmp_path / "results.csv").exists()


def test_basins_n_picks_the_same_random_basins_every_time(real_camels):
    every = camels.attributes().index
    first = protocol.basin_selection("25")
    assert first == protocol.basin_selection("25") and len(set(first)) == 25
    assert first == sorted(first) and set(first) <= set(every)
    assert protocol.basin_selection("25", seed=1) != first
    assert protocol.basin_selection("sample") is None
    assert protocol.basin_selection("all") == list(every)
    tang = protocol.basin_selection("tang2025")
    assert len(tang) == 627 and set(camels.sample_basins()) <= set(tang)
    for bad in ("0", "672", "tang", "-3"):
        with pytest.raises(ValueError, match="--basins"):
            protocol.basin_selection(bad)


def test_setting_reads_a_basin_selection_from_a_camels_copy(standin25):
    folder, paired = standin25
    ids = list(paired.index[:6])
    s = protocol.setting(basins=ids, source=folder)
    assert s.n_basin == 6 and list(s.ds.basin.values) == ids
    attrs = camels.attributes()
    np.testing.assert_array_equal(s.coords, attrs.loc[ids, ["gauge_lat", "gauge_lon"]].to_numpy())


@pytest.fixture
def standin_n25(real_camels, tmp_path, monkeypatch):
    """A stand-in of the basins of ``--basins 25``, named by EMUCAL_CAMELS_DIR: its folder."""
    folder = tmp_path / "camels"
    standin.build(folder, basins=protocol.basin_selection("25"))
    monkeypatch.setenv(camels.CAMELS_DIR_VARIABLE, str(folder))
    return folder


def _ungauged(monkeypatch, *argv):
    """benchmarks/ungauged.py with ``argv``, in a tiny configuration: 16 initial runs, small searches."""
    def tiny_loop(s, seed, checkpoint=None, failed="floor"):  # the loop's initial design only
        return variants.run_loop(s.run, s.space, sampling.sample(s.space, 16, "lhs", seed=seed),
                                 calibrate.tang_batch, 0, checkpoint)

    monkeypatch.setattr(protocol, "tang_sse_loop", tiny_loop)
    monkeypatch.setattr(protocol, "TANG_LSE_SEARCH", dict(popsize=8, generations=3))
    monkeypatch.setattr(protocol, "N_PROPOSALS", 2)
    monkeypatch.setattr(regionalise, "regionalise", functools.partial(
        regionalise.regionalise, search_kw=dict(popsize=8, generations=3)))
    monkeypatch.setattr(sys, "argv", ["ungauged.py", *map(str, argv)])
    runpy.run_path(str(BENCHMARKS / "ungauged.py"), run_name="__main__")


def test_ungauged_times_each_step_of_a_basin_selection_on_a_standin(standin_n25, tmp_path, monkeypatch,
                                                                     capsys):
    times, checkpoints = tmp_path / "times.csv", tmp_path / "checkpoints"
    _ungauged(monkeypatch, "--basins", "25", "--seeds", "0", "--timing", "--csv", times,
              "--checkpoints", checkpoints)
    out = capsys.readouterr().out
    assert "STAND-IN data" in out and "25 basins, seeds [0]" in out and "peak MB" in out
    steps = pd.read_csv(times)
    assert list(steps.step) == ["load basins", "default run", "SSE loop (Tang)", "LSE spatial CV",
                                "LSE chooses the donor", "Tang's spatial CV", "scores of the rows"]
    assert (steps.seconds > 0).all() and (steps["peak MB"] > 10).all()
    assert set(steps.data) == {"stand-in"} and set(steps.n_basin) == {25} and set(steps.basins) == {25}
    # the checkpoints carry the selection in their names, as calibration_table.py's
    assert (checkpoints / "sse_gp_or_rf_tang_linear_0_25basins.nc").is_file()
    assert (checkpoints / "regionalise_rf_donors_linear_0_25basins.nc").is_file()


def test_ungauged_refuses_a_results_csv_from_a_standin_and_a_wrong_selection(standin_n25, tmp_path, capsys,
                                                                            monkeypatch):
    for argv, message in ((["--basins", "25", "--csv", tmp_path / "results.csv"], "stand-in"),
                          (["--basins", "672"], "--basins must be")):
        code, err = _exit_of("ungauged.py", *argv, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 2 and message in err, err
    assert not (tmp_path / "results.csv").exists()


def _dask_setting(key):
    """A dask setting where this runs (a worker)."""
    import dask

    return dask.config.get(key)


def test_blocks_of_basins_give_the_same_numbers_here_and_on_a_local_cluster(standin_n25, tmp_path,
                                                                            monkeypatch):
    """protocol.by_blocks: Tang et al.'s SSE loop (a tiny design), Thompson's loop and DDS by blocks
    of 2 of 4 basins, one after the other and as tasks of a dask LocalCluster, bit for bit; one
    block is the plain run."""
    import xarray as xr

    s = protocol.setting(basins=protocol.basin_selection("25")[:4])  # 2 blocks of 2
    step = functools.partial(protocol.tang_sse_loop, design=(16, 2, 1),
                             search=dict(popsize=8, generations=3))
    calls, plain = [], object()  # one block of all the basins is the plain run: the step called once
    assert protocol.by_blocks(lambda *args: calls.append(args) or plain, s, 0, "p.nc", block_size=4) is plain
    assert calls == [(s, 0, "p.nc")]
    path = tmp_path / "sse.nc"
    here = protocol.by_blocks(step, s, 0, path, block_size=2)
    assert list(here.basin.values) == list(s.ds.basin.values) and here.sizes["member"] == 18
    assert sorted(p.name for p in tmp_path.glob("sse_block*.nc")) == ["sse_block0.nc", "sse_block1.nc"]
    # block k runs with its own seed: block 0 starts from the initial design of seed 0 (the plain
    # run's), block 1 from the design of seed 0 + BLOCK_SEED (and searches with that seed); the
    # design leaves NaN where each basin's own value goes
    for k, block in enumerate((here.isel(basin=slice(0, 2)), here.isel(basin=slice(2, 4)))):
        design = sampling.sample(s.space, 16, "lhs", seed=protocol.BLOCK_SEED * k)
        drawn = np.isfinite(design)
        assert drawn.sum() > 16 * (len(s.space) - 2)
        for runs in block.params.values[:, :16]:
            np.testing.assert_array_equal(runs[drawn], design[drawn])
    # a nanny that started a worker in this process before left dask's MALLOC_TRIM_THRESHOLD_ here
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    client = protocol.dask_client(workers=2)
    try:
        from distributed import get_task_stream

        assert len(client.scheduler_info()["workers"]) == 2
        # without dask's default trim threshold (glibc then maps every GP kernel matrix anew) and
        # without its profiler
        assert set(client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
        assert set(client.run(_dask_setting, "distributed.worker.profile.enabled").values()) == {False}
        with get_task_stream(client) as tasks:
            xr.testing.assert_identical(protocol.by_blocks(step, s, 0, block_size=2, client=client), here)
        assert len(tasks.data) == 2  # the two blocks ran on the workers
        thompson = functools.partial(protocol.thompson_loop, design=(8, 2, 2), n_local=None,
                                     n_candidates=64)
        xr.testing.assert_identical(protocol.by_blocks(thompson, s, 1, block_size=2, client=client),
                                    protocol.by_blocks(thompson, s, 1, block_size=2))
        dds = functools.partial(protocol.dds_step, n_runs=30)
        xr.testing.assert_identical(protocol.by_blocks(dds, s, 3, block_size=2, client=client),
                                    protocol.by_blocks(dds, s, 3, block_size=2))
        # the same blocks sent again and again, each call's data released as the next is sent: with
        # data keys hashed from the data, some call's blocks were cancelled for "lost dependencies"
        # (one in the first 10 calls in a trial; dask/distributed#8576)
        tiny = functools.partial(protocol.dds_step, n_runs=2)
        first = protocol.by_blocks(tiny, s, 0, block_size=2, client=client)
        for _ in range(40):
            xr.testing.assert_identical(protocol.by_blocks(tiny, s, 0, block_size=2, client=client), first)
    finally:
        client.close()
    from distributed import Client, LocalCluster

    # a worker of two threads is refused before any block is sent (threads of this process suffice)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as two_threads:
        with pytest.raises(ValueError, match="one thread each"):
            protocol.by_blocks(step, s, 0, block_size=2, client=two_threads)
    # resumed from the blocks' checkpoints: the same history
    xr.testing.assert_identical(protocol.by_blocks(step, s, 0, path, block_size=2), here)
    with pytest.raises(ValueError, match="block_size must be a positive"):
        protocol.by_blocks(step, s, 0, block_size=0)


def test_local_cluster_workers_share_this_process_threads(monkeypatch, capsys):
    """--workers W: each worker runs its blocks on this process's threads // W (at least 1), and
    this process keeps its own for the steps that need every basin; --scheduler: its threads."""
    import argparse

    import emucal

    parser = argparse.ArgumentParser()
    protocol.add_block_arguments(parser)
    monkeypatch.setattr(protocol, "dask_client", lambda workers, scheduler: (workers, scheduler))
    threads = emucal.size_thread_pools().threads
    for workers in (1, 2, threads + 1):
        options = protocol.block_options(parser.parse_args(["--block-size", "5", "--workers", str(workers)]),
                                         parser)
        assert options == dict(block_size=5, client=(workers, None), threads=max(1, threads // workers))
        assert f"EMUCAL_THREADS={options['threads']} give the same numbers" in capsys.readouterr().out
    assert emucal.size_thread_pools().threads == threads  # this process keeps its threads
    options = protocol.block_options(parser.parse_args(["--block-size", "5", "--scheduler", "tcp://x:1"]), parser)
    assert options == dict(block_size=5, client=(None, "tcp://x:1"), threads=None)


def test_ungauged_by_blocks_and_its_usage_errors(standin_n25, tmp_path, monkeypatch, capsys):
    checkpoints = tmp_path / "checkpoints"
    _ungauged(monkeypatch, "--basins", "25", "--seeds", "0", "--timing", "--block-size", "10",
              "--checkpoints", checkpoints)
    assert sorted(p.name for p in checkpoints.glob("sse_*")) == [
        f"sse_gp_or_rf_tang_linear_0_25basins_block{k}.nc" for k in range(3)]
    for argv, message in ((["--workers", "2"], "give --block-size too"),
                          (["--block-size", "0"], "--block-size must be a positive"),
                          (["--block-size", "5", "--workers", "2", "--scheduler", "tcp://x:1"], "not both")):
        code, err = _exit_of("ungauged.py", "--basins", "25", *argv, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 2 and message in err, err


def test_benchmarks_that_can_start_a_local_cluster_run_only_as_scripts():
    """dask starts LocalCluster workers by spawning Python, which imports the script again: a
    script that parsed its arguments and ran at import would run itself again in every worker."""
    import ast

    for name in ("calibration_table.py", "ungauged.py", "large_sample.py"):
        tree = ast.parse((BENCHMARKS / name).read_text())
        top = [ast.unparse(node) for node in tree.body
               if isinstance(node, (ast.Expr, ast.For, ast.If, ast.Assign, ast.With))]
        assert not [line for line in top if "parse_args" in line or "block_options" in line], name
        assert top[-1] == "if __name__ == '__main__':\n    main()", name


def test_large_sample_times_each_step_and_keeps_the_rows_of_other_basin_counts(standin_n25, tmp_path,
                                                                              monkeypatch, capsys):
    monkeypatch.setattr(protocol, "TANG_DESIGN", (16, 2, 1))  # a tiny protocol: 16 + 1 x 2 runs
    monkeypatch.setattr(variants, "fit_gp_or_forest", calibrate.fit_sse)  # GPs only: no CV of 150 forests
    monkeypatch.setattr(protocol, "TANG_SEARCH", dict(popsize=6, generations=2))
    monkeypatch.setattr(protocol, "DDS_RUNS", 18)
    monkeypatch.setattr(regionalise, "regionalise", functools.partial(
        regionalise.regionalise, search_kw=dict(popsize=6, generations=2)))
    times = tmp_path / "large_sample.csv"  # an older run of 25 basins, to be replaced, and one of 100
    pd.DataFrame({"step": ["whole protocol"] * 2, "seconds": [1e6, 1.0], "basins": [25, 100]}).to_csv(
        times, index=False)
    monkeypatch.setattr(sys, "argv", ["large_sample.py", "--basins", "25", "--csv", str(times)])
    runpy.run_path(str(BENCHMARKS / "large_sample.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "STAND-IN data" in out and "no skill is reported" in out
    steps = pd.read_csv(times)
    assert list(steps.basins) == [25] * 9 + [100] and steps.seconds.max() < 1e6
    protocol_steps = ["load basins", "ensemble of 16 runs", "SSE loop (Tang)", "LSE loop (Tang)", "DDS 18",
                      "LSE spatial CV"]
    assert list(steps.step[:9]) == [*protocol_steps, "LSE fit: forest, all runs", "LSE fit: sparse GP, all runs",
                                    "whole protocol"]
    mine = steps[steps.basins == 25].set_index("step")
    assert (mine.seconds > 0).all() and (mine["peak MB"] > 10).all() and set(mine.data) == {"stand-in"}
    # the whole protocol is its steps, without the ensemble (each loop runs it) and the emulators alone
    assert np.isclose(mine.seconds["whole protocol"],
                      mine.seconds[protocol_steps].sum() - mine.seconds["ensemble of 16 runs"])


def test_large_sample_parts_of_the_protocol_each_in_their_own_rows(standin_n25, tmp_path, monkeypatch, capsys):
    """--skip-per-basin: the steps over all basins at once; --lse-fits-only: the two LSE fits alone."""
    monkeypatch.setattr(protocol, "TANG_DESIGN", (16, 2, 1))
    monkeypatch.setattr(protocol, "TANG_SEARCH", dict(popsize=6, generations=2))
    monkeypatch.setattr(regionalise, "regionalise", functools.partial(
        regionalise.regionalise, search_kw=dict(popsize=6, generations=2)))
    monkeypatch.setattr(variants, "fit_gp_or_forest", None)  # the SSE loop must not run
    monkeypatch.setattr(protocol, "by_blocks", None)  # nor DDS
    part = tmp_path / "part.csv"
    monkeypatch.setattr(sys, "argv", ["large_sample.py", "--basins", "25", "--skip-per-basin", "--csv", str(part)])
    runpy.run_path(str(BENCHMARKS / "large_sample.py"), run_name="__main__")
    rows = pd.read_csv(part)
    assert list(rows.step) == ["load basins", "ensemble of 16 runs", "LSE loop (Tang)", "LSE spatial CV"]
    assert (rows.seconds > 0).all() and rows.command.str.endswith("--skip-per-basin").all()
    fits = tmp_path / "fits.csv"
    monkeypatch.setattr(sys, "argv", ["large_sample.py", "--basins", "25", "--lse-fits-only", "--csv", str(fits)])
    runpy.run_path(str(BENCHMARKS / "large_sample.py"), run_name="__main__")
    rows = pd.read_csv(fits)
    assert list(rows.step) == ["load basins", "ensemble of 16 + 2 random runs",
                               "LSE fit: forest, 16 + 2 random runs", "LSE fit: sparse GP, 16 + 2 random runs"]
    # the two kinds of rows never share a CSV, and a part never replaces a whole protocol
    whole = tmp_path / "whole.csv"
    pd.DataFrame({"step": ["whole protocol"], "seconds": [1.0], "basins": [25], "command": ["x"]}).to_csv(
        whole, index=False)
    for argv, message in ((["--lse-fits-only", "--csv", part], "CSV of their own"),
                          (["--csv", fits], "another CSV"),
                          (["--skip-per-basin", "--csv", whole], "whole protocol on 25 basins"),
                          (["--skip-per-basin", "--lse-fits-only"], "not both")):
        code, err = _exit_of("large_sample.py", "--basins", "25", *argv, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 2 and message in err, err


def test_large_sample_refuses_the_teaching_sample(capsys, monkeypatch):
    code, err = _exit_of("large_sample.py", "--basins", "sample", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "give a number of basins" in err, err
