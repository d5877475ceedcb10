"""Open every page of the built book (_toc.yml) in headless Chromium.

The book is built once per session (the ``book`` fixture in conftest.py, shared
with test_book.py) and served on 127.0.0.1. One headless Chromium (Debian's
``chromium`` package) is driven over the Chrome DevTools Protocol, with the
websocket client of tornado (already installed: ipykernel and jupyter_client
depend on it), so no browser-automation package is needed. Chromium resolves
no host name (``--host-resolver-rules``): the pages load only what the book
ships, the same with or without a network, and nothing waits on a CDN.

For each page it checks that the page loads (HTTP 200, title, main content, no
failed request to the book's own server, no uncaught JavaScript error), that
no cell output holds an error or a traceback, that every figure the executed
notebook made is on the page as an image that loaded (``naturalWidth > 0``),
that the download button (all pages) and the Binder button (notebook pages)
are there, and, on the API page, that every public function and class of every
emucal module is listed with its docstring. A full-page screenshot of each
page is saved as a test artifact in ``test-artifacts/screenshots/`` (or
``$EMUCAL_TEST_ARTIFACTS/screenshots/``).

Chromium is required: these tests fail when it is missing (``.ci/run``
installs it). Set ``EMUCAL_SKIP_BROWSER=1`` to skip them on a machine without it.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

import emucal
from conftest import serve
from test_notebooks import toc_files

REPO = Path(__file__).resolve().parents[1]
PAGES = toc_files()
NOTEBOOK_PAGES = {p for p in PAGES if (REPO / f"{p}.ipynb").is_file()}
ARTIFACTS = Path(os.environ.get("EMUCAL_TEST_ARTIFACTS") or REPO / "test-artifacts")
SCREENSHOTS = ARTIFACTS / "screenshots"
IMAGE_MIME = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
WINDOW = (1280, 2000)
MAX_SCREENSHOT_HEIGHT = 16000  # CSS pixels; longer pages are cut there

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--no-default-browser-check", "--disable-dev-shm-usage",
    # No DNS: every host name fails at once, 127.0.0.1 (the book's server) works.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
]


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, or the first of the usual names on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium with one tab, driven over the DevTools protocol."""

    def __init__(self, binary: str, workdir: Path):
        self.profile = workdir / "profile"  # a new, empty profile
        self.profile.mkdir(parents=True)
        self.log_path = workdir / "chromium.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.loop = asyncio.new_event_loop()
        self.conn = None
        self.events: list[dict] = []
        self._id = 0
        try:
            port = self._wait_for_port(timeout=60)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t["type"] == "page")
            self.conn = self._run(lambda: self._connect(page["webSocketDebuggerUrl"]), 30)
            for domain in ("Page", "Runtime", "Network", "Log"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def _wait_for_port(self, timeout: float) -> int:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DevToolsError(f"Chromium exited with {self.proc.returncode}:\n{self.log_tail()}")
            if port_file.is_file() and (lines := port_file.read_text().split()):
                return int(lines[0])
            time.sleep(0.1)
        raise DevToolsError(f"Chromium did not open its DevTools port in {timeout} s:\n{self.log_tail()}")

    @staticmethod
    async def _connect(url):
        from tornado.websocket import websocket_connect

        return await websocket_connect(url, max_message_size=512 * 2**20)

    def _run(self, make_awaitable, timeout):
        # the awaitable is made inside the loop: tornado binds futures to the running loop
        async def bounded():
            return await asyncio.wait_for(make_awaitable(), timeout)

        return self.loop.run_until_complete(bounded())

    def _receive(self, deadline: float) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        message = self._run(self.conn.read_message, remaining)
        if message is None:
            raise DevToolsError(f"Chromium closed the DevTools connection:\n{self.log_tail()}")
        return json.loads(message)

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        """Send one DevTools command and return its result; events are kept in self.events."""
        self._id += 1
        ident = self._id
        message = json.dumps({"id": ident, "method": method, "params": params})
        self._run(lambda: self.conn.write_message(message), 30)
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._receive(deadline)
            except TimeoutError:
                raise DevToolsError(f"{method}: no answer in {timeout} s") from None
            if message.get("id") == ident:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == name:
                    return event
            try:
                message = self._receive(deadline)
            except TimeoutError:
                raise DevToolsError(f"no {name} in {timeout} s") from None
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str, timeout: float = 60):
        """Evaluate JavaScript in the page (promises awaited) and return its value as JSON."""
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 60) -> "PageVisit":
        """Load url, wait for the load event, the images and the fonts; return what happened."""
        self.events.clear()
        start = time.monotonic()
        nav = self.call("Page.navigate", url=url)
        if nav.get("errorText"):
            raise DevToolsError(f"{url}: {nav['errorText']}")
        self.wait_for_event("Page.loadEventFired", timeout)
        self.evaluate(SETTLE_JS, timeout)
        return PageVisit(url, self.events[:], time.monotonic() - start)

    def screenshot(self, path: Path) -> None:
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = min(max(size["height"], 1), MAX_SCREENSHOT_HEIGHT)
        shot = self.call("Page.captureScreenshot", timeout=120, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": WINDOW[0], "height": height, "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        if self.conn is not None:
            try:
                self._run(lambda: self.conn.write_message(json.dumps({"id": 0, "method": "Browser.close"})), 5)
            except Exception:
                pass
            self.conn.close()
            self.conn = None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.loop.close()
        self._log.close()


# Make every image load now (none stays lazy), then wait for images and fonts.
SETTLE_JS = """
(async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  await document.fonts.ready;
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  return true;
})()
"""

# What only the browser knows: which images loaded, which buttons are shown.
FACTS_JS = """
(() => {
  const shown = el => !!el && el.getClientRects().length > 0;
  const images = Array.from(document.querySelectorAll(".cell_output img")).map(img => ({
      src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
  const button = sel => { const d = document.querySelector(sel);
      return d ? {shown: shown(d.querySelector("button")) || shown(d),
                  links: Array.from(d.querySelectorAll("a")).map(a => ({href: a.href, text: a.textContent.trim()}))}
               : null; };
  return {title: document.title, images: images,
          download: button(".dropdown-download-buttons"), launch: button(".dropdown-launch-buttons"),
          html: document.documentElement.outerHTML};
})()
"""


class PageVisit:
    """The DevTools events of one page load, sorted into what the tests check."""

    def __init__(self, url: str, events: list[dict], seconds: float):
        self.url = url
        self.seconds = seconds
        origin = re.match(r"https?://[^/]+", url).group(0)
        requests = {}
        self.status = None
        self.failed_internal, self.blocked_external, self.js_errors = [], [], []
        for event in events:
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                requests[params["requestId"]] = params["request"]["url"]
            elif method == "Network.responseReceived":
                response = params["response"]
                if params.get("type") == "Document" and response["url"].split("#")[0] == url.split("#")[0]:
                    self.status = response["status"]
                if (response["url"].startswith(origin) and response["status"] >= 400
                        and response["url"] != f"{origin}/favicon.ico"):  # asked by the browser itself
                    self.failed_internal.append(f"{response['url']}: HTTP {response['status']}")
            elif method == "Network.loadingFailed":
                target = requests.get(params["requestId"], "?")
                if target.startswith(origin):
                    self.failed_internal.append(f"{target}: {params.get('errorText')}")
                else:
                    self.blocked_external.append(target)
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                self.js_errors.append(f"{details.get('url', '')}:{details.get('lineNumber')}: {text}")


@pytest.fixture(scope="session")
def chromium():
    if os.environ.get("EMUCAL_SKIP_BROWSER") == "1":
        pytest.skip("EMUCAL_SKIP_BROWSER=1: the page tests are skipped")
    binary = find_chromium()
    if binary is None:
        pytest.fail("the page tests need Chromium: install it (Debian/Ubuntu: apt-get install chromium), "
                    "set CHROMIUM=/path/to/chromium, or set EMUCAL_SKIP_BROWSER=1 to skip these tests",
                    pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="emucal-chromium-"))
    browser = Chromium(binary, workdir)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def book_site(book):
    """The built book's HTML served on 127.0.0.1 for the session."""
    with serve(book.html) as (_, url):
        yield url


