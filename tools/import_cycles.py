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


class _Tarjan:
    """Tarjan's strongly connected components over the module graph."""

    def __init__(self, graph: grimp.ImportGraph) -> None:
        self.graph = graph
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.on_stack: set[str] = set()
        self.cycles: list[list[str]] = []

    def visit(self, v: str) -> None:
        self.index[v] = self.low[v] = len(self.index)
        self.stack.append(v)
        self.on_stack.add(v)
        for w in _imported_by(self.graph, v):
            if w not in self.index:
                self.visit(w)
                self.low[v] = min(self.low[v], self.low[w])
            elif w in self.on_stack:
                self.low[v] = min(self.low[v], self.index[w])
        if self.low[v] == self.index[v]:
            self._pop_component(v)

    def _pop_component(self, root: str) -> None:
        component = []
        while True:
            w = self.stack.pop()
            self.on_stack.discard(w)
            component.append(w)
            if w == root:
                break
        if len(component) > 1:
            self.cycles.append(sorted(component))


def import_cycles(package: str = "sensorhub") -> list[list[str]]:
    """Every set of modules that import each other in a cycle (empty when the graph is acyclic)."""
    graph = grimp.build_graph(package)
    tarjan = _Tarjan(graph)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in tarjan.index:
            tarjan.visit(module)
    return tarjan.cycles


def main() -> int:
    cycles = import_cycles()
    for c in cycles:
        print("import cycle: " + " <-> ".join(c), file=sys.stderr)
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
