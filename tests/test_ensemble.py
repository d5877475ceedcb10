"""emucal.ensemble: same numbers as the model, chunks, resume, dask; the runner a calibration calls."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from emucal import ensemble, metrics, model, sampling
from emucal.parameters import ParameterSpace

SPACE = ParameterSpace.tang2025()
PERIODS = {"calibration": (2002, 2003), "validation": (2004, 2004)}


@pytest.fixture(scope="module")
def samples():
    return sampling.sample(SPACE, 7, "lhs", seed=3)


def test_ensemble_scores_equal_model_plus_metrics(toy, samples):
    forcing, attrs = toy
    out = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3)
    assert out.kge_prime.dims == ("member", "basin", "period")
    assert list(out.member.values) == list(range(7))
    direct = model.simulate(samples, forcing, attrs)
    window = metrics.water_year_window(forcing.time, (2002, 2003))
    expected = metrics.kge_prime(direct.qsim.isel(time=window), forcing.qobs.isel(time=window))
    np.testing.assert_allclose(out.kge_prime.sel(period="calibration"), expected.values)
    np.testing.assert_allclose(out.params.values, samples)
    assert float(abs(out.water_balance_error).max()) < 1e-6


def test_interrupted_run_resumes_without_redoing_chunks(toy, samples, tmp_path, monkeypatch):
    forcing, attrs = toy
    store = tmp_path / "store"
    first = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                  store=store)
    assert sorted(p.name for p in store.glob("chunk_*.nc")) == [
        "chunk_00000.nc", "chunk_00001.nc", "chunk_00002.nc"]
    (store / "chunk_00001.nc").unlink()  # as if the run had stopped there
    calls = []
    real = ensemble._run_chunk
    monkeypatch.setattr(ensemble, "_run_chunk", lambda p, *a: calls.append(len(p)) or real(p, *a))
    second = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                   store=store)
    assert calls == [3]  # only the missing chunk ran
    np.testing.assert_array_equal(first.norm_kge.values, second.norm_kge.values)


def test_store_of_other_inputs_is_refused(toy, samples, tmp_path):
    forcing, attrs = toy
    store = tmp_path / "store"
    ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, store=store)
    with pytest.raises(ValueError, match="other samples"):
        ensemble.run_ensemble(samples[:5], forcing, attrs, periods=PERIODS, store=store)


def test_store_made_from_other_forcing_or_flow_is_refused(toy, samples, tmp_path):
    # the same samples, basins and periods, but a corrected forcing or another flow record:
    # the store's skill was computed from other data and must not come back under the new
    forcing, attrs = toy
    store = tmp_path / "store"
    ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, store=store)
    wetter = forcing.assign(prcp=forcing.prcp * 1.1)
    other_flow = forcing.assign(qobs=forcing.qobs * 0.9)
    deeper = attrs.assign(soil_depth_pelletier=attrs["soil_depth_pelletier"] + 1.0)
    for f, a in ((wetter, attrs), (other_flow, attrs), (forcing, deeper)):
        with pytest.raises(ValueError, match="forcing"):
            ensemble.run_ensemble(samples, f, a, periods=PERIODS, store=store)
    prints = {ensemble.model_runner(f, a, SPACE, period=(2002, 2004)).fingerprint
              for f, a in ((forcing, attrs), (wetter, attrs), (other_flow, attrs), (forcing, deeper))}
    assert len(prints) == 4  # a runner's checkpoints are kept apart the same way


def test_an_emptied_manifest_keeps_the_finished_chunks(toy, samples, tmp_path, monkeypatch):
    # each chunk carries the ensemble's fingerprint, so a damaged manifest loses nothing
    forcing, attrs = toy
    store = tmp_path / "store"
    first = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                  store=store)
    (store / ensemble._MANIFEST).write_text("")
    calls = []
    monkeypatch.setattr(ensemble, "_run_chunk", lambda p, *a: calls.append(len(p)))
    with pytest.warns(UserWarning, match="damaged.*kept"):
        again = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                      store=store)
    assert calls == []  # nothing ran again
    np.testing.assert_array_equal(first.norm_kge.values, again.norm_kge.values)
    with pytest.raises(ValueError, match="other samples"):  # and the rewritten manifest still guards
        ensemble.run_ensemble(samples[:5], forcing, attrs, periods=PERIODS, store=store)


def test_a_chunk_edited_after_it_was_written_is_not_taken(toy, samples, tmp_path):
    forcing, attrs = toy
    store = tmp_path / "store"
    ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3, store=store)
    path = store / "chunk_00001.nc"
    edited = xr.load_dataset(path)
    edited["norm_kge"] = edited.norm_kge + 0.1  # fingerprint kept, values changed
    edited.to_netcdf(path)
    with pytest.raises(ValueError, match="chunk_00001.nc are not those it was written with"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3, store=store)


def test_dask_client_gives_the_same_numbers(toy, samples):
    import distributed
    forcing, attrs = toy
    local = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=2)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        remote = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=2,
                                       client=client)
    np.testing.assert_array_equal(local.kge_prime.values, remote.kge_prime.values)


def test_bad_settings_are_explained(toy, samples):
    forcing, attrs = toy
    with pytest.raises(ValueError, match="Unknown metrics"):
        ensemble.run_ensemble(samples, forcing, attrs, metrics=("rmse",), periods=PERIODS)
    with pytest.raises(ValueError, match=r"Period 'cal': Water years 1990-1991 hold none.*cover water years 2001-2005"):
        ensemble.run_ensemble(samples, forcing, attrs, periods={"cal": (1990, 1991)})
    with pytest.raises(ValueError, match="Unknown period 'calibraton'"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=("calibraton",))
    with pytest.raises(ValueError, match="chunk_size"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=0)


def test_chunks_of_another_ensemble_are_refused_without_a_manifest(toy, samples, tmp_path):
    forcing, attrs = toy
    other, store = tmp_path / "other", tmp_path / "store"
    ensemble.run_ensemble(samples[::-1].copy(), forcing, attrs, periods=PERIODS, chunk_size=3,
                          store=other)
    store.mkdir()
    (store / "chunk_00000.nc").write_bytes((other / "chunk_00000.nc").read_bytes())
    with pytest.raises(ValueError, match="(?s)belongs to another ensemble.*Delete"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                              store=store)
    (store / "chunk_00000.nc").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="(?s)cannot be read.*delete it"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                              store=store)
    (store / "manifest.json").write_text("{broken")  # written again; the chunks still checked
    with pytest.warns(UserWarning, match="damaged"), pytest.raises(ValueError, match="cannot be read"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                              store=store)


# ------------------------------------------------------------------ the runner
def _rising(params):
    """Skill that grows with the parameters, one number per set."""
    return np.asarray(params).sum(-1)


def test_fill_defaults_puts_each_basins_default_where_a_set_holds_nan():
    names = ["p0", "p1", "p2", "p3"]
    defaults = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])
    run = ensemble.Runner(_rising, basins=["a", "b"], names=names, defaults=defaults)
    design = np.array([[np.nan, 0.9, 0.9, 0.9], [0.0, 0.0, 0.0, 0.0]])
    filled = ensemble.fill_defaults(run, design)
    assert filled.shape == (2, 2, 4)
    np.testing.assert_array_equal(filled[:, 0, 0], [0.1, 0.5])
    np.testing.assert_array_equal(filled[:, 1], 0.0)
    with pytest.raises(ValueError, match="no defaults"):
        ensemble.fill_defaults(ensemble.Runner(_rising, basins=["a", "b"], names=names), design)
    with pytest.raises(TypeError, match="Runner"):
        ensemble.fill_defaults(_rising, design)
    with pytest.raises(ValueError, match="defaults"):
        ensemble.Runner(_rising, basins=["a", "b"], names=names, defaults=np.zeros((3, 4)))


def test_model_runner_matches_the_ensemble(toy):
    forcing, attrs = toy
    samples = sampling.sample(SPACE, 4, "lhs", seed=0)
    run = ensemble.model_runner(forcing, attrs, SPACE, period=(2002, 2004))
    skill = run(np.broadcast_to(samples, (2,) + samples.shape))
    ens = ensemble.run_ensemble(samples, forcing, attrs, metrics=("kge_prime",),
                                periods={"c": (2002, 2004)})
    np.testing.assert_allclose(skill, ens.kge_prime.sel(period="c").values.T, rtol=1e-10)
    with pytest.raises(ValueError, match="basin=2"):
        run(samples)
    with pytest.raises(ValueError, match="Unknown metric 'percent_bias'"):  # not a skill to maximise
        ensemble.model_runner(forcing, attrs, SPACE, metric="percent_bias")


def test_model_runner_runs_whole_basins_a_bounded_number_of_runs_at_a_time(toy, monkeypatch):
    forcing, attrs = toy
    params = np.broadcast_to(sampling.sample(SPACE, 4, "lhs", seed=1), (2, 4, len(SPACE)))
    run = ensemble.model_runner(forcing, attrs, SPACE, period=(2002, 2004))
    at_once = run(params)
    calls = []

    def counted(columns, col_basin, *args, **kwargs):
        calls.append(np.unique(col_basin).tolist())
        return model.run_columns(columns, col_basin, *args, **kwargs)

    # runs that fit in one call reach the model as views of the caller's array, as before the
    # calls were bounded: a copy changes numpy's sums in the last digits, and every number with them
    seen = []
    monkeypatch.setattr(ensemble, "run_columns", lambda columns, *a, **k: seen.append(columns)
                        or model.run_columns(columns, *a, **k))
    contiguous = np.ascontiguousarray(params)
    np.testing.assert_array_equal(run(contiguous), at_once)
    assert len(seen) == 1 and np.shares_memory(seen[0], contiguous)
    monkeypatch.setattr(ensemble, "run_columns", counted)
    monkeypatch.setattr(ensemble, "RUNNER_COLUMNS", 5)  # room for one basin of 4 runs per call
    np.testing.assert_allclose(run(params), at_once, rtol=1e-12)  # numpy's sums see another shape
    assert calls == [[0], [1]]


def test_a_runner_subset_frees_only_the_named_parameters(toy):
    forcing, attrs = toy
    run = ensemble.model_runner(forcing, attrs, SPACE, period=(2002, 2004))
    keep = [SPACE.names[3], SPACE.names[0]]
    reduced = run.subset(keep)
    assert reduced.names == tuple(keep) and reduced.n_basin == run.n_basin
    assert reduced.fingerprint != run.fingerprint  # checkpoints of the two are kept apart
    values = np.array([[[0.3 * SPACE[keep[0]].upper + 0.7 * SPACE[keep[0]].lower,
                         0.5 * (SPACE[keep[1]].lower + SPACE[keep[1]].upper)]]] * run.n_basin)
    full = np.broadcast_to(run.defaults[:, None, :], (run.n_basin, 1, len(SPACE))).copy()
    full[..., SPACE.names.index(keep[0])] = values[..., 0]
    full[..., SPACE.names.index(keep[1])] = values[..., 1]
    np.testing.assert_allclose(reduced(values), run(full))
    with pytest.raises(ValueError, match="2 parameters"):
        reduced(full)
    with pytest.raises(ValueError, match="Unknown parameters"):
        run.subset(["no_such_parameter"])


def test_forcing_the_model_would_misread_is_refused(toy, samples, tmp_path):
    # issue 30: days out of order, a missing day or a basin twice ran silently, each day
    # of the model then paired with another day's flow
    forcing, attrs = toy
    run = dict(periods=PERIODS, chunk_size=7)
    with pytest.raises(ValueError, match="consecutive days in order.*follows"):
        ensemble.run_ensemble(samples, forcing.isel(time=slice(None, None, -1)), attrs, **run)
    with pytest.raises(ValueError, match="consecutive days in order"):
        ensemble.run_ensemble(samples, forcing.drop_isel(time=400), attrs, **run)
    twice = forcing.isel(basin=[0, 0])
    with pytest.raises(ValueError, match="more than once"):
        ensemble.run_ensemble(samples, twice, attrs, **run)
    with pytest.raises(ValueError, match="consecutive days"):
        ensemble.model_runner(forcing.drop_isel(time=400), attrs, SPACE, period=(2002, 2003))
    with pytest.raises(ValueError, match="is a file"):
        ensemble.run_ensemble(samples, forcing, attrs, store=__file__, **run)


def test_a_sample_dataset_is_read_by_parameter_name(toy, samples):
    forcing, attrs = toy
    ds = SPACE.to_dataset(samples)
    run = dict(periods=PERIODS, chunk_size=7, metrics="kge_prime")  # one name, not a list
    a = ensemble.run_ensemble(ds, forcing, attrs, **run)
    b = ensemble.run_ensemble(ds.isel(param=slice(None, None, -1)), forcing, attrs, **run)
    np.testing.assert_array_equal(a.kge_prime.values, b.kge_prime.values)


def test_a_sample_dataset_is_checked_against_its_own_ranges(toy, samples):
    forcing, attrs = toy
    wide = SPACE.with_range("fff", SPACE["fff"].lower, 2 * SPACE["fff"].upper)
    beyond = samples.copy()
    beyond[0, SPACE.names.index("fff")] = 1.5 * SPACE["fff"].upper  # outside tang2025, inside wide
    run = dict(periods=PERIODS, metrics="kge_prime")
    with pytest.raises(ValueError, match="fff = .* is outside its range"):
        ensemble.run_ensemble(beyond, forcing, attrs, **run)
    with pytest.raises(ValueError, match=r"missing \['fff'\]"):
        ensemble.run_ensemble(wide.to_dataset(beyond).drop_sel(param="fff"), forcing, attrs, **run)
    out = ensemble.run_ensemble(wide.to_dataset(beyond), forcing, attrs, **run)
    assert float(out.params.upper.sel(param="fff")) == wide["fff"].upper
    np.testing.assert_array_equal(out.params.values, beyond)


def test_fill_defaults_refuses_sets_of_another_width():
    run = ensemble.Runner(_rising, basins=["a"], names=("x", "y"), defaults=np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"2 parameters \(x, y\); got shape \(3, 5\)"):
        ensemble.fill_defaults(run, np.ones((3, 5)))


def test_a_runner_checks_its_basins_and_what_the_model_returns(toy, samples):
    forcing, attrs = toy
    with pytest.raises(ValueError, match=r"basins \['a'\] are given twice"):
        ensemble.Runner(lambda p: p[..., 0], basins=["a", "a"])
    transposed = ensemble.Runner(lambda p: p[..., 0].T, basins=["a", "b"])
    with pytest.raises(ValueError, match=r"returned skill of shape \(3, 2\).*\(basin, n\) = \(2, 3\)"):
        transposed(np.zeros((2, 3, 4)))
    labelled = ensemble.Runner(lambda p: xr.DataArray(p[..., 0].T, dims=("member", "basin")),
                               basins=["a", "b"])  # basins second, as a model might return them
    x = np.arange(8.0).reshape(2, 2, 2)
    np.testing.assert_array_equal(labelled(x), x[..., 0])
    with pytest.raises(ValueError, match=r"the order is run_ensemble\(samples, forcing, attrs\)"):
        ensemble.run_ensemble(forcing, samples, attrs)
