"""Token restrictions as data (in the style of PyPI's macaroon caveats).

A credential's ``restrictions`` JSON maps a restriction kind (its registered tag) to its value. Each kind
is one frozen dataclass that (a) narrows the credential's access rules and (b) verifies a request,
answering a truthy :class:`Success` or a falsy :class:`Failure` with its reason. Defining a subclass of
:class:`Restriction` with a ``kind`` registers it in :data:`REGISTRY`, which :func:`load` and
:func:`dump` read: adding a kind is adding one class. Stored values are only ever extended (a new field
has a default), so a credential minted by an older version loads unchanged.

Security trade-off: a stored kind this version does not know is refused (:func:`load` raises) rather
than ignored, so a restriction can never be silently dropped by a downgrade.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from sensorhub.authz.access import AccessRule, intersect_window

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestFacts:
    client_ip: str
    now: datetime


@dataclass(frozen=True, slots=True)
class Success:
    """A request passes a restriction (truthy)."""

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Failure:
    """A request fails a restriction (falsy); ``reason`` is internal, never shown to the caller."""

    reason: str

    def __bool__(self) -> bool:
        return False


Result = Success | Failure


@dataclass(frozen=True, slots=True)
class Input:
    """One field by which a person asks for a restriction: the token-creation API's body member and the
    web form's field of the same name (``ids``: a list of ids, ticked in the form; ``lines``: a list
    typed one per line; ``datetime``: a time with zone, a date in the form)."""

    name: str
    form: Literal["ids", "lines", "datetime"]
    description: str
    label: str


# kind tag -> class, in definition order (the order restrictions load, narrow and verify in).
REGISTRY: dict[str, type[Restriction]] = {}


class Restriction:
    kind: ClassVar[str]
    # How a person asks for it (API body members and form fields); the order is the API's.
    inputs: ClassVar[tuple[Input, ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind in REGISTRY:
            raise TypeError(f"restriction kind '{cls.kind}' is registered twice")
        REGISTRY[cls.kind] = cls

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        return list(rules)

    def verify(self, facts: RequestFacts) -> Result:
        return Success()

    def to_json(self) -> Any:
        raise NotImplementedError

    @classmethod
    def from_json(cls, value: Any) -> Restriction | None:
        """The restriction stored as ``value`` (``None`` for an empty one: it restricts nothing)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Organisations(Restriction):
    kind: ClassVar[str] = "organisations"
    inputs = (Input("organisations", "ids", "Restrict to these organisations", "Organisations"),)
    org_ids: frozenset[str]

    def narrow(self, rules: Sequence[AccessRule]) -> list[AccessRule]:
        return [r for r in rules if r.org_id in self.org_ids]

    def to_json(self) -> Any:
        return sorted(self.org_ids)

    @classmethod
    def from_json(cls, value: Any) -> Restriction | None:
        return cls(frozenset(value)) if value else None


@dataclass(frozen=True)
class Workspaces(Restriction):
    kind: ClassVar[str] = "workspaces"
    inputs = (Input("workspaces", "ids", "Restrict to these workspaces", "Workspaces"),)
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

    @classmethod
    def from_json(cls, value: Any) -> Restriction | None:
        return cls({w["id"]: w["org_id"] for w in value}) if value else None


@dataclass(frozen=True)
class Entities(Restriction):
    kind: ClassVar[str] = "entities"
    inputs = (Input("entities", "lines", "Restrict to these entity ids", "Entities"),)
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

    @classmethod
    def from_json(cls, value: Any) -> Restriction | None:
        return cls(frozenset(value)) if value else None


@dataclass(frozen=True)
class TimeWindow(Restriction):
    kind: ClassVar[str] = "time_window"
    inputs = (
        Input("time_start", "datetime", "Restrict data reads to times ≥ this", "Data from"),
        Input("time_end", "datetime", "Restrict data reads to times < this", "Data until"),
    )
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

    @classmethod
    def from_json(cls, value: Any) -> Restriction | None:
        if not value or not (value.get("start") or value.get("end")):
            return None
        return cls(_dt(value.get("start")), _dt(value.get("end")))


@dataclass(frozen=True)
class AllowedIPs(Restriction):
    kind: ClassVar[str] = "allowed_ips"
    inputs = (Input("allowed_ips", "lines", "Allowed client IPs / CIDR networks", "Allowed IPs"),)
    networks: tuple[IPNetwork, ...]

    def verify(self, facts: RequestFacts) -> Result:
        try:
            ip = ipaddress.ip_address(facts.client_ip)
        except ValueError:
            return Failure("client address unknown")
        if any(ip in n for n in self.networks):
            return Success()
        return Failure("client address not in allowlist")

    def to_json(self) -> Any:
        return [str(n) for n in self.networks]

    @classmethod
    def from_json(cls, value: Any) -> Restriction | None:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in value)) if value else None


def inputs() -> list[Input]:
    """Every registered kind's inputs, in :data:`REGISTRY` order."""
    return [i for cls in REGISTRY.values() for i in cls.inputs]


def _dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def load(data: dict[str, Any]) -> list[Restriction]:
    """Restrictions from a credential's stored JSON, in :data:`REGISTRY` order."""
    unknown = set(data) - set(REGISTRY)
    if unknown:
        raise ValueError(f"unknown restriction kind(s): {', '.join(sorted(unknown))}")
    out: list[Restriction] = []
    for kind, cls in REGISTRY.items():
        r = cls.from_json(data[kind]) if kind in data else None
        if r is not None:
            out.append(r)
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
