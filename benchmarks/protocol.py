"""What the calibration benchmarks share: the basins, the water years, Tang et al.'s SSE loop.

Teaching model, the 19 sample basins; spin-up WY1994, calibration WY1995-2007,
validation WY2008-2013; KGE'. ``calibration_table.py`` and ``ungauged.py``
both run :func:`tang_sse_loop`, so that one call, and one checkpoint, serves
both. :func:`tang_spatial_cv` is Tang et al.'s spatial cross-validation of
their random-forest LSE, for ``ungauged.py``. :func:`by_blocks` runs a step
whose basins are independent (the SSE loops, DDS) by blocks of
basins, in this process or on a dask cluster, with the same numbers either way.

Search sizes in Tang et al.'s code (NCAR/CTSM_calibration, commit
46d99b2f1c9c9285e9930a3eec896942fd51ba3c): the per-basin loop runs pymoo's GA
with population 60 for 60 generations (``MOASMO_parameters.py``, line 644);
the large-sample emulator's GA has population 100 and 100 generations
(``MOASMO_parameter_allbasin_emulator.py``, lines 342 and 420).
"""

import functools
import os
import platform
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import xarray as xr

import variants

import emucal
from emucal import calibrate, camels, emulators, ensemble, metrics, sampling
from emucal.parameters import ParameterSpace

TANG_DESIGN = (200, 50, 3)  # initial LHS runs, runs per iteration, iterations: 200 + 3 x 50 = 350
DDS_RUNS = 350  # DDS at the loops' budget
TANG_SEARCH = dict(popsize=60, generations=60)  # pymoo GA in MOASMO_parameters.py: 60 x 60
TANG_LSE_SEARCH = dict(popsize=100, generations=100)  # pymoo GA of their LSE: 100 x 100
N_PROPOSALS = 10  # numruns = 10 proposals per held-out basin in Tang et al.'s spatial CV
#: Tang et al.'s 627 basins, with their source (NCAR/CTSM_calibration) in its header lines
TANG2025_BASINS = Path(__file__).resolve().parents[1] / "data_registry" / "tang2025_basins.txt"
SUBSET_SEED = 0  # --basins N: the same N basins in every run, whatever the seeds
STANDIN_MARKER = "STANDIN.txt"  # written by benchmarks/standin.py at the top of a stand-in
#: Block k of :func:`by_blocks` runs with seed + BLOCK_SEED * k; block 0 keeps the seed, so that
#: one block is the run without blocks
BLOCK_SEED = 7919


def basin_selection(which: str = "sample", seed: int = SUBSET_SEED) -> list[str] | None:
    """The basins of ``--basins``: ``sample``, ``tang2025``, ``all`` or a number N.

    ``None`` for the 19-basin teaching sample (today's path); Tang et al.'s
    627 basins (``TANG2025_BASINS``); the 671 CAMELS-US basins; or N of the
    671 drawn at random with ``seed``, sorted.
    """
    if which == "sample":
        return None
    every = list(camels.attributes().index)
    if which == "tang2025":
        lines = TANG2025_BASINS.read_text().splitlines()
        return camels.check_basins([line for line in lines if line.strip() and not line.startswith("#")])
    if which == "all":
        return every
    if which.isdigit() and 1 <= int(which) <= len(every):
        return sorted(np.random.default_rng(seed).choice(every, int(which), replace=False).tolist())
    raise ValueError(f"--basins must be 'sample', 'tang2025', 'all' or a number of basins from 1 "
                     f"to {len(every)}, not {which!r}.")


def standin_marker(source=None) -> Path | None:
    """The stand-in marker of a CAMELS copy (``source``, else ``$EMUCAL_CAMELS_DIR``), or None.

    Looked for in the folder and the folders above it (a stand-in may be
    named by one of its subfolders).
    """
    given = source if source not in (None, "full") else os.environ.get(camels.CAMELS_DIR_VARIABLE, "")
    if not str(given).strip() or given == "sample":
        return None
    root = Path(given).expanduser().resolve()
    return next((folder / STANDIN_MARKER for folder in (root, *root.parents)
                 if (folder / STANDIN_MARKER).is_file()), None)


