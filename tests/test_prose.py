"""The chapters' prose against their own runs (issue: every number in the book comes from its run).

Static checks on the committed notebooks, no execution:

- every chapter follows the template: an overview with learning objectives,
  prerequisites and time to learn; exercises with solutions; a summary;
  "What's next"; "Resources and references";
- a decimal number in a chapter's prose is glued from the chapter's run
  (MyST-NB ``{glue:text}``), or cites a paper in the same paragraph, or is one
  of the chapter's own settings (it appears in a code cell), or a fact of the
  parameter table, or on the short allowlist below;
- a count in a chapter's prose ("12 of 19", "in 15 basins") is glued, cited,
  a setting of the chapter, or a fact of the data (the 671 CAMELS basins,
  the 19 of the teaching sample, Tang et al.'s 627 and 16 parameters);
- every glued name that the prose uses is glued by a code cell of the same
  notebook, and no glue role sits inside a code span (where it would not render).
"""

from __future__ import annotations

import re

import nbformat
import pytest

from emucal.parameters import ParameterSpace
from test_notebooks import NOTEBOOKS, REPO

CHAPTERS = [n for n in NOTEBOOKS if re.match(r"book/\d\d_", n)]
TEMPLATE = ["Learning objectives", "Prerequisites", "Time to learn", "{exercise}", "{solution-start}",
            "## Summary", "## What's next", "## Resources and references"]
# decimals that are neither results nor settings: unit conversions and rules of thumb
ALLOWED = {
    "book/01_camels": {"0.3048"},        # feet per metre, in the flow conversion
    "book/03_ensembles": {"0.48", "8.6"},  # CTSM's shallowest and deepest bedrock interfaces (20SL_8.5m)
    "book/04_emulators": {"0.9"},        # the nominal coverage of a 90% interval
    "book/07_diagnostics": {"0.46", "0.8"},  # 2/sqrt(n) for n = 19 and 6
}
# counts that are facts of the data or of the parameter space, not results
FACTS = {"671", "627", "19", "16"}
COUNT = re.compile(r"(?<![\w.])(\d+)(?: (?:out )?of (?:the )?(\d+)| (?:basins|parameters|seeds|signatures)\b)")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
GLUE_ROLE = re.compile(r"\{glue:(?:text|)\}`([A-Za-z_][\w]*)[^`]*`")


def _cells(notebook: str):
    return nbformat.read(REPO / f"{notebook}.ipynb", as_version=4).cells


