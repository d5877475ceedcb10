"""Size PyTorch's and numba's thread pools to the CPUs this process may really use.

Binder and container hosts often show many cores but grant one or two through
a cgroup CPU quota. PyTorch and numba start one thread per *visible* core,
and many threads sharing a quota of two CPUs run much slower than two. The
emulators (before fitting or predicting) and the teaching model (before it
runs) call :func:`size_thread_pools`, which reads the quota once and sets
both pools to it.

Environment variables, strongest first:

``EMUCAL_THREADS``
    The number of threads for both PyTorch and numba, whatever the quota.
``OMP_NUM_THREADS`` / ``NUMBA_NUM_THREADS``
    Set explicitly, they mean the user already chose: PyTorch (which reads
    ``OMP_NUM_THREADS`` itself) or numba is then left as it is.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

__all__ = ["THREADS_VARIABLE", "ThreadPools", "size_thread_pools", "usable_cpus"]

#: Environment variable that fixes the number of threads emucal gives PyTorch and numba.
THREADS_VARIABLE = "EMUCAL_THREADS"

_log = logging.getLogger("emucal")
_lock = threading.Lock()
_choice: tuple[int, str, int, bool] | None = None  # (threads, reason, generation, explicit)
_generations = itertools.count(1)  # each new choice gets a new number, never reused
_torch_generation = 0  # the choice last applied to torch (process-wide)
_numba_done = threading.local()  # numba's thread count is per calling thread


class ThreadPools(NamedTuple):
    """What :func:`size_thread_pools` chose, and what each library now uses."""

    threads: int
    """The number of threads chosen."""
    reason: str
    """Where the number came from."""
    torch: int | None
    """PyTorch's intra-op threads after the call; None if torch is not imported."""
    numba: int | None
    """numba's threads for the calling thread; None if numba is not imported."""

    def __str__(self) -> str:
        used = ", ".join(f"{name} {'not loaded' if n is None else n}"
                         for name, n in (("torch", self.torch), ("numba", self.numba)))
        return f"emucal threads: {self.threads} ({self.reason}); {used}"


def _cgroup_dirs(base: Path, relative: str) -> list[Path]:
    """``base/relative`` and each of its parents down to ``base``."""
    here = base / relative.strip("/")
    return [here, *here.parents][: len(here.relative_to(base).parts) + 1]


def _quota(path: Path, period_path: Path | None = None) -> int | None:
    """CPUs granted by a cgroup v2 ``cpu.max`` or a v1 ``cpu.cfs_quota_us`` file; None: no limit."""
    try:
        if period_path is None:  # v2: "max 100000" or "200000 100000"
            quota, period = path.read_text().split()[:2]
        else:  # v1: quota -1 means no limit
            quota, period = path.read_text().strip(), period_path.read_text().strip()
        if quota == "max" or int(quota) <= 0:
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):  # absent or unreadable: no limit known
        return None


def _measure(cgroup_root: Path, proc_cgroup: Path) -> tuple[int, str]:
    if hasattr(os, "sched_getaffinity"):
        visible = len(os.sched_getaffinity(0))
        how = f"{visible} CPUs in this process's affinity"
    else:  # macOS, Windows
        visible = os.cpu_count() or 1
        how = f"{visible} CPUs"
    own: dict[str, str] = {}  # controller -> this process's cgroup path, from /proc/self/cgroup
    try:
        for line in proc_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in (controllers.split(",") if controllers else ["v2"]):
                own[controller] = path
    except (OSError, ValueError):
        pass
    quotas = []
    for folder in _cgroup_dirs(cgroup_root, own.get("v2", "/")):
        quotas.append((_quota(folder / "cpu.max"), folder / "cpu.max"))
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for folder in _cgroup_dirs(cgroup_root / mount, own.get("cpu", "/")):
            quotas.append((_quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"),
                           folder / "cpu.cfs_quota_us"))
    limited = [(n, path) for n, path in quotas if n is not None]
    if limited:
        n, path = min(limited, key=lambda item: item[0])
        if n < visible:
            return n, f"cgroup CPU quota, {path}; {how}"
    return visible, f"{how}, no lower cgroup CPU quota"