def refuse_standin_results(marker: Path | None, csv, timing: bool) -> None:
    """Refuse a results CSV from a stand-in unless it is a timing run.

    Raises ``ValueError`` when ``marker`` (:func:`standin_marker`) is a stand-in's
    and a ``csv`` is asked for without ``timing``: its skill scores are not data.
    """
    if marker is not None and csv is not None and not timing:
        raise ValueError(f"The CAMELS copy is a stand-in ({marker}): its skill scores say nothing "
                         f"about real basins, so no results CSV ({csv}) is written from it. Add "
                         "--timing to write the run times instead, or point EMUCAL_CAMELS_DIR at "
                         "a real CAMELS-US copy.")


def chosen_basins(args, parser):
    """``--basins`` of a benchmark: ``(basin ids or None, the stand-in marker or None)``.

    A wrong selection, or a results CSV asked from a stand-in without
    ``--timing``, is a usage error of ``parser`` (exit 2, before any work);
    on a stand-in the run says so first.
    """
    if args.basins == "sample":
        return None, None
    try:
        selected = basin_selection(args.basins)
        standin = standin_marker()
        refuse_standin_results(standin, args.csv, args.timing)
    except ValueError as err:
        parser.error(str(err))
    if standin is not None:
        print(f"STAND-IN data ({standin}), not CAMELS: timing only, the skill scores below "
              "mean nothing.", flush=True)
    return selected, standin


def setting(scale: str = "linear", basins=None, source=None) -> SimpleNamespace:
    """The parameter space, the data, the two runners and the basins' attributes and coordinates.

    Default: the 19 sample basins. ``basins`` (ids, e.g. :func:`basin_selection`)
    or ``source`` read a CAMELS-US copy instead: ``source`` as
    ``camels.load_basins`` takes it, ``"full"`` (``$EMUCAL_CAMELS_DIR``) by default.
    """
    space = ParameterSpace.tang2025(scale=scale)
    if basins is None and source is None:
        ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
    else:
        ds = camels.load_basins(basins, source=source or "full", start="1993-10-01", end="2013-09-30")
    return setting_of(ds, camels.attributes(), space)


def setting_of(ds, attrs, space) -> SimpleNamespace:
    """The setting of the basins of ``ds`` (forcing and flow), as :func:`setting` returns it."""
    return SimpleNamespace(
        space=space, ds=ds, attrs=attrs, n_basin=ds.sizes["basin"],
        run=ensemble.model_runner(ds, attrs, space, period="calibration"),
        validate=ensemble.model_runner(ds, attrs, space, period="validation"),
        basin_attrs=attrs.loc[ds.basin.values, list(emulators.LSE_ATTRIBUTES)].to_numpy(dtype=float),
        coords=attrs.loc[ds.basin.values, ["gauge_lat", "gauge_lon"]].to_numpy(dtype=float))


def tang_sse_loop(s: SimpleNamespace, seed: int, checkpoint=None, failed: str = "floor", *,
                  design=None, search=None):
    """Tang et al.'s loop with their per-basin emulator: 200 LHS runs + 3 x 50, GP or forest by CV.

    ``calibrate.tang_batch`` with ``variants.fit_gp_or_forest``, saved to and
    resumed from ``checkpoint``. ``failed``: a failed run counts as normKGE
    -1 (``"floor"``, emucal's default) or is left out of the emulators'
    training (``"drop"``, as Tang et al.'s code: ``variants.drop_failed``).
    ``design`` (initial runs, runs per iteration, iterations; ``TANG_DESIGN``
    when None) and ``search`` (``TANG_SEARCH`` when None) make it smaller for tests.
    """
    if failed not in ("floor", "drop"):
        raise ValueError(f"failed must be 'floor' or 'drop', not {failed!r}.")
    fit = (variants.fit_gp_or_forest if failed == "floor"
           else functools.partial(variants.drop_failed, fit=variants.fit_gp_or_forest))
    n_initial, n, n_iterations = design or TANG_DESIGN
    propose = functools.partial(calibrate.tang_batch, n=n, fit=fit, **(search or TANG_SEARCH), seed=seed)
    return variants.run_loop(s.run, s.space, sampling.sample(s.space, n_initial, "lhs", seed=seed),
                             propose, n_iterations, checkpoint)


