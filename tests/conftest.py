"""Shared fixtures: HTTP mirrors on 127.0.0.1 and synthetic CAMELS data sets.

Downloads in the tests go through emucal's real pooch path: a mirror served
from a background thread on a free loopback port, and ``EMUCAL_MIRROR`` set to
it. Two mirrors exist:

``shared_mirror``
    ``../shared/data/camels-mirror`` beside the checkout (the real CAMELS
    files, byte-identical to upstream). Tests that need real data use it.
``synthetic``
    A mirror the test writes itself: small CAMELS-format files with every
    quirk, and a registry patched to their hashes.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import emucal.camels
import emucal.data
import camels_files

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_MIRROR = SHARED / "data" / "camels-mirror"
NATURAL_EARTH = SHARED / "data" / "natural_earth"


def pytest_xdist_auto_num_workers(config):
    """``pytest -n auto`` (``make test``'s unit tests): one worker per CPU of the quota, not per CPU seen."""
    return emucal.usable_cpus()


def pytest_configure(config):
    """A worker of ``pytest -n`` runs on one thread (unless EMUCAL_THREADS says otherwise): workers
    that each took every CPU would fight over them, and PyTorch's threads slow down many times so."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("EMUCAL_THREADS", "1")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests_seen: list[str]

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        self.server.requests_seen.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) until the block ends."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests_seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _fresh_attribute_cache():
    """Each test sees the registry and mirror it set up, not a previous test's."""
    emucal.camels._attributes_cached.cache_clear()
    yield
    emucal.camels._attributes_cached.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _cartopy_offline():
    """Point cartopy at the shared Natural Earth files when nothing else is set."""
    if "CARTOPY_DATA_DIR" not in os.environ and NATURAL_EARTH.is_dir():
        os.environ["CARTOPY_DATA_DIR"] = str(NATURAL_EARTH)
    yield


@pytest.fixture(scope="session")
def shared_mirror_url():
    """URL of the shared CAMELS mirror served on 127.0.0.1 for the whole session."""
    if not SHARED_MIRROR.is_dir():
        pytest.skip(f"real-data test: needs the CAMELS mirror at {SHARED_MIRROR}")
    with serve(SHARED_MIRROR) as (_, url):
        yield url


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emucal-cache")


@pytest.fixture
def real_camels(shared_mirror_url, real_cache, monkeypatch):
    """Real CAMELS data through the mirror, cached once per session."""
    monkeypatch.setenv("EMUCAL_MIRROR", shared_mirror_url)
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(real_cache))
    return shared_mirror_url


class Synthetic:
    """A synthetic mirror: folder, URL, server, cache and the files' truth."""

    dates = pd.date_range("2000-01-01", "2000-03-31", freq="D")
    sample = ["01000001", "02000002"]
    full_only = "03000003"

    def __init__(self, root: Path):
        self.root = root
        self.mirror = root / "mirror"
        self.cache = root / "cache"
        self.truth_forcing = {}
        self.truth_flow = {}
        attr_paths = camels_files.write_attributes(self.mirror / "camels_attributes_v2.0")
        names = {f"camels_attributes_v2.0/{p.name}": p for p in attr_paths.values()}
        for i, basin in enumerate(self.sample):
            huc, _, header_area = camels_files.BASINS[basin]
            f_name = f"camels_sample/basin_mean_forcing/nldas/{huc}/{basin}_lump_nldas_forcing_leap.txt"
            q_name = f"camels_sample/usgs_streamflow/{huc}/{basin}_streamflow_qc.txt"
            # the second basin starts later, so the union of dates has gaps to fill with NaN
            dates = self.dates if i == 0 else self.dates[5:]
            self.truth_forcing[basin] = camels_files.write_forcing(
                self.mirror / f_name, basin, dates, header_area_km2=header_area,
                final_newline=bool(i))
            self.truth_flow[basin] = camels_files.write_streamflow(self.mirror / q_name, basin, dates)
            names[f_name] = self.mirror / f_name
            names[q_name] = self.mirror / q_name
        zip_path = self.mirror / emucal.data.FULL_ZIP
        camels_files.write_full_zip(zip_path, [self.full_only, self.sample[0]], self.dates)
        names[emucal.data.FULL_ZIP] = zip_path
        self.hashes = {name: camels_files.sha256(path) for name, path in names.items()}
        self.urls = {name: f"https://upstream.invalid/{name}" for name in names}


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """Serve a synthetic CAMELS mirror and point emucal's registry and cache at it."""
    data_set = Synthetic(tmp_path)
    monkeypatch.setattr(emucal.data, "_read_registry", lambda: (data_set.hashes, data_set.urls))
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(data_set.cache))
    with serve(data_set.mirror) as (server, url):
        monkeypatch.setenv("EMUCAL_MIRROR", url)
        data_set.server = server
        data_set.url = url
        yield data_set


