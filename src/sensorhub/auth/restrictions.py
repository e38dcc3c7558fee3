"""Token restrictions as data.

A credential's ``restrictions`` JSON maps a restriction kind to its value. Each kind is one class that
can (a) narrow the credential's access rules and (b) verify a request. Adding a kind = adding a class
to :data:`RESTRICTION_KINDS`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from sensorhub.authz.access import AccessRule, intersect_window

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestFacts:
    client_ip: str
    now: datetime


class Restriction:
    kind: ClassVar[str]

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        return list(rules)

    def verify(self, facts: RequestFacts) -> str | None:
        """``None`` when the request passes, else the (internal, not user-facing) reason it fails."""
        return None

    def to_json(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Organisations(Restriction):
    kind: ClassVar[str] = "organisations"
    org_ids: frozenset[str]

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        return [r for r in rules if r.org_id in self.org_ids]

    def to_json(self) -> Any:
        return sorted(self.org_ids)


@dataclass(frozen=True)
class Workspaces(Restriction):
    kind: ClassVar[str] = "workspaces"
    # workspace id -> organisation id (resolved when the token is created)
    workspaces: dict[str, str]

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        out: list[AccessRule] = []
        for r in rules:
            if r.workspace_id is None:
                out.extend(
                    replace(r, workspace_id=ws) for ws, org in self.workspaces.items() if org == r.org_id
                )
            elif r.workspace_id in self.workspaces:
                out.append(r)
        return out

    def to_json(self) -> Any:
        return [{"id": ws, "org_id": org} for ws, org in sorted(self.workspaces.items())]


@dataclass(frozen=True)
class Entities(Restriction):
    kind: ClassVar[str] = "entities"
    entity_ids: frozenset[str]

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        out: list[AccessRule] = []
        for r in rules:
            if r.entity_id is None:
                out.extend(replace(r, entity_id=e) for e in sorted(self.entity_ids))
            elif r.entity_id in self.entity_ids:
                out.append(r)
        return out

    def to_json(self) -> Any:
        return sorted(self.entity_ids)


@dataclass(frozen=True)
class TimeWindow(Restriction):
    kind: ClassVar[str] = "time_window"
    start: datetime | None
    end: datetime | None

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        out: list[AccessRule] = []
        for r in rules:
            w = intersect_window(r.window, (self.start, self.end))
            if w is not None:
                out.append(replace(r, time_start=w[0], time_end=w[1]))
        return out

    def to_json(self) -> Any:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


@dataclass(frozen=True)
class AllowedIPs(Restriction):
    kind: ClassVar[str] = "allowed_ips"
    networks: tuple[IPNetwork, ...]

    def verify(self, facts: RequestFacts) -> str | None:
        try:
            ip = ipaddress.ip_address(facts.client_ip)
        except ValueError:
            return "client address unknown"
        if any(ip in n for n in self.networks):
            return None
        return "client address not in allowlist"

    def to_json(self) -> Any:
        return [str(n) for n in self.networks]


def _dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def load(data: dict[str, Any]) -> list[Restriction]:
    """Restrictions from a credential's stored JSON."""
    out: list[Restriction] = []
    if data.get("organisations"):
        out.append(Organisations(frozenset(data["organisations"])))
    if data.get("workspaces"):
        out.append(Workspaces({w["id"]: w["org_id"] for w in data["workspaces"]}))
    if data.get("entities"):
        out.append(Entities(frozenset(data["entities"])))
    tw = data.get("time_window")
    if tw and (tw.get("start") or tw.get("end")):
        out.append(TimeWindow(_dt(tw.get("start")), _dt(tw.get("end"))))
    if data.get("allowed_ips"):
        out.append(AllowedIPs(tuple(ipaddress.ip_network(n, strict=False) for n in data["allowed_ips"])))
    return out


def dump(restrictions: Sequence[Restriction]) -> dict[str, Any]:
    return {r.kind: r.to_json() for r in restrictions}


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Parse an IP allowlist; raises ``ValueError`` naming the bad entry."""
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"'{v}' is not an IP address or CIDR network") from None
    return tuple(nets)


RESTRICTION_KINDS: tuple[type[Restriction], ...] = (
    Organisations,
    Workspaces,
    Entities,
    TimeWindow,
    AllowedIPs,
)
