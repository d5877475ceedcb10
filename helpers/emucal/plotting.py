"""Plots that several chapters share: basin maps, hydrographs, implausibility matrices, pair plots.

Maps use cartopy with Natural Earth features (coastlines, land, ocean, lakes,
country borders). Without a network, point ``CARTOPY_DATA_DIR`` at a folder
that holds those shapefiles in cartopy's layout (``postBuild`` prefetches them
on Binder).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from .parameters import ParameterSpace

__all__ = ["CONUS_EXTENT", "MAP_RESOLUTION", "NATURAL_EARTH_FEATURES", "NATURAL_EARTH_RESOLUTIONS",
           "SIZE_RANGE", "basin_map",
           "conus_projection", "hydrograph", "implausibility_matrix", "pair_plot"]

#: Longitude and latitude limits of the contiguous United States (W, E, S, N).
CONUS_EXTENT = (-125.0, -66.5, 24.0, 50.0)

#: The Natural Earth layers :func:`basin_map` draws, ``(category, name)``, with
#: their style, bottom to top. ``emucal mirror --natural-earth`` and Binder's
#: ``postBuild`` fetch exactly these.
NATURAL_EARTH_FEATURES = {
    ("physical", "ocean"): {"facecolor": "#dceaf5", "edgecolor": "none", "zorder": 0},
    ("physical", "land"): {"facecolor": "#f4f1ea", "edgecolor": "none", "zorder": 0},
    ("physical", "lakes"): {"facecolor": "#dceaf5", "edgecolor": "#7a9cb8", "linewidth": 0.3,
                            "zorder": 1},
    ("physical", "coastline"): {"facecolor": "none", "edgecolor": "#555555", "linewidth": 0.5,
                                "zorder": 1},
    ("cultural", "admin_0_boundary_lines_land"): {"facecolor": "none", "edgecolor": "#555555",
                                                  "linewidth": 0.5, "zorder": 1},
}

#: Natural Earth resolutions :func:`basin_map` offers.
NATURAL_EARTH_RESOLUTIONS = ("110m", "50m")
MAP_RESOLUTION = "110m"  # the Natural Earth resolution basin_map draws
SIZE_RANGE = (15.0, 250.0)  # marker sizes (points squared) of basin_map's smallest and largest value


def conus_projection():
    """Albers equal-area projection for maps of the contiguous United States."""
    import cartopy.crs as ccrs

    # Albers equal-area with the standard parallels the USGS uses for CONUS.
    return ccrs.AlbersEqualArea(central_longitude=-96.0, central_latitude=37.5,
                                standard_parallels=(29.5, 45.5))


def basin_map(
    attrs: pd.DataFrame,
    color: Sequence[float] | None = None,
    size: Sequence[float] | None = None,
    *,
    ax=None,
    color_label: str | None = None,
    size_label: str | None = None,
    labels: bool = False,
    **scatter_kwargs,
):
    """Plot basins as points on a map of the contiguous United States.

    The coasts, borders and lakes are Natural Earth's at
    :data:`MAP_RESOLUTION` (``"110m"``; set it to ``"50m"`` for finer ones:
    ``emucal mirror --natural-earth`` copies both).

    Parameters
    ----------
    attrs
        The basins to plot: rows of :func:`emucal.camels.attributes` (or any
        table with ``gauge_lon`` and ``gauge_lat`` in degrees).
    color
        Values that colour the points (for example the aridity index). A
        Series indexed by basin, or a DataArray over ``basin``, is matched to
        ``attrs``' rows by basin id; other sequences are taken in ``attrs``' order.
    size
        Values that size the points (for example the basin area), matched as
        ``color``; scaled linearly into :data:`SIZE_RANGE` (points squared).
    ax
        A cartopy ``GeoAxes``; a new figure in an Albers equal-area projection
        is made when None.
    color_label, size_label
        Colour bar label, and the title of the size legend.
    labels
        Write each basin's id (the index of ``attrs``) next to its point.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter` (``cmap``, default
        ``"viridis"``; ``facecolor``; ...).

    Returns
    -------
    cartopy.mpl.geoaxes.GeoAxes
    """
    import cartopy.crs as ccrs
    import cartopy.feature as cfeature

    resolution = MAP_RESOLUTION
    if resolution not in NATURAL_EARTH_RESOLUTIONS:
        raise ValueError(f"plotting.MAP_RESOLUTION must be one of {NATURAL_EARTH_RESOLUTIONS}; "
                         f"got {resolution!r}.")
    size_range = SIZE_RANGE
    missing = [c for c in ("gauge_lon", "gauge_lat") if c not in getattr(attrs, "columns", ())]
    if missing:
        raise ValueError(f"attrs must be a table of basins with columns gauge_lon and gauge_lat "
                         f"(camels.attributes()); {missing} not found.")
    lon = attrs["gauge_lon"].to_numpy(dtype=float)
    lat = attrs["gauge_lat"].to_numpy(dtype=float)
    color, size = _by_basin(color, attrs, "color"), _by_basin(size, attrs, "size")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 5.2), subplot_kw={"projection": conus_projection()})
    ax.set_extent(CONUS_EXTENT, crs=ccrs.PlateCarree())
    for (category, name), style in NATURAL_EARTH_FEATURES.items():
        ax.add_feature(cfeature.NaturalEarthFeature(category, name, resolution), **style)

    if size is None:
        sizes = np.full(lon.shape, 40.0)
    else:
        size = np.asarray(size, dtype=float)
        span = np.nanmax(size) - np.nanmin(size)
        frac = (size - np.nanmin(size)) / span if span > 0 else np.zeros_like(size)
        sizes = size_range[0] + frac * (size_range[1] - size_range[0])
    kwargs = {"edgecolor": "k", "linewidth": 0.4, "zorder": 3, "cmap": "viridis", **scatter_kwargs}
    if color is None:
        kwargs.pop("cmap")  # nothing to colour
    points = ax.scatter(lon, lat, c=color, s=sizes, transform=ccrs.PlateCarree(), **kwargs)
    if color is not None:
        bar = plt.colorbar(points, ax=ax, shrink=0.7, pad=0.02)
        if color_label:
            bar.set_label(color_label)
    if size is not None:
        picks = np.nanquantile(size, [0.0, 0.5, 1.0])
        handles = [
            ax.scatter([], [], s=size_range[0] + (p - np.nanmin(size)) / (span or 1)
                       * (size_range[1] - size_range[0]), facecolor="none", edgecolor="k")
            for p in picks
        ]
        ax.legend(handles, [f"{p:,.0f}" for p in picks], title=size_label,
                  loc="lower left", frameon=True, fontsize=8, title_fontsize=8)
    if labels:
        for x, y, text in zip(lon, lat, attrs.index):
            ax.text(x + 0.4, y + 0.3, str(text), fontsize=6, transform=ccrs.PlateCarree(),
                    zorder=4)
    return ax


def _by_basin(values, attrs: pd.DataFrame, name: str):
    """``values`` in the order of ``attrs``' rows: a Series or a ``basin`` DataArray by id, else as given."""
    if isinstance(values, xr.DataArray) and "basin" in values.dims:
        values = values.to_series()
    if not isinstance(values, pd.Series):
        if values is not None and len(values) != len(attrs):
            raise ValueError(f"{name} has {len(values)} values for {len(attrs)} basins.")
        return values
    ids, index = attrs.index.astype(str), values.index.astype(str)
    if ids.difference(index).size:
        raise ValueError(f"{name} has no value for basin(s) {list(ids.difference(index))[:5]} of attrs: a "
                         f"Series is matched to attrs' rows by its index of basin ids (pass "
                         f"{name}.to_numpy() for values already in attrs' order).")
    return values.set_axis(index).loc[ids].to_numpy(dtype=float)


