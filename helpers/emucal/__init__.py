"""emucal: the helper package of the tutorial book on emulator-based calibration.

One module per step of the workflow (see the book's API page):

- :mod:`emucal.data`: the pooch registry, the cache and the mirror, :func:`~emucal.data.fetch`.
- :mod:`emucal.camels`: CAMELS-US attributes, forcing and streamflow.
- :mod:`emucal.parameters`: the CTSM parameters to calibrate (:class:`~emucal.parameters.ParameterSpace`).
- :mod:`emucal.sampling`: Latin hypercube, Sobol' and random designs and their diagnostics.
- :mod:`emucal.ctsm`: a real CTSM ensemble: :mod:`~emucal.ctsm.members` writes paramfiles, namelists and
  CIME scripts, :mod:`~emucal.ctsm.history` reads the history files back.
- :mod:`emucal.model`: the teaching model, CTSM's hydrology in a fast lumped form.
- :mod:`emucal.ensemble`: running samples x basins in chunks, resumable, locally or on dask;
  the :class:`~emucal.ensemble.Runner` a calibration calls.
- :mod:`emucal.emulators`: GPyTorch emulators (per-basin batch GP, large-sample GP) and baselines.
- :mod:`emucal.calibrate`: the calibration loop and its proposal rules, DDS, the posterior.
- :mod:`emucal.regionalise`: large-sample emulators in the loop, parameters for ungauged basins.
- :mod:`emucal.sensitivity`: Sobol' indices of the model or of an emulator (SALib).
- :mod:`emucal.explorer`: the interactive sensitivity explorer (ipywidgets; Voila).
- :mod:`emucal.metrics`: KGE, KGE', normKGE, NSE and water-year windows.
- :mod:`emucal.diagnostics`: signatures (CAMELS-US definitions), seasonal cycle, structural-error diagnostics.
- :mod:`emucal.plotting`: maps and hydrographs shared by chapters.
- :mod:`emucal.workshop`: a mirror of the data, Natural Earth offline, handouts without solutions
  (the ``emucal`` command, :mod:`emucal.cli`, calls it).

:func:`size_thread_pools` sizes PyTorch's, numba's and the BLAS/OpenMP thread pools to the CPUs
the process may use (cgroup quota, affinity, ``EMUCAL_THREADS``); the emulators
and the model call it before heavy work.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from ._threads import THREADS_VARIABLE, ThreadPools, size_thread_pools, usable_cpus

try:
    __version__ = version("emucal")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

_MODULES = ("calibrate", "camels", "ctsm", "data", "diagnostics", "emulators", "ensemble", "explorer",
            "metrics", "model", "parameters", "plotting", "regionalise", "sampling", "sensitivity",
            "workshop")
__all__ = [*_MODULES, "THREADS_VARIABLE", "ThreadPools", "__version__", "size_thread_pools",
           "usable_cpus"]


def __getattr__(name: str):
    # Modules load on first use: `import emucal` stays quick, and a chapter
    # that only reads data never imports torch.
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'emucal' has no attribute {name!r}")
