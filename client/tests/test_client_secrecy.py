"""The token only ever travels in the Authorization header to the configured server.

It never shows up in reprs, exception messages, logs, URLs or bodies, and is never offered to another host.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from sdk_fakes import BASE, TOKEN, error_response, problem_response

import sensorhub_client as sc


def test_repr_of_clients_hides_the_token():
    sync = sc.Client(base_url=BASE, token=TOKEN)
    async_ = sc.AsyncClient(base_url=BASE, token=TOKEN)
    for c in (sync, async_):
        text = repr(c)
        assert TOKEN not in text
        assert TOKEN[-12:] not in text
        assert "hidden" in text
    sync.close()
    asyncio.run(async_.aclose())


def test_no_attribute_of_the_client_shows_the_token_when_printed():
    c = sc.Client(base_url=BASE, token=TOKEN)
    for value in vars(c).values():
        assert TOKEN not in repr(value)
        assert TOKEN not in str(value)
    assert TOKEN not in repr(vars(c._settings))
    c.close()


def test_token_is_sent_only_as_a_bearer_header(client, server):
    server.add("GET", "/api/devices", lambda r: httpx.Response(200, json=[]))
    server.add("POST", "/v3/devices/d1/backfill", lambda r: httpx.Response(200, json={"accepted": 1}))
    client.devices()
    client.backfill("d1", [{"data": {"t": 1.0}}])
    for request in server.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert "x-api-key" not in request.headers
        assert TOKEN not in str(request.url)
        assert TOKEN.encode() not in request.content
        others = [v for k, v in request.headers.items() if k != "authorization"]
        assert not any(TOKEN in v for v in others)


ERROR_CASES = [
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (409, "Conflict"),
    (413, "Payload Too Large"),
    (422, "Unprocessable Entity"),
    (429, "Too Many Requests"),
    (500, "Internal Server Error"),
    (503, "Service Unavailable"),
]


@pytest.mark.parametrize(("status", "error"), ERROR_CASES)
def test_no_error_message_contains_the_token(sleeps, status, error):
    def handler(request):
        return error_response(status, error, "Something went wrong", {"Retry-After": "1"})

    transport = httpx.MockTransport(handler)
    with sc.Client(base_url=BASE, token=TOKEN, transport=transport) as c, pytest.raises(sc.APIError) as info:
        c.devices()
    for text in (str(info.value), repr(info.value), str(vars(info.value))):
        assert TOKEN not in text


def test_problem_details_and_transport_errors_do_not_contain_the_token(sleeps):
    def problem(request):
        return problem_response(404, "ResourceNotFound", "Not Found", "no entity", "/ngsi-ld/v1/entities/x")

    def broken(request):
        raise httpx.ConnectError("connection refused", request=request)

    for handler in (problem, broken):
        transport = httpx.MockTransport(handler)
        with (
            sc.Client(base_url=BASE, token=TOKEN, transport=transport) as c,
            pytest.raises(sc.SensorhubError) as info,
        ):
            c.entity("x")
        assert TOKEN not in str(info.value)
        assert TOKEN not in repr(info.value)


def test_invalid_token_error_does_not_echo_it():
    broken = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    with pytest.raises(sc.InvalidTokenFormat) as info:
        sc.Client(base_url=BASE, token=broken)
    assert broken not in str(info.value)
    assert broken[:-6] not in str(info.value)


def test_debug_logging_including_httpx_never_shows_the_token(caplog, sleeps):
    calls = iter([503, 200])

    def handler(request):
        status = next(calls)
        if status == 503:
            return error_response(503, "Service Unavailable", "later")
        return httpx.Response(200, json=[{"id": "urn:x"}])

    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sensorhub_client"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    with sc.Client(base_url=BASE, token=TOKEN, transport=httpx.MockTransport(handler)) as c:
        assert list(c.entities(type="AgriParcel")) == [{"id": "urn:x"}]
    messages = [record.getMessage() for record in caplog.records]
    assert any("HTTP Request" in m for m in messages), "httpx request logging should be on"
    assert any("retrying" in m for m in messages)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.args)


def test_export_download_never_carries_the_token(client, server, tmp_path):
    server.add(
        "POST",
        "/api/datahub/export",
        lambda r: httpx.Response(
            200,
            json={
                "download_url": "/api/datahub/downloads/abc.csv?expires=1&signature=s1g",
                "expires_in": 900,
                "format": "csv",
                "rows": 1,
                "truncated": False,
            },
        ),
    )
    server.add("GET", "/api/datahub/downloads/abc.csv", lambda r: httpx.Response(200, text="a,b\n1,2\n"))
    result = client.export([("urn:e", "temperature")], start="2026-01-01", end="2026-01-02", format="csv")
    result.download(tmp_path / "x.csv")
    download = server.requests[-1]
    assert download.url.path == "/api/datahub/downloads/abc.csv"
    assert "authorization" not in download.headers


def test_token_is_not_offered_to_another_host_even_if_a_request_goes_there():
    seen = []

    def handler(request):
        seen.append((request.url.host, request.headers.get("authorization")))
        return httpx.Response(200, json={"ok": True})

    c = sc.Client(base_url=BASE, token=TOKEN, transport=httpx.MockTransport(handler))
    # The auth flow itself refuses other origins (defence in depth beyond the call sites).
    c._http.get("https://elsewhere.example.com/x", auth=c._settings.auth)
    c._http.get("http://sensorhub.test:8080/x", auth=c._settings.auth)
    c._http.get(BASE + "/x", auth=c._settings.auth)
    assert seen == [
        ("elsewhere.example.com", None),
        ("sensorhub.test", None),
        ("sensorhub.test", f"Bearer {TOKEN}"),
    ]
    c.close()