@pytest.fixture(scope="session")
def visit(chromium, book, book_site, request):
    """visit(page) -> (PageVisit, facts, soup): the page loaded once, checked by several tests."""
    cache = {}
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # no screenshot of a page that is gone

    def _visit(page: str):
        if page not in cache:
            if not (book.html / f"{page}.html").is_file():
                pytest.fail(f"{page}.html was not built (the book build failed: "
                            f"exit {book.returncode}, see {book.log_path})", pytrace=False)
            loaded = chromium.open(f"{book_site}/{page}.html")
            chromium.screenshot(SCREENSHOTS / f"{page.replace('/', '__')}.png")
            facts = chromium.evaluate(FACTS_JS)
            cache[page] = (loaded, facts, BeautifulSoup(facts.pop("html"), "html.parser"))
        return cache[page]

    start = time.monotonic()
    yield _visit
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and cache:
        seconds = sum(loaded.seconds for loaded, _, _ in cache.values())
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\npage tests: {len(cache)} page(s) in Chromium, {seconds:.1f} s loading, "
                                f"{time.monotonic() - start:.0f} s in all; screenshots in {SCREENSHOTS}")


def executed_notebook(book, page: str):
    """The notebook as the build executed it (jupyter_execute/), or None for a Markdown page."""
    path = book.root / "_build" / "jupyter_execute" / f"{page}.ipynb"
    return nbformat.read(path, as_version=4) if path.is_file() else None