def thompson_loop(s: SimpleNamespace, seed: int, checkpoint=None, *, design=(20, 5, 66), n_local=100,
                  n_candidates=1024):
    """Chapter 5's loop with Thompson sampling in a trust region and per-basin GPs (SSE).

    ``design``: initial runs (a Latin hypercube), runs per iteration and
    iterations (20 + 66 x 5 = 350 per basin); ``n_local`` and ``n_candidates``
    as ``calibrate.thompson_batch`` takes them.
    """
    n_initial, n, n_iterations = design
    rule = functools.partial(calibrate.thompson_batch, n=n, n_local=n_local, n_candidates=n_candidates,
                             seed=seed)
    return variants.run_loop(s.run, s.space, sampling.sample(s.space, n_initial, "lhs", seed=seed), rule,
                             n_iterations, checkpoint)


def dds_step(s: SimpleNamespace, seed: int, checkpoint=None, *, n_runs: int | None = None, batch: int = 1):
    """DDS with ``n_runs`` per basin (``DDS_RUNS`` when None), as a step of :func:`by_blocks` (no checkpoint)."""
    return calibrate.dds(s.run, s.space, n_runs or DDS_RUNS, seed=seed, batch=batch)


def _run_block(step, ds, attrs, space, seed, checkpoint, threads):
    """One block's ``step`` where it runs; on a dask worker, on ``threads`` threads first."""
    if threads is not None:
        emucal.size_thread_pools(threads)
    return step(setting_of(ds, attrs, space), seed, checkpoint)


def by_blocks(step, s: SimpleNamespace, seed: int, checkpoint=None, *, block_size=None, client=None,
              threads=None):
    """A ``step`` whose basins are independent, run by blocks of basins; one result for all.

    ``step(setting, seed, checkpoint)`` returns a Dataset over ``basin``, such as
    :func:`tang_sse_loop`, :func:`thompson_loop` or :func:`dds_step`: each basin's runs and emulators are
    its own, so the basins can be split. Block ``k`` holds at most ``block_size``
    basins (in order), runs with the seed ``seed + BLOCK_SEED * k`` and keeps its
    checkpoint in ``<checkpoint stem>_block<k>.nc``; the blocks' results are
    joined along ``basin``. Without ``block_size``, or with one of at least the
    number of basins, this is ``step(s, seed, checkpoint)``.

    A block is the unit of work of a cluster and bounds the memory of the
    batched emulators. The blocks run one after the other here, or as tasks of a
    dask ``client`` (:func:`dask_client`: a ``LocalCluster``, or workers that
    dask-jobqueue started on a cluster), each on ``threads`` threads (``None``:
    as many as this process): on the same kind of machine, with the same
    libraries, the same blocks on the same threads give the same numbers, bit
    for bit, wherever they run. The client's workers must run one task at a
    time (one thread each): a fit sets process-wide state (torch's seed and
    default dtype) that two tasks of one process would share.
    """
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be a positive number of basins, not {block_size}.")
    if block_size is None or block_size >= s.n_basin:
        return step(s, seed, checkpoint)
    starts = range(0, s.n_basin, block_size)
    blocks = [(s.ds.isel(basin=slice(a, a + block_size)), seed + BLOCK_SEED * k,
               None if checkpoint is None else Path(checkpoint).with_name(
                   f"{Path(checkpoint).stem}_block{k}{Path(checkpoint).suffix}"))
              for k, a in enumerate(starts)]
    if client is not None and max(client.nthreads().values(), default=1) > 1:
        raise ValueError("The dask workers must have one thread each (threads_per_worker=1, or "
                         "cores=1 with dask-jobqueue): two blocks in one process would share "
                         "torch's seed and default dtype.")
    if client is None:
        parts = [_run_block(step, ds, s.attrs, s.space, k_seed, path, None) for ds, k_seed, path in blocks]
    else:
        threads = threads or emucal.size_thread_pools().threads
        # each block's forcing as data, not in the graph; hash=False gives each call its own keys: with
        # keys hashed from the data, a second call on the same basins reuses the keys of the first's
        # futures while the scheduler still releases them, and its blocks are cancelled for "lost
        # dependencies" (dask/distributed#8576)
        data = client.scatter([ds for ds, _, _ in blocks], hash=False)
        parts = client.gather([client.submit(_run_block, step, ds, s.attrs, s.space, k_seed, path,
                                             threads, pure=False)
                               for ds, (_, k_seed, path) in zip(data, blocks)])
    return xr.concat(parts, dim="basin", data_vars="minimal", coords="minimal", compat="override",
                     join="override", combine_attrs="drop")  # a block's checkpoint settings


