"""GET /api/stream: live values over Server-Sent Events, authorised per event with the token's current
access, resumable with Last-Event-ID. Against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from sensorhub.accounts import service as accounts
from sensorhub.tokens import service as tokens
from tests.builders import bearer
from tests.live.conftest import Server

DEV = "urn:ngsi-ld:Device:probe-1"


class Stream:
    """An SSE stream read on a thread; ``next()`` waits (bounded) for the next message."""

    def __init__(self) -> None:
        self.messages: queue.Queue[ServerSentEvent | Exception] = queue.Queue()

    def next(self, timeout: float = 10.0) -> ServerSentEvent:
        m = self.messages.get(timeout=timeout)
        if isinstance(m, Exception):
            raise m
        return m

    def next_value(self, timeout: float = 10.0) -> tuple[ServerSentEvent, dict[str, Any]]:
        m = self.next(timeout)
        assert m.event == "message", (m.event, m.data)
        return m, json.loads(m.data)


@contextmanager
def stream(server: Server, token: str, params: Any = None, last_id: str | None = None) -> Iterator[Stream]:
    s = Stream()
    headers = bearer(token)
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    ready = threading.Event()
    client = httpx.Client(base_url=server.url, timeout=10)

    def run() -> None:
        try:
            with connect_sse(client, "GET", "/api/stream", params=params, headers=headers) as es:
                if es.response.status_code != 200:
                    es.response.read()
                    s.messages.put(AssertionError(f"{es.response.status_code} {es.response.text}"))
                    return
                for m in es.iter_sse():
                    if m.event == "ready":
                        ready.set()
                        continue
                    if m.event == "message" and not m.data:
                        # A heartbeat comment: httpx-sse dispatches one as an empty message once an
                        # id was seen (it keeps the last event id, as the spec says, and then reports).
                        continue
                    s.messages.put(m)
        except Exception as e:  # closed by the test, or a failure the test will see
            s.messages.put(e)
        finally:
            ready.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10), "the stream did not open"
    try:
        yield s
    finally:
        client.close()
        t.join(5)


def backfill(server: Server, token: str, device: str, values: list[tuple[str, float]]) -> None:
    body = [{"timestamp": t, "data": {"temperature": {"value": v, "unit": "CEL"}}} for t, v in values]
    r = httpx.post(f"{server.url}/v3/devices/{device}/backfill", json=body, headers=bearer(token), timeout=10)
    assert r.status_code == 200, r.text


def setup(server: Server, org: str = "acme", device: str = DEV) -> str:
    w = server.world
    w.org(org)
    w.user(f"ann@{org}.test", org, "member")
    w.entity(org, "main", device)
    return w.pat(f"ann@{org}.test")


def test_a_backfilled_value_arrives_with_its_event_id(server: Server) -> None:
    token = setup(server)
    with stream(server, token, {"entity": DEV, "attribute": "temperature"}) as s:
        backfill(server, token, DEV, [("2026-01-01T00:00:00Z", 20.5), ("2026-01-01T00:01:00Z", 21.5)])
        m, data = s.next_value()
    assert m.id == str(data["id"]) and int(m.id) > 0
    assert data["entity"] == DEV and data["attribute"] == "temperature" and data["unit"] == "CEL"
    assert data["value"] == 21.5 and data["time"] == "2026-01-01T00:01:00Z" and data["count"] == 2
    assert data["points"] == [["2026-01-01T00:00:00Z", 20.5], ["2026-01-01T00:01:00Z", 21.5]]


def test_every_topic_streams_with_its_topic_and_topic_filters(server: Server) -> None:
    token = setup(server)

    def send(topic: str, value: float) -> None:
        at = f"2026-01-01T00:0{int(value)}:00Z"
        body = {"timestamp": at, "topic": topic, "data": {"temperature": value}}
        r = httpx.post(
            f"{server.url}/v3/devices/{DEV}/backfill", json=body, headers=bearer(token), timeout=10
        )
        assert r.status_code == 200, r.text

    with stream(server, token, {"entity": DEV}) as every, stream(server, token, {"topic": "env"}) as env:
        send("default", 1.0)
        send("env", 2.0)
        send("cpu=cpu0,host=h1", 3.0)
        send("env", 4.0)
        got = [every.next_value()[1] for _ in range(4)]
        only = [env.next_value()[1] for _ in range(2)]
    assert [(d["topic"], d["value"]) for d in got] == [
        ("default", 1.0),
        ("env", 2.0),
        ("cpu=cpu0,host=h1", 3.0),
        ("env", 4.0),
    ]
    # The filtered stream got the env values and nothing in between.
    assert [(d["topic"], d["value"]) for d in only] == [("env", 2.0), ("env", 4.0)]
    r = httpx.get(f"{server.url}/api/stream", params={"topic": "a\tb"}, headers=bearer(token))
    assert r.status_code == 400 and "topic" in r.json()["message"]


def test_a_reconnect_with_last_event_id_replays_what_was_missed(server: Server) -> None:
    token = setup(server)
    with stream(server, token, {"entity": DEV}) as s:
        backfill(server, token, DEV, [("2026-01-01T00:00:00Z", 1.0)])
        first, _ = s.next_value()
    backfill(server, token, DEV, [("2026-01-01T00:01:00Z", 2.0)])
    backfill(server, token, DEV, [("2026-01-01T00:02:00Z", 3.0)])
    with stream(server, token, {"entity": DEV}, last_id=first.id) as s:
        values = [s.next_value()[1]["value"] for _ in range(2)]
        backfill(server, token, DEV, [("2026-01-01T00:03:00Z", 4.0)])
        values.append(s.next_value()[1]["value"])
    assert values == [2.0, 3.0, 4.0]


def test_another_tenants_values_never_appear(server: Server) -> None:
    mine = setup(server, "acme")
    theirs = setup(server, "rival", "urn:ngsi-ld:Device:rival-1")
    with stream(server, mine) as s:  # no entity filter: everything this token may read
        backfill(server, theirs, "urn:ngsi-ld:Device:rival-1", [("2026-01-01T00:00:00Z", 666.0)])
        backfill(server, mine, DEV, [("2026-01-01T00:00:00Z", 1.0)])
        _, data = s.next_value()
    assert data["entity"] == DEV and data["value"] == 1.0
    # Naming the other tenant's entity is a 404, as everywhere else.
    r = httpx.get(
        f"{server.url}/api/stream", params={"entity": "urn:ngsi-ld:Device:rival-1"}, headers=bearer(mine)
    )
    assert r.status_code == 404


def test_a_revoked_token_ends_the_stream_at_the_next_heartbeat(server: Server) -> None:
    token = setup(server)
    with server.ctx.db.session() as db:
        user = accounts.get_user_by_email(db, "ann@acme.test")
        assert user is not None
        cred = tokens.list_pats(db, user.id)[0]
    with stream(server, token, {"entity": DEV}) as s:
        with server.ctx.db.transaction() as db:
            tokens.revoke_pat(db, user, cred.id)
        end = s.next(timeout=5)
    assert end.event == "end" and "revoked" in json.loads(end.data)["reason"]
    r = httpx.get(f"{server.url}/api/stream", headers=bearer(token))
    assert r.status_code == 401


def test_bad_requests_are_refused_before_streaming(server: Server) -> None:
    token = setup(server)
    r = httpx.get(f"{server.url}/api/stream", headers={**bearer(token), "Last-Event-ID": "abc"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["message"]
    r = httpx.get(f"{server.url}/api/stream", params={"entty": DEV}, headers=bearer(token))
    assert r.status_code == 400 and "entty" in r.json()["message"]
    ro = server.world.pat("ann@acme.test", scopes=["entities"], name="ro")
    assert httpx.get(f"{server.url}/api/stream", headers=bearer(ro)).status_code == 403


def test_values_and_revocations_of_another_worker_reach_the_stream(
    server: Server, other_worker: Server
) -> None:
    token = setup(server)
    with stream(server, token, {"entity": DEV}) as s:
        backfill(other_worker, token, DEV, [("2026-01-01T00:00:00Z", 7.0)])  # stored by the other worker
        assert s.next_value()[1]["value"] == 7.0
        with other_worker.ctx.db.session() as db:
            user = accounts.get_user_by_email(db, "ann@acme.test")
            assert user is not None
        with other_worker.ctx.db.transaction() as db:
            tokens.revoke_pat(db, user, tokens.list_pats(db, user.id)[0].id)
        end = s.next(timeout=5)
    assert end.event == "end" and "revoked" in json.loads(end.data)["reason"]
