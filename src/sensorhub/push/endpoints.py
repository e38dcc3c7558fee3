"""Management API of connectors, rules and the delivery log: ``/api/orgs/{org}/connectors`` and
``/api/orgs/{org}/rules``, for the organisation's owners and admins (a session, like every
``/api/orgs`` route; tokens never manage anything)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import RequireSession, SessionContext
from sensorhub.kit.time import parse_time
from sensorhub.push import connectors as svc
from sensorhub.push import delivery as deliveries
from sensorhub.schemas import StrictModel

router = APIRouter(tags=["push"])
ADMIN = RequireSession(org_admin=True)


class ConnectorCreate(StrictModel):
    kind: Literal["webhook", "mqtt", "influxdb", "email"]
    name: str
    config: dict[str, Any] = Field(default_factory=dict, description="Kind-specific settings (docs/push.md)")
    secrets: dict[str, Any] = Field(
        default_factory=dict, description="Stored encrypted, never shown again (signing secret, password, …)"
    )
    enabled: bool = True

    def new_connector(self) -> svc.NewConnector:
        return svc.NewConnector(self.kind, self.name, self.config, self.secrets, self.enabled)


class ConnectorUpdate(StrictModel):
    name: str | None = None
    enabled: bool | None = None
    config: dict[str, Any] | None = Field(
        None, description="The whole kind-specific configuration, validated as at creation (SSRF, fields)"
    )
    secrets: dict[str, Any] | None = Field(
        None,
        description="Replace stored secrets: each member given replaces the stored one, null removes it; "
        "a webhook's secret `headers` merge by name (null removes a header). Stored secrets are never "
        "returned; a webhook's signing secret changes through rotate-secret.",
    )


class RotateSecret(StrictModel):
    grace_hours: float = Field(24.0, description="How long the previous signing secret keeps signing")


class RuleAction(StrictModel):
    connector_id: str
    template: str | None = None


class RuleCreate(StrictModel):
    name: str
    workspace: str | None = Field(None, description="Workspace slug or id; none = every workspace")
    entity_type: str | None = Field(None, description="Only devices of this type")
    condition: dict[str, Any] | None = Field(None, description="None: forward everything")
    topic: str | None = Field(
        None,
        description='The Akenza topic the rule watches, or "*" for every topic; default: "*" for a rule '
        'without condition, "default" for one with a condition',
    )
    actions: list[RuleAction]
    cooldown_s: int = 0
    notify_resolved: bool = False
    enabled: bool = True

    def new_rule(self) -> svc.NewRule:
        return svc.NewRule(
            name=self.name,
            actions=[a.model_dump() for a in self.actions],
            workspace=self.workspace,
            entity_type=self.entity_type,
            condition=self.condition,
            topic=self.topic,
            cooldown_s=self.cooldown_s,
            notify_resolved=self.notify_resolved,
            enabled=self.enabled,
        )


class RuleUpdate(StrictModel):
    name: str | None = None
    workspace: str | None = Field(None, description="Workspace slug or id; null = every workspace")
    entity_type: str | None = Field(None, description="Only devices of this type; null = any")
    enabled: bool | None = None
    condition: dict[str, Any] | None = None
    topic: str | None = Field(None, description='A topic, or "*" for every topic (no condition only)')
    actions: list[RuleAction] | None = None
    cooldown_s: int | None = None
    notify_resolved: bool | None = None


class TemplatePreview(StrictModel):
    template: str | None = Field(None, description="Jinja2 message template; none = the default")
    name: str | None = Field(None, description="The rule's name, as {{ rule.name }}")
    condition: dict[str, Any] | None = Field(None, description="The sample value is one that fires it")


def _org(sc: SessionContext) -> Any:
    assert sc.org is not None
    return sc.org


# -- connectors -----------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/connectors")
def list_connectors(org: str, sc: SessionContext = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [svc.connector_out(c) for c in svc.list_connectors(sc.db, _org(sc))]


@router.post("/api/orgs/{org}/connectors", status_code=201)
def create_connector(
    org: str, body: ConnectorCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Create a connector. Its secrets (given, or generated: a webhook's signing secret) are in the
    answer's ``secrets`` this once and never shown again."""
    c, shown = svc.create_connector(sc.db, _org(sc), sc.user, body.new_connector(), ctx(request).settings)
    return {**svc.connector_out(c), "secrets": shown}


