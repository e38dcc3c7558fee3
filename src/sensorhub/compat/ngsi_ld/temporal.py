"""HTTP: the NGSI-LD temporal API (``/ngsi-ld/v1/temporal/…``) over the time-series store and its rollups.

``GET /temporal/entities``, ``GET /temporal/entities/{id}`` and ``POST /temporalEntityOperations/query``
answer the temporal evolution of entities' attributes — numeric ones from their series, the others from
the attribute history (:mod:`sensorhub.entities.history`) — in the three NGSI-LD
representations: normalized (arrays of instances with ``observedAt``), ``temporalValues`` (simplified:
``values: [[value, observedAt], …]``) and ``aggregatedValues`` (``<method>: [[value, start, end], …]``).

A token needs the ``timeseries`` scope (the guard) and the ``entities`` scope (the entity part): entities
are selected through the ``entities`` access, their instances read inside the windows the ``timeseries``
access allows for each of them (:func:`sensorhub.authz.scope.readable_windows_us`), so every instant is
clamped to the token's time windows. See docs/ngsi-ld-temporal.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sensorhub.api.deps import ctx, get_read_db
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.authz.access import Access
from sensorhub.authz.scope import Tenanted, readable_windows_us, visible_entities
from sensorhub.compat.ngsi_ld import render, schemas
from sensorhub.compat.ngsi_ld.contexts import JSONLD_REL, RequestContext
from sensorhub.compat.ngsi_ld.geo import geo_params, refuse_unknown_members
from sensorhub.compat.ngsi_ld.render import Projection, project, types_of
from sensorhub.compat.ngsi_ld.routes import request_context
from sensorhub.entities import history as H
from sensorhub.entities import service as entities
from sensorhub.entities.geo import GeoQuery
from sensorhub.entities.normalize import VALUE_MEMBER, check_entity_id, is_dataset_id, one_or_many
from sensorhub.entities.windows import is_bounded
from sensorhub.errors import (
    BadRequest,
    InsufficientScope,
    InvalidRequest,
    NotFound,
    TooManyResults,
)
from sensorhub.kit.paging import LimitPolicy
from sensorhub.kit.time import from_us, iso, iso_array, parse_time, to_us
from sensorhub.kit.urls import next_link
from sensorhub.timeseries import temporal as T
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import DEFAULT_TOPIC
from sensorhub.timeseries.query import WindowUS
from sensorhub.timeseries.repository import SeriesInfo, series_of_entity_topics, series_of_listed
from sensorhub.timeseries.rollups import I64
from sensorhub.timeseries.store import TimeseriesStore

router = APIRouter()
NGSI = "/ngsi-ld/v1"
TIMESERIES = RequireScope("timeseries")
TAGS: list[str | Enum] = ["NGSI-LD temporal"]
LIMITS = LimitPolicy(default=entities.DEFAULT_LIMIT, maximum=entities.MAX_LIMIT, minimum=1, clamp=True)
MAX_INSTANCES = 1000  # instances per attribute in one answer; more → 206 + Content-Range
MAX_LAST_N = 100_000
# Pages of entities read to fill one answer when entities without instances in the time range drop out.
MAX_FILL_ROUNDS = 10
TIMERELS = ("before", "after", "between")
_DOC = (
    "Temporal evolution of the entities' attributes (numbers, and the history of non-numeric ones). Needs the `timeseries` and `entities` "
    "scopes; every instant is clamped to the token's time windows. `timerel=before|after|between` with "
    "`timeAt`/`endTimeAt` (before: `< timeAt`; after: `> timeAt`; between: `timeAt <= t < endTimeAt`), "
    "`lastN`, `attrs`, `options=temporalValues|aggregatedValues` with `aggrMethods` and "
    f"`aggrPeriodDuration` (ISO 8601, periods start at `timeAt`). At most {MAX_INSTANCES} instances per "
    "attribute: beyond that the answer is `206` with `Content-Range: date-time <start>-<end>/<lastN or *>` "
    "(continue with `timeAt=<end>`, `timerel=after`). Entities are paged like `/entities` (`limit` up to 500, more is 403 TooManyResults, "
    '`Link: rel="next"`).'
)


# --- parameters -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeRange:
    """The instants a temporal query reads: ``[lo, hi)`` (None = open) and the first period's start."""

    lo: int | None = None
    hi: int | None = None
    origin: int | None = None  # timeAt: where periods start and Content-Range begins
    deleted: bool = False  # timeproperty=deletedAt: the deletion instances, by deletedAt
    created: bool = False  # timeproperty=createdAt: the instances by when they were written


@dataclass(frozen=True, slots=True)
class Representation:
    kind: str  # normalized | temporalValues | aggregatedValues
    methods: tuple[str, ...] = ()
    period: T.Period | None = None
    last_n: int | None = None


def parse_range(
    timerel: str | None, time_at: str | None, end_time_at: str | None, timeproperty: str | None
) -> TimeRange:
    prop = _check_timeproperty(timeproperty)
    rng = _parse_range(timerel, time_at, end_time_at)
    return replace(rng, deleted=prop == "deletedAt", created=prop == "createdAt")


