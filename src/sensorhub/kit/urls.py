"""Absolute URLs for links the API hands out (``Link: rel="next"``, download URLs, snippets).

``SENSORHUB_BASE_URL`` is the public URL of the server as clients reach it, scheme and path prefix
included (``https://sensors.example.com/sensorhub`` behind a proxy that strips ``/sensorhub``). When it
is unset, links are made from the request itself.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request


def base_url(request: Request, configured: str | None) -> str:
    """The public base URL without a trailing slash: the configured one, else the request's."""
    return (configured or str(request.base_url)).rstrip("/")


def configured_link(configured: str | None, path: str) -> str:
    """A link to ``path`` made outside any request (notices, invitation mail): against the configured
    base URL when there is one, else the path alone."""
    return (configured.rstrip("/") if configured else "") + path


def request_path(request: Request) -> str:
    """The request's path inside the application (without the ASGI ``root_path``)."""
    path: str = request.url.path
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def absolute_url(
    request: Request, configured: str | None, *, drop: tuple[str, ...] = (), **params: Any
) -> str:
    """The URL of the request with ``params`` replaced in its query (and ``drop`` removed), as clients
    reach it: against ``configured`` (its scheme, host and path prefix) when set, else the request's own URL."""
    url = request.url.remove_query_params(drop) if drop else request.url
    url = url.include_query_params(**params)
    if not configured:
        return str(url)
    query = f"?{url.query}" if url.query else ""
    return f"{configured.rstrip('/')}{request_path(request)}{query}"


def next_link(request: Request, configured: str | None, **params: Any) -> str:
    """A ``Link`` header value pointing at the next page."""
    return f'<{absolute_url(request, configured, **params)}>; rel="next"'


def prev_link(request: Request, configured: str | None, *, drop: tuple[str, ...] = (), **params: Any) -> str:
    """A ``Link`` header value pointing at the previous page."""
    return f'<{absolute_url(request, configured, drop=drop, **params)}>; rel="prev"'
