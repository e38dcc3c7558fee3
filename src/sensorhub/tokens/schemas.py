"""Wire models for credentials."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from sensorhub.auth import restrictions as R
from sensorhub.schemas import StrictModel
from sensorhub.tokens.models import Credential
from sensorhub.tokens.service import ExpirySpec, Minted, NewToken, RestrictionSpec

_Strict = StrictModel


class _TokenBase(_Strict):
    name: str = Field(max_length=100, description="Where the token is used, e.g. 'notebook'")
    scopes: list[str] = Field(description="Any of entities, timeseries, export, telemetry, ingest")
    expires_in_days: int | None = Field(None, description="Lifetime in days (default 365)")
    expires_at: datetime | None = Field(None, description="Explicit expiry (ISO 8601 with time zone)")
    never: bool = Field(False, description="No expiry (only if the organisation policy allows it)")


def _restriction_field(i: R.Input) -> Any:
    if i.form == "datetime":
        return (datetime | None, Field(None, description=i.description))
    return (list[str], Field(default_factory=list, description=i.description))


# The restriction members of the body, one per input of the registered restriction kinds.
if TYPE_CHECKING:
    _WithRestrictions = _TokenBase
else:
    _WithRestrictions = create_model(
        "_WithRestrictions", __base__=_TokenBase, **{i.name: _restriction_field(i) for i in R.inputs()}
    )


class TokenCreate(_WithRestrictions):
    def expiry(self) -> ExpirySpec:
        return ExpirySpec(self.expires_in_days, self.expires_at, self.never)

    def restriction_spec(self) -> RestrictionSpec:
        return RestrictionSpec(**{i.name: getattr(self, i.name) for i in R.inputs()})

    def new_token(self) -> NewToken:
        return NewToken(self.name, self.scopes, self.expiry(), self.restriction_spec())


class ApiKeyCreate(TokenCreate):
    rate_limit_per_minute: int | None = Field(None, description="Requests per minute (default: server's)")
    export_row_cap: int | None = Field(None, description="Row cap for exports (default: server's key cap)")


class RotateRequest(_Strict):
    grace_days: int = Field(
        0,
        description="Keep the old secret working for this many days (0-7, at most the organisation "
        "policy's max_rotation_grace_days); 0 stops it at once. Revoking the token ends the grace too.",
    )

    @staticmethod
    def days(body: RotateRequest | None) -> int:
        return body.grace_days if body is not None else 0


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
    rotated_to: str | None = Field(None, description="Set on a rotated secret: the token's new credential")
    superseded_at: datetime | None = Field(
        None, description="When this secret was rotated with a grace period (it works until expires_at)"
    )
    rate_limit_per_minute: int | None = None
    export_row_cap: int | None = None
    organisation_access: list[dict[str, Any]] = Field(
        default_factory=list,
        description="A PAT's standing in each organisation it reaches: allowed, pending (approval), "
        "approved, denied (with reason) or revoked (for that organisation)",
    )

    @classmethod
    def of(cls, c: Credential, now: datetime) -> TokenOut:
        """The credential's columns of the same names, with copies of its scopes and restrictions."""
        copied = {f: getattr(c, f) for f in cls.model_fields if f not in _DERIVED}
        return cls(
            **copied, scopes=list(c.scopes), restrictions=dict(c.restrictions or {}), status=c.status(now)
        )


_DERIVED = frozenset({"scopes", "restrictions", "status", "token", "organisation_access"})


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown only in this response: copy it now.")

    @classmethod
    def minted(cls, m: Minted, now: datetime) -> TokenCreated:
        """The new credential of ``m`` with its secret, the one time it is shown."""
        return cls(**TokenOut.of(m.credential, now).model_dump(), token=m.token)
