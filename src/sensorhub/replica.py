"""A PostgreSQL streaming replica for read-only transactions, used only while it is close enough.

``SENSORHUB_DATABASE_REPLICA_URL`` names a hot standby of ``SENSORHUB_DATABASE_URL``. The read-only
transactions of requests (:meth:`sensorhub.db.Database.read_session`) run there while its replay lag is
at most ``SENSORHUB_DATABASE_REPLICA_MAX_LAG_SECONDS``; every other transaction — credentials and their
revocation, sessions, anything that writes and whatever it reads first — runs on the primary.

The lag is measured, at most every ``SENSORHUB_DATABASE_REPLICA_CHECK_SECONDS``, by comparing the
primary's WAL position with what the replica has replayed: when the replica has replayed everything the
primary had written, the lag is 0; otherwise it is the time since the latest moment whose state the
replica is known to hold — the commit it replayed last (``pg_last_xact_replay_timestamp()``), or an
earlier check at which the primary's WAL position is one the replica has replayed since, both on the
primary's clock. It is an upper bound, so a replica is never believed closer than it is. A replica that
does not answer, is not in recovery (promoted: no longer a copy of this primary), or lags more than the
bound is not used until a later check says otherwise; each change of state is logged once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine

from sensorhub import metrics
from sensorhub.config import Settings

log = logging.getLogger("sensorhub.replica")


@dataclass(frozen=True)
class ReplicaState:
    """What the last check found: whether reads may use the replica, its lag, and why not."""

    usable: bool
    lag_seconds: float | None  # None: not measured (unreachable)
    lag_bytes: int | None
    reason: str
    checked_at: float = -math.inf  # time.monotonic()


def _lsn(text: str) -> int:
    """A WAL position (``16/B374D848``) as a byte offset."""
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def _unreachable(e: BaseException) -> str:
    return f"unreachable ({type(getattr(e, 'orig', None) or e).__name__})"


def _kind(st: ReplicaState) -> str:
    return st.reason.split(" ", 1)[0]


def _first_line(e: BaseException) -> str:
    """The driver's message (no SQL, no URL: a connection error names host and port, never a password)."""
    inner = getattr(e, "orig", None) or e
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0] if lines else ''}"


class Replica:
    """The replica's engine and its lag check, shared by the threads of one process."""

    def __init__(self, settings: Settings, url: str, primary: Engine) -> None:
        self.engine = create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=True,
            # A replica host that does not answer costs a read at most this long before the primary serves it.
            connect_args={"connect_timeout": 2},
        )
        self.primary = primary
        self.max_lag = settings.database_replica_max_lag_seconds
        self.interval = settings.database_replica_check_seconds
        self._state = ReplicaState(False, None, None, "not checked yet")
        self._checking = threading.Lock()
        # The primary's WAL position and clock at recent checks (for _staleness).
        self._positions: deque[tuple[int, datetime]] = deque(maxlen=64)

    def state(self) -> ReplicaState:
        """The last check's verdict, checked again first when it is older than the interval (by one
        thread: the others meanwhile go by the previous verdict)."""
        st = self._state
        if time.monotonic() - st.checked_at < self.interval or not self._checking.acquire(blocking=False):
            return st
        try:
            new = self.check()
        finally:
            self._checking.release()
        return new

    def check(self) -> ReplicaState:
        """Measure the replica now (and remember it)."""
        new, detail = self._measure()
        self._adopt(new, detail)
        return new

    def unreachable(self, e: BaseException) -> None:
        """A read on the replica failed for want of the replica: stop using it until the next check."""
        self._adopt(ReplicaState(False, None, None, _unreachable(e), time.monotonic()), _first_line(e))

    def probe(self) -> dict[str, Any]:
        """The ``/readyz`` entry (checked now): a replica out of use is *degraded*, not an error, since
        the primary serves its reads. Public: the lag and why, never the replica's address."""
        st = self.check()
        out: dict[str, Any] = {"status": "ok" if st.usable else "degraded", "in_use": st.usable}
        if st.lag_seconds is not None and math.isfinite(st.lag_seconds):
            out["lag_seconds"] = round(st.lag_seconds, 3)
        if st.lag_bytes is not None:
            out["lag_bytes"] = st.lag_bytes
        out["max_lag_seconds"] = self.max_lag
        if not st.usable:
            out["reason"] = st.reason
        return out

    def _adopt(self, new: ReplicaState, detail: str = "") -> None:
        old, self._state = self._state, new
        if new.lag_seconds is not None:
            metrics.db_replica_lag.set(new.lag_seconds)
        metrics.db_replica_in_use.set(1 if new.usable else 0)
        if (new.usable, _kind(new)) == (old.usable, _kind(old)):
            return  # logged when the state changes, not at every check
        if new.usable:
            log.info("read replica in use (replay lag %.3f s)", new.lag_seconds or 0.0)
        else:
            log.warning(
                "read replica not used, reads go to the primary: %s%s",
                new.reason,
                f": {detail}" if detail else "",
            )

    def _measure(self) -> tuple[ReplicaState, str]:
        """The replica's state, and for the log what stopped the check (if anything did)."""
        now = time.monotonic()
        try:
            with self.primary.connect() as c:
                primary_lsn, primary_clock = c.exec_driver_sql(
                    "SELECT pg_current_wal_lsn()::text, clock_timestamp()"
                ).one()
            with self.engine.connect() as c:
                recovering, replayed, replayed_at = c.exec_driver_sql(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()"
                ).one()
        except Exception as e:  # whatever stops the check (refused, timeout, auth): the replica is not used
            return ReplicaState(False, None, None, _unreachable(e), now), _first_line(e)
        if not recovering or replayed is None:
            return ReplicaState(False, None, None, "not a standby (pg_is_in_recovery() is false)", now), ""
        position, replayed_at_lsn = _lsn(primary_lsn), _lsn(replayed)
        behind = max(0, position - replayed_at_lsn)
        lag = 0.0 if behind == 0 else self._staleness(replayed_at_lsn, replayed_at, primary_clock)
        self._positions.append((position, primary_clock))
        if lag > self.max_lag:
            why = f"lagging ({lag:.1f} s behind, {behind} bytes; bound {self.max_lag:g} s)"
            return ReplicaState(False, lag, behind, why, now), ""
        return ReplicaState(True, lag, behind, "ok", now), ""

    def _staleness(self, replayed: int, replayed_at: datetime | None, now: datetime) -> float:
        """How old, at most, the replica's data is (seconds): the replica holds everything the primary had
        at the last commit it replayed, and everything the primary had at an earlier check whose WAL
        position it has replayed since; the later of the two moments is the bound. (The commit alone
        would make a replica that is a few bytes behind after an idle hour look an hour old.)"""
        seen = [at for position, at in list(self._positions) if position <= replayed]
        bound = _seconds_since(replayed_at, now)
        return min(bound, (now - max(seen)).total_seconds()) if seen else bound

    def dispose(self) -> None:
        self.engine.dispose()


def _seconds_since(replayed_at: datetime | None, now: datetime) -> float:
    """Seconds from the last replayed commit to the primary's clock; infinite when none was replayed."""
    return math.inf if replayed_at is None else max(0.0, (now - replayed_at).total_seconds())
