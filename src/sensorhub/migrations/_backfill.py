"""What the data-filling migrations share (0024, 0026, 0027): reading a table in key order a batch at a
time, and a stored timestamp as microseconds since the epoch.

Frozen like the migrations that import it: a revision must do the same on every database it ever runs
on, so nothing here may change what it does. A later migration that needs something else adds a new
function (or keeps its own code); it never edits these.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple

import sqlalchemy as sa

BATCH = 1000

Columns = TypeVarTuple("Columns")


def batches(
    conn: sa.Connection, query: sa.Select[int, *Columns], key: sa.ColumnElement[int]
) -> Iterator[Sequence[sa.Row[int, *Columns]]]:
    """The rows of ``query``, ``BATCH`` at a time in ascending ``key`` (an integer, the first column
    selected). Each batch is read after the caller is done with the one before, starting after its last
    key, so the caller may write between batches."""
    last = 0
    while True:
        batch = conn.execute(query.where(key > last).order_by(key).limit(BATCH)).all()
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def epoch_us(dt: Any) -> int:
    """A timestamp as read from the database, in µs since the epoch: a naive one is UTC, an ISO string
    (how SQLite may hand it back) is parsed, a missing one is now."""
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    if dt is None:
        dt = datetime.now(UTC)
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return int((dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))
