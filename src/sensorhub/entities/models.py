"""NGSI-LD entities (devices and assets are entities)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    delete,
    event,
    insert,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from sensorhub.db import Base, UTCDateTime, utcnow
from sensorhub.entities.geo import entity_bbox
from sensorhub.kit.time import observed_us, to_us
from sensorhub.timeseries.names import MAX_ATTRIBUTE_LENGTH


def new_asset_id() -> str:
    return secrets.token_hex(8)


class Entity(Base):
    __tablename__ = "entities"
    __table_args__ = (
        UniqueConstraint("org_id", "entity_id", name="uq_entities_org_entity"),
        Index("ix_entities_org_type_entity", "org_id", "type", "entity_id"),
        Index("ix_entities_ws_entity", "workspace_id", "entity_id"),
        Index("ix_entities_geo_lat", "geo_min_lat", "geo_min_lon"),
    )

    # Surrogate key used by series and for keyset paging.
    pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # The NGSI-LD id, e.g. urn:ngsi-ld:WeatherObserved:station-1 (unique within an organisation).
    entity_id: Mapped[str] = mapped_column(String(512))
    # The Akenza-style asset id shown by /v3/assets (16 hex characters).
    asset_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_asset_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # The entity's first type; the others (NGSI-LD ``type`` may be an array) are ``extra_types``.
    type: Mapped[str] = mapped_column(String(200))
    # The types after the first, in the order written; NULL for a single-typed entity. Mirrored one row
    # per type into ``entity_types`` (the index ``type=`` queries use) by every ORM write.
    extra_types: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # NGSI-LD ``scope``s (``/Madrid/Gardens``), in the order written; NULL for none. Mirrored one row per
    # scope into ``entity_scopes`` (what ``scopeQ`` looks up) by every ORM write.
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, active_history=True)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Normalized NGSI-LD attributes other than location, e.g.
    # {"temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": "..."}}
    # (active_history: the value replaced is loaded first, so that every write's attribute history
    # — see ``attribute_instances`` — knows what changed.)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, active_history=True)
    # NGSI-LD multi-attributes (instances told apart by ``datasetId``): for each attribute with several
    # instances, the instances other than the one in ``attrs`` (which holds the default instance, the one
    # without datasetId, or else the first given), e.g. {"name": [{"type": "Property", "value": "Tour
    # Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"}]}; NULL when no attribute has several. Every other
    # API family reads ``attrs`` alone, i.e. the default instance (docs/ngsi-ld.md § Multi-attributes).
    datasets: Mapped[dict[str, list[dict[str, Any]]] | None] = mapped_column(
        JSON, nullable=True, active_history=True
    )
    # The NGSI-LD system attributes of every attribute instance (``createdAt``/``modifiedAt``, shown with
    # options=sysAttrs, ordered by with orderBy=name.createdAt): attribute name → datasetId ("" for the
    # instance without one) → [createdAt, modifiedAt] in microseconds since the epoch (UTC), ``location``
    # included. Kept by every ORM write (:func:`_keep_attr_times`); NULL for an entity without attributes.
    attr_times: Mapped[dict[str, dict[str, list[int]]] | None] = mapped_column(JSON, nullable=True)
    # GeoJSON geometry of the "location" GeoProperty, if any.
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, active_history=True)
    # Bounding box of ``location`` (the geo-query prefilter, see entities/geo.py), set on every write;
    # geo_lat_span bounds how far below a query's box an overlapping entity's geo_min_lat can lie.
    geo_min_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    geo_min_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    geo_max_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    geo_max_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    geo_lat_span: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def types(self) -> list[str]:
        """Every type of the entity, the first one first."""
        return [self.type, *(self.extra_types or [])]

    def set_types(self, types: list[str] | tuple[str, ...]) -> None:
        self.type = types[0]
        self.extra_types = list(types[1:]) or None

    def set_location(self, geometry: dict[str, Any] | None, observed_at: str | None = None) -> None:
        """Set ``location``; ``observed_at``, the ``observedAt`` the write gave it, is not a column: it
        dates the location's instance in ``attribute_instances`` (without one: the time of the write)."""
        self.location = geometry
        self._location_observed_at = observed_at


def times_of(times: dict[str, dict[str, list[int]]] | None, name: str, attr: Any) -> tuple[int, int] | None:
    """``(createdAt, modifiedAt)`` µs of the instance ``attr`` of attribute ``name`` (by its datasetId)."""
    got = (times or {}).get(name, {}).get(dataset_key(attr))
    return (int(got[0]), int(got[1])) if isinstance(got, list) and len(got) == 2 else None