# Errors of the tool chain, not of the book, that break nothing a reader sees.
KNOWN_JS_ERRORS = [
    # Sphinx 7.4 writes inline scripts added after the builder started twice (registry
    # entries re-added in prepare_writing as "" instead of None); sphinx-thebe's
    # `const THEBE_JS_URL = ...` then fails the second time. The first copy ran, and
    # thebe is not used by this book (no live-code launch button).
    "Identifier 'THEBE_JS_URL' has already been declared",
]


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_page_loads(page, visit):
    loaded, facts, soup = visit(page)
    assert loaded.status == 200, f"{page}: HTTP {loaded.status}"
    heading = soup.select_one("main article h1")
    assert heading and heading.get_text(strip=True), f"{page}: no h1 in the article"
    for link in heading.select("a.headerlink"):
        link.decompose()
    assert " ".join(heading.get_text().split()) in " ".join(facts["title"].split()), facts["title"]
    assert len(soup.select_one("main article").get_text(strip=True)) > 200, f"{page}: almost empty"
    assert not loaded.failed_internal, f"{page}: requests that failed:\n" + "\n".join(loaded.failed_internal)
    js_errors = [e for e in loaded.js_errors if not any(known in e for known in KNOWN_JS_ERRORS)]
    assert not js_errors, f"{page}: uncaught JavaScript errors:\n" + "\n".join(js_errors)
    assert (SCREENSHOTS / f"{page.replace('/', '__')}.png").stat().st_size > 1000
    if loaded.blocked_external:
        print(f"{page}: {len(loaded.blocked_external)} external request(s) not loaded (no network "
              f"for the test browser): {sorted(set(loaded.blocked_external))}")


TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
# in stderr: an exception's last line ("ValueError: ...") or a log record at level ERROR
ERROR_LINE = re.compile(r"^([\w.]*(Error|Exception): |ERROR\b|CRITICAL\b)", re.M)


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_no_error_in_cell_outputs(page, visit):
    _, _, soup = visit(page)
    problems = []
    for output in soup.select(".cell_output .output"):
        classes = set(output.get("class", []))
        text = output.get_text()
        if (classes & {"traceback", "error"} or TRACEBACK.search(text)
                or ("stderr" in classes and ERROR_LINE.search(text))):
            problems.append(f"[{' '.join(sorted(classes))}] {text.strip()[:1500]}")
    assert not problems, f"{page}: cell outputs with an error:\n\n" + "\n\n".join(problems)
    # stderr_output: show in _config.yml, so warnings are on the page: allowed, but listed.
    warnings = [o.get_text().strip() for o in soup.select(".cell_output .output.stderr")]
    if warnings:
        print(f"{page}: {len(warnings)} stderr output(s):\n" + "\n".join(w[:300] for w in warnings))


