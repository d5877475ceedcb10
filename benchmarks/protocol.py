"""What the calibration benchmarks share: the basins, the water years, Tang et al.'s SSE loop.

Teaching model, the 19 sample basins; spin-up WY1994, calibration WY1995-2007,
validation WY2008-2013; KGE'. ``calibration_table.py`` and ``ungauged.py``
both run :func:`tang_sse_loop`, so that one call, and one checkpoint, serves
both.
"""

from types import SimpleNamespace

from emucal import calibrate, camels, emulators, sampling
from emucal.parameters import ParameterSpace

TANG_SEARCH = dict(popsize=60, generations=60)  # pymoo GA in MOASMO_parameters.py: 60 x 60


def setting(scale: str = "linear") -> SimpleNamespace:
    """The parameter space, the data, the two runners and the basins' attributes and coordinates."""
    space = ParameterSpace.tang2025(scale=scale)
    ds = camels.load_basins(start="1993-10-01", end="2013-09-30")
    attrs = camels.attributes()
    return SimpleNamespace(
        space=space, ds=ds, attrs=attrs, n_basin=ds.sizes["basin"],
        run=calibrate.model_runner(ds, attrs, space, period="calibration"),
        validate=calibrate.model_runner(ds, attrs, space, period="validation"),
        basin_attrs=attrs.loc[ds.basin.values, list(emulators.LSE_ATTRIBUTES)].to_numpy(dtype=float),
        coords=attrs.loc[ds.basin.values, ["gauge_lat", "gauge_lon"]].to_numpy(dtype=float))


def tang_sse_loop(s: SimpleNamespace, seed: int, checkpoint=None):
    """Tang et al.'s loop with their per-basin emulator: 200 LHS runs + 3 x 50, GP or forest by CV."""
    return calibrate.iterate(
        s.run, s.space, sampling.sample(s.space, 200, "lhs", seed=seed), n_iterations=3,
        n_per_iteration=50, emulator="sse_gp_or_rf", seed=seed, acquisition="tang",
        **TANG_SEARCH, basin_attrs=s.basin_attrs, checkpoint=checkpoint, progress=False)
