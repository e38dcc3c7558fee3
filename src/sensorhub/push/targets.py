"""Delivery targets by kind: the registry the fan-out and the delivery worker dispatch through.

A target kind (``connector`` here; ``ngsi_ld_subscription`` from the NGSI-LD adapter, for instance)
implements :class:`TargetKind` and is registered with :func:`register_target`:

- ``plan(session, events, now, settings)``: the deliveries these new outbox events cause (in the fan-out
  transaction: what it writes — rule states, say — commits together with the deliveries and the
  cursor, exactly once);
- ``access(session, delivery, settings)``: its owner's read access *now* (``None`` or an empty access: the
  delivery is suppressed, not sent) — e.g. :func:`sensorhub.authz.subjects.session_access` of the
  person who made a rule, or the principal of the token that made a subscription (revoked or expired:
  ``None``);
- ``prepare(session, delivery, message, settings)``: with the message already cut to what the owner may read now
  (:func:`visible_message`), a callable that sends it (run outside any transaction) and returns an
  :class:`~sensorhub.push.kinds.Outcome` — or a string: the reason it is not sent (target deleted or
  disabled);
- ``gone(session, delivery, outcome)``: the receiver said it is gone for good (HTTP 410): disable the
  target.

The message of a delivery is kind-agnostic (built at fan-out, see :func:`data_message`)::

    {"type": "data" | "rule" | "test", "organisation": {"id", "slug"}, "workspace": {"id", "slug"},
     "device": {"id", "type"},
     "data": [{"attribute", "topic", "kind", "unit", "points": [[time_us, value], …]}],
     "rule": {…}?, "text": str?}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.authz.scope import readable_windows_us
from sensorhub.config import Settings
from sensorhub.push.kinds import Outcome
from sensorhub.push.models import Delivery, PushEvent


@dataclass
class PlannedDelivery:
    org_id: str
    target_id: str
    message: dict[str, Any]
    entity_pk: int | None = None
    rule_id: str | None = None
    owner_user_id: str | None = None
    owner_credential_id: str | None = None
    first_event_id: int | None = None
    last_event_id: int | None = None
    # Deliveries of one ordering key go out in order; by default the key is the target and the device.
    ordering_key: str | None = None


class TargetKind(Protocol):
    name: str

    def plan(
        self, s: Session, events: list[PushEvent], now: datetime, settings: Settings
    ) -> list[PlannedDelivery]: ...

    def access(self, s: Session, delivery: Delivery, settings: Settings) -> Access | None: ...

    def prepare(
        self, s: Session, delivery: Delivery, message: dict[str, Any], settings: Settings
    ) -> Callable[[], Outcome] | str: ...

    def gone(self, s: Session, delivery: Delivery, outcome: Outcome) -> None: ...


TARGET_KINDS: dict[str, TargetKind] = {}


def register_target(kind: TargetKind) -> None:
    """Register a target kind by its ``name`` (once per process; re-registering replaces it)."""
    TARGET_KINDS[kind.name] = kind


@dataclass(frozen=True)
class _Tenanted:
    org_id: str
    workspace_id: str | None
    entity_id: str


def event_points(e: PushEvent) -> list[list[Any]]:
    return [[t, v] for t, v in e.point_list()]


def data_item(e: PushEvent, points: list[list[Any]] | None = None) -> dict[str, Any]:
    return {
        "attribute": e.attribute,
        "topic": e.topic,
        "kind": e.kind,
        "unit": e.unit,
        "points": event_points(e) if points is None else points,
    }


def data_message(
    events: list[PushEvent], org: dict[str, str], workspace: dict[str, str], kind: str = "data"
) -> dict[str, Any]:
    """The message for events of one device (all of ``events`` share it)."""
    e0 = events[0]
    return device_message(kind, org, workspace, e0.entity_ref, e0.entity_type, [data_item(e) for e in events])


def device_message(
    kind: str,
    org: dict[str, str],
    workspace: dict[str, Any],
    device_id: str,
    device_type: str | None,
    data: list[dict[str, Any]],
) -> dict[str, Any]:
    """A message about one device: its organisation, workspace, id and type, and ``data``, its points."""
    return {
        "type": kind,
        "organisation": org,
        "workspace": workspace,
        "device": {"id": device_id, "type": device_type},
        "data": data,
    }


def visible_message(access: Access | None, message: dict[str, Any]) -> dict[str, Any] | str:
    """``message`` cut to what ``access`` may read now: the device must be visible, and only points in
    its readable time windows stay. Returns the reason instead when nothing may be sent."""
    kind = str(message.get("type", ""))
    if kind in ("test", "periodic") or kind.startswith("credential."):
        # No data in it: a test message, a notice about a credential of the organisation, or a periodic
        # notification (read, with the owner's access, when it is sent).
        return message
    if access is None or access.is_empty:
        return "its owner may no longer read anything (token revoked or expired, user disabled, no role or grant)"
    device = message.get("device", {}).get("id")
    ws = message.get("workspace", {}).get("id")
    org = message.get("organisation", {}).get("id")
    if not org or not device or not access.allows(org, ws, device):
        return f"its owner may no longer read {device}"
    windows = readable_windows_us(access, _Tenanted(org, ws, device))
    data = []
    for d in message.get("data", []):
        points = d["points"]
        if points and len(windows) == 1 and windows[0][0] <= min(p[0] for p in points):
            hi = windows[0][1]  # one window from before the first point: a bound check per point
            pts = points if max(p[0] for p in points) < hi else [p for p in points if p[0] < hi]
        else:
            pts = [p for p in points if any(lo <= p[0] < hi for lo, hi in windows)]
        if pts:
            data.append({**d, "points": pts})
    rule = message.get("rule")
    if (
        rule is not None
        and rule.get("time_us") is not None
        and not any(lo <= rule["time_us"] < hi for lo, hi in windows)
    ):
        return f"its owner may not read {device} at the time the rule fired"
    if not data and rule is None:
        return f"its owner may read none of these points of {device} (time windows)"
    return {**message, "data": data}


def owner_access(
    s: Session,
    settings: Settings,
    *,
    user_id: str | None = None,
    credential_id: str | None = None,
    scope: str = "entities",
) -> Access | None:
    """A target owner's read access *now* (never cached): the credential's (revoked, expired or its
    owner disabled → None; its scope ``scope`` must be granted), else the user's
    (:func:`~sensorhub.authz.subjects.session_access`: its current roles and grants; disabled → empty)."""
    from sensorhub.accounts.models import User
    from sensorhub.auth.resolve import Rejected, build_principal
    from sensorhub.authz.subjects import session_access
    from sensorhub.db import utcnow
    from sensorhub.tokens.models import Credential

    if credential_id is not None:
        cred = s.get(Credential, credential_id)
        if cred is None or cred.revoked_at is not None:
            return None
        if cred.expires_at is not None and cred.expires_at <= utcnow():
            return None
        try:
            return build_principal(s, cred, settings, utcnow()).access(scope)
        except Rejected:
            return None
    if user_id is None:
        return None
    user = s.get(User, user_id)
    return session_access(s, user) if user is not None else None
