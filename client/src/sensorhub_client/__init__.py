"""sensorhub-client: read, export and backfill sensorhub data from Python.

>>> import sensorhub_client as sc
>>> c = sc.Client()  # SENSORHUB_URL / SENSORHUB_TOKEN
>>> df = c.timeseries("urn:ngsi-ld:WeatherObserved:station-1", ["temperature"],
...                   start="2026-01-01T00:00:00Z", end="2026-01-31T00:00:00Z", resolution=200)
"""

from ._async_client import AsyncClient
from ._client import Client
from ._core import VERSION as __version__
from .errors import (
    APIError,
    AuthenticationError,
    GraphQLError,
    InvalidTokenFormat,
    NotFound,
    PermissionDenied,
    RateLimited,
    SensorhubError,
    ServerError,
    TokenExpiringWarning,
    TransportError,
    ValidationError,
)
from .models import (
    AsyncExportResult,
    BackfillResult,
    ExportResult,
    QueryResult,
    SeriesValues,
    Timeseries,
)

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncExportResult",
    "AuthenticationError",
    "BackfillResult",
    "Client",
    "ExportResult",
    "GraphQLError",
    "InvalidTokenFormat",
    "NotFound",
    "PermissionDenied",
    "QueryResult",
    "RateLimited",
    "SensorhubError",
    "SeriesValues",
    "ServerError",
    "Timeseries",
    "TokenExpiringWarning",
    "TransportError",
    "ValidationError",
    "__version__",
]
