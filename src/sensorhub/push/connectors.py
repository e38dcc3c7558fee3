"""Connectors and rules of an organisation (the use cases the API and the web UI call), and the
``connector`` target kind: rules turn outbox events into deliveries to their connectors.

Management is for the organisation's owners and admins (the routes' guard decides that); a rule acts
with the *current* read access of the person who created it, checked at every delivery attempt.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, User, Workspace
from sensorhub.authz.access import Access
from sensorhub.config import Settings
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, Conflict, NotFound
from sensorhub.kit.time import iso
from sensorhub.push import crypto, rules
from sensorhub.push import delivery as deliveries
from sensorhub.push.kinds import (
    CONNECTOR_KINDS,
    Message,
    Outcome,
    Points,
    rotate_signing,
    summary,
    validate_config,
)
from sensorhub.push.models import (
    DEFAULT_TOPIC,
    KIND_NUMERIC,
    Connector,
    Delivery,
    PushEvent,
    Rule,
    RuleHistory,
    RuleState,
)
from sensorhub.push.targets import (
    PlannedDelivery,
    data_item,
    data_message,
    device_message,
    owner_access,
    register_target,
)
from sensorhub.timeseries.ingest import is_topic

MAX_NAME = 200
MAX_ACTIONS = 10


# --- connectors ------------------------------------------------------------------------------------


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise BadRequest(f"name must be 1-{MAX_NAME} characters")
    return name.strip()


@dataclass(frozen=True, slots=True)
class NewConnector:
    """What a new connector is asked to be: the JSON body
    (:meth:`sensorhub.push.endpoints.ConnectorCreate.new_connector`) and the web form each read theirs
    into one, and :func:`create_connector` takes it whole."""

    kind: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


def create_connector(
    s: Session, org: Organisation, user: User, new: NewConnector, settings: Settings
) -> tuple[Connector, dict[str, Any]]:
    """A new connector; returns it and what is shown once (e.g. the generated signing secret)."""
    k = CONNECTOR_KINDS.get(new.kind)
    if k is None:
        raise BadRequest(f"kind must be one of: {', '.join(CONNECTOR_KINDS)}")
    stored, sec, shown = validate_config(k, dict(new.config), dict(new.secrets), settings)
    c = Connector(
        org_id=org.id,
        kind=new.kind,
        name=_name(new.name),
        config=stored,
        secrets_enc=crypto.encrypt(settings, sec) if sec else None,
        enabled=new.enabled,
        created_by=user.id,
    )
    s.add(c)
    s.flush()
    return c, shown


def list_connectors(s: Session, org: Organisation) -> list[Connector]:
    return list(
        s.scalars(
            select(Connector).where(Connector.org_id == org.id).order_by(Connector.created_at, Connector.id)
        )
    )


def get_connector(s: Session, org: Organisation, connector_id: str) -> Connector:
    c = s.get(Connector, connector_id)
    if c is None or c.org_id != org.id:
        raise NotFound(f"connector {connector_id} not found in this organisation")
    return c


def update_connector(
    s: Session,
    org: Organisation,
    connector_id: str,
    *,
    name: str | None = None,
    enabled: bool | None = None,
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    settings: Settings,
) -> Connector:
    """Rename, enable/disable, replace the configuration (``config``: the whole of it, validated as at
    creation: SSRF, templates, fields) and replace secrets (``secrets``: each given member replaces the
    stored one, ``null`` removes it; a webhook's ``headers`` merge by name). Existing secrets are never
    returned; a webhook's signing secret changes only through :func:`rotate_secret`."""
    c = get_connector(s, org, connector_id)
    if name is not None:
        c.name = _name(name)
    if config is not None or secrets:
        if not isinstance(config if config is not None else {}, dict):
            raise BadRequest("config must be an object")
        k = CONNECTOR_KINDS[c.kind]
        try:
            old = crypto.decrypt(settings, c.secrets_enc)
        except crypto.SecretsUnreadable:
            old = {}  # the server key changed: the secrets given now replace the unreadable ones
        given = _secret_input(c.kind, old, secrets or {})
        stored, sec, _shown = validate_config(
            k, dict(config if config is not None else c.config), given, settings
        )
        if c.kind == "webhook" and old.get("signing"):
            sec["signing"] = old["signing"]  # the signing secrets (and a rotation's grace) stay
        c.config = stored
        c.secrets_enc = crypto.encrypt(settings, sec) if sec else None
    if enabled is not None:
        c.enabled = enabled
        if enabled:
            c.disabled_reason = None
    c.updated_at = utcnow()
    s.flush()
    return c


def _secret_input(kind: str, old: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The stored secrets in the kind's input form, with ``changes`` applied."""
    if not isinstance(changes, dict):
        raise BadRequest("secrets must be an object")
    if kind != "webhook":
        out = dict(old)
        for key, value in changes.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out
    if "signing_secret" in changes:
        raise BadRequest(
            "secrets.signing_secret: rotate it with POST …/rotate-secret (the old one keeps signing for a grace)"
        )
    current = next((x["secret"] for x in old.get("signing", []) if x.get("valid_until") is None), None)
    headers = dict(old.get("headers") or {})
    extra = changes.get("headers")
    if extra is not None and not isinstance(extra, dict):
        raise BadRequest("secrets.headers must be an object of header names to strings (null removes one)")
    for h, value in (extra or {}).items():
        if value is None:
            headers.pop(h, None)
        else:
            headers[h] = value
    unknown = {k: v for k, v in changes.items() if k != "headers"}
    return ({"signing_secret": current} if current else {}) | {"headers": headers} | unknown


def secret_names(c: Connector, settings: Settings) -> dict[str, Any]:
    """Which secrets a connector holds (names only, never values): for the edit form."""
    try:
        sec = crypto.decrypt(settings, c.secrets_enc)
    except crypto.SecretsUnreadable:
        return {"unreadable": True, "fields": [], "headers": []}
    fields = [k for k in sec if k not in ("signing", "headers") and sec[k]]
    if sec.get("signing"):
        fields.insert(0, "signing_secret")
    return {"unreadable": False, "fields": fields, "headers": sorted(sec.get("headers") or {})}


def rotate_secret(
    s: Session, org: Organisation, connector_id: str, grace_hours: float, settings: Settings
) -> tuple[Connector, str]:
    """A new webhook signing secret (shown once); the old one keeps signing for ``grace_hours``."""
    c = get_connector(s, org, connector_id)
    if c.kind != "webhook":
        raise BadRequest("only webhook connectors have a signing secret to rotate")
    if not 0 <= grace_hours <= 24 * 30:
        raise BadRequest("grace_hours must be between 0 and 720")
    try:
        sec = crypto.decrypt(settings, c.secrets_enc)
    except crypto.SecretsUnreadable:
        sec = {}  # the server key changed: the new secret replaces the unreadable ones
    sec["signing"], new = rotate_signing(sec.get("signing", []), grace_hours * 3600)
    c.secrets_enc = crypto.encrypt(settings, sec)
    c.updated_at = utcnow()
    return c, new


def delete_connector(s: Session, org: Organisation, connector_id: str) -> None:
    c = get_connector(s, org, connector_id)
    used = [r.name for r in list_rules(s, org) if any(a.get("connector_id") == c.id for a in r.actions)]
    if used:
        raise Conflict(f"connector is used by rule(s) {', '.join(used)}; remove it from them first")
    s.delete(c)


def connector_out(c: Connector) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "config": c.config,
        "enabled": c.enabled,
        "disabled_reason": c.disabled_reason,
        "has_secrets": c.secrets_enc is not None,
        "created_by": c.created_by,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def message_for(c: Connector, d: Delivery, message: dict[str, Any], org_slug: str | None = None) -> Message:
    """The wire form of a delivery's (already cut) message for connector ``c``. An InfluxDB connector
    writes the points alone: the JSON payload (an ISO time per point) and its text are not built for it."""
    points_only = c.kind == "influxdb"
    payload = {} if points_only else wire_payload(d.idempotency_key, d.created_at, message)
    text = message.get("text") or ("" if points_only else summary(payload))
    rule = message.get("rule")
    dev = message.get("device", {})
    if message.get("credential") is not None:
        subject = f"[sensorhub] {text}"
    elif rule:
        subject = f"[sensorhub] {rule['name']}: {dev.get('id')} is {rule['state']}"
    else:
        subject = f"[sensorhub] {dev.get('id', 'test message')}"
    points = [
        Points(
            dev.get("id", ""),
            item["attribute"],
            item.get("unit"),
            [(int(t), v) for t, v in item["points"]],
            item.get("topic", DEFAULT_TOPIC),
        )
        for item in message.get("data", [])
    ]
    return Message(
        key=d.idempotency_key,
        payload=payload,
        text=text,
        subject=subject,
        points=points,
        topic_vars={
            "org": message.get("organisation", {}).get("slug", org_slug or ""),
            "workspace": message.get("workspace", {}).get("slug", ""),
            "type": dev.get("type", ""),
        },
    )


def wire_payload(key: str, created_at: datetime, message: dict[str, Any]) -> dict[str, Any]:
    """The documented JSON payload (docs/push.md#payload)."""
    out: dict[str, Any] = {
        "id": key,
        "type": f"sensorhub.{message.get('type', 'data')}",
        "created_at": created_at,
        "organisation": message.get("organisation", {}).get("slug"),
        "workspace": message.get("workspace", {}).get("slug"),
        "device": message.get("device"),
        "data": [
            {
                "attribute": d["attribute"],
                "topic": d.get("topic", DEFAULT_TOPIC),
                "kind": d.get("kind", KIND_NUMERIC),
                "unit": d.get("unit"),
                "points": [{"time": iso(int(t)), "value": v} for t, v in d["points"]],
            }
            for d in message.get("data", [])
        ],
    }
    if message.get("rule") is not None:
        r = message["rule"]
        out["rule"] = {k: r.get(k) for k in ("id", "name", "state", "attribute", "topic", "value")} | {
            "time": iso(r["time_us"]) if r.get("time_us") is not None else None
        }
    if message.get("credential") is not None:
        out["credential"] = message["credential"]
    if message.get("text"):
        out["text"] = message["text"]
    return out


def test_message(org: Organisation) -> dict[str, Any]:
    return {
        "type": "test",
        "organisation": {"id": org.id, "slug": org.slug},
        "workspace": {"id": None, "slug": None},
        "device": {"id": "urn:ngsi-ld:Device:sensorhub-test", "type": "Device"},
        "data": [
            {
                "attribute": "test",
                "topic": DEFAULT_TOPIC,
                "kind": KIND_NUMERIC,
                "unit": None,
                "points": [[int(time.time() * 1e6), 1.0]],
            }
        ],
        "text": "sensorhub test message: this connector works.",
    }


def send_test(s: Session, org: Organisation, connector_id: str, user: User, settings: Settings) -> Delivery:
    """Send a test message now (blocking, up to the connector's timeout); recorded in its delivery log."""
    c = get_connector(s, org, connector_id)
    d = Delivery(
        org_id=org.id,
        target_kind=ConnectorTarget.name,
        target_id=c.id,
        ordering_key=f"test:{c.id}:{time.time_ns()}",
        owner_user_id=user.id,
        message=test_message(org),
        status="pending",
        next_attempt_at=utcnow() + timedelta(days=3650),  # the worker leaves it alone
    )
    s.add(d)
    s.flush()
    secrets = crypto.decrypt(settings, c.secrets_enc)
    outcome = deliveries.timed(
        lambda: CONNECTOR_KINDS[c.kind].send(
            c.config, secrets, message_for(c, d, d.message, org.slug), settings
        )
    )
    deliveries.record(s, d, outcome, settings, final=True)
    return d


# --- rules -----------------------------------------------------------------------------------------


def _actions(s: Session, org: Organisation, actions: Any) -> list[dict[str, Any]]:
    if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
        raise BadRequest(f"actions must be a list of at most {MAX_ACTIONS} {{connector_id, template?}}")
    out = []
    for i, a in enumerate(actions):
        if not isinstance(a, dict) or set(a) - {"connector_id", "template"} or "connector_id" not in a:
            raise BadRequest(f"actions[{i}] must be {{connector_id, template?}}")
        c = s.get(Connector, a["connector_id"]) if isinstance(a["connector_id"], str) else None
        if c is None or c.org_id != org.id:
            raise BadRequest(f"actions[{i}].connector_id: no such connector in this organisation")
        try:
            template = rules.check_template(a.get("template"))
        except BadRequest as e:
            raise BadRequest(f"actions[{i}].{e.message}") from None
        out.append({"connector_id": c.id, "template": template})
    return out


def _workspace(s: Session, org: Organisation, ref: str | None) -> str | None:
    if ref is None:
        return None
    ws = s.scalars(
        select(Workspace).where(Workspace.org_id == org.id, (Workspace.slug == ref) | (Workspace.id == ref))
    ).first()
    if ws is None:
        raise BadRequest(f"workspace {ref!r} is not a workspace of this organisation")
    return ws.id


ALL_TOPICS = "*"


def _rule_topic(topic: Any, condition: dict[str, Any] | None) -> str | None:
    """The stored topic of a rule (None: every topic). Default: every topic without a condition (forward
    everything), the default topic with one; a condition follows one series per device, so it watches
    one topic."""
    if topic is None:
        return None if condition is None else DEFAULT_TOPIC
    if not isinstance(topic, str) or not is_topic(topic):
        raise BadRequest('topic must be a topic (1-200 printable characters) or "*" for every topic')
    if topic == ALL_TOPICS:
        if condition is not None:
            raise BadRequest(
                'topic "*" (every topic) is for rules without a condition: a condition follows one series '
                "per device; make one rule per topic"
            )
        return None
    return topic


@dataclass(frozen=True, slots=True)
class NewRule:
    """What a new rule is asked to be: the JSON body (:meth:`sensorhub.push.endpoints.RuleCreate.new_rule`)
    and the web form each read theirs into one, and :func:`create_rule` takes it whole. ``workspace``
    None: every workspace; ``condition`` None: forward everything; ``topic`` None: the default
    (:func:`_rule_topic`)."""

    name: str
    actions: list[dict[str, Any]]
    workspace: str | None = None
    entity_type: str | None = None
    condition: Any = None
    topic: str | None = None
    cooldown_s: int = 0
    notify_resolved: bool = False
    enabled: bool = True


def create_rule(s: Session, org: Organisation, user: User, new: NewRule) -> Rule:
    if not 0 <= new.cooldown_s <= 7 * 86400:
        raise BadRequest("cooldown_s must be between 0 and 604800")
    condition = rules.check_condition(new.condition)
    r = Rule(
        org_id=org.id,
        workspace_id=_workspace(s, org, new.workspace),
        entity_type=new.entity_type or None,
        name=_name(new.name),
        condition=condition,
        topic=_rule_topic(new.topic, condition),
        actions=_actions(s, org, new.actions),
        cooldown_s=new.cooldown_s,
        notify_resolved=new.notify_resolved,
        enabled=new.enabled,
        created_by=user.id,
    )
    if not r.actions:
        raise BadRequest("actions must name at least one connector")
    s.add(r)
    s.flush()
    return r


def list_rules(s: Session, org: Organisation) -> list[Rule]:
    return list(s.scalars(select(Rule).where(Rule.org_id == org.id).order_by(Rule.created_at, Rule.id)))


def get_rule(s: Session, org: Organisation, rule_id: str) -> Rule:
    r = s.get(Rule, rule_id)
    if r is None or r.org_id != org.id:
        raise NotFound(f"rule {rule_id} not found in this organisation")
    return r


def _scope_of_rule(s: Session, org: Organisation, r: Rule, changes: dict[str, Any]) -> None:
    """The devices a rule watches: ``workspace`` (slug or id, None: every one) and ``entity_type``."""
    if "workspace" in changes:
        r.workspace_id = _workspace(s, org, changes["workspace"] or None)
    if "entity_type" in changes:
        et = changes["entity_type"]
        if et is not None and (not isinstance(et, str) or len(et) > MAX_NAME):
            raise BadRequest(f"entity_type must be a device type of at most {MAX_NAME} characters, or null")
        r.entity_type = et or None


def update_rule(s: Session, org: Organisation, rule_id: str, changes: dict[str, Any]) -> Rule:
    r = get_rule(s, org, rule_id)
    if "name" in changes:
        r.name = _name(changes["name"])
    _scope_of_rule(s, org, r, changes)
    if "enabled" in changes:
        r.enabled = bool(changes["enabled"])
    if "condition" in changes or "topic" in changes:
        _condition_and_topic(s, r, changes)
    if "actions" in changes:
        r.actions = _actions(s, org, changes["actions"])
        if not r.actions:
            raise BadRequest("actions must name at least one connector")
    if "cooldown_s" in changes:
        if not 0 <= changes["cooldown_s"] <= 7 * 86400:
            raise BadRequest("cooldown_s must be between 0 and 604800")
        r.cooldown_s = changes["cooldown_s"]
    if "notify_resolved" in changes:
        r.notify_resolved = bool(changes["notify_resolved"])
    r.updated_at = utcnow()
    s.flush()
    return r


def _sample_value(condition: dict[str, Any] | None) -> Any:
    c = condition or {}
    kind = c.get("type")
    if kind == "above":
        return float(c["threshold"]) + 1
    if kind == "below":
        return float(c["threshold"]) - 1
    if kind == "outside":
        return float(c["max"]) + 1
    if kind == "equals":
        return c["value"]
    return 21.5


def preview_template(
    org: Organisation, template: str | None, *, name: str | None = None, condition: Any = None
) -> str:
    """A rule action's message as it would read for a sample value that fires ``condition`` (a
    :class:`BadRequest` for an invalid template or condition, like at creation)."""
    cond = rules.check_condition(condition)
    tpl = rules.check_template(template or None)
    attr = (cond or {}).get("attribute") or "temperature"
    message = {
        "organisation": {"id": org.id, "slug": org.slug},
        "workspace": {"id": None, "slug": "main"},
        "device": {"id": "urn:ngsi-ld:Device:sample-1", "type": "Device"},
    }
    sample_rule = SimpleNamespace(id="sample", name=(name or "").strip() or "rule")
    ctx = rules.template_context(
        sample_rule,
        message,
        attr,
        _sample_value(cond),
        "CEL",
        1767225600_000_000,
        "firing" if cond else "data",
    )
    try:
        return rules.render(tpl, ctx)
    except Exception as e:  # valid on the generic sample, failing on this one: say so, as delivery would
        raise BadRequest(f"template fails on the sample: {type(e).__name__}: {e}") from None


def _condition_and_topic(s: Session, r: Rule, changes: dict[str, Any]) -> None:
    before = (r.condition, r.topic)
    if "condition" in changes:
        r.condition = rules.check_condition(changes["condition"])
    given = changes.get("topic")
    r.topic = _rule_topic(given if given is not None else _shown_topic(r.topic, r.condition), r.condition)
    if (r.condition, r.topic) != before:  # a new condition or topic starts every device from "ok"
        s.query(RuleState).filter(RuleState.rule_id == r.id).delete()


def _shown_topic(stored: str | None, condition: dict[str, Any] | None) -> str | None:
    """A rule's current topic as given to :func:`_rule_topic` again (every topic with a condition now:
    the default topic)."""
    if stored is None:
        return None if condition is not None else ALL_TOPICS
    return stored


def delete_rule(s: Session, org: Organisation, rule_id: str) -> None:
    s.delete(get_rule(s, org, rule_id))


def rule_states(s: Session, rule: Rule) -> list[RuleState]:
    return list(
        s.scalars(select(RuleState).where(RuleState.rule_id == rule.id).order_by(RuleState.entity_ref))
    )


def rule_history(s: Session, rule: Rule, limit: int = 100) -> list[RuleHistory]:
    return list(
        s.scalars(
            select(RuleHistory)
            .where(RuleHistory.rule_id == rule.id)
            .order_by(RuleHistory.id.desc())
            .limit(limit)
        )
    )


def rule_out(r: Rule, states: list[RuleState] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "workspace_id": r.workspace_id,
        "entity_type": r.entity_type,
        "topic": r.topic if r.topic is not None else ALL_TOPICS,
        "condition": r.condition,
        "actions": r.actions,
        "cooldown_s": r.cooldown_s,
        "notify_resolved": r.notify_resolved,
        "enabled": r.enabled,
        "created_by": r.created_by,
        "created_at": r.created_at,
    }
    if states is not None:
        out["state"] = "firing" if any(x.state == "firing" for x in states) else "ok"
        out["devices"] = [
            {
                "device": x.entity_ref,
                "state": x.state,
                "since": x.since,
                "last_value": x.last_value,
                "last_time": iso(x.last_time_us) if x.last_time_us is not None else None,
            }
            for x in states
        ]
    return out


# --- the connector target kind: rules → deliveries ---------------------------------------------------


class _Names:
    """Organisation and workspace slugs, looked up once per fan-out round."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.orgs: dict[str, dict[str, str]] = {}
        self.workspaces: dict[str, dict[str, Any]] = {}

    def org(self, org_id: str) -> dict[str, str]:
        if org_id not in self.orgs:
            o = self.s.get(Organisation, org_id)
            self.orgs[org_id] = {"id": org_id, "slug": o.slug if o else org_id}
        return self.orgs[org_id]

    def workspace(self, ws_id: str) -> dict[str, Any]:
        if ws_id not in self.workspaces:
            w = self.s.get(Workspace, ws_id)
            self.workspaces[ws_id] = {"id": ws_id, "slug": w.slug if w else ws_id}
        return self.workspaces[ws_id]


def _matches(rule: Rule, e: PushEvent) -> bool:
    if rule.workspace_id is not None and rule.workspace_id != e.workspace_id:
        return False
    if rule.topic is not None and rule.topic != e.topic:
        return False
    if rule.entity_type is not None and not e.has_type(rule.entity_type):
        return False
    attr = (rule.condition or {}).get("attribute")
    return attr is None or attr == e.attribute


class ConnectorTarget:
    """Target kind ``connector``: deliveries made by rules (and test messages) to an org's connectors."""

    name = "connector"

    def plan(
        self, s: Session, events: list[PushEvent], now: datetime, settings: Settings
    ) -> list[PlannedDelivery]:
        org_ids = sorted({e.org_id for e in events})
        active = list(
            s.scalars(select(Rule).where(Rule.org_id.in_(org_ids), Rule.enabled.is_(True)).order_by(Rule.id))
        )
        if not active:
            return []
        names = _Names(s)
        access: dict[str, Access | None] = {}
        out: list[PlannedDelivery] = []
        for rule in active:
            if rule.created_by not in access:
                access[rule.created_by] = owner_access(s, settings, user_id=rule.created_by)
            acc = access[rule.created_by]
            mine = [
                e
                for e in events
                if e.org_id == rule.org_id
                and _matches(rule, e)
                and acc is not None
                and acc.allows(e.org_id, e.workspace_id, e.entity_ref)
            ]
            if not mine:
                continue
            if rule.condition is None:
                out.extend(self._forward(rule, mine, names))
            else:
                out.extend(self._evaluate(s, rule, mine, names, now))
        return out

    def _forward(self, rule: Rule, events: list[PushEvent], names: _Names) -> list[PlannedDelivery]:
        by_device: dict[int, list[PushEvent]] = defaultdict(list)
        for e in events:
            by_device[e.entity_id].append(e)
        out = []
        for pk, evs in by_device.items():
            msg = data_message(evs, names.org(rule.org_id), names.workspace(evs[0].workspace_id))
            for a in rule.actions:
                m = dict(msg)
                if a.get("template") and a["template"] != rules.DEFAULT_TEMPLATE:
                    last = evs[-1]
                    context = partial(
                        rules.template_context,
                        rule,
                        m,
                        last.attribute,
                        last.value,
                        last.unit,
                        last.time_us,
                        "data",
                        last.topic,
                    )
                    m["text"] = _render(a["template"], rule, context)
                out.append(self._planned(rule, a, pk, m, evs))
        return out

    def _evaluate(
        self, s: Session, rule: Rule, events: list[PushEvent], names: _Names, now: datetime
    ) -> list[PlannedDelivery]:
        cond = rule.condition
        assert cond is not None
        out: list[PlannedDelivery] = []
        for e in events:
            st = s.get(RuleState, (rule.id, e.entity_id))
            if st is None:
                st = RuleState(
                    rule_id=rule.id,
                    entity_pk=e.entity_id,
                    entity_ref=e.entity_ref,
                    org_id=e.org_id,
                    workspace_id=e.workspace_id,
                    state="ok",
                    since=now,
                    last_seen_at=now,
                )
                s.add(st)
            if cond["type"] == "no_data":
                changes = [rules.Transition(0, "ok", e.time_us, e.value)] if st.state == "firing" else []
            elif e.kind == KIND_NUMERIC:
                if cond["type"] == "equals":
                    ts, vals = e.point_arrays()
                    changes = rules.transitions(cond, st.state, ts, vals.tolist(), None)
                else:
                    ts, vals = e.point_arrays()
                    prev = (
                        (st.last_time_us, float(st.last_value))
                        if st.last_time_us is not None and isinstance(st.last_value, int | float)
                        else None
                    )
                    changes = rules.transitions(cond, st.state, ts, vals, prev)
            else:
                if cond["type"] != "equals":
                    continue  # a state never crosses a numeric threshold
                changes = rules.transitions(cond, st.state, np.array([e.time_us], np.int64), [e.value], None)
            st.last_value, st.last_time_us, st.last_seen_at = e.value, e.time_us, now
            if not changes:
                continue
            # Only the point of each change is sent: the event's other points are not copied.
            org, ws = names.org(rule.org_id), names.workspace(e.workspace_id)
            msg0 = device_message("rule", org, ws, e.entity_ref, e.entity_type, [])
            for ch in changes:
                out.extend(self._transition(s, rule, st, e, ch, msg0, now))
        return out

    def _transition(
        self,
        s: Session,
        rule: Rule,
        st: RuleState,
        e: PushEvent | None,
        ch: rules.Transition,
        msg0: dict[str, Any],
        now: datetime,
    ) -> list[PlannedDelivery]:
        from_state = st.state
        st.state, st.since = ch.to_state, now
        cooled = (
            st.last_notified_at is None or st.last_notified_at + timedelta(seconds=rule.cooldown_s) <= now
        )
        notify = (ch.to_state == "firing" or rule.notify_resolved) and cooled
        attribute = e.attribute if e is not None else (rule.condition or {}).get("attribute")
        s.add(
            RuleHistory(
                rule_id=rule.id,
                entity_ref=st.entity_ref,
                attribute=attribute,
                from_state=from_state,
                to_state=ch.to_state,
                value=ch.value,
                time_us=ch.time_us,
                notified=notify,
                at=now,
            )
        )
        if not notify:
            return []
        st.last_notified_at = now
        unit = e.unit if e is not None else None
        base = dict(msg0)
        if e is not None:
            base["data"] = [data_item(e, [[ch.time_us, ch.value]])]
        base["rule"] = {
            "id": rule.id,
            "name": rule.name,
            "state": ch.to_state,
            "attribute": attribute,
            "topic": e.topic if e is not None else rule.topic,
            "value": ch.value,
            "time_us": ch.time_us,
        }
        out = []
        for a in rule.actions:
            m = dict(base)
            context = partial(
                rules.template_context,
                rule,
                m,
                attribute,
                ch.value,
                unit,
                ch.time_us,
                ch.to_state,
                e.topic if e is not None else rule.topic,
            )
            m["text"] = _render(a.get("template") or rules.DEFAULT_TEMPLATE, rule, context)
            out.append(self._planned(rule, a, st.entity_pk, m, [e] if e is not None else []))
        return out

    def _planned(
        self,
        rule: Rule,
        action: dict[str, Any],
        entity_pk: int,
        message: dict[str, Any],
        events: list[PushEvent],
    ) -> PlannedDelivery:
        return PlannedDelivery(
            org_id=rule.org_id,
            target_id=action["connector_id"],
            message=message,
            entity_pk=entity_pk,
            rule_id=rule.id,
            owner_user_id=rule.created_by,
            first_event_id=min((e.id for e in events), default=None),
            last_event_id=max((e.id for e in events), default=None),
        )

    def no_data(self, s: Session, now: datetime, settings: Settings) -> list[PlannedDelivery]:
        """``no_data`` rules: devices silent for the rule's minutes go to firing (the periodic job)."""
        out: list[PlannedDelivery] = []
        names = _Names(s)
        for rule in s.scalars(select(Rule).where(Rule.enabled.is_(True))):
            cond = rule.condition or {}
            if cond.get("type") != "no_data":
                continue
            limit = now - timedelta(minutes=float(cond["minutes"]))
            q = select(RuleState).where(
                RuleState.rule_id == rule.id, RuleState.state == "ok", RuleState.last_seen_at < limit
            )
            acc = owner_access(s, settings, user_id=rule.created_by)
            for st in s.scalars(q):
                if acc is None or not acc.allows(st.org_id, st.workspace_id, st.entity_ref):
                    continue
                org, ws = names.org(rule.org_id), names.workspace(st.workspace_id)
                msg0 = device_message("rule", org, ws, st.entity_ref, None, [])
                ch = rules.Transition(0, "firing", st.last_time_us or 0, None)
                out.extend(self._transition(s, rule, st, None, ch, msg0, now))
        return out

    def access(self, s: Session, delivery: Delivery, settings: Settings) -> Access | None:
        return owner_access(
            s, settings, user_id=delivery.owner_user_id, credential_id=delivery.owner_credential_id
        )

    def prepare(
        self, s: Session, delivery: Delivery, message: dict[str, Any], settings: Settings
    ) -> Callable[[], Outcome] | str:
        c = s.get(Connector, delivery.target_id)
        if c is None:
            return "the connector was deleted"
        if not c.enabled:
            return "the connector is disabled" + (f" ({c.disabled_reason})" if c.disabled_reason else "")
        try:
            secrets = crypto.decrypt(settings, c.secrets_enc)
        except crypto.SecretsUnreadable as e:
            err = str(e)
            return lambda: Outcome(False, error=err, retry=False)
        msg = message_for(c, delivery, message)
        kind, config = CONNECTOR_KINDS[c.kind], dict(c.config)
        return lambda: kind.send(config, secrets, msg, settings)

    def gone(self, s: Session, delivery: Delivery, outcome: Outcome) -> None:
        c = s.get(Connector, delivery.target_id)
        if c is not None:
            c.enabled = False
            c.disabled_reason = (
                f"the receiver answered {outcome.status_code} Gone; disabled ({iso(int(time.time() * 1e6))})"
            )


def _render(template: str, rule: Rule, context: Callable[[], dict[str, Any]]) -> str:
    """``template`` rendered with ``context()`` (a :func:`rules.template_context`)."""
    try:
        return rules.render(template, context())
    except Exception as e:  # a template valid at creation that fails on real data: say so in the message
        return f"{rule.name}: template error ({type(e).__name__}: {e})"


register_target(ConnectorTarget())
