"""PostgreSQL: a backfill into a new month must not lock every reader of measurements while it runs."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from sensorhub.background import partitions_ahead
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.entities.models import Entity
from sensorhub.kit.time import to_us
from sensorhub.timeseries import service
from sensorhub.timeseries.postgres import create_partitions_ahead
from tests.builders import World


@pytest.mark.parametrize("backend", ["postgresql"])
def test_new_month_partition_does_not_block_readers(
    backend: str, settings: Settings, ctx: AppContext, world: World
) -> None:
    world.org("acme")
    world.entity("acme", "main", "urn:ngsi-ld:Device:p1")
    with ctx.db.transaction() as s:
        e = s.query(Entity).filter_by(entity_id="urn:ngsi-ld:Device:p1").one()
        sid = service.get_or_create_series(s, e, "temp", None).id
    ts = np.array([to_us(datetime(1999, 3, 5, tzinfo=UTC))], dtype=np.int64)  # a month nobody wrote yet
    other = create_engine(settings.resolved_database_url)
    try:
        with ctx.db.write_session() as s:
            assert service.bulk_insert(s, sid, ts, np.array([1.5])) == (1, 0)
            # The ingest transaction is still open: a reader elsewhere must not wait for it.
            with other.connect() as c:
                c.execute(text("SET lock_timeout = '2s'"))
                assert c.execute(text("SELECT count(*) FROM measurements")).scalar() == 0
            s.commit()
        with other.connect() as c:
            assert c.execute(text("SELECT count(*) FROM measurements_p199903")).scalar() == 1
    finally:
        other.dispose()


def _partitions(ctx: AppContext) -> set[str]:
    with ctx.db.engine.connect() as c:
        rows = c.execute(
            text("SELECT relname FROM pg_class WHERE relname LIKE 'measurements_p%' AND relkind = 'r'")
        )
        return {r[0] for r in rows}


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_coming_months_partitions_exist_before_live_data_needs_them(
    backend: str, ctx: AppContext
) -> None:
    with ctx.db.engine.begin() as c:  # the test database may keep them from an earlier run
        c.execute(text("DROP TABLE IF EXISTS measurements_p203112, measurements_p203201"))
    # December: this month and January of the next year; a second run has nothing left to create.
    december = to_us(datetime(2031, 12, 31, 23, 59, tzinfo=UTC))
    assert create_partitions_ahead(ctx.db.engine, december) == [
        "measurements_p203112",
        "measurements_p203201",
    ]
    assert create_partitions_ahead(ctx.db.engine, december) == []
    assert {"measurements_p203112", "measurements_p203201"} <= _partitions(ctx)
    # The background job does it for the current month and the next.
    partitions_ahead(ctx)
    now = utcnow()
    this_month = f"measurements_p{now:%Y%m}"
    following = f"measurements_p{now.year + now.month // 12}{now.month % 12 + 1:02d}"
    assert {this_month, following} <= _partitions(ctx)