def usable_cpus(cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> int:
    """Return how many CPUs this process can keep busy: affinity and cgroup quota.

    The smallest of the CPUs in the process's affinity mask
    (``os.sched_getaffinity``), the cgroup v2 quota (``cpu.max``: ``"max
    100000"`` is no limit, ``"200000 100000"`` is 2 CPUs) and the cgroup v1
    quota (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; ``-1`` is no limit),
    in the cgroup root and in this process's own cgroup and its parents. A
    fractional quota is rounded up (1.5 CPUs gives 2).

    Parameters
    ----------
    cgroup_root
        Where the cgroup file system is mounted.
    proc_cgroup
        The file naming this process's cgroups.

    Returns
    -------
    int
        At least 1.
    """
    return _measure(Path(cgroup_root), Path(proc_cgroup))[0]


def _positive(text: str, name: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name}={text!r} is not a positive whole number of threads; set it to, "
                         f"for example, 2, or unset it to use the CPU quota.")
    return n


def size_thread_pools(threads: int | None = None, *,
                      cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                      proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> ThreadPools:
    """Set PyTorch's and numba's thread counts to the CPUs this process may use.

    emucal calls this before it fits or runs an emulator and before the
    teaching model runs, so you rarely need to. The number is chosen once per
    process: ``threads`` if given, else ``EMUCAL_THREADS``, else
    :func:`usable_cpus`. It is then applied once to PyTorch (if imported) and
    once per calling thread to numba (if imported; numba's count is per thread
    and at most its launch count ``NUMBA_NUM_THREADS``). Later calls change
    nothing, so a ``torch.set_num_threads`` of your own stays, unless you pass
    ``threads`` again. Without ``threads`` or ``EMUCAL_THREADS``, a library
    whose own variable is set (``OMP_NUM_THREADS`` for PyTorch,
    ``NUMBA_NUM_THREADS`` for numba) is left alone: that is a choice already
    made.

    Parameters
    ----------
    threads
        Threads for both libraries, overriding everything else.
    cgroup_root, proc_cgroup
        Where to read the cgroup quota (see :func:`usable_cpus`); for tests.

    Returns
    -------
    ThreadPools
        The number, why, and each library's thread count after the call; its
        ``str`` is one line to print. The choice is also logged (logger
        ``"emucal"``, level INFO) when it is made or applied.

    Raises
    ------
    ValueError
        If ``threads`` or ``EMUCAL_THREADS`` is not a positive whole number.
    """
    global _choice, _torch_generation
    with _lock:
        if threads is not None:
            _choice = (_positive(str(threads), "threads"), "threads= given", next(_generations),
                       True)
        elif _choice is None:
            value = os.environ.get(THREADS_VARIABLE, "").strip()
            if value:
                _choice = (_positive(value, THREADS_VARIABLE), f"{THREADS_VARIABLE}={value}",
                           next(_generations), True)
            else:
                _choice = (*_measure(Path(cgroup_root), Path(proc_cgroup)), next(_generations),
                           False)
        n, reason, generation, explicit = _choice
        changed, kept = [], []
        for name, variable in (("torch", "OMP_NUM_THREADS"), ("numba", "NUMBA_NUM_THREADS")):
            module = sys.modules.get(name)
            if module is None:
                continue
            if not explicit and variable in os.environ:
                kept.append(f"{name} keeps {variable}={os.environ[variable]}")
                continue
            if name == "torch" and _torch_generation != generation:
                _torch_generation = generation
                module.set_num_threads(n)
                changed.append(name)
            elif name == "numba" and getattr(_numba_done, "generation", 0) != generation:
                _numba_done.generation = generation
                module.set_num_threads(min(n, module.config.NUMBA_NUM_THREADS))
                changed.append(name)
    torch, numba = sys.modules.get("torch"), sys.modules.get("numba")
    result = ThreadPools(n, "; ".join([reason, *kept]),
                         None if torch is None else torch.get_num_threads(),
                         None if numba is None else numba.get_num_threads())
    if changed:
        _log.info("%s (set: %s)", result, ", ".join(changed))
    return result


def _forget() -> None:
    """Forget the choice, as in a new process (for tests)."""
    global _choice
    with _lock:
        _choice = None
