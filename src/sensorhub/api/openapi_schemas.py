"""JSON Schemas of the wire shapes that the data routes build by hand (orjson straight from numpy, no
response models on the hot path), the two error shapes, and the response headers clients rely on.

:mod:`sensorhub.api.openapi` puts them into the OpenAPI document; schemathesis
(tests/contract/test_schemathesis.py) checks every real response against them.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
LD = "application/ld+json"
PROBLEM = "application/problem+json"
CSV = "text/csv"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

_STR = {"type": "string"}
_INT = {"type": "integer"}
_OPT_STR = {"type": ["string", "null"]}
_OPT_INT = {"type": ["integer", "null"]}
_TIME = {"type": "string", "description": "ISO 8601, UTC"}
_OPT_TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC"}
_VALUES = {"type": "array", "items": {"type": ["number", "null"]}, "description": "null where no value"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": list(required), "properties": props, **extra}


ERROR = _obj(
    {
        "timestamp": _STR,
        "path": _STR,
        "status": _INT,
        "error": _STR,
        "message": {"type": "string", "description": "What went wrong and what to change"},
        "requestId": _STR,
        "errorId": _STR,
        "traceId": _STR,
    },
    {
        "code": {"type": "string", "description": "e.g. invalid_token, insufficient_scope, rate_limited"},
        "errors": {
            "type": "array",
            "description": "Gateway ingest: every refused record, by its index in the request",
            "items": _obj({"index": _INT, "message": _STR}),
        },
    },
    description="Error body (Akenza shape) everywhere except under /ngsi-ld/ and InfluxDB's write paths",
)

INFLUX_ERROR = _obj(
    {
        "code": {"type": "string", "description": "invalid, unauthorized, forbidden, not found, …"},
        "message": {"type": "string", "description": "What went wrong (a bad line: 'line N: …')"},
    },
    description="Error body of POST /api/v2/write (InfluxDB 2.x shape)",
)
INFLUX_V1_ERROR = _obj(
    {"error": {"type": "string", "description": "What went wrong (a bad line: 'line N: …')"}},
    {"requestId": _STR},
    description="Error body of POST /write (InfluxDB 1.x shape)",
)

PROBLEM_DETAILS = _obj(
    {
        "type": {"type": "string", "description": "https://uri.etsi.org/ngsi-ld/errors/<type>"},
        "title": _STR,
        "status": _INT,
        "detail": _STR,
    },
    {"instance": _STR, "requestId": _STR, "errorId": _STR, "code": _STR},
    description="ETSI NGSI-LD ProblemDetails (RFC 7807), the error body under /ngsi-ld/",
)

ENTITY_DATA = _obj(
    {
        "entity_id": _STR,
        "start_time": _TIME,
        "end_time": _TIME,
        "bucket_seconds": {"type": ["integer", "null"], "description": "null for raw points"},
        "aggregation": _OPT_STR,
        "timestamps": {"type": "array", "items": _TIME},
        "attributes": {"type": "object", "additionalProperties": _VALUES},
        "units": {"type": "object", "additionalProperties": _OPT_STR},
    },
    description="Values per attribute, aligned with timestamps",
)

QUERY_DATA = _obj(
    {
        "start_time": _TIME,
        "end_time": _TIME,
        "bucket_seconds": {"type": ["integer", "null"]},
        "timestamps": {"type": "array", "items": _TIME},
        "series": {
            "type": "object",
            "description": "Keyed by <entity_id>.<attribute>",
            "additionalProperties": _obj(
                {
                    "entity_id": _STR,
                    "attribute": _STR,
                    "unit": _OPT_STR,
                    "aggregation": _OPT_STR,
                    "values": _VALUES,
                }
            ),
        },
    }
)

NGSI_ENTITY = _obj(
    {"id": _STR, "type": {"type": ["string", "array"]}},
    {"@context": {}},
    description="An NGSI-LD entity (normalized or keyValues); further members are its attributes",
    additionalProperties=True,
)

ASSET = _obj(
    {
        "id": _STR,
        "name": _STR,
        "description": _OPT_STR,
        "type": _STR,
        "entityId": _STR,
        "workspaceId": _STR,
        "organizationId": _STR,
        "created": _TIME,
        "updated": _TIME,
        "properties": {"type": "object"},
        "location": {"type": ["object", "null"]},
    }
)

_SORT = {"type": "object"}
ASSET_PAGE = _obj(
    {
        "content": {"type": "array", "items": {"$ref": "#/components/schemas/Asset"}},
        "pageable": {"type": "object"},
        "totalPages": _INT,
        "totalElements": _INT,
        "last": {"type": "boolean"},
        "number": _INT,
        "size": _INT,
        "numberOfElements": _INT,
        "first": {"type": "boolean"},
        "sort": _SORT,
        "empty": {"type": "boolean"},
    },
    description="A Spring page of assets",
)

BACKFILL_RESULT = _obj(
    {
        "accepted": {"type": "integer", "description": "Points stored"},
        "duplicates": {"type": "integer", "description": "Points already stored (same attribute and time)"},
    }
)

_LATEST = _obj({"value": {}, "unit": _OPT_STR, "observedAt": _OPT_TIME})
DEVICE = _obj(
    {
        "id": _STR,
        "type": _STR,
        "name": _STR,
        "workspace": _STR,
        "attributes": {"type": "object", "additionalProperties": _LATEST},
    },
    description="A device with the latest value of each attribute",
)

SENSOR = _obj(
    {
        "id": {"type": "string", "description": "<entity_id>.<attribute>"},
        "entity_id": _STR,
        "attribute": _STR,
        "value": {},
        "unit": _OPT_STR,
        "observedAt": _OPT_TIME,
    }
)

DATA_ROW = _obj(
    {
        "time": _TIME,
        "entity": _STR,
        "metric": _STR,
        "value": {"type": ["number", "null"]},
        "tags": {"type": "object"},
    },
    description="One reading (LEAF)",
)

MANAGEMENT = _obj(
    {
        "id": _STR,
        "organisation": _STR,
        "organisation_slug": _OPT_STR,
        "department": _OPT_STR,
        "department_slug": _OPT_STR,
        "entity": _OPT_STR,
        "time_start": _OPT_TIME,
        "time_end": _OPT_TIME,
        "scopes": {"type": "array", "items": _STR},
    },
    description="An access grant the token can use (LEAF management)",
)

TOKEN_SELF = _obj(
    {
        "id": _STR,
        "kind": _STR,
        "name": _STR,
        "owner": {"type": "object"},
        "scopes": {"type": "array", "items": _STR},
        "effective_scopes": {"type": "array", "items": _STR},
        "missing_scopes": {"type": "array", "items": _STR},
        "organisations": {"type": "array", "items": {"type": "object"}},
        "grants": {"type": "array", "items": {"$ref": "#/components/schemas/Management"}},
        "restrictions": {"type": "object"},
        "created_at": _OPT_TIME,
        "expires_at": _OPT_TIME,
        "expires_in_seconds": _OPT_INT,
        "rate_limit_per_minute": _OPT_INT,
        "export_row_cap": _OPT_INT,
    },
    description="What the presented token can do, where, and until when",
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": ERROR,
    "ProblemDetails": PROBLEM_DETAILS,
    "InfluxError": INFLUX_ERROR,
    "InfluxV1Error": INFLUX_V1_ERROR,
    "EntityData": ENTITY_DATA,
    "QueryData": QUERY_DATA,
    "NgsiLdEntity": NGSI_ENTITY,
    "Asset": ASSET,
    "AssetPage": ASSET_PAGE,
    "BackfillResult": BACKFILL_RESULT,
    "Device": DEVICE,
    "Sensor": SENSOR,
    "DataRow": DATA_ROW,
    "Management": MANAGEMENT,
    "TokenSelf": TOKEN_SELF,
}


def _header(description: str, type_: str = "integer") -> dict[str, Any]:
    return {"description": description, "schema": {"type": type_}}


HEADERS: dict[str, dict[str, Any]] = {
    "X-RateLimit-Limit": _header("Requests per minute this credential may make"),
    "X-RateLimit-Remaining": _header("Requests left in the current window"),
    "X-RateLimit-Reset": _header("When the window resets (Unix time, seconds)"),
    "Retry-After": _header("Seconds to wait before retrying"),
    "WWW-Authenticate": _header(
        'RFC 6750 challenge, e.g. Bearer realm="sensorhub", error="invalid_token"', "string"
    ),
    "Link": _header(
        'Next page: <url>; rel="next" (and, for JSON under /ngsi-ld/, the JSON-LD @context link)', "string"
    ),
    "NGSILD-Results-Count": _header("Total number of matching entities (with count=true)"),
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def array_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(name)}


BINARY = {"type": "string", "format": "binary"}

# Success bodies of the routes that render their own responses: (method, path) → (description,
# {media type: schema}, headers). Every media type listed is one the route's negotiation really serves.
_SERIES_MEDIA = {CSV: BINARY, ARROW: BINARY}
DATA_RESPONSES: dict[tuple[str, str], tuple[str, dict[str, Any], tuple[str, ...]]] = {
    ("get", "/api/timeseries/v2/entities/{entity_id}/data"): (
        "The series: JSON, or CSV / Arrow IPC with Accept (or format=csv|arrow)",
        {JSON: ref("EntityData"), **_SERIES_MEDIA},
        (),
    ),
    ("post", "/api/timeseries/v2/query"): (
        "The series on one time axis: JSON, or CSV / Arrow IPC with Accept (or format=csv|arrow)",
        {JSON: ref("QueryData"), **_SERIES_MEDIA},
        (),
    ),
    ("get", "/ngsi-ld/v1/entities"): (
        "A page of entities (JSON-LD with Accept: application/ld+json)",
        {JSON: array_of("NgsiLdEntity"), LD: array_of("NgsiLdEntity")},
        ("Link", "NGSILD-Results-Count"),
    ),
    ("post", "/ngsi-ld/v1/entityOperations/query"): (
        "A page of entities (JSON-LD with Accept: application/ld+json)",
        {JSON: array_of("NgsiLdEntity"), LD: array_of("NgsiLdEntity")},
        ("Link", "NGSILD-Results-Count"),
    ),
    ("get", "/ngsi-ld/v1/entities/{entity_id}"): (
        "The entity (JSON-LD with Accept: application/ld+json)",
        {JSON: ref("NgsiLdEntity"), LD: ref("NgsiLdEntity")},
        ("Link",),
    ),
    ("get", "/v3/assets"): ("A page of assets", {JSON: ref("AssetPage")}, ()),
    ("get", "/v3/assets/{asset_id}"): ("The asset", {JSON: ref("Asset")}, ()),
    ("post", "/v3/devices/{device_id}/backfill"): ("Stored", {JSON: ref("BackfillResult")}, ()),
    ("get", "/api/devices"): ("Devices with their latest values", {JSON: array_of("Device")}, ()),
    ("get", "/api/devices/{device_id}"): ("The device", {JSON: ref("Device")}, ()),
    ("get", "/api/sensors"): ("One row per series", {JSON: array_of("Sensor")}, ()),
    ("get", "/api/sensors/{sensor_id}"): ("The series' latest value", {JSON: ref("Sensor")}, ()),
    ("get", "/api/data/recent"): ("The newest readings", {JSON: array_of("DataRow")}, ()),
    ("get", "/api/data"): ("Readings, oldest first", {JSON: array_of("DataRow")}, ("Link",)),
    ("get", "/api/managements"): ("The token's grants", {JSON: array_of("Management")}, ()),
    ("get", "/api/tokens/self"): ("The token", {JSON: ref("TokenSelf")}, ()),
    ("post", "/api/datahub/export"): (
        "The export (JSON), or the CSV itself with Accept: text/csv",
        {JSON: ref("ExportOut"), CSV: BINARY},
        (),
    ),
    ("get", "/api/datahub/exports/{export_id}/download"): (
        "The file",
        {CSV: BINARY, PARQUET: BINARY},
        (),
    ),
}
