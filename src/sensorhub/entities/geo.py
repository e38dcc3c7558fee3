"""NGSI-LD geo-queries: ``georel``, ``geometry``, ``coordinates``, ``geoproperty`` (ETSI GS CIM 009 §4.10).

A query is parsed once into a :class:`GeoQuery` (the reference geometry as a shapely geometry, a 400
``BadRequestData`` naming what is malformed). It is answered in two steps:

1. **prefilter** in SQL on the entities' bounding-box columns (``geo_min_lon`` … ``geo_max_lat``, kept on
   every write of ``location`` by :func:`entity_bbox`, indexed by latitude): :meth:`GeoQuery.bbox` is the
   box a matching entity must overlap — the reference geometry's box, widened by ``maxDistance`` for
   ``near``; ``disjoint`` and ``near;minDistance`` have no such box and scan every located entity;
2. **exact** predicates with shapely (:meth:`GeoQuery.matches`) on the candidates: ``within``,
   ``contains``, ``intersects``, ``equals``, ``disjoint``, ``overlaps`` in longitude/latitude (as GeoJSON
   defines them), and ``near`` by distance in metres on the WGS84 ellipsoid (geographiclib): exact
   between points; for other geometries the distance between their nearest points, found in
   longitude/latitude with longitudes scaled by the cosine of the latitude (so that the closest point is
   the closest in metres, also far from the equator), 0 when they intersect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import shapely
from geographiclib.geodesic import Geodesic
from shapely.affinity import scale
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from sensorhub.errors import BadRequest

GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
MAX_COORDINATES = 10_000  # positions in one reference geometry
MAX_DISTANCE_M = 40_100_000.0  # more than half the Earth's circumference: everything is near
_M_PER_DEG_LAT = 110_574.0  # the fewest metres per degree of latitude (at the equator)
_WGS84 = Geodesic.WGS84

BBox = tuple[float, float, float, float]  # (min_lon, min_lat, max_lon, max_lat)


@dataclass(frozen=True)
class GeoQuery:
    georel: str  # one of GEORELS
    geometry: BaseGeometry
    geoproperty: str = "location"
    max_distance: float | None = None  # near;maxDistance==
    min_distance: float | None = None  # near;minDistance==

    def bbox(self) -> BBox | None:
        """The box every matching entity's bounding box overlaps; ``None``: no such box."""
        if self.georel == "disjoint" or (self.georel == "near" and self.max_distance is None):
            return None
        lo_x, lo_y, hi_x, hi_y = (float(v) for v in self.geometry.bounds)
        if self.georel == "near" and self.max_distance is not None:
            dlat = self.max_distance / _M_PER_DEG_LAT * 1.01 + 1e-9
            lo_y, hi_y = max(-90.0, lo_y - dlat), min(90.0, hi_y + dlat)
            widest = max(abs(lo_y), abs(hi_y))
            if widest >= 89.9:
                return (-180.0, lo_y, 180.0, hi_y)
            dlon = dlat / math.cos(math.radians(widest))
            if lo_x - dlon < -180.0 or hi_x + dlon > 180.0:
                return (-180.0, lo_y, 180.0, hi_y)  # the circle crosses the antimeridian
            lo_x, hi_x = lo_x - dlon, hi_x + dlon
        return (lo_x, lo_y, hi_x, hi_y)

    def matches(self, geoms: Sequence[Any]) -> list[bool]:
        """For each entity geometry (GeoJSON dict, or ``None``), whether it satisfies the query."""
        out = [False] * len(geoms)
        idx = [i for i, g in enumerate(geoms) if isinstance(g, dict)]
        if not idx:
            return out
        shapes = shapely.from_geojson([orjson.dumps(geoms[i]) for i in idx], on_invalid="ignore")
        ref = self.geometry
        if self.georel == "near":
            ok = [self._near(s) for s in shapes]
        else:
            fn = {
                "within": shapely.within,
                "contains": shapely.contains,
                "intersects": shapely.intersects,
                "equals": shapely.equals,
                "disjoint": shapely.disjoint,
                "overlaps": shapely.overlaps,
            }[self.georel]
            ok = [bool(v) for v in fn(shapes, ref)]
        for i, v in zip(idx, ok, strict=True):
            out[i] = bool(v)
        return out

    def _near(self, s: BaseGeometry | None) -> bool:
        if s is None or s.is_empty:
            return False
        d = distance_m(s, self.geometry)
        if self.max_distance is not None and d > self.max_distance:
            return False
        return not (self.min_distance is not None and d < self.min_distance)


