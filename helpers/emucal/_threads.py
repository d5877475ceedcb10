"""Thread pools sized to the CPUs a container really grants (Binder shows many, grants two)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import NamedTuple

__all__ = ["THREADS_VARIABLE", "ThreadPools", "size_thread_pools", "usable_cpus"]

#: Environment variable that fixes the number of threads emucal gives every pool.
THREADS_VARIABLE = "EMUCAL_THREADS"
# each pool, and the variables that say its user already chose
_POOLS = {"torch": ("OMP_NUM_THREADS",), "numba": ("NUMBA_NUM_THREADS",),
          "BLAS/OpenMP": ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
_lock = threading.Lock()
_applied: dict[str, tuple] = {}  # "choice", and the choice each process-wide pool got
_numba = threading.local()  # numba's count is per calling thread


class ThreadPools(NamedTuple):
    """The number chosen, why, and PyTorch's and numba's threads after the call (None: not imported)."""

    threads: int
    reason: str
    torch: int | None
    numba: int | None

    def __str__(self) -> str:
        used = [f"{k} {'not loaded' if v is None else v}" for k, v in self._asdict().items()][2:]
        return f"emucal threads: {self.threads} ({self.reason}); {', '.join(used)}"


def usable_cpus() -> int:
    """Return ``joblib.cpu_count()``: the fewest of the CPUs, the affinity mask and the cgroup quota.

    joblib reads the quota at ``/sys/fs/cgroup`` (v2 ``cpu.max``, v1
    ``cpu/cpu.cfs_quota_us``; rounded up) and honours ``LOKY_MAX_CPU_COUNT``.
    A quota on a nested cgroup not mounted there is not seen: set ``EMUCAL_THREADS``.
    """
    from joblib import cpu_count  # joblib takes a quarter of a second to import
    return cpu_count()


def size_thread_pools(threads: int | None = None) -> ThreadPools:
    """Set PyTorch's, numba's and the BLAS/OpenMP libraries' threads to the CPUs this process may use.

    Chosen once per process (``threads``, else ``EMUCAL_THREADS``, else
    :func:`usable_cpus`); applied once to PyTorch and to the BLAS/OpenMP
    libraries loaded (threadpoolctl), and once per calling thread to numba (at
    most its ``NUMBA_NUM_THREADS``). Without ``threads`` or ``EMUCAL_THREADS``,
    a pool whose own variable is set keeps it: ``OMP_NUM_THREADS`` (PyTorch,
    BLAS/OpenMP), ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS``.

    Parameters
    ----------
    threads
        Threads for every pool, overriding everything else.

    Returns
    -------
    ThreadPools
        Its ``str`` is one line to print; changes are logged (logger ``"emucal"``, INFO).

    Raises
    ------
    ValueError
        If ``threads`` or ``EMUCAL_THREADS`` is not a positive whole number.
    """
    with _lock:
        if threads is not None or "choice" not in _applied:
            name, text = ("threads", str(threads)) if threads is not None else (
                THREADS_VARIABLE, os.environ.get(THREADS_VARIABLE, "").strip())
            if text and (not text.isdecimal() or int(text) < 1):
                raise ValueError(f"{name}={text!r} is not a positive whole number of threads; set "
                                 "it to, for example, 2, or unset it to use the CPU quota.")
            _applied["choice"] = (int(text), f"{name}={text}", True) if text else (
                usable_cpus(), f"joblib.cpu_count() of {os.cpu_count()} CPUs", False)
        choice = n, reason, explicit = _applied["choice"]
        changed, kept = [], []
        for pool, variables in _POOLS.items():
            module, done = sys.modules.get(pool), vars(_numba) if pool == "numba" else _applied
            if (module is None and pool != "BLAS/OpenMP") or done.get(pool) is choice:
                continue
            own = [v for v in variables if v in os.environ]
            if own and not explicit:
                kept.append(f"{pool} keeps {own[0]}={os.environ[own[0]]}")
                continue
            done[pool] = choice
            changed.append(pool)
            if pool == "BLAS/OpenMP":
                from threadpoolctl import threadpool_limits
                threadpool_limits(n)  # stays set: not used as a context manager
            else:
                module.set_num_threads(min(n, module.config.NUMBA_NUM_THREADS)
                                       if pool == "numba" else n)
    torch, numba = sys.modules.get("torch"), sys.modules.get("numba")
    result = ThreadPools(n, "; ".join([reason, *kept]), torch and torch.get_num_threads(),
                         numba and numba.get_num_threads())
    if changed:
        logging.getLogger("emucal").info("%s (set: %s)", result, ", ".join(changed))
    return result
