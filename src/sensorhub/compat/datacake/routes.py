"""HTTP and WebSocket: ``/graphql`` (Strawberry's FastAPI router) with sensorhub's guard, limits and IDE.

- ``POST /graphql`` (queries and mutations) and ``GET /graphql?query=…`` (queries only), authenticated
  exactly like every REST route (``Authorization: Token|Bearer <t>``, ``x-api-key``), or with the web
  session for the in-browser IDE (then ``X-CSRF-Token`` on POST). No valid credential: HTTP 401.
- ``GET /graphql`` from a browser (``Accept: text/html``, no ``query``): GraphiQL, served from our
  own static files (no CDN); it holds no data, so it is public.
- The operation is checked before it runs: depth, aliases, tokens, then its cost (:mod:`.cost`)
  against the per-operation maximum and the credential's budget per minute.
- The routes are not in the OpenAPI document: the GraphQL schema describes them (introspection, or
  ``GET /graphql/schema.graphql``).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any, cast

from cross_web import HTTPException as StrawberryHTTPException
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from graphql import GraphQLError
from sensorhub.api.deps import ctx
from sensorhub.auth import sessions
from sensorhub.auth.dependencies import TENANT_HEADER, AnyToken, Public
from sensorhub.auth.pipeline import GENERIC_401
from sensorhub.auth.restrictions import RequestFacts
from sensorhub.compat.datacake import viewer as viewers
from sensorhub.compat.datacake.cost import operation_cost
from sensorhub.compat.datacake.errors import format_error
from sensorhub.compat.datacake.schema import Context, Mutation, Query, Subscription
from sensorhub.config import Settings
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, Forbidden, Unauthorized
from sensorhub.net import client_ip

PATH = "/graphql"
GET_PARAMS = frozenset({"query", "variables", "operationName", "extensions"})


class CostLimit(SchemaExtension):
    """Refuses an operation over the per-operation cost or the credential's budget, before it runs."""

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        c = ec.context
        if isinstance(c, Context) and ec.graphql_document is not None and c._viewer is not None:
            refusal = _charge(c, ec.graphql_document, ec.operation_name, ec.variables)
            if refusal is not None:
                ec.result = ExecutionResult(data=None, errors=[refusal])
        yield

    def get_results(self) -> dict[str, Any]:
        c = self.execution_context.context
        if not isinstance(c, Context) or c.cost is None:
            return {}
        return {"cost": {"requested": c.cost, "budgetRemaining": c.budget_left}}


def _charge(c: Context, document: Any, operation_name: str | None, variables: Any) -> GraphQLError | None:
    s: Settings = c.settings
    viewer = c.viewer
    cost = operation_cost(document, operation_name, variables, len(viewer.workspaces))
    c.cost = cost.total
    if cost.total > s.graphql_max_cost:
        return GraphQLError(
            f"this operation would cost {cost.total} units, more than the {s.graphql_max_cost} one operation "
            f"may cost (SENSORHUB_GRAPHQL_MAX_COST): {cost.explain()}; ask for fewer devices, fields or points",
            extensions={"code": "COST_LIMIT", "cost": cost.total, "maxCost": s.graphql_max_cost},
        )
    limiter = c.limiter
    key = f"graphql-cost:{viewer.key}"
    budget = s.graphql_cost_per_minute
    left = limiter.peek(key, budget, 60)
    if cost.total > left.remaining:
        return GraphQLError(
            f"this operation would cost {cost.total} units and this credential has {left.remaining} of its "
            f"{budget} per minute left (SENSORHUB_GRAPHQL_COST_PER_MINUTE); retry in {left.retry_after} s",
            extensions={
                "code": "COST_LIMIT",
                "cost": cost.total,
                "budgetRemaining": left.remaining,
                "retryAfter": left.retry_after,
            },
        )
    c.budget_left = limiter.hit(key, budget, 60, cost.total).remaining
    return None


# Fixed limits of the document itself (the cost limits are settings, read per operation).
MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5000
CACHED_DOCUMENTS = 512


