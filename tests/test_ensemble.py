"""emucal.ensemble: same numbers as the model, chunks, resume, dask."""

from __future__ import annotations

import numpy as np
import pytest

from emucal import ensemble, metrics, model, sampling
from emucal.parameters import ParameterSpace

SPACE = ParameterSpace.tang2025()
PERIODS = {"calibration": (2002, 2003), "validation": (2004, 2004)}


@pytest.fixture(scope="module")
def samples():
    return sampling.sample(SPACE, 7, "lhs", seed=3)


def test_ensemble_scores_equal_model_plus_metrics(toy, samples):
    forcing, attrs = toy
    out = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                keep_flow=True, progress=False)
    assert out.kge_prime.dims == ("member", "basin", "period")
    assert list(out.member.values) == list(range(7))
    direct = model.simulate(samples, forcing, attrs)
    np.testing.assert_array_equal(out.qsim.values, direct.qsim.values)
    window = metrics.water_year_window(forcing.time, (2002, 2003))
    expected = metrics.kge_prime(direct.qsim.isel(time=window), forcing.qobs.isel(time=window))
    np.testing.assert_allclose(out.kge_prime.sel(period="calibration"), expected.values)
    np.testing.assert_allclose(out.params.values, samples)
    assert float(abs(out.water_balance_error).max()) < 1e-6


def test_interrupted_run_resumes_without_redoing_chunks(toy, samples, tmp_path, monkeypatch):
    forcing, attrs = toy
    store = tmp_path / "store"
    first = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                  store=store, progress=False)
    assert sorted(p.name for p in store.glob("chunk_*.nc")) == [
        "chunk_00000.nc", "chunk_00001.nc", "chunk_00002.nc"]
    (store / "chunk_00001.nc").unlink()  # as if the run had stopped there
    calls = []
    real = ensemble._run_chunk
    monkeypatch.setattr(ensemble, "_run_chunk", lambda p, *a: calls.append(len(p)) or real(p, *a))
    second = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                                   store=store, progress=False)
    assert calls == [3]  # only the missing chunk ran
    np.testing.assert_array_equal(first.norm_kge.values, second.norm_kge.values)


def test_store_of_other_inputs_is_refused(toy, samples, tmp_path):
    forcing, attrs = toy
    store = tmp_path / "store"
    ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, store=store, progress=False)
    with pytest.raises(ValueError, match="other samples"):
        ensemble.run_ensemble(samples[:5], forcing, attrs, periods=PERIODS, store=store,
                              progress=False)


def test_dask_client_gives_the_same_numbers(toy, samples):
    import distributed
    forcing, attrs = toy
    local = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=2,
                                  progress=False)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        remote = ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=2,
                                       client=client, progress=False)
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
                          store=other, progress=False)
    store.mkdir()
    (store / "chunk_00000.nc").write_bytes((other / "chunk_00000.nc").read_bytes())
    with pytest.raises(ValueError, match="(?s)belongs to another ensemble.*Delete"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                              store=store, progress=False)
    (store / "chunk_00000.nc").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="(?s)cannot be read.*delete it"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                              store=store, progress=False)
    (store / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="damaged"):
        ensemble.run_ensemble(samples, forcing, attrs, periods=PERIODS, chunk_size=3,
                              store=store, progress=False)
