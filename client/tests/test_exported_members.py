"""The package's public surface is a contract: changing it must be a deliberate, visible edit."""

import sensorhub_client as sc

EXPECTED = [
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


def test_all_is_pinned():
    assert sorted(sc.__all__) == sorted(EXPECTED)
    assert len(sc.__all__) == len(set(sc.__all__))


def test_every_export_exists_and_is_owned_by_the_package():
    for name in sc.__all__:
        member = getattr(sc, name)
        if name == "__version__":
            assert isinstance(member, str)
            continue
        assert member.__module__.startswith("sensorhub_client"), name


def test_no_other_public_names_leak_from_the_package():
    public = {name for name in vars(sc) if not name.startswith("_")}
    # submodules are importable but not part of the advertised surface
    modules = {"errors", "models"}
    assert public - modules == set(EXPECTED) - {"__version__"}


def test_every_error_is_a_sensorhub_error():
    errors = [
        sc.APIError,
        sc.AuthenticationError,
        sc.PermissionDenied,
        sc.NotFound,
        sc.RateLimited,
        sc.ValidationError,
        sc.ServerError,
        sc.TransportError,
        sc.InvalidTokenFormat,
    ]
    for error in errors:
        assert issubclass(error, sc.SensorhubError)
    for error in (
        sc.AuthenticationError,
        sc.PermissionDenied,
        sc.NotFound,
        sc.RateLimited,
        sc.ValidationError,
        sc.ServerError,
    ):
        assert issubclass(error, sc.APIError)
