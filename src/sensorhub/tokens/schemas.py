"""Wire models for credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from sensorhub.schemas import StrictModel
from sensorhub.tokens.models import Credential
from sensorhub.tokens.service import ExpirySpec, RestrictionSpec

_Strict = StrictModel


class TokenCreate(_Strict):
    name: str = Field(max_length=100, description="Where the token is used, e.g. 'notebook'")
    scopes: list[str] = Field(description="Any of entities, timeseries, export, telemetry, ingest")
    expires_in_days: int | None = Field(None, description="Lifetime in days (default 365)")
    expires_at: datetime | None = Field(None, description="Explicit expiry (ISO 8601 with time zone)")
    never: bool = Field(False, description="No expiry (only if the organisation policy allows it)")
    organisations: list[str] = Field(default_factory=list, description="Restrict to these organisations")
    workspaces: list[str] = Field(default_factory=list, description="Restrict to these workspaces")
    entities: list[str] = Field(default_factory=list, description="Restrict to these entity ids")
    time_start: datetime | None = Field(None, description="Restrict data reads to times ≥ this")
    time_end: datetime | None = Field(None, description="Restrict data reads to times < this")
    allowed_ips: list[str] = Field(default_factory=list, description="Allowed client IPs / CIDR networks")

    def expiry(self) -> ExpirySpec:
        return ExpirySpec(self.expires_in_days, self.expires_at, self.never)

    def restriction_spec(self) -> RestrictionSpec:
        return RestrictionSpec(
            organisations=self.organisations,
            workspaces=self.workspaces,
            entities=self.entities,
            time_start=self.time_start,
            time_end=self.time_end,
            allowed_ips=self.allowed_ips,
        )


class ApiKeyCreate(TokenCreate):
    rate_limit_per_minute: int | None = Field(None, description="Requests per minute (default: server's)")
    export_row_cap: int | None = Field(None, description="Row cap for exports (default: server's key cap)")


class TokenOut(BaseModel):
    id: str
    kind: str
    name: str
    hint: str
    scopes: list[str]
    restrictions: dict[str, Any]
    status: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    revoked_at: datetime | None
    rotated_from: str | None
    rate_limit_per_minute: int | None = None
    export_row_cap: int | None = None

    @classmethod
    def of(cls, c: Credential, now: datetime) -> TokenOut:
        """The credential's columns of the same names, with copies of its scopes and restrictions."""
        copied = {f: getattr(c, f) for f in cls.model_fields if f not in _DERIVED}
        return cls(
            **copied, scopes=list(c.scopes), restrictions=dict(c.restrictions or {}), status=c.status(now)
        )


_DERIVED = frozenset({"scopes", "restrictions", "status", "token"})


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown only in this response: copy it now.")

    @classmethod
    def minted(cls, c: Credential, token: str, now: datetime) -> TokenCreated:
        return cls(**TokenOut.of(c, now).model_dump(), token=token)
