"""The package is laid out as docs/architecture.md says: its folders in layer order, every import pointing at
the same layer or one listed above it, no import cycles, and a docstring on every package saying what it owns.

The layer list is read from the document, so the document cannot drift from the tree without this failing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import ollama_fit

PACKAGE = Path(ollama_fit.__file__).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BASICS = "(basics)"
TOP = "__main__"  # `python -m ollama_fit` runs the CLI: it sits above everything


def layers() -> list[str]:
    """The folder names of the "Layers" block, in order; the basics (top-level modules) first."""
    block = re.search(r"```text\nollama_fit/\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/architecture.md has no ```text block starting with ollama_fit/"
    names = []
    for line in block.group(1).splitlines():
        word = line.split()[0]
        names.append(word.rstrip("/"))
    return names


def modules() -> dict[str, Path]:
    """Dotted module name (without the `ollama_fit.` prefix) -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def concern(module: str, mods: dict[str, Path]) -> str:
    """The folder a module belongs to; a top-level module belongs to the basics."""
    if module in ("", TOP):
        return TOP if module == TOP else BASICS
    first = module.split(".")[0]  # a package folder; the wheel's profiles/ data folder is no package
    return first if (PACKAGE / first / "__init__.py").is_file() else BASICS


def imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """Every ollama_fit module `path` imports, wherever the import statement is (lazy imports too).

    `from ollama_fit.pkg import name` depends on `pkg.name` alone when that is a submodule: the package's
    __init__ then only re-exports, and importing the submodule is what the code needs."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ollama_fit":
            base = node.module.removeprefix("ollama_fit").lstrip(".")
            submodules = [f"{base}.{a.name}".lstrip(".") for a in node.names]
            if all(s in mods for s in submodules):
                found.update(submodules)
            else:
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("ollama_fit").lstrip(".") for a in node.names if a.name.startswith("ollama_fit")
            )
    return found


def test_the_documented_folders_are_the_package_folders():
    listed = [name for name in layers() if name != BASICS]
    actual = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert sorted(listed) == actual
    assert len(set(listed)) == len(listed)


def test_every_package_says_what_it_owns():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(PACKAGE)} has no docstring"


def test_imports_point_down_the_layers():
    order = {name: i for i, name in enumerate(layers())}
    order[TOP] = len(order)
    mods = modules()
    upward = []
    for module, path in mods.items():
        rank = order[concern(module, mods)]
        for target in imports(path, mods):
            if order[concern(target, mods)] > rank:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_import_cycles():
    mods = modules()
    graph = {m: {t for t in imports(p, mods) if t in mods and t != m} for m, p in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ollama_fit.cli import render\n", {"cli.render"}),
        ("from ollama_fit.memory import estimate, Runtime\n", {"memory"}),
        ("def f():\n    from ollama_fit.plan.planner import plan\n", {"plan.planner"}),
        ("import ollama_fit.hub.repos\n", {"hub.repos"}),
    ],
)
def test_the_import_reader_sees_what_a_module_needs(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports(path, modules()) == expected