def _parse_range(timerel: str | None, time_at: str | None, end_time_at: str | None) -> TimeRange:
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise BadRequest("timeAt and endTimeAt need timerel (before, after or between)")
        return TimeRange()
    if timerel not in TIMERELS:
        raise BadRequest(f"timerel '{timerel[:40]}' is unknown; use before, after or between")
    if time_at is None:
        raise BadRequest(f"timerel={timerel} needs timeAt (an ISO 8601 date-time)")
    at = to_us(parse_time(time_at, "timeAt"))
    if timerel == "between":
        if end_time_at is None:
            raise BadRequest("timerel=between needs endTimeAt (an ISO 8601 date-time)")
        end = to_us(parse_time(end_time_at, "endTimeAt"))
        if end <= at:
            raise BadRequest(
                "endTimeAt must be after timeAt (between reads timeAt <= observedAt < endTimeAt)"
            )
        return TimeRange(at, end, at)
    if end_time_at is not None:
        raise BadRequest(f"endTimeAt is only meaningful with timerel=between (not {timerel})")
    if timerel == "before":
        return TimeRange(None, at, None)
    return TimeRange(at + 1, None, at)  # after: strictly after timeAt


def _check_timeproperty(timeproperty: str | None) -> str:
    """``timeproperty``: ``observedAt`` (the default), ``createdAt`` (non-numeric attributes' instances
    by when they were written) or ``deletedAt`` (the deletion instances)."""
    if timeproperty not in (None, "observedAt", "createdAt", "deletedAt"):
        raise BadRequest(
            f"timeproperty '{str(timeproperty)[:40]}' is not supported: sensorhub keeps the instances of "
            "attributes by observedAt, those of non-numeric attributes by createdAt too, and their "
            "deletions by deletedAt (no modifiedAt per instance: an instance is never changed, a later "
            "write at the same observedAt is a new instance)"
        )
    return timeproperty or "observedAt"


def _refuse_created(rng: TimeRange, access: Access, chosen: Sequence[SeriesInfo]) -> None:
    """``timeproperty=createdAt`` reads what is kept: not numeric attributes' points (the time-series
    store keeps each point's observedAt and value, not when it was written), nor for a credential
    limited to time windows (its windows are on observedAt)."""
    if not rng.created:
        return
    if chosen:
        x = chosen[0]
        raise BadRequest(
            f"timeproperty=createdAt: the instances of numeric attributes are kept by observedAt only "
            f"('{x.attribute[:100]}' of '{x.entity_id[:200]}': the time-series store does not keep when each "
            "point was written); name the non-numeric attributes with attrs, or use timeproperty=observedAt"
        )
    if is_bounded(access):
        raise BadRequest(
            "timeproperty=createdAt is not offered to a credential limited to time windows (they bound "
            "observedAt); use timeproperty=observedAt"
        )


# options/format values → representation (simplified and keyValues are the simplified temporal one).
_KIND = {
    "normalized": "normalized",
    "temporalValues": "temporalValues",
    "simplified": "temporalValues",
    "keyValues": "temporalValues",
    "aggregatedValues": "aggregatedValues",
}
# Options of the entity API that the temporal API does not offer (a value of the standard, not a typo).
_NOT_OFFERED = {
    "sysAttrs": "instances carry observedAt only (no createdAt/modifiedAt per instance)",
    "concise": "the temporal representations are normalized, temporalValues and aggregatedValues",
}


def _kinds(options: str | None, fmt: str | None) -> tuple[set[str], str]:
    """The representations ``options`` names, and the one answered (``format`` takes precedence over
    ``options``, CIM 009 V1.8.1 6.3.12)."""
    opts = [o.strip() for o in (options or "").split(",") if o.strip()]
    for o in opts:
        if o in _NOT_OFFERED:
            raise BadRequest(f"option {o!r} is not offered on the temporal API: {_NOT_OFFERED[o]}")
    unknown = [o for o in opts if o not in _KIND]
    if unknown:
        raise InvalidRequest(
            f"unknown option {unknown[0][:40]!r} on the temporal API; use temporalValues or aggregatedValues"
        )
    if fmt is not None and fmt not in _KIND:
        raise InvalidRequest("format must be normalized, temporalValues, simplified or aggregatedValues")
    kinds = {_KIND[o] for o in opts}
    if fmt is not None:
        return kinds, _KIND[fmt]
    if len(kinds) > 1:
        raise BadRequest("options: choose one of normalized, temporalValues and aggregatedValues")
    return kinds, next(iter(kinds)) if kinds else "normalized"


def parse_representation(
    options: str | None,
    fmt: str | None,
    last_n: str | None,
    aggr_methods: str | None,
    aggr_period: str | None,
) -> Representation:
    kinds, kind = _kinds(options, fmt)
    n = _last_n(last_n)
    if kind != "aggregatedValues":
        if aggr_methods is not None or aggr_period is not None:
            if "aggregatedValues" not in kinds:
                raise BadRequest("aggrMethods and aggrPeriodDuration need options=aggregatedValues")
            # options=aggregatedValues overridden by format: still checked, not applied.
            T.check_methods(aggr_methods)
            T.parse_period(aggr_period)
        return Representation(kind, last_n=n)
    if n is not None:
        raise BadRequest("lastN cannot be combined with aggregatedValues")
    return Representation(kind, T.check_methods(aggr_methods), T.parse_period(aggr_period))


