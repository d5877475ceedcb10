"""The notebooks' own code: the method on the page, one copy of the truth.

A chapter writes the algorithm it teaches in its visible cells. Where a later
chapter, the explorer or a benchmark needs it, the cell starts with the marker
``#@save emucal.<module>`` (d2l's pattern) and ``emucal.<module>`` holds the
same definitions: the chapter is the source, the package keeps a copy with type
hints and a NumPy docstring. These static checks (no execution) fail when

- a saved cell holds anything but imports and definitions, or names a module
  that does not exist,
- a saved definition differs from the package's (docstrings and type hints
  aside), or the package lacks it,
- two notebooks define a function or class of the same name,
- two notebooks define the same function under different names (the same
  body once names of arguments and locals are ignored), or
- a notebook defines, outside a saved cell, a function that ``emucal``
  already exports, by name or by body (a copy of package logic that would
  drift from it).

and, for the page a reader sees (``../shared/DESIGN.md``, "Rules of the house"), when

- a code cell the book shows (no ``remove-cell`` or ``remove-input`` tag) calls
  ``glue`` or is longer than 25 lines,
- a cell shows a figure (``plt.show()``, ``plt.subplots``, a drawing function of
  ``emucal.plotting`` without ``ax=``, or a trailing ``fig``/``.figure``) without
  ``mystnb`` figure metadata with a caption and a name, puts a second display
  output or a second figure under the caption, or the markdown never names the
  figure in a ``{numref}`` or ``{ref}`` role, or
- a name breaks the vocabulary: ``sse``/``lse`` bound to a string or to what
  ``loop``, ``iterate``, ``dds`` and the like return (histories, not emulators);
  ``attrs`` bound to anything but ``camels.attributes()`` or a selection of it;
  a design from ``sampling.sample`` or ``sobol_design`` not named with
  ``params``/``initial`` or ``unit``; one name bound both to a string literal
  (an option) and to a call result (an object).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections import defaultdict

import nbformat
import pytest

import emucal
from test_notebooks import NOTEBOOKS, REPO


def _definitions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def _body_key(node) -> str:
    """The definition's structure without its name, docstring, argument and local names."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                             ast.Constant):
        body = body[1:]  # the docstring
    names: dict[str, str] = {}

    class Rename(ast.NodeTransformer):
        def visit_Name(self, n):
            return ast.copy_location(ast.Name(id=names.setdefault(n.id, f"v{len(names)}"),
                                              ctx=n.ctx), n)

        def visit_arg(self, n):
            return ast.copy_location(ast.arg(arg=names.setdefault(n.arg, f"v{len(names)}")), n)

    args = getattr(node, "args", None)
    module = ast.Module(body=[Rename().visit(ast.parse(ast.unparse(b))) for b in body],
                        type_ignores=[])
    return ast.dump(Rename().visit(args)) + ast.dump(module) if args else ast.dump(module)


SAVE_MARKER = "#@save"


def _cell_tree(cell) -> ast.Module:
    lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def saved_module(cell) -> str | None:
    """``"emucal.x"`` when the cell's first line is ``#@save emucal.x``, else None."""
    first = cell.source.lstrip().split("\n", 1)[0].split()
    if cell.cell_type != "code" or not first or first[0] != SAVE_MARKER:
        return None
    if len(first) != 2:
        raise ValueError(f"a saved cell starts with '{SAVE_MARKER} emucal.<module>'; got {first}")
    return first[1]


def notebook_definitions(notebooks=NOTEBOOKS, *, saved: bool = False):
    """``{notebook: [definition nodes]}`` of the code cells (IPython magics left out):
    the cells outside ``#@save`` cells, or with ``saved=True`` those of the saved cells."""
    found = {}
    for notebook in notebooks:
        cells = nbformat.read(REPO / f"{notebook}.ipynb", as_version=4).cells
        found[notebook] = [node for cell in cells if cell.cell_type == "code"
                           and (saved_module(cell) is not None) == saved
                           for node in _definitions(_cell_tree(cell))]
    return found


