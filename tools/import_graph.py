"""Guard the code layout: ``python -m tools.import_graph [ROOT]``.

Reads the imports of ``backend/``, ``training/`` and ``qgis_clipcd/`` with :mod:`ast` (nothing is
imported or run) and reports:

- any cycle between modules (imports inside functions count: they are loops postponed, not removed);
- a ``backend`` module importing ``qgis``, ``qgis_clipcd`` or ``training``;
- a ``training`` module importing ``qgis`` or ``qgis_clipcd``;
- a folder holding more than :data:`MAX_MODULES` modules (``__init__.py`` and ``__main__.py`` not counted).

An import edge goes to the module named (``from backend.raster import io`` -> ``backend.raster.io``;
``from backend.errors import InputError`` -> ``backend.errors``), not to the packages above it,
whose ``__init__`` files hold no imports of their children here. Exit code 0 clean, 1 findings.
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "training", "qgis_clipcd")
MAX_MODULES = 12
# What each package may never import (top-level names).
FORBIDDEN = {
    "backend": ("qgis", "qgis_clipcd", "training"),
    "training": ("qgis", "qgis_clipcd"),
}
_NOT_COUNTED = {"__init__.py", "__main__.py"}

_log = logging.getLogger("tools.import_graph")


@dataclass(frozen=True)
class Module:
    """One Python file: its dotted name, path and whether it is a package's ``__init__``."""

    name: str
    path: Path
    is_package: bool


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    """Every ``.py`` file under ``root/<package>``, keyed by dotted module name."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _imported_names(module: Module) -> list[tuple[str, int]]:
    """What ``module`` imports, as absolute dotted names with line numbers.

    ``import a.b`` gives ``a.b``; ``from a import b`` gives ``a.b`` (a module or a name inside ``a``).
    """
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    names: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
    return names


def import_edges(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """For each module, the modules of ``modules`` it imports, each with the line of its first import.

    An imported name goes to the module it names, else to the module that holds it.
    """
    edges: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, module in modules.items():
        for imported, line in _imported_names(module):
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != name:
                edges[name].setdefault(target, line)
    return edges


def find_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted, in name order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, {})):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(cycles)


def forbidden_imports(modules: dict[str, Module]) -> list[str]:
    """``module:line imports name`` for each import that crosses a forbidden boundary."""
    found = []
    for name, module in modules.items():
        banned = FORBIDDEN.get(name.split(".")[0], ())
        for imported, line in _imported_names(module):
            top = imported.split(".")[0]
            if top in banned:
                found.append(f"{module.path.name} ({name}):{line} imports {imported}")
    return sorted(set(found))


def crowded_folders(root: Path, packages: Iterable[str], limit: int = MAX_MODULES) -> list[str]:
    """Folders holding more than ``limit`` modules."""
    found = []
    for package in packages:
        for folder in [root / package, *sorted(p for p in (root / package).rglob("*") if p.is_dir())]:
            count = sum(1 for p in folder.glob("*.py") if p.name not in _NOT_COUNTED)
            if count > limit:
                found.append(f"{folder.relative_to(root)} holds {count} modules (at most {limit})")
    return sorted(found)


def check(root: Path, packages: Sequence[str] = PACKAGES, limit: int = MAX_MODULES) -> list[str]:
    """Every finding as one line; empty when the layout is clean."""
    present = [p for p in packages if (root / p).is_dir()]
    modules = find_modules(root, present)
    problems = [f"import cycle: {' <-> '.join(cycle)}" for cycle in find_cycles(import_edges(modules))]
    problems += [f"forbidden import: {line}" for line in forbidden_imports(modules)]
    problems += crowded_folders(root, present, limit)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Print the findings; exit 1 when there are any."""
    parser = argparse.ArgumentParser(prog="python -m tools.import_graph", description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=ROOT, help="the folder holding the packages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problems = check(args.root)
    for problem in problems:
        _log.error("%s", problem)
    if problems:
        return 1
    present = ", ".join(p for p in PACKAGES if (args.root / p).is_dir())
    _log.info("layout: %s hold no import cycle, no forbidden import, no folder over %d modules", present, MAX_MODULES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
