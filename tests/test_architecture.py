"""The core is reachable without the UI: it never imports Textual (see also lint-imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
UI_PACKAGES = ("textual", "textual_plotext", "plotext", "rich", "tui")


def test_no_core_module_imports_the_ui() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in UI_PACKAGES]
    assert offenders == []


def test_importing_every_core_module_loads_no_ui_package() -> None:
    modules = sorted(".".join(p.relative_to(CORE).with_suffix("").parts).removesuffix(".__init__")
                     for p in CORE.rglob("*.py"))
    assert "collector" in modules and "store.database" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module('core.' + name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {UI_PACKAGES!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports, at any level (type-checking imports too: a
    circle drawn only for the type checker is still a circle)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & modules


def test_no_import_circles() -> None:
    root = CORE.parent
    paths = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for package in ("core", "tui") for p in (root / package).rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    assert graph["core.config"] and graph["tui.app"]  # (the walk sees imports)

    def circle_from(start: str) -> list[str] | None:
        path: list[str] = []

        def visit(node: str) -> list[str] | None:
            if node in path:
                return [*path[path.index(node):], node]
            path.append(node)
            for nxt in sorted(graph[node]):
                if nxt not in done and (found := visit(nxt)):
                    return found
            path.pop()
            done.add(node)
            return None

        return visit(start)

    done: set[str] = set()
    circles = [c for name in sorted(graph) if name not in done and (c := circle_from(name))]
    assert circles == []
