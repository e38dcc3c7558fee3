"""Turning NGSI-LD entity JSON (normalized or keyValues/concise) into what the ``entities`` table stores,
and back into NGSI-LD JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sensorhub.errors import BadRequest
from sensorhub.kit.time import observed_us
from sensorhub.timeseries.names import ATTRIBUTE_NAME, MAX_ATTRIBUTE_LENGTH

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CORE_CONTEXTS = frozenset({CORE_CONTEXT, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"})
CONTEXT_LINK = f'<{CORE_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'

ATTRIBUTE_TYPES = frozenset(
    {
        "Property",
        "Relationship",
        "GeoProperty",
        "LanguageProperty",
        "ListProperty",
        "VocabProperty",
        "JsonProperty",
        "ListRelationship",
    }
)
GEOJSON_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
# Members of an entity that are not attributes (and may not be used as attribute names).
RESERVED = frozenset(
    {"id", "type", "@context", "createdAt", "modifiedAt", "deletedAt", "scope", "@id", "@type"}
)
MAX_ID_LENGTH = 512
MAX_TYPE_LENGTH = 200
MAX_ATTRS = 500
MAX_INSTANCES = 100  # instances (datasetIds) of one multi-attribute
MAX_TYPES = 20  # types of one entity
MAX_SCOPES = 20  # scopes of one entity
MAX_SCOPE_LENGTH = 200
# One level of an NGSI-LD scope (``/Madrid/Gardens`` has two); scopeQ adds the wildcards + and #.
SCOPE_LEVEL = r"[A-Za-z0-9_\-]+"
_SCOPE = re.compile(rf"^/{SCOPE_LEVEL}(?:/{SCOPE_LEVEL})*$")

_TYPE_NAME = re.compile(r"^[A-Za-z_@][A-Za-z0-9_:/#@.\-]{0,199}$")
# An entity id is a URI: a scheme, a colon, and no whitespace or characters unsafe in paths and headers.
_ENTITY_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`,;?#/]+$")


@dataclass
class EntityData:
    """A validated entity: what goes into the ``entities`` row."""

    entity_id: str
    type: str
    attrs: dict[str, Any]
    location: dict[str, Any] | None
    extra_types: tuple[str, ...] = ()  # the types after the first (NGSI-LD ``type`` may be an array)
    scopes: tuple[str, ...] = ()  # NGSI-LD ``scope``: a string or an array of strings
    location_observed_at: str | None = None  # the location's observedAt (dates its history instance)
    # Multi-attributes: name → the instances other than the one in ``attrs`` (see Entity.datasets)
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type, *self.extra_types)

    @property
    def name(self) -> str | None:
        v = self.attrs.get("name", {}).get("value")
        return v[:300] if isinstance(v, str) else None


def check_entity_id(value: Any, what: str = "id") -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{what} must be a non-empty string (a URI such as urn:ngsi-ld:Device:sensor-1)")
    if len(value) > MAX_ID_LENGTH or not _ENTITY_ID.match(value):
        raise BadRequest(
            f"{what} '{value[:80]}' is not a valid entity id: use a URI such as urn:ngsi-ld:Device:sensor-1"
        )
    return value


def check_types(value: Any) -> tuple[str, ...]:
    """An entity's ``type``: a name, or an array of names (several types; order kept, repeats dropped)."""
    if isinstance(value, list):
        if not value:
            raise BadRequest("type must be a type name or a non-empty array of type names")
        if len(value) > MAX_TYPES:
            raise BadRequest(f"an entity may have at most {MAX_TYPES} types")
        return tuple(dict.fromkeys(check_type(v) for v in value))
    return (check_type(value),)


