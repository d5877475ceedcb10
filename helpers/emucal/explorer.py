"""An interactive explorer of the teaching model's sensitivities (ipywidgets; Voila).

Pick a basin, move the 16 parameter sliders, and see at once what the model
does with them: the simulated and observed hydrograph and seasonal cycle
from a live run of the teaching model, KGE' and its three components, and,
when an emulator is given, the skill it predicts with its uncertainty.
Buttons reset the sliders to the defaults, jump to a calibrated set, and draw
one-at-a-time sensitivity curves of the predicted skill around the current
point (on the emulator, so they cost milliseconds).

In a notebook::

    from emucal import explorer
    app = explorer.app(forcing, attrs, emulator=sse, calibrated=best)
    app            # the live app

Served as a standalone web page, the notebook ``book/explorer.ipynb`` holds
only the app: ``make explorer`` (or ``voila book/explorer.ipynb``) opens it.

The app is also driven from Python, which is how it is tested: ``app.set(...)``
moves sliders, ``app.scores`` and ``app.simulated`` hold what is on screen,
``app.figure`` is the matplotlib figure behind the plots (a static snapshot
for a rendered page), and ``app.update_seconds`` how long the last update took.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from . import metrics as skill_metrics
from .model import prepare_inputs, run_columns
from .parameters import ParameterSpace

__all__ = ["Explorer", "app"]


# What a slider's tooltip adds to the parameter's meaning: where CTSM (ESCOMP/CTSM at
# ctsm5.4.053) and the teaching model, which follows it, do something a reader would not expect.
_CTSM_NOTES = {
    # src/main/initVerticalMod.F90 lines 468-486: bedrock goes at the bottom of the layer j with
    # zisoi(j-1) < zbedrock <= zisoi(j), searched from the layer holding zmin_bedrock = 0.4 m
    # (clm_varcon.F90), whose top is 0.32 m in 20SL_8.5m; no match keeps nbedrock = nlevsoi
    "zbedrock": ("CTSM ends the soil at the bottom of the layer that holds zbedrock, never above "
                 "0.48 m. A value at or below 0.32 m falls in no layer and keeps the full 8.6 m "
                 "column, so the low end of the range makes the soil deepest, not shallowest."),
    # src/biogeophys/SoilHydrologyMod.F90, SubsurfaceLateralFlow: ice_imped (lines 2146, 2262-2289)
    # on hillslope transmissivity, ice_imped_col (line 2188) on the baseflow of other columns (2336)
    "e_ice": ("The same impedance also scales baseflow: CTSM multiplies lateral subsurface flow by "
              "10^(-e_ice F_ice) of the frozen soil below the water table."),
    # src/biogeophys/SurfaceResistanceMod.F90 line 409: dsl = min(dsl, 200 mm)
    "d_max": ("CTSM caps the dry surface layer at 200 mm, so above 200 mm a larger d_max thickens "
              "it only while the top soil is moist; in dry soil the layer stays at 200 mm."),
}


def _tooltip(p) -> str:
    """A slider's tooltip: the parameter's meaning, and what CTSM does with it that surprises."""
    note = _CTSM_NOTES.get(p.name)
    return f"{p.meaning}. {note}" if note else p.meaning


def _png(fig: Figure, dpi: int = 72) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class Explorer:
    """The explorer app: widgets, a live model run, and the plots (see the module docstring).

    Build it with :func:`app`, which documents the arguments.

    Attributes
    ----------
    widget : ipywidgets.Box
        The whole app (what a notebook displays).
    sliders : dict[str, ipywidgets.FloatSlider]
        One slider per parameter, in parameter units.
    scores : dict[str, float]
        KGE', r, gamma, beta of the current run over ``period``, and with an
        emulator its predicted KGE' with a 90% interval.
    simulated : numpy.ndarray
        The current run's daily flow over the shown water years (mm/day).
    figure : matplotlib.figure.Figure
        Hydrograph and seasonal cycle, as last drawn.
    update_seconds : float
        Wall time of the last update (model run, scores, drawing).
    """

    def __init__(self, forcing: xr.Dataset, attrs: pd.DataFrame, *, space: ParameterSpace | None,
                 emulator, calibrated, period, show_years: int, basin: str | None):
        try:
            import ipywidgets as w
        except ImportError as err:  # pragma: no cover - ipywidgets is in the book and test extras
            raise ImportError("The explorer needs ipywidgets: pip install ipywidgets") from err
        self.space = space or ParameterSpace.tang2025()
        self.forcing = forcing
        self.attrs = attrs
        self.emulator = emulator
        self.basins = [str(b) for b in forcing.basin.values]
        missing = [b for b in self.basins if b not in attrs.index]
        if missing:
            raise ValueError(f"Basins {missing} are not in attrs (camels.attributes()).")
        if basin is not None and str(basin) not in self.basins:
            raise ValueError(f"basin {basin!r} is not in the forcing; choose one of {self.basins}.")
        if emulator is not None and tuple(getattr(emulator, "batch_shape_", ())) != (len(self.basins),):
            raise ValueError("emulator must be one GP per basin of the forcing, fitted on "
                             "emulators.sse_data (inputs (basin, member, param)); got batch shape "
                             f"{getattr(emulator, 'batch_shape_', None)} for {len(self.basins)} basins.")
        if emulator is not None and getattr(emulator, "n_features_in_", len(self.space)) != len(self.space):
            raise ValueError(f"The emulator was fitted on {emulator.n_features_in_} parameters, the "
                             f"space has {len(self.space)} ({', '.join(self.space.names)}); pass "
                             "space= the space it was trained on.")
        self.calibrated = None
        if calibrated is not None:
            self.calibrated = pd.DataFrame(calibrated).reindex(index=self.basins, columns=self.space.names)
            if self.calibrated.isna().all(axis=1).any():
                raise ValueError("calibrated must give parameter values (columns: space.names) for "
                                 "every basin of the forcing (index: basin ids).")
        self.period = skill_metrics.water_years(period)
        window = skill_metrics.water_year_window(forcing.time.values, self.period)
        self._window = window
        years = skill_metrics.water_year(forcing.time.values)
        self._shown = window & (years > self.period[1] - show_years)
        # position in the water year: October is 0, September 11
        self._months = (pd.DatetimeIndex(forcing.time.values[window]).month.values - 10) % 12
        self._inputs: dict[str, object] = {}
        self._hold = False

        # --- widgets
        names = attrs["gauge_name"] if "gauge_name" in attrs else pd.Series(dict.fromkeys(self.basins, ""))
        self.basin_select = w.Dropdown(
            options=[(f"{b} {str(names.get(b, ''))[:40]}", b) for b in self.basins],
            value=str(basin) if basin is not None else self.basins[0], description="Basin",
            layout=w.Layout(width="420px"))
        self.sliders, self._notes = {}, {}
        rows = []
        for p in self.space:
            step = (p.upper - p.lower) / 200
            slider = w.FloatSlider(min=p.lower, max=p.upper, step=step, value=p.lower,
                                   description=p.name, readout_format=".3g",
                                   continuous_update=False, style={"description_width": "190px"},
                                   layout=w.Layout(width="430px"), tooltip=_tooltip(p))
            slider.observe(self._on_change, names="value")
            note = w.HTML(layout=w.Layout(width="230px"))
            self.sliders[p.name], self._notes[p.name] = slider, note
            rows.append(w.HBox([slider, note]))
        self.reset_button = w.Button(description="Reset to default", icon="undo")
        self.calibrated_button = w.Button(description="Calibrated set", icon="bullseye",
                                          disabled=self.calibrated is None)
        self.curves_button = w.Button(description="Sensitivity curves", icon="line-chart",
                                      disabled=emulator is None)
        self.reset_button.on_click(lambda _: self.reset())
        self.calibrated_button.on_click(lambda _: self.jump_to_calibrated())
        self.curves_button.on_click(lambda _: self.draw_curves())
        self.scores_html = w.HTML()
        self.plot = w.Image(format="png")
        self.map_image = w.Image(format="png", layout=w.Layout(width="300px"))
        self.curves_image = w.Image(format="png", layout=w.Layout(display="none"))
        self.basin_select.observe(self._on_basin, names="value")
        # CSS classes name the parts of the page (the browser test finds them by these)
        for part, name in ((self.plot, "plot"), (self.scores_html, "scores"), (self.map_image, "map"),
                           (self.curves_image, "curves"), (self.basin_select, "basin")):
            part.add_class(f"emucal-explorer-{name}")
        for name, slider in self.sliders.items():
            slider.add_class(f"emucal-slider-{name}")
        controls = w.VBox([w.HBox([self.reset_button, self.calibrated_button, self.curves_button]),
                           *rows])
        self.widget = w.VBox([
            w.HBox([w.VBox([self.basin_select, self.scores_html]), self.map_image]),
            w.HBox([controls, self.plot]),
            self.curves_image,
        ])

        # --- the figure, drawn once and then updated in place
        # a fixed layout: a layout engine would double the drawing time of every update
        self.figure = Figure(figsize=(7.2, 6.0))
        self._ax_flow, self._ax_cycle = self.figure.subplots(2, 1, height_ratios=(3, 2))
        self.figure.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.06, hspace=0.3)
        shown_time = forcing.time.values[self._shown]
        (self._obs_line,) = self._ax_flow.plot(shown_time, np.zeros(len(shown_time)), color="k",
                                               lw=0.8, label="observed")
        (self._sim_line,) = self._ax_flow.plot(shown_time, np.zeros(len(shown_time)),
                                               color="tab:blue", lw=0.9, label="simulated")
        self._ax_flow.set(ylabel="flow (mm/day)")
        self._ax_flow.legend(loc="upper right", fontsize=8)
        months = np.arange(1, 13)
        (self._obs_cycle,) = self._ax_cycle.plot(months, np.zeros(12), "k-o", ms=3, label="observed")
        (self._sim_cycle,) = self._ax_cycle.plot(months, np.zeros(12), "-o", color="tab:blue", ms=3,
                                                 label="simulated")
        self._ax_cycle.set(xticks=months, xticklabels=list("ONDJFMAMJJAS"),
                           ylabel="mean flow (mm/day)",
                           title=f"seasonal cycle, water years {self.period[0]}-{self.period[1]}")
        self._map_fig = None
        self._show_basin(self.basin_select.value)

    # ------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------ state
    @property
    def basin(self) -> str:
        return self.basin_select.value

    @property
    def params(self) -> pd.Series:
        """The parameter set on the sliders (parameter units)."""
        return pd.Series({n: s.value for n, s in self.sliders.items()}, name=self.basin)

    def _defaults(self, basin: str) -> np.ndarray:
        return self._basin_inputs(basin).defaults[0]

    def _basin_inputs(self, basin: str):
        if basin not in self._inputs:
            self._inputs[basin] = prepare_inputs(self.forcing.sel(basin=[basin]), self.attrs)
        return self._inputs[basin]

    def set(self, basin: str | None = None, **params: float) -> "Explorer":
        """Move to ``basin`` and/or set parameters by name, then update once."""
        unknown = [n for n in params if n not in self.sliders]
        if unknown:
            raise ValueError(f"Unknown parameters {unknown}; choose from {list(self.sliders)}.")
        self._hold = True
        try:
            if basin is not None:
                self.basin_select.value = str(basin)
            for name, value in params.items():
                slider = self.sliders[name]
                if not slider.min <= value <= slider.max:
                    raise ValueError(f"{name}={value} is outside its range "
                                     f"[{slider.min:g}, {slider.max:g}].")
                slider.value = float(value)
        finally:
            self._hold = False
        self.update()
        return self

    def reset(self) -> "Explorer":
        """Every slider back to the basin's default."""
        return self.set(**dict(zip(self.space.names, self._defaults(self.basin))))

    def jump_to_calibrated(self) -> "Explorer":
        """Every slider to the calibrated set of the basin (where it gives one)."""
        if self.calibrated is None:
            raise ValueError("No calibrated sets were given (app(..., calibrated=...)).")
        row = self.calibrated.loc[self.basin]
        defaults = dict(zip(self.space.names, self._defaults(self.basin)))
        return self.set(**{n: (defaults[n] if np.isnan(v) else v) for n, v in row.items()})

    # ------------------------------------------------------------ events
    def _on_change(self, change) -> None:
        if not self._hold:
            self.update()

    def _on_basin(self, change) -> None:
        self._show_basin(change["new"])

    def _show_basin(self, basin: str) -> None:
        inputs = self._basin_inputs(basin)
        for p, default in zip(self.space, inputs.defaults[0]):
            self._notes[p.name].value = (f"<small>default <b>{default:.3g}</b> · range "
                                         f"{p.lower:.3g} to {p.upper:.3g} {'' if p.units == '1' else p.units}"
                                         "</small>")
        obs = self.forcing["qobs"].sel(basin=basin).values
        self._obs = obs[self._window]
        self._obs_line.set_ydata(obs[self._shown])
        self._obs_cycle.set_ydata(self._monthly(self._obs))
        self._ax_flow.set_title(f"{basin}: last {int(self._shown.sum() / 365.25 + 0.5)} water years "
                                f"of {self.period[0]}-{self.period[1]}")
        self._draw_map(basin)
        was_held = self._hold
        self._hold = True
        try:
            for p, default in zip(self.space, inputs.defaults[0]):
                self.sliders[p.name].value = float(default)
        finally:
            self._hold = was_held
        if not was_held:
            self.update()

    def _monthly(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        ok = np.isfinite(q)
        sums = np.bincount(self._months[ok], weights=q[ok], minlength=12)
        counts = np.bincount(self._months[ok], minlength=12)
        with np.errstate(invalid="ignore"):
            return sums / counts

    # ------------------------------------------------------------ drawing
    def update(self) -> None:
        """Run the model with the sliders' values, score it, redraw."""
        start = time.perf_counter()
        values = self.params.values
        inputs = self._basin_inputs(self.basin)
        flow = run_columns(values[None, :], np.zeros(1, dtype=int), inputs)[0]["qsim"][0]
        flow = flow.astype(np.float64)
        sim = flow[self._window]
        r, gamma, beta = skill_metrics.kge_components(sim, self._obs, modified=True)
        kge_p = float(skill_metrics.kge_prime(sim, self._obs))
        self.scores = {"kge_prime": kge_p, "r": float(r), "gamma": float(gamma), "beta": float(beta)}
        text = (f"<b>KGE&prime; {kge_p:.3f}</b> &nbsp; r {float(r):.2f} &nbsp; "
                f"&gamma; {float(gamma):.2f} &nbsp; &beta; {float(beta):.2f}")
        if self.emulator is not None:
            b = self.basins.index(self.basin)
            x = np.full((len(self.basins), 1, len(self.space)), 0.5)
            x[b, 0] = self.space.to_unit(values[None, :])[0]
            mean, sd = self.emulator.predict(x, return_std=True)
            m, s = float(mean[b, 0]), float(sd[b, 0])
            lo, hi = (float(skill_metrics.from_norm(min(v, 1.0))) for v in (m - 1.645 * s, m + 1.645 * s))
            self.scores.update({"emulator_kge_prime": float(skill_metrics.from_norm(min(m, 1.0))),
                                "emulator_low": lo, "emulator_high": hi})
            text += (f"<br>emulator: KGE&prime; {self.scores['emulator_kge_prime']:.3f} "
                     f"(90% interval {lo:.2f} to {hi:.2f})")
        self.scores_html.value = text
        self.simulated = flow[self._shown]
        self._sim_line.set_ydata(self.simulated)
        self._sim_cycle.set_ydata(self._monthly(sim))
        for ax in (self._ax_flow, self._ax_cycle):
            ax.relim()
            ax.autoscale_view()
        self.plot.value = _png(self.figure)
        self.update_seconds = time.perf_counter() - start

    def _draw_map(self, basin: str) -> None:
        import cartopy.crs as ccrs

        from .plotting import basin_map, conus_projection

        lon = self.attrs.loc[self.basins, "gauge_lon"].values
        lat = self.attrs.loc[self.basins, "gauge_lat"].values
        b = self.basins.index(basin)
        if self._map_fig is None:
            self._map_fig = Figure(figsize=(3.6, 2.3), layout="constrained")
            ax = self._map_fig.add_subplot(projection=conus_projection())
            basin_map(lon, lat, ax=ax, facecolor="#bbbbbb")
            self._marker = ax.scatter([lon[b]], [lat[b]], s=70, marker="*", color="tab:red",
                                      edgecolor="k", linewidth=0.5, zorder=5,
                                      transform=ccrs.PlateCarree())
        else:
            self._marker.set_offsets([[lon[b], lat[b]]])  # lon/lat: the marker's transform
        self.map_image.value = _png(self._map_fig, dpi=80)

    def draw_curves(self, n_points: int = 25) -> Figure:
        """One-at-a-time curves of the emulator's predicted KGE' around the current point.

        Each panel moves one parameter over its range with the others held
        at the sliders' values; the band is the emulator's 90% interval and
        the line marks the current value. Returns the figure (also shown in
        the app).
        """
        if self.emulator is None:
            raise ValueError("Sensitivity curves need an emulator (app(..., emulator=...)).")
        d = len(self.space)
        b = self.basins.index(self.basin)
        here = self.space.to_unit(self.params.values[None, :])[0]
        grid = np.linspace(0, 1, n_points)
        x = np.full((len(self.basins), d * n_points, d), 0.5)
        x[b] = np.repeat(here[None, :], d * n_points, axis=0)
        for j in range(d):
            x[b, j * n_points:(j + 1) * n_points, j] = grid
        mean, sd = self.emulator.predict(x, return_std=True)
        mean, sd = mean[b].reshape(d, n_points), sd[b].reshape(d, n_points)
        values = self.space.from_unit(np.tile(grid[:, None], (1, d)))  # (n_points, d)
        fig = Figure(figsize=(11, 7.5), layout="constrained")
        axes = fig.subplots(4, int(np.ceil(d / 4)), sharey=True).ravel()
        to_kge = lambda v: skill_metrics.from_norm(np.minimum(v, 1.0))
        for j, (ax, p) in enumerate(zip(axes, self.space)):
            ax.fill_between(values[:, j], to_kge(mean[j] - 1.645 * sd[j]), to_kge(mean[j] + 1.645 * sd[j]),
                            alpha=0.25, color="tab:blue", lw=0)
            ax.plot(values[:, j], to_kge(mean[j]), color="tab:blue", lw=1)
            ax.axvline(self.params[p.name], color="tab:red", lw=0.8)
            ax.set_title(p.name, fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes[d:]:
            ax.set_visible(False)
        axes[0].set_ylim(max(-1.0, float(np.nanmin(to_kge(mean - 1.645 * sd)))), 1)
        fig.suptitle(f"{self.basin}: emulator's KGE' moving one parameter at a time "
                     "(band: 90% interval; red: current value)", fontsize=9)
        self.curves_figure = fig
        self.curves_image.value = _png(fig)
        self.curves_image.layout.display = None
        return fig


def app(forcing: xr.Dataset, attrs: pd.DataFrame, *, space: ParameterSpace | None = None,
        emulator=None, calibrated=None, period="calibration",
        show_years: int = 3, basin: str | None = None) -> Explorer:
    """Build the explorer app for the basins of ``forcing``.

    Parameters
    ----------
    forcing
        :func:`emucal.camels.load_basins`, with a spin-up year before
        ``period`` (the model repeats the first year once).
    attrs
        :func:`emucal.camels.attributes` (names, locations, model inputs).
    space
        The parameter space of the sliders (default ``ParameterSpace.tang2025()``).
    emulator
        Optional per-basin emulator of normKGE on unit-cube inputs, one GP per
        basin of ``forcing`` in the same order (a
        :class:`~emucal.emulators.GPEmulator` fitted on
        :func:`~emucal.emulators.sse_data`); it gives the predicted skill and
        the sensitivity curves.
    calibrated
        Optional calibrated parameter sets, a DataFrame indexed by basin with
        one column per parameter (parameter units; NaN: the default).
    period
        Scored and plotted: a name in :data:`emucal.metrics.PERIODS` or
        water years ``(first, last)``.
    show_years
        Water years at the end of ``period`` shown in the hydrograph.
    basin
        Basin shown first (default: the first).

    Returns
    -------
    Explorer
        Display it in a notebook; drive it with ``set``, ``reset``,
        ``jump_to_calibrated`` and ``draw_curves``.
    """
    if show_years < 1:
        raise ValueError(f"show_years must be at least 1; got {show_years}.")
    return Explorer(forcing, attrs, space=space, emulator=emulator, calibrated=calibrated,
                    period=period, show_years=show_years, basin=basin)