@dataclass(frozen=True, slots=True)
class Members:
    """Which attributes are read (``attrs``: stored names; ``None`` = all) and which members of each
    entity are shown (``pick``/``omit``: names as the request writes them, ``id`` and ``type`` included)."""

    attrs: frozenset[str] | None = None
    pick: Projection | None = None
    omit: Projection | None = None
    datasets: frozenset[str | None] | None = None  # ``datasetId``: instances shown (None: the default)

    def reads(self, stored: str) -> bool:
        """Whether the attribute is read: ``attrs`` selects (the entities, too, with a time range);
        ``pick``/``omit`` only shape what is shown."""
        return self.attrs is None or stored in self.attrs

    def shows(self, r: _Read) -> bool:
        """Whether the instances of ``r`` are shown (``datasetId``)."""
        return self.datasets is None or r.dataset in self.datasets


def parse_members(params: schemas.QueryParams, rc: RequestContext) -> Members:
    attrs, pick, omit = params.members(rc)
    for what, proj in (("pick", pick), ("omit", omit)):
        if proj is not None and any(v is not None for v in proj.values()):
            raise BadRequest(
                f"{what}: the temporal API has no linked entities (no join), so name{{…}} is not allowed"
            )
    return Members(attrs, pick, omit, schemas.parse_dataset_ids(params.datasetId))


def dataset_of(topic: str) -> tuple[bool, str | None]:
    """Multi-attributes in the time-series store: the instances of datasetId ``d`` are the series on
    topic ``d`` (an ingest record's ``topic``), the default instance the series on the default topic.
    ``(shown, datasetId)``: a topic that is not a URI (``env``, a line-protocol tag set) is not a
    datasetId, and is not part of the NGSI-LD temporal answer (docs/ngsi-ld-temporal.md)."""
    if topic == DEFAULT_TOPIC:
        return True, None
    return (True, topic) if is_dataset_id(topic) else (False, None)