def saved_cells(notebooks=NOTEBOOKS):
    """``[(notebook, module name, cell tree)]`` of every ``#@save`` cell."""
    return [(notebook, saved_module(cell), _cell_tree(cell))
            for notebook in notebooks
            for cell in nbformat.read(REPO / f"{notebook}.ipynb", as_version=4).cells
            if saved_module(cell) is not None]


def _plain(node) -> str:
    """The definition's code without its docstrings and type hints."""
    node = ast.parse(ast.unparse(node)).body[0]
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant) \
                    and isinstance(n.body[0].value.value, str):
                n.body = n.body[1:] or [ast.Pass()]
            if not isinstance(n, ast.ClassDef):
                n.returns = None
        if isinstance(n, ast.arg):
            n.annotation = None
    return ast.dump(node)


def saved_differences(cells) -> list[str]:
    """What differs between the saved cells and the package."""
    import importlib

    out = []
    for notebook, module_name, tree in cells:
        if not module_name.startswith("emucal."):
            out.append(f"{notebook}: '{SAVE_MARKER} {module_name}' names no emucal module")
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            out.append(f"{notebook}: '{SAVE_MARKER} {module_name}' names no emucal module")
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out.append(f"{notebook}: a saved cell holds '{ast.unparse(node)[:40]}'; saved cells "
                           "hold imports and definitions only")
                continue
            if not hasattr(module, node.name):
                out.append(f"{notebook} saves {node.name}, which {module_name} lacks")
                continue
            mine = ast.parse(textwrap.dedent(inspect.getsource(getattr(module, node.name)))).body[0]
            if _plain(mine) != _plain(node):
                out.append(f"{notebook}:{node.name} differs from {module_name}.{node.name}")
    return out


def repeated_definitions(found) -> list[str]:
    """Names or bodies defined in more than one notebook."""
    by_name, by_body = defaultdict(set), defaultdict(set)
    for notebook, nodes in found.items():
        for node in nodes:
            by_name[node.name].add(notebook)
            if len(node.body) > 1 or not isinstance(node.body[0], (ast.Pass, ast.Expr)):
                by_body[_body_key(node)].add(f"{notebook}:{node.name}")
    return ([f"{name} in {sorted(where)}" for name, where in by_name.items() if len(where) > 1]
            + [f"same body: {sorted(where)}" for where in by_body.values()
               if len({w.split(':')[0] for w in where}) > 1])


def package_functions():
    """``{name: body key}`` of every public function and class of emucal's modules."""
    import importlib
    import pkgutil

    out = {}
    for info in pkgutil.walk_packages(emucal.__path__, "emucal."):
        if info.name.split(".")[-1].startswith("_") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
                out[name] = _body_key(tree.body[0])
    return out


def copies_of_the_package(found, package) -> list[str]:
    bodies = {key: name for name, key in package.items()}
    out = []
    for notebook, nodes in found.items():
        for node in nodes:
            if node.name in package:
                out.append(f"{notebook} defines {node.name}, which emucal exports")
            elif _body_key(node) in bodies:
                out.append(f"{notebook}:{node.name} copies emucal's {bodies[_body_key(node)]}")
    return out


def test_no_helper_is_defined_in_two_notebooks():
    assert repeated_definitions(notebook_definitions()) == []


def test_no_notebook_copies_a_function_of_emucal():
    assert copies_of_the_package(notebook_definitions(), package_functions()) == []


def test_saved_cells_and_the_package_hold_the_same_code():
    assert saved_differences(saved_cells()) == []


def test_the_chapters_write_the_methods_they_teach():
    saved = {nb: {node.name for node in nodes}
             for nb, nodes in notebook_definitions(saved=True).items()}
    assert {"matern52", "BatchedGP", "fit_gp", "gp_predict"} <= saved["book/04_emulators"]


