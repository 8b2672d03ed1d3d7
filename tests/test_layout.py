"""The architecture, as the tree shows it: which package may import which, and module sizes.

docs/design.md draws the layout; these checks keep the code to it. Imports are read
with ast from the files themselves, so a new module is held to the rules at once.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450
MAX_TOP_MODULES = 12
# The one module outside a backend that may name it: the registry of [node] server.
REGISTRY = "agent/servers/__init__.py"


def modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def imported(path: Path) -> Iterator[str]:
    """Every module path the file imports, `from a.b import c` as a.b and a.b.c."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def offenders(folders: tuple[str, ...], banned: str, allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in modules(*folders):
        if rel(path).startswith(allowed):
            continue
        hits = {m for m in imported(path) if m == banned or m.startswith(banned + ".")}
        found += [f"{rel(path)} imports {m}" for m in sorted(hits)]
    return found


def test_agent_never_imports_webhook() -> None:
    assert offenders(("agent",), "webhook") == []


def test_bench_never_imports_tests() -> None:
    assert offenders(("bench",), "tests") == []


@pytest.mark.parametrize("banned", ["tests", "bench"])
def test_the_lab_serves_tests_and_bench_and_imports_neither(banned: str) -> None:
    assert offenders(("lab",), banned) == []


@pytest.mark.parametrize("backend", ["agent.servers.dhcpd", "agent.servers.kea"])
def test_only_a_backend_and_the_registry_import_it(backend: str) -> None:
    """The engine, the daemon, the review commands and webhook/ reach dhcpd through the
    seam (agent.servers.base); only its own subpackage knows its tools and files."""
    own = backend.replace(".", "/") + "/"
    found = offenders(("agent", "webhook"), backend, (own, REGISTRY))
    assert found == []


def test_no_module_outgrows_its_job() -> None:
    sizes = {rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in
             modules("agent", "webhook")}  # fmt: skip
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_agent_keeps_few_modules_at_its_top() -> None:
    top = sorted(p.name for p in (ROOT / "agent").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_MODULES, top


def test_every_package_says_what_it_holds() -> None:
    """Each subpackage's __init__ has a docstring: the tree reads from the top down."""
    packages = [p for p in modules("agent", "webhook") if p.name == "__init__.py"]
    silent = [rel(p) for p in packages if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert silent == []