def distance_m(a: BaseGeometry, b: BaseGeometry) -> float:
    """Distance in metres on the WGS84 ellipsoid: exact between two points; otherwise between the
    geometries' nearest points (0 when they intersect)."""
    if a.geom_type == "Point" and b.geom_type == "Point":
        return float(_WGS84.Inverse(a.y, a.x, b.y, b.x)["s12"])
    if a.intersects(b):
        return 0.0
    # Longitude degrees shrink with latitude: pick the nearest points in a plane where a degree of
    # longitude is as long as it is around these geometries, then measure them on the ellipsoid.
    lat = (a.centroid.y + b.centroid.y) / 2
    k = max(math.cos(math.radians(lat)), 1e-6)
    pa, pb = nearest_points(scale(a, k, 1.0, origin=(0, 0)), scale(b, k, 1.0, origin=(0, 0)))
    return float(_WGS84.Inverse(pa.y, pa.x / k, pb.y, pb.x / k)["s12"])


def _distance(value: str, what: str) -> float:
    try:
        d = float(value)
    except ValueError:
        d = math.nan
    if not math.isfinite(d) or d <= 0:  # a PositiveNumber (ETSI GS CIM 009 §4.10): neither 0 nor negative
        raise BadRequest(f"georel: {what} must be a positive distance in metres (got '{value[:30]}')")
    return min(d, MAX_DISTANCE_M)


def parse_georel(text: str) -> tuple[str, float | None, float | None]:
    """``near;maxDistance==1000``, ``near;minDistance==10``, ``within``, … → (georel, max, min)."""
    head, *mods = [p.strip() for p in text.split(";")]
    if head not in GEORELS:
        raise BadRequest(
            f"georel '{text[:60]}' is unknown; use one of {', '.join(GEORELS)} (near;maxDistance==<m>)"
        )
    if head != "near":
        if mods:
            raise BadRequest(f"georel={head} takes no modifier (got '{text[:60]}')")
        return head, None, None
    if not mods:
        raise BadRequest("georel=near needs maxDistance==<metres> or minDistance==<metres>")
    if len(mods) > 1:  # nearRel = nearOp andOp distance equal PositiveNumber: one modifier (§4.10)
        raise BadRequest(
            f"georel: near takes one distance, maxDistance==<m> or minDistance==<m>, not {len(mods)} "
            f"(got '{text[:60]}')"
        )
    name, sep, value = mods[0].partition("==")
    if not sep or name not in ("maxDistance", "minDistance"):
        raise BadRequest(f"georel: near takes maxDistance==<m> or minDistance==<m> (got '{mods[0][:40]}')")
    if name == "maxDistance":
        return head, _distance(value, "maxDistance"), None
    return head, None, _distance(value, "minDistance")


def _positions(value: Any, depth: int, what: str, count: list[int]) -> None:
    """Check that ``value`` is a nested array of [lon, lat] positions ``depth`` levels deep."""
    if not isinstance(value, list):
        raise BadRequest(f"coordinates: {what} must be an array")
    if depth == 0:
        if len(value) not in (2, 3) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise BadRequest(f"coordinates: a position must be [longitude, latitude] (got {str(value)[:60]})")
        lon, lat = float(value[0]), float(value[1])
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise BadRequest(
                f"coordinates: [{lon}, {lat}] is not a longitude in [-180, 180] and a latitude in [-90, 90]"
            )
        count[0] += 1
        if count[0] > MAX_COORDINATES:
            raise BadRequest(f"coordinates: at most {MAX_COORDINATES} positions")
        return
    if not value:
        raise BadRequest(f"coordinates: {what} is empty")
    for v in value:
        _positions(v, depth - 1, what, count)