def test_the_saved_check_catches_a_change():
    from emucal import emulators

    source = textwrap.dedent(inspect.getsource(emulators.gp_predict))
    same = ast.parse("import torch\n" + source.replace("(model, x)", "(model: object, x)"))
    assert saved_differences([("nb", "emucal.emulators", same)]) == []
    changed = ast.parse(source.replace("clamp_min(0)", "clamp_min(1e-9)"))
    assert saved_differences([("nb", "emucal.emulators", changed)]) == [
        "nb:gp_predict differs from emucal.emulators.gp_predict"]
    assert saved_differences([("nb", "emucal.nowhere", same)]) == [
        "nb: '#@save emucal.nowhere' names no emucal module"]
    assert saved_differences([("nb", "emucal.emulators", ast.parse("x = 1"))]) == [
        "nb: a saved cell holds 'x = 1'; saved cells hold imports and definitions only"]


def test_the_checks_catch_a_renamed_copy():
    one = ast.parse("def best_run(h, n):\n    '''doc'''\n    s = h.skill[:n]\n    return s.max()\n")
    two = ast.parse("def top(history, k):\n    skill = history.skill[:k]\n    return skill.max()\n")
    other = ast.parse("def top(history, k):\n    skill = history.skill[:k]\n    return skill.min()\n")
    assert len(repeated_definitions({"a": _definitions(one), "b": _definitions(two)})) == 1
    assert repeated_definitions({"a": _definitions(one), "b": _definitions(other)}) == []
    assert repeated_definitions({"a": _definitions(two), "b": _definitions(other)}) == [
        "top in ['a', 'b']"]
    package = {"best": _body_key(_definitions(one)[0]), "load_basins": "x"}
    assert copies_of_the_package({"c": _definitions(two)}, package) == [
        "c:top copies emucal's best"]
    shadow = ast.parse("def load_basins():\n    return 1\n")
    assert copies_of_the_package({"c": _definitions(shadow)}, package) == [
        "c defines load_basins, which emucal exports"]


# ---------------------------------------------------------------------------
# The page a reader sees (issue 29, items 6 and 7): bookkeeping in hidden cells,
# short visible cells, captioned figures referenced by number, one vocabulary.
# ---------------------------------------------------------------------------

HIDDEN_CODE = {"remove-cell", "remove-input"}  # tags whose code the book does not show
MAX_VISIBLE_LINES = 25
# variables that name an emulator and nothing else; the calls that return a
# calibration history or an ensemble, never an emulator
EMULATOR_NAMES = {"sse", "lse"}
NOT_EMULATORS = {"loop", "iterate", "dds", "regionalise", "checkpoint", "best", "make_history",
                 "run_ensemble", "open_dataset", "load_dataset"}
# calls whose value is None, so that a trailing one displays nothing
NO_DISPLAY = {"show", "print", "tight_layout", "savefig", "close"}
# calls that return a string: their result may share a name with a string literal
STRING_CALLS = {"str", "repr", "format", "join", "replace", "strip", "lstrip", "rstrip", "lower",
                "upper", "title", "capitalize"}
# calls that return a design of parameter sets: physical units, or the unit cube
DESIGN_CALLS = {"sample": ("params", "initial"), "sobol_design": ("unit",)}


def _cells(notebook: str) -> list:
    return nbformat.read(REPO / f"{notebook}.ipynb", as_version=4).cells


def _shown(cell) -> bool:
    """A code cell whose code the book shows."""
    return cell.cell_type == "code" and not set(cell.metadata.get("tags", [])) & HIDDEN_CODE


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def visible_glue(cells) -> list[str]:
    """``glue(...)`` calls in code cells the book shows."""
    return [f"cell {i}: {ast.unparse(node)[:60]}" for i, cell in enumerate(cells) if _shown(cell)
            for node in ast.walk(_cell_tree(cell))
            if isinstance(node, ast.Call) and _call_name(node) == "glue"]


def long_visible_cells(cells, limit: int = MAX_VISIBLE_LINES) -> list[str]:
    """Code cells the book shows that are longer than ``limit`` lines."""
    return [f"cell {i}: {len(cell.source.splitlines())} lines" for i, cell in enumerate(cells)
            if _shown(cell) and len(cell.source.splitlines()) > limit]


