"""The time-series store implementation for a session's database dialect."""

from __future__ import annotations

from sqlalchemy.orm import Session

from sensorhub.timeseries.postgres import PostgresStore
from sensorhub.timeseries.sqlite import SQLiteStore
from sensorhub.timeseries.store import TimeseriesStore


def store_for(session: Session) -> TimeseriesStore:
    """The store implementation for the session's database."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return SQLiteStore(session)
    if name == "postgresql":
        return PostgresStore(session)
    raise RuntimeError(f"unsupported database dialect for time series: {name}")
