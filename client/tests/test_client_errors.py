"""Server errors become typed exceptions carrying what the server said, from either wire shape."""

from __future__ import annotations

import json

import httpx
import pytest
from sdk_fakes import BASE, TOKEN, error_response, problem_response

import sensorhub_client as sc


def _client(handler, **kwargs) -> sc.Client:
    return sc.Client(base_url=BASE, token=TOKEN, transport=httpx.MockTransport(handler), **kwargs)


@pytest.mark.parametrize(
    ("status", "error", "cls"),
    [
        (400, "Bad Request", sc.ValidationError),
        (401, "Unauthorized", sc.AuthenticationError),
        (403, "Forbidden", sc.PermissionDenied),
        (404, "Not Found", sc.NotFound),
        (409, "Conflict", sc.APIError),
        (413, "Payload Too Large", sc.ValidationError),
        (422, "Unprocessable Entity", sc.ValidationError),
        (429, "Too Many Requests", sc.RateLimited),
        (500, "Internal Server Error", sc.ServerError),
        (503, "Service Unavailable", sc.ServerError),
    ],
)
def test_status_maps_to_a_typed_error_with_the_body_fields(status, error, cls):
    def handler(request):
        return error_response(status, error, "Permission denied", path="/api/devices")

    with _client(handler, max_retries=0) as c, pytest.raises(cls) as info:
        c.devices()
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, sc.SensorhubError)
    assert exc.status_code == status
    assert exc.message == "Permission denied"
    assert exc.error == error
    assert exc.path == "/api/devices"
    assert exc.request_id == "req-123"
    assert exc.error_id == "err-456"
    assert exc.trace_id == "trace-789"
    assert exc.code == "some_code"
    assert exc.body["status"] == status
    assert (
        str(exc)
        == f"{status} {error}: Permission denied (path=/api/devices, request_id=req-123, error_id=err-456)"
    )


def test_ngsi_ld_problem_details_are_understood(client, server):
    server.add(
        "GET",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AgriParcel:nope",
        lambda r: problem_response(
            404,
            "ResourceNotFound",
            "Entity not found",
            "urn:ngsi-ld:AgriParcel:nope does not exist",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:AgriParcel:nope",
        ),
    )
    with pytest.raises(sc.NotFound) as info:
        client.entity("urn:ngsi-ld:AgriParcel:nope")
    exc = info.value
    assert exc.message == "urn:ngsi-ld:AgriParcel:nope does not exist"
    assert exc.request_id == "req-1"
    assert exc.error == "Entity not found"
    assert exc.problem_type == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    assert exc.path == "/ngsi-ld/v1/entities/urn:ngsi-ld:AgriParcel:nope"
    assert "does not exist" in str(exc)


def test_problem_details_without_title_fall_back_to_the_type(client, server):
    server.add(
        "GET",
        "/ngsi-ld/v1/entities",
        lambda r: httpx.Response(
            400,
            json={
                "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                "detail": "bad q",
                "status": 400,
            },
        ),
    )
    with pytest.raises(sc.ValidationError) as info:
        list(client.entities(q="temperature>>1"))
    assert info.value.error == "BadRequestData"
    assert info.value.message == "bad q"
    assert info.value.path == "/ngsi-ld/v1/entities"  # from the request when the body has no instance


