"""A fake sensorhub behind ``httpx.MockTransport``: route handlers return the documented wire shapes.

A uniquely named module (not ``conftest``) so it cannot be confused with the server's test helpers.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Callable
from typing import Any

import httpx

BASE = "http://sensorhub.test"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def make_token(prefix: str = "shub", kind: str = "pat") -> str:
    """Mint a token the way the server does (written independently of the client's checker)."""
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(43))
    head = f"{prefix}_{kind}_{secret}"
    n = zlib.crc32(head.encode())
    digits = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        digits = _ALPHABET[r] + digits
    return head + digits


TOKEN = make_token()

Handler = Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """Routes ``(method, path)`` to handlers and records every request it sees."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes[(method, path)] = handler
            return handler

        return register

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.raw_path.decode().split("?")[0]))
        if handler is None:
            handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return error_response(404, "Not Found", f"no route {request.method} {request.url.path}")
        return handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def async_transport(self) -> httpx.MockTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self(request)

        return httpx.MockTransport(handle)


def error_response(
    status: int,
    error: str,
    message: str,
    headers: dict[str, str] | None = None,
    path: str = "/api/x",
) -> httpx.Response:
    """The Akenza-shaped error body used everywhere except NGSI-LD paths."""
    body = {
        "timestamp": "2026-01-01T00:00:00.000+00:00",
        "path": path,
        "status": status,
        "error": error,
        "message": message,
        "requestId": "req-123",
        "errorId": "err-456",
        "traceId": "trace-789",
        "code": "some_code",
    }
    return httpx.Response(status, json=body, headers=headers)


def problem_response(status: int, type_: str, title: str, detail: str, instance: str) -> httpx.Response:
    """The ETSI NGSI-LD ProblemDetails body."""
    body = {
        "type": f"https://uri.etsi.org/ngsi-ld/errors/{type_}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "requestId": "req-1",
        "errorId": "err-1",
    }
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)
