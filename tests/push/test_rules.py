"""Rule conditions point by point (no database), and cooldown / no-data / rate through the fan-out on
both backends (the worker's steps called directly: no server, no waiting)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from sensorhub.accounts.models import User
from sensorhub.accounts.service import get_org
from sensorhub.authz.subjects import session_access
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest
from sensorhub.push import connectors, rules
from sensorhub.push.delivery import enqueue, fan_out
from sensorhub.push.models import Delivery, RuleHistory, RuleState
from sensorhub.timeseries import ingest
from tests.builders import World

DEV = "urn:ngsi-ld:Device:r-1"
MIN = 60_000_000


def _changes(cond: dict, vals: list[float], state: str = "ok") -> list[tuple[str, float]]:
    c = rules.check_condition(cond)
    assert c is not None
    ts = np.arange(len(vals), dtype=np.int64) * MIN
    return [
        (t.to_state, t.value) for t in rules.transitions(c, state, ts, np.asarray(vals, np.float64), None)
    ]


def test_conditions_point_by_point() -> None:
    above = {"type": "above", "attribute": "t", "threshold": 30, "hysteresis": 2}
    assert _changes(above, [25, 31, 29, 27.9, 31, 35]) == [("firing", 31), ("ok", 27.9), ("firing", 31)]
    below = {"type": "below", "attribute": "t", "threshold": 0, "hysteresis": 1}
    assert _changes(below, [1, -1, 0.5, 1.5]) == [("firing", -1), ("ok", 1.5)]
    outside = {"type": "outside", "attribute": "t", "min": 10, "max": 20, "hysteresis": 1}
    assert _changes(outside, [15, 21, 19.5, 19, 9]) == [("firing", 21), ("ok", 19), ("firing", 9)]
    rate = {"type": "rate", "attribute": "t", "per_minute": 5}
    assert _changes(rate, [10, 12, 20, 21, 21]) == [("firing", 20), ("ok", 21)]
    c = rules.check_condition({"type": "equals", "attribute": "door", "value": "open"})
    assert c is not None
    got = rules.transitions(c, "ok", np.arange(3, dtype=np.int64), ["closed", "open", "closed"], None)
    assert [(t.to_state, t.value) for t in got] == [("firing", "open"), ("ok", "closed")]
    for bad, word in [
        ({"type": "above", "attribute": "t"}, "threshold"),
        ({"type": "outside", "attribute": "t", "min": 5, "max": 1}, "min"),
        ({"type": "above", "attribute": "t", "threshold": 1, "oops": 1}, "oops"),
        ({"type": "sometimes"}, "condition.type"),
    ]:
        with pytest.raises(BadRequest, match=word):
            rules.check_condition(bad)
    with pytest.raises(BadRequest, match="template"):
        rules.check_template("{% for %}")
    # The sandbox: no way to internals from a template.
    with pytest.raises(BadRequest):
        rules.check_template("{{ rule.__class__.__mro__[1].__subclasses__() }}")


def _setup(
    ctx: AppContext, world: World, condition: dict | None, cooldown_s: int = 0, entity_type: str | None = None
) -> tuple[User, str]:
    world.org("acme")
    world.entity("acme", "main", DEV)
    owner = world.user("owner@acme.test", "acme", role="owner")
    with ctx.db.transaction() as s:
        org = get_org(s, "acme")
        user = s.get(User, owner.id)
        assert user is not None
        settings = ctx.settings.model_copy(update={"push_allow_private_targets": True})
        webhook = connectors.NewConnector("webhook", "h", {"url": "http://127.0.0.1:9/x"})
        c, _ = connectors.create_connector(s, org, user, webhook, settings)
        rule = connectors.NewRule(
            "r",
            [{"connector_id": c.id}],
            workspace="main",
            entity_type=entity_type,
            condition=condition,
            cooldown_s=cooldown_s,
            notify_resolved=True,
        )
        r = connectors.create_rule(s, org, user, rule)
        return owner, r.id


def _ingest(ctx: AppContext, owner: User, points: list[tuple[int, float]]) -> None:
    import orjson

    from sensorhub.kit.time import iso

    raw = orjson.dumps([{"timestamp": iso(t), "data": {"t": v}} for t, v in points])
    with ctx.db.transaction() as s:
        user = s.get(User, owner.id)
        assert user is not None
        p = ingest.prepare(raw, utcnow(), ingest.Limits())
        ingest.store(s, session_access(s, user), DEV, p, ingest.Limits())


def _deliveries(ctx: AppContext) -> list[Delivery]:
    with ctx.db.session() as s:
        return list(s.query(Delivery).order_by(Delivery.id))


def test_cooldown_records_but_does_not_notify(ctx: AppContext, world: World) -> None:
    owner, rule_id = _setup(ctx, world, {"type": "above", "attribute": "t", "threshold": 10}, cooldown_s=3600)
    base = 1_767_225_600_000_000
    _ingest(ctx, owner, [(base, 5), (base + MIN, 15), (base + 2 * MIN, 5), (base + 3 * MIN, 15)])
    fan_out(ctx.db, ctx.settings)
    # ok→firing notified; firing→ok and ok→firing within the cooldown: in the history, not sent.
    assert [d.message["rule"]["state"] for d in _deliveries(ctx)] == ["firing"]
    with ctx.db.session() as s:
        hist = s.query(RuleHistory).filter(RuleHistory.rule_id == rule_id).order_by(RuleHistory.id).all()
        assert [(h.to_state, h.notified) for h in hist] == [
            ("firing", True),
            ("ok", False),
            ("firing", False),
        ]


def test_no_data_fires_for_a_silent_device_and_clears_on_data(ctx: AppContext, world: World) -> None:
    owner, _rule_id = _setup(ctx, world, {"type": "no_data", "minutes": 5})
    base = 1_767_225_600_000_000
    _ingest(ctx, owner, [(base, 1.0)])
    fan_out(ctx.db, ctx.settings)
    target = connectors.ConnectorTarget()
    with ctx.db.transaction() as s:
        assert target.no_data(s, utcnow(), ctx.settings) == []  # not silent yet
    with ctx.db.transaction() as s:  # six minutes of silence
        s.query(RuleState).update({RuleState.last_seen_at: utcnow() - timedelta(minutes=6)})
    with ctx.db.transaction() as s:
        enqueue(s, target.name, target.no_data(s, utcnow(), ctx.settings))
    (fired,) = _deliveries(ctx)
    assert fired.message["rule"]["state"] == "firing" and fired.message["device"]["id"] == DEV
    _ingest(ctx, owner, [(base + MIN, 2.0)])
    fan_out(ctx.db, ctx.settings)
    assert [d.message["rule"]["state"] for d in _deliveries(ctx)] == ["firing", "ok"]


@pytest.mark.parametrize(("watched", "sent"), [("Boiler", 1), ("Device", 1), ("Pump", 0)])
def test_a_rule_for_a_type_watches_devices_having_it_among_others(
    ctx: AppContext, world: World, watched: str, sent: int
) -> None:
    owner, _ = _setup(ctx, world, None, entity_type=watched)
    with ctx.db.transaction() as s:
        s.query(Entity).filter(Entity.entity_id == DEV).one().set_types(["Device", "Boiler"])
    _ingest(ctx, owner, [(1_767_225_600_000_000, 5)])
    fan_out(ctx.db, ctx.settings)
    assert len(_deliveries(ctx)) == sent
