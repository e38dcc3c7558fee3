"""Introspecting the route table: which guard each route declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute

from sensorhub.auth.dependencies import AnyToken, Public, RequireScope, RequireSession


def iter_api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every API route, looking inside included routers (newer FastAPI keeps them nested)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):
            yield from iter_api_routes(r.original_router.routes)


def _calls(dependant: Any) -> list[Any]:
    out = []
    for d in dependant.dependencies:
        out.append(d.call)
        out.extend(_calls(d))
    return out


def route_guard(route: Any) -> tuple[str, str | None] | None:
    """``(kind, scope)`` for an API route — kind is scope|token|session|public — or ``None`` when the
    route declares no guard (a test fails on any such route)."""
    if not isinstance(route, APIRoute):
        return None
    found: list[tuple[str, str | None]] = []
    for call in _calls(route.dependant):
        if isinstance(call, RequireScope):
            found.append(("scope", call.scope))
        elif isinstance(call, AnyToken):
            found.append(("token", None))
        elif isinstance(call, RequireSession):
            found.append(("session", None))
        elif isinstance(call, Public):
            found.append(("public", None))
    if len(found) != 1:
        return None
    return found[0]
