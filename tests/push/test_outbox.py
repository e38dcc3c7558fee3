"""The outbox: every accepted ingest request leaves its events in the same transaction, and nothing
else does; waiters hear of new events after the commit; the job runner runs a periodic job once per
interval across runners."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from sensorhub.context import AppContext
from sensorhub.jobs import JobRunner
from sensorhub.push.events import EventCursor, newest_id, read_since
from sensorhub.push.hub import EventHub
from sensorhub.push.models import PushEvent
from sensorhub.push.retention import prune_events
from tests.builders import World, bearer

DEV = "urn:ngsi-ld:Device:outbox-1"


@pytest.fixture
def ingest_token(world: World) -> str:
    world.org("acme")
    world.entity("acme", "main", DEV)
    return world.api_key("acme", scopes=["ingest"])


def _backfill(client: TestClient, token: str, body: Any, device: str = DEV) -> Any:
    return client.post(f"/v3/devices/{device}/backfill", json=body, headers=bearer(token))


def _events(ctx: AppContext, after: int = 0) -> list[PushEvent]:
    with ctx.db.session() as s:
        return read_since(s, after, 1000)


def test_accepted_points_become_events_duplicates_and_refusals_do_not(
    client: TestClient, ctx: AppContext, ingest_token: str
) -> None:
    body = [{"timestamp": f"2026-01-01T00:00:0{i}Z", "data": {"t": 20.0 + i, "rh": 50 + i}} for i in range(3)]
    r = _backfill(client, ingest_token, body)
    assert r.status_code == 200, r.text
    events = _events(ctx)
    assert sorted(e.attribute for e in events) == ["rh", "t"]
    t = next(e for e in events if e.attribute == "t")
    assert (t.entity_ref, t.kind, t.count, t.value) == (DEV, "numeric", 3, 22.0)
    assert t.point_list() == [(1767225600000000 + i * 1_000_000, 20.0 + i) for i in range(3)]
    # A repeat of two stored points plus one new: the event holds only the new point.
    body2 = [*body[1:], {"timestamp": "2026-01-01T00:00:09Z", "data": {"t": 1.5, "rh": 2}}]
    assert _backfill(client, ingest_token, body2).json() == {"accepted": 2, "duplicates": 4}
    later = _events(ctx, max(e.id for e in events))
    assert [(e.attribute, e.point_list()) for e in sorted(later, key=lambda e: e.attribute)] == [
        ("rh", [(1767225609000000, 2.0)]),
        ("t", [(1767225609000000, 1.5)]),
    ]
    # Nothing new at all: no event. A refused request (bad record): no event either.
    before = len(_events(ctx))
    assert _backfill(client, ingest_token, body).json()["accepted"] == 0
    assert _backfill(client, ingest_token, [body[0], {"data": {"t": None}}]).status_code == 400
    assert len(_events(ctx)) == before


def test_states_are_events_and_a_failed_transaction_leaves_none(
    client: TestClient, ctx: AppContext, ingest_token: str, world: World
) -> None:
    r = _backfill(client, ingest_token, {"timestamp": "2026-01-01T00:00:00Z", "data": {"door": "open"}})
    assert r.status_code == 200
    (e,) = _events(ctx)
    assert (e.kind, e.attribute, e.value, e.point_list()) == (
        "state",
        "door",
        "open",
        [(1767225600000000, "open")],
    )
    # The ingest transaction fails after the events were inserted: they go with it.
    from sensorhub.authz.subjects import session_access
    from sensorhub.timeseries import ingest

    owner = world.user("owner@acme.test", "acme", role="owner")
    raw = b'{"timestamp":"2026-01-02T00:00:00Z","data":{"t":1}}'
    with pytest.raises(RuntimeError), ctx.db.transaction() as s:
        prepared = ingest.prepare(raw, e.created_at, ingest.Limits())
        ingest.store(s, session_access(s, owner), DEV, prepared, ingest.Limits())
        assert len(read_since(s, 0, 10)) == 2  # inside the transaction, the event is there
        raise RuntimeError("after the store")
    assert len(_events(ctx)) == 1


def test_waiters_hear_of_events_after_commit_only(
    client: TestClient, ctx: AppContext, ingest_token: str
) -> None:
    start = ctx.hub.newest
    heard: list[int] = []
    t = threading.Thread(target=lambda: heard.append(ctx.hub.wait(start, 10.0)))
    t.start()
    assert (
        _backfill(client, ingest_token, {"timestamp": "2026-01-01T00:00:00Z", "data": {"t": 1}}).status_code
        == 200
    )
    t.join(10)
    with ctx.db.session() as s:
        assert heard == [newest_id(s)] and heard[0] > start


def test_hub_wakes_async_waiters_and_times_out() -> None:
    import asyncio

    hub = EventHub()

    async def main() -> tuple[int, int]:
        waiter = asyncio.create_task(hub.wait_async(0, 5.0))
        await asyncio.sleep(0.01)
        threading.Thread(target=hub.notify, args=(7,)).start()
        got = await waiter
        timed_out = await hub.wait_async(7, 0.05)
        return got, timed_out

    assert asyncio.run(main()) == (7, 7)


def test_cursor_rereads_ids_that_commit_late(ctx: AppContext, world: World) -> None:
    org = world.org("acme")
    row = {
        "org_id": org.id,
        "workspace_id": "w",
        "entity_id": 1,
        "entity_ref": DEV,
        "entity_type": "Device",
        "attribute": "t",
        "kind": "numeric",
        "time_us": 0,
        "value": 1.0,
        "count": 1,
        "first_time_us": 0,
        "created_at": org.created_at,
    }
    with ctx.db.transaction() as s:
        s.execute(insert(PushEvent), [{**row, "id": 1}, {**row, "id": 3}])
    cursor = EventCursor()
    with ctx.db.session() as s:
        assert [e.id for e in cursor.read(s)] == [1, 3]
    assert set(cursor.gaps) == {2}
    with ctx.db.transaction() as s:  # id 2 commits after 3 (PostgreSQL can do this)
        s.execute(insert(PushEvent), [{**row, "id": 2}, {**row, "id": 4}])
    restored = EventCursor.from_json(cursor.to_json())
    with ctx.db.session() as s:
        assert [e.id for e in restored.read(s)] == [2, 4]
        assert restored.gaps == {} and restored.after_id == 4
        # A gap that never fills is forgotten after the timeout.
        restored.gaps[99] = time.time() - 10_000
        assert restored.read(s) == [] and restored.gaps == {}


def test_retention_prunes_old_events_only(client: TestClient, ctx: AppContext, ingest_token: str) -> None:
    _backfill(client, ingest_token, {"timestamp": "2026-01-01T00:00:00Z", "data": {"t": 1, "u": 2}})
    assert prune_events(ctx.db, ctx.settings) == 0
    old = ctx.settings.model_copy(update={"push_event_retention_hours": 1e-9})
    ids = [e.id for e in _events(ctx)]
    assert prune_events(ctx.db, old, keep_after_id=ids[0]) == 1
    assert [e.id for e in _events(ctx)] == ids[1:]


def test_a_periodic_job_runs_once_per_interval_across_runners(ctx: AppContext) -> None:
    runs: list[str] = []
    a, b = JobRunner(ctx.db, "a"), JobRunner(ctx.db, "b")
    for r in (a, b):
        r.register_periodic("count", 3600, lambda r=r: runs.append(r.holder))  # type: ignore[misc]
    assert a.run_once("count") is True
    assert b.run_once("count") is False and a.run_once("count") is False
    assert runs == ["a"]
    # Started, a failing job is recorded and the runner goes on; stop() ends the threads.
    boom = JobRunner(ctx.db, "c")
    boom.register_periodic("boom", 0.05, lambda: 1 / 0)
    ticked = threading.Event()
    boom.register_loop("loop", lambda stop: (ticked.set(), stop.wait(0.05)))
    boom.start()
    assert ticked.wait(5)
    deadline = time.monotonic() + 5
    while boom.status()["boom"]["runs"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    boom.stop()
    assert "ZeroDivisionError" in str(boom.status()["boom"]["last_error"])
    from sensorhub.jobs import JobLease

    with ctx.db.session() as s:
        lease = s.scalars(select(JobLease).where(JobLease.name == "boom")).one()
        assert lease.holder == "c" and "ZeroDivisionError" in (lease.last_error or "")


def test_events_carry_the_topic_of_every_ingest_path(
    client: TestClient, ctx: AppContext, ingest_token: str
) -> None:
    """Every topic reaches the outbox (backfill records, line-protocol tags), states with their record's."""
    body = [
        {"timestamp": "2026-01-01T00:00:00Z", "topic": "env", "data": {"t": 1.0, "door": "open"}},
        {"timestamp": "2026-01-01T00:00:00Z", "data": {"t": 2.0}},
    ]
    assert _backfill(client, ingest_token, body).status_code == 200
    lines = f'cpu,cpu=cpu0,host={DEV} usage=3.5,state="busy" 1767225600000000000'
    r = client.post(
        "/api/v2/write?org=acme&bucket=main&precision=ns",
        content=lines,
        headers={"Authorization": f"Token {ingest_token}"},
    )
    assert r.status_code == 204, r.text
    got = sorted((e.attribute, e.topic, e.kind, e.value) for e in _events(ctx))
    assert got == [
        ("cpu_state", "cpu=cpu0", "state", "busy"),
        ("cpu_usage", "cpu=cpu0", "numeric", 3.5),
        ("door", "env", "state", "open"),
        ("t", "default", "numeric", 2.0),
        ("t", "env", "numeric", 1.0),
    ]