def _drawing_functions() -> set[str]:
    """emucal.plotting's functions that draw (they return matplotlib axes or a figure)."""
    from emucal import plotting

    return {name for name, fn in vars(plotting).items() if inspect.isfunction(fn)
            and fn.__module__ == plotting.__name__ and not name.startswith("_")
            and any(word in (inspect.getdoc(fn) or "").split("Returns")[-1].lower()
                    for word in ("axes", "figure"))
            and "Returns" in (inspect.getdoc(fn) or "")}


def _figures_made(tree: ast.Module, drawing: set[str]) -> tuple[int, bool]:
    """(figures the cell creates, whether it shows or returns one)."""
    made, shows = 0, False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) \
                or not isinstance(node.func.value, ast.Name):
            continue
        owner, name = node.func.value.id, node.func.attr
        if owner in ("plt", "pyplot"):
            made += name in ("subplots", "figure", "subplot_mosaic")
            shows |= name in ("show", "subplot")
        elif owner == "plotting" and name in drawing and not any(k.arg == "ax" for k in node.keywords):
            made += 1
    last = tree.body[-1].value if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    returns_figure = (isinstance(last, ast.Name) and last.id in ("fig", "figure")) or \
        (isinstance(last, ast.Attribute) and last.attr in ("fig", "figure"))
    return made, bool(made) or shows or returns_figure


def _other_displays(tree: ast.Module) -> list[str]:
    """What else a figure cell displays: a trailing expression, display(), glue that displays,
    plt.show() in a loop. MyST-NB puts each display output of the cell in the figure."""
    out = []
    last = tree.body[-1].value if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        text = ast.unparse(last)
        is_figure = (isinstance(last, ast.Name) and last.id in ("fig", "figure")) or \
            (isinstance(last, ast.Attribute) and last.attr in ("fig", "figure"))
        if not is_figure and not (isinstance(last, ast.Call) and _call_name(last) in NO_DISPLAY):
            out.append(text[:40])
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "display":
            out.append(ast.unparse(node)[:40])
        if isinstance(node, ast.Call) and _call_name(node) == "glue" and not any(
                k.arg == "display" and isinstance(k.value, ast.Constant) and k.value.value is False
                for k in node.keywords):
            out.append(ast.unparse(node)[:40])
        if isinstance(node, (ast.For, ast.While)) and any(
                isinstance(n, ast.Call) and _call_name(n) == "show" for n in ast.walk(node)):
            out.append("plt.show() in a loop")
    return out


def figure_problems(cells, drawing: set[str] | None = None) -> list[str]:
    """Figures without a MyST caption and name, names the text does not reference
    ({numref} or {ref}), repeated names, and figure cells that display more than the figure."""
    drawing = _drawing_functions() if drawing is None else drawing
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    out, names = [], []
    for i, cell in enumerate(cells):
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or tags & {"remove-cell", "remove-output"}:
            continue
        figure = cell.metadata.get("mystnb", {}).get("figure")
        made, displays = _figures_made(_cell_tree(cell), drawing)
        if not figure:
            if displays:
                out.append(f"cell {i}: a figure without mystnb figure metadata (caption and name)")
            continue
        if not str(figure.get("caption", "")).strip() or not str(figure.get("name", "")).strip():
            out.append(f"cell {i}: the figure needs both a caption and a name, got {sorted(figure)}")
        if made > 1:
            out.append(f"cell {i}: {made} figures under one caption")
        out += [f"cell {i}: the figure cell also displays {what}"
                for what in _other_displays(_cell_tree(cell))]
        if figure.get("name"):
            names.append((i, str(figure["name"])))
    for i, name in names:
        if [n for _, n in names].count(name) > 1:
            out.append(f"cell {i}: figure name {name} is used twice")
        role = r"\{(?:numref|ref)\}`(?:[^`<]*<)?" + re.escape(name) + r">?`"
        if not re.search(role, markdown):
            out.append(f"cell {i}: no {{numref}} or {{ref}} in the text names {name}")
    return out


