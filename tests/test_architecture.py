"""The import graph follows DESIGN.md: data and imports flow one way."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rules", "healers", "exporters", "agent")
# Third-party imports each package may use; the standard library is always allowed.
ALLOWED = {
    "rules": {"yaml", "numpy"},
    "healers": {"rules", "httpx", "redis"},
    "exporters": {"rules", "prometheus_client", "httpx", "aiohttp"},
    "agent": {"rules", "healers", "exporters", "agent", "yaml", "numpy", "psutil", "prometheus_client",
              "apscheduler", "httpx", "structlog", "pydantic", "aiohttp"},
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_each_package_imports_only_what_design_allows() -> None:
    """No package imports agent/ (the composition root) or a dependency outside its row in DESIGN.md."""
    violations = []
    for package in PACKAGES:
        allowed = ALLOWED[package] | {package} | set(sys.stdlib_module_names)
        for path in sorted((ROOT / package).rglob("*.py")):
            for root in sorted(imported_roots(path) - allowed):
                violations.append(f"{path.relative_to(ROOT)} imports {root}")
    assert violations == []