def add_block_arguments(parser) -> None:
    """``--block-size``, ``--workers`` and ``--scheduler`` of a benchmark (see :func:`by_blocks`)."""
    parser.add_argument("--block-size", type=int, default=None,
                        help="run the per-basin steps (the SSE loops, DDS) by blocks of this "
                             "many basins (default: one block); block k gets seed + 7919 k")
    parser.add_argument("--workers", type=int, default=None,
                        help="run the blocks on a dask LocalCluster of this many worker processes, "
                             "which share this process's threads")
    parser.add_argument("--scheduler", default=None,
                        help="run the blocks on the dask scheduler at this address (for example "
                             "dask-jobqueue's cluster.scheduler_address)")


def block_options(args, parser) -> dict:
    """``by_blocks``' keywords from :func:`add_block_arguments`' options; a usage error exits 2."""
    if args.block_size is not None and args.block_size < 1:
        parser.error(f"--block-size must be a positive number of basins, not {args.block_size}.")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be a positive number of processes, not {args.workers}.")
    if (args.workers is not None or args.scheduler is not None) and args.block_size is None:
        parser.error("--workers and --scheduler run blocks of basins: give --block-size too.")
    if args.workers is not None and args.scheduler is not None:
        parser.error("give --workers (a cluster on this machine) or --scheduler, not both.")
    threads = None  # --scheduler: the blocks on this process's threads, as the jobs should book
    if args.workers is not None:
        # the workers share this process's threads; this process keeps them for the steps that
        # need every basin at once (the LSE loop, the regionalisation), while the workers wait
        threads = max(1, emucal.size_thread_pools().threads // args.workers)
        print(f"--workers {args.workers}: each worker runs its blocks on {threads} thread(s); the "
              f"blocks run here with EMUCAL_THREADS={threads} give the same numbers.", flush=True)
    return dict(block_size=args.block_size, client=dask_client(args.workers, args.scheduler),
                threads=threads)


#: dask settings of :func:`dask_client`'s workers: no trim threshold, no profiler (see there)
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                 "distributed.worker.profile.enabled": False}


