"""The notebooks' own code: helpers live in one place.

A function or class that two chapters need belongs in ``emucal``; one that a
single chapter needs stays in that chapter. These static checks (no
execution) fail when

- two notebooks define a function or class of the same name,
- two notebooks define the same function under different names (the same
  body once names of arguments and locals are ignored), or
- a notebook defines a function that ``emucal`` already exports, by name or
  by body (a copy of package logic that would drift from it).
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


def notebook_definitions(notebooks=NOTEBOOKS):
    """``{notebook: [definition nodes]}`` of every code cell (IPython magics left out)."""
    found = {}
    for notebook in notebooks:
        cells = nbformat.read(REPO / f"{notebook}.ipynb", as_version=4).cells
        nodes = []
        for cell in cells:
            if cell.cell_type != "code":
                continue
            lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
            nodes += _definitions(ast.parse("\n".join(lines)))
        found[notebook] = nodes
    return found


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
