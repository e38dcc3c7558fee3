"""Named background jobs: one runner for the whole product.

The runner runs inside ``sensorhub serve`` (the embedded mode: a lifespan step of the app, see
``sensorhub.app``) and as a process of its own, ``sensorhub worker`` (production: the API processes
are then started with ``SENSORHUB_EMBEDDED_WORKER=0``). Which jobs exist is wired in one place,
:func:`sensorhub.background.build_runner`; a domain contributes a plain function and one line there::

    runner.register_periodic("token-expiry-notices", 3600, lambda: notices.send_due(ctx))
    runner.register_loop("push-delivery", lambda stop: worker.run(ctx, stop))

Two kinds of job:

- **Periodic** (:meth:`JobRunner.register_periodic`): ``fn()`` every ``interval_s`` seconds, on *one*
  process of the deployment per interval however many run a runner: each run first takes the job's
  lease in ``job_leases`` (a row per job name; taken when its ``lease_until`` has passed, in a write
  transaction — ``SELECT … FOR UPDATE`` on PostgreSQL, the single writer on SQLite), so two workers
  never run the same periodic job at once. ``fn`` opens its own transactions (``Database.transaction()``)
  and must be idempotent (a crash mid-run means it runs again at the next interval). An exception is
  logged and recorded (``last_error``); the job runs again at the next interval.
- **Loops** (:meth:`JobRunner.register_loop`): ``fn(stop)`` runs on its own thread in every runner
  until ``stop`` (a :class:`threading.Event`) is set, and is restarted (after a pause) if it raises.
  Loops that share work between processes coordinate through their own rows (the push delivery loop
  claims deliveries with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and leases).

Everything runs on threads (jobs use the synchronous database API); :meth:`JobRunner.start` and
:meth:`JobRunner.stop` bracket them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, Database, UTCDateTime, utcnow

log = logging.getLogger("sensorhub.jobs")

__all__ = ["JobLease", "JobRunner"]


class JobLease(Base):
    """Which process runs a periodic job, until when, and how its last run went."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


@dataclass
class _Job:
    name: str
    interval_s: float
    periodic: Callable[[], object] | None = None
    loop: Callable[[threading.Event], object] | None = None
    runs: int = 0
    last_error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


def holder_id() -> str:
    """This process, as written into leases: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobRunner:
    """Runs the registered jobs on threads while started (see the module documentation)."""

    def __init__(self, db: Database, holder: str | None = None) -> None:
        self.db = db
        self.holder = holder or holder_id()
        self._jobs: dict[str, _Job] = {}
        self._stop = threading.Event()
        self._started = False

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def register_periodic(self, name: str, interval_s: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` every ``interval_s`` seconds on one process of the deployment at a time.

        ``name`` identifies the job's lease (stable across releases: renaming it lets old and new
        workers run it side by side once). ``fn`` takes no argument, opens its own transactions and is
        idempotent; it runs on a thread of the runner (not the event loop), first one interval after
        the start if no process ran it within the last interval, else when that interval ends."""
        self._add(_Job(name, float(interval_s), periodic=fn))

    def register_loop(self, name: str, fn: Callable[[threading.Event], object]) -> None:
        """Run ``fn(stop)`` on its own thread in every runner until ``stop`` is set (restarted after 1 s
        if it raises). For work that coordinates through its own rows, e.g. the delivery loop."""
        self._add(_Job(name, 0.0, loop=fn))

    def _add(self, job: _Job) -> None:
        if self._started:
            raise RuntimeError("register jobs before the runner starts")
        if job.name in self._jobs:
            raise ValueError(f"a job named {job.name!r} is registered already")
        self._jobs[job.name] = job

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stop.clear()
        for job in self._jobs.values():
            target = self._run_periodic if job.periodic is not None else self._run_loop
            job.thread = threading.Thread(
                target=target, args=(job,), name=f"sensorhub-job-{job.name}", daemon=True
            )
            job.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every job to stop and wait (at most ``timeout`` seconds in all) for their threads."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for job in self._jobs.values():
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
                job.thread = None
        self._started = False

    def wait(self) -> None:
        """Block until :meth:`stop` is called (``sensorhub worker``)."""
        self._stop.wait()

    def status(self) -> dict[str, dict[str, object]]:
        return {
            j.name: {"kind": "periodic" if j.periodic else "loop", "runs": j.runs, "last_error": j.last_error}
            for j in self._jobs.values()
        }

    def run_once(self, name: str) -> bool:
        """Run periodic job ``name`` now if its lease can be taken (tests, ``sensorhub worker --once``);
        True if it ran."""
        job = self._jobs[name]
        return self._tick(job)

    # --- periodic jobs --------------------------------------------------------------------------

    def _run_periodic(self, job: _Job) -> None:
        while not self._stop.is_set():
            ran = False
            try:
                ran = self._tick(job)
            except Exception:  # a broken database: log, try again next interval
                log.exception("job %s could not take its lease", job.name)
            # Another process holds the lease: look again soon, to take over when its interval ends.
            self._stop.wait(job.interval_s if ran else min(job.interval_s, max(1.0, job.interval_s / 10)))

    def _tick(self, job: _Job) -> bool:
        if not self._take_lease(job):
            return False
        assert job.periodic is not None
        error: str | None = None
        try:
            job.periodic()
        except Exception as e:
            error = f"{type(e).__name__}: {e}"[:1000]
            log.exception("job %s failed", job.name)
        job.runs += 1
        job.last_error = error
        self._finish(job, error)
        return True

    def _take_lease(self, job: _Job) -> bool:
        now = utcnow()
        with self.db.transaction() as s:
            q = select(JobLease).where(JobLease.name == job.name)
            if self.db.dialect == "postgresql":
                q = q.with_for_update()
            lease = s.scalars(q).first()
            if lease is None:
                s.add(
                    JobLease(
                        name=job.name,
                        holder=self.holder,
                        lease_until=now + timedelta(seconds=job.interval_s),
                        last_started_at=now,
                    )
                )
                try:
                    s.flush()
                except IntegrityError:  # another process created it first
                    s.rollback()
                    return False
                return True
            if lease.lease_until > now:
                return False
            lease.holder = self.holder
            lease.lease_until = now + timedelta(seconds=job.interval_s)
            lease.last_started_at = now
            return True

    def _finish(self, job: _Job, error: str | None) -> None:
        try:
            with self.db.transaction() as s:
                lease = s.get(JobLease, job.name)
                if lease is not None and lease.holder == self.holder:
                    lease.last_finished_at = utcnow()
                    lease.last_error = error
        except Exception:
            log.exception("job %s: could not record its run", job.name)

    # --- loops ----------------------------------------------------------------------------------

    def _run_loop(self, job: _Job) -> None:
        assert job.loop is not None
        while not self._stop.is_set():
            try:
                job.loop(self._stop)
                job.runs += 1
            except Exception as e:
                job.last_error = f"{type(e).__name__}: {e}"[:1000]
                log.exception("job %s failed; restarting it in 1 s", job.name)
                self._stop.wait(1.0)
