"""Hot routes: a dict-speed way to the few read-only routes every client calls, same answers.

The FastAPI router of this version keeps included routers nested: a request walks every included
router in turn, and each one matches its whole route table twice (once to say whether it matches, once
to pick the route). For ``GET /api/managements`` that is ~90 regex matches, about half of the request's
CPU (``bench/auth/profile_request.py``; ``docs/benchmarks.md``, "Request cost vs the framework floor").

:func:`install` puts, in front of the route table, one :class:`HotRoute` per path of ``HOT_PATHS``. A
hot route claims a request only when its path is exactly that static path (or, for a template such as
``/api/timeseries/v2/entities/{entity_id}/data``, matches the route's own regex) and its method one the
route serves; it then hands the request to the very ASGI app that FastAPI built for the route (its
dependencies — the guard, so auth —, validation, response rendering and error handling unchanged), with
the scope keys that FastAPI's own matching would set (``endpoint``, ``path_params``, ``route``). Which
route FastAPI would choose is not assumed: :func:`install` asks FastAPI's own matcher, for each path
(a template: a concrete path of it) and method, at start, and a path it resolves to anything else (a
route added in front, a nested router) is not made hot. For a template, the routes FastAPI tries before
it that could claim one of its paths (their literal prefixes overlap) are asked per request, and such a
route's static path is never claimed. Every other request (another path, another method, a path with a
trailing slash) is not claimed and takes the ordinary way. The OpenAPI document does not change (a hot
route is not an ``APIRoute``).

**The direct lane.** For a route whose only dependency is a guard that knows how to run without FastAPI
(a ``hot(request)`` method and the set ``hot_headers`` of the header parameters it reads itself, see
:mod:`sensorhub.auth.dependencies`), whose endpoint is a coroutine taking the guard's result, the
request and plain query/path parameters (``str``, bounded ``int``, ``list[str] | None``) and answering a
``Response`` itself, the hot route also skips FastAPI's per-request dependency solving (about a third of
such a request's CPU): it reads the parameters, calls the guard's ``hot`` and the endpoint, and sends the
response. A parameter value it does not vouch for (missing, not canonical digits, out of bounds) sends
the request, before anything has run, to FastAPI's own app, so every validation error keeps FastAPI's
wording. Errors propagate to the same exception handlers (``ExceptionMiddleware``). Whether a route
qualifies is decided at start from its ``Dependant`` (anything else declared — a body, a pattern or a
Literal, another dependency, a header the guard does not read — keeps FastAPI's way); so is a request
while FastAPI's OpenTelemetry instrumentation is active (its spans are FastAPI's).
``tests/test_hot_routes.py`` compares the answers with and without hot routes.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from annotated_types import Ge, Le, MaxLen, MinLen
from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from starlette import routing
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send

# Read-only routes that clients call on every start or poll (token introspection, grants, the latest
# values of a page of devices), and the downsampled read every chart makes.
HOT_PATHS = (
    "/api/tokens/self",
    "/api/managements",
    "/healthz",
    "/api/timeseries/v2/entities/{entity_id}/data",
    "/api/devices",
)


Direct = Callable[[Request], Awaitable[Response | None]]


def route_path(scope: Scope) -> str:
    """The path a route matches: ``scope["path"]`` without the ASGI ``root_path`` it starts with (a
    server mounted under a prefix), as Starlette's own routes read it — written here rather than taken
    from Starlette's private helpers, which may change in any release."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path == root:
        return ""
    if root and path.startswith(root) and path[len(root)] == "/":
        return path[len(root) :]
    return path


class HotRoute(BaseRoute):
    """One path (static, or a template whose parameters are plain strings), served by the app FastAPI
    built for its route (or by its direct lane)."""

    def __init__(
        self,
        route: APIRoute,
        app: ASGIApp,
        methods: frozenset[str],
        template: tuple[re.Pattern[str], dict[str, Any], list[BaseRoute], frozenset[str]] | None = None,
    ) -> None:
        self.route = route
        self.path = route.path
        self.path_format = route.path  # what FastAPI's telemetry names the route by
        self.app = app
        self.methods = methods
        # A template: its regex and convertors, the routes FastAPI tries first that may claim one of its
        # paths (asked per request) and the static paths of such routes (never claimed).
        self.template = template
        self.direct = direct_lane(route)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            return Match.NONE, {}
        path = route_path(scope)
        path_params = dict(scope.get("path_params", {}))
        if self.template is None:
            if path != self.path:
                return Match.NONE, {}
        else:
            regex, convertors, rivals, taken = self.template
            m = regex.match(path)
            if m is None or path in taken or any(r.matches(scope)[0] == Match.FULL for r in rivals):
                return Match.NONE, {}
            path_params.update({k: convertors[k].convert(v) for k, v in m.groupdict().items()})
        return Match.FULL, {"endpoint": self.route.endpoint, "path_params": path_params, "route": self.route}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct is None or "fastapi.telemetry" in scope:
            await self.app(scope, receive, send)
            return
        response = await self.direct(Request(scope, receive, send))
        if response is None:  # a parameter the lane does not vouch for: FastAPI answers (and words the 4xx)
            await self.app(scope, receive, send)
            return
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


