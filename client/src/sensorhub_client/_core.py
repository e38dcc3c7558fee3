"""What the sync and async clients share: settings, request building, retries, paging, parsing.

The clients only differ in how they send a :class:`Call` and wait between attempts; everything that
decides *what* to send and *how to read the answer* lives here, once.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from . import _frames
from ._auth import BearerAuth, Secret, TokenKind, check_token, origin
from ._times import TimeLike, format_utc
from .errors import (
    GraphQLError,
    InvalidTokenFormat,
    SensorhubError,
    TokenExpiringWarning,
    TransportError,
    parse_retry_after,
)
from .models import BackfillResult, QueryResult, Timeseries

log = logging.getLogger("sensorhub_client")

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "SENSORHUB_TOKEN"  # noqa: S105 - the variable's name, not a secret
URL_ENV = "SENSORHUB_URL"
VERSION = "0.1.0"

JSONDict = dict[str, Any]
#: A series to read: ``{"entity_id": ..., "attribute": ..., "aggregation"?: ...}`` or a tuple
#: ``(entity_id, attribute)`` / ``(entity_id, attribute, aggregation)``.
SeriesSpec = Mapping[str, Any] | Sequence[str]
Params = list[tuple[str, str | int | float | bool | None]]


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    base_url: httpx.URL
    token: Secret
    token_kind: TokenKind
    auth: BearerAuth


def resolve_settings(base_url: str | None, token: str | None) -> Settings:
    """Arguments win over ``SENSORHUB_URL``/``SENSORHUB_TOKEN``; the token is checked here, offline."""
    url_text = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
    url = httpx.URL(url_text.strip().rstrip("/"))
    if url.userinfo:
        # Credentials in a URL end up in reprs and logs; the token is the one credential we send.
        raise ValueError("base_url must not contain a user name or password; the token authenticates")
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_URL}, got {url_text!r}")
    text = token if token is not None else os.environ.get(TOKEN_ENV)
    if text is None or not text.strip():
        raise InvalidTokenFormat(f"no token: pass token=... or set the {TOKEN_ENV} environment variable")
    secret = Secret(text.strip())
    kind = check_token(secret.reveal())
    return Settings(base_url=url, token=secret, token_kind=kind, auth=BearerAuth(secret, url))


def user_agent() -> str:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"sensorhub-client/{VERSION} httpx/{httpx.__version__} python/{py}"


# --- calls and retries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request, described independently of the client that sends it."""

    method: str
    url: str | httpx.URL
    params: Params | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    #: safe to repeat after a 5xx or a dropped connection (reads, and idempotent ingest)
    idempotent: bool = True
    #: send the token (never for signed download URLs)
    authenticated: bool = True
    stream: bool = False

    def where(self) -> str:
        """Method and path for messages and logs: never the query string, never the host's secrets."""
        path = httpx.URL(self.url).path if isinstance(self.url, str) else self.url.path
        return f"{self.method} {path}"


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again: 429 (waiting ``Retry-After``), and 5xx or dropped connections when safe."""

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    #: a 429 asking to wait longer than this is raised at once as RateLimited instead of slept through
    max_retry_after: float = 60.0

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * (2**attempt)))

    def after_response(self, attempt: int, response: httpx.Response, call: Call) -> float | None:
        """Seconds to wait before retrying, or ``None`` to give up and raise."""
        if attempt >= self.max_retries:
            return None
        status = response.status_code
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is None:
                return self._backoff(attempt)
            return wait if wait <= self.max_retry_after else None
        if status >= 500 and call.idempotent:
            wait = parse_retry_after(response.headers.get("retry-after"))
            return min(wait, self.max_retry_after) if wait is not None else self._backoff(attempt)
        return None

    def after_exception(self, attempt: int, exc: httpx.TransportError, call: Call) -> float | None:
        if attempt >= self.max_retries:
            return None
        # A failed connect never reached the server, so even a non-idempotent request is safe to repeat.
        if call.idempotent or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._backoff(attempt)
        return None


EXPIRES_HEADER = "x-sensorhub-token-expires"


class ExpiryWarner:
    """Turns the server's ``X-Sensorhub-Token-Expires`` header (sent in a token's last 7 days) into one
    :class:`TokenExpiringWarning` per expiry time and client, not one per request."""

    def __init__(self) -> None:
        self.warned: str | None = None

    def check(self, response: httpx.Response) -> None:
        at = response.headers.get(EXPIRES_HEADER)
        if at and at != self.warned:
            self.warned = at
            warnings.warn(TokenExpiringWarning(at), stacklevel=4)


def transport_error(call: Call, exc: httpx.TransportError) -> TransportError:
    reason = str(exc) or type(exc).__name__
    where = call.where()
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        pass
    else:  # scheme, host and port only: never user info or the query string
        where += f" on {url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    return TransportError(f"{where} failed: {type(exc).__name__}: {reason}")


def log_retry(call: Call, attempt: int, delay: float, why: str) -> None:
    log.info("retrying %s after %s (attempt %d), waiting %.2fs", call.where(), why, attempt + 1, delay)


# --- paging ------------------------------------------------------------------------------------


def next_link(response: httpx.Response, base_url: httpx.URL) -> httpx.URL | None:
    """The ``Link: <...>; rel="next"`` target, resolved against the request and kept on our server.

    A relative link resolves against the request URL (RFC 8288). An absolute link to another origin
    (say, an internal host name behind a proxy) is moved onto the configured base URL's origin, so
    paging works behind proxies and the token is never offered to a host the user did not configure.
    """
    target = response.links.get("next", {}).get("url")
    if not target:
        return None
    url = response.url.join(target)
    if origin(url) != origin(base_url):
        url = url.copy_with(scheme=base_url.scheme, host=base_url.host, port=base_url.port)
    return url


class PageGuard:
    """Stops a server that keeps linking to a page already read from looping forever."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def check(self, url: httpx.URL) -> None:
        key = str(url)
        if key in self._seen:
            raise SensorhubError(f"the server's next link repeats a page already read ({url.path})")
        self._seen.add(key)


