"""Which background jobs run: the one place they are wired (see :mod:`sensorhub.jobs`).

The same runner is started by the app's lifespan (``sensorhub serve``, unless
``SENSORHUB_EMBEDDED_WORKER=0``) and by ``sensorhub worker``. To add a job, add one line to
:func:`build_runner`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sensorhub.audit import service as audit
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.jobs import JobRunner
from sensorhub.kit.time import to_us
from sensorhub.notices.invitations import run_invitation_notices
from sensorhub.push.connectors import ConnectorTarget
from sensorhub.push.credential_notices import queue_credential_notices
from sensorhub.push.delivery import DeliveryWorker, cursor_floor, enqueue
from sensorhub.push.retention import prune_events, prune_push_log
from sensorhub.push.subscription_target import SubscriptionTarget
from sensorhub.push.subscriptions import PERIODIC_CHECK_S, periodic_due
from sensorhub.push.targets import register_target
from sensorhub.timeseries.postgres import create_partitions_ahead
from sensorhub.tokens.expiry import run_expiry_notices

log = logging.getLogger("sensorhub.jobs")

NO_DATA_INTERVAL_S = 30


def build_runner(ctx: AppContext) -> JobRunner:
    runner = JobRunner(ctx.db)
    register_target(SubscriptionTarget())  # NGSI-LD subscriptions are delivered by the same worker
    worker = DeliveryWorker(ctx.db, ctx.settings, ctx.hub, runner.holder)
    runner.register_loop("push-delivery", worker.run)
    runner.register_periodic("push-no-data-rules", NO_DATA_INTERVAL_S, lambda: check_no_data(ctx))
    runner.register_periodic(
        "push-outbox-retention", 3600, lambda: prune_events(ctx.db, ctx.settings, cursor_floor(ctx.db) or 0)
    )
    runner.register_periodic(
        "ngsi-ld-periodic-notifications", PERIODIC_CHECK_S, lambda: periodic_notifications(ctx)
    )
    runner.register_periodic("push-delivery-retention", 3600, lambda: prune_push_log(ctx.db, ctx.settings))
    runner.register_periodic(
        "token-expiry-notices",
        ctx.settings.token_notice_interval_seconds,
        lambda: run_token_notices(ctx),
    )
    runner.register_periodic("invitation-notices", 60, lambda: run_invitation_notices(ctx.db, ctx.settings))
    runner.register_periodic("audit-retention", 3600, lambda: prune_audit(ctx))
    if ctx.db.dialect == "postgresql":
        runner.register_periodic("measurements-partitions-ahead", 3600, lambda: partitions_ahead(ctx))
        try:  # at start too: the periodic run comes one interval later
            partitions_ahead(ctx)
        except Exception:  # the database is not reachable yet: the periodic job tries again
            log.warning("could not create the coming months' measurement partitions yet", exc_info=True)
    return runner


def partitions_ahead(ctx: AppContext) -> list[str]:
    """PostgreSQL: this month's and next month's ``measurements`` partitions exist before live data
    needs them (:func:`sensorhub.timeseries.postgres.create_partitions_ahead`)."""
    created = create_partitions_ahead(ctx.db.engine, to_us(utcnow()))
    if created:
        log.info("created measurement partitions %s", ", ".join(created))
    return created


def run_token_notices(ctx: AppContext) -> int:
    """Expiry notices (UI, e-mail), then each one through the organisations' opted-in webhook
    connectors (docs/push.md#credential-notices); how many deliveries were queued."""
    run_expiry_notices(ctx.db, ctx.settings)
    with ctx.db.transaction() as s:
        return queue_credential_notices(s, ctx.settings, utcnow())


def prune_audit(ctx: AppContext) -> int:
    """Delete audit events past ``SENSORHUB_AUDIT_RETENTION_DAYS`` (0: keep them all)."""
    with ctx.db.transaction() as s:
        return audit.prune(s, ctx.settings.audit_retention_days, utcnow())


def periodic_notifications(ctx: AppContext, now: datetime | None = None) -> int:
    """NGSI-LD subscriptions with ``timeInterval``: those due get a delivery (sent with current values).
    Returns how many were queued."""
    now = now or utcnow()
    with ctx.db.session() as s:  # a read first: no write transaction while nothing is due
        if not periodic_due(s, now):
            return 0
    with ctx.db.transaction() as s:
        target = SubscriptionTarget()
        return len(enqueue(s, target.name, target.periodic(s, now, ctx.settings)))


def check_no_data(ctx: AppContext) -> None:
    """``no_data`` rules: devices silent too long go to firing (their deliveries are queued)."""
    with ctx.db.transaction() as s:
        target = ConnectorTarget()
        enqueue(s, target.name, target.no_data(s, utcnow(), ctx.settings))
