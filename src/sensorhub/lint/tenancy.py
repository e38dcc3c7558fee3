"""Refuse tenancy filters written outside ``authz/`` (``python -m sensorhub.lint.tenancy src/sensorhub``).

Which organisation's rows a request may touch is decided in :mod:`sensorhub.authz` (``visible_entities``,
``readable_windows_us``, ``Principal.for_tenant``); a filter on an organisation column or on memberships
written anywhere else is a second, unchecked answer to that question. This lint rejects, outside the
allowed modules:

- ``Entity.org_id == …`` / ``!=`` / ``.in_(…)`` and the same on ``workspace_id`` or on ``Series``
  (a tenant filter on tenant data),
- ``filter_by(org_id=…)`` / ``filter_by(workspace_id=…)``,
- comparisons on ``Membership`` / ``Grant`` columns and ``select(Membership)`` (a membership query),
- calls of ``sql_filter(…)`` (the old hand-written entity filter).

Allowed: ``authz/`` (it decides), the accounts repository/service/invitations (membership management:
listing an organisation's members is not a read of tenant data), the migrations. One approved line
elsewhere carries a ``# tenancy: <why>`` comment on the line above it (a write into an organisation
already authorised, an operator's command naming its organisation).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ALLOWED = (
    "authz/",
    "accounts/repository.py",
    "accounts/service.py",
    "accounts/invitations.py",
    "migrations/",
    "lint/",
)
MARKER = "# tenancy:"
ORG_COLUMNS = frozenset({"org_id", "workspace_id"})
# Tenant data: what a token or a page reads. Management records (credentials, audit events, workspaces)
# are scoped by the organisation a session was authorised for (RequireSession(org_admin=True)).
TENANT_MODELS = frozenset({"Entity", "Series"})
MEMBERSHIP_MODELS = frozenset({"Membership", "Grant"})


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _is_model_column(node: ast.AST, columns: frozenset[str]) -> bool:
    """``Entity.org_id`` and the like: a tenant column of a tenant-data model."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in columns
        and isinstance(node.value, ast.Name)
        and node.value.id in TENANT_MODELS
    )


def _is_membership(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in MEMBERSHIP_MODELS
    )


def _compare(node: ast.Compare) -> str | None:
    sides = [node.left, *node.comparators]
    if any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
        if any(_is_model_column(x, ORG_COLUMNS) for x in sides):
            return "organisation filter: use sensorhub.authz.scope.visible_entities(access)"
        if any(_is_membership(x) for x in sides):
            return "membership filter: memberships are read in authz/ and accounts/ only"
    return None


def _call(node: ast.Call) -> str | None:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    if name == "sql_filter":
        return "hand-written tenancy filter: use sensorhub.authz.scope.visible_entities(access).where()"
    if name == "in_" and isinstance(f, ast.Attribute) and _is_model_column(f.value, ORG_COLUMNS):
        return "organisation filter: use sensorhub.authz.scope.visible_entities(access)"
    if name == "in_" and isinstance(f, ast.Attribute) and _is_membership(f.value):
        return "membership filter: memberships are read in authz/ and accounts/ only"
    if name == "filter_by" and any(k.arg in ORG_COLUMNS for k in node.keywords):
        return "organisation filter: use sensorhub.authz.scope.visible_entities(access)"
    if name == "select" and any(isinstance(a, ast.Name) and a.id in MEMBERSHIP_MODELS for a in node.args):
        return "membership query: memberships are read in authz/ and accounts/ only"
    return None


def _approved(lines: list[str], statement: ast.stmt, node: ast.expr) -> bool:
    """A ``# tenancy: <why>`` comment on the line above the statement holding ``node``, or on a line
    from the statement's first one to the end of ``node``."""
    first = max(statement.lineno - 2, 0)
    last = node.end_lineno or node.lineno
    return any(MARKER in line for line in lines[first:last])


def _message(node: ast.AST) -> str | None:
    if isinstance(node, ast.Compare):
        return _compare(node)
    if isinstance(node, ast.Call):
        return _call(node)
    return None


def _walk(node: ast.AST, statement: ast.stmt | None) -> Iterator[tuple[ast.stmt | None, ast.AST]]:
    """Every node with its innermost enclosing statement."""
    for child in ast.iter_child_nodes(node):
        inner = child if isinstance(child, ast.stmt) else statement
        yield inner, child
        yield from _walk(child, inner)


def check_source(source: str, path: str = "<string>") -> list[Violation]:
    """The violations in one module's source (see :func:`_approved` for the marker)."""
    lines = source.splitlines()
    out: set[Violation] = set()
    for statement, node in _walk(ast.parse(source, path), None):
        message = _message(node)
        if message is None or statement is None or not isinstance(node, ast.expr):
            continue
        if not _approved(lines, statement, node):
            out.add(Violation(path, node.lineno, message))
    return sorted(out, key=lambda v: v.line)


def _modules(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if not any(rel.startswith(a) or rel == a for a in ALLOWED):
            yield p


def check_tree(root: Path) -> list[Violation]:
    """Every violation under ``root`` (the ``sensorhub`` package directory)."""
    out: list[Violation] = []
    for p in _modules(root):
        out.extend(check_source(p.read_text(encoding="utf-8"), str(p)))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "src/sensorhub")
    violations = check_tree(root)
    for v in violations:
        print(v, file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