def _value_kind(value: ast.AST) -> str | None:
    """'str' for a string literal, 'call' for a call that does not build a string."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return "str"
    if isinstance(value, ast.Call) and _call_name(value) not in STRING_CALLS:
        return "call"
    return None


def _bindings(tree: ast.Module):
    """``(name, value node or None, how)`` for every plain name a statement binds:
    assignments (tuples paired element by element), loops over a literal tuple or list
    (each element), and other loop targets (value None)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value, "="
                elif isinstance(target, (ast.Tuple, ast.List)) \
                        and isinstance(node.value, (ast.Tuple, ast.List)) \
                        and len(target.elts) == len(node.value.elts):
                    yield from ((t.id, v, "=") for t, v in zip(target.elts, node.value.elts)
                                if isinstance(t, ast.Name))
                else:
                    yield from ((t.id, None, "=") for t in ast.walk(target)
                                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store))
        elif isinstance(node, (ast.For, ast.comprehension)):
            names = [t.id for t in ast.walk(node.target) if isinstance(t, ast.Name)]
            if isinstance(node.target, ast.Name) and isinstance(node.iter, (ast.Tuple, ast.List)):
                yield from ((node.target.id, v, "in") for v in node.iter.elts)
            else:
                yield from ((name, None, "in") for name in names)


def _is_attribute_table(value: ast.AST) -> bool:
    """``camels.attributes()`` or a selection from it or from ``attrs`` (``attrs.loc[...]``,
    ``attrs[cols]``, ``attrs.drop(...)``)."""
    if isinstance(value, ast.Name):
        return value.id == "attrs"
    if isinstance(value, ast.Call):
        if _call_name(value) == "attributes":
            return True
        return isinstance(value.func, ast.Attribute) and _is_attribute_table(value.func.value)
    if isinstance(value, ast.Subscript):
        return _is_attribute_table(value.value)
    if isinstance(value, ast.Attribute):
        return value.attr in ("loc", "iloc") and _is_attribute_table(value.value)
    return False


def naming_problems(cells) -> list[str]:
    """Names that break the book's vocabulary: ``sse``/``lse`` bound to a string or to a
    calibration history or ensemble; ``attrs`` bound to anything but the attribute table;
    a design of parameter sets not named ``params``/``unit``; a name bound both to a
    string literal (an option) and to a call result (an object)."""
    out, kinds = [], defaultdict(set)
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        tree = _cell_tree(cell)
        for name, value, how in _bindings(tree):
            shown = f"{name} {how} {ast.unparse(value)[:50]}" if value is not None else f"for {name} in ..."
            kind = _value_kind(value) if value is not None else None
            if kind:
                kinds[name].add(kind)
            if name in EMULATOR_NAMES and (value is None or kind == "str" or (
                    isinstance(value, ast.Call) and _call_name(value) in NOT_EMULATORS)):
                out.append(f"cell {i}: {shown}: '{name}' names an emulator only")
            if name == "attrs" and (value is None or not _is_attribute_table(value)):
                out.append(f"cell {i}: {shown}: 'attrs' names the attribute table "
                           "(camels.attributes() or a selection of it) only")
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and _call_name(node.value) in DESIGN_CALLS:
                words = DESIGN_CALLS[_call_name(node.value)]
                for target in node.targets:
                    if isinstance(target, ast.Name) and not any(w in target.id for w in words):
                        out.append(f"cell {i}: {target.id} = {ast.unparse(node.value)[:40]}: a design "
                                   f"is named with {' or '.join(words)}")
    out += [f"'{name}' is both a string literal and a call result" for name, k in kinds.items()
            if k == {"str", "call"}]
    return out


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_glue_is_in_hidden_cells(notebook):
    assert visible_glue(_cells(notebook)) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_visible_cells_are_short(notebook):
    assert long_visible_cells(_cells(notebook)) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_figures_are_captioned_and_referenced(notebook):
    assert figure_problems(_cells(notebook)) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_names_keep_one_vocabulary(notebook):
    assert naming_problems(_cells(notebook)) == []


def _made_up(*cells):
    """A notebook's cells from ``("md", text)``, ``("code", source)`` or
    ``("code", source, metadata)``."""
    out = []
    for kind, source, *metadata in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        cell.metadata.update(metadata[0] if metadata else {})
        out.append(cell)
    return out


