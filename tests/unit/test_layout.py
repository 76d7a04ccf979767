"""The tree shows the architecture: small modules, and no import cycle anywhere in riverops.

Module-level imports only (an import inside a function runs late and cannot deadlock a
partly initialised module; the CLI keeps River's slow import out of ``--help`` that way).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"streams": "riverops", "schemas": "riverops.schemas", "models": "riverops.models"}
MAX_LINES = 420
"""style.md: a module over ~400 lines is a sign that it holds two ideas."""


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """The riverops modules ``path`` imports at module level (a name imported from a
    package counts as its submodule when there is one). Importing ``a.b.c`` runs the
    ``__init__`` of ``a.b`` first, so the packages on the way count too."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module not in known:
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs if subs else {node.module}
    return out


def _with_packages(imported: set[str], module: str, known: set[str]) -> set[str]:
    """``imported`` plus the packages each import passes through, except the importing
    module's own packages (a submodule's package is initialised before it anyway)."""
    own = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}
    out = set(imported)
    for name in imported:
        parts = name.split(".")
        out |= {p for i in range(2, len(parts)) if (p := ".".join(parts[:i])) in known} - own
    return out


def test_no_module_is_over_the_size_limit() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _with_packages(_imports(path, known), name, known) - {name}
             for name, path in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = path[path.index(module):] + (module,)
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert len(graph) > 60  # the walk saw the whole package