@router.get("/api/orgs/{org}/connectors/{connector_id}")
def get_connector(org: str, connector_id: str, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    return svc.connector_out(svc.get_connector(sc.db, _org(sc), connector_id))


@router.patch("/api/orgs/{org}/connectors/{connector_id}")
def update_connector(
    org: str, connector_id: str, body: ConnectorUpdate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Rename, enable/disable (pending deliveries of a disabled connector are not sent), change its
    configuration (the whole ``config``, validated like at creation) or replace secrets (``secrets``:
    given members replace, null removes; the others stay). Nothing is saved when anything is invalid."""
    c = svc.update_connector(
        sc.db,
        _org(sc),
        connector_id,
        name=body.name,
        enabled=body.enabled,
        config=body.config,
        secrets=body.secrets,
        settings=ctx(request).settings,
    )
    return svc.connector_out(c)


@router.delete("/api/orgs/{org}/connectors/{connector_id}", status_code=204)
def delete_connector(org: str, connector_id: str, sc: SessionContext = Depends(ADMIN)) -> None:
    svc.delete_connector(sc.db, _org(sc), connector_id)


@router.post("/api/orgs/{org}/connectors/{connector_id}/test")
def test_connector(
    org: str, connector_id: str, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Send a test message now; the answer says how it went (it is in the delivery log too)."""
    d = svc.send_test(sc.db, _org(sc), connector_id, sc.user, ctx(request).settings)
    return deliveries.delivery_out(d, deliveries.attempts_of(sc.db, d))


@router.post("/api/orgs/{org}/connectors/{connector_id}/rotate-secret")
def rotate_secret(
    org: str, connector_id: str, body: RotateSecret, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """A new webhook signing secret, shown this once; the previous one keeps signing (a second ``v1``)
    for ``grace_hours``."""
    c, new = svc.rotate_secret(sc.db, _org(sc), connector_id, body.grace_hours, ctx(request).settings)
    return {**svc.connector_out(c), "secrets": {"signing_secret": new}}


class DeliveryLog:
    """The delivery log's filters and paging (the query of both log routes)."""

    def __init__(
        self,
        status: Literal["pending", "delivered", "dead", "suppressed"] | None = None,
        before: int | None = Query(None, description="Only deliveries with a smaller id (paging)"),
        since: str | None = Query(None, description="Only deliveries created at or after (ISO 8601)"),
        until: str | None = Query(None, description="Only deliveries created before (ISO 8601)"),
        limit: int = Query(50, ge=1, le=500),
    ) -> None:
        self.status, self.before, self.since, self.until, self.limit = status, before, since, until, limit

    def rows(self, sc: SessionContext, connector_id: str | None) -> list[dict[str, Any]]:
        """The organisation's connector deliveries (one connector's, or every one's), newest first."""
        rows = deliveries.deliveries_of(
            sc.db,
            _org(sc).id,
            svc.ConnectorTarget.name,
            connector_id,
            self.status,
            self.before,
            self.limit,
            since=parse_time(self.since, "since") if self.since else None,
            until=parse_time(self.until, "until") if self.until else None,
        )
        return [deliveries.delivery_out(d) for d in rows]


@router.get("/api/orgs/{org}/connectors/{connector_id}/deliveries")
def connector_deliveries(
    org: str, connector_id: str, sc: SessionContext = Depends(ADMIN), log: DeliveryLog = Depends()
) -> list[dict[str, Any]]:
    """The connector's delivery log, newest first; the next page is ``before=<the last id>``."""
    return log.rows(sc, svc.get_connector(sc.db, _org(sc), connector_id).id)


@router.get("/api/orgs/{org}/deliveries")
def org_deliveries(
    org: str,
    connector: str | None = Query(None, description="Only this connector's deliveries (its id)"),
    sc: SessionContext = Depends(ADMIN),
    log: DeliveryLog = Depends(),
) -> list[dict[str, Any]]:
    """Every connector's delivery log of the organisation, newest first (``target_id`` is the
    connector); the next page is ``before=<the last id>``."""
    return log.rows(sc, svc.get_connector(sc.db, _org(sc), connector).id if connector else None)


@router.get("/api/orgs/{org}/connectors/{connector_id}/deliveries/{delivery_id}")
def connector_delivery(
    org: str, connector_id: str, delivery_id: int, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """One delivery with every attempt (status code or error, duration)."""
    d = _delivery(sc, connector_id, delivery_id)
    return deliveries.delivery_out(d, deliveries.attempts_of(sc.db, d))


@router.post("/api/orgs/{org}/connectors/{connector_id}/deliveries/{delivery_id}/replay")
def replay_delivery(
    org: str, connector_id: str, delivery_id: int, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Queue a dead letter (or any finished delivery) again, with the same idempotency key."""
    d = deliveries.replay(sc.db, _delivery(sc, connector_id, delivery_id))
    return deliveries.delivery_out(d)


def _delivery(sc: SessionContext, connector_id: str, delivery_id: int) -> Any:
    c = svc.get_connector(sc.db, _org(sc), connector_id)
    d = deliveries.get_delivery(sc.db, c.org_id, delivery_id)
    if d.target_kind != svc.ConnectorTarget.name or d.target_id != c.id:
        from sensorhub.errors import NotFound

        raise NotFound(f"delivery {delivery_id} is not a delivery of this connector")
    return d


# -- rules --------------------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/rules")
def list_rules(org: str, sc: SessionContext = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [svc.rule_out(r, svc.rule_states(sc.db, r)) for r in svc.list_rules(sc.db, _org(sc))]


@router.post("/api/orgs/{org}/rules", status_code=201)
def create_rule(org: str, body: RuleCreate, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    """A rule over a workspace's devices (or every workspace's): a condition (none = forward
    everything) and the connectors it notifies, each with a Jinja2 message template."""
    r = svc.create_rule(sc.db, _org(sc), sc.user, body.new_rule())
    return svc.rule_out(r, [])


@router.post("/api/orgs/{org}/rules/preview")
def preview_rule_template(
    org: str, body: TemplatePreview, sc: SessionContext = Depends(ADMIN)
) -> dict[str, str]:
    """A message template rendered on a sample device and value (one that fires ``condition``); an
    invalid template or condition is a 400, as at creation. Nothing is stored."""
    return {"text": svc.preview_template(_org(sc), body.template, name=body.name, condition=body.condition)}


@router.get("/api/orgs/{org}/rules/{rule_id}")
def get_rule(org: str, rule_id: str, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    """The rule with its state per device (``firing``/``ok``)."""
    r = svc.get_rule(sc.db, _org(sc), rule_id)
    return svc.rule_out(r, svc.rule_states(sc.db, r))


@router.patch("/api/orgs/{org}/rules/{rule_id}")
def update_rule(
    org: str, rule_id: str, body: RuleUpdate, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    if "actions" in changes and changes["actions"] is not None:
        changes["actions"] = [dict(a) for a in changes["actions"]]
    nullable = ("condition", "workspace", "entity_type")
    r = svc.update_rule(
        sc.db, _org(sc), rule_id, {k: v for k, v in changes.items() if v is not None or k in nullable}
    )
    return svc.rule_out(r, svc.rule_states(sc.db, r))


@router.delete("/api/orgs/{org}/rules/{rule_id}", status_code=204)
def delete_rule(org: str, rule_id: str, sc: SessionContext = Depends(ADMIN)) -> None:
    svc.delete_rule(sc.db, _org(sc), rule_id)


@router.get("/api/orgs/{org}/rules/{rule_id}/history")
def rule_history(
    org: str, rule_id: str, limit: int = Query(100, ge=1, le=1000), sc: SessionContext = Depends(ADMIN)
) -> list[dict[str, Any]]:
    """The rule's state changes, newest first (and whether each was notified)."""
    r = svc.get_rule(sc.db, _org(sc), rule_id)
    return [
        {
            "id": h.id,
            "device": h.entity_ref,
            "attribute": h.attribute,
            "from": h.from_state,
            "to": h.to_state,
            "value": h.value,
            "time_us": h.time_us,
            "notified": h.notified,
            "at": h.at,
        }
        for h in svc.rule_history(sc.db, r, limit)
    ]