def check_scopes(value: Any) -> tuple[str, ...]:
    """An entity's ``scope``: a scope (``/Madrid/Gardens``), or an array of them (order kept, repeats
    dropped)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequest("scope must be a scope such as /Madrid/Gardens or a non-empty array of scopes")
    if len(items) > MAX_SCOPES:
        raise BadRequest(f"scope: an entity may have at most {MAX_SCOPES} scopes")
    for v in items:
        if not isinstance(v, str) or len(v) > MAX_SCOPE_LENGTH or not _SCOPE.match(v):
            raise BadRequest(
                f"scope '{str(v)[:80]}' is not a valid scope: use /name/name… (letters, digits, _ and -; "
                f"no + or #; at most {MAX_SCOPE_LENGTH} characters)"
            )
    return tuple(dict.fromkeys(items))


def check_type(value: Any) -> str:
    if not isinstance(value, str) or not _TYPE_NAME.match(value):
        raise BadRequest(
            "type must be a short name such as WeatherObserved (letters, digits, _ : / # @ . -; at most 200)"
        )
    return value


def check_attr_name(name: str) -> str:
    # One attribute grammar for entities and every ingest path (no characters q, URLs or snippets give a
    # meaning to); ``location`` is an entity attribute here, so only the entity members are reserved.
    if name in RESERVED or len(name) > MAX_ATTRIBUTE_LENGTH or not ATTRIBUTE_NAME.fullmatch(name):
        raise BadRequest(
            f"'{name[:60]}' is not a valid attribute name: use letters, digits and _ : / # @ -, "
            f"not one of {', '.join(sorted(RESERVED))}"
        )
    return name


def check_geojson(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in GEOJSON_TYPES:
        raise BadRequest(
            f"{what} must be a GeoJSON geometry (type one of {', '.join(sorted(GEOJSON_TYPES))})"
        )
    key = "geometries" if value["type"] == "GeometryCollection" else "coordinates"
    if not isinstance(value.get(key), list):
        raise BadRequest(f"{what}: a GeoJSON {value['type']} needs a '{key}' array")
    return value


# The member that carries the value of each attribute type (keyValues shows only that member); the
# one rule for rendering, ordering and history reads.
VALUE_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListRelationship": "objectList",
}

# The member that carries the value of each attribute type, and what it must be.
_VALUE_MEMBERS: dict[str, tuple[str, Any, str]] = {
    "Relationship": ("object", (str, list), "an 'object' (entity id)"),
    "LanguageProperty": ("languageMap", dict, "a 'languageMap' object"),
    "ListProperty": ("valueList", list, "a 'valueList' array"),
    "VocabProperty": ("vocab", (str, list), "a 'vocab' (a term or a list of terms)"),
    "JsonProperty": ("json", object, "a 'json' member"),
    "ListRelationship": ("objectList", list, "an 'objectList' array"),
}


def _check_typed_value(name: str, attr: dict[str, Any]) -> None:
    """The member that carries the value of a normalized attribute, by its type."""
    t = attr["type"]
    if t == "GeoProperty":
        check_geojson(attr.get("value"), f"attribute '{name}'")
        return
    member = _VALUE_MEMBERS.get(t)
    if member is not None:
        key, kind, what = member
        if key not in attr or not isinstance(attr[key], kind):
            raise BadRequest(f"attribute '{name}': a {t} needs {what}")
    elif "value" not in attr or attr["value"] is None:
        raise BadRequest(f"attribute '{name}': a {t} needs a non-null 'value'")


def _normalized_attr(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """An attribute given in normalized form, checked, without its ``@context``."""
    attr = {k: v for k, v in raw.items() if k not in ("@context",)}
    _check_typed_value(name, attr)
    if "observedAt" in attr:
        check_datetime(attr["observedAt"], f"attribute '{name}': observedAt")
    if "unitCode" in attr and not isinstance(attr["unitCode"], str):
        raise BadRequest(f"attribute '{name}': unitCode must be a string such as CEL")
    return attr


def _concise_attr(name: str, raw: Any) -> dict[str, Any]:
    """An attribute given as a keyValues (concise) value: bare GeoJSON or a Property value."""
    if raw is None:
        raise BadRequest(f"attribute '{name}' is null; omit it instead")
    if isinstance(raw, dict) and raw.get("type") in GEOJSON_TYPES:
        return {"type": "GeoProperty", "value": check_geojson(raw, f"attribute '{name}'")}
    return {"type": "Property", "value": raw}


def normalize_attr(name: str, raw: Any) -> dict[str, Any]:
    """One attribute instance in normalized form. A dict whose ``type`` is an NGSI-LD attribute type is
    taken as normalized; anything else is a keyValues (concise) value."""
    if isinstance(raw, dict) and raw.get("type") in ATTRIBUTE_TYPES:
        attr = _normalized_attr(name, raw)
        if "datasetId" in attr:
            check_dataset_id(attr["datasetId"], f"attribute '{name}': datasetId")
        return attr
    return _concise_attr(name, raw)


def is_multi_attribute(raw: Any) -> bool:
    """An attribute given as an array of instances (each a normalized attribute): a multi-attribute. Any
    other array is a (concise) Property value."""
    return (
        isinstance(raw, list)
        and bool(raw)
        and all(isinstance(x, dict) and x.get("type") in ATTRIBUTE_TYPES for x in raw)
    )


def normalize_instances(name: str, raw: Any) -> list[dict[str, Any]]:
    """The instances of one attribute, the representative first (the default instance — the one without
    ``datasetId`` — else the first given), the others in the order given. At most one default instance
    and one instance per datasetId (ETSI GS CIM 009 §4.5.5)."""
    if not is_multi_attribute(raw):
        return [normalize_attr(name, raw)]
    if len(raw) > MAX_INSTANCES:
        raise BadRequest(f"attribute '{name}': at most {MAX_INSTANCES} instances (datasetIds) per attribute")
    out = [normalize_attr(name, x) for x in raw]
    seen: set[str | None] = set()
    for inst in out:
        d = inst.get("datasetId")
        if d in seen:
            which = f"datasetId '{d}'" if d is not None else "no datasetId (the default instance)"
            raise BadRequest(
                f"attribute '{name}': two instances have {which}; each instance of a multi-attribute needs "
                "its own datasetId, and at most one may have none"
            )
        seen.add(d)
    default = next((i for i, inst in enumerate(out) if "datasetId" not in inst), 0)
    return [out[default], *out[:default], *out[default + 1 :]]


def is_dataset_id(value: str) -> bool:
    """Whether ``value`` may be a datasetId: a URI, e.g. urn:ngsi-ld:Dataset:french-name."""
    return len(value) <= MAX_ID_LENGTH and _ENTITY_ID.match(value) is not None


def check_dataset_id(value: Any, what: str = "datasetId") -> str:
    """A datasetId: a URI (like an entity id), e.g. urn:ngsi-ld:Dataset:french-name."""
    if not isinstance(value, str) or not is_dataset_id(value):
        raise BadRequest(f"{what} '{str(value)[:80]}' is not a URI such as urn:ngsi-ld:Dataset:d1")
    return value


def check_datetime(value: Any, what: str) -> str:
    # The one form that time windows can read (sensorhub.entities.windows): extended ISO 8601, at most
    # microseconds, Z / ±hh:mm / no offset (= UTC).
    if observed_us(value) is not None:
        return str(value)
    raise BadRequest(
        f"{what} must be an ISO 8601 date-time such as 2026-01-01T00:00:00Z (at most 6 fraction digits)"
    )


def check_context(value: Any) -> None:
    """Only the NGSI-LD core context is understood: a body naming another ``@context`` would have its terms
    read unexpanded, so it is refused rather than silently ignored."""
    urls = value if isinstance(value, list) else [value]
    if not all(isinstance(u, str) and u in CORE_CONTEXTS for u in urls):
        raise BadRequest(
            f"@context: only the NGSI-LD core context ({CORE_CONTEXT}) is supported; user contexts are not"
        )


def normalize_location(raw: Any) -> dict[str, Any]:
    """The GeoJSON geometry of a ``location`` given normalized (GeoProperty) or as bare GeoJSON."""
    if isinstance(raw, dict) and raw.get("type") == "GeoProperty":
        return check_geojson(raw.get("value"), "location")
    return check_geojson(raw, "location")


def location_observed_at(raw: Any) -> str | None:
    """The ``observedAt`` of a normalized ``location`` (checked), if it has one."""
    if isinstance(raw, dict) and raw.get("type") == "GeoProperty" and "observedAt" in raw:
        return check_datetime(raw["observedAt"], "location: observedAt")
    return None


@dataclass
class Fragment:
    """A validated update/append body: attributes, the location if given, the scopes if given."""

    attrs: dict[str, Any]
    location: dict[str, Any] | None
    has_location: bool
    scopes: tuple[str, ...] | None  # None: the body has no ``scope``
    location_observed_at: str | None = None
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # as EntityData.datasets


def normalize_fragment(body: Any) -> Fragment:
    """Attributes of an update/append body (and its ``scope``, if any)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object of attributes")
    for k in ("id", "type"):
        if k in body:
            raise BadRequest(f"'{k}' cannot be changed through the attributes endpoint")
    attrs: dict[str, Any] = {}
    datasets: dict[str, list[dict[str, Any]]] = {}
    location: dict[str, Any] | None = None
    observed: str | None = None
    has_location = False
    scopes = check_scopes(body["scope"]) if "scope" in body else None
    for name, raw in body.items():
        if name == "@context":
            check_context(raw)
            continue
        if name == "scope":
            continue
        if name == "location":
            location, observed, has_location = normalize_location(raw), location_observed_at(raw), True
            continue
        _put_instances(attrs, datasets, check_attr_name(name), raw)
    if not attrs and not has_location and scopes is None:
        raise BadRequest("the body names no attribute")
    return Fragment(attrs, location, has_location, scopes, observed, datasets)


