"""The import graph follows DESIGN.md: data and imports flow one way."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rules", "healers", "exporters", "agent")
# Third-party imports each package may use; the standard library is always allowed.
ALLOWED = {
    "rules": {"yaml", "numpy"},
    "healers": {"rules", "httpx", "redis"},
    "exporters": {"rules", "prometheus_client", "httpx"},
    "agent": {"rules", "healers", "exporters", "agent", "yaml", "numpy", "psutil", "prometheus_client",
              "apscheduler", "httpx", "structlog", "pydantic", "h11", "certifi",
              "dns", "grpc", "grpc_health"},  # dnspython and the grpc extra, for DNS and gRPC checks
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


# None left: the API reads and acts through the narrow protocols of agent/http/view.py, not the Agent.
KNOWN_CYCLES: list[list[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """Our modules ``path`` imports anywhere: at the top, in functions, and under ``if TYPE_CHECKING``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.update([submodule] if submodule in modules else [base] if base in modules else [])
    return found - {name}


def import_cycles() -> list[list[str]]:
    """The strongly connected groups of more than one module in our import graph (Tarjan's algorithm)."""
    paths = {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    graph = {name: imported_modules(name, path, set(paths)) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group: list[str] = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_import_cycles_not_even_through_type_only_imports() -> None:
    """No module imports one that imports it back, directly or around a loop, counting TYPE_CHECKING imports."""
    assert import_cycles() == KNOWN_CYCLES


def test_the_harness_stays_between_tests_and_the_packages() -> None:
    """bench/ and harness/ never import tests/, and no shipped package imports harness/ (it is not in the wheel)."""
    violations = []
    for folder, forbidden in [("bench", "tests"), ("harness", "tests"), *[(p, "harness") for p in PACKAGES]]:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if forbidden in imported_roots(path):  # anywhere: in functions and under TYPE_CHECKING too
                violations.append(f"{path.relative_to(ROOT)} imports {forbidden}")
    assert violations == []