def _last_n(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        raise BadRequest(f"lastN must be a whole number from 1 to {MAX_LAST_N} (got '{text[:30]}')") from None
    if not 1 <= n <= MAX_LAST_N:
        raise BadRequest(f"lastN must be from 1 to {MAX_LAST_N} (got {text[:30]})")
    return n


# --- reading ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Read:
    """What one attribute's read produced, before the page is cut to one time range: of a series
    (numbers) or of the attribute history (``history``: the stored instances of a non-numeric one)."""

    attribute: str
    instance_base: str  # instanceId prefix
    unit: str | None = None
    history: bool = False
    deleted: bool = False  # deletion instances (timeproperty=deletedAt)
    created: bool = False  # instances by createdAt (inst.ids: their observedAt, the instanceId key)
    atype: str = "Property"  # a history attribute's type as the entity stores it now
    inst: T.Instances | None = None
    agg: T.Aggregated | None = None
    emptied: bool = False  # every instance fell beyond the page's time range: shown as an empty list
    dataset: str | None = None  # the instances' datasetId (a series on that topic); None: the default


def _windows(access: Access, e: Tenanted, rng: TimeRange) -> list[tuple[int, int]]:
    return readable_windows_us(
        access, e, None if rng.lo is None else from_us(rng.lo), None if rng.hi is None else from_us(rng.hi)
    )


@dataclass(frozen=True, slots=True)
class _Source:
    """Where one attribute's instances are read, bound to it: a series (numbers: timeseries.temporal) or
    the attribute history (entities.history). Both answer the same reads over the same windows."""

    first_time: Callable[[list[WindowUS]], int | None]
    last_time: Callable[[list[WindowUS]], int | None]
    aggregate: Callable[[list[WindowUS], I64, Sequence[str]], T.Aggregated]
    first_instances: Callable[[list[WindowUS], int], T.Instances]
    last_instances: Callable[[list[WindowUS], int, int], T.Instances]


def _read_one(
    store: TimeseriesStore, x: SeriesInfo, windows: list[WindowUS], rng: TimeRange, rep: Representation
) -> _Read:
    out = _Read(x.attribute, f"urn:ngsi-ld:instance:{x.id}:", x.unit, dataset=dataset_of(x.topic)[1])
    series = _Source(
        partial(T.first_point, store, x.id),
        partial(T.last_point, store, x.id),
        partial(T.aggregate, store, x.id),
        partial(T.first_instances, store, x.id),
        partial(T.last_instances, store, x.id),
    )
    return _read(out, series, windows, rng, rep, rep.methods)


def _read_history(
    db: Session,
    key: H.HistoryKey,
    atype: str,
    windows: list[WindowUS],
    rng: TimeRange,
    rep: Representation,
) -> _Read:
    """:func:`_read_one` for an attribute of the attribute history: the same windows, page size and
    ``lastN``; aggregated with the methods that apply to any value."""
    kind = "d" if key.deleted else "a"
    out = _Read(
        key.attribute,
        f"urn:ngsi-ld:instance:{kind}{key.entity_pk}:{key.attribute}:",
        history=True,
        deleted=key.deleted,
        created=key.created,
        atype=atype,
    )
    history = _Source(
        partial(H.first_time, db, key),
        partial(H.last_time, db, key),
        partial(H.aggregate, db, key),
        partial(H.first_instances, db, key),
        partial(H.last_instances, db, key),
    )
    return _read(out, history, windows, rng, rep, [m for m in rep.methods if m in H.ANY_VALUE_METHODS])


def _read(
    out: _Read,
    src: _Source,
    windows: list[WindowUS],
    rng: TimeRange,
    rep: Representation,
    methods: Sequence[str],
) -> _Read:
    """One attribute's instances from ``src`` inside the windows, into ``out``: aggregated per period
    with ``methods`` (those of the request that apply to it), else the newest ``lastN`` or the oldest,
    at most a page of them."""
    if rep.kind == "aggregatedValues":
        assert rep.period is not None
        origin = rng.origin if rng.origin is not None else src.first_time(windows)
        if not methods or origin is None:
            return out
        end = rng.hi
        if end is None:
            last = src.last_time(windows)
            if last is None:
                return out
            end = last + 1
        bounds = T.period_bounds(origin, end, rep.period)
        out.agg = src.aggregate(windows, bounds, methods)
        if rep.period.whole_range and len(out.agg.starts):
            out.agg.ends[:] = end if rng.hi is not None else end - 1
        return out
    if rep.last_n is not None:
        out.inst = src.last_instances(windows, rep.last_n, MAX_INSTANCES)
    else:
        out.inst = src.first_instances(windows, MAX_INSTANCES)
    return out


def _cut(reads: list[_Read], rep: Representation, rng: TimeRange) -> str | None:
    """Cut every attribute of the page to one time range when any was truncated; the Content-Range
    (6.3.10: ``date-time <start>-<end>/<size>``, newest first with ``lastN``, where ``start`` is the
    range's upper bound when the request gave one)."""
    trunc = [r.inst for r in reads if r.inst is not None and r.inst.truncated and len(r.inst.ts)]
    if not trunc:
        return None
    live = [r for r in reads if r.inst is not None and len(r.inst.ts)]
    size = str(rep.last_n) if rep.last_n is not None else "*"
    if rep.last_n is None:
        end = min(int(i.ts[-1]) for i in trunc)
        start = rng.origin if rng.origin is not None else min(int(r.inst.ts[0]) for r in live if r.inst)
        _keep(live, lambda ts: ts <= end)
        return f"date-time {iso(start)}-{iso(end)}/{size}"
    oldest = max(int(i.ts[0]) for i in trunc)
    _keep(live, lambda ts: ts >= oldest)
    newest = (
        rng.hi if rng.hi is not None else max(int(r.inst.ts[-1]) for r in live if r.inst and len(r.inst.ts))
    )
    return f"date-time {iso(newest)}-{iso(oldest)}/{size}"


def _keep(reads: list[_Read], which: Any) -> None:
    for r in reads:
        assert r.inst is not None
        keep = which(r.inst.ts)
        r.inst.ts, r.inst.values = r.inst.ts[keep], r.inst.values[keep]
        if r.inst.ids is not None:
            r.inst.ids = r.inst.ids[keep]
        r.emptied = not len(r.inst.ts)


# The simplified (temporalValues) member of each attribute type (CIM 009 4.5.9).
_SIMPLIFIED = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "ListProperty": "valueLists",
    "VocabProperty": "vocabs",
    "JsonProperty": "jsons",
    "ListRelationship": "objectLists",
}
_NORMALIZED = render.Representation()


def _time_member(r: _Read) -> str:
    return "deletedAt" if r.deleted else "createdAt" if r.created else "observedAt"


def _attr_type(r: _Read) -> str:
    """The type of a history attribute's newest instance shown (``Property`` for a series)."""
    if r.history and r.inst is not None and len(r.inst.values):
        last = r.inst.values[-1]
        if isinstance(last, dict) and isinstance(last.get("type"), str):
            return str(last["type"])
    return r.atype


NGSI_LD_NULL = "urn:ngsi-ld:null"
# A deleted attribute's value: NGSI-LD Null in the member of its type (CIM 009 V1.8 4.5.9, 4.6.5).
_NULL_VALUE: dict[str, Any] = {
    "LanguageProperty": {"@none": NGSI_LD_NULL},
    "ListProperty": [NGSI_LD_NULL],
    "ListRelationship": [NGSI_LD_NULL],
}


def _deletion(inst: Any) -> dict[str, Any]:
    """A deletion instance as NGSI-LD shows it: the attribute's type, NGSI-LD Null as its value."""
    t = inst.get("type") if isinstance(inst, dict) else None
    atype = t if isinstance(t, str) else "Property"
    return {"type": atype, VALUE_MEMBER.get(atype, "value"): _NULL_VALUE.get(atype, NGSI_LD_NULL)}


