"""emucal.emulators on functions whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import emucal
from emucal import emulators, metrics


def _function(x):
    # depends strongly on x0, weakly on x1, not at all on x2
    return np.sin(5 * x[..., 0]) + 0.3 * x[..., 1] ** 2


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(80, 3))
    xt = rng.uniform(size=(200, 3))
    return x, _function(x), xt, _function(xt)


def test_gp_learns_a_smooth_function_and_reads_sensitivity(data):
    x, y, xt, yt = data
    gp = emulators.GPEmulator().fit(x, y)
    mean, std = gp.predict(xt, return_std=True)
    assert metrics.r2_score(yt, mean) > 0.98
    ls = gp.lengthscales_
    assert ls[0] < ls[1] < ls[2]  # the irrelevant input has the longest lengthscale
    assert std.shape == mean.shape and np.all(std > 0)
    # more uncertain far outside the data than at a training point
    _, far = gp.predict(np.array([[3.0, 3.0, 3.0]]), return_std=True)
    _, near = gp.predict(x[:1], return_std=True)
    assert far[0] > 5 * near[0]


def test_gp_intervals_cover_noisy_data(data):
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(150, 3))
    y = _function(x) + rng.normal(0, 0.1, 150)
    xt = rng.uniform(size=(400, 3))
    yt = _function(xt) + rng.normal(0, 0.1, 400)
    gp = emulators.GPEmulator().fit(x, y)
    mean, std = gp.predict(xt, return_std=True)
    assert 0.8 < metrics.coverage(yt, mean, std, 0.9) < 0.97
    assert gp.noise_ * gp.scaler_.y_std.item() ** 2 == pytest.approx(0.01, rel=0.6)


def test_batched_gp_fits_each_member_like_a_single_gp(data):
    x, y, xt, yt = data
    xb = np.stack([x, x])
    yb = np.stack([y, -2 * y + 1])  # two different "basins"
    gp = emulators.GPEmulator().fit(xb, yb)
    mean = gp.predict(np.stack([xt, xt]))
    assert mean.shape == (2, 200)
    assert metrics.r2_score(yt, mean[0]) > 0.98
    assert metrics.r2_score(-2 * yt + 1, mean[1]) > 0.98
    single = emulators.GPEmulator().fit(x, y).predict(xt)
    assert np.max(np.abs(single - mean[0])) < 0.05
    assert gp.lengthscales_.shape == (2, 3)


def test_same_seed_same_fit_and_save_load_round_trip(data, tmp_path):
    x, y, xt, _ = data
    a = emulators.GPEmulator(seed=3).fit(x, y)
    b = emulators.GPEmulator(seed=3).fit(x, y)
    np.testing.assert_array_equal(a.predict(xt), b.predict(xt))
    loaded = emulators.load(a.save(tmp_path / "gp.pt"))
    m1, s1 = a.predict(xt, return_std=True)
    m2, s2 = loaded.predict(xt, return_std=True)
    np.testing.assert_allclose(m1, m2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s1, s2, rtol=1e-10, atol=1e-12)


def test_a_save_that_fails_half_way_keeps_the_earlier_file(data, tmp_path, monkeypatch):
    x, y, xt, _ = data
    gp = emulators.GPEmulator(seed=3).fit(x, y)
    path = gp.save(tmp_path / "gp.pt")

    def disk_full(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03")  # a few bytes, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emulators.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        gp.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(emulators.load(path).predict(xt), gp.predict(xt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gp.pt"]  # no temporary file left


def test_an_emulator_file_of_an_earlier_version_loads_or_says_why(data, tmp_path):
    x, y, xt, _ = data
    gp = emulators.GPEmulator(seed=3).fit(x, y)
    state = gp._state()
    state["params"] = {**state["params"], "optimizer": "lbfgs", "lengthscale_bounds": (0.01, 100.0)}
    torch.save(emulators._to_plain(state), tmp_path / "old.pt")
    np.testing.assert_array_equal(emulators.load(tmp_path / "old.pt").predict(xt), gp.predict(xt))
    state["params"]["lengthscale_bounds"] = (0.1, 10.0)  # would map the fitted lengthscales wrongly
    torch.save(emulators._to_plain(state), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="lengthscale_bounds"):
        emulators.load(tmp_path / "other.pt")


def test_a_missing_or_edited_emulator_file_is_named(data, tmp_path):
    x, y, _, _ = data
    with pytest.raises(FileNotFoundError, match=r"No emulator file at .*nothing\.pt"):
        emulators.load(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        emulators.load(tmp_path)
    state = emulators.GPEmulator(seed=3).fit(x, y)._state()
    state["train_x"] = state["train_x"][..., :2]  # weights of another shape than the model's
    torch.save(emulators._to_plain(state), tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"edited\.pt is a damaged or edited GPEmulator file"):
        emulators.load(tmp_path / "edited.pt")


def test_sparse_gp_on_a_larger_set_and_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(3000, 3))
    y = _function(x) + rng.normal(0, 0.02, 3000)
    xt = rng.uniform(size=(500, 3))
    em = emulators.SparseGPEmulator(n_inducing=64, seed=0).fit(x, y)
    assert em.n_iter_ > 5
    mean, std = em.predict(xt, return_std=True)
    assert metrics.r2_score(_function(xt), mean) > 0.95
    loaded = emulators.load(em.save(tmp_path / "sgp.pt"))
    np.testing.assert_allclose(loaded.predict(xt), mean, rtol=1e-10, atol=1e-12)


def test_make_lse_switches_at_the_exact_gp_limit():
    assert isinstance(emulators.make_lse(emulators.EXACT_GP_MAX_N), emulators.GPEmulator)
    assert isinstance(emulators.make_lse(emulators.EXACT_GP_MAX_N + 1), emulators.SparseGPEmulator)


def test_random_forest_baseline(data):
    x, y, xt, yt = data
    rf = emulators.RandomForestEmulator(seed=0).fit(x, y)
    mean, std = rf.predict(xt, return_std=True)
    assert 0.5 < metrics.r2_score(yt, mean) < 1.0
    assert np.all(std >= 0)
    batched = emulators.RandomForestEmulator(seed=0).fit(np.stack([x, x]), np.stack([y, y]))
    np.testing.assert_allclose(batched.predict(np.stack([xt, xt]))[0], mean)


def test_random_forest_predicts_scikit_learns_bits_on_any_number_of_threads(data):
    x, y, xt, _ = data
    rf = emulators.RandomForestEmulator(n_estimators=30, seed=0).fit(x, y)
    many = np.concatenate([xt] * 40)  # enough rows to be split over threads
    reference = rf.forests_[0].predict(many)  # scikit-learn, one job: trees summed in order
    before = emucal.size_thread_pools().threads
    try:
        for threads in (1, 2, 3):
            emucal.size_thread_pools(threads)
            np.testing.assert_array_equal(rf.predict(many), reference)
    finally:
        emucal.size_thread_pools(before)
    with pytest.raises(ValueError, match="NaN or infinity"):
        rf.predict(np.where(np.arange(xt.shape[1]) == 0, np.nan, xt))


def test_kfold_partitions_and_keeps_groups_together():
    folds = emulators.kfold(23, 5, seed=1)
    assert sorted(np.concatenate(folds)) == list(range(23))
    groups = np.repeat(np.arange(6), 4)
    gfolds = emulators.kfold(24, 3, groups=groups, seed=1)
    assert sorted(np.concatenate(gfolds)) == list(range(24))
    for fold in gfolds:
        held = set(groups[fold])
        assert not held & set(groups[np.setdiff1d(np.arange(24), fold)])
    with pytest.raises(ValueError, match="number of groups"):
        emulators.kfold(24, 7, groups=groups)


def test_cross_validate_scores_per_fold_and_per_batch(data):
    x, y, _, _ = data
    table = emulators.cross_validate(lambda: emulators.GPEmulator(), x, y,
                                     n_splits=4)
    assert list(table.columns) == ["fold", "r2", "rmse", "coverage", "n_test"]
    assert len(table) == 4 and table.r2.min() > 0.9 and table.n_test.sum() == len(y)
    batched = emulators.cross_validate(lambda: emulators.RandomForestEmulator(),
                                       np.stack([x, x]), np.stack([y, y]), n_splits=2)
    assert len(batched) == 4 and set(batched.batch) == {0, 1}


def test_bad_input_and_unfitted_use_are_explained(data):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="y must have shape"):
        emulators.GPEmulator().fit(x, y[:-1])
    with pytest.raises(ValueError, match="finite"):
        emulators.GPEmulator().fit(x, np.where(np.arange(len(y)) == 3, np.nan, y))
    with pytest.raises(RuntimeError, match="not fitted"):
        emulators.GPEmulator().predict(x)
    with pytest.raises(ValueError, match="mean must be"):
        emulators.GPEmulator(mean="linear")
    gp = emulators.GPEmulator().fit(x, y)
    with pytest.raises(ValueError, match="X must have shape"):
        gp.predict(np.ones((4, 5)))


def test_training_data_layout_from_an_ensemble():
    import pandas as pd
    import xarray as xr

    from emucal.parameters import ParameterSpace

    space = ParameterSpace.tang2025().subset(["fff", "FMAX"])
    params = np.array([[0.5, 0.3], [2.0, 0.8], [0.01, 0.5]])
    skill = np.arange(6.0).reshape(3, 2)  # member x basin
    ens = xr.Dataset({"norm_kge": (("member", "basin", "period"), skill[..., None]),
                      "params": (("member", "param"), params)},
                     coords={"member": [0, 1, 2], "basin": ["a", "b"], "param": space.names,
                             "period": ["calibration"]})
    x, y = emulators.sse_data(ens, space)
    assert x.shape == (2, 3, 2) and y.shape == (2, 3)
    np.testing.assert_allclose(x[1], space.to_unit(params))
    np.testing.assert_array_equal(y[1], skill[:, 1])
    attrs = pd.DataFrame({"aridity": [0.5, 2.0]}, index=["a", "b"])
    xl, yl, basins = emulators.lse_data(ens, attrs, space, attributes=("aridity",))
    assert xl.shape == (6, 3) and list(basins) == ["a", "a", "a", "b", "b", "b"]
    np.testing.assert_array_equal(xl[3:, 2], 2.0)
    np.testing.assert_array_equal(yl, y.ravel())
    with pytest.raises(KeyError, match="LSE_ATTRIBUTES"):
        emulators.lse_data(ens, attrs, space, attributes=("porosity",))
    # a run without a score counts as its basin's worst (normKGE -1); a basin without any is refused
    ens["norm_kge"][1, 0, 0] = np.nan
    _, y = emulators.sse_data(ens, space)
    assert y[0, 1] == -1.0 and np.isfinite(y).all()
    ens["norm_kge"][:, 1, 0] = np.nan
    with pytest.raises(ValueError, match="every run of basins"):
        emulators.sse_data(ens, space)


def test_grouped_batch_is_the_groups_fitted_alone_and_round_trips(data, tmp_path):
    x, y, xt, _ = data
    scales = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
    xb, yb = np.stack([x] * 5), scales[:, None] * y
    grouped = emulators.GPEmulator(group_size=2).fit(xb, yb)
    assert len(grouped.groups_) == 3 and grouped.lengthscales_.shape == (5, 3)
    mean, sd = grouped.predict(np.stack([xt] * 5), return_std=True)
    # the last group (one member) is exactly what fitting that member alone gives
    alone = emulators.GPEmulator(group_size=None).fit(xb[4:], yb[4:])
    np.testing.assert_array_equal(mean[4:], alone.predict(np.stack([xt])))
    # and the whole batch in one optimisation finds the same GPs, to optimiser accuracy
    whole = emulators.GPEmulator(group_size=None).fit(xb, yb)
    assert not hasattr(whole, "groups_")
    difference = np.abs(whole.predict(np.stack([xt] * 5)) - mean).max(axis=1)
    assert np.all(difference < 0.05 * np.abs(scales))
    loaded = emulators.load(grouped.save(tmp_path / "grouped.pt"))
    m2, s2 = loaded.predict(np.stack([xt] * 5), return_std=True)
    np.testing.assert_allclose(m2, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s2, sd, rtol=1e-10, atol=1e-12)


def test_saved_emulators_load_without_unpickling_code(data, tmp_path):
    import pickle

    import torch

    x, y, _, _ = data
    path = emulators.GPEmulator(seed=3, group_size=1).fit(
        np.stack([x, x]), np.stack([y, y])).save(tmp_path / "gp.pt")
    torch.load(path, weights_only=True)  # tensors and plain types only

    class Payload:  # what a crafted file could carry: a call made while unpickling
        def __reduce__(self):
            return (print, ("this ran while loading",))

    crafted = tmp_path / "crafted.pt"
    torch.save({"class": "GPEmulator", "params": Payload()}, crafted, pickle_module=pickle)
    with pytest.raises(ValueError, match="not an emucal emulator file"):
        emulators.load(crafted)


def test_predicting_outside_the_cube_warns_and_nan_is_refused(data):
    x, y, xt, _ = data
    gp = emulators.GPEmulator(seed=0).fit(x, y)
    with pytest.warns(UserWarning, match="outside the emulator's bounds"):
        gp.predict(xt + 2.0)
    bad = xt.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gp.predict(bad)


def test_emulators_follow_scikit_learn_conventions():
    import inspect

    from sklearn.base import clone

    for cls in (emulators.GPEmulator, emulators.SparseGPEmulator, emulators.RandomForestEmulator):
        params = cls().get_params()
        # every __init__ argument is a parameter (none silently dropped), and clone rebuilds it
        assert set(params) == set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert clone(cls()).get_params() == params
    gp = emulators.GPEmulator(max_iter=7, group_size=2)
    assert clone(gp).get_params()["max_iter"] == 7
    assert gp.set_params(max_iter=9).max_iter == 9
    rf = emulators.RandomForestEmulator(max_depth=3, seed=1)
    x = np.random.default_rng(0).uniform(size=(20, 2))
    forest = rf.fit(x, x.sum(axis=1)).forests_[0]
    assert forest.max_depth == 3 and forest.random_state == 1
    assert forest.n_jobs == 1  # predictions summed in one thread: the same bits every time


def test_last_input_mean_learns_how_much_to_trust_a_coarse_emulator(tmp_path):
    """f = a g + delta: the fitted a is the true scale when g is informative, near 0 when not."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 60, 3))
    g = np.sin(4 * x[..., 0]) + x[..., 1]  # a coarse emulator's prediction
    y = np.stack([2.0 * g[0] + 0.2 * x[0, :, 2], np.cos(3 * x[1, :, 2])])  # basin 1 ignores g
    noise = rng.uniform(-1, 1, size=g.shape)
    inputs = np.concatenate([x, np.stack([g[0], noise[1]])[..., None]], axis=-1)
    bounds = dict(lower=[0, 0, 0, -3], upper=[1, 1, 1, 3])
    em = emulators.GPEmulator(mean="last_input", **bounds).fit(inputs, y)
    assert abs(em.mean_weight_[0] - 2.0) < 0.1
    assert abs(em.mean_weight_[1]) < 0.2
    assert em.lengthscales_.shape == (2, 3)  # the kernel ignores the last input
    loaded = emulators.load(em.save(tmp_path / "koh.pt"))
    np.testing.assert_allclose(loaded.predict(inputs), em.predict(inputs), rtol=1e-10, atol=1e-12)
    # with the coarse emulator as the mean, fewer runs fit basin 0 better than a plain GP
    test_x = rng.uniform(size=(200, 3))
    test_g = np.sin(4 * test_x[:, 0]) + test_x[:, 1]
    truth = 2.0 * test_g + 0.2 * test_x[:, 2]
    few = slice(0, 12)
    koh = emulators.GPEmulator(mean="last_input", **bounds).fit(inputs[0, few], y[0, few])
    plain = emulators.GPEmulator().fit(x[0, few], y[0, few])
    err_koh = metrics.rmse(truth, koh.predict(np.column_stack([test_x, test_g])))
    err_plain = metrics.rmse(truth, plain.predict(test_x))
    assert err_koh < 0.5 * err_plain
    with pytest.raises(ValueError, match="mean must be"):
        emulators.GPEmulator(mean="linear")


