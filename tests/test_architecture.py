"""The layering of ARCHITECTURE.md, checked on the code's own imports."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1] / "service"
# Higher rank = higher layer; a module may import only from its own rank or lower.
RANKS = {
    "service.cli": 6,
    "service.server": 5,
    "service.api": 4,
    "service.replication": 4,
    "service.wire": 3,
    "service.runtime": 2,
    "service.models": 1,
    "service.estimators": 1,
    "service.losses": 1,
    "service.distributions": 1,
    "service.composite": 1,
    "service.dtypes": 0,
    "service.finite": 0,
    "service.errors": 0,
    "service.knobs": 0,
    "service.settings": 0,
    "service.pb": 0,
}
PB_IMPORTERS = ("service.wire", "service.api.servicer")


def _module(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rank(module: str) -> int:
    for prefix, rank in RANKS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module}: not in a layer of ARCHITECTURE.md")


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SERVICE.rglob("*.py"):
        if "pb" in path.relative_to(SERVICE).parts[:1]:
            continue
        module = _module(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                targets.update(
                    n if (SERVICE.parent / (n.replace(".", "/") + ".py")).exists() else node.module
                    for n in names
                )
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[module] = {t for t in targets if t == "service" or t.startswith("service.")}
    return graph


def test_no_import_runs_up_a_layer() -> None:
    upward = [
        f"{module} → {target}"
        for module, targets in _imports().items()
        for target in targets
        if target != "service" and _rank(target) > _rank(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _imports()
    modules = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_only_the_wire_layer_and_the_servicer_import_the_generated_code() -> None:
    importers = sorted(
        module
        for module, targets in _imports().items()
        if any(t.startswith("service.pb") for t in targets)
    )
    assert importers and all(m.startswith(PB_IMPORTERS) for m in importers), importers
