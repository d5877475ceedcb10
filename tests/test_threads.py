"""emucal.size_thread_pools: the CPU quota through joblib, threadpoolctl, overrides, idempotence."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy  # noqa: F401  (loads OpenBLAS, the BLAS pool threadpoolctl limits)
import pytest
import threadpoolctl

import emucal
from emucal import _threads

CGROUP = "/sys/fs/cgroup"


class FakePool:
    """Stands in for torch or numba: records set_num_threads calls."""

    def __init__(self, launch: int = 16):
        self.n = launch
        self.calls: list[int] = []
        self.config = SimpleNamespace(NUMBA_NUM_THREADS=launch)

    def set_num_threads(self, n: int) -> None:
        self.calls.append(n)
        self.n = n

    def get_num_threads(self) -> int:
        return self.n


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}


@pytest.fixture
def pools(monkeypatch, tmp_path):
    """16 visible CPUs, the cgroup files joblib reads moved to tmp_path, fake torch and numba.

    joblib's loky opens /sys/fs/cgroup/cpu.max (v2) or cpu/cpu.cfs_quota_us and
    cpu/cpu.cfs_period_us (v1); those paths are redirected here, so the tests
    run the real joblib.cpu_count on quotas they write.
    """
    from joblib.externals.loky.backend import context

    for variable in ("EMUCAL_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    exists, real_open = os.path.exists, open

    def moved(path):
        text = os.fspath(path)
        return tmp_path / os.path.relpath(text, CGROUP) if text.startswith(CGROUP + "/") else path

    monkeypatch.setattr(os.path, "exists", lambda path: exists(moved(path)))
    monkeypatch.setattr(context, "open", lambda path, *a, **k: real_open(moved(path), *a, **k),
                        raising=False)
    torch, numba = FakePool(), FakePool(launch=8)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "numba", numba)
    _threads._applied.clear()
    with threadpoolctl.threadpool_limits(limits=None):  # puts the BLAS/OpenMP limits back after
        threadpoolctl.threadpool_limits(5)  # a BLAS pool of 5 threads, whatever this machine has
        yield SimpleNamespace(torch=torch, numba=numba, cgroup=tmp_path)
    _threads._applied.clear()  # later tests measure the real machine again


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, expected", [
    ({}, 16),  # no cgroup files: the affinity mask
    ({"cpu.max": "max 100000\n"}, 16),
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000"}, 2),  # 1.5 CPUs rounds up
    ({"cpu.max": "50000 100000"}, 1),
    ({"cpu.max": "6400000 100000"}, 16),  # a quota above the CPUs there are
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "250000", "cpu/cpu.cfs_period_us": "100000"}, 3),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, 16),
])
def test_usable_cpus_follows_the_cgroup_quota_through_joblib(pools, files, expected):
    _write(pools.cgroup, files)
    assert emucal.usable_cpus() == expected


def test_usable_cpus_takes_a_smaller_affinity_mask_or_loky_max_cpu_count(pools, monkeypatch):
    _write(pools.cgroup, {"cpu.max": "400000 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert emucal.usable_cpus() == 3
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "2")
    assert emucal.usable_cpus() == 2


def test_size_thread_pools_sets_torch_numba_and_blas_to_the_quota(pools):
    _write(pools.cgroup, {"cpu.max": "100000 100000"})
    assert _blas_threads() == {5}
    result = emucal.size_thread_pools()
    assert (result.threads, result.torch, result.numba) == (1, 1, 1)
    assert pools.torch.calls == [1] and pools.numba.calls == [1]
    assert _blas_threads() == {1}
    assert result.reason == "joblib.cpu_count() of 16 CPUs"
    assert str(result) == "emucal threads: 1 (joblib.cpu_count() of 16 CPUs); torch 1, numba 1"


def test_size_thread_pools_is_idempotent_and_keeps_a_users_own_setting(pools):
    _write(pools.cgroup, {"cpu.max": "200000 100000"})
    first = emucal.size_thread_pools()
    pools.torch.set_num_threads(5)  # the user's own choice, after emucal's
    _write(pools.cgroup, {"cpu.max": "100000 100000"})  # not read again
    again = emucal.size_thread_pools()
    assert pools.torch.calls == [2, 5] and pools.numba.calls == [2]
    assert (again.threads, again.reason, again.torch) == (first.threads, first.reason, 5)
    # threads= decides again and applies it to every pool
    assert emucal.size_thread_pools(1).reason == "threads=1"
    assert pools.torch.calls == [2, 5, 1] and pools.numba.calls == [2, 1]
    assert _blas_threads() == {1}


def test_size_thread_pools_sets_numba_once_in_each_calling_thread(pools):
    emucal.size_thread_pools()
    worker = threading.Thread(target=emucal.size_thread_pools)
    worker.start()
    worker.join()
    assert pools.torch.calls == [16]  # torch's pool is process-wide
    assert pools.numba.calls == [8, 8]  # numba's count is per thread, at most its launch count


def test_emucal_threads_overrides_quota_and_omp_num_threads(pools, monkeypatch):
    _write(pools.cgroup, {"cpu.max": "200000 100000"})
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    monkeypatch.setenv("EMUCAL_THREADS", "1")
    result = emucal.size_thread_pools()
    assert (result.threads, result.reason) == (1, "EMUCAL_THREADS=1")
    assert pools.torch.calls == [1] and pools.numba.calls == [1] and _blas_threads() == {1}


@pytest.mark.parametrize("variable, left_alone", [
    ("OMP_NUM_THREADS", ["torch", "BLAS/OpenMP"]),
    ("OPENBLAS_NUM_THREADS", ["BLAS/OpenMP"]),
    ("NUMBA_NUM_THREADS", ["numba"]),
])
def test_a_pools_own_variable_leaves_it_alone(pools, monkeypatch, variable, left_alone):
    _write(pools.cgroup, {"cpu.max": "100000 100000"})
    monkeypatch.setenv(variable, "6")
    result = emucal.size_thread_pools()
    assert result.reason.split("; ")[1:] == [f"{pool} keeps {variable}=6" for pool in left_alone]
    assert pools.torch.calls == ([] if "torch" in left_alone else [1])
    assert pools.numba.calls == ([] if "numba" in left_alone else [1])
    assert _blas_threads() == ({5} if "BLAS/OpenMP" in left_alone else {1})


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_emucal_threads_that_is_not_a_count_says_what_to_set(pools, monkeypatch, value):
    monkeypatch.setenv("EMUCAL_THREADS", value)
    with pytest.raises(ValueError, match=rf"EMUCAL_THREADS='{value}' is not a positive whole "
                                         r"number.*unset it"):
        emucal.size_thread_pools()
    with pytest.raises(ValueError, match="threads='0'"):
        emucal.size_thread_pools(0)
    assert pools.torch.calls == [] and "choice" not in _threads._applied


def test_without_torch_or_numba_nothing_is_imported(pools, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "numba")
    result = emucal.size_thread_pools()
    assert (result.torch, result.numba) == (None, None)
    assert "torch" not in sys.modules and "numba" not in sys.modules
    assert str(result).endswith("; torch not loaded, numba not loaded")