# --- parameters the direct lane reads itself ------------------------------------------------------------
#
# A parameter read here gives exactly what FastAPI's validation gives *for the values read here*; any other
# value (absent when required, not canonical digits, out of bounds, too long or short) makes the lane answer
# None, and the request takes FastAPI's way from the start (nothing has run yet), so every 4xx keeps
# FastAPI's wording. A parameter of another kind (a pattern, a Literal, a float, an alias, a model) keeps
# the whole route on FastAPI's way.

_UNSURE = object()  # "let FastAPI validate this request"
_DIGITS = re.compile(r"0|[1-9][0-9]{0,17}")

Read = Callable[[Any], Any]  # query params or path params -> the value, or _UNSURE


def _bounds(metadata: list[Any], kinds: tuple[type, ...]) -> dict[type, Any] | None:
    out: dict[type, Any] = {}
    for m in metadata:
        if type(m) not in kinds:
            return None
        out[type(m)] = m
    return out


def _str_reader(name: str, info: Any, required: bool) -> Read | None:
    b = _bounds(info.metadata, (MinLen, MaxLen))
    if b is None:
        return None
    lo = b[MinLen].min_length if MinLen in b else 0
    hi = b[MaxLen].max_length if MaxLen in b else None
    default = info.default

    def read_str(values: Any) -> Any:
        v = values.get(name)
        if v is None:
            return _UNSURE if required else default
        return v if lo <= len(v) and (hi is None or len(v) <= hi) else _UNSURE

    return read_str


def _int_reader(name: str, info: Any, required: bool) -> Read | None:
    b = _bounds(info.metadata, (Ge, Le))
    if b is None or Ge not in b or Le not in b:
        return None
    ge, le, default = b[Ge].ge, b[Le].le, info.default

    def read_int(values: Any) -> Any:
        v = values.get(name)
        if v is None:
            return _UNSURE if required else default
        if not _DIGITS.fullmatch(v):
            return _UNSURE
        n = int(v)
        return n if ge <= n <= le else _UNSURE

    return read_int


def _list_reader(name: str) -> Read:
    def read_list(values: Any) -> Any:
        return values.getlist(name) or None

    return read_list


def _param_reader(field: Any) -> Read | None:
    """How the direct lane reads one query or path parameter, or None when it cannot vouch for it:
    ``str`` (optionally ``| None``, with min/max length), ``int`` with both bounds, ``list[str] | None``
    defaulting to None."""
    info = field.field_info
    name = info.alias or field.name
    if info.validation_alias is not None or name != field.name:
        return None
    annotation, required = info.annotation, info.is_required()
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else ()
    )
    if args and (len(args) != 2 or type(None) not in args or required):
        return None
    base = next((a for a in args if a is not type(None)), annotation)
    if base is str:
        return _str_reader(name, info, required)
    if base is int and not args:
        return _int_reader(name, info, required)
    if base == list[str] and args and info.default is None and not info.metadata:
        return _list_reader(name)
    return None


def _readers(fields: list[Any]) -> list[tuple[str, Read]] | None:
    out = []
    for f in fields:
        r = _param_reader(f)
        if r is None:
            return None
        out.append((f.name, r))
    return out


def _read_all(readers: list[tuple[str, Read]], values: Any, into: dict[str, Any]) -> bool:
    """Read each parameter into ``into``; False as soon as one is not vouched for."""
    for n, read in readers:
        v = read(values)
        if v is _UNSURE:
            return False
        into[n] = v
    return True


def _answers_itself(route: APIRoute) -> bool:
    """Whether the route's endpoint is a coroutine answering a ``Response`` itself, taking one guard
    and plain parameters, nothing FastAPI would add to its answer."""
    d = route.dependant
    if not inspect.iscoroutinefunction(d.call) or not isinstance(route.response_class, DefaultPlaceholder):
        return False
    if route.response_model is not None or route.status_code is not None or route.body_field is not None:
        return False
    plain = frozenset({"query_params", "path_params", "request_param_name"})
    return len(d.dependencies) == 1 and not _declares_own(d, besides=plain)