def _render_history(r: _Read, rep: Representation, rc: RequestContext) -> Any:
    assert r.inst is not None
    times = iso_array(r.inst.ts).tolist()
    values = r.inst.values.tolist()
    # instanceId: by observedAt (the instance's key), whichever time the read is by
    ids = (r.inst.ids if r.inst.ids is not None else r.inst.ts).tolist()
    if r.deleted:
        insts = [_deletion(i) for i in values]
    else:
        insts = [
            render.render_attr(i, _NORMALIZED, rc.shown) if isinstance(i, dict) else {"value": i}
            for i in values
        ]
    if rep.kind == "temporalValues":
        atype = _attr_type(r)
        values = [[H.value_of(i), t] for i, t in zip(insts, times, strict=True)]
        return {"type": atype, _SIMPLIFIED.get(atype, "values"): values}
    out = []
    for inst, t, u in zip(insts, times, ids, strict=True):
        out.append({**inst, _time_member(r): t, "instanceId": r.instance_base + str(u)})
    return out


def _render_aggregated(r: _Read, a: T.Aggregated, rep: Representation) -> Any:
    if not len(a.starts):
        return None
    starts, ends = iso_array(a.starts).tolist(), iso_array(a.ends).tolist()
    body: dict[str, Any] = {"type": r.atype}
    for m in rep.methods:
        if m not in a.values:
            continue  # a numeric method, of a non-numeric attribute: it does not apply
        vals = a.values[m].tolist()
        body[m] = [[v, s, e] for v, s, e in zip(vals, starts, ends, strict=True)]
    if r.unit:
        body["unitCode"] = r.unit
    return body


def _render_attr(r: _Read, rep: Representation, rc: RequestContext) -> Any:
    unit = r.unit
    if r.agg is not None:
        return _render_aggregated(r, r.agg, rep)
    assert r.inst is not None
    if not len(r.inst.ts) and not r.emptied:
        return None
    if r.history:
        return _render_history(r, rep, rc)
    times = iso_array(r.inst.ts).tolist()
    vals = r.inst.values.tolist()
    if rep.kind == "temporalValues":
        out: dict[str, Any] = {
            "type": "Property",
            "values": [[v, t] for v, t in zip(vals, times, strict=True)],
        }
        if unit:
            out["unitCode"] = unit
        return out
    base = r.instance_base
    if unit:
        return [
            {"type": "Property", "value": v, "observedAt": t, "unitCode": unit, "instanceId": base + str(u)}
            for v, t, u in zip(vals, times, r.inst.ts.tolist(), strict=True)
        ]
    return [
        {"type": "Property", "value": v, "observedAt": t, "instanceId": base + str(u)}
        for v, t, u in zip(vals, times, r.inst.ts.tolist(), strict=True)
    ]


def _entity_body(
    eid: str,
    types: list[str],
    scopes: list[str] | None,
    reads: list[_Read],
    rep: Representation,
    rc: RequestContext,
    members: Members,
) -> dict[str, Any]:
    """The entity's temporal representation, names written through the request's context and
    projected by ``pick``/``omit`` (without ``@context``: see :func:`_with_context`)."""
    body: dict[str, Any] = {"id": eid, "type": one_or_many([rc.shown(t) for t in types])}
    if scopes:
        body["scope"] = one_or_many(scopes)
    by_name: dict[str, list[tuple[str | None, Any]]] = {}
    for r in reads:
        rendered = _render_attr(r, rep, rc)
        if rendered is not None:
            by_name.setdefault(r.attribute, []).append((r.dataset, rendered))
    for name, shown in by_name.items():
        body[rc.shown(name)] = _instances(sorted(shown, key=lambda d: (d[0] is not None, d[0] or "")))
    return project(body, members.pick, members.omit)


def _instances(shown: list[tuple[str | None, Any]]) -> Any:
    """One attribute's temporal representation over its datasetIds (the default instance first, then by
    datasetId): each dataset's part with its ``datasetId``; several datasets in the normalized form are
    one array of instances, in the others an array of the parts (ETSI GS CIM 009 §4.5.5)."""
    parts = []
    for d, part in shown:
        if d is not None:
            part = (
                [{**i, "datasetId": d} for i in part] if isinstance(part, list) else {**part, "datasetId": d}
            )
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, list) for p in parts):
        return [i for p in parts for i in p]
    return parts


def _with_context(body: dict[str, Any], ld: bool, rc: RequestContext) -> dict[str, Any]:
    return {**body, "@context": rc.ref} if ld else body


def _respond(
    body: Any, ld: bool, rc: RequestContext, content_range: str | None, headers: dict[str, str]
) -> Response:
    h = dict(headers)
    links = [h.pop("Link")] if "Link" in h else []
    if not ld:
        links.append(f'<{rc.link_url}>; rel="{JSONLD_REL}"; type="application/ld+json"')
    h["Link"] = ", ".join(links)
    status = 200
    if content_range is not None:
        h["Content-Range"] = content_range
        status = 206
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=h,
        media_type="application/ld+json" if ld else "application/json",
    )


def _entities_access(principal: Principal) -> Access:
    if "entities" not in principal.scopes:
        raise InsufficientScope("entities")
    return principal.access("entities")  # narrowed by NGSILD-Tenant in the guard


def _pick(series: Sequence[SeriesInfo], members: Members) -> list[SeriesInfo]:
    return [x for x in series if members.reads(x.attribute)]


