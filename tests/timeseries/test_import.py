"""Importing CSV and Parquet files (service on both backends, CLI on SQLite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from sensorhub.cli import app as cli
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.errors import SensorhubError
from sensorhub.migrate import upgrade
from sensorhub.timeseries.importer import import_file
from tests.builders import World


def _points(ctx: AppContext) -> list[tuple[str, str, int, float]]:
    with ctx.db.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                text(
                    "SELECT e.entity_id, s.attribute, m.ts, m.value FROM measurements m JOIN series s ON s.id = m.series_id "
                    "JOIN entities e ON e.pk = s.entity_pk ORDER BY 1, 2, 3"
                )
            ).all()
        ]


def _setup(world: World) -> None:
    world.org("acme", ("main", "lab"))
    world.entity("acme", "main", "R1")
    world.entity("acme", "lab", "R2")


def test_long_csv_with_units_and_duplicates(ctx: AppContext, world: World, tmp_path: Path) -> None:
    _setup(world)
    f = tmp_path / "long.csv"
    f.write_text(
        "entity_id,attribute,timestamp,value,unit\n"
        "R1,temperature,2024-01-01T00:00:00Z,20.5,CEL\n"
        "R1,temperature,2024-01-01T01:00:00+01:00,21,CEL\n"  # the same instant: a duplicate
        "R2,humidity,2024-01-01 00:01:00,55,\n"
        "R1,temperature,2024-01-01T00:02:00Z,,\n"
    )
    with ctx.db.transaction() as s:
        report = import_file(s, f, "acme")
    assert (report.rows, report.accepted, report.duplicates, report.empty) == (4, 2, 1, 1)
    assert _points(ctx) == [
        ("R1", "temperature", 1704067200000000, 20.5),
        ("R2", "humidity", 1704067260000000, 55.0),
    ]
    with ctx.db.session() as s:
        assert s.execute(text("SELECT unit FROM series WHERE attribute = 'temperature'")).scalar() == "CEL"


def test_wide_parquet(ctx: AppContext, world: World, tmp_path: Path) -> None:
    _setup(world)
    ts = pa.array(np.arange(3) * 60_000_000 + 1704067200000000, pa.timestamp("us", tz="UTC"))
    f = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"timestamp": ts, "t": [1.0, None, 3.0], "rh": [4, 5, 6]}), f)
    with ctx.db.transaction() as s:
        report = import_file(s, f, "acme", "lab", "R2", chunk_rows=2)
    assert (report.accepted, report.empty) == (5, 1)
    assert report.series == {"R2.t": 2, "R2.rh": 3}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\nR1,t,2024-01-01T00:01:00Z,abc\n",
            "row 3: value 'abc'",
        ),
        (
            "entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\nR1,t,nope,2\n",
            "row 3: timestamp 'nope'",
        ),
        (
            "entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\nR1,t,2024-01-01T00:01:00Z,NaN\n",
            "row 3: value is nan",
        ),
        (
            "entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\nRX,t,2024-01-01T00:01:00Z,2\n",
            "entity 'RX' not found",
        ),
        ("a,b\n1,2\n", "expected columns entity_id"),
        # The attribute grammar and the time range of every ingest path (issue 10).
        (
            'entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\nR1,"t"")#",2024-01-01T00:01:00Z,2\n',
            "row 3: attribute 't\"\\)#' is not a valid attribute name",
        ),
        (
            "entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\nR1,t,9999-12-31T23:59:59Z,2\n",
            "row 3: timestamp 9999-12-31T23:59:59Z is outside the supported time range",
        ),
        (
            "entity_id,attribute,timestamp,value\nR1,t,1899-12-31T23:59:59Z,1\n",
            "row 2: timestamp 1899-12-31T23:59:59Z is outside",
        ),
        (
            'entity_id,attribute,timestamp,value\nR1,t,2024-01-01T00:00:00Z,1\n"R 1",t,2024-01-01T00:01:00Z,2\n',
            "row 3: entity_id 'R 1' is not a valid id",
        ),
    ],
)
def test_bad_files_import_nothing(
    ctx: AppContext, world: World, tmp_path: Path, content: str, message: str
) -> None:
    _setup(world)
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(SensorhubError, match=message), ctx.db.transaction() as s:
        import_file(s, f, "acme")
    assert _points(ctx) == []


def test_workspace_limits_the_entities(ctx: AppContext, world: World, tmp_path: Path) -> None:
    _setup(world)
    f = tmp_path / "x.csv"
    f.write_text("entity_id,attribute,timestamp,value\nR2,t,2024-01-01T00:00:00Z,1\n")
    with pytest.raises(SensorhubError, match="not found in workspace 'main'"), ctx.db.transaction() as s:
        import_file(s, f, "acme", "main")


def test_cli_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the embedded database of a data directory, as an operator would run it."""
    # The CLI exports SENSORHUB_DATA_DIR for the processes it starts; restore it afterwards.
    monkeypatch.setenv("SENSORHUB_DATA_DIR", str(tmp_path / "data"))
    settings = Settings(data_dir=tmp_path / "data", env="test")
    upgrade(Database(settings))
    ctx = AppContext.build(settings)
    world = World(ctx)
    _setup(world)
    f = tmp_path / "wide.csv"
    f.write_text("timestamp,temperature,humidity\n2024-01-01T00:00:00Z,1.5,40\n2024-01-01T00:01:00Z,2.5,\n")
    r = CliRunner().invoke(
        cli, ["import", str(f), "--org", "acme", "--entity", "R1", "--data-dir", str(settings.data_dir)]
    )
    assert r.exit_code == 0, r.output
    assert "3 points stored" in r.output and "1 empty cells" in r.output
    assert len(_points(ctx)) == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,temperature\n2024-01-01T00:05:00Z,1\n2024-01-01T00:06:00Z,x\n")
    r = CliRunner().invoke(
        cli, ["import", str(bad), "--org", "acme", "--entity", "R1", "--data-dir", str(settings.data_dir)]
    )
    assert r.exit_code == 2
    assert "row 3: temperature 'x' is not a number" in r.output and "nothing was imported" in r.output
    assert len(_points(ctx)) == 3
    ctx.db.dispose()


def test_wide_file_columns_follow_the_attribute_grammar(
    ctx: AppContext, world: World, tmp_path: Path
) -> None:
    _setup(world)
    ts = pa.array([1704067200000000], pa.timestamp("us", tz="UTC"))
    f = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"timestamp": ts, "ok": [1.0], "bad name": [2.0]}), f)
    with (
        pytest.raises(SensorhubError, match="column 'bad name' is not a valid attribute name"),
        ctx.db.transaction() as s,
    ):
        import_file(s, f, "acme", "lab", "R2")
    assert _points(ctx) == []
    typed = pa.array([1704067200000000, 2**62], pa.timestamp("us", tz="UTC"))  # a typed timestamp in 148108
    pq.write_table(pa.table({"timestamp": typed, "t": [1.0, 2.0]}), f)
    with pytest.raises(SensorhubError, match=r"row 2: timestamp .* is outside"), ctx.db.transaction() as s:
        import_file(s, f, "acme", "lab", "R2")
    assert _points(ctx) == []
