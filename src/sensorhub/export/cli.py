"""``sensorhub exports …``: export housekeeping from the shell."""

from __future__ import annotations

import typer

from sensorhub.cli_common import DataDir, ensure_schema, fail, open_database, settings_for
from sensorhub.config import SharedSecretMissing

exports_app = typer.Typer(no_args_is_help=True, help="Export files: delete expired ones.")


@exports_app.command("cleanup")
def cleanup(
    data_dir: DataDir = None,
) -> None:
    """Delete the files of expired exports from the export store (local folder or S3). A running server
    does this every 5 minutes; this command is for cron or for servers that are stopped."""
    from sensorhub.export.service import cleanup_expired
    from sensorhub.export.stores import store_from_settings

    settings = settings_for(data_dir)
    try:
        store = store_from_settings(settings)
    except SharedSecretMissing as e:
        fail(str(e))
    db = open_database(settings)
    ensure_schema(db)
    try:
        n = cleanup_expired(db, store, stale_after_seconds=settings.export_url_ttl_seconds)
    finally:
        db.dispose()
    typer.echo(f"deleted {n} expired export file(s)")
