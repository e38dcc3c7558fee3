"""The resolved, immutable view of a credential that every token-authenticated request carries."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from sensorhub.auth.restrictions import IPNetwork, Restriction
from sensorhub.authz.access import Access, AccessRule, tenant_access

# Responses to a credential within this long of its expiry say so (``expiry_headers``).
EXPIRY_WARNING = timedelta(days=7)
EXPIRES_HEADER = "X-Sensorhub-Token-Expires"


def expiry_headers(expires_at: datetime | None) -> dict[str, str]:
    """The headers a response to a soon-expiring credential carries: when it expires (ISO 8601, for
    programs) and RFC 8594's ``Sunset`` (an HTTP date): after it, this client's requests stop working."""
    if expires_at is None:
        return {}
    at = expires_at.astimezone(UTC)
    return {
        EXPIRES_HEADER: at.isoformat().replace("+00:00", "Z"),
        "Sunset": format_datetime(at.replace(microsecond=0), usegmt=True),
    }


@dataclass(frozen=True, slots=True)
class Withheld:
    """An organisation a credential may not read, and why (said in the 403 of a request that needs it)."""

    org_slug: str
    why: str


@dataclass(frozen=True, slots=True)
class OrgRef:
    id: str
    slug: str
    name: str
    role: str | None  # the owner's role for PATs; None for API keys


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    id: str
    org_id: str
    slug: str
    name: str


@dataclass(frozen=True)
class Principal:
    credential_id: str
    kind: str  # "pat" | "key"
    name: str
    user_id: str | None  # PAT owner (person or API user)
    key_org_id: str | None  # API key's organisation
    owner_label: str
    is_api_user: bool
    token_scopes: frozenset[str]  # as granted to the token
    org_scopes: dict[str, frozenset[str]]  # effective scopes per organisation (token ∩ role)
    rules: tuple[AccessRule, ...]  # owner's grants ∩ token restrictions
    restrictions: tuple[Restriction, ...]
    expires_at: datetime | None
    created_at: datetime
    rate_limit_per_minute: int
    export_row_cap: int
    orgs: dict[str, OrgRef]
    workspaces: dict[str, WorkspaceRef]
    # Rotation: a superseded secret works until ``expires_at`` (its grace); a rotated token's previous
    # secret works until ``previous_valid_until``.
    superseded: bool = False
    previous_valid_until: datetime | None = None
    # Computed once when the credential is resolved; sent while ``expires_soon`` (a comparison a request).
    expiry_headers: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Organisations the credential reaches but may not read (organisation policy), and why.
    withheld: tuple[Withheld, ...] = ()
    # IP allowlists of the organisations it reads (checked per request by org_policy.narrow_to_client).
    org_networks: dict[str, tuple[IPNetwork, ...]] = field(default_factory=dict, compare=False, repr=False)
    # The tenant the request names (``NGSILD-Tenant: <org>`` or ``<org>/<workspace>``), set per request by
    # the route guard: every read through :meth:`access` is narrowed to it, on every API family alike.
    tenant: str | None = None
    _access_cache: dict[str, Access] = field(default_factory=dict, compare=False, repr=False)

    @property
    def scopes(self) -> frozenset[str]:
        """Scopes usable in at least one organisation."""
        out: set[str] = set()
        for s in self.org_scopes.values():
            out |= s
        return frozenset(out)

    def access(self, scope: str) -> Access:
        """What this principal may read or write with ``scope``: rules in organisations where the scope
        is effective."""
        hit = self._access_cache.get(scope)
        if hit is None:
            hit = Access(tuple(r for r in self.rules if scope in self.org_scopes.get(r.org_id, ())))
            if self.tenant is not None:
                hit = tenant_access(hit, self.orgs, self.workspaces, self.tenant)
            self._access_cache[scope] = hit
        return hit

    def for_tenant(self, tenant: str | None) -> Principal:
        """This principal narrowed to the tenant a request names (a copy; the cached one is shared)."""
        if not tenant or tenant == self.tenant:
            return self
        return replace(self, tenant=tenant, _access_cache={})

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def expires_soon(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at - now <= EXPIRY_WARNING