def _prose(text: str) -> str:
    """Markdown without glue roles, math, code spans and code blocks."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", " ", text)
    text = GLUE_ROLE.sub(" ", text)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"https?://\S+", " ", text)
    return text


def _space_numbers() -> set[str]:
    space = ParameterSpace.tang2025()
    values = [*space.lower, *space.upper, *[d for d in space.defaults if d == d]]
    return {f"{v:g}" for v in values}


def unglued_decimals(notebook: str, cells) -> list[str]:
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    allowed = ALLOWED.get(notebook, set()) | _space_numbers() | set(DECIMAL.findall(code))
    found = []
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", cell.source):
            if "{cite" in paragraph:
                continue  # a paper's figure, cited
            for number in DECIMAL.findall(_prose(paragraph)):
                if number not in allowed:
                    found.append(f"{number} in: {paragraph.strip()[:100]!r}")
    return found


def uncounted_claims(notebook: str, cells) -> list[str]:
    """Counts of basins, parameters or seeds ("12 of 19") that no run, setting or paper backs."""
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    allowed = FACTS | set(re.findall(r"(?<![\w.])\d+(?![\w.])", code))
    found = []
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", cell.source):
            if "{cite" in paragraph:
                continue
            for match in COUNT.finditer(_prose(paragraph)):
                numbers = [n for n in match.groups() if n is not None]
                if any(n not in allowed for n in numbers):
                    found.append(f"{match.group(0)!r} in: {paragraph.strip()[:100]!r}")
    return found


@pytest.mark.parametrize("notebook", CHAPTERS)
def test_chapter_follows_the_template(notebook):
    text = "\n".join(c.source for c in _cells(notebook) if c.cell_type == "markdown")
    missing = [part for part in TEMPLATE if part not in text]
    assert not missing, f"{notebook} lacks {missing}"


@pytest.mark.parametrize("notebook", CHAPTERS)
def test_decimals_in_prose_come_from_the_run(notebook):
    found = unglued_decimals(notebook, _cells(notebook))
    assert not found, ("glue these numbers ({glue:text}`name`), cite their paper in the paragraph, "
                       "or phrase the sentence without them:\n" + "\n".join(found))


@pytest.mark.parametrize("notebook", CHAPTERS)
def test_glued_names_are_glued_by_the_notebook(notebook):
    cells = _cells(notebook)
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    # names glued by the code, f-string fields ({name}) standing for any word
    names = re.findall(r"""glue\(\s*f?["']([\w{}]+)["']""", code)
    glued = [re.compile(re.sub(r"\\\{\w*\\\}", r"\\w+", re.escape(n)) + "$") for n in names]
    used = {m for c in cells if c.cell_type == "markdown" for m in GLUE_ROLE.findall(c.source)}
    never = sorted(u for u in used if not any(g.match(u) for g in glued))
    assert not never, f"used in prose but never glued: {never}"
    inside_code = [c.source for c in cells if c.cell_type == "markdown" and "`{glue" in c.source]
    assert not inside_code, "a glue role inside a code span does not render"


@pytest.mark.parametrize("notebook", CHAPTERS)
def test_counts_in_prose_come_from_the_run(notebook):
    found = uncounted_claims(notebook, _cells(notebook))
    assert not found, ("glue these counts ({glue:text}`name`), cite their paper in the paragraph, "
                       "or phrase the sentence without them:\n" + "\n".join(found))


def test_the_count_check_catches_an_unglued_count():
    cells = [nbformat.v4.new_markdown_cell("The loop beats DDS in 12 of 19 basins."),
             nbformat.v4.new_markdown_cell("In 15 basins the GP wins."),
             nbformat.v4.new_markdown_cell("Glued: {glue:text}`n_win` of 19 basins; all 671 basins."),
             nbformat.v4.new_code_cell("N_SEEDS = 3")]
    found = uncounted_claims("book/xx", cells)
    assert [f.split("'")[1] for f in found] == ["12 of 19", "15 basins"]
    cells.append(nbformat.v4.new_markdown_cell("Over 3 seeds."))
    assert len(uncounted_claims("book/xx", cells)) == 2  # a setting of the chapter


def test_the_decimal_check_catches_an_unglued_result():
    cells = [nbformat.v4.new_markdown_cell("The loop reaches a median KGE' of 0.781 here."),
             nbformat.v4.new_markdown_cell("Glued: {glue:text}`kge:.3f`, cited 0.461 {cite:p}`tang2025lse`."),
             nbformat.v4.new_code_cell("threshold = 0.05")]
    assert [f.split()[0] for f in unglued_decimals("book/xx", cells)] == ["0.781"]


def repeated_paragraphs(cells) -> list[str]:
    """Paragraphs of prose (two lines or more) that appear twice in one page."""
    seen, repeated = set(), []
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", cell.source):
            key = " ".join(paragraph.split())
            if paragraph.count("\n") >= 1 and not paragraph.lstrip().startswith((":::", "```", "|")):
                if key in seen:
                    repeated.append(key[:80])
                seen.add(key)
    return repeated


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_paragraph_is_printed_twice(notebook):
    found = repeated_paragraphs(_cells(notebook))
    assert not found, f"{notebook} prints these paragraphs twice: {found}"


def test_the_repeat_check_catches_a_copied_paragraph():
    text = "A paragraph of prose\nover two lines."
    cells = [nbformat.v4.new_markdown_cell(text), nbformat.v4.new_markdown_cell(text + "\n\nMore.")]
    assert len(repeated_paragraphs(cells)) == 1
    assert repeated_paragraphs(cells[:1]) == []
