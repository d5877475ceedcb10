"""Tang et al.'s CTSM numbers in the book against the benchmark's table (issue 28).

Static checks, no execution. ``TANG`` in ``benchmarks/calibration_table.py``
holds every median of Tang et al. (2025) that the book quotes, under the
experiment (design) it comes from: their "bigrange" runs (400 initial runs +
3 x 100) and their later runs (200 initial runs + 50 per iteration), scored on
unrouted or on mizuRoute-routed runoff. The designs differ enough that a
number without its design misleads (the best of 400 initial runs is lower than
the best of 200), so:

- a paragraph of prose that quotes a decimal next to Tang et al. cites the
  paper and names a design, and every such decimal is in ``TANG`` under a
  design the paragraph names;
- a code cell holds Tang et al.'s numbers only in a dict keyed by design,
  each value the table's; a bare literal equal to one of their medians fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from test_notebooks import NOTEBOOKS, REPO

BENCHMARK = REPO / "benchmarks" / "calibration_table.py"
# how prose names each design; a paragraph may quote a design's numbers only if it names it
DESIGN_NAMES = {
    "bigrange": r"\bbigrange\b",
    "later": r"\blater\s+experiment\b",
    "later, mizuRoute": r"(?s)(?=.*\blater\s+experiment\b)(?=.*\bmizuRoute\b)",
}
TANG_PARAGRAPH = re.compile(r"\bTang\b|tang2025lse")
# a median of KGE' written out: two or three decimals, as the book quotes them, and no unit
MEDIAN = re.compile(r"(?<![\w.])-?0\.\d{2,3}(?!\d)(?!\.\d)(?!\s*(?:mm|m|km|s|K)\b)(?!\s*[%°])")


def _assigned(path: Path, name: str):
    """The literal value assigned to ``name`` at the top level of a Python file."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} assigns no {name}")


TANG = _assigned(BENCHMARK, "TANG")
TANG_DESIGNS = _assigned(BENCHMARK, "TANG_DESIGNS")


def _prose(text: str) -> str:
    """Markdown without glue roles, math, code spans, code blocks and links."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"\{glue:?\w*\}`[^`]*`", " ", text)
    text = re.sub(r"`[^`\n]*`", " ", text)
    return re.sub(r"https?://\S+", " ", text)


def _named(paragraph: str) -> list[str]:
    return [d for d, pattern in DESIGN_NAMES.items() if re.search(pattern, paragraph)]


def prose_problems(markdown: str, where: str = "") -> list[str]:
    """Tang et al.'s numbers in a page's prose without a citation, a design, or not in TANG."""
    problems = []
    for paragraph in re.split(r"\n\s*\n", markdown):
        if not TANG_PARAGRAPH.search(paragraph):
            continue
        numbers = MEDIAN.findall(_prose(paragraph))
        if not numbers:
            continue
        head = f"{where}: {paragraph.strip()[:90]!r}"
        if "tang2025lse" not in paragraph:
            problems.append(f"{head} quotes {numbers} without citing tang2025lse")
        named = _named(paragraph)
        if not named:
            problems.append(f"{head} quotes {numbers} without naming their design "
                            f"(one of {sorted(DESIGN_NAMES)}: {DESIGN_NAMES})")
            continue
        allowed = {round(v, 3) for d in named for v in TANG[d].values()}
        wrong = [n for n in numbers if round(float(n), 3) not in allowed]
        if wrong:
            problems.append(f"{head} quotes {wrong}, not in TANG under {named}")
    return problems


def _floats(node) -> list[float]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is float]


def code_problems(source: str, where: str = "") -> list[str]:
    """Tang et al.'s numbers in code outside a dict keyed by design, or unlike TANG's."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    theirs = {round(v, 3) for medians in TANG.values() for v in medians.values()}
    problems, inside = [], set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Dict) and node.keys
                and all(isinstance(k, ast.Constant) and k.value in TANG for k in node.keys)):
            continue
        for key, value in zip(node.keys, node.values):
            inside |= {id(n) for n in ast.walk(value)}
            try:
                medians = ast.literal_eval(value)
            except ValueError:
                problems.append(f"{where}: the {key.value!r} medians are not a literal dict")
                continue
            unlike = {k: v for k, v in medians.items() if TANG[key.value].get(k) != v}
            if unlike:
                problems.append(f"{where}: {key.value!r} medians {unlike} differ from TANG's "
                                f"{ {k: TANG[key.value].get(k) for k in unlike} }")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and type(node.value) is float and id(node) not in inside
                and round(node.value, 3) in theirs):
            problems.append(f"{where}: line {node.lineno} writes {node.value}, one of Tang et al.'s "
                            "medians, outside a dict keyed by design")
    return problems


PAGES = [f"{n}.ipynb" for n in NOTEBOOKS] + sorted(
    str(p.relative_to(REPO)) for p in (REPO / "book").glob("*.md"))


def _page_problems(page: str) -> list[str]:
    path = REPO / page
    if path.suffix == ".md":
        return prose_problems(path.read_text(), page)
    problems = []
    for k, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "markdown":
            problems += prose_problems(cell.source, f"{page} cell {k}")
        elif cell.cell_type == "code":
            problems += code_problems(cell.source, f"{page} cell {k}")
    return problems


def test_the_table_names_every_design_and_has_numbers():
    assert set(TANG) == set(TANG_DESIGNS) == set(DESIGN_NAMES)
    for design, medians in TANG.items():
        assert medians, design
        assert all(isinstance(v, float) and -1 < v < 1 for v in medians.values()), design
        runs = re.search(r"(\d+) initial runs \+ (?:\d+ x )?(\d+)", TANG_DESIGNS[design])
        assert runs, f"the description of {design!r} gives no initial runs and batch size"
        initial = [k for k in medians if k.startswith("best of initial")]
        assert all(k == f"best of initial {runs.group(1)}" for k in initial), (design, initial)


@pytest.mark.parametrize("page", PAGES)
def test_tang_numbers_name_their_design_and_match_the_table(page):
    problems = _page_problems(page)
    assert not problems, "\n".join(problems)


def test_a_quote_without_its_design_fails():
    cited = "{cite:p}`tang2025lse`"
    assert prose_problems(f"Tang et al. report 0.195 and 0.514 {cited}.")  # no design
    assert prose_problems("Tang et al.'s bigrange experiment reaches 0.514.")  # no citation
    assert prose_problems(f"Tang et al.'s later experiment reaches 0.514 {cited}.")  # other design
    assert prose_problems(f"Tang et al.'s bigrange experiment reaches 0.519 {cited}.")  # not theirs
    assert not prose_problems(f"Tang et al.'s bigrange experiment reaches 0.514 {cited}.")
    assert not prose_problems(f"Tang et al. {cited}: here {{glue:text}}`kge:.3f`.")  # glued
    assert not prose_problems("Here the median is 0.514.")  # not about Tang et al.


def test_a_tang_number_in_code_outside_a_design_dict_fails():
    assert code_problems('tang = {"default": 0.195, "SSE iteration 3": 0.514}')
    assert code_problems("share = (0.461 - 0.195) / (0.514 - 0.195)")
    assert code_problems('T = {"bigrange": {"default": 0.195, "SSE iteration 3": 0.515}}')  # wrong
    assert not code_problems('T = {"bigrange": {"default": 0.195, "SSE iteration 3": 0.514}}')
    assert not code_problems("threshold = 0.05")
