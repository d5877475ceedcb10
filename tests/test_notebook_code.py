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
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections import defaultdict

import nbformat

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
