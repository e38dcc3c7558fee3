"""Connectors and rules pages of an organisation (owners and admins only): create, test,
enable/disable, the delivery log with every attempt, dead-letter replay, rule states and history.

Each form handler calls the same service function as ``/api/orgs/{org}/connectors`` and
``/api/orgs/{org}/rules`` (:mod:`sensorhub.push.connectors`, :mod:`sensorhub.push.delivery`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation
from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import SessionContext
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest
from sensorhub.push import connectors as svc
from sensorhub.push import delivery as deliveries
from sensorhub.push.models import Delivery
from sensorhub.push.rules import CONDITION_TYPES, DEFAULT_TEMPLATE
from sensorhub.web import forms
from sensorhub.web.guards import RequireWebSession
from sensorhub.web.views import done_redirect, form_handler, org_page, page_route, same_form

router = APIRouter(include_in_schema=False)
ADMIN_PAGE = RequireWebSession(org_admin=True, csrf=False)
ADMIN_FORM = RequireWebSession(org_admin=True)

NOTICES = {
    "connector-created": "Connector created.",
    "connector-enabled": "Connector enabled.",
    "connector-disabled": "Connector disabled: its pending deliveries are not sent.",
    "connector-deleted": "Connector deleted.",
    "test-delivered": "Test message delivered.",
    "test-failed": "The test message was not delivered: see the delivery log below.",
    "replayed": "Delivery queued again (same idempotency key).",
    "rule-created": "Rule created.",
    "rule-enabled": "Rule enabled.",
    "rule-disabled": "Rule disabled.",
    "rule-deleted": "Rule deleted.",
    "connector-saved": "Connector saved.",
    "rule-saved": "Rule saved.",
}

# Which form field a service error is about ("config.url must be …" → "config.url").
_FIELD = re.compile(
    r"^(?:actions\[\d+\]\.)?((?:config|secrets|condition)\.\w+|name|template|cooldown_s|workspace|entity_type|topic|actions)\b"
)


def describe(condition: dict[str, Any] | None) -> str:
    """A rule's condition in words, for the pages."""
    if not condition:
        return "forward everything"
    c = {k: (_plain(v) if isinstance(v, float) else v) for k, v in condition.items()}
    attr, h = c.get("attribute") or "any attribute", c.get("hysteresis")
    back = {
        "above": lambda: f"ok again below {_plain(condition['threshold'] - condition['hysteresis'])}",
        "below": lambda: f"ok again above {_plain(condition['threshold'] + condition['hysteresis'])}",
    }
    text = {
        "above": lambda: f"{attr} above {c['threshold']}",
        "below": lambda: f"{attr} below {c['threshold']}",
        "outside": lambda: f"{attr} outside [{c['min']}, {c['max']}]",
        "rate": lambda: f"{attr} changes faster than {c['per_minute']} per minute",
        "equals": lambda: f"{attr} equals {c['value']!r}",
        "no_data": lambda: f"no data from a device for {c['minutes']} minutes",
    }[condition["type"]]()
    if condition["type"] in back and condition.get("hysteresis"):
        text += f" ({back[condition['type']]()})"
    elif condition["type"] == "outside" and condition.get("hysteresis"):
        text += f" (hysteresis {h})"
    return text


def field_of(error: str | None) -> str | None:
    m = _FIELD.match(error or "")
    return m.group(1) if m else None


def _org(sc: SessionContext) -> Organisation:
    assert sc.org is not None
    return sc.org


_page = partial(org_page, notices=NOTICES)


_post = partial(form_handler, router, ADMIN_FORM, refill=same_form)


def _counts(sc: SessionContext, connector_id: str) -> dict[str, int]:
    from sqlalchemy import func, select

    rows = sc.db.execute(
        select(Delivery.status, func.count())
        .where(Delivery.target_kind == svc.ConnectorTarget.name, Delivery.target_id == connector_id)
        .group_by(Delivery.status)
    ).all()
    return {str(k): int(v) for k, v in rows}


# -- connectors -----------------------------------------------------------------------------------
def connectors_page(
    request: Request,
    sc: SessionContext,
    *,
    error: str | None = None,
    status: int = 200,
    form: FormData | None = None,
    reveal: dict[str, Any] | None = None,
) -> Response:
    o = _org(sc)
    items = svc.list_connectors(sc.db, o)
    settings = ctx(request).settings
    return _page(
        request,
        sc,
        "connectors",
        "Connectors",
        "org_connectors.html",
        error=error,
        status=status,
        connectors=items,
        counts={c.id: _counts(sc, c.id) for c in items},
        reveal=reveal,
        form=form,
        typed=({k: forms.text(form, k) for k in form} if form is not None else {}),
        field_error=field_of(error),
        mail_configured=bool(settings.smtp_host),
        allow_private=settings.push_allow_private_targets,
    )


