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

import base64
import html
import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.spatial import cKDTree

from . import metrics as skill_metrics
from .model import prepare_inputs, run_columns
from .parameters import ParameterSpace

__all__ = ["Explorer", "app", "EnsembleExplorer", "ensemble_app"]


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

        shown = self.attrs.loc[self.basins]
        lon, lat = shown["gauge_lon"].values, shown["gauge_lat"].values
        b = self.basins.index(basin)
        if self._map_fig is None:
            self._map_fig = Figure(figsize=(3.6, 2.3), layout="constrained")
            ax = self._map_fig.add_subplot(projection=conus_projection())
            basin_map(shown, ax=ax, facecolor="#bbbbbb")
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


# ---------------------------------------------------------------- any ensemble
def _data_link(data: bytes, name: str, mime: str) -> str:
    """An HTML link that downloads ``data`` as the file ``name`` (no server needed: a data URI)."""
    return (f'<a download="{name}" href="data:{mime};base64,{base64.b64encode(data).decode()}" '
            f'class="emucal-ppe-download">{name}</a>')


def _grid(d: int) -> tuple[int, int]:
    """Rows and columns of the curve panels: at most 4 columns."""
    cols = min(d, 4)
    return int(np.ceil(d / cols)), cols


def _coordinate_values(ds: xr.Dataset, dim: str) -> list:
    """A dimension's values as plain Python values (``str``, ``int``), for menus and JSON."""
    from .sensitivity import _plain

    return [_plain(v) for v in ds[dim].values]


def _select_from_text(ds: xr.Dataset, items) -> dict:
    """``["basin=01013500", ...]`` (a command line's ``--select``) as ``{dim: value}``.

    Each value is the coordinate value whose text it is, so dates and numbers
    work as well as names.
    """
    select = {}
    for item in items:
        dim, _, text = str(item).partition("=")
        if dim not in ds.dims or not text:
            raise ValueError(f"--select {item!r}: write DIM=VALUE with DIM one of {list(ds.dims)}.")
        values = _coordinate_values(ds, dim)
        chosen = [v for v in values if text == str(v)
                  or isinstance(v, pd.Timestamp) and text == f"{v:%Y-%m-%d}"]
        if not chosen:
            raise ValueError(f"--select {item!r}: {dim} has no value {text!r}; it has "
                             f"{[str(v) for v in values[:10]]}{' ...' if len(values) > 10 else ''}.")
        select[dim] = chosen[0]
    return select


def _check_input(ds: xr.Dataset, output: str | None, select: dict | None) -> tuple[list[str], str]:
    """What :func:`ensemble_app` checks before fitting anything.

    Returns the outputs and the one shown first: ``output``, else the first
    that can be emulated (the first of all if none can: it says why).
    """
    from .sensitivity import _params_problems, ensemble_outputs, output_problems

    problems = _params_problems(ds)
    if problems:
        raise ValueError("Not an ensemble that can be emulated:\n- " + "\n- ".join(problems))
    outputs = ensemble_outputs(ds)
    if not outputs:
        raise ValueError("Not an ensemble: no numeric variable besides params has a 'member' "
                         f"dimension (variables: {list(ds.data_vars)}).")
    if output is not None and output not in outputs:
        raise ValueError(f"{output!r} is not an output of this ensemble; choose one of {outputs}.")
    first = output or next((name for name in outputs if not output_problems(ds, name)), outputs[0])
    dims = [d for d in ds[first].dims if d != "member"]
    for dim, value in (select or {}).items():
        if dim not in dims:
            raise ValueError(f"{first} has no dimension {dim!r}; its dimensions besides member: "
                             f"{dims}.")
        if value not in _coordinate_values(ds, dim):
            raise ValueError(f"{dim}={value!r} is not in the ensemble; choose one of "
                             f"{_coordinate_values(ds, dim)[:10]}.")
    return outputs, first