#: The largest ``limit`` the limit/offset routes (``/api/devices``, ``/api/sensors``) accept.
MAX_OFFSET_PAGE = 1000


def offset_page_call(path: str, page_size: int, offset: int) -> Call:
    """One page of a limit/offset route. These routes send no ``Link`` header: a page shorter than
    ``limit`` is the last one (see :class:`OffsetPager`)."""
    return Call("GET", path, params=_params(limit=page_size, offset=offset))


class OffsetPager:
    """Walks a limit/offset route: hands out the next call until a short page says it was the last."""

    def __init__(self, path: str, page_size: int) -> None:
        if not 1 <= page_size <= MAX_OFFSET_PAGE:
            raise ValueError(f"page_size must be between 1 and {MAX_OFFSET_PAGE}")
        self.path, self.page_size = path, page_size
        self.rows: list[JSONDict] = []
        self._offset = 0
        self._previous: list[JSONDict] | None = None
        self.done = False

    def call(self) -> Call:
        return offset_page_call(self.path, self.page_size, self._offset)

    def add(self, response: httpx.Response) -> None:
        """Take in one page's answer; ``done`` once it held fewer rows than asked for."""
        page = json_list(response, self.path)
        if page and page == self._previous:
            # A server that ignores ``offset`` would otherwise be read forever.
            raise SensorhubError(f"{self.path} answered the same page for offset {self._offset}")
        self.rows.extend(page)
        self._previous = page
        self._offset += len(page)
        self.done = len(page) < self.page_size


def json_list(response: httpx.Response, what: str) -> list[JSONDict]:
    body = response.json()
    if not isinstance(body, list):
        raise SensorhubError(f"expected a JSON array from {what}, got {type(body).__name__}")
    return body


def json_object(response: httpx.Response, what: str) -> JSONDict:
    body = response.json()
    if not isinstance(body, dict):
        raise SensorhubError(f"expected a JSON object from {what}, got {type(body).__name__}")
    return body


