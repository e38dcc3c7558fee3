"""``sensorhub exports …``: export housekeeping from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

exports_app = typer.Typer(no_args_is_help=True, help="Export files: delete expired ones.")


@exports_app.command("cleanup")
def cleanup(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (overrides SENSORHUB_DATA_DIR)")
    ] = None,
) -> None:
    """Delete the files of expired exports from the export store (local folder or S3). A running server
    does this every 5 minutes; this command is for cron or for servers that are stopped."""
    from sensorhub.cli import _db, _ensure_schema, settings_for
    from sensorhub.export.service import cleanup_expired
    from sensorhub.export.stores import store_from_settings

    settings = settings_for(data_dir)
    db = _db(settings)
    _ensure_schema(db)
    try:
        n = cleanup_expired(
            db, store_from_settings(settings), stale_after_seconds=settings.export_url_ttl_seconds
        )
    finally:
        db.dispose()
    typer.echo(f"deleted {n} expired export file(s)")