def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A dask client for :func:`by_blocks`: None, a ``LocalCluster`` of ``workers``, or ``scheduler``.

    ``scheduler`` is the address of a running scheduler (for example
    ``cluster.scheduler_address`` of dask-jobqueue's ``SLURMCluster``). The
    workers import ``protocol`` and ``variants`` from this folder: it is put on
    the path of the workers there now; workers that join later need it on their
    ``PYTHONPATH`` (a line ``export PYTHONPATH=...`` in the job script).

    The ``LocalCluster``'s workers start without two dask defaults that slow
    the GP fits down (:data:`WORKER_CONFIG`): the ``MALLOC_TRIM_THRESHOLD_``
    that the nanny sets (``distributed.nanny.pre-spawn-environ``) and the
    workers' statistical profiler, which samples the running task's stack
    every 10 ms. Setting ``MALLOC_TRIM_THRESHOLD_`` at all fixes glibc's
    threshold for serving memory by ``mmap`` at 128 kB (``mallopt(3)``), so every
    GP kernel matrix of a fit is mapped, touched page by page and unmapped
    again. Tang et al.'s SSE loop on 8 stand-in basins, in two blocks on two
    one-thread workers, on 2 cores: 107 s with both defaults (a third of it in
    the kernel), 64 s without the variable, 55 s without the profiler too, the
    same numbers each time (82 s in one process on two threads). Workers of a
    ``scheduler`` read their own configuration (see the cluster appendix).
    """
    if workers is None and scheduler is None:
        return None
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        client = Client(scheduler)
    else:
        with dask.config.set(WORKER_CONFIG):
            client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=":0"))
    # exec of a statement: a pickled sys.path.insert would insert into a copy of this process's path
    client.run(exec, f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})", {})
    return client


def peak_mb() -> float:
    """Peak resident memory of this process in MB, since :func:`reset_peak` on Linux."""
    try:
        return int(re.search(r"VmHWM:\s*(\d+)", Path("/proc/self/status").read_text())[1]) / 1024
    except (OSError, TypeError):  # no /proc: the peak since the start (kB; bytes on macOS)
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if platform.system() == "Darwin" else peak / 1024


def reset_peak() -> None:
    """Start :func:`peak_mb` afresh from the memory in use now (Linux; elsewhere nothing)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def tang_spatial_cv(history, basin_attrs: np.ndarray, space, *, seed: int, n_splits: int = 5):
    """Tang et al.'s spatial cross-validation of the random-forest LSE.

    For each fold of basins (the folds of ``emucal.regionalise.regionalise``
    with the same seed), a forest (100 trees, depth at most 40) learns normKGE from
    the *initial* runs (iteration 0) of the other basins, failed runs left
    out; each held-out basin then gets ``N_PROPOSALS`` independent searches
    of the forest (``TANG_LSE_SEARCH``), and the best point of each is a
    proposal.

    Returns
    -------
    params : ndarray ``(basin, N_PROPOSALS, param)``
        The proposals, in parameter units.
    fold : ndarray ``(basin,)``
        The fold in which each basin was held out.
    """
    first = np.flatnonzero(history.iteration.transpose("basin", "member").values[0] == 0)
    initial = history.isel(member=first)
    params = initial.params.transpose("basin", "member", "param").values
    skill = initial.skill.transpose("basin", "member").values
    n_basin, n_run, d = params.shape
    unit = space.to_unit(params.reshape(-1, d)).reshape(n_basin, n_run, d)
    target = metrics.to_norm(skill)  # normKGE; NaN where a run failed
    proposals = np.full((n_basin, N_PROPOSALS, d), np.nan)
    fold = np.full(n_basin, -1)
    for k, held in enumerate(emulators.kfold(n_basin, n_splits, seed=seed)):
        train = np.setdiff1d(np.arange(n_basin), held)
        x = emulators.lse_features(unit[train].reshape(-1, d),
                                   np.repeat(basin_attrs[train], n_run, axis=0))
        y = target[train].ravel()
        ok = np.isfinite(y)  # Tang et al. drop the failed runs
        forest = emulators.RandomForestEmulator(100, max_depth=40, seed=seed + k).fit(x[ok], y[ok])
        attrs = np.repeat(basin_attrs[held], N_PROPOSALS, axis=0)  # one search per row

        def predict(u, forest=forest, attrs=attrs):  # u: (search, m, d) -> (search, m)
            m = u.shape[1]
            feats = emulators.lse_features(u.reshape(-1, d), np.repeat(attrs, m, axis=0))
            return forest.predict(feats).reshape(len(attrs), m)

        pop, _ = calibrate.search(predict, len(attrs), d, **TANG_LSE_SEARCH, seed=seed + 100 * k)
        proposals[held] = pop[:, 0].reshape(len(held), N_PROPOSALS, d)
        fold[held] = k
    return space.from_unit(proposals.reshape(-1, d)).reshape(n_basin, N_PROPOSALS, d), fold