def _pick_history(
    pk: int,
    attrs: dict[str, Any] | None,
    location: dict[str, Any] | None,
    series: Sequence[SeriesInfo],
    members: Members,
    created: bool = False,
) -> list[tuple[H.HistoryKey, str]]:
    """The entity's attributes read from the attribute history (with their current type): those the
    time-series store does not keep, unless a series of the same name answers for them."""
    numeric = {x.attribute for x in series}
    out = []
    for name in H.history_attributes(attrs, location):
        if name in numeric or not members.reads(name):
            continue
        attr = (attrs or {}).get(name)
        atype = attr.get("type", "Property") if isinstance(attr, dict) else "GeoProperty"
        out.append((H.HistoryKey(pk, name, created=created), str(atype)))
    return out


def _pick_deleted(pk: int, names: Sequence[str], members: Members) -> list[tuple[H.HistoryKey, str]]:
    """``timeproperty=deletedAt``: the entity's attributes (``scope`` included) that have deletion
    instances — of every attribute, numeric ones too (the deletion is the entity's, not a point's)."""
    return [(H.HistoryKey(pk, n, deleted=True), "Property") for n in names if members.reads(n)]


def _check_limit(limit: int | None) -> int:
    if limit is not None and limit > entities.MAX_LIMIT:
        # As on /entities: never silently fewer entities than asked for.
        raise TooManyResults(
            f"limit {str(limit)[:20]} is more than this server hands out per page ({entities.MAX_LIMIT}): "
            f'ask for at most {entities.MAX_LIMIT} and follow the Link rel="next" URL'
        )
    return LIMITS.resolve(limit)


def _read_page(
    db: Session,
    store: TimeseriesStore,
    access_ts: Access,
    rows: Sequence[Any],
    members: Members,
    rc: RequestContext,
    rng: TimeRange,
    rep: Representation,
) -> list[tuple[Any, list[_Read]]]:
    """The chosen attributes of each listed entity, read. With a time range (``timerel``) an entity with
    no instance in it is not part of the answer (5.7.4.4: the temporal query selects the entities)."""
    by_entity: dict[tuple[str, str], list[SeriesInfo]] = {}
    visible = visible_entities(access_ts)
    ids = [r.entity_id for r in rows]
    for x in series_of_listed(db, visible, ids, every_topic=True):
        if dataset_of(x.topic)[0]:
            by_entity.setdefault((x.org_id, x.entity_id), []).append(x)
    stored = {(x.org_id, x.entity_id): x for x in H.listed_entities(db, visible, ids)}
    deleted = H.deleted_attributes(db, [x.pk for x in stored.values()]) if rng.deleted else {}
    out: list[tuple[Any, list[_Read]]] = []
    for r in rows:
        series = by_entity.get((r.org_id, r.entity_id), [])
        st = stored.get((r.org_id, r.entity_id))
        if rng.deleted:
            chosen = []
            kept = _pick_deleted(st.pk, deleted.get(st.pk, []), members) if st is not None else []
        else:
            chosen = _pick(series, members)
            _refuse_created(rng, access_ts, chosen)
            kept = (
                _pick_history(st.pk, st.attrs, st.location, series, members, rng.created)
                if st is not None
                else []
            )
        windows = _windows(access_ts, r, rng) if chosen or kept else []
        reads = [_read_one(store, x, windows, rng, rep) for x in chosen]
        reads += [_read_history(db, k, atype, windows, rng, rep) for k, atype in kept]
        # The time range selects entities by any instance of the attributes; datasetId then selects the
        # instances shown (as on /entities, an entity left without any is still listed).
        if (rng.lo is None and rng.hi is None) or any(_has_data(x) for x in reads):
            out.append((r, [x for x in reads if members.shows(x)]))
    return out


def _has_data(r: _Read) -> bool:
    return bool((r.inst is not None and len(r.inst.ts)) or (r.agg is not None and len(r.agg.starts)))


def _query(
    request: Request,
    db: Session,
    principal: Principal,
    rc: RequestContext,
    params: schemas.QueryParams,
    rng: TimeRange,
    rep: Representation,
    *,
    accept: str | None,
    paging: schemas.Paging,
) -> Response:
    ld = schemas.wants_ld(accept)
    members = parse_members(params, rc)
    # attrs names the series to return; the entity part of the query is the entity API's own.
    query = replace(params, attrs=None).query(rc)
    access_e = _entities_access(principal)
    access_ts = principal.access("timeseries")
    lim = _check_limit(paging.limit)
    store = store_for(db)
    per_entity: list[tuple[Any, list[_Read]]] = []
    offset, cursor = paging.offset, paging.cursor
    count: int | None = None
    for round_ in range(MAX_FILL_ROUNDS):
        page = entities.query_entities(
            db,
            access_e,
            query,
            limit=lim - len(per_entity),
            offset=offset,
            cursor=cursor,
            count=paging.count and round_ == 0,
            reader=principal.credential_id,
        )
        count = page.count if round_ == 0 else count
        per_entity += _read_page(db, store, access_ts, page.rows, members, rc, rng, rep)
        if page.next_cursor is None or len(per_entity) >= lim:
            break
        offset, cursor = page.next_offset or 0, page.next_cursor
    content_range = _cut([x for _, reads in per_entity for x in reads], rep, rng)
    body = [
        _with_context(_entity_body(r.entity_id, types_of(r), r.scopes, reads, rep, rc, members), ld, rc)
        for r, reads in per_entity
    ]
    headers: dict[str, str] = {}
    if count is not None:
        headers["NGSILD-Results-Count"] = str(count)
    if page.next_cursor is not None:
        headers["Link"] = next_link(
            request,
            ctx(request).settings.base_url,
            limit=lim,
            offset=page.next_offset,
            cursor=page.next_cursor,
        )
    return _respond(body, ld, rc, content_range, headers)


