"""The one pure-ASGI middleware in front of the routes (cheap on the hot path), for every HTTP request:

- request ids (``X-Request-Id``, the trace id, the log context), rate-limit and security headers
  (``Cache-Control: no-store`` on credential-bearing answers, no framing), the request body size limit;
- the request metrics by route template and status (:class:`sensorhub.metrics.RequestMetrics`);
- the token-use audit: what the request touched, and its noted token uses written when it is over
  (:mod:`sensorhub.audit.usage`).

One middleware rather than three: each layer of ASGI wrapping costs a coroutine and a ``send`` wrapper per
request (``docs/benchmarks.md``, "Request cost vs the framework floor")."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensorhub.audit.usage import begin_request, end_request
from sensorhub.logs import request_id_var
from sensorhub.metrics import RequestMetrics

# Paths whose answers carry secrets or credential metadata (token plaintext at creation and rotation,
# the login's CSRF token, token listings with last-used addresses): never stored by any cache.
NO_STORE_PREFIXES = ("/api/auth/", "/api/tokens", "/api/orgs/")
NO_STORE = (b"cache-control", b"no-store")
# Nothing we serve is meant to be framed (clickjacking on the docs' "Authorize" or the UI's buttons).
# Routes that send their own, stricter policy (the web UI) keep it.
FRAME_HEADERS = ((b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"))


def _carries_credential(headers: dict[bytes, bytes], query: bytes) -> bool:
    """Whether the request presented a token or a session: its answer is private to that credential."""
    if b"authorization" in headers or b"x-api-key" in headers:
        return True
    if b"sensorhub_session=" in headers.get(b"cookie", b""):
        return True
    # Decoded like Starlette decodes query_params (``%74oken`` is ``token``).
    return bool(query) and any(
        k == "token" for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    )


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's ``X-Request-Id`` when it is short and plain, else a new one."""
    rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
    if not rid or not rid.replace("-", "").isalnum():
        rid = secrets.token_hex(8)
    return rid


def _trace_id(headers: dict[bytes, bytes]) -> str:
    tp = headers.get(b"traceparent", b"").decode("latin-1").split("-")
    return tp[1][:16] if len(tp) >= 3 and len(tp[1]) == 32 else secrets.token_hex(8)


def _response_headers(
    h: list[tuple[bytes, bytes]], rid: str, rate: dict[str, str] | None, no_store: bool, hsts: bool
) -> list[tuple[bytes, bytes]]:
    """The answer's headers plus ours: request id, rate limit, nosniff, no-store, no framing, HSTS."""
    h.append((b"x-request-id", rid.encode()))
    if rate:
        existing = {k.lower() for k, _ in h}
        h.extend(
            (k.lower().encode(), v.encode()) for k, v in rate.items() if k.lower().encode() not in existing
        )
    h.append((b"x-content-type-options", b"nosniff"))
    present = {k.lower() for k, _ in h}
    if no_store and b"cache-control" not in present:
        h.append(NO_STORE)
    h.extend((k, v) for k, v in FRAME_HEADERS if k not in present)
    if hsts:
        h.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return h


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, hsts: bool = False) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.hsts = hsts
        self.metrics = RequestMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = scope["app"]  # the application, as routing (a mounted app) may set another one in the scope
        touch, touch_reset = begin_request()
        start = time.perf_counter()
        status = [500]  # the status sent (500 when the app raised before answering)
        try:
            await self._serve(scope, receive, send, status)
        finally:
            self.metrics.record(scope, status[0], time.perf_counter() - start)
            await end_request(lambda: app.state.ctx.db, touch, touch_reset)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, status: list[int]) -> None:
        headers = dict(scope["headers"])
        state: dict[str, Any] = scope.setdefault("state", {})
        rid = state["request_id"] = _request_id(headers)
        state["trace_id"] = _trace_id(headers)

        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            status[0] = await self._too_large(scope, send, rid)
            return

        received = 0
        max_body = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > max_body:
                    raise _BodyTooLarge(
                        413, f"Request body too large: the limit is {max_body} bytes; split the upload"
                    )
            return msg

        path: str = scope.get("path", "")
        no_store = path.startswith(NO_STORE_PREFIXES) or _carries_credential(
            headers, scope.get("query_string", b"")
        )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = _response_headers(
                    list(message.get("headers", [])), rid, state.get("rate_headers"), no_store, self.hsts
                )
            await send(message)

        rid_token = request_id_var.set(rid)
        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            status[0] = await self._too_large(scope, send, rid)
        finally:
            request_id_var.reset(rid_token)

    async def _too_large(self, scope: Scope, send: Send, rid: str) -> int:
        # Rendered by the one error renderer: Akenza body, or ProblemDetails under /ngsi-ld/.
        from starlette.requests import Request

        from sensorhub.api.errors import render
        from sensorhub.errors import PayloadTooLarge

        err = PayloadTooLarge(f"Request body too large: the limit is {self.max_body} bytes; split the upload")
        response = render(Request(scope), err)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
        return response.status_code


class _BodyTooLarge(HTTPException):
    """A chunked body that outgrew the limit; an HTTPException so that FastAPI's body parsing lets it
    through to the error handler (rendered as 413)."""