def hydrograph(
    observed: xr.DataArray | pd.Series,
    simulated: dict[str, xr.DataArray | pd.Series] | None = None,
    *,
    precipitation: xr.DataArray | pd.Series | None = None,
    ax=None,
    log: bool = False,
    units: str = "mm/day",
):
    """Plot observed flow, optional simulations, and precipitation bars on top.

    Parameters
    ----------
    observed
        Observed flow with a time index (a 1-D DataArray with dimension
        ``time``, or a Series).
    simulated
        ``{label: series}`` of simulated flows on the same time axis.
    precipitation
        Daily precipitation, drawn as inverted bars on a second axis.
    ax
        Matplotlib axes; a new figure when None.
    log
        Log scale for flow (shows recessions and low flows).
    units
        Flow units for the y label.

    Returns
    -------
    matplotlib.axes.Axes
    """

    def _series(values) -> pd.Series:
        if isinstance(values, xr.DataArray):
            if values.ndim != 1:
                raise ValueError(
                    f"hydrograph needs 1-D series (dimension 'time'), got dims {values.dims}; "
                    "select one basin first, e.g. ds.qobs.sel(basin='01013500')."
                )
            return values.to_series()
        return pd.Series(values)

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.5))
    obs = _series(observed)
    ax.plot(obs.index, obs.to_numpy(), color="k", lw=1.0, label="observed")
    for (label, sim), colour in zip((simulated or {}).items(), plt.cm.tab10.colors):
        sim = _series(sim)
        ax.plot(sim.index, sim.to_numpy(), lw=0.9, color=colour, label=label)
    ax.set_ylabel(f"flow ({units})")
    if log:
        ax.set_yscale("log")
    if precipitation is not None:
        rain = _series(precipitation)
        top = ax.twinx()
        top.bar(rain.index, rain.to_numpy(), width=1.0, color="#4a90d9", alpha=0.6)
        top.set_ylim(np.nanmax(rain.to_numpy()) * 3.0, 0)
        top.set_ylabel("precipitation (mm/day)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return ax


def implausibility_matrix(matched: xr.Dataset, *, ax=None, row_labels: Sequence[str] | None = None,
                          vmax: float = 10.0, title: str | None = None):
    """Basins x signatures: the smallest implausibility any parameter set reaches.

    Cells at or below the cutoff (3) are blue shades: some parameter set
    matches that signature in that basin. Cells above it are red and carry
    their value: no parameter set does, within the stated observation error,
    model discrepancy and emulator uncertainty, which is evidence of a
    structural error (chapter 7).

    Parameters
    ----------
    matched
        The result of :func:`emucal.diagnostics.history_match`.
    ax
        Matplotlib axes (a new figure when None).
    row_labels
        Labels of the basins (default: the basin ids).
    vmax
        Top of the colour scale (larger values are drawn at ``vmax``).
    title
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.colors import TwoSlopeNorm

    cutoff = float(matched.attrs.get("cutoff", 3.0))
    values = matched["min_implausibility"].transpose("basin", "signature").values
    n_basin, n_sig = values.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.75 * n_sig, 1.2 + 0.32 * n_basin))
    norm = TwoSlopeNorm(vmin=0.0, vcenter=cutoff, vmax=max(vmax, cutoff + 1e-6))
    image = ax.imshow(np.minimum(values, vmax), cmap="RdBu_r", norm=norm, aspect="auto")
    for i, j in zip(*np.nonzero(values > cutoff)):
        ax.text(j, i, f"{values[i, j]:.0f}" if values[i, j] < 100 else ">99",
                ha="center", va="center", fontsize=7, color="white" if values[i, j] > 0.6 * vmax else "black")
    names = matched["signature"].values if "signature" in matched.coords else np.arange(n_sig)
    basins = row_labels if row_labels is not None else (
        matched["basin"].values if "basin" in matched.coords else np.arange(n_basin))
    ax.set_xticks(np.arange(n_sig), [str(n) for n in names], rotation=45, ha="right")
    ax.set_yticks(np.arange(n_basin), [str(b) for b in basins])
    plt.colorbar(image, ax=ax, label=f"smallest implausibility (cutoff {cutoff:g})", shrink=0.8)
    if title:
        ax.set_title(title)
    return ax


def pair_plot(
    space: ParameterSpace,
    params,
    *,
    names: Sequence[str] | None = None,
):
    """Scatter plots of every pair of parameters of a design, in the unit cube.

    The lower triangle shows one panel per pair of parameters, the diagonal a
    histogram of each parameter (flat for a good design), and the upper
    triangle is left empty. Axes run over the unit cube, so a log-scaled
    parameter (marked "log" in its label) is shown in its logarithm, the
    space in which it was sampled.

    Parameters
    ----------
    space
        The parameter space of the sample.
    params
        Shape ``(n_members, len(space))`` in parameter units, or the Dataset
        of :meth:`ParameterSpace.to_dataset`. Member 0 is drawn as a red star
        when it is the CTSM default.
    names
        The parameters to show, in this order (default: all). With all 16
        parameters of :meth:`ParameterSpace.tang2025` the figure has 256
        panels and is about 26 inches wide; pick 3 to 6 parameters for a
        readable figure.

    Returns
    -------
    matplotlib.figure.Figure
        A ``k x k`` grid of axes for ``k`` parameters (the upper triangle
        switched off).

    Examples
    --------
    >>> space = ParameterSpace.tang2025()
    >>> fig = pair_plot(space, sampling.sample(space, 50, seed=0), names=["fff", "FMAX", "d_max"])
    >>> len(fig.axes)
    9
    """
    x = np.atleast_2d(space.validate(params))
    names = list(space.names if names is None else names)
    if not names:
        raise ValueError("names must hold at least one parameter.")
    unknown = [nm for nm in names if nm not in space.names]
    if unknown:
        raise ValueError(f"Unknown parameters {unknown}; valid names are {space.names}.")
    columns = [space.names.index(nm) for nm in names]
    unit = np.clip(space.to_unit(x), 0.0, 1.0)[:, columns]
    is_default = bool(np.allclose(x[0], space.defaults, equal_nan=True))
    design = unit[1:] if is_default else unit
    design = design[np.isfinite(design).all(axis=1)]
    colour, ax_size = "C0", 1.6  # ax_size: inches per panel
    n_points, k = len(unit), len(names)
    marker_size = float(np.clip(600.0 / max(n_points, 1), 2.0, 25.0))
    bins = int(np.clip(round(np.sqrt(max(len(design), 1))), 5, 20))
    labels = [f"{nm} (log)" if space[nm].log else nm for nm in names]

    fig, axes = plt.subplots(k, k, figsize=(ax_size * k, ax_size * k), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(design[:, i], bins=bins, range=(0.0, 1.0), color=colour,
                        alpha=0.7, edgecolor="white", linewidth=0.5)
                if is_default:
                    ax.axvline(unit[0, i], color="red", linewidth=1.2)
                ax.set_yticks([])
            else:
                ax.scatter(design[:, j], design[:, i], s=marker_size, color=colour,
                           alpha=0.7, linewidths=0)
                if is_default:
                    ax.scatter(unit[0, j], unit[0, i], s=max(4 * marker_size, 40.0),
                               color="red", marker="*", zorder=3, linewidths=0)
                ax.set_ylim(-0.03, 1.03)
            ax.set_xlim(-0.03, 1.03)
            ax.set_xticks([0, 0.5, 1] if i == k - 1 else [])
            if i != j:
                ax.set_yticks([0, 0.5, 1] if j == 0 else [])
            ax.tick_params(labelsize=7, length=2)
            if i == k - 1:
                ax.set_xlabel(labels[j], fontsize=8)
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i], fontsize=8)
            if i == j:
                ax.set_title(labels[i], fontsize=8)
    if is_default and k > 1:
        axes[0, k - 1].legend(
            handles=[plt.Line2D([], [], color=colour, marker="o", linestyle="", label="design"),
                     plt.Line2D([], [], color="red", marker="*", linestyle="",
                                markersize=9, label="CTSM default")],
            loc="upper right", frameon=False, fontsize=8)
    extra = " and the CTSM default" if is_default else ""
    fig.suptitle(f"{len(design)} design points{extra}, in the unit cube", fontsize=9)
    fig.tight_layout()
    return fig
