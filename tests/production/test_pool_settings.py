"""PostgreSQL: the connection pool of each process is sized by the settings (docs/configuration.md)."""

from __future__ import annotations

import pytest

from sensorhub.config import Settings
from sensorhub.db import Database


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_pool_is_sized_by_the_settings(backend: str, settings: Settings) -> None:
    sized = settings.model_copy(update={"db_pool_size": 3, "db_max_overflow": 7})
    db = Database(sized)
    try:
        assert db.engine.pool.size() == 3  # type: ignore[attr-defined]
        assert db.engine.pool._max_overflow == 7  # type: ignore[attr-defined]
        with db.session() as s:  # and it still serves
            assert s.connection().exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        db.engine.dispose()


def test_the_pool_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="db_pool_size"):
        Settings(db_pool_size=0)