class _Blit:
    """A figure whose still parts are drawn once; each frame redraws only the moving artists.

    Rendering axes, ticks and labels is what makes a matplotlib PNG slow
    (0.1-0.5 s for a figure of 16 panels); the curves and maps of the ensemble
    explorer change only their lines, bands and colours when the point moves.
    """

    def __init__(self, fig: Figure, moving: list):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.fig, self.moving = fig, moving
        self.canvas = FigureCanvasAgg(fig)
        self.background = None

    def png(self) -> bytes:
        from PIL import Image

        if self.background is None or self.background_dpi != self.fig.dpi:
            for artist in self.moving:
                artist.set_visible(False)
            self.canvas.draw()
            self.background, self.background_dpi = self.canvas.copy_from_bbox(self.fig.bbox), self.fig.dpi
            for artist in self.moving:
                artist.set_visible(True)
        self.canvas.restore_region(self.background)
        for artist in self.moving:
            artist.axes.draw_artist(artist)
        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())).save(buf, format="png", compress_level=1)
        return buf.getvalue()


class EnsembleExplorer:
    """The explorer of any perturbed-parameter ensemble (see :func:`ensemble_app`).

    Attributes
    ----------
    widget : ipywidgets.Box
        The whole app.
    outputs : list[str]
        The ensemble's outputs (the output menu).
    response : emucal.sensitivity.Response or None
        The emulated output on screen (its ``indices``, ``skill``, ``runs``);
        None where it cannot be emulated, and ``problem`` says why.
    sliders : dict[str, ipywidgets.FloatSlider]
        The point the curves and the map go through, in parameter units.
    prediction : dict[str, float]
        The emulator at the point: ``mean``, ``lo``, ``hi`` (95%), and
        ``nearest``, the distance in the unit cube to the nearest run, with
        ``spacing``, the median distance between neighbouring runs.
    figures : dict[str, matplotlib.figure.Figure]
        ``indices``, ``curves`` and ``map``, as last drawn.
    view_seconds, update_seconds : float
        Wall time of the last change of output or slice (emulator fit,
        indices, drawing) and of the last move of the point (NaN before the
        first).
    """

    #: fitted outputs and slices kept, so that going back is instant (each holds a GP)
    CACHED = 8

    def __init__(self, ds: xr.Dataset, *, output: str | None, select: dict | None, n_draws: int,
                 seed: int):
        try:
            import ipywidgets as w
        except ImportError as err:  # pragma: no cover - ipywidgets is in the book and test extras
            raise ImportError("The explorer needs ipywidgets: pip install 'emucal[book]' "
                              "(or pip install ipywidgets).") from err

        self.outputs, first = _check_input(ds, output, select)
        self.ds, self.n_draws, self.seed = ds, n_draws, seed
        self.space = ParameterSpace.from_dataset(ds)
        self._responses: dict = {}
        self._hold = False
        self.prediction: dict[str, float] = {}
        self.update_seconds = self.view_seconds = float("nan")
        self._blits: dict[str, _Blit] = {}

        # --- widgets
        self.output_select = w.Dropdown(options=self.outputs, description="Output",
                                        value=first)
        self.dims_box = w.HBox()
        self._dim_selects: dict[str, object] = {}
        self.status_html = w.HTML()
        self.point_html = w.HTML()
        self.indices_html = w.HTML()
        self.downloads_html = w.HTML()
        self.sliders = {}
        centre = self.space.from_unit(np.full(len(self.space), 0.5))
        for p, value in zip(self.space, centre):
            look = dict(description=p.name, readout_format=".3g", continuous_update=False,
                        style={"description_width": "160px"}, layout=w.Layout(width="400px"))
            if p.log:  # a log-uniform range: the slider moves in decades, as the unit cube does
                lo, hi = np.log10(p.lower), np.log10(p.upper)
                slider = w.FloatLogSlider(min=lo, max=hi, step=(hi - lo) / 200, base=10,
                                          value=float(value), **look)
            else:
                slider = w.FloatSlider(min=p.lower, max=p.upper, step=(p.upper - p.lower) / 200,
                                       value=float(value), **look)
            slider.observe(self._on_point, names="value")
            slider.add_class(f"emucal-slider-{p.name}")
            self.sliders[p.name] = slider
        names = self.space.names
        self.pair_x = w.Dropdown(options=names, value=names[0], description="map x",
                                 layout=w.Layout(width="300px"))
        self.pair_y = w.Dropdown(options=names, value=names[min(1, len(names) - 1)],
                                 description="map y", layout=w.Layout(width="300px"))
        self.centre_button = w.Button(description="Centre", icon="crosshairs")
        self.best_button = w.Button(description="Best run", icon="trophy")
        self.export_button = w.Button(description="Export", icon="download")
        self.centre_button.on_click(lambda _: self.set(**dict(zip(names, centre))))
        self.best_button.on_click(lambda _: self.response is not None and self.best_run())
        self.export_button.on_click(lambda _: self._offer_downloads())
        self.images = {k: w.Image(format="png") for k in ("indices", "curves", "map")}
        for part, name in ((self.output_select, "output"), (self.status_html, "status"),
                           (self.point_html, "point"), (self.indices_html, "table"),
                           (self.downloads_html, "downloads"), (self.dims_box, "dims"),
                           *((image, name) for name, image in self.images.items())):
            part.add_class(f"emucal-ppe-{name}")
        self.output_select.observe(lambda _: self._on_output(), names="value")
        for menu in (self.pair_x, self.pair_y):
            menu.observe(lambda _: None if self._hold else self._redraw_point(new_map=True),
                         names="value")
        controls = w.VBox([w.HBox([self.centre_button, self.best_button, self.export_button]),
                           self.point_html, *self.sliders.values()])
        self.widget = w.VBox([
            w.HBox([self.output_select, self.dims_box]), self.status_html,
            w.HBox([self.images["indices"], self.indices_html]),
            w.HBox([controls, self.images["curves"]]),
            w.HBox([self.pair_x, self.pair_y]), w.HBox([self.images["map"]]), self.downloads_html])

        # --- figures: made once, their artists updated
        rows, cols = _grid(len(self.space))
        self.figures = {"indices": Figure(figsize=(5.6, 0.3 * len(self.space) + 1.2), layout="constrained"),
                        "curves": Figure(figsize=(2.3 * cols, 1.7 * rows + 0.5)),
                        "map": Figure(figsize=(8.0, 3.4))}
        height = 1.7 * rows + 0.5  # inches: the title gets 0.5 of them
        self.figures["curves"].subplots_adjust(left=0.08, right=0.98, top=1 - 0.55 / height,
                                               bottom=0.3 / height, hspace=0.6, wspace=0.15)
        self._curve_axes = self.figures["curves"].subplots(rows, cols, sharey=True, squeeze=False).ravel()
        for ax in self._curve_axes[len(self.space):]:
            ax.set_visible(False)
        self._build_dims()
        self._hold = True
        try:
            for dim, value in (select or {}).items():
                self._choose(dim, value)
        finally:
            self._hold = False
        self._show()

    # ------------------------------------------------------------ display and state
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def output(self) -> str:
        return self.output_select.value

    @property
    def select(self) -> dict:
        """The value of each other dimension of the output on screen, e.g. ``{"basin": ...}``."""
        return {dim: menu.value for dim, menu in self._dim_selects.items()}

    @property
    def point(self) -> pd.Series:
        """The point on the sliders (parameter units)."""
        return pd.Series({name: s.value for name, s in self.sliders.items()}, name="point")

    def set(self, output: str | None = None, **values) -> "EnsembleExplorer":
        """Choose ``output`` and/or a value of its other dimensions, and/or move the point.

        ``values`` are parameter values (``fff=2.0``) or a dimension's value
        (``basin="01013500"``). Everything is checked before anything changes;
        the view then updates once.
        """
        new = output if output is not None else self.output
        if new not in self.outputs:
            raise ValueError(f"{new!r} is not an output; choose one of {self.outputs}.")
        dims = [d for d in self.ds[new].dims if d != "member"]
        for key, value in values.items():
            if key in self.sliders:
                p = self.space[key]
                if not p.lower <= value <= p.upper:
                    raise ValueError(f"{key}={value} is outside its range [{p.lower:g}, {p.upper:g}].")
            elif key in dims:
                if value not in _coordinate_values(self.ds, key):
                    raise ValueError(f"{key}={value!r} is not in the ensemble; choose one of "
                                     f"{_coordinate_values(self.ds, key)[:10]}.")
            else:
                raise ValueError(f"Unknown name {key!r}: give parameters {self.space.names} or "
                                 f"dimensions of {new} besides member: {dims}.")
        self._hold = True
        try:
            if new != self.output:
                self.output_select.value = new
                self._build_dims()
            for key, value in values.items():
                if key in self.sliders:
                    self.sliders[key].value = float(value)
                else:
                    self._dim_selects[key].value = value
        finally:
            self._hold = False
        if output is not None or any(k in self._dim_selects for k in values):
            self._show()
        else:
            self._redraw_point()
        return self

    def _choose(self, dim: str, value) -> None:
        if dim not in self._dim_selects:
            raise ValueError(f"{self.output} has no dimension {dim!r}; its dimensions besides "
                             f"member: {list(self._dim_selects)}.")
        options = [v for _, v in self._dim_selects[dim].options]
        if value not in options:
            raise ValueError(f"{dim}={value!r} is not in the ensemble; choose one of {options}.")
        self._dim_selects[dim].value = value

    def best_run(self) -> "EnsembleExplorer":
        """Move the point to the run with the largest output (in the slice on screen)."""
        if self.response is None:
            raise ValueError(f"{self.output} could not be emulated here: {self.problem}")
        runs = self.response.runs
        best = int(np.argmax(runs[self.output].values))
        return self.set(**dict(zip(self.space.names, runs["params"].values[best])))

    # ------------------------------------------------------------ events
    def _build_dims(self) -> None:
        import ipywidgets as w

        old = self.select
        self._dim_selects = {}
        for dim in (d for d in self.ds[self.output].dims if d != "member"):
            values = _coordinate_values(self.ds, dim)
            menu = w.Dropdown(options=[(str(v), v) for v in values], description=dim,
                              value=old[dim] if old.get(dim) in values else values[0], layout=w.Layout(width="260px"))
            menu.add_class(f"emucal-ppe-dim-{dim}")
            menu.observe(lambda _: None if self._hold else self._show(), names="value")
            self._dim_selects[dim] = menu
        self.dims_box.children = tuple(self._dim_selects.values())

    def _on_output(self) -> None:
        if self._hold:
            return
        self._build_dims()
        self._show()

    def _on_point(self, change) -> None:
        if not self._hold:
            self._redraw_point()

    def _show(self) -> None:
        """Emulate the output on screen (cached per output and slice) and draw everything."""
        from .sensitivity import response

        start = time.perf_counter()
        key = (self.output, tuple(sorted((k, str(v)) for k, v in self.select.items())))
        self.downloads_html.value = ""
        if key not in self._responses:
            try:
                self._responses[key] = response(self.ds, self.output, select=self.select,
                                                n_draws=self.n_draws, seed=self.seed)
            except ValueError as err:  # NaN members, no variance: say so on the page
                self._responses[key] = err
            while len(self._responses) > self.CACHED:  # each holds a GP: keep the latest few
                self._responses.pop(next(iter(self._responses)))
        found = self._responses[key]
        self.problem = str(found) if isinstance(found, ValueError) else None
        if isinstance(found, ValueError):
            self.response, self.prediction = None, {}
            self.status_html.value = (f"<b style='color:#b00'>{self.output} cannot be emulated "
                                      f"here.</b><br><pre>{html.escape(str(found))}</pre>")
            for image in self.images.values():
                image.value = b""
            self.indices_html.value = self.point_html.value = ""
            return
        self.response = found
        # the runs of this slice (defaults of its basin filled in), for distances: a k-d tree
        self._tree = cKDTree(self.space.to_unit(found.runs["params"].values))
        self._spacing = float(np.median(self._tree.query(self._tree.data, k=2)[0][:, 1]))
        self._status()
        self._draw_indices()
        self._hold = True  # the map starts on the two parameters of largest ST
        try:
            top = [str(v) for v in found.indices.param.values[:2]]
            self.pair_x.value, self.pair_y.value = top[0], top[-1]  # one parameter: no map
        finally:
            self._hold = False
        self._redraw_point(new_map=True)
        self.view_seconds = time.perf_counter() - start

    # ------------------------------------------------------------ drawing
    def _status(self) -> None:
        r, where = self.response, ", ".join(f"{k} {v}" for k, v in self.select.items())
        cv, r2 = r.skill, r.cv_r2
        cover = float((cv["coverage"] * cv["n_test"]).sum() / cv["n_test"].sum())
        verdict = ("trust it" if r2 >= 0.8 else
                   "<b style='color:#b00'>rough: read the indices and curves as a sketch</b>")
        self.status_html.value = (
            f"<b>{html.escape(self.output)}</b>{' at ' + html.escape(where) if where else ''}: "
            f"{r.runs.sizes['member']} runs of {len(self.space)} parameters. Emulator (GP), "
            f"5-fold cross-validation: R² {r2:.2f} over the held-out runs (folds "
            f"{cv['r2'].min():.2f} to {cv['r2'].max():.2f}), {100 * cover:.0f}% of them inside "
            f"its 95% interval: {verdict}.")

    def _draw_indices(self) -> None:
        ind = self.response.indices
        fig = self.figures["indices"]
        fig.clear()
        ax = fig.subplots()
        y = np.arange(ind.sizes["param"])[::-1]
        for k, (name, color, dy) in enumerate((("ST", "tab:blue", 0.18), ("S1", "tab:orange", -0.18))):
            v = ind[name].values
            err = np.stack([v - ind[f"{name}_lo"].values, ind[f"{name}_hi"].values - v])
            ax.barh(y + dy, v, height=0.36, xerr=err, color=color, label=name,
                    error_kw={"lw": 0.8, "capsize": 2})
        ax.set(yticks=y, yticklabels=[str(p) for p in ind.param.values], xlabel="Sobol' index",
               xlim=(min(0.0, float(ind.S1_lo.min())) - 0.02,
                     max(1.0, float(ind.ST_hi.max())) + 0.03),
               title=f"Sobol' indices of {self.output}")
        ax.axvline(0, color="k", lw=0.5)
        ax.legend(loc="lower right", fontsize=8, title=f"intervals: {ind.attrs['interval']}",
                  title_fontsize=7)
        ax.tick_params(labelsize=8)
        self.images["indices"].value = _png(fig)
        rows = "".join(f"<tr><td>{k + 1}</td><td class='emucal-ppe-param'>{html.escape(str(p))}</td>"
                       f"<td>{st:.3f} [{lo:.3f}, {hi:.3f}]</td><td>{s1:.3f}</td></tr>"
                       for k, (p, st, lo, hi, s1) in enumerate(zip(
                           ind.param.values, ind.ST.values, ind.ST_lo.values, ind.ST_hi.values,
                           ind.S1.values)))
        self.indices_html.value = (f"<small>intervals: {html.escape(ind.attrs['interval'])}</small>"
                                   "<table><tr><th>rank</th><th>parameter</th><th>total ST [95%]"
                                   f"</th><th>first-order S1</th></tr>{rows}</table>")

    def _redraw_point(self, new_map: bool = False) -> None:
        """Curves, map and prediction through the point on the sliders."""
        if self._hold or getattr(self, "response", None) is None:
            return
        start = time.perf_counter()
        point = self.point.values
        unit = self.space.to_unit(point[None])[0]
        curves = self.response.curves(point, n=31)
        mean, sd = float(curves.point_mean), float(curves.point_sd)
        nearest = float(self._tree.query(unit)[0])
        self.prediction = {"mean": mean, "lo": mean - 1.96 * sd, "hi": mean + 1.96 * sd,
                           "nearest": nearest, "spacing": self._spacing}
        far = nearest > 1.5 * self._spacing
        self.point_html.value = (
            f"<b>{html.escape(self.output)} = {mean:.4g}</b> (95%: {mean - 1.96 * sd:.4g} to "
            f"{mean + 1.96 * sd:.4g})<br><small>nearest run {nearest:.2f} away in the unit cube "
            f"(runs are {self._spacing:.2f} apart)"
            + (": <b style='color:#b00'>extrapolating</b>" if far else "") + "</small>")
        if new_map:
            self._frame_curves()
        self._draw_curves(curves)
        self._draw_map(unit, new=new_map)
        self.downloads_html.value = ""
        if not new_map:  # a move of the point, not a new view
            self.update_seconds = time.perf_counter() - start

    def _limits(self) -> tuple[float, float]:
        """The output's range over the runs, padded: fixed axes while the point moves."""
        y = self.response.runs[self.output].values
        pad = 0.1 * (float(y.max() - y.min()) or 1.0)
        return float(y.min()) - pad, float(y.max()) + pad

    def _frame_curves(self) -> None:
        """The still parts of the curves (axes, the runs' ticks); the moving parts made empty."""
        fig, runs = self.figures["curves"], self.response.runs["params"].values
        self._curve_parts = []
        for k, (ax, p) in enumerate(zip(self._curve_axes, self.space)):
            ax.clear()
            ax.set_xscale("log" if p.log else "linear")
            ax.set_xlim(p.lower, p.upper)
            ax.plot(runs[:, k], np.zeros(len(runs)), "|", color="k", ms=4, alpha=0.4,
                    transform=ax.get_xaxis_transform())  # the runs: where along p there is data
            ax.set_title(p.name, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(3))
            (band,) = ax.fill([0], [0], color="tab:blue", alpha=0.25, lw=0)
            (line,) = ax.plot([], [], color="tab:blue", lw=1)
            (mark,) = ax.plot([], [], color="tab:red", lw=0.8)
            self._curve_parts.append((band, line, mark))
        self._curve_axes[0].set_ylim(*self._limits())
        fig.suptitle(f"{self.output} through the point, one parameter at a time (band: 95%; red: "
                     "the point; ticks: the runs)", fontsize=9, y=1 - 0.1 / fig.get_figheight())
        self._blits["curves"] = _Blit(fig, [a for parts in self._curve_parts for a in parts])

    def _draw_curves(self, curves: xr.Dataset) -> None:
        lo, hi = curves["mean"] - 1.96 * curves["sd"], curves["mean"] + 1.96 * curves["sd"]
        low, high = self._limits()
        for k, (band, line, mark) in enumerate(self._curve_parts):
            x = curves["value"].values[k]
            band.set_xy(np.column_stack([np.r_[x, x[::-1]], np.r_[lo.values[k], hi.values[k][::-1]]]))
            line.set_data(x, curves["mean"].values[k])
            here = float(curves["point"].values[k])
            mark.set_data([here, here], [low, high])
        self.images["curves"].value = self._blits["curves"].png()

    def _draw_map(self, unit: np.ndarray, new: bool) -> None:
        a, b = self.pair_x.value, self.pair_y.value
        fig = self.figures["map"]
        if a == b:
            fig.clear()
            self._blits.pop("map", None)
            self.images["map"].value = _png(fig)
            return
        grid = self.response.map((a, b), self.point.values, n=31)
        ia, ib = self.space.names.index(a), self.space.names.index(b)
        if new or "map" not in self._blits:
            fig.clear()
            axes = fig.subplots(1, 2, sharey=True)
            fig.subplots_adjust(left=0.1, right=0.95, top=0.88, bottom=0.22, wspace=0.3)
            runs = self.response.runs["params"].values
            spread = float(self.response.runs[self.output].std())
            self._meshes, moving = [], []
            for ax, name, cmap, clim in zip(axes, ("mean", "sd"), ("viridis", "magma_r"),
                                            (self._limits(), (0.0, spread or 1.0))):
                mesh = ax.pcolormesh(grid[a].values, grid[b].values, grid[name].values.T, cmap=cmap,
                                     shading="auto", vmin=clim[0], vmax=clim[1])
                fig.colorbar(mesh, ax=ax)
                dots = ax.scatter(runs[:, ia], runs[:, ib], s=3, color="w", edgecolor="k",
                                  linewidth=0.3, alpha=0.7)
                (star,) = ax.plot([], [], "*", color="tab:red", ms=10, mec="k", mew=0.5)
                ax.set(xlabel=a, title=f"{self.output}: emulator {name}",
                       xscale="log" if self.space[a].log else "linear",
                       yscale="log" if self.space[b].log else "linear")
                self._meshes.append((mesh, name, star))
                moving += [mesh, dots, star]
            axes[0].set_ylabel(b)
            fig.text(0.5, 0.01, "dots: the runs; star: the point; sd scale: 0 to the runs' sd",
                     ha="center", fontsize=8)
            self._blits["map"] = _Blit(fig, moving)
        here = self.space.from_unit(unit[None])[0]
        for mesh, name, star in self._meshes:
            mesh.set_array(grid[name].values.T.ravel())
            star.set_data([here[ia]], [here[ib]])
        self.images["map"].value = self._blits["map"].png()

    # ------------------------------------------------------------ export
    def export(self, folder: str | os.PathLike) -> list[Path]:
        """Write the indices (CSV) and the three figures (PNG, 150 dpi) into ``folder``.

        Names start with the output and its slice, e.g.
        ``norm_kge_basin-01013500_indices.csv``. Returns the paths written.
        """
        from ._io import atomic_path

        if self.response is None:
            raise ValueError(f"{self.output} could not be emulated here; nothing to export.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in self._exports(dpi=150).items():
            path = folder / name
            with atomic_path(path) as tmp:
                Path(tmp).write_bytes(data)
            written.append(path)
        return written

    def _exports(self, dpi: int) -> dict[str, bytes]:
        stem = "_".join([self.output, *(f"{k}-{v}" for k, v in self.select.items())])
        stem = re.sub(r"[^\w.-]+", "-", stem)
        table = self.response.indices[["ST", "ST_lo", "ST_hi", "S1", "S1_lo", "S1_hi"]].to_dataframe()
        table.attrs = {}
        files = {f"{stem}_indices.csv": table.to_csv(float_format="%.5g").encode()}
        for name, fig in self.figures.items():
            files[f"{stem}_{name}.png"] = _png(fig, dpi=dpi)
        for blit in self._blits.values():  # savefig drew at another size: draw the still parts again
            blit.background = None
        return files

    def _offer_downloads(self) -> None:
        if self.response is None:
            return
        links = [_data_link(data, name, "text/csv" if name.endswith(".csv") else "image/png")
                 for name, data in self._exports(dpi=150).items()]
        self.downloads_html.value = "Download: " + " · ".join(links)


def ensemble_app(ensemble: xr.Dataset, *, output: str | None = None, select: dict | None = None,
                 n_draws: int = 50, seed: int = 0) -> EnsembleExplorer:
    """Build the explorer of a perturbed-parameter ensemble of any model.

    Pick an output and, where it has other dimensions (a basin, a period),
    their values; the app fits the emulator (:func:`emucal.sensitivity.response`:
    a GP with 5-fold cross-validated skill, shown so that you know whether to
    trust it) and draws the total and first-order Sobol' indices with 95%
    intervals, ranked; one-at-a-time response curves with their 95% bands
    through a point the sliders move, with the runs as ticks; and a 2-D map
    of the emulator's mean and sd over any two parameters, with the runs as
    dots. The text under the buttons gives the prediction at the point and
    how far it is from the nearest run. "Export" offers the indices (CSV)
    and the figures (PNG) for download; :meth:`EnsembleExplorer.export`
    writes them to a folder.

    Parameters
    ----------
    ensemble
        An ensemble (the format of :mod:`emucal.sensitivity`): ``params(member,
        param)`` with ``lower``/``upper`` coordinates and outputs over
        ``member``. Outputs with NaN or without variance stay in the menu and
        say why they cannot be emulated.
    output, select
        What is shown first (default: the first output that can be emulated,
        and the first value of each of its other dimensions).
    n_draws, seed
        Posterior draws for the intervals of the indices; seed of everything.

    Raises
    ------
    ValueError
        For a Dataset that is not an ensemble (no ``params``, no ranges,
        values outside them, no output) or has fewer than
        :data:`~emucal.sensitivity.MEMBERS_PER_PARAM` members per parameter.

    Examples
    --------
    >>> app = explorer.ensemble_app(xr.open_dataset("my_ppe.nc"))  # doctest: +SKIP
    >>> app.set(output="runoff", basin="01013500", fff=2.0)  # doctest: +SKIP

    From a shell, ``emucal explore my_ppe.nc`` serves the same app as a web page.
    """
    return EnsembleExplorer(ensemble, output=output, select=select, n_draws=n_draws, seed=seed)