def direct_lane(route: APIRoute) -> Direct | None:
    """A coroutine answering ``route`` without FastAPI's dependency solving, when the route qualifies
    (see the module's docstring); else None. It answers None for a request whose parameters it does
    not vouch for (FastAPI then answers it)."""
    d = route.dependant
    endpoint = d.call
    if not _answers_itself(route):
        return None
    query, path = _readers(d.query_params), _readers(d.path_params)
    sub = d.dependencies[0]
    hot, name, request_name = _guard_of(sub), sub.name, d.request_param_name
    if hot is None or query is None or path is None or endpoint is None:
        return None
    takes = {n for n, _ in query + path} | {x for x in (name, request_name) if x}
    if set(inspect.signature(endpoint).parameters) != takes:
        return None

    async def direct(request: Request) -> Response | None:
        kwargs: dict[str, Any] = {}
        if query and not _read_all(query, request.query_params, kwargs):
            return None
        if path and not _read_all(path, request.path_params, kwargs):
            return None
        if request_name:
            kwargs[request_name] = request
        principal = await hot(request)
        if name:
            kwargs[name] = principal
        response = await endpoint(**kwargs)
        if not isinstance(response, Response):
            raise TypeError(f"{route.path}: a hot route's endpoint must answer a Response")
        return response

    return direct


def _probe(path: str) -> str:
    """A concrete path of a template (each parameter a plain word)."""
    return re.sub(r"\{[^}]+\}", "hot-route-probe", path)


def _selected(app: FastAPI, path: str, method: str) -> tuple[APIRoute, ASGIApp, Any] | None:
    """The route, ASGI app and effective context FastAPI's own routing picks for ``method path``, when it
    is an API route of a router included at the top level; else None."""
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
        if match != Match.FULL or not isinstance(route, APIRoute) or app_ is None:
            return None
        return route, app_, context
    return None


def _walk(routes: list[BaseRoute]) -> list[Any]:
    """Every route in the order FastAPI tries them (included routers' effective routes in place)."""
    out: list[Any] = []
    for r in routes:
        contexts = getattr(r, "effective_route_contexts", None)
        out.extend(contexts() if contexts is not None else [r])
    return out


def _template(
    app: FastAPI, route: APIRoute, context: Any
) -> tuple[re.Pattern[str], dict[str, Any], list[BaseRoute], frozenset[str]] | None:
    """What a hot route of a template needs to claim exactly the paths FastAPI gives ``route``: the regex
    and convertors, and the routes tried before it that could claim one of them (None: one of them is of
    a kind this cannot tell)."""
    regex, convertors = context.path_regex, context.param_convertors
    if any(type(c).__name__ != "StringConvertor" for c in convertors.values()):
        return None
    literal = route.path.split("{", 1)[0]
    rivals: list[BaseRoute] = []
    taken: set[str] = set()
    for entry in _walk(app.router.routes):
        if getattr(entry, "original_route", None) is route:
            return regex, convertors, rivals, frozenset(taken)
        fmt = getattr(getattr(entry, "starlette_route", None) or entry, "path_format", None)
        if not isinstance(fmt, str) or not hasattr(entry, "matches"):
            return None
        if "{" not in fmt and not isinstance(entry, routing.Mount):
            if regex.match(fmt):
                taken.add(fmt)
            continue
        theirs = fmt.split("{", 1)[0]
        if theirs.startswith(literal) or literal.startswith(theirs):
            rivals.append(entry)
    return None


def install(app: FastAPI, paths: tuple[str, ...] = HOT_PATHS) -> list[HotRoute]:
    """Put hot routes for ``paths`` in front of the route table (call it once all routes are added)."""
    hot: list[HotRoute] = []
    for path in paths:
        concrete = _probe(path)
        found: dict[str, tuple[APIRoute, ASGIApp, Any]] = {}
        for method in ("GET", "HEAD"):
            picked = _selected(app, concrete, method)
            if picked is not None and picked[0].path == path:
                found[method] = picked
        routes = {id(r) for r, _, _ in found.values()}
        if "GET" not in found or len(routes) != 1:
            continue
        route, route_app, context = found["GET"]
        template = None
        if concrete != path:
            template = _template(app, route, context)
            if template is None:
                continue
        methods = frozenset(m for m, (_, a, _) in found.items() if a is route_app)
        hot.append(HotRoute(route, route_app, methods, template))
    app.router.routes[0:0] = hot
    return hot
