"""Build the whole book with Jupyter Book, strictly, in FAST mode, and check its HTML.

The build is the session fixture ``book`` (conftest.py), shared with the page
tests in test_pages.py, so the notebooks run once per session. It fails on any
Sphinx warning (-W --keep-going) and on any notebook error
(execute.raise_on_error in _config.yml); it runs in a temporary output folder
and downloads through the mirror served on 127.0.0.1.

The other tests read the built HTML: a link check of the internal links only
(every relative href/src of every page resolves to a file, and every #anchor to
an id on the target page; external links are not followed, this machine has no
network), the citations (sphinxcontrib-bibtex) and the numbered cross-reference
targets (figures, equations, exercises).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

from test_notebooks import toc_files

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.book


def _require_build(book):
    if not (book.html / "index.html").is_file():
        pytest.fail(f"the book was not built (exit {book.returncode}); see "
                    f"test_book_builds_without_warnings and {book.log_path}", pytrace=False)


def test_book_builds_without_warnings(book):
    if book.returncode is None:
        pytest.skip(f"EMUCAL_BOOK_BUILD: reusing the build in {book.root}, not building")
    assert book.returncode == 0, f"jupyter-book build failed (log: {book.log_path}):\n{book.log_tail()}"
    for page in toc_files():
        assert (book.html / f"{page}.html").is_file(), f"{page}.html missing\n{book.log_tail()}"


# --- internal link check ----------------------------------------------------

LINK_ATTRIBUTES = [("a", "href"), ("link", "href"), ("img", "src"), ("script", "src"),
                   ("iframe", "src"), ("source", "src")]


@functools.lru_cache(maxsize=None)
def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(errors="replace"), "html.parser")


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    soup = _soup(path)
    ids = [t["id"] for t in soup.find_all(id=True)]
    return frozenset(ids + [t["name"] for t in soup.find_all("a", attrs={"name": True})])


def broken_internal_links(html: Path) -> tuple[list[str], int]:
    """Every relative link of every page that points to no file, or to no id on an HTML page."""
    broken, checked = [], 0
    html = html.resolve()
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts)
    for page in pages:
        for tag, attribute in LINK_ATTRIBUTES:
            for element in _soup(page).find_all(tag, attrs={attribute: True}):
                url = element[attribute].strip()
                parts = urlsplit(url)
                if parts.scheme or parts.netloc or not url:  # http(s), mailto, data, //host: not ours
                    continue
                checked += 1
                target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
                if target.is_dir():
                    target = target / "index.html"
                where = f"{page.relative_to(html)}: <{tag} {attribute}={url!r}>"
                if not target.is_relative_to(html) or not target.is_file():
                    broken.append(f"{where}: no file {target}")
                elif (parts.fragment and target.suffix == ".html"
                      and unquote(parts.fragment) not in _anchors(target)):
                    broken.append(f"{where}: no id {parts.fragment!r} in {target.relative_to(html)}")
    return broken, checked


def test_internal_links_resolve(book):
    _require_build(book)
    broken, checked = broken_internal_links(book.html)
    print(f"internal links checked: {checked}, broken: {len(broken)}")
    assert checked > 100
    assert not broken, f"{len(broken)} broken internal link(s):\n" + "\n".join(broken[:50])


# --- citations and numbered targets -----------------------------------------

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
FIGURE_NAME = re.compile(r"^[`:]{3,}\{(?:figure|glue:figure)\}.*?^:name:\s*(\S+)", re.M | re.S)
EQUATION_LABEL = re.compile(r"\$\$\s*\(([\w:-]+)\)|\{math\}[^`]*?^:label:\s*(\S+)", re.M | re.S)
EXERCISE_LABEL = re.compile(r"^[`:]{3,}\{exercise\}.*?^:label:\s*(\S+)", re.M | re.S)


def page_figure_names(page: str) -> list[str]:
    """Names of numbered figures: {figure} directives, and code cells with MyST-NB figure metadata."""
    names = FIGURE_NAME.findall(page_markdown(page))
    path = REPO / f"{page}.ipynb"
    if path.is_file():
        for cell in json.loads(path.read_text())["cells"]:
            name = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
            if name:
                names.append(name)
    return names


def page_markdown(page: str) -> str:
    """The Markdown text of a page (.md, or the Markdown cells of an .ipynb)."""
    path = REPO / f"{page}.md"
    if path.is_file():
        return path.read_text()
    cells = json.loads((REPO / f"{page}.ipynb").read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_citations_link_to_the_bibliography(book):
    _require_build(book)
    bibliography = book.html / "book" / "bibliography.html"
    entries = _soup(bibliography).select("main article .citation[role=doc-biblioentry]")
    entry_ids = {e["id"] for e in entries}
    cited = set()
    for page in toc_files():
        uses = [key.strip() for keys in CITE.findall(page_markdown(page)) for key in keys.split(",")]
        cited.update(uses)
        if not uses:
            continue
        links = [a for a in _soup(book.html / f"{page}.html").select("main article a[href]")
                 if urlsplit(a["href"]).path.endswith("bibliography.html") and urlsplit(a["href"]).fragment]
        assert len(links) >= len(uses), f"{page}: {len(uses)} citation(s) in the source, {len(links)} link(s)"
        for link in links:
            assert urlsplit(link["href"]).fragment in entry_ids, f"{page}: {link} points to no entry"
            assert link.get_text(strip=True), f"{page}: empty citation {link}"
    assert cited, "no {cite} role in the book"
    # the bibliography lists the cited works (only those: no :all:)
    assert len(entries) == len(cited), f"{len(entries)} bibliography entries for {len(cited)} cited keys"
    assert all(e.get_text(strip=True) for e in entries)


def test_numbered_figures_equations_and_exercises(book):
    _require_build(book)
    counts = {"figures": 0, "equations": 0, "exercises": 0}
    problems = []
    for page in toc_files():
        text, soup = page_markdown(page), _soup(book.html / f"{page}.html")
        for name in page_figure_names(page):
            counts["figures"] += 1
            figure = soup.find(id=name)
            number = figure.select_one(".caption-number") if figure else None
            if not (number and re.search(r"\d", number.get_text())):
                problems.append(f"{page}: figure {name!r} has no number")
        for label in (a or b for a, b in EQUATION_LABEL.findall(text)):
            counts["equations"] += 1
            equation = soup.find(id=f"equation-{label}")
            number = equation.select_one(".eqno") if equation else None
            if not (number and re.search(r"\d", number.get_text())):
                problems.append(f"{page}: equation {label!r} has no number")
        for label in EXERCISE_LABEL.findall(text):
            counts["exercises"] += 1
            exercise = soup.find(id=label)
            number = exercise.select_one(".caption-number") if exercise else None
            if not (number and re.search(r"Exercise \d+", number.get_text())):
                problems.append(f"{page}: exercise {label!r} has no number")
        # references to numbered targets ({numref}, {eq}, exercises) show the number
        for ref in soup.select("main article .std-numref, main article a[href*='#equation-'], "
                               "main article a[href*='#ex-']"):
            if "headerlink" in ref.get("class", []):  # the target's own permalink
                continue
            if not re.search(r"\d", ref.get_text()):
                problems.append(f"{page}: a reference without its number: {ref}")
    print(f"numbered targets: {counts}")
    assert not problems, "\n".join(problems)