@pytest.mark.book
@pytest.mark.parametrize("page", sorted(NOTEBOOK_PAGES))
def test_every_figure_is_on_the_page(page, visit, book):
    nb = executed_notebook(book, page)
    assert nb is not None, f"{page}: no executed notebook in jupyter_execute/"
    made = sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if out.get("output_type") in ("display_data", "execute_result")
               and any(m in out.get("data", {}) for m in IMAGE_MIME)
               and "remove-output" not in cell.metadata.get("tags", [])
               and "remove-cell" not in cell.metadata.get("tags", []))
    _, facts, _ = visit(page)
    images = facts["images"]
    assert len(images) >= made, f"{page}: the notebook made {made} figure(s), the page shows {len(images)}"
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_download_and_binder_buttons(page, visit):
    _, facts, _ = visit(page)
    download = facts["download"]
    assert download and download["shown"], f"{page}: no download button"
    source = ".ipynb" if page in NOTEBOOK_PAGES else ".md"
    sources = [link["href"] for link in download["links"] if link["href"].endswith(source)]
    assert sources, f"{page}: the download button has no {source} link: {download['links']}"
    with urllib.request.urlopen(sources[0], timeout=10) as response:  # the file is served
        assert response.status == 200 and response.read(), sources[0]
    if page not in NOTEBOOK_PAGES:
        return  # sphinx-book-theme shows launch buttons on notebook pages only
    launch = facts["launch"]
    assert launch and launch["shown"], f"{page}: no launch (Binder) button"
    binder = [link["href"] for link in launch["links"] if "mybinder.org" in link["href"]]
    assert binder, f"{page}: no Binder link among {launch['links']}"
    match = re.fullmatch(r"https://mybinder\.org/v2/gh/emucal/emucal-book/main\?urlpath=lab/tree/(.+)", binder[0])
    assert match, f"{page}: unexpected Binder link {binder[0]}"
    assert (REPO / match.group(1)).is_file(), f"{page}: the Binder link opens {match.group(1)}, not in the repository"


def emucal_modules() -> list[str]:
    """Every public emucal module: emucal._MODULES and those in the package folder, subpackages' too."""
    found = {m.name.removeprefix("emucal.") for m in pkgutil.walk_packages(emucal.__path__, "emucal.")
             if not any(part.startswith("_") for part in m.name.split("."))}
    return sorted(found | set(emucal._MODULES))


def public_api(module_name: str) -> dict[str, object]:
    """Public functions and classes defined in the module (or named in its __all__)."""
    module = importlib.import_module(f"emucal.{module_name}")
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return {name: getattr(module, name) for name in names
            if (inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name)))
            and getattr(getattr(module, name), "__module__", None) == module.__name__}


def _words(text: str) -> list[str]:
    # the docstring's first paragraph without reST markup, as words
    # (Sphinx shows `~a.b.C` as C and `a.b.C` in full)
    text = re.sub(r":\w+:`~[^`]*?([^.`]+)`", r"\1", text)
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text)
    return re.findall(r"[A-Za-z0-9]+", text)


@pytest.mark.book
def test_api_page_lists_every_public_function_with_its_docstring(visit):
    _, _, soup = visit("book/api")
    api_source = (REPO / "book" / "api.md").read_text()
    missing_modules, problems = [], []
    for module_name in emucal_modules():
        qualified = f"emucal.{module_name}"
        if f"automodule:: {qualified}\n" not in api_source + "\n" or not soup.find(id=f"module-{qualified}"):
            missing_modules.append(qualified)
            continue
        for name, obj in public_api(module_name).items():
            entry = soup.find("dt", id=f"{qualified}.{name}")
            if entry is None:
                problems.append(f"{qualified}.{name}: not on the API page"
                                + ("" if inspect.getdoc(obj) else " (it has no docstring)"))
                continue
            body = entry.find_next_sibling("dd")
            paragraph = body.find("p") if body else None
            rendered = _words(paragraph.get_text(" ")) if paragraph else []
            summary = _words((inspect.getdoc(obj) or "").split("\n\n")[0])
            if not rendered or not summary or rendered[:5] != summary[:5]:
                problems.append(f"{qualified}.{name}: docstring not shown (page: {' '.join(rendered[:8])!r}, "
                                f"docstring: {' '.join(summary[:8])!r})")
    if missing_modules:
        problems.insert(0, f"modules missing from the API page (an automodule in book/api.md): {missing_modules}")
    assert not problems, "\n".join(problems)
