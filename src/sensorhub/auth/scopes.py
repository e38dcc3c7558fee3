"""Token scopes and what each organisation role may exercise."""

from __future__ import annotations

from enum import StrEnum

from sensorhub.accounts.models import Role


class Scope(StrEnum):
    entities = "entities"
    timeseries = "timeseries"
    export = "export"
    telemetry = "telemetry"
    ingest = "ingest"


SCOPE_DESCRIPTIONS: dict[Scope, str] = {
    Scope.entities: "Read NGSI-LD entities and assets (/ngsi-ld/v1/entities*, /v3/assets)",
    Scope.timeseries: "Read historical time series (/api/timeseries/*, /api/data)",
    Scope.export: "Export CSV and Parquet files (/api/datahub/export)",
    Scope.telemetry: "Read latest device telemetry (/api/devices*, /api/sensors*, /api/data/recent)",
    Scope.ingest: "Write: backfill device measurements (/v3/devices/{id}/backfill)",
}

ALL_SCOPES: frozenset[str] = frozenset(s.value for s in Scope)
READ_SCOPES: frozenset[str] = ALL_SCOPES - {Scope.ingest.value}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.owner: ALL_SCOPES,
    Role.admin: ALL_SCOPES,
    Role.member: ALL_SCOPES,
    Role.viewer: READ_SCOPES,
}


def parse_scopes(values: list[str]) -> list[str]:
    """Validate and normalise a scope list (sorted, deduplicated); raises ``ValueError`` naming the bad one."""
    out: set[str] = set()
    for v in values:
        s = v.strip()
        if s not in ALL_SCOPES:
            raise ValueError(f"unknown scope '{s}'; valid scopes are: {', '.join(sorted(ALL_SCOPES))}")
        out.add(s)
    if not out:
        raise ValueError(f"give at least one scope out of: {', '.join(sorted(ALL_SCOPES))}")
    return sorted(out)
