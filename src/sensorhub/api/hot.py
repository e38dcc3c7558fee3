"""Hot routes: a dict-speed way to the few read-only routes every client calls, same answers.

The FastAPI router of this version keeps included routers nested: a request walks every included
router in turn, and each one matches its whole route table twice (once to say whether it matches, once
to pick the route). For ``GET /api/managements`` that is ~90 regex matches, about half of the request's
CPU (``bench/auth/profile_request.py``; ``docs/benchmarks.md``, "Request cost vs the framework floor").

:func:`install` puts, in front of the route table, one :class:`HotRoute` per path of ``HOT_PATHS``. A
hot route claims a request only when its path is exactly that static path and its method one the route
serves; it then hands the request to the very ASGI app that FastAPI built for the route (its dependencies
— the guard, so auth —, validation, response rendering and error handling unchanged), with the scope keys
that FastAPI's own matching would set (``endpoint``, ``path_params``, ``route``). Which route FastAPI
would choose is not assumed: :func:`install` asks FastAPI's own matcher, for each path and method, at
start, and a path it resolves to anything else (a route added in front, a nested router) is not made hot.
Every other request (another path, another method, a path with a trailing slash) is not claimed and
takes the ordinary way. The OpenAPI document does not change (a hot route is not an ``APIRoute``).

**The direct lane.** For a route whose only dependencies are guards that know how to run without
FastAPI (a ``hot(request)`` method and the set ``hot_headers`` of the header parameters it reads itself,
see :mod:`sensorhub.auth.dependencies`), whose endpoint is a coroutine taking nothing but the guards'
results and answering a ``Response`` itself, the hot route also skips FastAPI's per-request dependency
solving (about a third of such a request's CPU): it calls the guards' ``hot`` and the endpoint, and sends
the response. Errors propagate to the same exception handlers (``ExceptionMiddleware``). Whether a route
qualifies is decided at start from its ``Dependant`` (anything else declared — a query parameter, a
body, another dependency, a header the guard does not read — keeps FastAPI's way); so is a request while
FastAPI's OpenTelemetry instrumentation is active (its spans are FastAPI's).
``tests/test_hot_routes.py`` compares the answers with and without hot routes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send

# Read-only, static-path routes that clients call on every start or poll (token introspection, grants).
HOT_PATHS = ("/api/tokens/self", "/api/managements", "/healthz")


Direct = Callable[[Request], Awaitable[Response]]


class HotRoute(BaseRoute):
    """One static path, served by the app FastAPI built for its route (or by its direct lane)."""

    def __init__(self, route: APIRoute, app: ASGIApp, methods: frozenset[str]) -> None:
        self.route = route
        self.path = route.path
        self.path_format = route.path  # what FastAPI's telemetry names the route by
        self.app = app
        self.methods = methods
        self.direct = direct_lane(route)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] in self.methods and get_route_path(scope) == self.path:
            path_params = dict(scope.get("path_params", {}))
            return Match.FULL, {
                "endpoint": self.route.endpoint,
                "path_params": path_params,
                "route": self.route,
            }
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct is None or "fastapi.telemetry" in scope:
            await self.app(scope, receive, send)
            return
        response = await self.direct(Request(scope, receive, send))
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # the real route (further down the table) answers


_OWN = (
    "path_params",
    "query_params",
    "header_params",
    "cookie_params",
    "body_params",
    "request_param_name",
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


def _declares_own(dependant: Any, *, besides: frozenset[str] = frozenset()) -> bool:
    """Whether a dependant declares a parameter of its own (its sub-dependencies aside), other than
    the kinds named in ``besides``."""
    return any(getattr(dependant, kind) for kind in _OWN if kind not in besides)


def _guard_of(sub: Any) -> Any | None:
    """The guard a sub-dependency calls when it can run without FastAPI, else None: it may take the
    request and read the headers it declares (``hot_headers``), nothing else."""
    call = sub.call
    hot, reads = getattr(call, "hot", None), getattr(call, "hot_headers", None)
    if hot is None or reads is None or sub.dependencies:
        return None
    if _declares_own(sub, besides=frozenset({"header_params", "request_param_name"})):
        return None
    if any(f.alias.lower() not in reads for f in sub.header_params):
        return None
    return hot


def direct_lane(route: APIRoute) -> Direct | None:
    """A coroutine answering ``route`` without FastAPI's dependency solving, when the route qualifies
    (see the module's docstring); else None."""
    d = route.dependant
    endpoint = d.call
    if not inspect.iscoroutinefunction(endpoint) or not isinstance(route.response_class, DefaultPlaceholder):
        return None
    if route.response_model is not None or route.status_code is not None or route.body_field is not None:
        return None
    if len(d.dependencies) != 1 or _declares_own(d):  # one guard, nothing else
        return None
    sub = d.dependencies[0]
    hot = _guard_of(sub)
    name = sub.name
    if hot is None or set(inspect.signature(endpoint).parameters) != ({name} if name else set()):
        return None

    async def direct(request: Request) -> Response:
        value = await hot(request)
        response = await (endpoint(**{name: value}) if name else endpoint())
        if not isinstance(response, Response):
            raise TypeError(f"{route.path}: a hot route's endpoint must answer a Response")
        return response

    return direct


def _selected(app: FastAPI, path: str, method: str) -> tuple[APIRoute, ASGIApp] | None:
    """The route and ASGI app FastAPI's own routing picks for ``method path``, when it is an API route of
    a router included at the top level; else None."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    for candidate in app.router.routes:
        match, _ = candidate.matches(scope)
        if match != Match.FULL:
            continue
        select = getattr(candidate, "_match", None)  # an included router: which of its routes
        if select is None:
            return None
        match, _, route, context = select(scope)
        app_ = getattr(context, "app", None)
        if match != Match.FULL or not isinstance(route, APIRoute) or route.path != path or app_ is None:
            return None
        return route, app_
    return None


def install(app: FastAPI, paths: tuple[str, ...] = HOT_PATHS) -> list[HotRoute]:
    """Put hot routes for ``paths`` in front of the route table (call it once all routes are added)."""
    hot: list[HotRoute] = []
    for path in paths:
        found: dict[str, tuple[APIRoute, ASGIApp]] = {}
        for method in ("GET", "HEAD"):
            picked = _selected(app, path, method)
            if picked is not None:
                found[method] = picked
        routes = {id(r) for r, _ in found.values()}
        if "GET" not in found or len(routes) != 1 or "{" in path:
            continue
        route, route_app = found["GET"]
        methods = frozenset(m for m, (_, a) in found.items() if a is route_app)
        hot.append(HotRoute(route, route_app, methods))
    app.router.routes[0:0] = hot
    return hot