def _put_instances(
    attrs: dict[str, Any], datasets: dict[str, list[dict[str, Any]]], name: str, raw: Any
) -> None:
    first, *others = normalize_instances(name, raw)
    attrs[name] = first
    if others:
        datasets[name] = others


def normalize_entity(body: Any) -> EntityData:
    """Validate an NGSI-LD entity (normalized, or keyValues/concise) into :class:`EntityData`."""
    if not isinstance(body, dict):
        raise BadRequest("an entity must be a JSON object with 'id' and 'type'")
    entity_id = check_entity_id(body.get("id", body.get("@id")))
    types = check_types(body.get("type", body.get("@type")))
    scopes = check_scopes(body["scope"]) if "scope" in body else ()
    attrs: dict[str, Any] = {}
    datasets: dict[str, list[dict[str, Any]]] = {}
    location = None
    observed = None
    for name, raw in body.items():
        if name in RESERVED:
            continue
        if name == "location":
            location, observed = normalize_location(raw), location_observed_at(raw)
            continue
        _put_instances(attrs, datasets, check_attr_name(name), raw)
    if len(attrs) > MAX_ATTRS:
        raise BadRequest(f"an entity may have at most {MAX_ATTRS} attributes")
    return EntityData(entity_id, types[0], attrs, location, types[1:], scopes, observed, datasets)