def test_the_page_checks_catch_offenders():
    hidden = {"tags": ["remove-cell"]}
    # glue: in a shown cell, also as myst_nb.glue; not in remove-cell or remove-input cells
    cells = _made_up(("code", "x = 1\nglue('x', x, display=False)"),
                     ("code", "myst_nb.glue('y', 2)"),
                     ("code", "glue('x', x, display=False)", hidden),
                     ("code", "%time glue('z', 3)", {"tags": ["remove-input"]}))
    assert visible_glue(cells) == ["cell 0: glue('x', x, display=False)", "cell 1: myst_nb.glue('y', 2)"]
    # length: 26 shown lines fail, 25 pass, hidden cells do not count
    long = "\n".join(f"a{k} = {k}" for k in range(26))
    cells = _made_up(("code", long), ("code", long.rsplit("\n", 1)[0]), ("code", long, hidden))
    assert long_visible_cells(cells) == ["cell 0: 26 lines"]
    # figures: no metadata, no caption, unreferenced, a second display output, two figures
    draw = {"hydrograph"}
    figure = {"mystnb": {"figure": {"name": "fig-a", "caption": "Flow."}}}
    cells = _made_up(("md", "As {numref}`Figure %s <fig-a>` shows, and {ref}`fig-b`."),
                     ("code", "fig, ax = plt.subplots()\nax.plot(x)\nplt.show()", figure),
                     ("code", "plotting.hydrograph(q)"),
                     ("code", "plotting.hydrograph(q, ax=ax)"),  # draws on an existing figure
                     ("code", "fig, ax = plt.subplots()\nplt.show()", hidden),
                     ("code", "app.figure", {"mystnb": {"figure": {"name": "fig-b", "caption": " "}}}),
                     ("code", "plt.subplots()\nplt.show()\nsummary.round(2)",
                      {"mystnb": {"figure": {"name": "fig-c", "caption": "C."}}}),
                     ("code", "plt.figure()\nplt.figure()\nplt.show()", figure))
    assert figure_problems(cells, draw) == [
        "cell 2: a figure without mystnb figure metadata (caption and name)",
        "cell 5: the figure needs both a caption and a name, got ['caption', 'name']",
        "cell 6: the figure cell also displays summary.round(2)",
        "cell 7: 2 figures under one caption",
        "cell 1: figure name fig-a is used twice",
        "cell 6: no {numref} or {ref} in the text names fig-c",
        "cell 7: figure name fig-a is used twice"]
    assert figure_problems(cells[:2], draw) == []
    assert figure_problems(_made_up(("md", "{numref}`fig-ab`"), *[("code", c.source, c.metadata)
                                                                  for c in cells[1:2]]), draw) == [
        "cell 1: no {numref} or {ref} in the text names fig-a"]
    assert "hydrograph" in _drawing_functions() and "conus_projection" not in _drawing_functions()
    # names
    cells = _made_up(("code", "attrs = camels.attributes().loc[ids]\nattrs = attrs[['aridity']]\n"
                              "sse = emulators.GPEmulator().fit(x, y)\nparams = sampling.sample(space, 9)"),
                     ("code", "sse = calibrate.loop(run, space, params, rule, 3)\nlse = dds(run, space, 9)\n"
                              "attrs = ds.attrs\nsamples = sampling.sample(space, 9)\n"
                              "target = 'norm_kge'\ntarget = metrics.to_norm(kge)"),
                     ("code", "for method in ('lhs', 'random'):\n    pass\nmethod = make_method()\n"
                              "label = 'a'\nlabel = ', '.join(names)\n"
                              "unit = sensitivity.sobol_design(space, 8)"))
    assert naming_problems(cells) == [
        "cell 1: sse = calibrate.loop(run, space, params, rule, 3): 'sse' names an emulator only",
        "cell 1: lse = dds(run, space, 9): 'lse' names an emulator only",
        "cell 1: attrs = ds.attrs: 'attrs' names the attribute table (camels.attributes() or a "
        "selection of it) only",
        "cell 1: samples = sampling.sample(space, 9): a design is named with params or initial",
        "'target' is both a string literal and a call result",
        "'method' is both a string literal and a call result"]
    assert naming_problems(cells[:1]) == []