def graphql_call(query: str, variables: Mapping[str, Any] | None, operation_name: str | None) -> Call:
    body: JSONDict = {"query": query, "variables": dict(variables or {})}
    if operation_name is not None:
        body["operationName"] = operation_name
    # Queries are safe to repeat, and the one mutation (recording measurements) is idempotent.
    return Call("POST", "/graphql", json=body)


def graphql_data(response: httpx.Response) -> JSONDict:
    """``data`` of a GraphQL answer; its ``errors`` raise :class:`GraphQLError`."""
    body = json_object(response, "/graphql")
    errors = body.get("errors")
    if errors:
        raise GraphQLError(errors if isinstance(errors, list) else [errors], body.get("data"))
    data = body.get("data")
    if not isinstance(data, dict):
        raise SensorhubError("expected a GraphQL answer with data from /graphql")
    return data


# --- request builders ----------------------------------------------------------------------------


def _csv(value: str | Sequence[str] | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else ",".join(value)


def _params(**values: Any) -> Params:
    out: Params = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend((key, str(v)) for v in value)
        elif isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return out


def path_segment(value: str) -> str:
    """Quote one path segment (``/`` too); NGSI-LD ids keep their colons readable."""
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe=":@")


def entities_call(
    *,
    type: str | Sequence[str] | None,
    id: str | Sequence[str] | None,
    id_pattern: str | None,
    attrs: str | Sequence[str] | None,
    q: str | None,
    key_values: bool,
    page_size: int,
) -> Call:
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    params = _params(
        type=_csv(type),
        id=_csv(id),
        idPattern=id_pattern,
        attrs=_csv(attrs),
        q=q,
        options="keyValues" if key_values else None,
        limit=page_size,
        local=_every(type, attrs, q),
    )
    return Call("GET", "/ngsi-ld/v1/entities", params=params)


def _every(type: object, attrs: object, q: object) -> bool | None:
    """NGSI-LD refuses a query that selects by nothing (or only by id) unless it asks for every entity
    with ``local=true``: sent when the caller gave no type, attrs or q."""
    return True if type is None and attrs is None and q is None else None


def entity_call(entity_id: str, attrs: str | Sequence[str] | None, key_values: bool) -> Call:
    params = _params(attrs=_csv(attrs), options="keyValues" if key_values else None)
    return Call("GET", f"/ngsi-ld/v1/entities/{path_segment(entity_id)}", params=params)


def count_call(type: str | Sequence[str] | None, id_pattern: str | None, q: str | None) -> Call:
    params = _params(
        type=_csv(type), idPattern=id_pattern, q=q, limit=0, count="true", local=_every(type, None, q)
    )
    return Call("GET", "/ngsi-ld/v1/entities", params=params)


def parse_count(response: httpx.Response) -> int:
    value = response.headers.get("ngsild-results-count")
    if value is None:
        raise SensorhubError("the server did not send the NGSILD-Results-Count header")
    return int(value)


def entity_query_call(query: Mapping[str, Any], page_size: int) -> Call:
    return Call(
        "POST",
        "/ngsi-ld/v1/entityOperations/query",
        params=_params(limit=page_size),
        json=dict(query),
    )


def wants_arrow(as_frame: bool) -> bool:
    return as_frame and _frames.has_pandas() and _frames.has_arrow()


def timeseries_call(
    entity_id: str,
    attributes: str | Sequence[str] | None,
    start: TimeLike,
    end: TimeLike,
    resolution: int | None,
    aggregation: str | None,
    arrow: bool,
) -> Call:
    if isinstance(attributes, str):
        attributes = [attributes]
    params = _params(
        start_time=format_utc(start, "start"),
        end_time=format_utc(end, "end"),
        attribute=list(attributes) if attributes else None,
        resolution=resolution,
        aggregation=aggregation,
    )
    accept = f"{_frames.ARROW_STREAM}, application/json;q=0.9" if arrow else "application/json"
    return Call(
        "GET",
        f"/api/timeseries/v2/entities/{path_segment(entity_id)}/data",
        params=params,
        headers={"Accept": accept},
    )