def test_the_mean_weight_is_read_in_output_units_and_survives_save_and_load(tmp_path):
    """With many runs of an informative g (y = 1.5 g + ...), the fitted a is 1.5 in y's units."""
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(2, 80, 2))
    g = np.sin(4 * x[..., 0])
    y = 1.5 * g + 0.1 * x[..., 1]
    inputs = np.concatenate([x, g[..., None]], axis=-1)
    bounds = dict(lower=[0, 0, -1], upper=[1, 1, 1])
    informed = emulators.GPEmulator(mean="last_input", **bounds).fit(inputs, y)
    assert np.all(np.abs(informed.mean_weight_ - 1.5) < 0.15)
    loaded = emulators.load(informed.save(tmp_path / "prior.pt"))
    np.testing.assert_allclose(loaded.predict(inputs), informed.predict(inputs), rtol=1e-10, atol=1e-12)


def test_saving_to_a_folder_and_predicting_one_bare_point_are_named(data, tmp_path):
    x, y, xt, _ = data
    em = emulators.GPEmulator(seed=0).fit(x, y)
    with pytest.raises(IsADirectoryError, match="is a folder; save to a file in it"):
        em.save(tmp_path)
    with pytest.raises(ValueError, match=r"X must have shape \('m', 3\); got \(3,\)"):
        em.predict(xt[0])
    assert em.predict(xt[:1]).shape == (1,)


