"""The client's exception hierarchy.

Everything the client raises on purpose derives from :class:`SensorhubError`. HTTP errors are built
from the server's error body, which comes in two wire shapes:

- most routes: ``{timestamp, path, status, error, message, requestId, errorId, traceId}``;
- NGSI-LD routes (``/ngsi-ld/...``): ETSI ProblemDetails ``{type, title, status, detail, instance}``.

Exceptions never hold the request (whose headers carry the token), only the response's status,
headers and body.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "GraphQLError",
    "InvalidTokenFormat",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "SensorhubError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "error_from_response",
]


class SensorhubError(Exception):
    """Base class of every error raised by sensorhub-client."""


class InvalidTokenFormat(SensorhubError, ValueError):
    """The token is missing or malformed (checked locally, before any request is sent)."""


class TransportError(SensorhubError):
    """The server could not be reached, or the connection failed mid-request."""


class APIError(SensorhubError):
    """The server answered with an error status.

    Attributes mirror the server's error body; ``body`` is the parsed JSON (or text) as received.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error: str | None = None,
        request_id: str | None = None,
        error_id: str | None = None,
        trace_id: str | None = None,
        path: str | None = None,
        problem_type: str | None = None,
        code: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error = error
        self.request_id = request_id
        self.error_id = error_id
        self.trace_id = trace_id
        self.path = path
        self.problem_type = problem_type
        self.code = code
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        head = f"{self.status_code}"
        if self.error:
            head += f" {self.error}"
        text = f"{head}: {self.message}"
        details = []
        if self.path:
            details.append(f"path={self.path}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if self.error_id:
            details.append(f"error_id={self.error_id}")
        return f"{text} ({', '.join(details)})" if details else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, message={self.message!r})"


class AuthenticationError(APIError):
    """401: the token is missing, unknown, expired or revoked."""


class PermissionDenied(APIError):
    """403: the token is valid but may not do this; ``missing_scope`` names the scope it lacks."""

    def __init__(self, message: str, *, missing_scope: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing_scope = missing_scope


class NotFound(APIError):
    """404: no such resource, or not one this token may see."""


class RateLimited(APIError):
    """429: too many requests; ``retry_after`` is the wait in seconds the server asked for."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ValidationError(APIError):
    """400, 413 or 422: the server rejected the request's parameters or body."""


class ServerError(APIError):
    """5xx: the server failed; the request may be retried later."""


class GraphQLError(SensorhubError):
    """A GraphQL operation answered with ``errors`` (HTTP 200). ``errors`` is the list as received,
    ``data`` the partial data (``None`` when nothing ran), ``code`` the first error's
    ``extensions.code`` (``FORBIDDEN``, ``BAD_USER_INPUT``, ``COST_LIMIT``, …) and ``missing_scope`` the
    scope a ``FORBIDDEN`` error names."""

    def __init__(self, errors: list[Any], data: Any = None) -> None:
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        found = first.get("extensions")
        ext: dict[str, Any] = found if isinstance(found, dict) else {}
        message = str(first.get("message") or "GraphQL error")
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error(s))"
        super().__init__(message)
        self.errors = errors
        self.data = data
        self.code: str | None = _str_or_none(ext.get("code"))
        self.missing_scope: str | None = _str_or_none(ext.get("scope"))


_SCOPE_IN_HEADER = re.compile(r'scope="([^"]*)"')
_SCOPE_IN_MESSAGE = re.compile(r"needs the '([^']+)' scope")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _missing_scope(headers: httpx.Headers, message: str) -> str | None:
    for value in headers.get_list("www-authenticate"):
        if "insufficient_scope" in value:
            match = _SCOPE_IN_HEADER.search(value)
            if match:
                return match.group(1)
    match = _SCOPE_IN_MESSAGE.search(message)
    return match.group(1) if match else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _problem_fields(body: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
    """Message and fields of an ETSI NGSI-LD ProblemDetails body."""
    problem_type = _str_or_none(body.get("type"))
    title = _str_or_none(body.get("title"))
    message = _str_or_none(body.get("detail")) or title or reason
    fields = {
        "error": title or (problem_type.rsplit("/", 1)[-1] if problem_type else None),
        "path": _str_or_none(body.get("instance")),
        "problem_type": problem_type,
    }
    return message, fields


def _body_fields(body: Any, reason: str) -> tuple[str, dict[str, Any]]:
    """Message and fields of an error body: the Akenza shape, ProblemDetails, or plain text."""
    if not isinstance(body, dict):
        text = body.strip() if isinstance(body, str) else ""
        return text[:500] or reason, {}
    fields: dict[str, Any] = {
        "request_id": _str_or_none(body.get("requestId")),
        "error_id": _str_or_none(body.get("errorId")),
        "trace_id": _str_or_none(body.get("traceId")),
        "code": _str_or_none(body.get("code")),
    }
    errors = body.get("errors")
    if "message" not in body and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        # GraphQL (/graphql): {data: null, errors: [{message, extensions: {code, status, requestId}}]}
        found = errors[0].get("extensions")
        ext: dict[str, Any] = found if isinstance(found, dict) else {}
        fields.update(code=_str_or_none(ext.get("code")), request_id=_str_or_none(ext.get("requestId")))
        return _str_or_none(errors[0].get("message")) or reason, fields
    if "message" not in body and ("detail" in body or "title" in body):
        message, problem = _problem_fields(body, reason)
        fields.update(problem)
        return message, fields
    fields.update(error=_str_or_none(body.get("error")), path=_str_or_none(body.get("path")))
    return _str_or_none(body.get("message")) or reason, fields


def _typed_error(response: httpx.Response, message: str, fields: dict[str, Any]) -> APIError:
    """The :class:`APIError` subclass for the response's status."""
    status = response.status_code
    if status == 401:
        return AuthenticationError(message, **fields)
    if status == 403:
        return PermissionDenied(message, missing_scope=_missing_scope(response.headers, message), **fields)
    if status == 404:
        return NotFound(message, **fields)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimited(message, retry_after=retry_after, **fields)
    if status in (400, 413, 422):
        return ValidationError(message, **fields)
    if status >= 500:
        return ServerError(message, **fields)
    return APIError(message, **fields)


def error_from_response(response: httpx.Response) -> APIError:
    """Build the typed error for an unsuccessful response, from either wire shape."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    message, fields = _body_fields(body, response.reason_phrase or "HTTP error")
    if not fields.get("error"):
        fields["error"] = response.reason_phrase or None
    if not fields.get("path"):
        fields["path"] = response.request.url.path if _has_request(response) else None
    fields.update(status_code=response.status_code, body=body, headers=response.headers)
    return _typed_error(response, message, fields)


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - raises RuntimeError when the response was built by hand
    except RuntimeError:
        return False
    return True


class TokenExpiringWarning(UserWarning):
    """The server said the token expires soon (``X-Sensorhub-Token-Expires``): rotate it before then."""

    def __init__(self, expires_at: str) -> None:
        # args hold what the constructor takes, so a copy (pickle, pytest-xdist) is the same warning
        super().__init__(expires_at)
        self.expires_at = expires_at

    def __str__(self) -> str:
        return (
            f"your sensorhub token expires at {self.expires_at}: rotate it (web UI → Integrations → Rotate) "
            "before then, or requests will be refused"
        )
