"""emucal: the helper package of the tutorial book on emulator-based calibration.

One module per step of the workflow (see the book's API page):

- :mod:`emucal.data`: the pooch registry, the cache and the mirror, :func:`~emucal.data.fetch`.
- :mod:`emucal.camels`: CAMELS-US attributes, forcing and streamflow.
- :mod:`emucal.parameters`: the CTSM parameters to calibrate (:class:`~emucal.parameters.ParameterSpace`).
- :mod:`emucal.sampling`: Latin hypercube, Sobol' and random designs and their diagnostics.
- :mod:`emucal.model`: the teaching model, CTSM's hydrology in a fast lumped form.
- :mod:`emucal.ensemble`: running samples x basins in chunks, resumable, locally or on dask.
- :mod:`emucal.emulators`: GPyTorch emulators (per-basin batch GP, large-sample GP) and baselines.
- :mod:`emucal.metrics`: KGE, KGE', normKGE, NSE and water-year windows.
- :mod:`emucal.plotting`: maps and hydrographs shared by chapters.
"""

from importlib.metadata import PackageNotFoundError, version

from . import camels, data, emulators, ensemble, metrics, model, parameters, plotting, sampling

try:
    __version__ = version("emucal")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "camels", "data", "emulators", "ensemble", "metrics", "model", "parameters", "plotting", "sampling", "__version__",
]
