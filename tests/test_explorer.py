"""The sensitivity explorer (emucal.explorer): driven from Python, and in a browser through Voila.

The first tests build the app on the synthetic ``toy`` basins and move its
widgets from Python: a slider changes the plotted run and the scores, the
buttons do what they say. The last test serves ``book/explorer.ipynb`` with
Voila on 127.0.0.1 (real CAMELS data through the shared mirror, FAST mode),
opens it in headless Chromium, drags a slider's handle with the mouse, and
checks that the plot and the scores change; screenshots before and after go
to ``test-artifacts/explorer/{before,after}.png`` (beside the book's page
screenshots, which test_pages.py clears and rewrites).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emucal import emulators, explorer
from emucal.parameters import ParameterSpace
from test_pages import ARTIFACTS, chromium  # noqa: F401 (chromium: the headless browser fixture)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_app_inputs(toy):
    forcing, attrs = toy
    attrs = attrs.assign(gauge_lon=[-70.0, -85.0], gauge_name=["cold toy", "warm toy"])
    space = ParameterSpace.tang2025()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 24, len(space)))
    y = np.tanh(x[..., 0] - x[..., 8]) * 0.5  # a made-up skill surface: watsat_sf and zbedrock
    sse = emulators.GPEmulator(seed=0).fit(x, y)
    calibrated = pd.DataFrame(space.from_unit(np.full((2, len(space)), 0.7)),
                              index=forcing.basin.values, columns=space.names)
    return forcing, attrs, space, sse, calibrated


@pytest.fixture
def app(toy_app_inputs):
    forcing, attrs, space, sse, calibrated = toy_app_inputs
    return explorer.app(forcing, attrs, space=space, emulator=sse, calibrated=calibrated,
                        period=(2002, 2004), show_years=2)


def test_moving_a_slider_reruns_the_model_and_rescores(app):
    before_flow, before_scores, before_png = app.simulated.copy(), dict(app.scores), app.plot.value
    assert set(before_scores) >= {"kge_prime", "r", "gamma", "beta", "emulator_kge_prime"}
    app.sliders["baseflow_scalar"].value = 0.09  # as a user would: the observer updates
    assert not np.allclose(app.simulated, before_flow)
    assert app.scores["kge_prime"] != before_scores["kge_prime"]
    assert app.plot.value != before_png
    np.testing.assert_allclose(app._sim_line.get_ydata(), app.simulated)
    # the emulator's interval brackets its mean
    assert app.scores["emulator_low"] <= app.scores["emulator_kge_prime"] <= app.scores["emulator_high"]


def test_reset_and_calibrated_buttons(app, toy_app_inputs):
    *_, calibrated = toy_app_inputs
    start = dict(app.scores)
    app.calibrated_button.click()
    np.testing.assert_allclose(app.params.values, calibrated.loc[app.basin].values, rtol=1e-6)
    app.reset_button.click()
    assert app.scores["kge_prime"] == pytest.approx(start["kge_prime"])
    # zbedrock's default is the basin's own soil depth (toy: 2 m and 5 m)
    assert app.params["zbedrock"] == pytest.approx(2.0)
    app.basin_select.value = app.basins[1]
    assert app.params["zbedrock"] == pytest.approx(5.0)
    assert "5" in app._notes["zbedrock"].value


def test_tooltips_say_what_ctsm_does_with_zbedrock_e_ice_and_d_max(app):
    from emucal.model import bedrock_depth

    tips = {name: slider.tooltip for name, slider in app.sliders.items()}
    assert all(tips[p.name].startswith(p.meaning) for p in app.space)
    # the deepest soil at the low end of zbedrock's range (initVerticalMod.F90), as the model has it
    lower = app.space["zbedrock"].lower
    assert "0.32 m" in tips["zbedrock"] and "8.6 m" in tips["zbedrock"] and "0.48 m" in tips["zbedrock"]
    assert bedrock_depth(lower) == bedrock_depth(0.32) == pytest.approx(8.6)
    assert bedrock_depth(0.33) == pytest.approx(0.48) and bedrock_depth(0.33) < bedrock_depth(lower)
    assert "baseflow" in tips["e_ice"]
    assert "200 mm" in tips["d_max"] and app.space["d_max"].upper > 200
    assert tips["fff"] == app.space["fff"].meaning  # the others are the meaning alone


def test_sensitivity_curves_cover_every_parameter(app):
    fig = app.draw_curves(n_points=9)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 16 and [ax.get_title() for ax in panels] == app.space.names
    assert app.curves_image.value and app.curves_image.layout.display is None


def test_bad_input_is_refused(app, toy_app_inputs):
    forcing, attrs, space, sse, _ = toy_app_inputs
    with pytest.raises(ValueError, match="outside its range"):
        app.set(watsat_sf=100.0)
    with pytest.raises(ValueError, match="Unknown parameters"):
        app.set(porosity=0.5)
    with pytest.raises(ValueError, match="not in the forcing"):
        explorer.app(forcing, attrs, basin="99999999")
    with pytest.raises(ValueError, match="one GP per basin"):
        explorer.app(forcing.isel(basin=[0]), attrs, emulator=sse)
    with pytest.raises(ValueError, match="fitted on 16 parameters, the space has 2"):
        explorer.app(forcing, attrs, space=space.subset(space.names[:2]), emulator=sse,
                     period=(2002, 2004))
    with pytest.raises(ValueError, match="1980-1990 hold none of the dates, which cover water years 2001-2005"):
        explorer.app(forcing, attrs, period=(1980, 1990))


# --------------------------------------------------------------- in a browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the page's state: the plot image, the scores, and the watsat_sf slider's handle and readout
STATE_JS = """
(() => {
  const img = document.querySelector("img.emucal-explorer-plot");
  const scores = document.querySelector(".emucal-explorer-scores");
  const slider = document.querySelector(".emucal-slider-watsat_sf");
  const handle = slider && slider.querySelector(".noUi-handle");
  const track = slider && slider.querySelector(".noUi-target, .slider");
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                      return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const readout = slider && slider.querySelector(".widget-readout");
  return {src: img ? img.getAttribute("src") : null, width: img ? img.naturalWidth : 0,
          scores: scores ? scores.textContent : null, handle: box(handle), track: box(track),
          readout: readout ? (readout.value || readout.textContent) : null,
          sliders: document.querySelectorAll(".widget-slider").length,
          errors: Array.from(document.querySelectorAll(".jp-OutputArea-output[data-mime-type*='stderr'], .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")).map(e => e.textContent)};
})()
"""


def _wait(chromium, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = chromium.evaluate(STATE_JS)
        if predicate(state):
            return state
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s; last state: "
                         f"{ {k: v for k, v in (state or {}).items() if k != 'src'} }")


def test_explorer_page_responds_to_a_slider_in_the_browser(chromium, shared_mirror_url, real_cache,
                                                            tmp_path):
    voila = Path(sys.executable).with_name("voila")
    assert voila.exists(), "voila is not installed (pip install -e '.[test]')"
    port = _free_port()
    env = {**os.environ, "EMUCAL_MIRROR": shared_mirror_url, "EMUCAL_DATA_DIR": str(real_cache),
           "EMUCAL_FAST": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "voila.log", "wb")
    proc = subprocess.Popen(
        [str(voila), "book/explorer.ipynb", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--VoilaConfiguration.show_tracebacks=True"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Voila did not start:\n{(tmp_path / 'voila.log').read_text()[-3000:]}")
                time.sleep(0.5)
        chromium.open(url, timeout=300)
        before = _wait(chromium, lambda s: s["width"] > 0 and s["sliders"] >= 16 and s["handle"],
                       300, "the app did not appear")
        assert not before["errors"], before["errors"]
        chromium.screenshot(ARTIFACTS / "explorer" / "before.png")
        # drag the watsat_sf handle a third of the track to the right, as a user would
        h, track = before["handle"], before["track"]
        x0, y0 = h["x"] + h["w"] / 2, h["y"] + h["h"] / 2
        x1 = min(x0 + track["w"] / 3, track["x"] + track["w"] - 2)
        chromium.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left",
                      clickCount=1)
        for x in np.linspace(x0, x1, 8)[1:]:
            chromium.call("Input.dispatchMouseEvent", type="mouseMoved", x=float(x), y=y0,
                          button="left", buttons=1)
        chromium.call("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y0, button="left",
                      clickCount=1)
        after = _wait(chromium, lambda s: s["src"] != before["src"] and s["scores"] != before["scores"]
                      and s["width"] > 0, 60, "the plot and the scores did not change")
        assert after["readout"] != before["readout"]
        chromium.screenshot(ARTIFACTS / "explorer" / "after.png")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --------------------------------------------------------------- any ensemble (ensemble_app)
from test_ppe import ST as ISHIGAMI_ST  # noqa: E402  (analytic total indices: x1 > x2 > x3)
from test_ppe import ishigami_ppe  # noqa: E402

from emucal import cli, ensemble, sampling  # noqa: E402

LINEAR_RANK = ["x3", "x1", "x2"]  # z = x3 + 0.3 x1: ST 0.917, 0.083, 0


@pytest.fixture(scope="module")
def ppe_file(tmp_path_factory):
    """The Ishigami PPE with a second, linear output, as a netCDF file."""
    path = tmp_path_factory.mktemp("ppe") / "ishigami.nc"
    ishigami_ppe(linear=True).to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def ppe_app(ppe_file):
    import xarray as xr

    return explorer.ensemble_app(xr.load_dataset(ppe_file), n_draws=10)


def test_ensemble_app_ranks_the_known_indices_and_switches_output(ppe_app):
    app = ppe_app
    app.set(output="y")
    ind = app.response.indices
    assert list(ind.param.values) == sorted(ISHIGAMI_ST, key=ISHIGAMI_ST.get, reverse=True)
    for p, truth in ISHIGAMI_ST.items():
        assert float(ind.ST_lo.sel(param=p)) <= truth <= float(ind.ST_hi.sel(param=p))
    assert "R² 0.9" in app.status_html.value  # the cross-validated skill is on the page
    table, indices_png = app.indices_html.value, app.images["indices"].value
    assert [table.index(f">{p}<") for p in ("x1", "x2", "x3")] == sorted(
        table.index(f">{p}<") for p in ("x1", "x2", "x3"))
    app.set(output="z")
    assert list(app.response.indices.param.values) == LINEAR_RANK
    assert app.images["indices"].value != indices_png and app.indices_html.value != table
    assert (app.pair_x.value, app.pair_y.value) == ("x3", "x1")  # the map: the two largest ST


def test_moving_the_point_redraws_curves_map_and_prediction(ppe_app):
    app = ppe_app.set(output="y", x1=0.0, x2=0.0, x3=0.0)
    before = {k: app.images[k].value for k in ("curves", "map")}, dict(app.prediction)
    # the Ishigami function at x = 0 is 0; at x2 = pi/2 it is a = 7
    assert abs(app.prediction["mean"]) < 0.5 and app.prediction["lo"] < 0 < app.prediction["hi"]
    app.sliders["x2"].value = np.pi / 2  # as a user would: the observer redraws
    assert app.prediction["mean"] == pytest.approx(7.0, abs=0.5)
    assert all(app.images[k].value != before[0][k] for k in before[0])
    assert 0 < app.update_seconds < app.view_seconds
    runs = app.space.to_unit(app.response.runs["params"].values)
    here = app.space.to_unit(app.point.values)
    assert app.prediction["nearest"] == pytest.approx(np.linalg.norm(runs - here, axis=1).min())
    # what is drawn is the emulator through the point: line the mean, band +- 1.96 sd, mark the point
    curves = app.response.curves(app.point.values, n=31)
    for k, (band, line, mark) in enumerate(app._curve_parts):
        np.testing.assert_allclose(line.get_ydata(), curves["mean"].values[k])
        np.testing.assert_allclose(band.get_xy()[:31, 1],
                                   curves["mean"].values[k] - 1.96 * curves["sd"].values[k])
        assert mark.get_xdata()[0] == pytest.approx(app.point.iloc[k])


def test_best_run_and_export(ppe_app, tmp_path):
    app = ppe_app.set(output="y")
    app.best_run()
    runs = app.response.runs
    best = runs["params"].values[int(np.argmax(runs["y"].values))]
    np.testing.assert_allclose(app.point.values, best)
    written = app.export(tmp_path)
    assert sorted(p.name for p in written) == sorted(
        ["y_indices.csv", "y_indices.png", "y_curves.png", "y_map.png"])
    table = pd.read_csv(tmp_path / "y_indices.csv", index_col="param")
    assert list(table.index) == ["x1", "x2", "x3"]
    np.testing.assert_allclose(table.ST_hi, app.response.indices.ST_hi.values, rtol=1e-4)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written if p.suffix == ".png")
    app.export_button.click()
    assert app.downloads_html.value.count("download=") == 4


def test_outputs_that_cannot_be_emulated_say_why_on_the_page(ppe_file):
    import xarray as xr

    ds = xr.load_dataset(ppe_file)
    ds["broken"] = ds.y.where(ds.member > 5)  # six failed runs
    app = explorer.ensemble_app(ds, output="broken", n_draws=0)
    assert app.response is None and "NaN in 6 of 300 members" in app.status_html.value
    assert app.images["curves"].value == b""
    with pytest.raises(ValueError, match="nothing to export"):
        app.export("unused")
    app.set(output="y")
    assert app.response is not None and app.problem is None
    # with no output named, the first one that can be emulated is shown
    assert explorer.ensemble_app(ds[["params", "broken", "y"]], n_draws=0).output == "y"


def test_ensemble_app_refuses_what_is_not_an_ensemble(ppe_file):
    import xarray as xr

    ds = xr.load_dataset(ppe_file)
    with pytest.raises(ValueError, match="no variable 'params"):
        explorer.ensemble_app(ds.drop_vars("params"))
    with pytest.raises(ValueError, match="needs at least 10 per parameter, 30 members"):
        explorer.ensemble_app(ds.isel(member=slice(0, 20)))
    with pytest.raises(ValueError, match="'q' is not an output"):
        explorer.ensemble_app(ds, output="q")
    with pytest.raises(ValueError, match="no dimension 'basin'"):
        explorer.ensemble_app(ds, select={"basin": "01013500"})


def test_teaching_model_ensemble_by_basin_and_period(toy):
    forcing, attrs = toy
    space = ParameterSpace.tang2025()
    ens = ensemble.run_ensemble(sampling.sample(space, 10 * len(space), "lhs", seed=0), forcing, attrs,
                                periods={"all": (2002, 2004)})
    ens["norm_kge"] = ens.norm_kge.fillna(-1)
    ens = ens.assign_coords(basin=ens.basin.astype(object))  # as model_outputs writes basin ids
    basins = [str(b) for b in ens.basin.values]
    app = explorer.ensemble_app(ens, output="norm_kge", n_draws=0)
    assert app.select == {"basin": basins[0], "period": "all"}
    first = app.response.indices.ST.values.copy()
    app.set(basin=basins[1])
    # member 0 runs at each basin's own defaults (NaN in params): this basin's are filled in
    member0 = app.response.runs["params"].sel(member=0)
    nan = ens.params.sel(member=0).isnull().values
    assert nan.any()
    np.testing.assert_allclose(member0.values[nan], ens.defaults.sel(basin=basins[1]).values[nan])
    assert not np.allclose(app.response.indices.ST.values, first)  # the other basin's emulator
    with pytest.raises(ValueError, match="basin='nowhere' is not in the ensemble"):
        app.set(basin="nowhere")


def test_what_the_review_found(ppe_file):
    """Log-scaled sliders, atomic set(), draws-less intervals labelled, one parameter, odd datasets."""
    import xarray as xr

    from emucal.parameters import Parameter

    space = ParameterSpace([Parameter("k", None, 1e-3, 20.0, True), Parameter("a", None, 0.0, 1.0)])
    x = sampling.sample(space, 40, "lhs", seed=0, include_default=False)
    y = np.log10(x[:, 0]) + x[:, 1] ** 2
    ds = space.to_dataset(x).assign(y=("member", y))
    app = explorer.ensemble_app(ds, n_draws=0)
    k = app.sliders["k"]  # a log range moves in decades: every part of it can be reached
    assert type(k).__name__ == "FloatLogSlider" and (k.min, k.max) == pytest.approx((-3, np.log10(20)))
    assert "design error only" in app.indices_html.value  # no draws: the intervals say so
    with pytest.raises(ValueError, match="outside its range"):
        app.set(a=0.9, k=100.0)
    assert app.point["a"] == pytest.approx(0.5)  # the centre still: a failed set changes nothing
    one = explorer.ensemble_app(space.subset(["a"]).to_dataset(x[:, 1:]).assign(y=("member", y)),
                                n_draws=0)  # one parameter: curves, no map
    assert one.response is not None and one.images["map"].value
    # an object-dtype coordinate with a constant slice is named, not an AttributeError
    obj = xr.load_dataset(ppe_file)
    obj["q"] = (("member", "basin"), np.stack([obj.y.values, np.ones(obj.sizes["member"])], axis=1))
    obj = obj.assign_coords(basin=np.array(["b1", "b2"], dtype=object))
    app = explorer.ensemble_app(obj, output="q", select={"basin": "b2"}, n_draws=0)
    assert app.response is None and "does not vary" in app.problem
    with pytest.raises(ValueError, match="b3"):  # a failed set changes nothing
        app.set(output="q", basin="b3")
    assert app.output == "q" and app.select == {"basin": "b2"}
    # defaults over basins, an output without basins: no single default to fill in
    with_defaults = ds.assign(defaults=(("basin", "param"), np.ones((2, 2))))
    with_defaults["params"] = with_defaults.params.where(with_defaults.member > 0)
    app = explorer.ensemble_app(with_defaults, n_draws=0)
    assert app.response is None and "defaults that depend on ['basin']" in app.problem
    assert app.prediction == {}
    app.best_button.click()  # nothing to do, no error


# --------------------------------------------------------------- emucal explore (the command)
def test_explore_export_writes_the_indices(ppe_file, tmp_path, capsys):
    assert cli.main(["explore", str(ppe_file), "--output", "z", "--export", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "z_indices.csv", index_col="param")
    assert list(table.index) == LINEAR_RANK
    assert str(tmp_path / "z_curves.png") in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["nowhere.nc"], "no such file"),
    (["{folder}"], "is a folder"),
    (["{text}"], "not a netCDF file"),
    (["{ppe}", "--output", "q"], "'q' is not an output"),
    (["{ppe}", "--select", "basin=1"], "write DIM=VALUE with DIM one of"),
    (["{ppe}", "--select", "member=-3"], "member has no value '-3'"),
    (["{ppe}", "--select", "member=3"], "y has no dimension 'member'"),
])
def test_explore_names_what_is_wrong(args, message, ppe_file, tmp_path, capsys):
    text = tmp_path / "notes.nc"
    text.write_text("not netCDF")
    args = [a.format(folder=tmp_path, text=text, ppe=ppe_file) for a in args]
    assert cli.main(["explore", *args, "--export", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------- emucal explore, in a browser
PPE_STATE_JS = """
(() => {
  const src = cls => { const img = document.querySelector(`img.emucal-ppe-${cls}`);
                       return img ? [img.getAttribute("src"), img.naturalWidth] : [null, 0]; };
  const slider = document.querySelector(".emucal-slider-SLIDER");
  const handle = slider && slider.querySelector(".noUi-handle");
  const track = slider && slider.querySelector(".noUi-target, .slider");
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                      return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const text = cls => { const el = document.querySelector(`.emucal-ppe-${cls}`); return el ? el.textContent : ""; };
  return {indices: src("indices"), curves: src("curves"), map: src("map"),
          ranking: Array.from(document.querySelectorAll(".emucal-ppe-table td.emucal-ppe-param")).map(e => e.textContent),
          status: text("status"), point: text("point"), handle: box(handle), track: box(track),
          errors: Array.from(document.querySelectorAll("[data-mime-type*='stderr']")).map(e => e.textContent)};
})()
"""

CHOOSE_JS = """
(() => {
  const select = document.querySelector(".emucal-ppe-output select");
  const i = Array.from(select.options).findIndex(o => o.textContent.trim() === "OUTPUT");
  select.selectedIndex = i;
  select.dispatchEvent(new Event("change", {bubbles: true}));
  return i;
})()
"""


def _ppe_state(chromium, slider, predicate, timeout, what):
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = chromium.evaluate(PPE_STATE_JS.replace("SLIDER", slider))
        if predicate(state):
            return state
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s; last state: "
                         f"{ {k: v for k, v in (state or {}).items() if k not in ('indices', 'curves', 'map')} }")


def _serve_explore(path: Path, tmp_path: Path, *args: str):
    port = _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "EMUCAL_THREADS": "1"}
    log = open(tmp_path / "explore.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "emucal", "explore", str(path), "--no-browser",
                             f"--port={port}", *args], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return proc, log, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"emucal explore did not start:\n{(tmp_path / 'explore.log').read_text()[-3000:]}")
            time.sleep(0.5)


def _drag(chromium, state, fraction: float):
    """Drag a slider's handle ``fraction`` of its track to the right, as a user would."""
    h, track = state["handle"], state["track"]
    x0, y0 = h["x"] + h["w"] / 2, h["y"] + h["h"] / 2
    x1 = min(x0 + fraction * track["w"], track["x"] + track["w"] - 2)
    chromium.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left", clickCount=1)
    for x in np.linspace(x0, x1, 8)[1:]:
        chromium.call("Input.dispatchMouseEvent", type="mouseMoved", x=float(x), y=y0, button="left",
                      buttons=1)
    chromium.call("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y0, button="left", clickCount=1)


def test_explore_page_in_the_browser(chromium, toy, tmp_path):
    """Serve a teaching-model ensemble with ``emucal explore``, move a slider, change the output.

    The rankings of the Ishigami ensemble, known analytically, are checked on
    the app itself (``test_ensemble_app_ranks_the_known_indices_and_switches_output``):
    the page shows the app's widgets, so one ensemble in the browser suffices.
    """
    forcing, attrs = toy  # an ensemble saved as run_ensemble writes it
    space = ParameterSpace.tang2025()
    ens = ensemble.run_ensemble(sampling.sample(space, 10 * len(space), "lhs", seed=0), forcing,
                                attrs, periods={"all": (2002, 2004)})
    ens["norm_kge"] = ens.norm_kge.fillna(-1)
    path = tmp_path / "teaching.nc"
    ens.to_netcdf(path)
    which, slider, first, second = "teaching_model", "watsat_sf", "norm_kge", "kge_prime"
    proc, log, url = _serve_explore(path, tmp_path, "--output", first)
    shots = ARTIFACTS / "ppe-explorer"
    try:
        chromium.open(url, timeout=300)
        before = _ppe_state(chromium, slider, lambda s: s["curves"][1] > 0 and s["ranking"] and s["handle"],
                            300, "the app did not appear")
        assert not before["errors"], before["errors"]
        assert "cross-validation" in before["status"] and first in before["status"]
        chromium.screenshot(shots / f"{which}-before.png")
        _drag(chromium, before, 0.3)
        moved = _ppe_state(chromium, slider, lambda s: s["curves"][0] != before["curves"][0]
                           and s["map"][0] != before["map"][0] and s["point"] != before["point"],
                           60, "the curves, the map and the prediction did not change")
        assert moved["indices"][0] == before["indices"][0]  # the indices do not depend on the point
        chromium.screenshot(shots / f"{which}-moved.png")
        assert chromium.evaluate(CHOOSE_JS.replace("OUTPUT", second)) >= 0
        after = _ppe_state(chromium, slider, lambda s: second in s["status"].split(":")[0]
                           and s["indices"][0] != before["indices"][0] and s["indices"][1] > 0
                           and s["curves"][0] != moved["curves"][0] and s["map"][0] != moved["map"][0],
                           120, f"the page did not switch to {second}")
        assert not after["errors"], after["errors"]
        chromium.screenshot(shots / f"{which}-{second}.png")
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_explore_selects_a_date_as_typed(ppe_file, tmp_path, capsys):
    import xarray as xr

    ds = xr.load_dataset(ppe_file)
    months = pd.date_range("2001-01-01", periods=2, freq="MS")
    ds["monthly"] = (("member", "month"), np.stack([ds.y.values, ds.z.values], axis=1))
    path = tmp_path / "monthly.nc"
    ds.assign_coords(month=months).to_netcdf(path)
    assert cli.main(["explore", str(path), "--output", "monthly", "--select", "month=2001-02-01",
                     "--export", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    table = pd.read_csv(next((tmp_path / "out").glob("monthly_month-2001-02-01*_indices.csv")),
                        index_col="param")
    assert list(table.index) == LINEAR_RANK  # February is z