def test_missing_scope_comes_from_the_www_authenticate_header(client, server):
    server.add(
        "GET",
        "/api/timeseries/v2/entities/urn:e/data",
        lambda r: error_response(
            403,
            "Forbidden",
            "Permission denied: this route needs the 'timeseries' scope, which this credential does not have",
            {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="timeseries"'},
        ),
    )
    with pytest.raises(sc.PermissionDenied) as info:
        client.timeseries("urn:e", ["t"], start="2026-01-01", end="2026-01-02")
    assert info.value.missing_scope == "timeseries"
    assert "needs the 'timeseries' scope" in str(info.value)


def test_missing_scope_falls_back_to_the_message(client, server):
    server.add(
        "GET",
        "/api/devices",
        lambda r: error_response(
            403,
            "Forbidden",
            "Permission denied: this route needs the 'telemetry' scope, which this credential does not have",
        ),
    )
    with pytest.raises(sc.PermissionDenied) as info:
        client.devices()
    assert info.value.missing_scope == "telemetry"


def test_forbidden_for_other_reasons_has_no_missing_scope(client, server):
    server.add("GET", "/v3/assets", lambda r: error_response(403, "Forbidden", "Permission denied"))
    with pytest.raises(sc.PermissionDenied) as info:
        list(client.assets())
    assert info.value.missing_scope is None


def test_rate_limited_carries_retry_after_once_retries_are_exhausted(sleeps):
    def handler(request):
        return error_response(429, "Too Many Requests", "slow down", {"Retry-After": "7"})

    with _client(handler, max_retries=2) as c, pytest.raises(sc.RateLimited) as info:
        c.devices()
    assert info.value.retry_after == 7.0
    assert sleeps == [7.0, 7.0]


def test_a_long_retry_after_is_raised_at_once_rather_slept_through(sleeps):
    def handler(request):
        return error_response(429, "Too Many Requests", "quota", {"Retry-After": "3600"})

    with _client(handler) as c, pytest.raises(sc.RateLimited) as info:
        c.devices()
    assert info.value.retry_after == 3600.0
    assert sleeps == []


def test_authentication_error_is_not_retried(sleeps, server):
    server.add(
        "GET", "/api/devices", lambda r: error_response(401, "Unauthorized", "Invalid or expired token")
    )
    with _client(server) as c, pytest.raises(sc.AuthenticationError, match="Invalid or expired token"):
        c.devices()
    assert len(server.requests) == 1
    assert sleeps == []


def test_non_json_error_from_a_proxy_still_becomes_a_server_error(sleeps):
    def handler(request):
        return httpx.Response(502, text="<html><body>Bad gateway</body></html>")

    with _client(handler, max_retries=1) as c, pytest.raises(sc.ServerError) as info:
        c.devices()
    assert info.value.status_code == 502
    assert "Bad gateway" in info.value.message
    assert info.value.path == "/api/devices"
    assert len(sleeps) == 1


def test_server_errors_are_retried_with_exponential_backoff_then_raised(sleeps, server):
    server.add("GET", "/api/sensors", lambda r: error_response(500, "Internal Server Error", "boom"))
    with _client(server, max_retries=3, backoff=0.5) as c, pytest.raises(sc.ServerError):
        c.sensors()
    assert len(server.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_unreachable_server_raises_transport_error(sleeps):
    def handler(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(handler, max_retries=2) as c, pytest.raises(sc.TransportError) as info:
        c.devices()
    assert "GET /api/devices on http://sensorhub.test failed" in str(info.value)
    assert "Connection refused" in str(info.value)
    assert len(sleeps) == 2


def test_a_dropped_connection_then_success_is_invisible_to_the_user(sleeps):
    attempts = []

    def handler(request):
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json=[{"id": "d1"}])

    with _client(handler) as c:
        assert c.devices() == [{"id": "d1"}]
    assert len(attempts) == 2


def test_an_unexpected_answer_shape_is_a_clear_error(client, server):
    server.add("GET", "/api/devices", lambda r: httpx.Response(200, json={"items": []}))
    with pytest.raises(sc.SensorhubError, match="expected a JSON array"):
        client.devices()


def test_graphql_errors_and_data(server, client):  # type: ignore[no-untyped-def]
    answers = iter(
        [
            httpx.Response(200, json={"data": {"user": {"id": "u1"}}}),
            httpx.Response(
                200,
                json={
                    "data": None,
                    "errors": [
                        {
                            "message": "needs telemetry",
                            "extensions": {"code": "FORBIDDEN", "scope": "telemetry"},
                        }
                    ],
                },
            ),
            httpx.Response(
                401,
                json={
                    "data": None,
                    "errors": [{"message": "Invalid credentials", "extensions": {"code": "UNAUTHENTICATED"}}],
                },
            ),
        ]
    )
    server.add("POST", "/graphql", lambda request: next(answers))
    assert client.graphql("{ user { id } }", {"x": 1}) == {"user": {"id": "u1"}}
    sent = json.loads(server.requests[-1].content)
    assert sent == {"query": "{ user { id } }", "variables": {"x": 1}}
    with pytest.raises(sc.GraphQLError) as e:
        client.graphql("{ device { currentMeasurements { value } } }")
    assert e.value.code == "FORBIDDEN" and e.value.missing_scope == "telemetry" and e.value.data is None
    with pytest.raises(sc.AuthenticationError) as auth:
        client.graphql("{ user { id } }")
    assert auth.value.code == "UNAUTHENTICATED" and "Invalid credentials" in str(auth.value)


def test_the_expiry_warning_says_the_same_after_a_copy():
    """A warning crossing a process boundary (pickle: multiprocessing, pytest-xdist) keeps its text."""
    import pickle

    w = sc.TokenExpiringWarning("2026-12-03T16:04:30Z")
    copy = pickle.loads(pickle.dumps(w))
    assert str(copy) == str(w)
    assert str(w).startswith("your sensorhub token expires at 2026-12-03T16:04:30Z: rotate it")
    assert copy.expires_at == "2026-12-03T16:04:30Z"
