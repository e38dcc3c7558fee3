"""Alembic environment: the URL comes from sensorhub's settings (or a connection passed in)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import sensorhub.models  # noqa: F401  (fills Base.metadata)
from sensorhub.db import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from sensorhub.config import Settings
    from sensorhub.db import make_engine

    engine = make_engine(Settings())
    with engine.connect() as conn:
        _run(conn)
