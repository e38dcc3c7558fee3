"""Which background jobs run: the one place they are wired (see :mod:`sensorhub.jobs`).

The same runner is started by the app's lifespan (``sensorhub serve``, unless
``SENSORHUB_EMBEDDED_WORKER=0``) and by ``sensorhub worker``. To add a job, add one line to
:func:`build_runner`.
"""

from __future__ import annotations

from sensorhub.context import AppContext
from sensorhub.jobs import JobRunner
from sensorhub.push.retention import prune_events


def build_runner(ctx: AppContext) -> JobRunner:
    runner = JobRunner(ctx.db)
    runner.register_periodic("push-outbox-retention", 3600, lambda: prune_events(ctx.db, ctx.settings))
    return runner
