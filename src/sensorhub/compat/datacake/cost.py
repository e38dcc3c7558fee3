"""What a GraphQL operation costs, computed from the document and its variables before it runs.

One unit per field, multiplied by how many times it can be returned: a device listing by its ``first``
(default and cap as the REST listing's), the workspaces by how many the credential reaches,
``currentMeasurements`` by :data:`FIELDS_PER_DEVICE`; a ``history`` costs ``resolution × fields`` points;
an ``aggregate`` the devices it may read (×4 over a range: min, max, sum and count are read from the
rollups). An operation over :attr:`Settings.graphql_max_cost` is refused, and so is one that would
take the credential over its budget per minute (:attr:`Settings.graphql_cost_per_minute`, counted
with the shared rate limiter, so every worker sees the same budget).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql.utilities import value_from_ast_untyped

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from sensorhub.timeseries.query import DEFAULT_RESOLUTION, MAX_RESOLUTION
from sensorhub.timeseries.telemetry import LIMITS

FIELDS_PER_DEVICE = 10  # what currentMeasurements is assumed to return when fieldNames is not given
MAX_AGGREGATE_DEVICES = LIMITS.maximum
DEVICE_LISTS = frozenset({"devices", "devicesFiltered", "allDevices"})
WORKSPACE_LISTS = frozenset({"allWorkspaces", "workspaces"})


@dataclass
class Cost:
    total: int = 0
    # The biggest contributions, for the error message ("history: 100000 points × 3 fields").
    parts: list[tuple[int, str]] = field(default_factory=list)

    def explain(self, top: int = 3) -> str:
        biggest = sorted(self.parts, reverse=True)[:top]
        return "; ".join(f"{what} = {n}" for n, what in biggest)


def _int(value: Any, default: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return max(lo, min(hi, value))


def _len(value: Any, default: int) -> int:
    if isinstance(value, list):
        return len(value)
    return default if value is None else 1


def _fields(
    sel: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode], seen: frozenset[str]
) -> Iterator[FieldNode]:
    for node in sel.selections:
        if isinstance(node, FieldNode):
            yield node
        elif isinstance(node, InlineFragmentNode):
            yield from _fields(node.selection_set, fragments, seen)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            frag = fragments.get(name)
            if frag is not None and name not in seen:  # cycles are a validation error anyway
                yield from _fields(frag.selection_set, fragments, seen | {name})


class _Walker:
    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        workspaces: int,
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.workspaces = max(1, workspaces)
        self.cost = Cost()

    def args(self, node: FieldNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in node.arguments or ():
            try:
                out[a.name.value] = value_from_ast_untyped(a.value, dict(self.variables))
            except Exception:
                out[a.name.value] = None
        return out

    def selection(self, sel: SelectionSetNode | None, path: str, seen: frozenset[str] = frozenset()) -> int:
        if sel is None:
            return 0
        return sum(self.field(f, path, seen) for f in _fields(sel, self.fragments, seen))

    def field(self, node: FieldNode, path: str, seen: frozenset[str]) -> int:
        name = node.name.value
        here = f"{path}.{node.alias.value if node.alias else name}".lstrip(".")
        args = self.args(node)
        child = self.selection(node.selection_set, here, seen)
        if name == "history":
            res = _int(args.get("resolution"), DEFAULT_RESOLUTION, 1, MAX_RESOLUTION)
            n = max(1, _len(args.get("fields"), 1))
            own = res * n
            self.cost.parts.append((own, f"{here}: resolution {res} × {n} field(s)"))
            return 1 + own + child
        if name in DEVICE_LISTS:
            first = _int(args.get("first"), LIMITS.default, 0, LIMITS.maximum)
            total = 1 + first * max(1, child)
            self.cost.parts.append((total, f"{here}: first {first} × {max(1, child)} per device"))
            return total
        if name in WORKSPACE_LISTS:
            return 1 + self.workspaces * max(1, child)
        if name == "currentValues":
            return 1 + _len(args.get("fieldNames"), FIELDS_PER_DEVICE)
        if name == "currentMeasurements":
            n = _len(args.get("fieldNames"), FIELDS_PER_DEVICE)
            return 1 + n * max(1, child)
        if name == "aggregate":
            ids = args.get("deviceIds")
            devices = len(ids) if isinstance(ids, list) else MAX_AGGREGATE_DEVICES
            ranged = args.get("timerangestart") is not None or args.get("timerangeend") is not None
            own = devices * (4 if ranged else 1)
            self.cost.parts.append(
                (own, f"{here}: {devices} device(s){' over a range × 4' if ranged else ''}")
            )
            return 1 + own + child
        if name == "recordMeasurements":
            return 1 + _len(args.get("measurements"), 1) + child
        return 1 + child


def operation_cost(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None, workspaces: int
) -> Cost:
    """The cost of the operation ``operation_name`` (or the only one) of ``document``."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        ops = [o for o in ops if o.name is not None and o.name.value == operation_name]
    if len(ops) != 1:
        return Cost()  # graphql-core reports the missing or ambiguous operation
    walker = _Walker(fragments, variables or {}, workspaces)
    walker.cost.total = walker.selection(ops[0].selection_set, "")
    return walker.cost