# The plain renderer for core-context readers (NGSI-LD notifications); the NGSI-LD routes render with
# sensorhub.compat.ngsi_ld.render (contexts, concise, lang, join).
def render(
    entity_id: str,
    etype: str | list[str],
    attrs: dict[str, Any],
    location: dict[str, Any] | None,
    *,
    pick: frozenset[str] | None,
    key_values: bool,
    context: bool,
    sys_attrs: tuple[datetime, datetime] | None = None,
    scopes: list[str] | None = None,
) -> dict[str, Any]:
    """An entity as NGSI-LD JSON: normalized (default) or keyValues; ``pick`` projects attributes.
    ``etype``: the entity's types (one: a string, as the entity API shows it); ``scopes`` likewise."""
    out: dict[str, Any] = {"id": entity_id, "type": etype if isinstance(etype, str) else one_or_many(etype)}
    if scopes:
        out["scope"] = one_or_many(scopes)
    for name, attr in attrs.items():
        if pick is not None and name not in pick:
            continue
        if key_values:
            t = attr.get("type")
            out[name] = (
                attr.get("object")
                if t == "Relationship"
                else attr.get("languageMap")
                if t == "LanguageProperty"
                else attr.get("value")
            )
        else:
            out[name] = attr
    if location is not None and (pick is None or "location" in pick):
        out["location"] = location if key_values else {"type": "GeoProperty", "value": location}
    if sys_attrs is not None:
        out["createdAt"] = _iso(sys_attrs[0])
        out["modifiedAt"] = _iso(sys_attrs[1])
    if context:
        out["@context"] = CORE_CONTEXT
    return out


def one_or_many(values: list[str]) -> str | list[str]:
    """A ``type`` or ``scope`` member as NGSI-LD writes it: a string for one value, an array for several."""
    return values[0] if len(values) == 1 else list(values)


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
