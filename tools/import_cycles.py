"""Refuse import cycles between any two modules of ``sensorhub`` (``make lint``).

import-linter's contracts check layers and cycles between the siblings of each package; a cycle through
modules of different domain packages (which sit in one layer and may import each other) would pass
them, so this check walks the whole module graph (grimp, the graph import-linter builds) for strongly
connected components. Every import counts, function-level and ``TYPE_CHECKING`` ones included, and
importing ``a.b.c`` counts as importing the packages ``a.b`` and ``a`` too (Python runs their
``__init__`` first), which grimp does not record.
"""

from __future__ import annotations

import sys

import grimp


def _imported_by(graph: grimp.ImportGraph, module: str) -> set[str]:
    out: set[str] = set()
    for w in graph.find_modules_directly_imported_by(module):
        parts = w.split(".")
        # The parent packages' __init__, except the importer's own ancestors (already running).
        out.update(
            p
            for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
            if not module.startswith(p + ".")
        )
    return out


def import_cycles(package: str = "sensorhub") -> list[list[str]]:
    """Every set of modules that import each other in a cycle (empty when the graph is acyclic)."""
    graph = grimp.build_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in _imported_by(graph, v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def main() -> int:
    cycles = import_cycles()
    for c in cycles:
        print("import cycle: " + " <-> ".join(c), file=sys.stderr)
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
