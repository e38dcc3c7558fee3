"""Query strings refuse what they do not know.

A token-authenticated route accepts exactly the query parameters it declares (its own and those of its
dependencies, as FastAPI sees them in ``route.dependant``) plus ``token`` (the LEAF query-string
credential, which the auth pipeline accepts or refuses with its own message). Anything else — a typo
such as ``agregation=max`` or ``limt=10`` — is a 400 that names it, instead of a silently ignored
parameter and a default answer the caller did not ask for.

The allowed names are derived once per route from the route table, so a new route or a new parameter
needs no list to be kept in sync.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request

from sensorhub.errors import BadRequest, NotImplementedFeature

# A route may name parameters its standard defines but it does not implement, in its OpenAPI extension
# ``x-refused-parameters`` (name → why): those are answered 501 NotImplemented naming them, so a client
# learns the feature is missing rather than that it misspelt a parameter.
REFUSED = "x-refused-parameters"

# Always accepted on token routes: the query-string credential (the pipeline decides whether it is on).
ALWAYS_ALLOWED = frozenset({"token"})

_ATTR = "_sensorhub_allowed_query"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    args = getattr(annotation, "__args__", None)
    if args and type(None) in args:
        annotation = next((a for a in args if a is not type(None)), annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def declared_query_params(dependant: Any) -> frozenset[str]:
    """The query parameter names (aliases) a route declares, including those of nested dependencies and
    the fields of query-parameter models."""
    names: set[str] = set()
    todo = [dependant]
    while todo:
        d = todo.pop()
        for field in d.query_params:
            model = _model_of(field.field_info.annotation)
            if model is not None:
                names.update(f.alias or n for n, f in model.model_fields.items())
            else:
                names.add(field.alias)
        todo.extend(d.dependencies)
    return frozenset(names)


def allowed_query_params(route: APIRoute) -> frozenset[str]:
    """Cached on the route object itself (computed on its first request)."""
    allowed: frozenset[str] | None = getattr(route, _ATTR, None)
    if allowed is None:
        allowed = declared_query_params(route.dependant) | ALWAYS_ALLOWED
        setattr(route, _ATTR, allowed)
    return allowed


def reject_unknown_query_params(request: Request) -> None:
    """400 naming every query parameter the matched route does not declare."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = allowed_query_params(route)
    unknown = sorted({k for k in request.query_params if k not in allowed})
    refused: dict[str, str] = (route.openapi_extra or {}).get(REFUSED) or {}
    for name in unknown:
        if name in refused:
            raise NotImplementedFeature(
                f"the query parameter '{name}' is not implemented by this server: {refused[name]}"
            )
    if unknown:
        names = ", ".join(f"'{n}'" for n in unknown)
        accepted = ", ".join(sorted(allowed - ALWAYS_ALLOWED)) or "none"
        plural = "s" if len(unknown) > 1 else ""
        raise BadRequest(
            f"unknown query parameter{plural} {names} on {request.method} {route.path}; accepted: {accepted}"
        )
