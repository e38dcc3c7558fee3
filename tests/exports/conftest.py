"""Export test helpers: ingest through the time-series service, read files back."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from sensorhub.auth.token_format import digest
from sensorhub.entities.models import Entity
from sensorhub.kit.time import to_us
from sensorhub.timeseries.service import bulk_insert, get_or_create_series
from sensorhub.tokens import service as tokens
from sensorhub.tokens.models import Credential
from tests.builders import World, bearer
from tests.production.conftest import start_server  # noqa: F401 (a real server process, for these tests too)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATION = "urn:ngsi-ld:WeatherObserved:station-1"
OTHER = "urn:ngsi-ld:WeatherObserved:station-2"


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def ingest(
    world: World,
    entity: Entity,
    attribute: str,
    times: Sequence[datetime],
    values: Sequence[float],
    unit: str | None = None,
) -> None:
    with world.ctx.db.transaction() as s:
        e = s.get(Entity, entity.pk)
        assert e is not None
        series = get_or_create_series(s, e, attribute, unit)
        bulk_insert(s, series.id, [to_us(t) for t in times], list(values))


def revoke_token(world: World, token: str) -> None:
    """Revoke ``token`` the way DELETE /api/tokens/{id} does."""
    with world.ctx.db.transaction() as s:
        cred = s.query(Credential).filter_by(digest=digest(token)).one()
        tokens.revoke(s, cred, actor_id=None)


def minutes(n: int, start: datetime = T0, step: int = 1) -> list[datetime]:
    return [start + timedelta(minutes=i * step) for i in range(n)]


def export(
    client: TestClient,
    token: str,
    series: list[tuple[str, str]],
    fmt: str = "parquet",
    start: datetime = T0,
    end: datetime = T0 + timedelta(days=30),
    **extra: Any,
) -> Any:
    body = {
        "start_time": z(start),
        "end_time": z(end),
        "format": fmt,
        "series": [{"entity_id": e, "attribute": a} for e, a in series],
        **extra,
    }
    return client.post("/api/datahub/export", json=body, headers=bearer(token))


def download(client: TestClient, url: str) -> Any:
    """Fetch a download URL with a client that holds no token and no cookies."""
    fresh = TestClient(client.app)
    return fresh.get(url)


def read(content: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(content)).to_pandas()
    return pd.read_csv(io.BytesIO(content), parse_dates=["timestamp"])


def parquet_table(content: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(content))


@pytest.fixture
def exports_dir(world: World) -> Path:
    return world.ctx.settings.data_dir / "exports"


@pytest.fixture
def station(world: World) -> tuple[Entity, Entity]:
    """Org ``acme`` with two stations; ana is a member with an org-wide grant."""
    world.org("acme")
    world.user("ana@acme.test", "acme", "member")
    return world.entity("acme", "main", STATION, "WeatherObserved"), world.entity(
        "acme", "main", OTHER, "WeatherObserved"
    )
