"""NGSI-LD entities (devices and assets are entities)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint, event
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
    type: Mapped[str] = mapped_column(String(200))
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
