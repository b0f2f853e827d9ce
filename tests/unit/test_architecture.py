"""The shape of the code base: imports point one way, modules stay small, examples use the API."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
MAX_LINES = 500
# Each subpackage may import only from the ones before it (and from top-level modules that
# sit below every subpackage: errors, backoff).
LAYERS = [
    "wire",
    "domain",
    "transport",
    "observability",
    "ownership",
    "write",
    "read",
    "processes",
    "ops",
    "gateway",
    "bench",
    "cli",
]
BASE_MODULES = {"runtime.errors", "runtime.backoff", "runtime.log"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_modules() -> dict[str, Path]:
    return {module_name(p): p for p in RUNTIME.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every runtime module ``path`` imports, type-only and function-local imports included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if candidate in modules:
                    yield candidate
                elif target in modules:
                    yield target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name


def graph() -> dict[str, set[str]]:
    modules = runtime_modules()
    return {
        name: {t for t in imports_of(path, modules) if t != name} for name, path in modules.items()
    }


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_no_import_cycle_between_modules() -> None:
    """No runtime module reaches itself through its imports, type-only imports included."""
    edges = graph()
    # Package __init__ files re-export their members; an edge into one is an edge into those.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == "runtime":
                continue  # the public surface imports everything by design
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


def test_subpackages_import_only_layers_below_them() -> None:
    """wire < domain < transport < observability < ownership < write < read < processes < ops <
    gateway < bench < cli: no import points upwards."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for module, targets in graph().items():
        own = subpackage(module)
        for target in targets:
            other = subpackage(target)
            if own is None or other is None or own == other:
                continue
            if rank[other] > rank[own]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_read_side_does_not_import_the_write_side() -> None:
    """Projections depend on the stored envelope and streams, never on actors or the store."""
    crossing = [
        f"{m} -> {t}"
        for m, targets in graph().items()
        for t in targets
        if subpackage(m) == "read" and subpackage(t) == "write"
    ]
    assert crossing == []


def test_top_level_of_runtime_stays_small() -> None:
    """Loose modules at the top of runtime/ are the public surface and a few shared basics."""
    loose = sorted(p.name for p in RUNTIME.glob("*.py"))
    assert len(loose) <= 8, loose


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")), ids=str)
def test_modules_stay_under_the_size_limit(path: Path) -> None:
    """No runtime module grows past the size where it is asking to be split."""
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize(
    "path", sorted([*ROOT.glob("aggregates/*.py"), *ROOT.glob("projections/*.py")]), ids=str
)
def test_examples_import_only_the_public_surface(path: Path) -> None:
    """The example domain imports ``runtime`` exactly as a user's code would."""
    private = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runtime."):
            private.append(node.module)
        if isinstance(node, ast.Import):
            private += [a.name for a in node.names if a.name.startswith("runtime.")]
    assert private == []


def test_runtime_modules_log_through_the_quiet_logger() -> None:
    """No runtime module takes a structlog logger directly: unconfigured, structlog prints to
    stdout, and a library must stay quiet (runtime.log hands lines to logging until then)."""
    direct = [
        str(p.relative_to(ROOT))
        for p in RUNTIME.rglob("*.py")
        if "structlog.get_logger(" in p.read_text() and p.name != "log.py"
    ]
    assert direct == []