_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


def _check_shape(geometry: str, coords: Any) -> None:
    _positions(coords, _DEPTH[geometry], f"the {geometry}", [0])
    if geometry in ("LineString", "MultiLineString"):
        lines = [coords] if geometry == "LineString" else coords
        if any(len(line) < 2 for line in lines):
            raise BadRequest(f"coordinates: a {geometry} needs at least 2 positions per line")
    if geometry in ("Polygon", "MultiPolygon"):
        polys = [coords] if geometry == "Polygon" else coords
        for poly in polys:
            for ring in poly:
                if len(ring) < 4 or ring[0] != ring[-1]:
                    raise BadRequest(
                        f"coordinates: every {geometry} ring needs at least 4 positions, the last equal to the first"
                    )


def parse_geometry(geometry: str | None, coordinates: Any) -> BaseGeometry:
    """The reference geometry of a geo-query: ``geometry`` (a GeoJSON type) and ``coordinates`` (a JSON
    array, or its text as in a URL)."""
    if geometry is None or coordinates is None:
        raise BadRequest("a geo-query needs georel, geometry and coordinates together")
    if geometry not in GEOMETRIES:
        raise BadRequest(f"geometry '{geometry[:40]}' is unknown; use one of {', '.join(GEOMETRIES)}")
    coords = coordinates
    if isinstance(coordinates, str):
        try:
            coords = orjson.loads(coordinates)
        except orjson.JSONDecodeError:
            raise BadRequest(
                f"coordinates '{coordinates[:60]}' is not a JSON array, e.g. [8.54,47.37] for a Point"
            ) from None
    _check_shape(geometry, coords)
    shape = shapely.from_geojson(orjson.dumps({"type": geometry, "coordinates": coords}), on_invalid="ignore")
    if shape is None or shape.is_empty:
        raise BadRequest(f"coordinates do not make a valid {geometry}")
    if not shape.is_valid:
        raise BadRequest(f"coordinates do not make a valid {geometry}: {shapely.is_valid_reason(shape)}")
    return shape


def parse_geo_query(
    georel: str | None, geometry: str | None, coordinates: Any, geoproperty: str | None
) -> GeoQuery | None:
    """A :class:`GeoQuery` from the four parameters (all absent: ``None``)."""
    if georel is None and geometry is None and coordinates is None:
        if geoproperty is not None:
            raise BadRequest("geoproperty needs georel, geometry and coordinates")
        return None
    if georel is None:
        raise BadRequest("a geo-query needs georel (near;maxDistance==<m>, within, contains, intersects, …)")
    rel, max_d, min_d = parse_georel(georel)
    shape = parse_geometry(geometry, coordinates)
    prop = geoproperty or "location"
    if not prop or len(prop) > 200:
        raise BadRequest("geoproperty must name a GeoProperty attribute (default location)")
    return GeoQuery(rel, shape, prop, max_d, min_d)


def entity_geometry(location: Any, attrs: dict[str, Any] | None, geoproperty: str) -> Any:
    """The GeoJSON geometry an entity has for ``geoproperty`` (``location`` or another GeoProperty)."""
    if geoproperty == "location":
        return location
    a = (attrs or {}).get(geoproperty)
    if isinstance(a, dict) and a.get("type") == "GeoProperty":
        return a.get("value")
    return None


def entity_bbox(geometry: Any) -> BBox | None:
    """The bounding box of a GeoJSON geometry (any nesting of positions); ``None`` without one."""
    if not isinstance(geometry, dict):
        return None
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if (
            isinstance(c, list)
            and c
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in c)
        ):
            if len(c) >= 2:
                xs.append(float(c[0]))
                ys.append(float(c[1]))
        elif isinstance(c, list):
            for v in c:
                walk(v)

    if geometry.get("type") == "GeometryCollection":
        for g in geometry.get("geometries") or []:
            walk(g.get("coordinates") if isinstance(g, dict) else None)
    else:
        walk(geometry.get("coordinates"))
    if not xs:
        return None
    return (min(xs), min(ys), max(xs), max(ys))
