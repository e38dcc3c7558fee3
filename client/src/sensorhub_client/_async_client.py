"""The asynchronous client: the same methods as :class:`~sensorhub_client.Client`, awaitable."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from . import _core, _frames, _retry
from ._core import JSONDict, SeriesSpec
from ._times import TimeLike
from .errors import error_from_response
from .models import AsyncExportResult, BackfillResult, QueryResult, Timeseries, export_fields

if TYPE_CHECKING:
    import pandas as pd

ProgressCallback = Callable[[int, int | None], None]


class AsyncClient:
    """The asyncio twin of :class:`~sensorhub_client.Client`: same arguments, ``await`` the calls,
    ``async for`` over the paged ones, ``async with`` to close it."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = _core.resolve_settings(base_url, token)
        self._retry = _core.RetryPolicy(
            max_retries=max_retries, backoff=backoff, max_retry_after=max_retry_wait
        )
        self._expiry = _core.ExpiryWarner()
        self._http = httpx.AsyncClient(
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
        return f"AsyncClient(base_url={self.base_url!r}, token=<{self.token_kind}, hidden>)"

    async def aclose(self) -> None:
        """Close the underlying HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- plumbing ------------------------------------------------------------------------------

    async def _send(self, call: _core.Call) -> httpx.Response:
        """Send ``call``, retrying per the policy; raise a typed error for any failure status."""
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method, call.url, params=call.params, json=call.json, headers=call.headers
            )
            auth = self._settings.auth if call.authenticated else None
            try:
                response = await self._http.send(request, auth=auth, stream=call.stream)
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
                    await response.aread()
                    await response.aclose()
                delay = self._retry.after_response(attempt, response, call)
                if delay is None:
                    raise error_from_response(response)
                why = f"HTTP {response.status_code}"
            _core.log_retry(call, attempt, delay, why)
            await _retry.async_sleep(delay)
            attempt += 1

    async def _pages(self, call: _core.Call) -> AsyncIterator[httpx.Response]:
        """Responses of ``call`` and of every ``rel="next"`` page after it."""
        guard = _core.PageGuard()
        while True:
            response = await self._send(call)
            yield response
            url = _core.next_link(response, self._settings.base_url)
            if url is None:
                return
            guard.check(url)
            call = _core.Call(
                call.method, url, json=call.json, headers=call.headers, idempotent=call.idempotent
            )

    async def _offset_pages(self, path: str, page_size: int) -> list[JSONDict]:
        """Every row of a limit/offset route, page after page until a short one."""
        pager = _core.OffsetPager(path, page_size)
        while not pager.done:
            pager.add(await self._send(pager.call()))
        return pager.rows

    # --- NGSI-LD entities ----------------------------------------------------------------------

    async def entities(
        self,
        type: str | Sequence[str] | None = None,
        id: str | Sequence[str] | None = None,
        id_pattern: str | None = None,
        attrs: str | Sequence[str] | None = None,
        q: str | None = None,
        key_values: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[JSONDict]:
        """Every matching NGSI-LD entity, following ``Link: rel="next"`` pages (``async for``)."""
        call = _core.entities_call(
            type=type, id=id, id_pattern=id_pattern, attrs=attrs, q=q,
            key_values=key_values, page_size=page_size,
        )  # fmt: skip
        async for response in self._pages(call):
            for item in _core.json_list(response, "the entities API"):
                yield item

    async def entity(
        self, id: str, attrs: str | Sequence[str] | None = None, key_values: bool = False
    ) -> JSONDict:
        """One NGSI-LD entity by id (raises :class:`NotFound`)."""
        response = await self._send(_core.entity_call(id, attrs, key_values))
        return _core.json_object(response, "the entities API")

    async def count_entities(
        self,
        type: str | Sequence[str] | None = None,
        q: str | None = None,
        id_pattern: str | None = None,
    ) -> int:
        """How many entities match, from the ``NGSILD-Results-Count`` header (no entities fetched)."""
        return _core.parse_count(await self._send(_core.count_call(type, id_pattern, q)))

    async def query_entities(self, query: Mapping[str, Any], page_size: int = 100) -> AsyncIterator[JSONDict]:
        """``POST /ngsi-ld/v1/entityOperations/query`` with an NGSI-LD Query body, all pages."""
        async for response in self._pages(_core.entity_query_call(query, page_size)):
            for item in _core.json_list(response, "the entity query API"):
                yield item

    # --- time series ---------------------------------------------------------------------------

    @overload
    async def timeseries(
        self, entity_id: str, attributes: str | Sequence[str] | None = ..., *,
        start: TimeLike, end: TimeLike, resolution: int | None = ..., aggregation: str | None = ...,
        as_frame: Literal[True] = ...,
    ) -> pd.DataFrame: ...  # fmt: skip

    @overload
    async def timeseries(
        self, entity_id: str, attributes: str | Sequence[str] | None = ..., *,
        start: TimeLike, end: TimeLike, resolution: int | None = ..., aggregation: str | None = ...,
        as_frame: Literal[False],
    ) -> Timeseries: ...  # fmt: skip

    @overload
    async def timeseries(
        self, entity_id: str, attributes: str | Sequence[str] | None = ..., *,
        start: TimeLike, end: TimeLike, resolution: int | None = ..., aggregation: str | None = ...,
        as_frame: bool = ...,
    ) -> pd.DataFrame | Timeseries: ...  # fmt: skip

    async def timeseries(
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
        """One entity's attributes over ``[start, end)``; see :meth:`Client.timeseries`."""
        call = _core.timeseries_call(
            entity_id, attributes, start, end, resolution, aggregation, _core.wants_arrow(as_frame)
        )
        return _core.parse_timeseries(await self._send(call), entity_id, aggregation, as_frame)

    @overload
    async def query(
        self, series: Iterable[SeriesSpec], *, start: TimeLike, end: TimeLike,
        resolution: int | None = ..., aggregation: str | None = ..., fill: str | None = ...,
        as_frame: Literal[True] = ...,
    ) -> pd.DataFrame: ...  # fmt: skip

    @overload
    async def query(
        self, series: Iterable[SeriesSpec], *, start: TimeLike, end: TimeLike,
        resolution: int | None = ..., aggregation: str | None = ..., fill: str | None = ...,
        as_frame: Literal[False],
    ) -> QueryResult: ...  # fmt: skip

    @overload
    async def query(
        self, series: Iterable[SeriesSpec], *, start: TimeLike, end: TimeLike,
        resolution: int | None = ..., aggregation: str | None = ..., fill: str | None = ...,
        as_frame: bool = ...,
    ) -> pd.DataFrame | QueryResult: ...  # fmt: skip

    async def query(
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
        return _core.parse_query(await self._send(call), as_frame)

    # --- telemetry (latest values) -------------------------------------------------------------

    async def devices(self, page_size: int = _core.MAX_OFFSET_PAGE) -> list[JSONDict]:
        """Every device this token may see, with its latest values, timestamps and units, across every page
        (``limit``/``offset``, ``page_size`` rows per request)."""
        return await self._offset_pages("/api/devices", page_size)

    latest = devices

    async def device(self, device_id: str) -> JSONDict:
        """One device's latest values."""
        call = _core.Call("GET", f"/api/devices/{_core.path_segment(device_id)}")
        return _core.json_object(await self._send(call), "/api/devices/{id}")

    async def sensors(self, page_size: int = _core.MAX_OFFSET_PAGE) -> list[JSONDict]:
        """Every sensor with its latest reading, timestamp and unit, across every page
        (``limit``/``offset``, ``page_size`` rows per request)."""
        return await self._offset_pages("/api/sensors", page_size)

    async def sensor(self, sensor_id: str) -> JSONDict:
        """One sensor's latest reading."""
        call = _core.Call("GET", f"/api/sensors/{_core.path_segment(sensor_id)}")
        return _core.json_object(await self._send(call), "/api/sensors/{id}")

    # --- LEAF data -------------------------------------------------------------------------------

    async def data(
        self,
        organisation: str | None = None,
        department: str | None = None,
        entity: str | None = None,
        metric: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[JSONDict]:
        """Rows ``{time, entity, metric, value, tags}`` in ``[start, end)``, across every page.

        ``limit`` caps the total number of rows yielded (``None``: all of them).
        """
        if limit is not None and limit <= 0:
            return
        size = page_size if limit is None else min(page_size, limit)
        call = _core.data_call(organisation, department, entity, metric, start, end, size)
        count = 0
        async for response in self._pages(call):
            for row in _core.json_list(response, "/api/data"):
                yield row
                count += 1
                if limit is not None and count >= limit:
                    return

    async def data_frame(
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
        rows = [r async for r in self.data(organisation, department, entity, metric, start, end, limit)]
        return _frames.rows_frame(rows)

    async def recent(self, limit: int = 50) -> list[JSONDict]:
        """The most recent readings across everything this token may read."""
        call = _core.Call("GET", "/api/data/recent", params=[("limit", str(limit))])
        return _core.json_list(await self._send(call), "/api/data/recent")

    async def managements(self) -> list[JSONDict]:
        """The token owner's access grants (organisation, department, entity, time window)."""
        response = await self._send(_core.Call("GET", "/api/managements"))
        return _core.json_list(response, "/api/managements")

    # --- the token itself ----------------------------------------------------------------------

    async def whoami(self) -> JSONDict:
        """What this token is and may do: owner, scopes, restrictions, expiry."""
        response = await self._send(_core.Call("GET", "/api/tokens/self"))
        return _core.json_object(response, "/api/tokens/self")

    token_info = whoami

    # --- GraphQL -------------------------------------------------------------------------------

    async def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, operation_name: str | None = None
    ) -> JSONDict:
        """Run a GraphQL operation at ``/graphql`` and return its ``data`` (see :meth:`Client.graphql`)."""
        response = await self._send(_core.graphql_call(query, variables, operation_name))
        return _core.graphql_data(response)

    # --- export --------------------------------------------------------------------------------

    async def export(
        self,
        series: Iterable[SeriesSpec],
        *,
        start: TimeLike,
        end: TimeLike,
        format: Literal["parquet", "csv"] = "parquet",
        bucket: str | None = None,
        aggregation: str | None = None,
    ) -> AsyncExportResult:
        """Ask the server to write a CSV/Parquet file; warns when the server truncated it.

        ``bucket`` (``"raw"``, the default, or a width such as ``"15m"``, ``"1h"``, ``"1d"``) groups the
        points; ``aggregation`` is the function per bucket (``avg`` by default), as in :meth:`timeseries`.
        """
        call = _core.export_call(series, start, end, format, bucket, aggregation)
        body = _core.json_object(await self._send(call), "/api/datahub/export")
        return AsyncExportResult(**export_fields(body), _fetch=self._fetch)

    async def _fetch(self, download_url: str, target: Path | None) -> bytes:
        """GET a signed URL without the token: into memory, or streamed into ``target``."""
        call = _core.download_call(download_url, self._settings.base_url, stream=target is not None)
        response = await self._send(call)
        if target is None:
            return response.content
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as fh:
                async for block in response.aiter_bytes():
                    fh.write(block)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            await response.aclose()
        partial.replace(target)
        return b""

    # --- backfill ------------------------------------------------------------------------------

    async def backfill(
        self,
        device_id: str,
        records: Any,
        chunk_size: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> BackfillResult:
        """Send historical records (or a DataFrame) in chunks; see :meth:`Client.backfill`."""
        items, total = _core.backfill_records(records)
        result = BackfillResult()
        sent = 0
        try:
            for chunk in _core.chunks(items, chunk_size):
                response = await self._send(_core.backfill_call(device_id, chunk))
                result = _core.add_backfill(result, response)
                sent += len(chunk)
                if progress is not None:
                    progress(sent, total)
        except Exception as exc:
            if sent:
                _core.note_partial_backfill(exc, sent, total)
            raise
        return result

    # --- Akenza assets ---------------------------------------------------------------------------

    async def assets(
        self, workspace_id: str | None = None, type: str | None = None, size: int = 100
    ) -> AsyncIterator[JSONDict]:
        """Every asset, page by page (``GET /v3/assets``, Spring pages starting at 0)."""
        page = 0
        while True:
            call = _core.assets_call(workspace_id, type, page, size)
            body = _core.json_object(await self._send(call), "/v3/assets")
            for item in body.get("content") or []:
                yield item
            if _core.assets_done(body, page):
                return
            page += 1