def test_a_fit_does_not_depend_on_torchs_default_dtype(data, tmp_path):
    """GPyTorch builds priors, bounds and starting values in torch's default dtype: a float64
    fit (and a loaded one) must be the same whatever another program set it to."""
    x, y, xt, _ = data
    rng = np.random.default_rng(3)
    xs = rng.uniform(size=(400, 3))
    sparse_settings = dict(n_inducing=16, seed=0, max_epochs=5)
    fits = {}
    for dtype in (torch.float32, torch.float64):
        torch.set_default_dtype(dtype)
        try:
            plain = emulators.GPEmulator(seed=0).fit(x, y)
            prior = emulators.GPEmulator(seed=0, mean="last_input").fit(
                np.c_[x, 0.8 * y], y + 0.1 * x[:, 1])
            sparse = emulators.SparseGPEmulator(**sparse_settings).fit(xs, _function(xs))
            loaded = emulators.load(plain.save(tmp_path / f"{dtype}.pt"))
            fits[dtype] = [plain.predict(xt, return_std=True), prior.predict(np.c_[xt, xt[:, 0]]),
                           sparse.predict(xt, return_std=True), loaded.predict(xt, return_std=True)]
            assert torch.get_default_dtype() == dtype  # the fit put the caller's setting back
        finally:
            torch.set_default_dtype(torch.float32)
    for a, b in zip(fits[torch.float32], fits[torch.float64]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(RuntimeError), emulators.default_dtype(torch.float64):
        raise RuntimeError("an error inside the block")
    assert torch.get_default_dtype() == torch.float32
