"""The synchronous client."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from . import _core, _frames, _retry
from ._core import JSONDict, SeriesSpec
from ._times import TimeLike
from .errors import error_from_response
from .models import BackfillResult, ExportResult, QueryResult, Timeseries, export_fields

if TYPE_CHECKING:
    import pandas as pd

ProgressCallback = Callable[[int, int | None], None]


class Client:
    """A sensorhub client for scripts and notebooks.

    ``base_url`` and ``token`` default to the ``SENSORHUB_URL`` and ``SENSORHUB_TOKEN`` environment
    variables (URL default ``http://127.0.0.1:8000``). The token's checksum is checked here, before
    any request, and the token is only ever sent in the ``Authorization: Bearer`` header to
    ``base_url``'s own host.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        verify: ssl.SSLContext | bool = True,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = _core.resolve_settings(base_url, token)
        self._retry = _core.RetryPolicy(
            max_retries=max_retries, backoff=backoff, max_retry_after=max_retry_wait
        )
        self._expiry = _core.ExpiryWarner()
        self._http = httpx.Client(
            base_url=self._settings.base_url,
            timeout=timeout,
            verify=verify,
            headers={"User-Agent": _core.user_agent(), **(headers or {})},
            transport=transport,
            follow_redirects=True,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server this client talks to."""
        return str(self._settings.base_url)

    @property
    def token_kind(self) -> str:
        """``"pat"`` (personal access token) or ``"key"`` (organisation API key)."""
        return self._settings.token_kind

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, token=<{self.token_kind}, hidden>)"

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, call: _core.Call) -> httpx.Response:
        """Send ``call``, retrying per the policy; raise a typed error for any failure status."""
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method, call.url, params=call.params, json=call.json, headers=call.headers
            )
            auth = self._settings.auth if call.authenticated else None
            try:
                response = self._http.send(request, auth=auth, stream=call.stream)
            except httpx.TransportError as exc:
                delay = self._retry.after_exception(attempt, exc, call)
                if delay is None:
                    raise _core.transport_error(call, exc) from exc
                why = type(exc).__name__
            else:
                if call.authenticated:
                    self._expiry.check(response)
                if response.is_success:
                    return response
                if call.stream:
                    response.read()
                    response.close()
                delay = self._retry.after_response(attempt, response, call)
                if delay is None:
                    raise error_from_response(response)
                why = f"HTTP {response.status_code}"
            _core.log_retry(call, attempt, delay, why)
            _retry.sleep(delay)
            attempt += 1

    def _pages(self, call: _core.Call) -> Iterator[httpx.Response]:
        """Responses of ``call`` and of every ``rel="next"`` page after it."""
        guard = _core.PageGuard()
        while True:
            response = self._send(call)
            yield response
            url = _core.next_link(response, self._settings.base_url)
            if url is None:
                return
            guard.check(url)
            call = _core.Call(
                call.method, url, json=call.json, headers=call.headers, idempotent=call.idempotent
            )

    def _offset_pages(self, path: str, page_size: int) -> list[JSONDict]:
        """Every row of a limit/offset route, page after page until a short one."""
        pager = _core.OffsetPager(path, page_size)
        while not pager.done:
            pager.add(self._send(pager.call()))
        return pager.rows

    # --- NGSI-LD entities ----------------------------------------------------------------------

    def entities(
        self,
        type: str | Sequence[str] | None = None,
        id: str | Sequence[str] | None = None,
        id_pattern: str | None = None,
        attrs: str | Sequence[str] | None = None,
        q: str | None = None,
        key_values: bool = False,
        page_size: int = 100,
    ) -> Iterator[JSONDict]:
        """Every matching NGSI-LD entity, following ``Link: rel="next"`` pages as you iterate."""
        call = _core.entities_call(
            type=type, id=id, id_pattern=id_pattern, attrs=attrs, q=q,
            key_values=key_values, page_size=page_size,
        )  # fmt: skip
        for response in self._pages(call):
            yield from _core.json_list(response, "the entities API")

    def entity(self, id: str, attrs: str | Sequence[str] | None = None, key_values: bool = False) -> JSONDict:
        """One NGSI-LD entity by id (raises :class:`NotFound`)."""
        return _core.json_object(self._send(_core.entity_call(id, attrs, key_values)), "the entities API")

    def count_entities(
        self,
        type: str | Sequence[str] | None = None,
        q: str | None = None,
        id_pattern: str | None = None,
    ) -> int:
        """How many entities match, from the ``NGSILD-Results-Count`` header (no entities fetched)."""
        return _core.parse_count(self._send(_core.count_call(type, id_pattern, q)))

    def query_entities(self, query: Mapping[str, Any], page_size: int = 100) -> Iterator[JSONDict]:
        """``POST /ngsi-ld/v1/entityOperations/query`` with an NGSI-LD Query body, all pages."""
        for response in self._pages(_core.entity_query_call(query, page_size)):
            yield from _core.json_list(response, "the entity query API")

    # --- time series ---------------------------------------------------------------------------

    @overload
    def timeseries(
        self, entity_id: str, attributes: str | Sequence[str] | None = ..., *,
        start: TimeLike, end: TimeLike, resolution: int | None = ..., aggregation: str | None = ...,
        as_frame: Literal[True] = ...,
    ) -> pd.DataFrame: ...  # fmt: skip

    @overload
    def timeseries(
        self, entity_id: str, attributes: str | Sequence[str] | None = ..., *,
        start: TimeLike, end: TimeLike, resolution: int | None = ..., aggregation: str | None = ...,
        as_frame: Literal[False],
    ) -> Timeseries: ...  # fmt: skip

    @overload
    def timeseries(
        self, entity_id: str, attributes: str | Sequence[str] | None = ..., *,
        start: TimeLike, end: TimeLike, resolution: int | None = ..., aggregation: str | None = ...,
        as_frame: bool = ...,
    ) -> pd.DataFrame | Timeseries: ...  # fmt: skip

    def timeseries(
        self,
        entity_id: str,
        attributes: str | Sequence[str] | None = None,
        *,
        start: TimeLike,
        end: TimeLike,
        resolution: int | None = None,
        aggregation: str | None = None,
        as_frame: bool = True,
    ) -> pd.DataFrame | Timeseries:
        """One entity's attributes over ``[start, end)``, at most ``resolution`` points.

        Returns a DataFrame (UTC ``timestamp`` index, one float64 column per attribute) when
        ``as_frame`` and pandas is installed, else a :class:`Timeseries`. With pyarrow installed the
        data travels as Arrow IPC.
        """
        call = _core.timeseries_call(
            entity_id, attributes, start, end, resolution, aggregation, _core.wants_arrow(as_frame)
        )
        return _core.parse_timeseries(self._send(call), entity_id, aggregation, as_frame)

    @overload
    def query(
        self, series: Iterable[SeriesSpec], *, start: TimeLike, end: TimeLike,
        resolution: int | None = ..., aggregation: str | None = ..., fill: str | None = ...,
        as_frame: Literal[True] = ...,
    ) -> pd.DataFrame: ...  # fmt: skip

    @overload
    def query(
        self, series: Iterable[SeriesSpec], *, start: TimeLike, end: TimeLike,
        resolution: int | None = ..., aggregation: str | None = ..., fill: str | None = ...,
        as_frame: Literal[False],
    ) -> QueryResult: ...  # fmt: skip

    @overload
    def query(
        self, series: Iterable[SeriesSpec], *, start: TimeLike, end: TimeLike,
        resolution: int | None = ..., aggregation: str | None = ..., fill: str | None = ...,
        as_frame: bool = ...,
    ) -> pd.DataFrame | QueryResult: ...  # fmt: skip

    def query(
        self,
        series: Iterable[SeriesSpec],
        *,
        start: TimeLike,
        end: TimeLike,
        resolution: int | None = None,
        aggregation: str | None = None,
        fill: str | None = None,
        as_frame: bool = True,
    ) -> pd.DataFrame | QueryResult:
        """Several series on one time axis; columns are named ``<entity_id>.<attribute>``.

        ``aggregation`` is the default for series that do not name their own; ``fill="previous"``
        carries the last value into empty buckets.
        """
        call = _core.query_call(series, start, end, resolution, aggregation, fill)
        return _core.parse_query(self._send(call), as_frame)

    # --- telemetry (latest values) -------------------------------------------------------------

    def devices(self, page_size: int = _core.MAX_OFFSET_PAGE) -> list[JSONDict]:
        """Every device this token may see, with its latest values, timestamps and units, across every page
        (``limit``/``offset``, ``page_size`` rows per request)."""
        return self._offset_pages("/api/devices", page_size)

    latest = devices

    def device(self, device_id: str) -> JSONDict:
        """One device's latest values."""
        call = _core.Call("GET", f"/api/devices/{_core.path_segment(device_id)}")
        return _core.json_object(self._send(call), "/api/devices/{id}")

    def sensors(self, page_size: int = _core.MAX_OFFSET_PAGE) -> list[JSONDict]:
        """Every sensor with its latest reading, timestamp and unit, across every page
        (``limit``/``offset``, ``page_size`` rows per request)."""
        return self._offset_pages("/api/sensors", page_size)

    def sensor(self, sensor_id: str) -> JSONDict:
        """One sensor's latest reading."""
        call = _core.Call("GET", f"/api/sensors/{_core.path_segment(sensor_id)}")
        return _core.json_object(self._send(call), "/api/sensors/{id}")

    # --- LEAF data -------------------------------------------------------------------------------

    def data(
        self,
        organisation: str | None = None,
        department: str | None = None,
        entity: str | None = None,
        metric: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int | None = None,
        page_size: int = 1000,
    ) -> Iterator[JSONDict]:
        """Rows ``{time, entity, metric, value, tags}`` in ``[start, end)``, across every page.

        ``limit`` caps the total number of rows yielded (``None``: all of them).
        """
        if limit is not None and limit <= 0:
            return
        size = page_size if limit is None else min(page_size, limit)
        call = _core.data_call(organisation, department, entity, metric, start, end, size)
        count = 0
        for response in self._pages(call):
            for row in _core.json_list(response, "/api/data"):
                yield row
                count += 1
                if limit is not None and count >= limit:
                    return

    def data_frame(
        self,
        organisation: str | None = None,
        department: str | None = None,
        entity: str | None = None,
        metric: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """:meth:`data` as a long DataFrame: time (UTC), entity, metric, value, unit, tags."""
        _frames.require_pandas()
        rows = list(self.data(organisation, department, entity, metric, start, end, limit))
        return _frames.rows_frame(rows)

    def recent(self, limit: int = 50) -> list[JSONDict]:
        """The most recent readings across everything this token may read."""
        call = _core.Call("GET", "/api/data/recent", params=[("limit", str(limit))])
        return _core.json_list(self._send(call), "/api/data/recent")

    def managements(self) -> list[JSONDict]:
        """The token owner's access grants (organisation, department, entity, time window)."""
        return _core.json_list(self._send(_core.Call("GET", "/api/managements")), "/api/managements")

    # --- the token itself ----------------------------------------------------------------------

    def whoami(self) -> JSONDict:
        """What this token is and may do: owner, scopes, restrictions, expiry."""
        return _core.json_object(self._send(_core.Call("GET", "/api/tokens/self")), "/api/tokens/self")

    token_info = whoami

    # --- GraphQL -------------------------------------------------------------------------------

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, operation_name: str | None = None
    ) -> JSONDict:
        """Run a GraphQL operation at ``/graphql`` (Datacake's API, docs/graphql.md) and return its
        ``data``. Errors in the answer raise :class:`~sensorhub_client.errors.GraphQLError` (with
        ``code``, ``missing_scope``, ``errors`` and the partial ``data``); HTTP failures (401, 429, …)
        raise the usual :class:`~sensorhub_client.errors.APIError` subclasses."""
        return _core.graphql_data(self._send(_core.graphql_call(query, variables, operation_name)))

    # --- export --------------------------------------------------------------------------------

    def export(
        self,
        series: Iterable[SeriesSpec],
        *,
        start: TimeLike,
        end: TimeLike,
        format: Literal["parquet", "csv"] = "parquet",
        bucket: str | None = None,
        aggregation: str | None = None,
    ) -> ExportResult:
        """Ask the server to write a CSV/Parquet file; warns when the server truncated it.

        ``bucket`` (``"raw"``, the default, or a width such as ``"15m"``, ``"1h"``, ``"1d"``) groups the
        points; ``aggregation`` is the function per bucket (``avg`` by default), as in :meth:`timeseries`.
        """
        call = _core.export_call(series, start, end, format, bucket, aggregation)
        body = _core.json_object(self._send(call), "/api/datahub/export")
        return ExportResult(**export_fields(body), _fetch=self._fetch)

    def _fetch(self, download_url: str, target: Path | None) -> bytes:
        """GET a signed URL without the token: into memory, or streamed into ``target``."""
        call = _core.download_call(download_url, self._settings.base_url, stream=target is not None)
        response = self._send(call)
        if target is None:
            return response.content
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as fh:
                for block in response.iter_bytes():
                    fh.write(block)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        partial.replace(target)
        return b""

    # --- backfill ------------------------------------------------------------------------------

    def backfill(
        self,
        device_id: str,
        records: Any,
        chunk_size: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> BackfillResult:
        """Send historical ``{timestamp?, topic?, data}`` records (or a DataFrame) in chunks.

        A DataFrame needs a tz-aware DatetimeIndex; each column becomes a ``data`` key, NaNs are left
        out. 429s, 5xx and dropped connections are retried (ingest is idempotent). ``progress`` is
        called as ``progress(sent, total)`` after each chunk (``total`` is None for generators).
        """
        items, total = _core.backfill_records(records)
        result = BackfillResult()
        sent = 0
        try:
            for chunk in _core.chunks(items, chunk_size):
                result = _core.add_backfill(result, self._send(_core.backfill_call(device_id, chunk)))
                sent += len(chunk)
                if progress is not None:
                    progress(sent, total)
        except Exception as exc:
            if sent:
                _core.note_partial_backfill(exc, sent, total)
            raise
        return result

    # --- Akenza assets ---------------------------------------------------------------------------

    def assets(
        self, workspace_id: str | None = None, type: str | None = None, size: int = 100
    ) -> Iterator[JSONDict]:
        """Every asset, page by page (``GET /v3/assets``, Spring pages starting at 0)."""
        page = 0
        while True:
            call = _core.assets_call(workspace_id, type, page, size)
            body = _core.json_object(self._send(call), "/v3/assets")
            yield from body.get("content") or []
            if _core.assets_done(body, page):
                return
            page += 1