page_route(router, ADMIN_PAGE, "/orgs/{org}/connectors", "connectors", connectors_page)


class _Form:
    def __init__(self, form: FormData | None) -> None:
        self.form = form

    def __call__(self, name: str) -> str:
        return forms.text(self.form, name)


def _webhook(t: _Form) -> tuple[dict[str, Any], dict[str, Any]]:
    headers: dict[str, str] = {}
    for line in forms.lines(t("headers")):
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"config.headers: the line {line!r} must be 'Name: value'")
        headers[name.strip()] = value.strip()
    config: dict[str, Any] = {"url": t("url"), "body": t("body") or "sensorhub", "headers": headers}
    _timeout_of(t, config)
    if t("notices") == "on":
        config["notices"] = True
    return config, ({"signing_secret": t("signing_secret")} if t("signing_secret") else {})


def _mqtt(t: _Form) -> tuple[dict[str, Any], dict[str, Any]]:
    config: dict[str, Any] = {
        "host": t("host"),
        "tls": t("tls") == "on",
        "topic": t("topic") or "{org}/{workspace}/{device}/{attribute}",
        "qos": int(_number(t("qos") or "1", "config.qos")),
    }
    if t("port"):
        config["port"] = int(_number(t("port"), "config.port"))
    if t("username"):
        config["username"] = t("username")
    return config, ({"password": t("password")} if t("password") else {})


def _influxdb(t: _Form) -> tuple[dict[str, Any], dict[str, Any]]:
    config: dict[str, Any] = {
        "url": t("url"),
        "database": t("database"),
        "measurement": t("measurement") or "sensorhub",
    }
    if t("username"):
        config["username"] = t("username")
    return config, ({"password": t("password")} if t("password") else {})


def _email(t: _Form) -> tuple[dict[str, Any], dict[str, Any]]:
    to = [a.strip() for a in t("to").replace(";", ",").split(",") if a.strip()]
    return {"to": to, "subject": t("subject") or None}, {}


_KIND_FORMS: dict[str, Callable[[_Form], tuple[dict[str, Any], dict[str, Any]]]] = {
    "webhook": _webhook,
    "mqtt": _mqtt,
    "influxdb": _influxdb,
    "email": _email,
}


def _config_of(kind: str, form: FormData | None) -> tuple[dict[str, Any], dict[str, Any]]:
    parse = _KIND_FORMS.get(kind)
    if parse is None:
        raise BadRequest("choose a connector kind")
    return parse(_Form(form))