class _Schema(Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Refusals are the client's business, not log noise; unexpected failures are logged when they
        are formatted (:func:`format_error`)."""


def build_schema() -> Schema:
    limits: list[Any] = [  # instances (strawberry accepts them; its annotation says classes)
        # Repeated documents (what clients send) are parsed and validated once: validation alone costs
        # more than a small query's execution. Validation rules are static, so the cache is exact.
        ParserCache(maxsize=CACHED_DOCUMENTS),
        ValidationCache(maxsize=CACHED_DOCUMENTS),
        MaxTokensLimiter(max_token_count=MAX_TOKENS),
        QueryDepthLimiter(max_depth=MAX_DEPTH),
        MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
    ]
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=False),
        extensions=[*limits, CostLimit],
    )


class GraphQLGuard(AnyToken):
    """A token (any scope: each field checks its own), or the web session for the in-browser IDE. The
    IDE page itself and WebSocket handshakes (authenticated by ``connection_init``) pass without one."""

    async def __call__(  # type: ignore[override]
        self, connection: HTTPConnection, tenant: str | None = TENANT_HEADER
    ) -> viewers.Viewer | None:
        if connection.scope["type"] == "websocket":
            return None
        request = cast(Request, connection)
        if _wants_ide(request):
            return None
        unknown = sorted(set(request.query_params) - GET_PARAMS)
        if unknown:
            raise BadRequest(
                f"unknown query parameter '{unknown[0][:50]}'; /graphql takes {', '.join(sorted(GET_PARAMS))}"
            )
        h = request.headers
        cookie = request.cookies.get(sessions.COOKIE_NAME)
        if cookie and not h.get("authorization") and not h.get("x-api-key"):
            return await _session_viewer(request, cookie, tenant)
        principal = (await ctx(request).auth.authenticate(request, None)).for_tenant(tenant)
        request.state.graphql_principal = principal
        return viewers.from_principal(principal)


async def _session_viewer(request: Request, cookie: str, tenant: str | None) -> viewers.Viewer:
    from anyio import to_thread

    db = ctx(request).db
    given = request.headers.get("x-csrf-token")

    def work() -> viewers.Viewer:
        with db.session() as s:
            found = sessions.lookup(s, cookie)
            if found is None:
                raise Unauthorized("Your session has expired or was ended; log in again")
            web_session, user = found
            # Every request, GET included: the only session client is our IDE (which sends it), and a
            # forged cross-site GET must not even spend the session's cost budget.
            if not sessions.csrf_matches(web_session, given):
                raise Forbidden("Missing or wrong CSRF token: send the csrf_token from login as X-CSRF-Token")
            request.state.graphql_user = user.id
            return viewers.from_session(s, user, tenant)

    return await to_thread.run_sync(work)


def _presented(params: Any, headers: Any) -> str | None:
    """The token a WebSocket client presents: in ``connection_init``'s payload, else in a header."""
    for source in (params if isinstance(params, dict) else {}, headers):
        for name in ("Authorization", "authorization"):
            value = source.get(name)
            if isinstance(value, str) and value.split(" ", 1)[0].lower() in ("token", "bearer"):
                return value.split(" ", 1)[1].strip() if " " in value else None
        for name in ("x-api-key", "X-Api-Key", "X-API-Key"):
            value = source.get(name)
            if isinstance(value, str) and value:
                return value.strip()
    return None


def _same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    return origin is not None and origin.split("://", 1)[-1] == ws.headers.get("host")


async def _authenticate_socket(c: Context) -> None:
    from anyio import to_thread

    ws = c.request
    app = c.app
    if not isinstance(ws, WebSocket) or app is None:
        raise ConnectionRejectionError({"message": "not a WebSocket"})
    params = c.connection_params if isinstance(c.connection_params, dict) else {}
    c.client_ip = client_ip(ws, tuple(app.settings.trusted_proxies))
    tenant = params.get("NGSILD-Tenant") or ws.headers.get("ngsild-tenant")
    tenant = tenant if isinstance(tenant, str) else None
    token = _presented(params, ws.headers)
    if token is not None:
        principal = await app.auth.principal_of(token)
        now = utcnow()
        facts = RequestFacts(client_ip=c.client_ip, now=now)
        if (
            principal is None
            or principal.is_expired(now)
            or not all(r.verify(facts) for r in principal.restrictions)
        ):
            raise ConnectionRejectionError({"message": GENERIC_401})
        c.principal = principal.for_tenant(tenant)
        c.set_viewer(viewers.from_principal(c.principal))
        return
    cookie = ws.cookies.get(sessions.COOKIE_NAME)
    if not cookie or not _same_origin(ws):
        raise ConnectionRejectionError(
            {"message": 'Authentication required: send {"Authorization": "Token <token>"} in connection_init'}
        )
    db = app.db

    def work() -> viewers.Viewer | None:
        with db.session() as s:
            found = sessions.lookup(s, cookie)
            if found is None:
                return None
            c.session_user = found[1].id
            return viewers.from_session(s, found[1], tenant)

    viewer = await to_thread.run_sync(work)
    if viewer is None:
        raise ConnectionRejectionError({"message": "Your session has expired or was ended; log in again"})
    c.set_viewer(viewer)


def _wants_ide(request: Request) -> bool:
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


GUARD = GraphQLGuard()


async def get_context(request: HTTPConnection, viewer: viewers.Viewer | None = Depends(GUARD)) -> Context:
    app_ctx = request.app.state.ctx
    c = Context(viewer, app_ctx.db, app_ctx.settings, app_ctx.limiter, app_ctx)
    c.principal = getattr(request.state, "graphql_principal", None)
    c.session_user = getattr(request.state, "graphql_user", None)
    c.client_ip = client_ip(request, tuple(app_ctx.settings.trusted_proxies))
    return c


IDE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

IDE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sensorhub GraphQL</title>
<meta name="sensorhub-csrf" content="{csrf}">
<link rel="stylesheet" href="/static/vendor/graphiql/graphiql.min.css">
<link rel="stylesheet" href="/static/graphiql/sensorhub-graphiql.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/static/vendor/graphiql/react.production.min.js"></script>
<script src="/static/vendor/graphiql/react-dom.production.min.js"></script>
<script src="/static/vendor/graphiql/graphiql.min.js"></script>
<script src="/static/graphiql/sensorhub-graphiql.js"></script>
</body>
</html>
"""


class SensorhubGraphQLRouter(GraphQLRouter[Context, None]):
    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        csrf = await _csrf_of(request)
        return HTMLResponse(IDE_PAGE.format(csrf=html.escape(csrf or "")), headers=IDE_HEADERS)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws ``connection_init``: the token in its payload (``{"Authorization":
        "Token <t>"}``, ``Bearer``, or ``{"x-api-key": "<k>"}``), else in the handshake's headers, else the
        web session's cookie when the page that opens the socket is ours (same origin). Refused: the
        socket closes with 4403."""
        await _authenticate_socket(context)
        return cast(UnsetType, UNSET)

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        try:
            return await super().run(request, context=context, root_value=root_value)
        except StrawberryHTTPException as e:
            # Strawberry's own refusals (body not JSON, no query, a mutation over GET, …) in our shape.
            body = {"data": None, "errors": [{"message": e.reason, "extensions": {"code": "BAD_REQUEST"}}]}
            return Response(self.encode_json(body), status_code=e.status_code, media_type="application/json")

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        out: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            out["errors"] = [format_error(e) for e in result.errors]
        if result.extensions:
            out["extensions"] = result.extensions
        return out


async def _csrf_of(request: Request) -> str | None:
    from anyio import to_thread

    cookie = request.cookies.get(sessions.COOKIE_NAME)
    if not cookie:
        return None
    db = ctx(request).db

    def work() -> str | None:
        with db.session() as s:
            found = sessions.lookup(s, cookie)
            return None if found is None else found[0].csrf_token

    return await to_thread.run_sync(work)


def build_router() -> SensorhubGraphQLRouter:
    r = SensorhubGraphQLRouter(
        build_schema(),
        path=PATH,
        context_getter=get_context,
        graphql_ide="graphiql",
        include_in_schema=False,
    )

    @r.get(PATH + "/schema.graphql", include_in_schema=False, dependencies=[Depends(Public())])
    async def sdl() -> PlainTextResponse:
        """The schema in SDL: public, like the IDE (it holds no data)."""
        return PlainTextResponse(r.schema.as_str() + "\n")

    return r


router = build_router()
