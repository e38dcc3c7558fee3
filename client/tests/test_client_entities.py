"""NGSI-LD entities: every page is read by following Link rel="next"; counts come from the header."""

from __future__ import annotations

import httpx
import pytest
from sdk_fakes import BASE, TOKEN, body_of

import sensorhub_client as sc

CONTEXT_LINK = (
    "<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld>; "
    'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
)


def parcels(n: int) -> list[dict]:
    return [{"id": f"urn:ngsi-ld:AgriParcel:p{i}", "type": "AgriParcel"} for i in range(n)]


def paged_entities(items: list[dict], absolute: bool = False):
    """A server paging ``items`` with limit/offset and a Link header while more remain."""

    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params.get("limit", "100"))
        offset = int(request.url.params.get("offset", "0"))
        page = items[offset : offset + limit]
        links = [CONTEXT_LINK]
        if offset + limit < len(items):
            params = request.url.params.set("offset", str(offset + limit))
            target = f"/ngsi-ld/v1/entities?{params}"
            links.append(f'<{BASE + target if absolute else target}>; rel="next"')
        return httpx.Response(200, json=page, headers={"Link": ", ".join(links)})

    return handler


@pytest.mark.parametrize("absolute", [False, True])
def test_all_pages_are_read_by_following_next_links(client, server, absolute):
    items = parcels(7)
    server.add("GET", "/ngsi-ld/v1/entities", paged_entities(items, absolute))
    got = list(client.entities(type="AgriParcel", page_size=3))
    assert got == items
    assert len(server.requests) == 3
    for request in server.requests:
        assert request.url.params["type"] == "AgriParcel"
        assert request.url.params["limit"] == "3"


def test_iteration_is_lazy_so_a_break_stops_fetching(client, server):
    server.add("GET", "/ngsi-ld/v1/entities", paged_entities(parcels(10)))
    first = next(iter(client.entities(page_size=2)))
    assert first["id"] == "urn:ngsi-ld:AgriParcel:p0"
    assert len(server.requests) == 1


def test_query_options_are_sent_in_ngsi_ld_spelling(client, server):
    server.add("GET", "/ngsi-ld/v1/entities", lambda r: httpx.Response(200, json=[]))
    list(
        client.entities(
            type=["AgriParcel", "Building"],
            id_pattern="urn:ngsi-ld:AgriParcel:.*",
            attrs=["area", "name"],
            q="area>10",
            key_values=True,
        )
    )
    params = server.requests[0].url.params
    assert params["type"] == "AgriParcel,Building"
    assert params["idPattern"] == "urn:ngsi-ld:AgriParcel:.*"
    assert params["attrs"] == "area,name"
    assert params["q"] == "area>10"
    assert params["options"] == "keyValues"
    assert params["limit"] == "100"


def test_a_next_link_on_another_host_is_followed_on_the_configured_server(client, server):
    def handler(request):
        if "offset" not in request.url.params:
            link = '<http://internal-api:8000/ngsi-ld/v1/entities?limit=1&offset=1>; rel="next"'
            return httpx.Response(200, json=parcels(1), headers={"Link": link})
        return httpx.Response(200, json=parcels(2)[1:])

    server.add("GET", "/ngsi-ld/v1/entities", handler)
    assert len(list(client.entities(page_size=1))) == 2
    second = server.requests[1]
    assert second.url.host == "sensorhub.test"
    assert second.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_server_linking_to_the_same_page_forever_is_stopped(client, server):
    link = '<http://sensorhub.test/ngsi-ld/v1/entities?limit=1&offset=1>; rel="next"'
    server.add(
        "GET", "/ngsi-ld/v1/entities", lambda r: httpx.Response(200, json=parcels(1), headers={"Link": link})
    )
    with pytest.raises(sc.SensorhubError, match="repeats a page"):
        list(client.entities(page_size=1))
    assert len(server.requests) == 2


