"""NGSI-LD geo-query parameters and GeoJSON output for the entity and temporal query routes.

``georel``, ``geometry``, ``coordinates`` and ``geoproperty`` (query string, or a Query body's ``geoQ``)
become an :class:`~sensorhub.entities.geo.GeoQuery` the entities service answers (bounding-box prefilter,
exact shapely predicates). ``Accept: application/geo+json`` renders a page as a GeoJSON
``FeatureCollection`` (one ``Feature`` per entity, ``geometryProperty`` choosing its geometry).
"""

from __future__ import annotations

from typing import Any

from fastapi import Query

from sensorhub.entities.geo import GeoQuery, entity_geometry, parse_geo_query
from sensorhub.errors import BadRequest

GEOJSON = "application/geo+json"
GEO_MEMBERS = frozenset({"georel", "geometry", "coordinates", "geoproperty"})


def geo_params(
    georel: str | None = Query(
        None,
        description="near;maxDistance==<m>, near;minDistance==<m>, within, "
        "contains, intersects, equals, disjoint, overlaps",
    ),
    geometry: str | None = Query(
        None, description="Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon"
    ),
    coordinates: str | None = Query(
        None, description="GeoJSON coordinates as a JSON array, e.g. [8.54,47.37]"
    ),
    geoproperty: str | None = Query(None, description="The GeoProperty to test (default location)"),
) -> GeoQuery | None:
    """The geo-query of a request's query string (``None`` without one)."""
    return parse_geo_query(georel, geometry, coordinates, geoproperty)


def refuse_unknown_members(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    """400 naming the first member of the body object ``where`` (``geoQ``, ``ordering``, ``temporalQ``)
    that is not in ``allowed``."""
    extra = sorted(set(obj) - allowed)
    if extra:
        raise BadRequest(f"unknown member {where}.{extra[0][:40]}; it may hold {', '.join(sorted(allowed))}")


def geo_from_body(geo_q: Any) -> GeoQuery | None:
    """A Query body's ``geoQ`` member: ``{georel, geometry, coordinates, geoproperty?}``."""
    if geo_q is None:
        return None
    if not isinstance(geo_q, dict):
        raise BadRequest("geoQ must be an object with georel, geometry, coordinates and geoproperty")
    refuse_unknown_members(geo_q, GEO_MEMBERS, "geoQ")
    for k in ("georel", "geometry", "geoproperty"):
        if geo_q.get(k) is not None and not isinstance(geo_q[k], str):
            raise BadRequest(f"geoQ.{k} must be a string")
    coords = geo_q.get("coordinates")
    if coords is not None and not isinstance(coords, list | str):
        raise BadRequest("geoQ.coordinates must be an array (or its JSON text)")
    got = parse_geo_query(geo_q.get("georel"), geo_q.get("geometry"), coords, geo_q.get("geoproperty"))
    if got is None:
        raise BadRequest("geoQ needs georel, geometry and coordinates")
    return got


def accepted_media(accept: str) -> list[str]:
    """The media types of an ``Accept`` header that have a weight above 0, the preferred first (among
    equal weights, as listed)."""
    offers: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            offers.append((-q, i, media.lower()))
    return [media for _, _, media in sorted(offers)]


def wants_geojson(accept: str | None) -> bool:
    """Whether the client prefers ``application/geo+json`` (listed first among equal weights)."""
    if not accept:
        return False
    media = accepted_media(accept)
    return bool(media) and media[0] == GEOJSON


def check_geometry_property(value: str | None) -> str:
    if value is None:
        return "location"
    if not value or len(value) > 200:
        raise BadRequest("geometryProperty must name a GeoProperty attribute (default location)")
    return value


def feature(
    entity: dict[str, Any], location: Any, attrs: dict[str, Any] | None, geometry_property: str
) -> dict[str, Any]:
    """One rendered NGSI-LD entity as a GeoJSON Feature (its members other than id as properties)."""
    props = {k: v for k, v in entity.items() if k not in ("id", "@context")}
    return {
        "id": entity["id"],
        "type": "Feature",
        "geometry": entity_geometry(location, attrs, geometry_property),
        "properties": props,
    }
