"""The tree's dependency rules, checked on the imports themselves (docs/internals.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("router_service", "cache_service", "build_engines", "local_stack", "wire")


def _imports(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions), relative imports excluded."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def _project_imports(package: str) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    return {
        str(f.relative_to(ROOT)): {m for m in _imports(f) if m.split(".")[0] in PROJECT}
        for f in files
        if "__pycache__" not in f.parts
    }


def _offending(package: str, allowed: tuple[str, ...]) -> dict[str, set[str]]:
    found = {
        path: {m for m in modules if not any(m == a or m.startswith(a + ".") for a in allowed)}
        for path, modules in _project_imports(package).items()
    }
    return {path: modules for path, modules in found.items() if modules}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        # the pure decision core: the config it decides over, the errors it raises, the wire formats it renders
        ("router_service/core", ("router_service.core", "router_service.config", "router_service.errors", "wire")),
        # shared wire code depends on nothing else in the repository
        ("wire", ("wire",)),
        # the build never imports the services
        ("build_engines", ("build_engines", "wire")),
        # the cache service never imports the router
        ("cache_service", ("cache_service", "wire")),
        # the router uses the cache service only through its published client, its admin token and its scope key
        (
            "router_service",
            ("router_service", "wire", "cache_service.client", "cache_service.auth", "cache_service.scope"),
        ),
    ],
)
def test_imports_follow_the_layout(package: str, allowed: tuple[str, ...]) -> None:
    assert _offending(package, allowed) == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from build_engines.pipeline import key_for\n", encoding="utf-8")
    assert _imports(bad) == {"build_engines.pipeline"}
