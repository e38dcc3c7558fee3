"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from anyio import to_thread
from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeDecorator

from sensorhub.config import DATA_FILE_MODE, Settings, restrict_mode
from sensorhub.kit.patterns import sqlite_regexp
from sensorhub.kit.time import observed_us
from sensorhub.replica import Replica


class Clock:
    """The server's "now". Tests move it forward (:meth:`advance`) to let days pass without sleeping;
    expiry checks, notices, rotation grace and every ``created_at`` read it through :func:`utcnow`."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def reset(self) -> None:
        self.offset = timedelta(0)


CLOCK = Clock()


def utcnow() -> datetime:
    return CLOCK.now()


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC on every backend and always returned timezone-aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def make_engine(settings: Settings) -> Engine:
    url = settings.resolved_database_url
    lock_timeout = settings.db_lock_timeout_seconds
    if url.startswith("sqlite"):
        settings.ensure_data_dir()
        # A pool of connections (each set up once, below) rather than a connection per request:
        # opening a connection and running the PRAGMAs costs more than a typical cached read.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_timeout},
            pool_size=8,
            max_overflow=24,
            pool_pre_ping=False,
        )

        db_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        existed = db_file is not None and db_file.exists()

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The database file (and the -wal/-shm files SQLite creates with the same mode) is for this
            # user only, whatever the umask; cheap, and only on a new pooled connection.
            if db_file is not None:
                restrict_mode(db_file, DATA_FILE_MODE, warn=existed)
                for suffix in ("-wal", "-shm"):
                    restrict_mode(db_file.with_name(db_file.name + suffix), DATA_FILE_MODE, warn=existed)
            # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
            # The Python driver's implicit BEGIN is disabled so that we issue BEGIN ourselves (below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # A lock wait longer than this fails ("database is locked"), answered 503 + Retry-After.
            cur.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
            cur.close()
            # Users' regular expressions run in RE2 (linear time), never in Python's backtracking `re`
            # (which SQLAlchemy registers as REGEXP); see sensorhub.kit.patterns.
            dbapi_conn.create_function("regexp", 2, sqlite_regexp, deterministic=True)
            dbapi_conn.create_function("sensorhub_observed_us", 1, observed_us, deterministic=True)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Write transactions take the write lock up front (BEGIN IMMEDIATE): a deferred transaction
            # that reads and then writes can fail with SQLITE_BUSY when another writer committed in
            # between, which waiting cannot fix. Read transactions stay deferred and never block.
            if conn.get_execution_options().get("sqlite_immediate"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")
            # Set by a request session (after_begin, below): take the write lock at the first write.
            conn.info["sqlite_promote_on_write"] = False
            # Rows changed so far by this connection: a later count that differs means the transaction
            # wrote (the time-series store then keeps its reads on this connection; see sqlite.py).
            conn.info["sqlite_changes_at_begin"] = conn.connection.driver_connection.total_changes

        @event.listens_for(engine, "before_cursor_execute")
        def _sqlite_promote(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
            if conn.info.get("sqlite_promote_on_write") and _is_write(statement):
                conn.info["sqlite_promote_on_write"] = False
                _promote(conn)

        return engine
    # lock_timeout: a statement waiting longer for a row or table lock fails (SQLSTATE 55P03), which
    # is answered 503 + Retry-After instead of holding the request (and its pool slot) indefinitely.
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={"options": f"-c lock_timeout={int(lock_timeout * 1000)}"},
    )


_WRITE_VERBS = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT", "CREATE", "DROP", "ALTER", "WITH"}
)


_CTE_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def _is_write(statement: str) -> bool:
    head = statement.lstrip()[:10].split(None, 1)
    if not head or head[0].upper() not in _WRITE_VERBS:
        return False
    return head[0].upper() != "WITH" or _CTE_WRITE.search(statement) is not None


def take_write_lock(session: Session) -> None:
    """On SQLite, make sure the session's transaction holds the write lock before the caller reads what
    it is about to change (for code that writes through the raw DBAPI connection, which the statement
    hook in ``make_engine`` does not see). A no-op on PostgreSQL and for write sessions."""
    conn = session.connection()
    if conn.dialect.name == "sqlite" and conn.info.get("sqlite_promote_on_write"):
        conn.info["sqlite_promote_on_write"] = False
        _promote(conn)


def _promote(conn: Any) -> None:
    """Turn the connection's deferred SQLite transaction, which has not written yet, into a write
    transaction: end the read snapshot and BEGIN IMMEDIATE (waiting up to the busy timeout).

    Upgrading the deferred transaction in place instead would fail with SQLITE_BUSY whenever another
    writer committed after our first read, which no waiting can fix. Reads before this point saw an
    earlier snapshot: the same guarantee as PostgreSQL's READ COMMITTED, under which the code already
    runs there; everything from the first write on is serialised with every other writer."""
    raw = conn.connection.driver_connection
    if raw.total_changes != conn.info.get("sqlite_changes_at_begin"):
        return  # already wrote: it holds the write lock
    raw.execute("COMMIT")  # nothing written: only ends the snapshot
    raw.execute("BEGIN IMMEDIATE")


T = TypeVar("T")


class Database:
    """Owns the engine and hands out sessions; one request = one session = one transaction.

    Transactions are committed at one edge each, never inside services: a request's by its session
    dependency (``sensorhub.api.deps.get_db``), a CLI command's or a background job's by
    :meth:`transaction`. ``auth_listeners`` run after every committed transaction that called
    :func:`auth_changed` (the app context registers its cache invalidation there)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.replica = _replica(settings, self.engine)
        self.auth_listeners: list[Callable[[], None]] = []
        # Run with the newest outbox event id after a transaction that recorded push events commits
        # (sensorhub.push.events; the app context registers its event hub).
        self.event_listeners: list[Callable[[int], None]] = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction the caller commits; rolled back on error, always closed.
        Used as is for reads; writers use :meth:`transaction` (or the request's session)."""
        s = self.sessionmaker()
        s.info[_AUTH_LISTENERS] = self.auth_listeners
        s.info[EVENT_LISTENERS] = self.event_listeners
        try:
            yield s
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def request_session(self) -> Iterator[Session]:
        """The session of one request, committed here once when the block ends without an error and
        rolled back otherwise (services and endpoints never commit).

        On SQLite it begins deferred (no lock, so a public or refused request never holds the
        database's one write lock) and takes the write lock with BEGIN IMMEDIATE at its first write
        (see ``_promote``)."""
        with self.session() as s:
            s.info["sqlite_promote_on_write"] = True
            yield s
            s.commit()

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session for a transaction that will write: on SQLite it holds the write lock from its
        first statement (see ``_sqlite_begin``); the caller commits."""
        with self.session() as s:
            s.connection(execution_options={"sqlite_immediate": True})
            yield s

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction committed on success, rolled back on error: the edge of a CLI command or
        of a named job (an export's metadata, an import, a usage write) that runs outside a request's
        session, e.g. while a response streams."""
        with self.write_session() as s:
            yield s
            s.commit()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """The session of a read-only transaction, never committed: on the read replica while one is
        configured and within its lag bound (:mod:`sensorhub.replica`), else on the primary.

        Only what may read slightly old data takes it: a request's data reads that write nothing in the
        same request (reads that must see the request's own writes use its request session, on the
        primary), never credentials, sessions or revocations. On PostgreSQL the transaction is READ
        ONLY wherever it runs, so a write attempted here fails on the primary as it would on the replica."""
        replica = self._usable_replica()
        with self._read_on(replica) as s:
            yield s

    async def read_off_loop(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` with a read session (:meth:`read_session`) in one worker-thread hop: the database
        work of an ``async`` route (hot read paths: no write lock, no commit; authentication stays
        async). A read the replica fails for want of answering (connection lost, cancelled by
        recovery) is run again on the primary."""

        def work() -> T:
            replica = self._usable_replica()
            if replica is not None:
                try:
                    with self._read_on(replica) as s:
                        return fn(s)
                except OperationalError:
                    pass  # _read_on took the replica out of use; the primary answers
            with self._read_on(None) as s:
                return fn(s)

        return await to_thread.run_sync(work)

    def _usable_replica(self) -> Replica | None:
        r = self.replica
        return r if r is not None and r.state().usable else None

    @contextmanager
    def _read_on(self, replica: Replica | None) -> Iterator[Session]:
        bind = replica.engine if replica is not None else self.engine
        with self.session() as s:
            s.bind = bind
            if replica is None and bind.dialect.name == "postgresql":
                # BEGIN READ ONLY on the primary. Not on the replica, a standby: read-only by nature, and
                # the reset of this option when the connection returns to the pool (READ WRITE) is refused there.
                s.connection(execution_options={"postgresql_readonly": True})
            try:
                yield s
            except OperationalError as e:
                if replica is not None:
                    replica.unreachable(e)
                raise

    def dispose(self) -> None:
        self.engine.dispose()
        if self.replica is not None:
            self.replica.dispose()


def _replica(settings: Settings, primary: Engine) -> Replica | None:
    url = settings.resolved_replica_url
    if url is None:
        return None
    if primary.dialect.name != "postgresql" or not url.startswith("postgresql"):
        raise ValueError(
            "SENSORHUB_DATABASE_REPLICA_URL is a PostgreSQL streaming replica of a PostgreSQL "
            "SENSORHUB_DATABASE_URL: both must be postgresql:// URLs"
        )
    return Replica(settings, url, primary)


_AUTH_LISTENERS = "auth_listeners"
EVENT_LISTENERS = "event_listeners"
_AUTH_CHANGED = "auth_changed"


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction has committed (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(callback)


def auth_changed(session: Session) -> None:
    """Mark the session's transaction as changing what a credential may do (credentials, users,
    memberships, grants, workspaces, policies). Once it commits, the database's ``auth_listeners`` run
    once (cached credentials are dropped here and in every other process); if it rolls back, nothing
    runs. Services call this instead of taking an invalidation callback."""
    if session.info.get(_AUTH_CHANGED):
        return
    session.info[_AUTH_CHANGED] = True
    listeners: list[Callable[[], None]] = session.info.get(_AUTH_LISTENERS, [])
    on_commit(session, lambda: _run_all(listeners))


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for cb in list(callbacks):
        cb()


@event.listens_for(Session, "after_begin")
def _mark_promotable(session: Session, _transaction: Any, connection: Any) -> None:
    if session.info.get("sqlite_promote_on_write") and connection.dialect.name == "sqlite":
        connection.info["sqlite_promote_on_write"] = True


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    session.info.pop(_AUTH_CHANGED, None)
    callbacks = session.info.pop("after_commit", [])
    for cb in callbacks:
        cb()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AUTH_CHANGED, None)
    session.info.pop("after_commit", None)


# --- statements run through the driver ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DriverSQL:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order (qmark), None for named (pyformat)
    params: dict[str, Any]  # the values compiled into the statement, overridden by a call's values


_DRIVER_SQL: dict[tuple[str, Hashable], _DriverSQL] = {}
_DRIVER_SQL_MAX = 1024


def _compile_for_driver(stmt: ClauseElement, dialect: Dialect) -> _DriverSQL:
    compiled = cast(SQLCompiler, stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))
    for name, bind in compiled.binds.items():
        if bind.type.bind_processor(dialect) is not None:  # the driver would get unconverted values
            raise TypeError(f"parameter {name!r} of type {bind.type!r} needs SQLAlchemy's conversion")
    positions = tuple(compiled.positiontup or ()) if compiled.positional else None
    return _DriverSQL(compiled.string, positions, dict(compiled.construct_params() or {}))


def driver_rows(
    s: Session, key: Hashable, build: Callable[[], ClauseElement], values: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """The rows of a Core statement as the DBAPI driver makes them (plain tuples, no SQLAlchemy result
    processing), run in ``s``'s transaction. The statement is built by ``build()`` and compiled once per
    ``(key, dialect)``: ``key`` must name everything ``build`` depends on except the ``values`` of its
    ``bindparam``\\ s (given a placeholder value when built). For hot reads whose columns need no type
    conversion (ints, floats, strings; cast JSON to text): building, compiling and the row layer of an
    SQLAlchemy statement cost more than the query itself there."""
    conn = s.connection()
    dialect = conn.dialect
    cache_key = (dialect.name, key)
    compiled = _DRIVER_SQL.get(cache_key)
    if compiled is None:
        if len(_DRIVER_SQL) >= _DRIVER_SQL_MAX:
            _DRIVER_SQL.clear()
        compiled = _DRIVER_SQL[cache_key] = _compile_for_driver(build(), dialect)
    params = {**compiled.params, **values} if values else compiled.params
    cur = conn.connection.cursor()
    try:
        if compiled.positions is None:
            cur.execute(compiled.sql, params)
        else:
            cur.execute(compiled.sql, tuple(params[n] for n in compiled.positions))
        return cast(list[tuple[Any, ...]], cur.fetchall())
    finally:
        cur.close()