def parse_timeseries(
    response: httpx.Response, entity_id: str, aggregation: str | None, as_frame: bool
) -> Any:
    """A DataFrame (Arrow or JSON answer) when asked and pandas is there, else a :class:`Timeseries`."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == _frames.ARROW_STREAM:
        attrs = {"entity_id": entity_id}
        frame = _frames.arrow_frame(response.content, attrs)
        if frame.attrs.get("aggregation") is None:
            # The stream's metadata may omit it; like the JSON answer, it is the requested (or the
            # default ``avg``) aggregation when the data was bucketed, and None for raw points.
            bucketed = frame.attrs.get("bucket_seconds") is not None
            frame.attrs["aggregation"] = (aggregation or "avg") if bucketed else None
        return frame
    series = Timeseries.from_json(json_object(response, "the time-series API"))
    return series.to_frame() if as_frame and _frames.has_pandas() else series


def series_body(series: Iterable[SeriesSpec], with_aggregation: bool = True) -> list[JSONDict]:
    out: list[JSONDict] = []
    for item in series:
        if isinstance(item, Mapping):
            entry = {k: item[k] for k in ("entity_id", "attribute", "aggregation") if item.get(k) is not None}
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) in (2, 3):
            entry = dict(zip(("entity_id", "attribute", "aggregation"), item, strict=False))
        else:
            raise ValueError(
                "each series is {'entity_id': ..., 'attribute': ...} or a tuple (entity_id, attribute)"
            )
        if "entity_id" not in entry or "attribute" not in entry:
            raise ValueError("each series needs an entity_id and an attribute")
        if not with_aggregation:
            entry.pop("aggregation", None)
        out.append(entry)
    if not out:
        raise ValueError("give at least one series")
    return out


def query_call(
    series: Iterable[SeriesSpec],
    start: TimeLike,
    end: TimeLike,
    resolution: int | None,
    aggregation: str | None,
    fill: str | None,
) -> Call:
    body: JSONDict = {
        "start_time": format_utc(start, "start"),
        "end_time": format_utc(end, "end"),
        "series": series_body(series),
    }
    if resolution is not None:
        body["resolution"] = resolution
    if aggregation is not None:
        body["aggregation"] = aggregation
    if fill is not None:
        body["fill"] = fill
    return Call("POST", "/api/timeseries/v2/query", json=body)


def parse_query(response: httpx.Response, as_frame: bool) -> Any:
    result = QueryResult.from_json(json_object(response, "the query API"))
    return result.to_frame() if as_frame and _frames.has_pandas() else result


def data_call(
    organisation: str | None,
    department: str | None,
    entity: str | None,
    metric: str | None,
    start: TimeLike | None,
    end: TimeLike | None,
    page_size: int,
) -> Call:
    params = _params(
        organisation=organisation,
        department=department,
        entity=entity,
        metric=metric,
        **{
            "from": None if start is None else format_utc(start, "start"),
            "to": None if end is None else format_utc(end, "end"),
        },
        limit=page_size,
    )
    return Call("GET", "/api/data", params=params)


def export_call(
    series: Iterable[SeriesSpec],
    start: TimeLike,
    end: TimeLike,
    format: str,
    bucket: str | None,
    aggregation: str | None,
) -> Call:
    """``bucket`` is ``raw`` or a width such as ``1h``; ``aggregation`` the function per bucket (as in
    :func:`timeseries_call`). Both are sent as given: the server names any mistake."""
    if format not in ("parquet", "csv"):
        raise ValueError("format must be 'parquet' or 'csv'")
    body: JSONDict = {
        "start_time": format_utc(start, "start"),
        "end_time": format_utc(end, "end"),
        "series": series_body(series, with_aggregation=False),
        "format": format,
    }
    if bucket is not None:
        body["bucket"] = bucket
    if aggregation is not None:
        body["aggregation"] = aggregation
    # Each export writes a file: repeating it after a 5xx could make a second one, so no blind retry.
    return Call("POST", "/api/datahub/export", json=body, idempotent=False)


def download_call(download_url: str, base_url: httpx.URL, stream: bool) -> Call:
    """GET a signed export URL (absolute, or relative to the base URL) without the token."""
    url = httpx.URL(download_url)
    if not url.is_absolute_url:
        url = base_url.join(download_url)
    return Call("GET", url, authenticated=False, stream=stream)


def assets_call(workspace_id: str | None, type: str | None, page: int, size: int) -> Call:
    params = _params(workspaceId=workspace_id, page=page, size=size, type=type)
    return Call("GET", "/v3/assets", params=params)


def assets_done(body: Mapping[str, Any], page: int) -> bool:
    """True once a Spring page says it is the last one (or carries nothing)."""
    if body.get("last") is True or not body.get("content"):
        return True
    total = body.get("totalPages")
    return isinstance(total, int) and page + 1 >= total


def backfill_call(device_id: str, chunk: list[JSONDict]) -> Call:
    # Ingest is idempotent on (series, timestamp): resending a chunk after a failure is safe.
    return Call("POST", f"/v3/devices/{path_segment(device_id)}/backfill", json=chunk)


def add_backfill(total: BackfillResult, response: httpx.Response) -> BackfillResult:
    body = json_object(response, "the backfill API")
    return BackfillResult(
        accepted=total.accepted + int(body.get("accepted", 0)),
        duplicates=total.duplicates + int(body.get("duplicates", 0)),
        chunks=total.chunks + 1,
    )


# --- backfill records ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy/pandas scalars to plain Python for JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    pd = sys.modules.get("pandas")
    if pd is not None:
        try:
            return bool(pd.isna(value))
        except (TypeError, ValueError):
            return False
    return False


def _frame_records(frame: Any) -> list[JSONDict]:
    pd = sys.modules["pandas"]
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError("a backfill DataFrame needs a DatetimeIndex (the measurement times)")
    if frame.index.tz is None:
        raise ValueError(
            "the DataFrame's DatetimeIndex has no time zone; use frame.tz_localize('UTC') "
            "(or the sensor's local zone) first"
        )
    stamps = frame.index.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    columns = [str(c) for c in frame.columns]
    records = []
    for stamp, row in zip(stamps, frame.itertuples(index=False, name=None), strict=True):
        data = {col: _plain(v) for col, v in zip(columns, row, strict=True) if not _missing(v)}
        if data:  # a row with nothing measured has nothing to send
            records.append({"timestamp": stamp, "data": data})
    return records


def _record(item: Any, position: int) -> JSONDict:
    if not isinstance(item, Mapping) or not isinstance(item.get("data"), Mapping):
        raise ValueError(
            f"backfill record {position} must be a mapping with a 'data' mapping, "
            "like {'timestamp': '2026-01-01T00:00:00Z', 'data': {'temperature': 21.5}}"
        )
    record: JSONDict = {"data": {str(k): _plain(v) for k, v in item["data"].items()}}
    if item.get("timestamp") is not None:
        record["timestamp"] = format_utc(item["timestamp"], f"timestamp of backfill record {position}")
    if item.get("topic") is not None:
        record["topic"] = str(item["topic"])
    return record


def backfill_records(records: Any) -> tuple[Iterator[JSONDict], int | None]:
    """Normalised records and their count (``None`` for a generator of unknown length)."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(records, pd.DataFrame):
        rows = _frame_records(records)
        return iter(rows), len(rows)
    if isinstance(records, Mapping):
        records = [records]
    total = len(records) if isinstance(records, Sequence) else None
    return (_record(item, i) for i, item in enumerate(records)), total


def chunks(records: Iterator[JSONDict], size: int) -> Iterator[list[JSONDict]]:
    if size < 1:
        raise ValueError("chunk_size must be at least 1")
    chunk: list[JSONDict] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def note_partial_backfill(exc: BaseException, sent: int, total: int | None) -> None:
    of = f" of {total}" if total is not None else ""
    exc.add_note(
        f"backfill stopped after {sent}{of} records were stored; sending them all again is safe "
        "(ingest is idempotent on series and timestamp)"
    )