def test_one_entity_by_id(client, server):
    entity = {
        "id": "urn:ngsi-ld:AgriParcel:p1",
        "type": "AgriParcel",
        "area": {"type": "Property", "value": 3},
    }
    server.add(
        "GET", "/ngsi-ld/v1/entities/urn:ngsi-ld:AgriParcel:p1", lambda r: httpx.Response(200, json=entity)
    )
    assert client.entity("urn:ngsi-ld:AgriParcel:p1") == entity


def test_entity_ids_are_escaped_in_the_path(client, server):
    server.add(
        "GET",
        "/ngsi-ld/v1/entities/urn:x:a%2Fb%20c",
        lambda r: httpx.Response(200, json={"id": "urn:x:a/b c"}),
    )
    assert client.entity("urn:x:a/b c") == {"id": "urn:x:a/b c"}


def test_count_uses_limit_zero_and_the_results_count_header(client, server):
    server.add(
        "GET",
        "/ngsi-ld/v1/entities",
        lambda r: httpx.Response(200, json=[], headers={"NGSILD-Results-Count": "42"}),
    )
    assert client.count_entities(type="AgriParcel", q="area>1") == 42
    params = server.requests[0].url.params
    assert params["limit"] == "0"
    assert params["count"] == "true"
    assert params["type"] == "AgriParcel"
    assert params["q"] == "area>1"


def test_count_without_the_header_is_a_clear_error(client, server):
    server.add("GET", "/ngsi-ld/v1/entities", lambda r: httpx.Response(200, json=[]))
    with pytest.raises(sc.SensorhubError, match="NGSILD-Results-Count"):
        client.count_entities(type="AgriParcel")


def test_entity_query_posts_the_body_on_every_page(client, server):
    def handler(request):
        if "offset" in request.url.params:
            return httpx.Response(200, json=parcels(3)[2:])
        return httpx.Response(
            200,
            json=parcels(2),
            headers={"Link": '</ngsi-ld/v1/entityOperations/query?limit=2&offset=2>; rel="next"'},
        )

    server.add("POST", "/ngsi-ld/v1/entityOperations/query", handler)
    query = {"type": "Query", "entities": [{"type": "AgriParcel"}]}
    assert len(list(client.query_entities(query, page_size=2))) == 3
    assert [body_of(r) for r in server.requests] == [query, query]
    assert server.requests[0].url.params["limit"] == "2"


def test_the_documented_three_lines_work(monkeypatch, server):
    pytest.importorskip("pandas")
    monkeypatch.setenv("SENSORHUB_TOKEN", TOKEN)
    monkeypatch.setenv("SENSORHUB_URL", BASE)
    server.add("GET", "/ngsi-ld/v1/entities", paged_entities(parcels(250)))
    server.add(
        "GET",
        "/api/timeseries/v2/entities/urn:ngsi-ld:WeatherObserved:station-1/data",
        lambda r: httpx.Response(
            200,
            json={
                "entity_id": "urn:ngsi-ld:WeatherObserved:station-1",
                "start_time": "2026-01-01T00:00:00Z",
                "end_time": "2026-01-31T00:00:00Z",
                "bucket_seconds": 21600,
                "aggregation": "avg",
                "timestamps": ["2026-01-01T00:00:00Z", "2026-01-01T06:00:00Z"],
                "attributes": {"temperature": [3.5, 4.0]},
            },
        ),
    )
    c = sc.Client(transport=server.transport())
    parcels_ = list(c.entities(type="AgriParcel"))
    df = c.timeseries(
        "urn:ngsi-ld:WeatherObserved:station-1",
        attributes=["temperature"],
        start="2026-01-01T00:00:00Z",
        end="2026-01-31T00:00:00Z",
        resolution=200,
    )
    assert len(parcels_) == 250
    assert list(df.columns) == ["temperature"]
    assert df["temperature"].tolist() == [3.5, 4.0]
    ts_request = server.requests[-1]
    assert ts_request.url.params["resolution"] == "200"
    assert ts_request.url.params.get_list("attribute") == ["temperature"]
    c.close()