def _mirror_table(name: str, column: str) -> Table:
    """One row per (entity, value): the index a list-valued member of the entities is queried through."""
    return Table(
        name,
        Base.metadata,
        Column(
            "entity_pk",
            BigInteger().with_variant(Integer, "sqlite"),
            ForeignKey("entities.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        Column(column, String(200), nullable=False),
        PrimaryKeyConstraint("entity_pk", column, name=f"pk_{name}"),
        Index(f"ix_{name}_{column}", column, "entity_pk"),
    )


# The types after the first of each entity, one row each: what ``type=A`` looks up besides the column.
entity_types = _mirror_table("entity_types", "type")
# The scopes of each entity, one row each: what ``scopeQ`` looks up.
entity_scopes = _mirror_table("entity_scopes", "scope")


@dataclass(frozen=True)
class _Mirror:
    """A table holding one row per value of a list on the entity (an index the queries use)."""

    table: Table
    column: str
    sources: tuple[str, ...]  # the Entity attributes the values are made from
    values: Callable[[Entity], list[str]]


_MIRRORS = (
    _Mirror(
        entity_types,
        "type",
        ("type", "extra_types"),
        lambda e: [t for t in dict.fromkeys(e.extra_types or []) if t != e.type],
    ),
    _Mirror(entity_scopes, "scope", ("scopes",), lambda e: list(dict.fromkeys(e.scopes or []))),
)


def _write_mirror(conn: Connection, e: Entity, m: _Mirror, *, replace: bool) -> None:
    if replace:
        conn.execute(delete(m.table).where(m.table.c.entity_pk == e.pk))
    values = m.values(e)
    if values:
        conn.execute(insert(m.table), [{"entity_pk": e.pk, m.column: v} for v in values])


def _mirrors_inserted(_mapper: object, conn: Connection, e: Entity) -> None:
    for m in _MIRRORS:
        _write_mirror(conn, e, m, replace=False)


def _mirrors_updated(_mapper: object, conn: Connection, e: Entity) -> None:
    state = inspect(e)
    for m in _MIRRORS:
        if any(state.attrs[a].history.has_changes() for a in m.sources):
            _write_mirror(conn, e, m, replace=True)


def _keep_bbox(_mapper: object, _conn: object, e: Entity) -> None:
    """Every ORM write of an entity refreshes the bounding box of its location."""
    box = entity_bbox(e.location)
    if box is None:
        e.geo_min_lon = e.geo_min_lat = e.geo_max_lon = e.geo_max_lat = e.geo_lat_span = None
    else:
        e.geo_min_lon, e.geo_min_lat, e.geo_max_lon, e.geo_max_lat = box
        e.geo_lat_span = box[3] - box[1]


# --- attributes' createdAt/modifiedAt ------------------------------------------------------------------


def dataset_key(attr: Any) -> str:
    """The key of an attribute instance in ``Entity.attr_times``: its datasetId, "" for none."""
    d = attr.get("datasetId") if isinstance(attr, dict) else None
    return d if isinstance(d, str) else ""


def _by_instance(
    attrs: dict[str, Any] | None, datasets: dict[str, list[Any]] | None, location: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Every attribute instance of an entity's state: name → datasetId key → the instance."""
    out: dict[str, dict[str, Any]] = {}
    for name, attr in (attrs or {}).items():
        out.setdefault(name, {})[dataset_key(attr)] = attr
    for name, insts in (datasets or {}).items():
        for i in insts or []:
            out.setdefault(name, {})[dataset_key(i)] = i
    if location is not None:
        out[LOCATION] = {"": location}
    return out


def _old(state: Any, key: str, current: Any) -> Any:
    h = state.attrs[key].history
    if not h.has_changes():
        return current
    return h.deleted[0] if h.deleted else None


def _times(
    new: dict[str, dict[str, Any]],
    old: dict[str, dict[str, Any]],
    old_times: dict[str, dict[str, list[int]]],
    now: int,
    fallback: tuple[int, int],
) -> dict[str, dict[str, list[int]]] | None:
    """createdAt is kept from the instance's first write; modifiedAt is the last write that changed it."""
    out: dict[str, dict[str, list[int]]] = {}
    for name, insts in new.items():
        for key, inst in insts.items():
            before = old.get(name, {})
            if key not in before:
                out.setdefault(name, {})[key] = [now, now]
                continue
            got = old_times.get(name, {}).get(key)
            c, m = (int(got[0]), int(got[1])) if isinstance(got, list) and len(got) == 2 else fallback
            out.setdefault(name, {})[key] = [c, m if before[key] == inst else now]
    return out or None


def _keep_attr_times(_mapper: object, _conn: object, e: Entity) -> None:
    """Every ORM write of an entity dates its attributes' instances (``attr_times``): a new instance is
    created and modified now, a changed one modified now, an unchanged one keeps its times. The entity's
    own createdAt/modifiedAt are the same instant as its attributes' of that write."""
    state = inspect(e)
    now_dt = utcnow()
    now = to_us(now_dt)
    new = _by_instance(e.attrs, e.datasets, e.location)
    if state.key is None:  # an insert
        if e.created_at is None:
            e.created_at = now_dt
        if e.modified_at is None:
            e.modified_at = e.created_at
        at = to_us(e.created_at)
        e.attr_times = _times(new, {}, {}, at, (at, at))
        return
    if not any(state.attrs[a].history.has_changes() for a in ("attrs", "datasets", "location")):
        return
    old = _by_instance(
        _old(state, "attrs", e.attrs),
        _old(state, "datasets", e.datasets),
        _old(state, "location", e.location),
    )
    before = _old(state, "modified_at", e.modified_at)
    fallback = (to_us(e.created_at), to_us(before or e.created_at))
    if not state.attrs["modified_at"].history.has_changes():
        e.modified_at = now_dt
    else:
        now = to_us(e.modified_at)
    e.attr_times = _times(new, old, e.attr_times or {}, now, fallback)


# --- attribute history -----------------------------------------------------------------------------------

# The temporal evolution of every attribute the time-series store does not keep — all but Properties
# whose value is a number: LanguageProperty, JsonProperty, VocabProperty, ListProperty, Relationships,
# GeoProperties (``location`` included), text/boolean/object Property values — one row per instance,
# written by every ORM write of an entity (in its transaction: see :func:`_history_inserted`). Also the
# *deletion* instances of every attribute (``deleted``: an attribute removed from the entity, dated by
# the deletion, what ``timeproperty=deletedAt`` reads). Keyed by the entity like ``series``: who may
# read it is decided on the entity (sensorhub.authz), rows go with it (ON DELETE CASCADE). Read by
# sensorhub.entities.history; see docs/ngsi-ld-temporal.md.
attribute_instances = Table(
    "attribute_instances",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "entity_pk",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("entities.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attribute", String(MAX_ATTRIBUTE_LENGTH), nullable=False),
    Column("deleted", Boolean, nullable=False),
    # observedAt (deletedAt for a deletion) in microseconds since the epoch, UTC; an instance written
    # without observedAt is dated by its write.
    Column("ts", BigInteger, nullable=False),
    # The attribute as written (normalized, observedAt included); for a deletion, its type only.
    Column("instance", JSON, nullable=True),
    # The instance's createdAt: when it was written, µs since the epoch (UTC); what
    # ``timeproperty=createdAt`` reads (migration 0027; rows from before it carry an estimate).
    Column("created_us", BigInteger, nullable=True),
    # One instance per attribute and time (a later write at the same observedAt replaces it); the index
    # every read of one attribute's instances walks.
    UniqueConstraint("entity_pk", "attribute", "deleted", "ts", name="uq_attribute_instances"),
)
LOCATION = "location"
SCOPE = "scope"  # in attribute_instances: the deletion instances of the entity's scopes


def is_series_value(attr: Any) -> bool:
    """A Property whose value is a number: its history is the time-series store's, not
    ``attribute_instances``'."""
    if not isinstance(attr, dict) or attr.get("type", "Property") != "Property":
        return False
    v = attr.get("value")
    return isinstance(v, int | float) and not isinstance(v, bool)


def _instance_rows(e: Entity, old: dict[str, Any], new: dict[str, Any], now_us: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, attr in new.items():
        if is_series_value(attr) or old.get(name) == attr:
            continue
        ts = observed_us(attr.get("observedAt")) if isinstance(attr, dict) else None
        rows.append(
            {"entity_pk": e.pk, "attribute": name, "deleted": False, "ts": ts or now_us, "instance": attr,
             "created_us": now_us}
        )  # fmt: skip
    rows += [
        {"entity_pk": e.pk, "attribute": name, "deleted": True, "ts": now_us, "instance": _deleted(old[name]),
         "created_us": now_us}
        for name in old
        if name not in new
    ]  # fmt: skip
    return rows


def _deleted(attr: Any) -> dict[str, Any]:
    """What a deletion instance keeps of the attribute: its type."""
    t = attr.get("type") if isinstance(attr, dict) else None
    return {"type": t if isinstance(t, str) else "Property"}


def _location(e: Entity, geometry: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if geometry is None:
        return {}
    attr: dict[str, Any] = {"type": "GeoProperty", "value": geometry}
    observed = getattr(e, "_location_observed_at", None)
    if observed is not None:
        attr["observedAt"] = observed
    return {LOCATION: attr}


def _write_history(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = attribute_instances.c
    # A later write at the same time replaces the instance (a correction, or a request sent again).
    rows = list({(r["entity_pk"], r["attribute"], r["deleted"], r["ts"]): r for r in rows}.values())
    by_attr: dict[tuple[int, str, bool], list[int]] = {}
    for r in rows:
        by_attr.setdefault((r["entity_pk"], r["attribute"], r["deleted"]), []).append(r["ts"])
    for (pk, name, deleted), times in by_attr.items():
        for i in range(0, len(times), 500):
            conn.execute(
                delete(attribute_instances).where(
                    t.entity_pk == pk,
                    t.attribute == name,
                    t.deleted == deleted,
                    t.ts.in_(times[i : i + 500]),
                )
            )
    conn.execute(insert(attribute_instances), rows)


def record_instances(s: Session, e: Entity, items: list[tuple[str, int, dict[str, Any]]]) -> None:
    """Instances ``(attribute, ts µs, attribute as written)`` of ``e``'s history that are not its new
    state (the ingest service's earlier observations of a request), in the session's transaction."""
    now = to_us(utcnow())
    rows = [
        {
            "entity_pk": e.pk,
            "attribute": name,
            "deleted": False,
            "ts": ts,
            "instance": attr,
            "created_us": now,
        }
        for name, ts, attr in items
    ]
    _write_history(s.connection(), rows)


def _history_inserted(_mapper: object, conn: Connection, e: Entity) -> None:
    """A new entity's non-numeric attributes and location are its first instances."""
    now = to_us(utcnow())
    rows = _instance_rows(e, {}, {**(e.attrs or {}), **_location(e, e.location)}, now)
    if rows:
        conn.execute(insert(attribute_instances), rows)
    e._location_observed_at = None


def _history_updated(_mapper: object, conn: Connection, e: Entity) -> None:
    """Every changed non-numeric attribute (or location) is an instance, every removed attribute a
    deletion instance — whichever service wrote the entity (entity API, import, ingest's latest states)."""
    state = inspect(e)
    h_attrs, h_loc = state.attrs["attrs"].history, state.attrs["location"].history
    h_scopes = state.attrs["scopes"].history
    if h_scopes.has_changes() and h_scopes.deleted and h_scopes.deleted[0] and not e.scopes:
        # the scopes removed: a deletion instance of ``scope`` (its values have no history)
        now = to_us(utcnow())
        _write_history(conn, [{"entity_pk": e.pk, "attribute": SCOPE, "deleted": True, "ts": now,
                               "instance": {"type": "Property"}, "created_us": now}])  # fmt: skip
    if not (h_attrs.has_changes() or h_loc.has_changes()):
        return
    old_attrs = (h_attrs.deleted[0] if h_attrs.deleted else None) if h_attrs.has_changes() else e.attrs
    old_loc = (h_loc.deleted[0] if h_loc.deleted else None) if h_loc.has_changes() else e.location
    old = {**(old_attrs or {}), **_location(e, old_loc)}
    new = {**(e.attrs or {}), **_location(e, e.location)}
    _write_history(conn, _instance_rows(e, old, new, to_us(utcnow())))
    e._location_observed_at = None


event.listen(Entity, "before_insert", _keep_bbox)
event.listen(Entity, "before_insert", _keep_attr_times)
event.listen(Entity, "before_update", _keep_attr_times)
event.listen(Entity, "before_update", _keep_bbox)
event.listen(Entity, "after_insert", _mirrors_inserted)
event.listen(Entity, "after_update", _mirrors_updated)
event.listen(Entity, "after_insert", _history_inserted)
event.listen(Entity, "after_update", _history_updated)
