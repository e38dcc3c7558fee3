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
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, utcnow
from sensorhub.entities.geo import entity_bbox


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
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Normalized NGSI-LD attributes other than location, e.g.
    # {"temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": "..."}}
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # GeoJSON geometry of the "location" GeoProperty, if any.
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
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


event.listen(Entity, "before_insert", _keep_bbox)
event.listen(Entity, "before_update", _keep_bbox)
event.listen(Entity, "after_insert", _mirrors_inserted)
event.listen(Entity, "after_update", _mirrors_updated)
