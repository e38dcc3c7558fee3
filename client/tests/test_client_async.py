"""AsyncClient mirrors Client: same routes, same errors, async iteration and retries."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
from sdk_fakes import BASE, TOKEN, body_of, error_response, problem_response
from test_client_entities import paged_entities, parcels
from test_client_readers import leaf_server, spring_pages

import sensorhub_client as sc


def run(coro):
    return asyncio.run(coro)


def aclient(server, **kwargs) -> sc.AsyncClient:
    return sc.AsyncClient(base_url=BASE, token=TOKEN, transport=server.async_transport(), **kwargs)


def test_async_client_has_every_public_method_of_the_sync_client():
    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(sc.Client) - {"close"} == public(sc.AsyncClient) - {"aclose"}
    for name in public(sc.Client) - {"close", "base_url", "token_kind"}:
        sync_sig = inspect.signature(getattr(sc.Client, name))
        async_sig = inspect.signature(getattr(sc.AsyncClient, name))
        assert list(sync_sig.parameters) == list(async_sig.parameters), name


def test_entities_are_an_async_iterator_over_every_page(server):
    server.add("GET", "/ngsi-ld/v1/entities", paged_entities(parcels(5)))

    async def main():
        async with aclient(server) as c:
            return [e async for e in c.entities(type="AgriParcel", page_size=2)]

    assert run(main()) == parcels(5)
    assert len(server.requests) == 3
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in server.requests)


def test_count_entity_and_problem_details(server):
    server.add(
        "GET",
        "/ngsi-ld/v1/entities",
        lambda r: httpx.Response(200, json=[], headers={"NGSILD-Results-Count": "5"}),
    )
    server.add(
        "GET",
        "/ngsi-ld/v1/entities/urn:x",
        lambda r: problem_response(
            404, "ResourceNotFound", "Not Found", "no urn:x", "/ngsi-ld/v1/entities/urn:x"
        ),
    )

    async def main():
        async with aclient(server) as c:
            assert await c.count_entities(type="AgriParcel") == 5
            with pytest.raises(sc.NotFound, match="no urn:x"):
                await c.entity("urn:x")

    run(main())


STATION = "urn:ngsi-ld:WeatherObserved:station-1"


@pytest.mark.parametrize("answer", ["json", "arrow"])
def test_timeseries_frame_from_json_or_arrow(server, answer):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from test_client_timeseries import PATH, arrow_answer, json_answer

    server.add("GET", PATH, json_answer if answer == "json" else arrow_answer)

    async def main():
        async with aclient(server) as c:
            return await c.timeseries(
                STATION, ["temperature", "humidity"], start="2026-01-01", end="2026-01-02"
            )

    df = run(main())
    assert list(df.columns) == ["temperature", "humidity"]
    assert df.index.name == "timestamp"
    assert str(df.index.tz) == "UTC"


def test_data_assets_and_simple_reads(server):
    pytest.importorskip("pandas")
    server.add("GET", "/api/data", leaf_server(7))
    server.add("GET", "/v3/assets", spring_pages(3))
    server.add("GET", "/api/devices", lambda r: httpx.Response(200, json=[{"id": "d1"}]))
    server.add("GET", "/api/tokens/self", lambda r: httpx.Response(200, json={"name": "nb"}))
    server.add("GET", "/api/managements", lambda r: httpx.Response(200, json=[]))

    async def main():
        async with aclient(server) as c:
            rows = [r async for r in c.data(page_size=3)]
            capped = [r async for r in c.data(limit=4, page_size=3)]
            assets = [a async for a in c.assets(size=2)]
            frame = await c.data_frame()
            return rows, capped, assets, frame, await c.latest(), await c.whoami(), await c.managements()

    rows, capped, assets, frame, devices, me, grants = run(main())
    assert len(rows) == 7
    assert len(capped) == 4
    assert [a["id"] for a in assets] == ["a0", "a1", "a2"]
    assert len(frame) == 7
    assert devices == [{"id": "d1"}]
    assert me == {"name": "nb"}
    assert grants == []


def test_backfill_retries_with_async_sleep(server, sleeps):
    answers = iter([429, 503, 200, 200])

    def handler(request):
        status = next(answers)
        if status == 429:
            return error_response(429, "Too Many Requests", "slow", {"Retry-After": "2"})
        if status == 503:
            return error_response(503, "Service Unavailable", "later")
        return httpx.Response(200, json={"accepted": len(body_of(request)), "duplicates": 0})

    server.add("POST", "/v3/devices/d1/backfill", handler)
    progress = []

    async def main():
        async with aclient(server) as c:
            records = [{"data": {"t": float(i)}} for i in range(3)]
            return await c.backfill(
                "d1", records, chunk_size=2, progress=lambda s, t: progress.append((s, t))
            )

    result = run(main())
    assert result == sc.BackfillResult(accepted=3, duplicates=0, chunks=2)
    assert sleeps == [2.0, 1.0]
    assert progress == [(2, 3), (3, 3)]


def test_export_download_is_awaitable_and_unauthenticated(server, tmp_path):
    pytest.importorskip("pandas")
    server.add(
        "POST",
        "/api/datahub/export",
        lambda r: httpx.Response(
            200,
            json={
                "download_url": "/dl/x.csv?sig=1",
                "expires_in": 60,
                "format": "csv",
                "rows": 1,
                "truncated": False,
            },
        ),
    )
    server.add("GET", "/dl/x.csv", lambda r: httpx.Response(200, text="a,b\n1,2\n"))

    async def main():
        async with aclient(server) as c:
            result = await c.export(
                [(STATION, "temperature")], start="2026-01-01", end="2026-01-02", format="csv"
            )
            assert isinstance(result, sc.AsyncExportResult)
            path = await result.download(tmp_path / "x.csv")
            frame = await result.to_frame()
            return path, frame

    path, frame = run(main())
    assert path.read_text() == "a,b\n1,2\n"
    assert frame["b"].tolist() == [2]
    assert "authorization" not in server.requests[-1].headers


def test_async_errors_are_the_same_types(server, sleeps):
    server.add(
        "GET",
        "/api/sensors",
        lambda r: error_response(
            403,
            "Forbidden",
            "Permission denied",
            {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="telemetry"'},
        ),
    )

    async def main():
        async with aclient(server) as c:
            await c.sensors()

    with pytest.raises(sc.PermissionDenied) as info:
        run(main())
    assert info.value.missing_scope == "telemetry"


def test_async_client_checks_the_token_and_hides_it():
    with pytest.raises(sc.InvalidTokenFormat):
        sc.AsyncClient(base_url=BASE, token=TOKEN[:-1])
    c = sc.AsyncClient(base_url=BASE, token=TOKEN)
    assert TOKEN not in repr(c)
    run(c.aclose())


def test_async_client_closes_on_exit(server):
    server.add("GET", "/api/devices", lambda r: httpx.Response(200, json=[]))

    async def main():
        async with aclient(server) as c:
            await c.devices()
        with pytest.raises(RuntimeError, match="closed"):
            await c.devices()

    run(main())
