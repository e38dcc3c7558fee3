"""``sensorhub entities …``: entity administration from the shell (no session needed, like ``admin``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sensorhub.cli_common import DataDir, ensure_schema, fail, open_database, settings_for

entities_app = typer.Typer(no_args_is_help=True, help="NGSI-LD entities: import from files.")


@entities_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="A JSON array of NGSI-LD entities (normalized or keyValues)")],
    org: Annotated[str, typer.Option(help="Organisation slug or id")],
    workspace: Annotated[str, typer.Option(help="Workspace slug or id")],
    upsert: Annotated[bool, typer.Option("--upsert", help="Replace entities that already exist")] = False,
    data_dir: DataDir = None,
) -> None:
    """Import entities into one workspace, all or nothing: an invalid element aborts the whole import and
    the error names its (0-based) index."""
    from sensorhub.accounts import service as accounts
    from sensorhub.entities.service import import_entities
    from sensorhub.errors import SensorhubError

    try:
        items = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"cannot read {file}: {e.strerror}")
    except json.JSONDecodeError as e:
        fail(f"{file} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
    settings = settings_for(data_dir)
    db = open_database(settings)
    ensure_schema(db)
    try:
        with db.transaction() as s:
            o = accounts.get_org(s, org)
            ws = accounts.get_workspace(s, o, workspace)
            result = import_entities(s, o, ws, items, upsert=upsert)
    except SensorhubError as e:
        fail(f"nothing imported: {e.message}")
    finally:
        db.dispose()
    typer.echo(f"imported {result.created} new and {result.updated} replaced entities into {org}/{workspace}")
