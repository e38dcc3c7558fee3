"""Reading HTML forms into the services' inputs. Every problem becomes a :class:`BadRequest` whose message
is shown next to the form."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData

from sensorhub.accounts.invitations import Invite
from sensorhub.accounts.service import NewGrant, TokenPolicy
from sensorhub.auth import restrictions as R
from sensorhub.errors import BadRequest
from sensorhub.tokens.service import ExpirySpec, NewToken, RestrictionSpec

EXPIRY_CHOICES = ("30", "90", "365")


def text(form: FormData | None, name: str) -> str:
    v = form.get(name) if form is not None else None
    return v.strip() if isinstance(v, str) else ""


def many(form: FormData | None, name: str) -> list[str]:
    if form is None:
        return []
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def lines(value: str) -> list[str]:
    """Items separated by new lines or commas."""
    return [p.strip() for p in re.split(r"[\n,]", value) if p.strip()]


def date(value: str, label: str) -> datetime | None:
    """A ``YYYY-MM-DD`` (date input) or ``YYYY-MM-DDTHH:MM`` (datetime-local) value, read as UTC."""
    if not value:
        return None
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise BadRequest(f"{label}: '{value}' is not a date; use YYYY-MM-DD")


def integer(value: str, label: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{label} must be a whole number") from None


def grace_days(form: FormData | None) -> int:
    """The rotation form's grace period (days the old secret keeps working; default 0)."""
    return integer(text(form, "grace_days"), "Grace period") or 0


def expiry(form: FormData | None) -> ExpirySpec:
    choice = text(form, "expiry") or "365"
    if choice in EXPIRY_CHOICES:
        return ExpirySpec(expires_in_days=int(choice))
    if choice == "never":
        return ExpirySpec(never=True)
    if choice == "custom":
        at = date(text(form, "expires_on"), "Expiry date")
        if at is None:
            raise BadRequest("Pick an expiry date, or choose one of the fixed lifetimes")
        return ExpirySpec(expires_at=at)
    raise BadRequest(f"unknown expiry choice '{choice}'")


def restrictions(form: FormData | None, *, organisations: bool = True) -> RestrictionSpec:
    """The restriction fields of a token form, one per input of the registered restriction kinds."""
    values: dict[str, Any] = {}
    for i in R.inputs():
        if i.form == "ids":
            values[i.name] = many(form, i.name)
        elif i.form == "lines":
            values[i.name] = lines(text(form, i.name))
        else:
            values[i.name] = date(text(form, i.name), i.label)
    if not organisations:
        values[R.Organisations.inputs[0].name] = ()
    return RestrictionSpec(**values)


def new_token(form: FormData | None, *, organisations: bool = True) -> NewToken:
    """The token a create form asks for: its name, the ticked scopes, the expiry and the restrictions."""
    return NewToken(
        text(form, "name"),
        sorted(set(many(form, "scopes"))),
        expiry(form),
        restrictions(form, organisations=organisations),
    )


def token_policy(form: FormData | None, grace_days: int) -> TokenPolicy:
    """The settings page's token policy; an empty rotation grace keeps ``grace_days`` (the current one)."""
    grace = integer(text(form, "max_rotation_grace_days"), "Longest rotation grace")
    return TokenPolicy(
        integer(text(form, "max_token_lifetime_days"), "Maximum lifetime"),
        text(form, "allow_non_expiring_tokens") == "1",
        grace_days if grace is None else grace,
        text(form, "require_pat_approval") == "1",
        many(form, "allowed_pat_scopes"),
        text(form, "allowed_ips").split(),
    )


def new_grant(form: FormData | None) -> NewGrant:
    """The grants page's new grant: who it is for (required), the workspace or entity, and the dates."""
    ref = text(form, "user")
    if not ref:
        raise BadRequest("Choose who the grant is for.")
    return NewGrant(
        ref,
        text(form, "workspace") or None,
        text(form, "entity") or None,
        date(text(form, "time_start"), "From"),
        date(text(form, "time_end"), "Until"),
    )


def invite(form: FormData | None) -> Invite:
    """The members page's invitation: the email (required), the role (default member), the workspaces;
    a password sent along is passed on, to be refused."""
    email = text(form, "email")
    if not email:
        raise BadRequest("Enter the person's email address.")
    password = form.get("password") if form is not None else None
    return Invite(
        email,
        text(form, "role") or "member",
        many(form, "workspaces"),
        password if isinstance(password, str) else None,
    )