# --- routes -----------------------------------------------------------------------------------------

SeriesAttrs = Annotated[str | None, Query(description="Attributes to return, comma-separated")]


@dataclass(frozen=True)
class RepresentationArgs:
    """``lastN``, ``options``, ``format``, ``aggrMethods``, ``aggrPeriodDuration`` as a dependency (their
    query-string parameters, without descriptions), parsed when the route asks (:meth:`parse`): after
    its time range, as before, so a request wrong in both is refused for its time range."""

    lastN: str | None = Query(None)
    options: str | None = Query(None)
    format: str | None = Query(None)
    aggrMethods: str | None = Query(None)
    aggrPeriodDuration: str | None = Query(None)

    def parse(self) -> Representation:
        return parse_representation(
            self.options, self.format, self.lastN, self.aggrMethods, self.aggrPeriodDuration
        )


@router.get(
    f"{NGSI}/temporal/entities",
    tags=TAGS,
    summary="Query the temporal evolution of entities",
    description=_DOC,
    openapi_extra=schemas.REFUSED_EXTRA,
)
def query_temporal(
    request: Request,
    type: schemas.Types = None,
    id: schemas.Ids = None,
    idPattern: str | None = Query(None, description="Regular expression on the entity id"),
    q: str | None = Query(None, description="Filter on the entities' current attribute values"),
    scopeQ: schemas.ScopeQ = None,
    attrs: SeriesAttrs = None,
    pick: schemas.Pick = None,
    omit: schemas.Omit = None,
    timerel: str | None = Query(None, description="before | after | between"),
    timeAt: str | None = Query(None, description="ISO 8601 date-time"),
    endTimeAt: str | None = Query(None, description="ISO 8601 date-time (with between)"),
    timeproperty: str | None = Query(
        None, description="observedAt (default), createdAt (non-numeric attributes) or deletedAt"
    ),
    lastN: str | None = Query(
        None, description=f"Only the newest N instances per attribute (1-{MAX_LAST_N})"
    ),
    options: str | None = Query(None, description="temporalValues | aggregatedValues"),
    format: str | None = Query(
        None, description="normalized | temporalValues | aggregatedValues (takes precedence over options)"
    ),
    aggrMethods: str | None = Query(None, description=", ".join(T.AGGR_METHODS)),
    aggrPeriodDuration: str | None = Query(None, description="ISO 8601 duration, e.g. PT1H, P1D, P1M"),
    local: schemas.Local = None,
    datasetId: schemas.DatasetId = None,
    expandValues: schemas.ExpandValues = None,
    csf: schemas.Csf = None,
    limit: int | None = Query(None, description="Entities per page; default 100, at most 500"),
    offset: int = Query(0, ge=0),
    count: bool = Query(False),
    cursor: str | None = Query(None, description="Opaque keyset cursor from a Link rel=next URL"),
    geo: GeoQuery | None = Depends(geo_params),
    ordering: schemas.OrderingParams = Depends(schemas.ordering_params),
    accept: str | None = Header(None),
    principal: Principal = Depends(TIMESERIES),
    db: Session = Depends(get_read_db),
) -> Response:
    rng = parse_range(timerel, timeAt, endTimeAt, timeproperty)
    rep = parse_representation(options, format, lastN, aggrMethods, aggrPeriodDuration)
    _check_limit(limit)
    params = schemas.QueryParams(
        ordering=ordering,
        type=type,
        id=id,
        idPattern=idPattern,
        q=q,
        scopeQ=scopeQ,
        attrs=attrs,
        pick=pick,
        omit=omit,
        geo=geo,
        datasetId=datasetId,
        local=local,
        expandValues=expandValues,
        csf=csf,
    )
    params.require_selective("a temporal query")
    return _query(
        request,
        db,
        principal,
        request_context(request),
        params,
        rng,
        rep,
        accept=accept,
        paging=schemas.Paging(limit, offset, count, cursor),
    )


TEMPORAL_Q_MEMBERS = frozenset({"timerel", "timeAt", "endTimeAt", "timeproperty"})


