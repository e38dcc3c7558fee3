"""What a request may see, as values only this package makes.

Security reasoning: tenancy used to be a WHERE clause every read path wrote by hand
(``access.sql_filter(Entity.org_id, Entity.workspace_id, Entity.entity_id)``) and a window → µs conversion
each one repeated; a new read path could forget either. Now:

- :func:`visible_entities` turns an :class:`~sensorhub.authz.access.Access` (what the credential or the
  session may read, narrowed to the tenant the request names) into a :class:`VisibleEntities`, the only
  source of the SQL filter over entity rows. Repositories take a ``VisibleEntities``, so a query that
  skipped authz does not type-check, and ``sensorhub.lint.tenancy`` (in ``make lint``) rejects any
  organisation or membership filter written outside ``authz/``.
- :func:`readable_windows_us` is the one conversion of an entity's readable time windows (cut to a
  requested range) into the half-open microsecond ranges the stores read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, Protocol, final

from sqlalchemy import and_, false, or_
from sqlalchemy.sql.elements import ColumnElement

from sensorhub.authz.access import Access, Window
from sensorhub.entities.models import Entity
from sensorhub.kit.time import to_us

WindowUS = tuple[int, int]  # half-open [lo, hi) in microseconds since the epoch
US_MIN: Final = -(2**63)  # an unbounded start
US_MAX: Final = 2**63 - 1  # an unbounded end

_MINT = object()  # only this module makes VisibleEntities


class Tenanted(Protocol):
    """Anything that names the entity it belongs to (an ``Entity``, a series row with its entity's ids)."""

    @property
    def org_id(self) -> str: ...
    @property
    def workspace_id(self) -> str | None: ...
    @property
    def entity_id(self) -> str: ...


@final
class VisibleEntities:
    """The entities a request may see (time windows aside: those are applied by the reads). Made by
    :func:`visible_entities` only; repositories require it instead of a raw ``Access`` or org id."""

    __slots__ = ("access", "org_id", "workspace_ids")

    def __init__(
        self,
        access: Access,
        mint: object,
        org_id: str | None = None,
        workspace_ids: frozenset[str] | None = None,
    ) -> None:
        if mint is not _MINT:
            raise TypeError("VisibleEntities comes from sensorhub.authz.visible_entities(access)")
        self.access = access
        self.org_id = org_id
        self.workspace_ids = workspace_ids

    def within(
        self, *, org_id: str | None = None, workspace_ids: Iterable[str] | None = None
    ) -> VisibleEntities:
        """These entities narrowed to the tenant a request names (an organisation, some workspaces):
        it only ever removes entities, never adds one the access does not cover."""
        ws = self.workspace_ids
        if workspace_ids is not None:
            ws = frozenset(workspace_ids) if ws is None else ws & frozenset(workspace_ids)
        if org_id is not None and self.org_id is not None and org_id != self.org_id:
            return VisibleEntities(Access(()), _MINT)
        return VisibleEntities(self.access, _MINT, org_id or self.org_id, ws)

    @property
    def is_empty(self) -> bool:
        return self.access.is_empty

    @property
    def key(self) -> tuple[object, ...]:
        """What :meth:`where` depends on, hashable: equal keys give the same clause (statements built on
        it can be kept and reused for every request with the same reach)."""
        rules = tuple(dict.fromkeys((r.org_id, r.workspace_id, r.entity_id) for r in self.access.rules))
        ws = None if self.workspace_ids is None else tuple(sorted(self.workspace_ids))
        return rules, self.org_id, ws

    def where(self, of: Any = Entity) -> ColumnElement[bool]:
        """The WHERE clause over :class:`Entity` columns selecting exactly these entities (``of``: an
        alias of the table, for a subquery on other entities, e.g. those a Relationship links to)."""
        clauses: list[ColumnElement[bool]] = []
        for key in dict.fromkeys((r.org_id, r.workspace_id, r.entity_id) for r in self.access.rules):
            clauses.append(_rule_clause(of, *key))
        if not clauses:
            return false()
        where = or_(*clauses) if len(clauses) > 1 else clauses[0]
        if self.org_id is not None:
            where = and_(where, of.org_id == self.org_id)
        if self.workspace_ids is not None:
            where = and_(where, of.workspace_id.in_(sorted(self.workspace_ids)))
        return where


def _rule_clause(
    of: Any, org_id: str, workspace_id: str | None, entity_id: str | None
) -> ColumnElement[bool]:
    parts = [of.org_id == org_id]
    if workspace_id is not None:
        parts.append(of.workspace_id == workspace_id)
    if entity_id is not None:
        parts.append(of.entity_id == entity_id)
    return and_(*parts) if len(parts) > 1 else parts[0]


def visible_entities(access: Access) -> VisibleEntities:
    """The entities ``access`` covers, as the value repositories filter by."""
    return VisibleEntities(access, _MINT)


def windows_to_us(windows: Iterable[Window], start_us: int = US_MIN, end_us: int = US_MAX) -> list[WindowUS]:
    """Datetime windows (``None`` = unbounded) cut to ``[start_us, end_us)`` in microseconds, sorted;
    empty ones are dropped."""
    out: list[WindowUS] = []
    for a, b in windows:
        lo = start_us if a is None else max(start_us, to_us(a))
        hi = end_us if b is None else min(end_us, to_us(b))
        if lo < hi:
            out.append((lo, hi))
    out.sort()
    return out


def readable_windows_us(
    access: Access, e: Tenanted, start: datetime | None = None, end: datetime | None = None
) -> list[WindowUS]:
    """The microsecond ranges in which ``e``'s data may be read, cut to ``[start, end)`` (``None`` =
    unbounded, :data:`US_MIN` / :data:`US_MAX`). Empty: nothing of ``e`` is readable in that range."""
    lo = US_MIN if start is None else to_us(start)
    hi = US_MAX if end is None else to_us(end)
    return windows_to_us(access.windows_for(e.org_id, e.workspace_id, e.entity_id), lo, hi)


class ReadableWindows:
    """:func:`readable_windows_us` (unbounded range) for many entities of one request, each distinct
    answer computed once: by ``(organisation, workspace)`` when no rule of ``access`` names an entity
    (then the entity cannot change the answer), else by ``(organisation, workspace, entity)``. A page of
    100 devices in one workspace costs one computation instead of 100."""

    __slots__ = ("_access", "_by_entity", "_seen")

    def __init__(self, access: Access) -> None:
        self._access = access
        self._by_entity = any(r.entity_id is not None for r in access.rules)
        self._seen: dict[tuple[str, str | None, str | None], list[WindowUS]] = {}

    def of(self, e: Tenanted) -> list[WindowUS]:
        key = (e.org_id, e.workspace_id, e.entity_id if self._by_entity else None)
        windows = self._seen.get(key)
        if windows is None:
            windows = self._seen[key] = readable_windows_us(self._access, e)
        return windows
