"""The GraphQL schema (Datacake's names where they fit; docs/graphql.md lists every difference).

Resolvers are thin: they take the viewer's :class:`~sensorhub.authz.access.Access` for the scope the
field needs (``entities`` for workspaces and devices, ``telemetry`` for current values, ``timeseries``
for history, ``ingest`` for the one mutation) and call the same service functions as the REST routes
(device listings from :mod:`sensorhub.timeseries.repository`, latest values from
:mod:`sensorhub.timeseries.telemetry`, history from :func:`sensorhub.timeseries.reads.entity_data`,
writes through :mod:`sensorhub.timeseries.ingest`). Database work runs in a worker thread, one
session per hop; per-device fields are batched with DataLoaders, so a page of devices costs a bounded
number of SQL statements whatever its size. No enum is built from data: types, fields and names are
strings, so introspection shows nothing of any organisation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import numpy as np
import orjson
import strawberry
from anyio import to_thread
from sqlalchemy.orm import Session
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import SelectedField

from graphql import GraphQLError
from sensorhub.accounts.models import User as UserModel
from sensorhub.auth.principal import Principal, WorkspaceRef
from sensorhub.auth.ratelimit import RateLimiter
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import readable_windows_us, visible_entities
from sensorhub.authz.subjects import session_access
from sensorhub.compat.datacake.errors import code_for
from sensorhub.compat.datacake.viewer import Viewer
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database, utcnow
from sensorhub.entities.normalize import check_type
from sensorhub.errors import BadRequest, InsufficientScope, NotFound, SensorhubError, Unauthorized
from sensorhub.kit.paging import LimitPolicy, decode_cursor, encode_cursor
from sensorhub.kit.time import iso, iso_array, parse_time, to_us
from sensorhub.push.live import FeedClosed, LiveEvent, LiveFeed, SessionViewer, TokenViewer
from sensorhub.push.live import Viewer as LiveViewer
from sensorhub.push.stream import resolve_selection
from sensorhub.timeseries import ingest, provisioning, reads, repository, telemetry
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import DEFAULT_TOPIC
from sensorhub.timeseries.names import check_attribute_name
from sensorhub.timeseries.query import DEFAULT_RESOLUTION, read_series
from sensorhub.timeseries.repository import DeviceSelection, ValueFilter

T = TypeVar("T")
log = logging.getLogger("sensorhub.graphql")

# The REST device listing's page size (/api/devices: default 100, at most 1000), as Relay's `first`.
FIRST = LimitPolicy(default=telemetry.LIMITS.default, maximum=telemetry.LIMITS.maximum, param="first")
MAX_FILTERS = 20
MAX_SEARCH = 200
MAX_LIST = 100  # types, ids, field names in one argument
AGGREGATE_DEVICES = telemetry.LIMITS.maximum
CURRENT_FIELDS = frozenset({"currentMeasurements", "currentMeasurement", "currentValues"})
BAD_CURSOR = "after is not a cursor this API handed out; pass pageInfo.endCursor of the previous page as is"


class Context(BaseContext):
    """Per request (or WebSocket connection): the viewer, the database and the batch loaders."""

    def __init__(
        self,
        viewer: Viewer | None,
        db: Database,
        settings: Settings,
        limiter: RateLimiter,
        app: AppContext | None = None,
    ) -> None:
        super().__init__()
        self.app = app
        # For live feeds (subscriptions): the credential, or the session's user, and the client address.
        self.principal: Principal | None = None
        self.session_user: str | None = None
        self.client_ip = ""
        self._viewer = viewer
        self.db = db
        self.settings = settings
        self.limiter = limiter
        self.cost: int | None = None  # of the operation, once computed
        self.budget_left: int | None = None
        self.rows: dict[int, Any] = {}  # device rows handed out, by entity pk (the loaders' input)
        self.latest: dict[int, dict[str, Any]] = {}  # latest values a listing prefetched, by entity pk
        self.series: DataLoader[int, list[Any]] = DataLoader(load_fn=self._load_series)
        self.current: DataLoader[int, dict[str, Any]] = DataLoader(load_fn=self._load_current)

    def latest_then(self, pk: int, fn: Callable[[dict[str, Any]], T]) -> T | Awaitable[T]:
        """``fn`` of a device's latest values: at once when its listing prefetched them (no awaitable
        per device: a page of devices is one database hop, then plain attribute reads), else once the
        batch loader has them."""
        hit = self.latest.get(pk)
        if hit is not None:
            return fn(hit)
        return _then(self.current.load(pk), fn)

    @property
    def viewer(self) -> Viewer:
        if self._viewer is None:
            raise Unauthorized("Authentication required: send 'Authorization: Token <token>'")
        return self._viewer

    def set_viewer(self, viewer: Viewer) -> None:
        self._viewer = viewer

    async def run(self, fn: Callable[[Session], T]) -> T:
        """``fn`` with a read session, in a worker thread (the event loop stays free)."""
        db = self.db

        def work() -> T:
            with db.session() as s:
                return fn(s)

        return await to_thread.run_sync(work)

    async def _load_series(self, pks: list[int]) -> list[list[Any]]:
        found = await self.run(lambda s: repository.series_of_entities(s, pks))
        return [found[pk] for pk in pks]

    async def _load_current(self, pks: list[int]) -> list[dict[str, Any]]:
        access = self.viewer.access("telemetry")
        rows = [self.rows[pk] for pk in pks]

        def work(s: Session) -> list[dict[str, Any]]:
            series = repository.series_of_entities(s, pks)
            store = store_for(s)
            return telemetry.latest_attributes_of(rows, series, store, access)

        return await self.run(work)


async def _then(awaitable: Awaitable[Any], fn: Callable[[Any], T]) -> T:
    return fn(await awaitable)


def _ctx(info: Info[Context, None]) -> Context:
    return info.context


# --- enums (fixed: never built from data) -----------------------------------------------------------


@strawberry.enum(description="How points are combined into a bucket (as time series v2's aggregation)")
class Aggregation(enum.Enum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"
    FIRST = "first"
    LAST = "last"


@strawberry.enum(description="A comparison of a device's current value with a number")
class Comparison(enum.Enum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


@strawberry.input(description="A device's current (latest) value of `field` compared with `value`")
class MeasurementFilter:
    field: str
    op: Comparison
    value: float


@strawberry.input(description="One measurement to record (Datacake's `{field, value, timestamp}`)")
class MeasurementInput:
    field: str
    value: JSON = strawberry.field(description="A number (a time-series point) or any other JSON value")
    timestamp: str | None = strawberry.field(default=None, description="ISO 8601; default: now")
    unit: str | None = strawberry.field(default=None, description="Unit code, e.g. CEL")


# --- types ------------------------------------------------------------------------------------------


@strawberry.type
class Organisation:
    id: strawberry.ID
    slug: str
    name: str


@strawberry.type(description="A measurement field of a device (a time series, or a latest-state property)")
class Field:
    id: strawberry.ID
    fieldName: str
    verboseFieldName: str
    unit: str | None
    kind: str = strawberry.field(description="NUMERIC (a time series) or STATE (a latest-state property)")


@strawberry.type(description="A device's latest readable value of one field")
class Measurement:
    id: strawberry.ID
    field: Field
    value: JSON | None
    time: str | None = strawberry.field(description="When it was observed (ISO 8601)")
    unit: str | None


@strawberry.type
class HistoryField:
    fieldName: str
    unit: str | None
    values: list[float | None]


@strawberry.type(description="A device's history: one time axis, one value list per field (null = no value)")
class History:
    timerangestart: str
    timerangeend: str
    resolution: int
    bucketSeconds: int | None = strawberry.field(description="null: raw points")
    aggregation: str | None
    timestamps: list[str]
    fields: list[HistoryField]

    @strawberry.field(
        description="The same as rows `[{time, <field>: value, …}]`, as Datacake's history JSON"
    )
    def rows(self) -> JSON:
        out: list[dict[str, Any]] = [{"time": t} for t in self.timestamps]
        for f in self.fields:
            for row, v in zip(out, f.values, strict=True):
                row[f.fieldName] = v
        return cast(JSON, out)


@strawberry.type(description="min/max/avg/sum/count of one field over a set of devices")
class FieldAggregate:
    field: str
    unit: str | None
    devices: int = strawberry.field(description="Devices that contributed a value")
    count: int = strawberry.field(description="Values (at a time: one per device) or points (over a range)")
    min: float | None
    max: float | None
    avg: float | None
    sum: float | None
    at: str | None
    timerangestart: str | None
    timerangeend: str | None


@strawberry.type
class RecordResult:
    accepted: int
    duplicates: int


@strawberry.type
class PageInfo:
    hasNextPage: bool
    hasPreviousPage: bool
    startCursor: str | None
    endCursor: str | None


def _fields_of(series: list[Any], row: Any) -> list[Field]:
    return [
        Field(
            id=strawberry.ID(f"{row.entity_id}.{x.attribute}"),
            fieldName=x.attribute,
            verboseFieldName=x.attribute,
            unit=x.unit,
            kind="NUMERIC",
        )
        for x in series
    ]


def _check_telemetry(viewer: Viewer, row: Any) -> Access:
    access = viewer.access("telemetry")
    if not access.allows(row.org_id, row.workspace_id, row.entity_id):
        raise _scope_error("telemetry")
    return access


def _scope_error(scope: str) -> GraphQLError:
    return GraphQLError(
        f"this field needs the '{scope}' scope for this device, which this credential does not have",
        extensions={"code": "FORBIDDEN", "scope": scope},
    )


def _float_list(values: Any) -> list[float | None]:
    arr = np.asarray(values, dtype=np.float64)
    out: list[float | None] = arr.tolist()
    if np.isnan(arr).any():
        out = [None if v != v else v for v in out]  # NaN → null
    return out


@strawberry.type(description="A device: an entity with time series (Datacake's Device)")
class Device:
    row: strawberry.Private[Any]
    # History frames read in the same database hop as the device itself (see Query.device).
    prefetched: strawberry.Private[dict[Any, reads.Frame]] = dataclasses.field(default_factory=dict)

    @strawberry.field(description="The device id (its entity id)")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.entity_id)

    @strawberry.field(description="The entity id (sensorhub has no separate serial number)")
    def serialNumber(self) -> str:
        return str(self.row.entity_id)

    @strawberry.field(description="The device's name, else its id")
    def verboseName(self) -> str:
        return str(self.row.name or self.row.entity_id)

    @strawberry.field(description="The entity type (Datacake's product)")
    def type(self) -> str:
        return str(self.row.type)

    @strawberry.field
    def workspace(self, info: Info[Context, None]) -> Workspace | None:
        ref = _ctx(info).viewer.workspaces.get(self.row.workspace_id)
        return None if ref is None else _workspace(info, ref)

    @strawberry.field(description="The device's numeric fields (time series), by name")
    async def measurementFields(self, info: Info[Context, None]) -> list[Field]:
        return _fields_of(await _ctx(info).series.load(self.row.pk), self.row)

    @strawberry.field(description="Latest readable values with their time and unit (scope telemetry)")
    def currentMeasurements(
        self,
        info: Info[Context, None],
        allActiveFields: bool = False,
        fieldNames: list[str] | None = None,
    ) -> list[Measurement]:
        c = _ctx(info)
        _check_telemetry(c.viewer, self.row)
        wanted = None if fieldNames is None else set(_names(fieldNames, "fieldNames"))
        row = self.row

        def pick(latest: dict[str, Any]) -> list[Measurement]:
            return [
                _measurement(row, name, a)
                for name, a in latest.items()
                if (wanted is None or name in wanted) and not (allActiveFields and a["observedAt"] is None)
            ]

        return cast(list[Measurement], c.latest_then(row.pk, pick))

    @strawberry.field(
        description="The same latest values as one JSON object `{<field>: {value, unit, observedAt}}`, as "
        "`GET /api/devices` gives them (scope telemetry): the fast path for many devices, one leaf "
        "instead of a typed object per measurement."
    )
    def currentValues(self, info: Info[Context, None], fieldNames: list[str] | None = None) -> JSON:
        c = _ctx(info)
        _check_telemetry(c.viewer, self.row)
        wanted = None if fieldNames is None else set(_names(fieldNames, "fieldNames"))

        def pick(latest: dict[str, Any]) -> dict[str, Any]:
            return latest if wanted is None else {k: v for k, v in latest.items() if k in wanted}

        return cast(JSON, c.latest_then(self.row.pk, pick))

    @strawberry.field(description="The latest readable value of one field, or null (scope telemetry)")
    async def currentMeasurement(self, info: Info[Context, None], fieldName: str) -> Measurement | None:
        c = _ctx(info)
        _check_telemetry(c.viewer, self.row)
        latest = await c.current.load(self.row.pk)
        a = latest.get(fieldName)
        return None if a is None else _measurement(self.row, fieldName, a)

    @strawberry.field(
        description="History of numeric fields over [timerangestart, timerangeend) with at most `resolution` "
        "points: raw when they fit, else the smallest standard bucket that does (as time series v2; "
        "scope timeseries). `fields` empty or absent: every numeric field."
    )
    async def history(
        self,
        info: Info[Context, None],
        timerangestart: str,
        timerangeend: str,
        fields: list[str] | None = None,
        resolution: int = DEFAULT_RESOLUTION,
        aggregation: Aggregation = Aggregation.AVG,
    ) -> History:
        c = _ctx(info)
        key = _history_key(timerangestart, timerangeend, fields, resolution, aggregation.name)
        frame = self.prefetched.get(key)
        if frame is None:
            row, viewer = self.row, c.viewer
            frame = await c.run(lambda s: _history_frame(s, viewer, row, key))
        return History(
            timerangestart=iso(frame.start_us),
            timerangeend=iso(frame.end_us),
            resolution=resolution,
            bucketSeconds=None if frame.bucket_us is None else frame.bucket_us // 1_000_000,
            aggregation=frame.aggregation,
            timestamps=iso_array(frame.timestamps).tolist(),
            fields=[
                HistoryField(fieldName=col.name, unit=col.unit, values=_float_list(col.values))
                for col in frame.columns
            ],
        )


HistoryKey = tuple[str, str, tuple[str, ...] | None, int, str]


def _history_key(start: Any, end: Any, fields: Any, resolution: Any, aggregation: Any) -> HistoryKey:
    return (
        str(start),
        str(end),
        tuple(fields) if isinstance(fields, list) and fields else None,
        # A literal in the document arrives as its text ("200"), a variable as an int.
        int(resolution)
        if isinstance(resolution, int | str) and str(resolution).isdigit()
        else DEFAULT_RESOLUTION,
        str(aggregation),
    )


def _history_frame(s: Session, viewer: Viewer, row: Any, key: HistoryKey) -> reads.Frame:
    """A device's history through time series v2's read (:func:`reads.entity_data`)."""
    start_text, end_text, fields, resolution, aggregation = key
    access = viewer.access("timeseries").for_orgs([row.org_id])
    if not access.allows(row.org_id, row.workspace_id, row.entity_id):
        raise _scope_error("timeseries")
    start = parse_time(start_text, "timerangestart")
    end = parse_time(end_text, "timerangeend")
    if to_us(end) <= to_us(start):
        raise BadRequest("timerangeend must be after timerangestart (the range is half-open)")
    names = _names(list(fields), "fields") if fields else None
    agg = Aggregation[aggregation].value
    return reads.entity_data(s, access, row.entity_id, start, end, names, resolution, agg)


def _selected(selections: Sequence[Any]) -> list[SelectedField]:
    """The fields of a selection set, fragments flattened."""
    out: list[SelectedField] = []
    for sel in selections:
        if isinstance(sel, SelectedField):
            out.append(sel)
        else:
            out.extend(_selected(sel.selections))
    return out


def _device_selections(info: Info[Context, None]) -> list[SelectedField]:
    """What is selected on each device of a listing (``edges { node }``, ``nodes``, or a plain list)."""
    out: list[SelectedField] = []
    for top in info.selected_fields:
        for f in _selected(top.selections):
            if f.name == "edges":
                for g in _selected(f.selections):
                    if g.name == "node":
                        out += _selected(g.selections)
            elif f.name == "nodes":
                out += _selected(f.selections)
            elif f.name not in ("pageInfo", "totalCount"):
                out.append(f)
    return out


def _measurement(row: Any, name: str, a: dict[str, Any]) -> Measurement:
    return Measurement(
        id=strawberry.ID(f"{row.entity_id}.{name}"),
        field=Field(
            id=strawberry.ID(f"{row.entity_id}.{name}"),
            fieldName=name,
            verboseFieldName=name,
            unit=a["unit"],
            kind="NUMERIC" if isinstance(a["value"], int | float) or a["value"] is None else "STATE",
        ),
        value=a["value"],
        time=a["observedAt"],
        unit=a["unit"],
    )


@strawberry.type
class DeviceEdge:
    cursor: str
    node: Device


@strawberry.type(description="A page of devices (Relay connection; `first` 1-1000, default 100)")
class DeviceConnection:
    edges: list[DeviceEdge]
    pageInfo: PageInfo
    selection: strawberry.Private[tuple[Access, DeviceSelection]]

    @strawberry.field
    def nodes(self) -> list[Device]:
        return [e.node for e in self.edges]

    @strawberry.field(description="How many devices match (all pages)")
    async def totalCount(self, info: Info[Context, None]) -> int:
        access, sel = self.selection
        return await _ctx(info).run(lambda s: repository.count_devices(s, visible_entities(access), sel))


@strawberry.type
class Workspace:
    ref: strawberry.Private[WorkspaceRef]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.ref.id)

    @strawberry.field
    def slug(self) -> str:
        return self.ref.slug

    @strawberry.field
    def name(self) -> str:
        return self.ref.name

    @strawberry.field
    def organisation(self, info: Info[Context, None]) -> Organisation:
        o = _ctx(info).viewer.orgs[self.ref.org_id]
        return Organisation(id=strawberry.ID(o.id), slug=o.slug, name=o.name)

    @strawberry.field(description="The workspace's devices (scope entities)")
    async def devices(
        self,
        info: Info[Context, None],
        type: list[str] | None = None,
        search: str | None = None,
        filters: list[MeasurementFilter] | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> DeviceConnection:
        sel = _selection(_ctx(info).viewer, None, type, search, None, filters, workspace=self.ref)
        return await _connection(info, sel, first, after)


def _workspace(info: Info[Context, None], ref: WorkspaceRef) -> Workspace:
    return Workspace(ref=ref)


@strawberry.type(description="Who the credential belongs to (Datacake's `user`)")
class User:
    id: strawberry.ID
    kind: str = strawberry.field(description="pat, key (organisation API key) or session")
    name: str
    scopes: list[str]

    @strawberry.field(description="The organisations this credential reaches")
    def organisations(self, info: Info[Context, None]) -> list[Organisation]:
        return [
            Organisation(id=strawberry.ID(o.id), slug=o.slug, name=o.name)
            for o in _ctx(info).viewer.orgs.values()
        ]

    @strawberry.field(description="The workspaces it may read (as allWorkspaces)")
    async def workspaces(self, info: Info[Context, None]) -> list[Workspace]:
        return await _readable_workspaces(info)


# --- helpers ------------------------------------------------------------------------------------------


def _names(values: Sequence[str], what: str) -> list[str]:
    if len(values) > MAX_LIST:
        raise BadRequest(f"{what} may list at most {MAX_LIST} values (got {len(values)})")
    return [check_attribute_name(v, what) for v in dict.fromkeys(values)]


def _find_workspace(viewer: Viewer, ref: str) -> WorkspaceRef:
    """A workspace by id, slug or ``<org>/<workspace>`` among those the credential reaches (an unknown one
    and another organisation's read the same)."""
    org_ref, _, ws_ref = ref.rpartition("/")
    hits = [
        w
        for w in viewer.workspaces.values()
        if (w.id == ref and not org_ref)
        or (
            w.slug == ws_ref
            and (
                not org_ref
                or org_ref in (w.org_id, viewer.orgs[w.org_id].slug if w.org_id in viewer.orgs else "")
            )
        )
    ]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        names = sorted(f"{viewer.orgs[w.org_id].slug}/{w.slug}" for w in hits if w.org_id in viewer.orgs)
        raise BadRequest(f"workspace '{ref[:100]}' is ambiguous: use one of {', '.join(names)}")
    raise NotFound(f"workspace '{ref[:100]}' not found")


def _selection(
    viewer: Viewer,
    in_workspace: str | None,
    types: list[str] | None,
    search: str | None,
    ids: list[str] | None,
    filters: list[MeasurementFilter] | None,
    *,
    workspace: WorkspaceRef | None = None,
) -> tuple[Access, DeviceSelection]:
    access = viewer.access("entities")
    ws = workspace or (None if in_workspace is None else _find_workspace(viewer, in_workspace))
    if types is not None and len(types) > MAX_LIST:
        raise BadRequest(f"type may list at most {MAX_LIST} values")
    if ids is not None and len(ids) > AGGREGATE_DEVICES:
        raise BadRequest(f"deviceIds may list at most {AGGREGATE_DEVICES} values")
    if search is not None and len(search) > MAX_SEARCH:
        raise BadRequest(f"search is longer than {MAX_SEARCH} characters")
    values: tuple[ValueFilter, ...] = ()
    if filters:
        if len(filters) > MAX_FILTERS:
            raise BadRequest(f"at most {MAX_FILTERS} filters (got {len(filters)})")
        tel = viewer.access("telemetry")
        if any(r.time_start is not None or r.time_end is not None for r in tel.rules):
            raise BadRequest(
                "filters on current values are not available to a credential limited to time windows "
                "(its latest readable value may not be the stored latest one); read currentMeasurements instead"
            )
        values = tuple(
            ValueFilter(check_attribute_name(f.field, "filters.field"), f.op.value, f.value) for f in filters
        )
        # Filtering by a value is reading it: only devices whose telemetry the credential may read.
        access = Access(tuple(r for r in access.rules if r in tel.rules))
    return access, DeviceSelection(
        workspace_ids=None if ws is None else frozenset({ws.id}),
        types=tuple(check_type(t) for t in dict.fromkeys(types or ())),
        ids=tuple(dict.fromkeys(ids or ())),
        search=search or None,
        values=values,
    )


def _after(after: str | None) -> int | None:
    if after is None:
        return None
    try:
        (pk,) = decode_cursor(after, int)
    except BadRequest:
        raise BadRequest(BAD_CURSOR) from None
    return int(pk)


def _device(c: Context, row: Any) -> Device:
    c.rows[row.pk] = row
    return Device(row=row)


async def _connection(
    info: Info[Context, None], selection: tuple[Access, DeviceSelection], first: int | None, after: str | None
) -> DeviceConnection:
    c = _ctx(info)
    limit = FIRST.resolve(first)
    after_pk = _after(after)
    access, sel = selection
    wanted = {f.name for f in _device_selections(info)}
    need_current = bool(wanted & CURRENT_FIELDS) and "telemetry" in c.viewer.scopes
    need_series = "measurementFields" in wanted
    tel = c.viewer.access("telemetry") if need_current else None

    def work(s: Session) -> tuple[list[Any], dict[int, list[Any]], dict[int, dict[str, Any]]]:
        # The page and, when they are selected, its devices' series and latest values: one hop.
        found = repository.select_devices(s, visible_entities(access), sel, after_pk, limit + 1)
        page = found[:limit]
        series = repository.series_of_entities(s, [r.pk for r in page]) if need_series or tel else {}
        latest: dict[int, dict[str, Any]] = {}
        if tel is not None:
            store = store_for(s)
            readable = [r for r in page if tel.allows(r.org_id, r.workspace_id, r.entity_id)]
            values = telemetry.latest_attributes_of(readable, series, store, tel)
            latest = {r.pk: v for r, v in zip(readable, values, strict=True)}
        return found, series, latest

    rows, series, latest = await c.run(work)
    c.series.prime_many(series)
    c.current.prime_many(latest)
    c.latest.update(latest)
    more = len(rows) > limit
    rows = rows[:limit]

    edges = [DeviceEdge(cursor=encode_cursor(r.pk), node=_device(c, r)) for r in rows]
    return DeviceConnection(
        edges=edges,
        pageInfo=PageInfo(
            hasNextPage=more,
            hasPreviousPage=after is not None,
            startCursor=edges[0].cursor if edges else None,
            endCursor=edges[-1].cursor if edges else None,
        ),
        selection=selection,
    )


async def _readable_workspaces(info: Info[Context, None]) -> list[Workspace]:
    c = _ctx(info)
    access = c.viewer.access("entities")
    refs = [w for w in c.viewer.workspaces.values() if access.covers_workspace(w.org_id, w.id)]
    entity_rules = access.entity_rules()
    if not entity_rules.is_empty:
        extra = await c.run(
            lambda s: repository.workspaces_with_visible_entities(s, visible_entities(entity_rules))
        )
        have = {w.id for w in refs}
        refs += [w for w in c.viewer.workspaces.values() if w.id in extra and w.id not in have]
    return [_workspace(info, w) for w in sorted(refs, key=lambda w: (w.org_id, w.slug))]


def _stats(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    return min(values), max(values), float(sum(values))


def _aggregate(
    s: Session,
    entities: Access,
    data: Access,
    sel: DeviceSelection,
    field: str,
    at: datetime | None,
    start: datetime | None,
    end: datetime | None,
) -> FieldAggregate:
    rows = repository.select_devices(s, visible_entities(entities), sel, None, AGGREGATE_DEVICES + 1)
    if len(rows) > AGGREGATE_DEVICES:
        raise BadRequest(
            f"the aggregate would cover more than {AGGREGATE_DEVICES} devices; narrow it with inWorkspace, "
            "type, search or deviceIds"
        )
    series = repository.series_of_entities(s, [r.pk for r in rows])
    store = store_for(s)
    pairs = [
        (r, x)
        for r in rows
        if data.allows(r.org_id, r.workspace_id, r.entity_id)
        for x in series[r.pk]
        if x.attribute == field
    ]
    units = {x.unit for _, x in pairs if x.unit is not None}
    unit = units.pop() if len(units) == 1 else None
    if start is None or end is None:
        values: list[float] = []
        for r, x in pairs:
            # "At a time": the latest point at or before it (windows are half-open, so up to at + 1 µs).
            windows = readable_windows_us(
                data, r, None, None if at is None else at + timedelta(microseconds=1)
            )
            p = telemetry.latest_point(store, x.id, x.last_ts, x.last_value, windows)
            if p.value is not None:
                values.append(float(p.value))
        lo, hi, total = _stats(values)
        return FieldAggregate(
            field=field,
            unit=unit,
            devices=len(values),
            count=len(values),
            min=lo,
            max=hi,
            avg=None if total is None else total / len(values),
            sum=total,
            at=iso(to_us(at)) if at is not None else None,
            timerangestart=None,
            timerangeend=None,
        )
    start_us, end_us = reads.check_range(start, end)
    requests = [(x.id, readable_windows_us(data, r, start, end), "min") for r, x in pairs]
    # One bucket wide enough for the range (at most two, epoch-aligned), from the rollups; or the raw
    # points when there is at most one per series: the same read as time series v2 at resolution 1.
    first = read_series(store, requests, start_us, end_us, 1)
    if first.bucket_us is None:
        per = [d.values[~np.isnan(d.values)] for d in first.series]
        mins = [float(v.min()) for v in per if len(v)]
        maxs = [float(v.max()) for v in per if len(v)]
        sums = [float(v.sum()) for v in per if len(v)]
        counts = [len(v) for v in per if len(v)]
    else:

        def agg(name: str) -> list[np.ndarray]:
            res = read_series(store, [(sid, w, name) for sid, w, _ in requests], start_us, end_us, 1)
            return [d.values[~np.isnan(d.values)] for d in res.series]

        mn = [d.values[~np.isnan(d.values)] for d in first.series]
        mins = [float(v.min()) for v in mn if len(v)]
        maxs = [float(v.max()) for v in agg("max") if len(v)]
        sums = [float(v.sum()) for v in agg("sum") if len(v)]
        counts = [int(v.sum()) for v in agg("count") if len(v)]
    n = int(sum(counts))
    total_sum = float(sum(sums)) if sums else None
    return FieldAggregate(
        field=field,
        unit=unit,
        devices=len(counts),
        count=n,
        min=min(mins) if mins else None,
        max=max(maxs) if maxs else None,
        avg=None if total_sum is None or n == 0 else total_sum / n,
        sum=total_sum,
        at=None,
        timerangestart=iso(start_us),
        timerangeend=iso(end_us),
    )


def _user(info: Info[Context, None]) -> User:
    v = _ctx(info).viewer
    return User(id=strawberry.ID(v.user_id or v.key), kind=v.kind, name=v.name, scopes=sorted(v.scopes))


# --- root types -----------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(description="The credential's holder (Datacake: `user { id }` checks authentication)")
    def user(self, info: Info[Context, None]) -> User:
        return _user(info)

    @strawberry.field(description="The same as user")
    def me(self, info: Info[Context, None]) -> User:
        return _user(info)

    @strawberry.field(description="The workspaces the credential may read (scope entities)")
    async def allWorkspaces(self, info: Info[Context, None]) -> list[Workspace]:
        return await _readable_workspaces(info)

    @strawberry.field(description="A workspace by id, slug or <org>/<workspace> (scope entities)")
    async def workspace(self, info: Info[Context, None], id: str) -> Workspace | None:
        v = _ctx(info).viewer
        ws = _find_workspace(v, id)
        if ws.id not in {w.ref.id for w in await _readable_workspaces(info)}:
            raise NotFound(f"workspace '{id[:100]}' not found")
        return _workspace(info, ws)

    @strawberry.field(description="A device by id (scope entities)")
    async def device(self, info: Info[Context, None], deviceId: str) -> Device | None:
        c = _ctx(info)
        access = c.viewer.access("entities")
        viewer = c.viewer
        histories = [f for f in _selected(info.selected_fields[0].selections) if f.name == "history"]

        def work(s: Session) -> tuple[Any, dict[Any, reads.Frame]]:
            e = visible_entity(s, access, deviceId)
            # A history selected on the device is read in the same hop (its errors are left to the field).
            frames: dict[Any, reads.Frame] = {}
            for f in histories[:2]:
                a = f.arguments
                key = _history_key(
                    a.get("timerangestart"),
                    a.get("timerangeend"),
                    a.get("fields"),
                    a.get("resolution"),
                    a.get("aggregation", "AVG"),
                )
                with contextlib.suppress(SensorhubError, GraphQLError, KeyError):
                    frames[key] = _history_frame(s, viewer, e, key)
            return e, frames

        try:
            e, frames = await c.run(work)
        except NotFound:
            # Not echoing the id: the error's path says which field; the answer is the same for a device
            # that does not exist and one of another organisation.
            raise NotFound(
                "device not found (no device with this deviceId is visible to this credential)"
            ) from None
        d = _device(c, e)
        d.prefetched.update(frames)
        return d

    @strawberry.field(
        description="Devices as a plain list (Datacake's allDevices), at most `first` (1-1000, default 100)"
    )
    async def allDevices(
        self,
        info: Info[Context, None],
        inWorkspace: str | None = None,
        searchName: str | None = None,
        type: list[str] | None = None,
        first: int | None = None,
    ) -> list[Device]:
        sel = _selection(_ctx(info).viewer, inWorkspace, type, searchName, None, None)
        return [e.node for e in (await _connection(info, sel, first, None)).edges]

    @strawberry.field(
        description="A page of devices (scope entities; filters on current values need telemetry)"
    )
    async def devices(
        self,
        info: Info[Context, None],
        inWorkspace: str | None = None,
        type: list[str] | None = None,
        search: str | None = None,
        deviceIds: list[str] | None = None,
        filters: list[MeasurementFilter] | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> DeviceConnection:
        sel = _selection(_ctx(info).viewer, inWorkspace, type, search, deviceIds, filters)
        return await _connection(info, sel, first, after)

    @strawberry.field(
        description="Devices whose current values pass every filter (Datacake's devicesFiltered)"
    )
    async def devicesFiltered(
        self,
        info: Info[Context, None],
        filters: list[MeasurementFilter],
        inWorkspace: str | None = None,
        type: list[str] | None = None,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> DeviceConnection:
        if not filters:
            raise BadRequest("filters must list at least one {field, op, value}")
        sel = _selection(_ctx(info).viewer, inWorkspace, type, search, None, filters)
        return await _connection(info, sel, first, after)

    @strawberry.field(
        description="min/max/avg/sum/count of `field` over a set of devices (at most 1000): at the current "
        "values (scope telemetry), at a time `at`, or over [timerangestart, timerangeend) (scope timeseries)"
    )
    async def aggregate(
        self,
        info: Info[Context, None],
        field: str,
        inWorkspace: str | None = None,
        type: list[str] | None = None,
        search: str | None = None,
        deviceIds: list[str] | None = None,
        at: str | None = None,
        timerangestart: str | None = None,
        timerangeend: str | None = None,
    ) -> FieldAggregate:
        c = _ctx(info)
        name = check_attribute_name(field, "field")
        ranged = timerangestart is not None or timerangeend is not None
        if ranged and (timerangestart is None or timerangeend is None):
            raise BadRequest("give both timerangestart and timerangeend (or neither)")
        if ranged and at is not None:
            raise BadRequest("give either at or timerangestart/timerangeend, not both")
        start = None if timerangestart is None else parse_time(timerangestart, "timerangestart")
        end = None if timerangeend is None else parse_time(timerangeend, "timerangeend")
        if start is not None and end is not None and to_us(end) <= to_us(start):
            raise BadRequest("timerangeend must be after timerangestart (the range is half-open)")
        when = None if at is None else parse_time(at, "at")
        entities, sel = _selection(c.viewer, inWorkspace, type, search, deviceIds, None)
        data = c.viewer.access("timeseries" if ranged or when is not None else "telemetry")
        return await c.run(lambda s: _aggregate(s, entities, data, sel, name, when, start, end))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Record measurements of one device (scope ingest): the backfill's validation, all or "
        "nothing, idempotent on (field, timestamp). Errors name `record <i>` = measurements[i]."
    )
    async def recordMeasurements(
        self, info: Info[Context, None], deviceId: str, measurements: list[MeasurementInput]
    ) -> RecordResult:
        c = _ctx(info)
        access = c.viewer.access("ingest")
        if not measurements:
            raise BadRequest("measurements must list at least one {field, value}")
        records: list[dict[str, Any]] = []
        for m in measurements:
            value: Any = m.value if m.unit is None else {"value": m.value, "unit": m.unit}
            rec: dict[str, Any] = {"data": {m.field: value}}
            if m.timestamp is not None:
                rec["timestamp"] = m.timestamp
            records.append(rec)
        raw = orjson.dumps(records)
        limits = ingest.Limits.from_settings(c.settings)
        now = utcnow()
        # A credential may create an unknown device where a workspace auto-provisions (a web session is
        # no credential: it writes only to devices that exist).
        v = c.viewer
        writer = None if v.is_session else provisioning.Writer(v.key, v.user_id, "graphql")
        result = await ingest.write_off_loop(
            c.db,
            lambda: ingest.prepare(raw, now, limits),
            lambda s, prepared: ingest.check_target(s, access, deviceId, prepared, limits, writer),
            lambda s, prepared: ingest.store(s, access, deviceId, prepared, limits, writer=writer),
        )
        return RecordResult(accepted=result["accepted"], duplicates=result["duplicates"])


@strawberry.type(description="A measurement as it is recorded")
class LiveMeasurement:
    id: strawberry.ID = strawberry.field(description="<event id>.<index> (event ids ascend)")
    deviceId: str
    field: str
    value: JSON | None
    time: str
    unit: str | None


MAX_LIVE_DEVICES = 100


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Live measurements, as they are stored, of devices the credential may read (scope "
        "telemetry; all of them when deviceIds is absent), optionally only some fields. Access is "
        "checked again for every value with the credential's current rights: a revoked token's "
        "subscription ends with an error."
    )
    async def measurements(
        self, info: Info[Context, None], deviceIds: list[str] | None = None, fields: list[str] | None = None
    ) -> AsyncGenerator[LiveMeasurement, None]:
        c = _ctx(info)
        try:
            feed = await _open_feed(c, deviceIds or [], _names(fields, "fields") if fields else [])
        except SensorhubError as e:
            # Subscription results do not pass through the HTTP view's formatting: code them here.
            ext: dict[str, Any] = {"code": code_for(e)}
            message = e.message
            if isinstance(e, InsufficientScope):
                ext["scope"] = e.scope
                message = f"this field needs the '{e.scope}' scope, which this credential does not have"
            raise GraphQLError(message, extensions=ext) from None
        try:
            async for item in feed:
                if not isinstance(item, LiveEvent):
                    continue  # heartbeats (access was re-checked) and gaps (no replay here)
                for i, (ts, value) in enumerate(item.points):
                    yield LiveMeasurement(
                        id=strawberry.ID(f"{item.id}.{i}"),
                        deviceId=item.entity_id,
                        field=item.attribute,
                        value=value,
                        time=iso(ts),
                        unit=item.unit,
                    )
        except FeedClosed as e:
            raise GraphQLError(
                f"the subscription ended: {e.reason}", extensions={"code": "FORBIDDEN"}
            ) from None
        except GraphQLError:
            raise
        except Exception as e:  # the WebSocket transport does not format errors: never an uncoded one
            log.error("GraphQL subscription failed", exc_info=e)
            raise GraphQLError(
                "Internal server error; the server logged the details",
                extensions={"code": "INTERNAL_SERVER_ERROR"},
            ) from None
        finally:
            feed.close()


async def _open_feed(c: Context, refs: list[str], fields: list[str]) -> LiveFeed:
    """The live feed of the push package (:mod:`sensorhub.push.live`), with the viewer's current rights."""
    if c.app is None or (c.principal is None and c.session_user is None):
        raise Unauthorized("Authentication required: send the token in connection_init")
    if len(refs) > MAX_LIVE_DEVICES:
        raise BadRequest(f"deviceIds may list at most {MAX_LIVE_DEVICES} devices")
    app = c.app
    access = c.viewer.access("telemetry")
    # Devices' fields are the default topic's series here (docs/ingest.md#topics): so are live values.
    selection = await to_thread.run_sync(resolve_selection, app.db, access, refs, fields, [DEFAULT_TOPIC])
    live_viewer: LiveViewer
    if c.principal is not None:
        live_viewer = TokenViewer(app.db, app.settings, app.cache, c.principal, "telemetry", c.client_ip)
    else:
        user_id = c.session_user
        assert user_id is not None
        live_viewer = SessionViewer(app.db, app.cache, user_id, _session_access(user_id), recheck=30.0)
    app.live.check_capacity(live_viewer.key)
    feed = LiveFeed(app.live, live_viewer, selection)
    await feed.open()
    return feed


def _session_access(user_id: str) -> Callable[[Session], Access]:
    def load(s: Session) -> Access:
        user = s.get(UserModel, user_id)
        return Access(()) if user is None else session_access(s, user)

    return load