@router.post(
    f"{NGSI}/temporal/entityOperations/query",
    tags=TAGS,
    summary="Query the temporal evolution of entities (POST body, NGSI-LD 1.8 path)",
    description="The same as `POST /ngsi-ld/v1/temporalEntityOperations/query`, at the path NGSI-LD 1.8 names.",
    openapi_extra=schemas.REFUSED_EXTRA,
)
@router.post(
    f"{NGSI}/temporalEntityOperations/query",
    tags=TAGS,
    summary="Query the temporal evolution of entities (POST body)",
    description="An NGSI-LD `Query` body with `temporalQ` {timerel, timeAt, endTimeAt, timeproperty}; "
    "`lastN`, `options`, `aggrMethods`, `aggrPeriodDuration` and paging in the query string. " + _DOC,
    openapi_extra=schemas.REFUSED_EXTRA,
)
def post_temporal_query(
    request: Request,
    body: Any = Body(
        ...,
        examples=[
            {
                "type": "Query",
                "entities": [{"type": "WeatherObserved"}],
                "attrs": ["temperature"],
                "temporalQ": {"timerel": "after", "timeAt": "2024-01-01T00:00:00Z"},
            }
        ],
    ),
    accept: str | None = Header(None),
    principal: Principal = Depends(TIMESERIES),
    db: Session = Depends(get_read_db),
    # Last: a dependency's parameters are listed after the route's own and checked after the guard's.
    shown: RepresentationArgs = Depends(),
    paging: schemas.Paging = Depends(),
) -> Response:
    if not isinstance(body, dict):
        raise BadRequest("the body must be an NGSI-LD Query object")
    rest = dict(body)
    tq = rest.pop("temporalQ", None)
    if tq is None:
        tq = {}
    if not isinstance(tq, dict):
        raise BadRequest("temporalQ must be an object with timerel, timeAt, endTimeAt, timeproperty")
    refuse_unknown_members(tq, TEMPORAL_Q_MEMBERS, "temporalQ")
    for k, v in tq.items():
        if not isinstance(v, str):
            raise BadRequest(f"temporalQ.{k} must be a string")
    rng = parse_range(tq.get("timerel"), tq.get("timeAt"), tq.get("endTimeAt"), tq.get("timeproperty"))
    rep = shown.parse()
    rc = request_context(request, body)
    params = schemas.with_body(schemas.QueryParams(), rest)  # geoQ included
    params.require_selective("a temporal Query", takes_local=False)
    return _query(request, db, principal, rc, params, rng, rep, accept=accept, paging=paging)


@router.get(
    f"{NGSI}/temporal/entities/{{entity_id}}",
    tags=TAGS,
    summary="Retrieve the temporal evolution of an entity",
    description=_DOC,
    openapi_extra=schemas.REFUSED_EXTRA,
)
def get_temporal_entity(
    request: Request,
    entity_id: str,
    attrs: SeriesAttrs = None,
    pick: schemas.Pick = None,
    omit: schemas.Omit = None,
    timerel: str | None = Query(None),
    timeAt: str | None = Query(None),
    endTimeAt: str | None = Query(None),
    timeproperty: str | None = Query(None),
    local: schemas.Local = None,
    datasetId: schemas.DatasetId = None,
    accept: str | None = Header(None),
    principal: Principal = Depends(TIMESERIES),
    db: Session = Depends(get_read_db),
    shown: RepresentationArgs = Depends(),
) -> Response:
    ld = schemas.wants_ld(accept)
    check_entity_id(entity_id, "the entity id in the path")  # not a URI: 400 BadRequestData
    rng = parse_range(timerel, timeAt, endTimeAt, timeproperty)
    rep = shown.parse()
    rc = request_context(request)
    members = parse_members(schemas.QueryParams(attrs=attrs, pick=pick, omit=omit, datasetId=datasetId), rc)
    access_e = _entities_access(principal)
    access_ts = principal.access("timeseries")
    e = entities.get_entity(db, access_e, entity_id)
    series = [
        SeriesInfo(x.id, e.entity_id, x.attribute, x.unit, e.org_id, e.workspace_id, x.topic)
        for x in series_of_entity_topics(db, e.pk)
        if dataset_of(x.topic)[0]
    ]
    readable = access_ts.allows(e.org_id, e.workspace_id, e.entity_id)
    if rng.deleted:
        chosen = []
        names = H.deleted_attributes(db, [e.pk]).get(e.pk, []) if readable else []
        kept = _pick_deleted(e.pk, names, members)
    else:
        chosen = _pick(series, members) if readable else []
        _refuse_created(rng, access_ts, chosen)
        kept = _pick_history(e.pk, e.attrs, e.location, series, members, rng.created) if readable else []
    if members.attrs is not None and not chosen and not kept:
        raise NotFound(f"entity '{entity_id}' has no temporal evolution of the attributes attrs names")
    windows = _windows(access_ts, e, rng) if chosen or kept else []
    store = store_for(db)
    reads = [_read_one(store, x, windows, rng, rep) for x in chosen]
    reads += [_read_history(db, k, atype, windows, rng, rep) for k, atype in kept]
    reads = [x for x in reads if members.shows(x)]
    content_range = _cut(reads, rep, rng)
    body = _entity_body(e.entity_id, e.types, e.scopes, reads, rep, rc, members)
    if not body:
        raise NotFound(f"entity '{entity_id}' has no member left after pick/omit")
    return _respond(_with_context(body, ld, rc), ld, rc, content_range, {})
