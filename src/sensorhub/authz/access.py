"""Access rules: a union of (organisation, workspace?, entity?, [time_start, time_end)) tuples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

Window = tuple[datetime | None, datetime | None]  # half-open [start, end); None = unbounded


@dataclass(frozen=True, slots=True)
class AccessRule:
    org_id: str
    workspace_id: str | None = None
    entity_id: str | None = None
    time_start: datetime | None = None
    time_end: datetime | None = None

    def matches(self, org_id: str, workspace_id: str | None, entity_id: str | None) -> bool:
        return (
            self.org_id == org_id
            and (self.workspace_id is None or self.workspace_id == workspace_id)
            and (self.entity_id is None or self.entity_id == entity_id)
        )

    @property
    def window(self) -> Window:
        return (self.time_start, self.time_end)


def intersect_window(a: Window, b: Window) -> Window | None:
    start = a[0] if b[0] is None else b[0] if a[0] is None else max(a[0], b[0])
    end = a[1] if b[1] is None else b[1] if a[1] is None else min(a[1], b[1])
    if start is not None and end is not None and start >= end:
        return None
    return (start, end)


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Union of half-open windows, sorted and coalesced."""
    ws = sorted(windows, key=lambda w: (w[0] is not None, w[0] or datetime.min))
    out: list[Window] = []
    for w in ws:
        if out:
            last = out[-1]
            if last[1] is None:
                break  # the last window already runs to +infinity
            if w[0] is None or w[0] <= last[1]:
                end = None if w[1] is None else max(last[1], w[1])
                out[-1] = (last[0], end)
                continue
        out.append(w)
    return out


@dataclass(frozen=True, slots=True)
class Access:
    """What a subject may read for one scope: the union of its rules."""

    rules: tuple[AccessRule, ...]

    @property
    def is_empty(self) -> bool:
        return not self.rules

    @property
    def org_ids(self) -> frozenset[str]:
        return frozenset(r.org_id for r in self.rules)

    def allows(self, org_id: str, workspace_id: str | None, entity_id: str | None) -> bool:
        return any(r.matches(org_id, workspace_id, entity_id) for r in self.rules)

    def windows_for(self, org_id: str, workspace_id: str | None, entity_id: str | None) -> list[Window]:
        """The merged time windows in which this entity's data may be read (empty = no access)."""
        return merge_windows(r.window for r in self.rules if r.matches(org_id, workspace_id, entity_id))

    def clamp(
        self,
        org_id: str,
        workspace_id: str | None,
        entity_id: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> list[Window]:
        """The requested range ``[start, end)`` cut down to the readable windows (possibly several)."""
        out: list[Window] = []
        for w in self.windows_for(org_id, workspace_id, entity_id):
            x = intersect_window(w, (start, end))
            if x is not None:
                out.append(x)
        return out

    def covers_workspace(self, org_id: str, workspace_id: str) -> bool:
        """Whether a rule covers the whole workspace (organisation-wide or for that workspace)."""
        return any(
            r.org_id == org_id and r.workspace_id in (None, workspace_id) and r.entity_id is None
            for r in self.rules
        )

    def entity_rules(self) -> Access:
        """Only the rules that name single entities."""
        return Access(tuple(r for r in self.rules if r.entity_id is not None))

    def for_orgs(self, org_ids: Sequence[str]) -> Access:
        keep = set(org_ids)
        return Access(tuple(r for r in self.rules if r.org_id in keep))


def tenant_access(
    access: Access, orgs: Mapping[str, Any], workspaces: Mapping[str, Any], tenant: str | None
) -> Access:
    """``access`` narrowed by an ``NGSILD-Tenant`` header: ``<org>`` or ``<org>/<workspace>`` (slugs or
    ids, among the credential's ``orgs``/``workspaces``). A tenant the credential does not reach leaves
    nothing (reads as empty / not found, never as "exists elsewhere")."""
    if tenant is None:
        return access
    org_ref, _, ws_ref = tenant.strip().partition("/")
    org = orgs.get(org_ref) or next((o for o in orgs.values() if o.slug == org_ref), None)
    if org is None:
        return Access(())
    narrowed = access.for_orgs([org.id])
    if not ws_ref:
        return narrowed
    ws = workspaces.get(ws_ref)
    if ws is None or ws.org_id != org.id:
        ws = next((w for w in workspaces.values() if w.org_id == org.id and w.slug == ws_ref), None)
    if ws is None:
        return Access(())
    return Access(
        tuple(
            replace(r, workspace_id=ws.id) if r.workspace_id is None else r
            for r in narrowed.rules
            if r.workspace_id in (None, ws.id)
        )
    )