@pytest.fixture(scope="module")
def toy():
    """Two synthetic basins, four years: a cold snowy one and a warm wet one."""
    time = pd.date_range("2001-01-01", periods=4 * 365, freq="D")
    doy = time.day_of_year.to_numpy()
    rng = np.random.default_rng(7)
    n = len(time)
    temp = np.stack([-2 + 14 * np.sin(2 * np.pi * (doy - 110) / 365),
                     15 + 8 * np.sin(2 * np.pi * (doy - 110) / 365)])
    # about 1100 mm/yr in the cold basin and 2200 mm/yr in the warm one
    prcp = rng.gamma(0.6, 10.0, (2, n)) * (rng.uniform(size=(2, n)) < 0.5) * np.array([[1.0], [2.0]])
    forcing = xr.Dataset({
        "prcp": (("basin", "time"), prcp),
        "tmax": (("basin", "time"), temp), "tmin": (("basin", "time"), temp),
        "srad": (("basin", "time"), np.broadcast_to(200 + 100 * np.sin(2 * np.pi * (doy - 80) / 365), (2, n)).copy()),
        "dayl": (("basin", "time"), np.broadcast_to(43200 + 8000 * np.sin(2 * np.pi * (doy - 80) / 365), (2, n)).copy()),
        "vp": (("basin", "time"), np.full((2, n), 700.0)),
        # a stand-in for observed flow: a smoothed, lagged share of precipitation
        "qobs": (("basin", "time"), np.stack([np.convolve(p, np.full(10, 0.05))[:n] for p in prcp])),
    }, coords={"basin": ["00000001", "00000002"], "time": time})
    attrs = pd.DataFrame({
        "soil_porosity": [0.45, 0.40], "soil_conductivity": [1.5, 3.0],
        "soil_depth_pelletier": [2.0, 5.0], "organic_frac": [1.0, 0.5],
        "clay_frac": [15.0, 25.0], "sand_frac": [40.0, 30.0], "slope_mean": [40.0, 15.0],
        "lai_max": [4.0, 5.0], "lai_diff": [3.0, 1.0], "gauge_lat": [46.0, 33.0],
        "elev_mean": [400.0, 150.0],
    }, index=pd.Index(["00000001", "00000002"], name="basin"))
    return forcing, attrs


class BookBuild:
    """A finished `jupyter-book build` of the repository (see the ``book`` fixture)."""

    def __init__(self, root: Path, returncode: int | None, log_path: Path, seconds: float):
        self.root = root  # --path-output: the build is in root/_build
        self.html = root / "_build" / "html"
        self.returncode = returncode  # None: an earlier build reused (EMUCAL_BOOK_BUILD)
        self.log_path = log_path
        self.seconds = seconds

    def log_tail(self, n: int = 12000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


@pytest.fixture(scope="session")
def book(tmp_path_factory, request):
    """The whole book built once per session, strictly (-W --keep-going), in FAST mode.

    The build (every notebook executed) goes to a temporary folder and downloads
    through the shared mirror when there is one. The fixture does not assert:
    test_book.py checks the exit status; the page tests read what was built.
    To work on the page tests, EMUCAL_BOOK_BUILD=<folder> reuses an earlier
    build (the folder given to --path-output) instead of building again; the
    strict-build test is then skipped.
    """
    import subprocess
    import sys
    import time

    if os.environ.get("EMUCAL_BOOK_BUILD"):
        root = Path(os.environ["EMUCAL_BOOK_BUILD"]).resolve()
        return BookBuild(root, None, root / "build.log", 0.0)
    root = tmp_path_factory.mktemp("book")
    env = dict(os.environ)
    if "EMUCAL_MIRROR" not in env and SHARED_MIRROR.is_dir():
        env["EMUCAL_MIRROR"] = request.getfixturevalue("shared_mirror_url")
    env.update(EMUCAL_FAST="1", EMUCAL_DATA_DIR=str(root / "cache"))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    log_path = root / "build.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run(
            [str(jupyter_book), "build", str(REPO), "--path-output", str(root), "-W", "--keep-going"],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True, timeout=1800,
        )
    built = BookBuild(root, result.returncode, log_path, time.monotonic() - start)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nbook built in {built.seconds:.0f} s (exit {built.returncode}): {built.html}")
    return built
