"""Rendering errors: one wire shape per API family, pinned by tests/test_error_shape.py.

- everywhere: ``{timestamp, path, status, error, message, requestId, errorId, traceId}`` (Akenza);
- under ``/ngsi-ld/``: ETSI NGSI-LD ProblemDetails ``{type, title, status, detail, instance}``;
- under ``/graphql``: a GraphQL response ``{data: null, errors: [{message, extensions: {code, status}}]}``.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sensorhub import errors as E

log = logging.getLogger("sensorhub.errors")

NGSI_ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"
LOCK_RETRY_AFTER_SECONDS = 1
# SQLITE_BUSY, SQLITE_LOCKED; PostgreSQL lock_not_available (lock_timeout), deadlock_detected,
# serialization_failure: all mean "try again", none is a server error.
_SQLITE_BUSY_CODES = frozenset({5, 6})
_PG_RETRY_SQLSTATES = frozenset({"55P03", "40P01", "40001"})


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (raw or wrapped by SQLAlchemy) says a database lock could not be had in time."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        return (code is not None and (code & 0xFF) in _SQLITE_BUSY_CODES) or "is locked" in str(orig)
    return getattr(orig, "sqlstate", None) in _PG_RETRY_SQLSTATES


def _ids(request: Request) -> tuple[str, str]:
    st = request.scope.get("state") or {}
    return st.get("request_id", "-"), st.get("trace_id", "-")


_GRAPHQL_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 429: "RATE_LIMITED", 503: "UNAVAILABLE"}


# InfluxDB's write endpoints answer errors in InfluxDB's own shapes, so that Telegraf and the client
# libraries report them: v2 ``{"code": "invalid", "message": …}``, 1.x ``{"error": …}``.
INFLUX_V2_PATHS = frozenset({"/api/v2/write"})
INFLUX_V1_PATHS = frozenset({"/write"})
_INFLUX_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "request too large",
    415: "unsupported media type",
    422: "unprocessable entity",
    429: "too many requests",
    503: "unavailable",
}


def _influx(exc: E.SensorhubError, v2: bool, request_id: str) -> bytes:
    if v2:
        return orjson.dumps({"code": _INFLUX_CODES.get(exc.status, "internal error"), "message": exc.message})
    return orjson.dumps({"error": exc.message, "requestId": request_id})


def render(request: Request, exc: E.SensorhubError) -> Response:
    request_id, trace_id = _ids(request)
    error_id = str(uuid.uuid4())
    path = request.url.path
    headers = dict(exc.headers)
    rate = (request.scope.get("state") or {}).get("rate_headers")
    if rate:
        for k, v in rate.items():
            headers.setdefault(k, v)
    body: dict[str, Any]
    if path == "/graphql" or path.startswith("/graphql/"):
        # GraphQL over HTTP: a refusal before any operation ran (no credential, rate limit, bad input
        # to the guard) is a GraphQL response too, its status kept and its code in extensions.
        code = _GRAPHQL_CODES.get(exc.status, "BAD_REQUEST" if exc.status < 500 else "INTERNAL_SERVER_ERROR")
        extensions: dict[str, Any] = {"code": code, "status": exc.status, "requestId": request_id}
        if isinstance(exc, E.InsufficientScope):
            extensions["scope"] = exc.scope
        body = {"data": None, "errors": [{"message": exc.message, "extensions": extensions}]}
        return Response(
            orjson.dumps(body), status_code=exc.status, headers=headers, media_type="application/json"
        )
    if path in INFLUX_V2_PATHS or path in INFLUX_V1_PATHS:
        payload = _influx(exc, path in INFLUX_V2_PATHS, request_id)
        return Response(payload, status_code=exc.status, headers=headers, media_type="application/json")
    if path.startswith("/ngsi-ld/"):
        body = {
            "type": NGSI_ERROR_BASE + exc.ngsi_type,
            "title": exc.error,
            "status": exc.status,
            "detail": exc.message,
            "instance": path,
            "requestId": request_id,
            "errorId": error_id,
        }
        if exc.code:  # the same machine-readable code as the Akenza shape, e.g. insufficient_scope
            body["code"] = exc.code
        media = "application/problem+json"
    else:
        body = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "path": path,
            "status": exc.status,
            "error": exc.error,
            "message": exc.message,
            "requestId": request_id,
            "errorId": error_id,
            "traceId": trace_id,
        }
        if exc.code:
            body["code"] = exc.code
        item_errors = getattr(exc, "item_errors", None)
        if item_errors is not None:  # per-item problems of a multi-item request (gateway ingest)
            body["errors"] = item_errors
        media = "application/json"
    return Response(orjson.dumps(body), status_code=exc.status, headers=headers, media_type=media)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    if loc and loc[0] in ("query", "path", "header"):
        parts = [str(p) for p in loc[1:]]
        return f"{loc[0]} parameter '{'.'.join(parts)}'"
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> str:
    msgs = []
    for err in exc.errors()[:5]:
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            msgs.append("the request body is not valid JSON")
            continue
        if err.get("type") == "missing":
            msgs.append(f"{_loc(loc)} is required")
            continue
        if err.get("type") == "extra_forbidden":
            msgs.append(f"unknown field '{_loc(loc)}'")
            continue
        msgs.append(f"{_loc(loc)}: {msg}")
    return "Invalid request: " + "; ".join(msgs)


def install(app: FastAPI) -> None:
    @app.exception_handler(E.SensorhubError)
    async def _domain(request: Request, exc: E.SensorhubError) -> Response:
        return render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return render(request, E.BadRequest(validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        mapping: dict[int, type[E.SensorhubError]] = {
            400: E.BadRequest,
            401: E.Unauthorized,
            403: E.Forbidden,
            404: E.NotFound,
            405: E.MethodNotAllowed,
            406: E.NotAcceptable,
            409: E.Conflict,
            413: E.PayloadTooLarge,
            415: E.UnsupportedMediaType,
            429: E.RateLimited,
        }
        cls = mapping.get(exc.status_code)
        if cls is None or cls is E.RateLimited:
            err: E.SensorhubError = E.SensorhubError(str(exc.detail))
            err.status = exc.status_code
        elif exc.status_code == 404 and exc.detail == "Not Found":
            err = E.NotFound(f"No route {request.method} {request.url.path}; see /api/docs")
        elif exc.status_code == 405:
            err = E.MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        else:
            err = cls(str(exc.detail))
        return render(request, err)

    # The time-series stores use the DBAPI connection directly: their errors arrive unwrapped.
    @app.exception_handler(sqlite3.OperationalError)
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: Exception) -> Response:
        # A lock wait that timed out is the server being busy, not a bug: 503 + Retry-After, so that
        # clients retry instead of reporting a failure (and nothing of the request was stored).
        if not is_lock_timeout(exc):
            raise exc
        log.warning("database lock timeout on %s %s: %s", request.method, request.url.path, exc)
        return render(
            request,
            E.ServiceUnavailable(
                "The database is busy with other writes; nothing was stored. Retry in a moment",
                headers={"Retry-After": str(LOCK_RETRY_AFTER_SECONDS)},
            ),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return render(
            request, E.SensorhubError("Internal error; the errorId identifies it in the server log")
        )
