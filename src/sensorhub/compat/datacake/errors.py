"""GraphQL errors with a machine-readable ``extensions.code`` (the codes Apollo made common).

- ``UNAUTHENTICATED`` — no valid credential (the HTTP answer is a 401; see :mod:`sensorhub.api.errors`);
- ``FORBIDDEN`` — the credential lacks a scope (``extensions.scope`` names it) or a right;
- ``BAD_USER_INPUT`` — an argument or variable the server refuses (the message names it);
- ``NOT_FOUND`` — not found or not visible (the same answer, as on every REST route);
- ``COST_LIMIT`` — over the depth, alias, token or cost limit, or the credential's budget;
- ``GRAPHQL_PARSE_FAILED`` / ``GRAPHQL_VALIDATION_FAILED`` — not a valid document for this schema;
- ``RATE_LIMITED``, ``UNAVAILABLE`` (retry), ``INTERNAL_SERVER_ERROR`` (message withheld, logged).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql import GraphQLError
from sensorhub import errors as E

log = logging.getLogger("sensorhub.graphql")

_LIMIT_MESSAGES = re.compile(
    r"exceeds maximum operation depth|maximum alias|aliases found|more than \d+ tokens|Parsing aborted"
)


def code_for(exc: BaseException) -> str:
    if isinstance(exc, E.Unauthorized):
        return "UNAUTHENTICATED"
    if isinstance(exc, E.Forbidden):
        return "FORBIDDEN"
    if isinstance(exc, E.NotFound):
        return "NOT_FOUND"
    if isinstance(exc, E.RateLimited):
        return "RATE_LIMITED"
    if isinstance(exc, E.SensorhubError) and 400 <= exc.status < 500:
        return "BAD_USER_INPUT"
    if isinstance(exc, E.SensorhubError) and exc.status == 503:
        return "UNAVAILABLE"
    return "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The error as sent: its message and location, and ``extensions.code`` always set."""
    out: dict[str, Any] = dict(error.formatted)
    ext: dict[str, Any] = dict(error.extensions or {})
    orig = error.original_error
    while isinstance(orig, GraphQLError) and orig.original_error is not None:
        ext = {**dict(orig.extensions or {}), **ext}
        orig = orig.original_error
    if isinstance(orig, GraphQLError):
        ext = {**dict(orig.extensions or {}), **ext}
        orig = None
    if "code" not in ext:
        if orig is None:
            msg = error.message
            if _LIMIT_MESSAGES.search(msg):
                ext["code"] = "COST_LIMIT"
            elif msg.startswith("Syntax Error"):
                ext["code"] = "GRAPHQL_PARSE_FAILED"
            elif msg.startswith("Variable '$"):
                ext["code"] = "BAD_USER_INPUT"
            else:
                ext["code"] = "GRAPHQL_VALIDATION_FAILED"
        else:
            ext["code"] = code_for(orig)
            if isinstance(orig, E.InsufficientScope):
                ext["scope"] = orig.scope
                out["message"] = (
                    f"this field needs the '{orig.scope}' scope, which this credential does not have"
                )
            if ext["code"] == "INTERNAL_SERVER_ERROR":
                log.error("GraphQL resolver failed", exc_info=orig)
                out["message"] = "Internal server error; the server logged the details"
    out["extensions"] = ext
    return out
