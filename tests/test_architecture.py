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
