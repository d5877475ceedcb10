"""emucal.size_thread_pools: CPU quota from fake cgroup files, overrides, idempotence."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

import emucal
from emucal import _threads


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


@pytest.fixture
def pools(monkeypatch, tmp_path):
    """16 CPUs in the affinity mask, no cgroup files, fake torch and numba, nothing chosen yet."""
    for variable in ("EMUCAL_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    torch, numba = FakePool(), FakePool(launch=8)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "numba", numba)
    _threads._forget()
    yield SimpleNamespace(torch=torch, numba=numba,
                          where={"cgroup_root": tmp_path / "cgroup",
                                 "proc_cgroup": tmp_path / "proc_self_cgroup"})
    _threads._forget()  # later tests measure the real machine again


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, proc, expected", [
    ({}, None, 16),  # no cgroup files: the affinity mask
    ({"cpu.max": "max 100000\n"}, "0::/\n", 16),
    ({"cpu.max": "200000 100000\n"}, "0::/\n", 2),
    ({"cpu.max": "150000 100000"}, None, 2),  # 1.5 CPUs rounds up
    ({"cpu.max": "50000 100000"}, None, 1),
    ({"cpu.max": "6400000 100000"}, None, 16),  # a quota above the affinity mask
    # cgroup v2, the process in a nested cgroup whose parent holds the quota
    ({"kubepods/pod1/cpu.max": "max 100000", "kubepods/cpu.max": "300000 100000"},
     "0::/kubepods/pod1\n", 3),
    # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
     "4:cpu,cpuacct:/\n3:memory:/\n", 1),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, "2:cpu:/\n", 16),
    ({"cpu/docker/abc/cpu.cfs_quota_us": "250000", "cpu/docker/abc/cpu.cfs_period_us": "100000"},
     "2:cpu,cpuacct:/docker/abc\n", 3),
    ({"cpu.max": "not a quota"}, None, 16),  # unreadable: no limit known
])
def test_usable_cpus_reads_cgroup_v1_and_v2_quotas(pools, files, proc, expected):
    root = pools.where["cgroup_root"]
    root.mkdir()
    _write(root, files)
    if proc is not None:
        pools.where["proc_cgroup"].write_text(proc)
    assert emucal.usable_cpus(**pools.where) == expected


def test_usable_cpus_takes_a_smaller_affinity_mask(pools, monkeypatch):
    _write(pools.where["cgroup_root"], {"cpu.max": "400000 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert emucal.usable_cpus(**pools.where) == 2


def test_size_thread_pools_sets_both_libraries_to_the_quota(pools):
    _write(pools.where["cgroup_root"], {"cpu.max": "200000 100000"})
    result = emucal.size_thread_pools(**pools.where)
    assert (result.threads, result.torch, result.numba) == (2, 2, 2)
    assert pools.torch.calls == [2] and pools.numba.calls == [2]
    assert "cgroup CPU quota" in result.reason and "16 CPUs" in result.reason
    assert str(result).startswith("emucal threads: 2 (cgroup CPU quota")


def test_size_thread_pools_is_idempotent_and_keeps_a_users_own_setting(pools):
    _write(pools.where["cgroup_root"], {"cpu.max": "200000 100000"})
    first = emucal.size_thread_pools(**pools.where)
    pools.torch.set_num_threads(5)  # the user's own choice, after emucal's
    _write(pools.where["cgroup_root"], {"cpu.max": "100000 100000"})  # not read again
    again = emucal.size_thread_pools(**pools.where)
    assert pools.torch.calls == [2, 5] and pools.numba.calls == [2]
    assert (again.threads, again.reason, again.torch) == (first.threads, first.reason, 5)
    # threads= decides again and applies it
    assert emucal.size_thread_pools(3).threads == 3
    assert pools.torch.calls == [2, 5, 3] and pools.numba.calls == [2, 3]


def test_size_thread_pools_sets_numba_once_in_each_calling_thread(pools):
    emucal.size_thread_pools(**pools.where)
    worker = threading.Thread(target=emucal.size_thread_pools)
    worker.start()
    worker.join()
    assert pools.torch.calls == [16]  # torch's pool is process-wide
    assert pools.numba.calls == [8, 8]  # numba's count is per thread, at most its launch count


def test_emucal_threads_overrides_quota_and_omp_num_threads(pools, monkeypatch):
    _write(pools.where["cgroup_root"], {"cpu.max": "200000 100000"})
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    monkeypatch.setenv("EMUCAL_THREADS", "4")
    result = emucal.size_thread_pools(**pools.where)
    assert (result.threads, result.reason) == (4, "EMUCAL_THREADS=4")
    assert pools.torch.calls == [4] and pools.numba.calls == [4]


def test_explicit_omp_and_numba_variables_are_left_alone(pools, monkeypatch):
    _write(pools.where["cgroup_root"], {"cpu.max": "200000 100000"})
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    result = emucal.size_thread_pools(**pools.where)
    assert pools.torch.calls == [] and pools.numba.calls == [2]
    assert "torch keeps OMP_NUM_THREADS=6" in result.reason
    _threads._forget()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert "numba keeps NUMBA_NUM_THREADS=1" in str(emucal.size_thread_pools(**pools.where))
    assert pools.torch.calls == [2] and pools.numba.calls == [2]


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_emucal_threads_that_is_not_a_count_says_what_to_set(pools, monkeypatch, value):
    monkeypatch.setenv("EMUCAL_THREADS", value)
    with pytest.raises(ValueError, match=rf"EMUCAL_THREADS='{value}' is not a positive whole "
                                         r"number.*unset it"):
        emucal.size_thread_pools(**pools.where)
    with pytest.raises(ValueError, match="threads='0'"):
        emucal.size_thread_pools(0)


def test_without_torch_or_numba_nothing_is_imported(pools, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "numba")
    result = emucal.size_thread_pools(**pools.where)
    assert (result.torch, result.numba) == (None, None)
    assert "torch" not in sys.modules and "numba" not in sys.modules
    assert "torch not loaded, numba not loaded" in str(result)
