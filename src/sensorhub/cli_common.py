"""What every ``sensorhub`` command needs: settings for a data directory, the database on an
up-to-date schema, and a clean exit on errors. The root CLI and the sub-CLIs (``entities``,
``exports``) import it; it imports none of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.migrate import upgrade

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (overrides SENSORHUB_DATA_DIR)", show_default=False),
]


def settings_for(data_dir: Path | None) -> Settings:
    """Settings for ``data_dir`` (else from the environment), with a private umask for this process."""
    # Everything this process writes (database, secret key, exports, logs) is for this user only;
    # the data directory itself is also created 0700 (Settings.ensure_data_dir).
    os.umask(0o077)
    if data_dir is not None:
        os.environ["SENSORHUB_DATA_DIR"] = str(data_dir)
        return Settings(data_dir=data_dir)
    return Settings()


def open_database(settings: Settings) -> Database:
    return Database(settings)


def ensure_schema(db: Database) -> None:
    """Create or upgrade the schema before a command touches the database."""
    upgrade(db)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