def _number(v: str, label: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise BadRequest(f"{label} must be a number") from None


@_post("/orgs/{org}/connectors", connectors_page)
def create_connector(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    kind = forms.text(form, "kind")
    config, secrets = _config_of(kind, form)
    new = svc.NewConnector(kind, forms.text(form, "name"), config, secrets)
    c, shown = svc.create_connector(sc.db, _org(sc), sc.user, new, ctx(request).settings)
    if shown:
        return connectors_page(
            request, sc, reveal={"name": c.name, "secret": shown.get("signing_secret"), "id": c.id}
        )
    return done_redirect(_org(sc), f"connectors/{c.id}", "connector-created")


PAGE_SIZE = 50
RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


def _log_query(request: Request) -> dict[str, Any]:
    """The delivery log's filter from the query string (unknown values fall back to "all")."""
    q = request.query_params
    st = q.get("status") or None
    if st not in (None, "pending", "delivered", "dead", "suppressed"):
        st = None
    rng = q.get("range") or None
    if rng not in RANGES:
        rng = None
    before = q.get("before")
    return {"status": st, "range": rng, "before": int(before) if before and before.isdigit() else None}


def _connector_values(c: Any, form: FormData | None) -> dict[str, Any]:
    """The edit form's values: what was typed (after an error), else the stored configuration."""
    if form is not None:
        v: dict[str, Any] = {k: forms.text(form, k) for k in form if k not in ("header_name", "header_value")}
        v["tls"] = forms.text(form, "tls") == "on"
        v["retain"] = forms.text(form, "retain") == "on"
        v["notices"] = forms.text(form, "notices") == "on"
        v["enabled"] = forms.text(form, "enabled") == "on"
        v["headers"] = [
            (str(n), str(val))
            for n, val in zip(form.getlist("header_name"), form.getlist("header_value"), strict=False)
            if str(n).strip() or str(val).strip()
        ]
        return v
    cfg = dict(c.config)
    v = {
        k: ("" if val is None else str(val))
        for k, val in cfg.items()
        if not isinstance(val, dict | list | bool)
    }
    v["name"], v["enabled"] = c.name, c.enabled
    v["tls"], v["retain"] = bool(cfg.get("tls")), bool(cfg.get("retain"))
    v["notices"] = cfg.get("notices") is True
    v["headers"] = list((cfg.get("headers") or {}).items())
    if c.kind == "email":
        v["to"] = ", ".join(cfg.get("to") or [])
    return v


def connector_page(
    request: Request,
    sc: SessionContext,
    connector_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    form: FormData | None = None,
    reveal: str | None = None,
) -> Response:
    c = svc.get_connector(sc.db, _org(sc), connector_id)
    lq = _log_query(request)
    since = utcnow() - RANGES[lq["range"]] if lq["range"] else None
    rows = deliveries.deliveries_of(
        sc.db,
        c.org_id,
        svc.ConnectorTarget.name,
        c.id,
        lq["status"],
        lq["before"],
        PAGE_SIZE + 1,
        since=since,
    )
    page, more = deliveries.log_page(sc.db, rows, PAGE_SIZE)
    settings = ctx(request).settings
    editing = form is not None and request.url.path.endswith("/edit")
    return _page(
        request,
        sc,
        "connectors",
        c.name,
        "org_connector.html",
        error=error,
        status=status,
        c=c,
        deliveries=page,
        more=more,
        counts=_counts(sc, c.id),
        log=lq,
        ranges=list(RANGES),
        reveal=reveal,
        v=_connector_values(c, form if editing else None),
        secrets=svc.secret_names(c, settings),
        field_error=field_of(error) if editing else None,
        allow_private=settings.push_allow_private_targets,
        max_timeout=settings.push_timeout_seconds,
    )


page_route(
    router,
    ADMIN_PAGE,
    "/orgs/{org}/connectors/{connector_id}",
    "connector",
    connector_page,
    ("connector_id",),
)


def _header_rows(form: FormData | None, names: str, values: str) -> dict[str, str]:
    if form is None:
        return {}
    out: dict[str, str] = {}
    for n, val in zip(form.getlist(names), form.getlist(values), strict=False):
        name, value = str(n).strip(), str(val).strip()
        if not name and not value:
            continue  # an empty row (or one cleared to remove it)
        if not name:
            raise BadRequest("config.headers: a header row has a value but no name")
        out[name] = value
    return out


def _timeout_of(t: _Form, config: dict[str, Any]) -> None:
    if t("timeout_s"):
        config["timeout_s"] = _number(t("timeout_s"), "config.timeout_s (seconds)")


def _edit_webhook(form: FormData | None) -> tuple[dict[str, Any], dict[str, Any]]:
    t = _Form(form)
    config: dict[str, Any] = {"url": t("url"), "body": t("body") or "sensorhub"}
    config["headers"] = _header_rows(form, "header_name", "header_value")
    _timeout_of(t, config)
    if t("notices") == "on":
        config["notices"] = True
    secret_headers: dict[str, Any] = {h: None for h in forms.many(form, "secret_header_remove")}
    if t("secret_header_name"):
        secret_headers[t("secret_header_name")] = t("secret_header_value")
    return config, ({"headers": secret_headers} if secret_headers else {})


def _replace(form: FormData | None, names: tuple[str, ...]) -> dict[str, Any]:
    """Secrets typed in (replace), or ticked for removal; untouched ones stay as stored."""
    out: dict[str, Any] = {}
    for n in names:
        if forms.text(form, f"remove_{n}") == "on":
            out[n] = None
        elif forms.text(form, n):
            out[n] = forms.text(form, n)
    return out


def _edit_mqtt(form: FormData | None) -> tuple[dict[str, Any], dict[str, Any]]:
    t = _Form(form)
    config: dict[str, Any] = {
        "host": t("host"),
        "tls": t("tls") == "on",
        "retain": t("retain") == "on",
        "topic": t("topic"),
        "qos": int(_number(t("qos") or "1", "config.qos")),
    }
    if t("port"):
        config["port"] = int(_number(t("port"), "config.port"))
    if t("username"):
        config["username"] = t("username")
    if t("ca_cert"):
        config["ca_cert"] = t("ca_cert")
    _timeout_of(t, config)
    return config, _replace(form, ("password",))


def _edit_influxdb(form: FormData | None) -> tuple[dict[str, Any], dict[str, Any]]:
    t = _Form(form)
    config: dict[str, Any] = {"url": t("url"), "version": t("version") or "1"}
    for k in ("database", "retention_policy", "org", "bucket", "measurement", "username"):
        if t(k):
            config[k] = t(k)
    _timeout_of(t, config)
    return config, _replace(form, ("password", "token"))


def _edit_email(form: FormData | None) -> tuple[dict[str, Any], dict[str, Any]]:
    return _email(_Form(form))


_EDIT_FORMS: dict[str, Callable[[FormData | None], tuple[dict[str, Any], dict[str, Any]]]] = {
    "webhook": _edit_webhook,
    "mqtt": _edit_mqtt,
    "influxdb": _edit_influxdb,
    "email": _edit_email,
}


@_post("/orgs/{org}/connectors/{connector_id}/edit", connector_page, page_args=("connector_id",))
def edit_connector(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    c = svc.get_connector(sc.db, _org(sc), params["connector_id"])
    config, secrets = _EDIT_FORMS[c.kind](form)
    svc.update_connector(
        sc.db,
        _org(sc),
        c.id,
        name=forms.text(form, "name"),
        config=config,
        secrets=secrets,
        enabled=forms.text(form, "enabled") == "on",
        settings=ctx(request).settings,
    )
    return done_redirect(_org(sc), f"connectors/{c.id}", "connector-saved")


@_post("/orgs/{org}/connectors/{connector_id}/test", connector_page, page_args=("connector_id",))
def test_connector(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    d = svc.send_test(sc.db, _org(sc), params["connector_id"], sc.user, ctx(request).settings)
    return done_redirect(
        _org(sc),
        f"connectors/{params['connector_id']}",
        "test-delivered" if d.status == "delivered" else "test-failed",
    )


@_post("/orgs/{org}/connectors/{connector_id}/toggle", connector_page, page_args=("connector_id",))
def toggle_connector(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    on = forms.text(form, "enabled") == "1"
    svc.update_connector(sc.db, _org(sc), params["connector_id"], enabled=on, settings=ctx(request).settings)
    return done_redirect(
        _org(sc), f"connectors/{params['connector_id']}", "connector-enabled" if on else "connector-disabled"
    )


@_post("/orgs/{org}/connectors/{connector_id}/rotate", connector_page, page_args=("connector_id",))
def rotate_connector_secret(
    request: Request, sc: SessionContext, form: FormData | None, params: Any
) -> Response:
    hours = _number(forms.text(form, "grace_hours") or "24", "Grace period")
    _c, new = svc.rotate_secret(sc.db, _org(sc), params["connector_id"], hours, ctx(request).settings)
    return connector_page(request, sc, params["connector_id"], reveal=new)


@_post("/orgs/{org}/connectors/{connector_id}/delete", connector_page, page_args=("connector_id",))
def delete_connector(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    svc.delete_connector(sc.db, _org(sc), params["connector_id"])
    return done_redirect(_org(sc), "connectors", "connector-deleted")


@_post(
    "/orgs/{org}/connectors/{connector_id}/deliveries/{delivery_id}/replay",
    connector_page,
    page_args=("connector_id",),
)
def replay_delivery(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    c = svc.get_connector(sc.db, _org(sc), params["connector_id"])
    try:
        did = int(params["delivery_id"])
    except ValueError:
        raise BadRequest("no such delivery") from None
    d = deliveries.get_delivery(sc.db, c.org_id, did)
    if d.target_id != c.id:
        raise BadRequest("that delivery is not one of this connector's")
    deliveries.replay(sc.db, d)
    if forms.text(form, "back") == "deliveries":
        return done_redirect(_org(sc), "deliveries", "replayed")
    return done_redirect(_org(sc), f"connectors/{c.id}", "replayed")


def deliveries_page(
    request: Request, sc: SessionContext, *, error: str | None = None, status: int = 200, **_: Any
) -> Response:
    o = _org(sc)
    connectors = svc.list_connectors(sc.db, o)
    names = {c.id: c.name for c in connectors}
    lq = _log_query(request)
    lq["connector"] = request.query_params.get("connector") or None
    if lq["connector"] not in names:
        lq["connector"] = None
    since = utcnow() - RANGES[lq["range"]] if lq["range"] else None
    rows = deliveries.deliveries_of(
        sc.db,
        o.id,
        svc.ConnectorTarget.name,
        lq["connector"],
        lq["status"],
        lq["before"],
        PAGE_SIZE + 1,
        since=since,
    )
    page, more = deliveries.log_page(sc.db, rows, PAGE_SIZE)
    return _page(
        request,
        sc,
        "deliveries",
        "Deliveries",
        "org_deliveries.html",
        error=error,
        status=status,
        connectors=connectors,
        names=names,
        deliveries=page,
        more=more,
        log=lq,
        ranges=list(RANGES),
    )


page_route(router, ADMIN_PAGE, "/orgs/{org}/deliveries", "deliveries_log", deliveries_page)


# -- rules ----------------------------------------------------------------------------------------
def rules_page(
    request: Request,
    sc: SessionContext,
    *,
    error: str | None = None,
    status: int = 200,
    form: FormData | None = None,
) -> Response:
    o = _org(sc)
    rules = svc.list_rules(sc.db, o)
    return _page(
        request,
        sc,
        "rules",
        "Rules",
        "org_rules.html",
        error=error,
        status=status,
        rules=[(r, svc.rule_states(sc.db, r)) for r in rules],
        connectors=svc.list_connectors(sc.db, o),
        workspaces=accounts.list_workspaces(sc.db, o),
        types=CONDITION_TYPES,
        form=form,
        default_template=DEFAULT_TEMPLATE,
        names={c.id: c.name for c in svc.list_connectors(sc.db, o)},
        v=_typed_rule(form),
        field_error=field_of(error),
        describe=describe,
        conditions=CONDITION_FIELDS,
    )


page_route(router, ADMIN_PAGE, "/orgs/{org}/rules", "rules", rules_page)


def _condition(form: FormData | None) -> dict[str, Any] | None:
    t = _Form(form)
    kind = t("condition")
    if kind in ("", "none"):
        return None
    c: dict[str, Any] = {"type": kind}
    if t("attribute"):
        c["attribute"] = t("attribute")
    numbers = {
        "above": ("threshold", "hysteresis"),
        "below": ("threshold", "hysteresis"),
        "outside": ("min", "max", "hysteresis"),
        "rate": ("per_minute",),
        "no_data": ("minutes",),
    }
    for name in numbers.get(kind, ()):
        if t(name):
            c[name] = _number(t(name), f"condition.{name}")
    if kind == "equals":
        c["value"] = t("value")
    return c


@_post("/orgs/{org}/rules", rules_page)
def create_rule(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    template = forms.text(form, "template") or None
    cooldown = forms.integer(forms.text(form, "cooldown_s"), "cooldown_s") or 0
    new = svc.NewRule(
        name=forms.text(form, "name"),
        actions=[{"connector_id": cid, "template": template} for cid in forms.many(form, "connectors")],
        workspace=forms.text(form, "workspace") or None,
        entity_type=forms.text(form, "entity_type") or None,
        condition=_condition(form),
        topic=forms.text(form, "topic") or None,
        cooldown_s=cooldown,
        notify_resolved=forms.text(form, "notify_resolved") == "on",
    )
    svc.create_rule(sc.db, _org(sc), sc.user, new)
    return done_redirect(_org(sc), "rules", "rule-created")


# Which condition types use each field (the rule forms show only those, with the script).
CONDITION_FIELDS = {
    "attribute": "above below outside rate equals no_data",
    "threshold": "above below",
    "hysteresis": "above below outside",
    "min": "outside",
    "max": "outside",
    "per_minute": "rate",
    "value": "equals",
    "minutes": "no_data",
}
_COND_FIELDS = ("attribute", "threshold", "hysteresis", "min", "max", "per_minute", "value", "minutes")


def _rule_values(sc: SessionContext, r: Any, form: FormData | None) -> dict[str, Any]:
    """The edit form's values: what was typed (after an error or a preview), else the rule's."""
    if form is not None:
        return _typed_rule(form) | {"enabled": forms.text(form, "enabled") == "on"}
    cond = r.condition or {}
    ws = next((w.slug for w in accounts.list_workspaces(sc.db, _org(sc)) if w.id == r.workspace_id), "")
    templates = [a.get("template") for a in r.actions]
    v: dict[str, Any] = {k: ("" if cond.get(k) is None else _plain(cond[k])) for k in _COND_FIELDS}
    v |= {
        "name": r.name,
        "workspace": ws,
        "entity_type": r.entity_type or "",
        "topic": r.topic if r.topic is not None else "*",
        "condition": cond.get("type", "none"),
        "template": "" if templates[0] in (None, DEFAULT_TEMPLATE) else templates[0],
        "cooldown_s": str(r.cooldown_s),
        "connectors": [a["connector_id"] for a in r.actions],
        "notify_resolved": r.notify_resolved,
        "enabled": r.enabled,
        "mixed_templates": len(set(templates)) > 1,
    }
    return v


def _typed_rule(form: FormData | None) -> dict[str, Any]:
    """The create form's values: what was typed (after an error), else empty."""
    keys = ("name", "workspace", "entity_type", "topic", "condition", "template", "cooldown_s", *_COND_FIELDS)
    v: dict[str, Any] = {k: forms.text(form, k) for k in keys}
    v["connectors"] = forms.many(form, "connectors")
    v["notify_resolved"] = forms.text(form, "notify_resolved") == "on"
    return v


def _plain(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def rule_page(
    request: Request,
    sc: SessionContext,
    rule_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    form: FormData | None = None,
    preview: str | None = None,
) -> Response:
    r = svc.get_rule(sc.db, _org(sc), rule_id)
    connectors = svc.list_connectors(sc.db, _org(sc))
    states = svc.rule_states(sc.db, r)
    return _page(
        request,
        sc,
        "rules",
        r.name,
        "org_rule.html",
        error=error,
        status=status,
        r=r,
        states=states,
        firing=sum(1 for x in states if x.state == "firing"),
        history=svc.rule_history(sc.db, r, 200),
        names={c.id: c.name for c in connectors},
        connectors=connectors,
        workspaces=accounts.list_workspaces(sc.db, _org(sc)),
        v=_rule_values(sc, r, form if form is not None and request.url.path.endswith("/edit") else None),
        describe=describe,
        conditions=CONDITION_FIELDS,
        field_error=field_of(error),
        preview=preview,
        default_template=DEFAULT_TEMPLATE,
    )


page_route(router, ADMIN_PAGE, "/orgs/{org}/rules/{rule_id}", "rule", rule_page, ("rule_id",))


@_post("/orgs/{org}/rules/{rule_id}/edit", rule_page, page_args=("rule_id",))
def edit_rule(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    template = forms.text(form, "template") or None
    if forms.text(form, "action") == "preview":
        text = svc.preview_template(
            _org(sc), template, name=forms.text(form, "name"), condition=_condition(form)
        )
        return rule_page(request, sc, params["rule_id"], form=form, preview=text)
    svc.update_rule(
        sc.db,
        _org(sc),
        params["rule_id"],
        {
            "name": forms.text(form, "name"),
            "workspace": forms.text(form, "workspace") or None,
            "entity_type": forms.text(form, "entity_type") or None,
            "topic": forms.text(form, "topic") or None,
            "condition": _condition(form),
            "actions": [
                {"connector_id": cid, "template": template} for cid in forms.many(form, "connectors")
            ],
            "cooldown_s": forms.integer(forms.text(form, "cooldown_s"), "cooldown_s") or 0,
            "notify_resolved": forms.text(form, "notify_resolved") == "on",
            "enabled": forms.text(form, "enabled") == "on",
        },
    )
    return done_redirect(_org(sc), f"rules/{params['rule_id']}", "rule-saved")


@_post("/orgs/{org}/rules/{rule_id}/toggle", rule_page, page_args=("rule_id",))
def toggle_rule(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    on = forms.text(form, "enabled") == "1"
    svc.update_rule(sc.db, _org(sc), params["rule_id"], {"enabled": on})
    return done_redirect(_org(sc), f"rules/{params['rule_id']}", "rule-enabled" if on else "rule-disabled")


@_post("/orgs/{org}/rules/{rule_id}/delete", rule_page, page_args=("rule_id",))
def delete_rule(request: Request, sc: SessionContext, form: FormData | None, params: Any) -> Response:
    svc.delete_rule(sc.db, _org(sc), params["rule_id"])
    return done_redirect(_org(sc), "rules", "rule-deleted")
