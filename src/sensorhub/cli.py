"""The ``sensorhub`` command line."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sensorhub.cli_common import DataDir, settings_for
from sensorhub.cli_common import ensure_schema as _ensure_schema
from sensorhub.cli_common import fail as _fail
from sensorhub.cli_common import open_database as _db
from sensorhub.config import Settings
from sensorhub.entities.cli import entities_app
from sensorhub.export.cli import exports_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from sensorhub.accounts.models import User

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="sensorhub: sensor data behind scoped, revocable tokens."
)
admin = typer.Typer(no_args_is_help=True, help="Accounts and tokens, from the shell (no session needed).")
app.add_typer(admin, name="admin")
app.add_typer(entities_app, name="entities")
app.add_typer(exports_app, name="exports")


@app.command()
def init(data_dir: DataDir = None) -> None:
    """Create or upgrade the database schema."""
    from sensorhub.migrate import current_revision, upgrade

    settings = settings_for(data_dir)
    db = _db(settings)
    if not settings.serves_several_hosts:
        settings.resolved_secret_key  # noqa: B018  (generates the secret key on first run)
    upgrade(db)
    typer.echo(f"database ready at revision {current_revision(db)} ({db.dialect})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="debug|info|warning|error")] = "info",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log as JSON lines")] = False,
    ssl_certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM)")] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not upgrade the schema at start")
    ] = False,
    mqtt_listen: MqttListen = None,
    no_mqtt: NoMqtt = False,
    data_dir: DataDir = None,
) -> None:
    """Serve the API (and web UI), with the embedded MQTT broker (docs/mqtt.md)."""
    from sensorhub.config import SharedSecretMissing

    settings = settings_for(data_dir)
    try:
        settings.check_secret_key()
    except SharedSecretMissing as e:
        _fail(str(e))
    _embedded_mqtt(settings, mqtt_listen, no_mqtt, workers)
    if not no_migrate:
        from sensorhub.migrate import upgrade

        upgrade(_db(settings))
    _run_server(settings, host, port, workers, log_level, json_logs, ssl_certfile, ssl_keyfile)


MqttListen = Annotated[
    str | None,
    typer.Option(
        "--mqtt-listen",
        help="host:port of the embedded MQTT broker (default SENSORHUB_MQTT_LISTEN, else 127.0.0.1:1883)",
    ),
]
NoMqtt = Annotated[bool, typer.Option("--no-mqtt", help="Do not run the embedded MQTT broker")]


def _default_mqtt_listen(first: int = 1883) -> str:
    """127.0.0.1:1883, MQTT's port; when something else listens there already (a system Mosquitto, say),
    the next free port up to 1899, said on the console. Only the default moves: an address asked for
    (--mqtt-listen, SENSORHUB_MQTT_LISTEN) that is taken stops the server with a clear message."""
    for port in range(first, first + 17):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port != first:
            typer.echo(
                f"MQTT: 127.0.0.1:{first} is in use; the embedded broker listens on 127.0.0.1:{port}",
                err=True,
            )
        return f"127.0.0.1:{port}"
    _fail(
        f"no free port for the embedded MQTT broker on 127.0.0.1:{first}-{first + 16}: "
        "use --mqtt-listen or --no-mqtt"
    )


def _embedded_mqtt(settings: Settings, listen: str | None, off: bool, workers: int) -> None:
    """Turn the embedded broker on for the server process (a lifespan step), or off."""
    names = ("mqtt_listen", "mqtt_tls_listen", "mqtt_ws_listen", "mqtt_wss_listen")
    if off:
        for name in names:
            os.environ[f"SENSORHUB_{name.upper()}"] = ""
        return
    asked = listen or settings.mqtt_listen or any(getattr(settings, n) for n in names[1:])
    if workers > 1:
        if asked:
            _fail(
                "the embedded MQTT broker runs in one process: serve with --workers 1, or with --no-mqtt "
                "and a production broker (docs/mqtt.md)"
            )
        typer.echo("MQTT: the embedded broker runs with --workers 1 only; serving without it", err=True)
        return _embedded_mqtt(settings, None, True, workers)
    os.environ["SENSORHUB_MQTT_LISTEN"] = listen or settings.mqtt_listen or _default_mqtt_listen()


def _run_server(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    json_logs: bool,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    import uvicorn

    from sensorhub.logs import configure_logging, dict_config

    configure_logging(log_level.upper(), json_logs, settings.token_prefix)
    os.environ["SENSORHUB_DATA_DIR"] = str(settings.data_dir)
    uvicorn.run(
        "sensorhub.app:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # Applied in every worker process too (configure_logging above only covers this one).
        log_config=dict_config(log_level, json_logs, settings.token_prefix),
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )


@app.command()
def worker(
    log_level: Annotated[str, typer.Option(help="debug|info|warning|error")] = "info",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log as JSON lines")] = False,
    data_dir: DataDir = None,
) -> None:
    """Run the background jobs (push delivery, periodic jobs) until stopped (SIGTERM or Ctrl-C).

    In production, run one or more of these beside the API processes and start those with
    SENSORHUB_EMBEDDED_WORKER=0; several workers share the work without sending anything twice."""
    import signal
    import threading

    from sensorhub.background import build_runner
    from sensorhub.config import SharedSecretMissing
    from sensorhub.context import AppContext
    from sensorhub.logs import configure_logging

    settings = settings_for(data_dir)
    try:
        settings.check_secret_key()
    except SharedSecretMissing as e:
        _fail(str(e))
    configure_logging(log_level.upper(), json_logs, settings.token_prefix)
    db = _db(settings)
    _ensure_schema(db)
    ctx = AppContext.build(settings, db)
    runner = build_runner(ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ctx.push_bus is not None:
        ctx.push_bus.start()
    if ctx.bus is not None:
        ctx.bus.start()
    runner.start()
    typer.echo(f"sensorhub worker running jobs: {', '.join(runner.names)}")
    stop.wait()
    runner.stop()
    for b in (ctx.push_bus, ctx.bus):
        if b is not None:
            b.stop()
    ctx.db.dispose()


@app.command("mqtt-bridge")
def mqtt_bridge(
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (stable per process: its persistent session)")
    ] = None,
    no_live: Annotated[
        bool, typer.Option("--no-live", help="Ingest only; another bridge publishes the live values")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug|info|warning|error")] = "info",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log as JSON lines")] = False,
    data_dir: DataDir = None,
) -> None:
    """Connect to a production Mosquitto running the sensorhub plugin (SENSORHUB_MQTT_BROKER): store
    what devices publish (QoS 1 acknowledged after storing), publish live values, and have Mosquitto
    disconnect revoked credentials. See docs/mqtt.md, "Production: Mosquitto"."""
    import asyncio
    import signal

    from sensorhub.context import AppContext
    from sensorhub.logs import configure_logging
    from sensorhub.mqtt.bridge import Bridge, default_client_id

    settings = settings_for(data_dir)
    configure_logging(log_level.upper(), json_logs, settings.token_prefix)
    db = _db(settings)
    _ensure_schema(db)
    ctx = AppContext.build(settings, db)
    try:
        bridge = Bridge(
            ctx, client_id or settings.mqtt_bridge_client_id or default_client_id(), live=not no_live
        )
    except ValueError as e:
        _fail(str(e))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ctx.push_bus is not None:
            ctx.push_bus.start()
        if ctx.bus is not None:
            ctx.bus.start()
        typer.echo(f"sensorhub mqtt-bridge: connecting to {settings.mqtt_broker}")
        try:
            await bridge.run(stop)
        finally:
            await ctx.live.stop()
            for b in (ctx.push_bus, ctx.bus):
                if b is not None:
                    b.stop()

    asyncio.run(main())
    ctx.db.dispose()


@app.command("mqtt-config")
def mqtt_config(
    url: Annotated[str, typer.Option(help="sensorhub's base URL, as the Mosquitto host reaches it")],
    secret_file: Annotated[
        Path, typer.Option(help="A file (readable by mosquitto only) holding SENSORHUB_MQTT_PLUGIN_SECRET")
    ],
    listen: Annotated[str, typer.Option(help="Mosquitto's MQTT listener, host:port")] = "0.0.0.0:1883",
    websocket: Annotated[str | None, typer.Option(help="A WebSocket listener too, host:port")] = None,
    plugin: Annotated[Path | None, typer.Option(help="Path of sensorhub_auth.so")] = None,
    persistence_dir: Annotated[
        Path | None,
        typer.Option(help="Mosquitto's persistence directory (keeps queued messages over restarts)"),
    ] = None,
    qos1_store: Annotated[
        bool,
        typer.Option(
            help="Store QoS 1/2 messages before Mosquitto acknowledges them (--no-qos1-store: the bridge "
            "stores them after Mosquitto's PUBACK, faster but acknowledged before stored)"
        ),
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Print a mosquitto.conf that makes Mosquitto ask sensorhub who may connect, publish and subscribe
    (the sensorhub plugin; build it with `make mosquitto-plugin`)."""
    from sensorhub.mqtt.mosquitto_conf import PLUGIN, mosquitto_conf

    settings = settings_for(data_dir)
    typer.echo(
        mosquitto_conf(
            listen=listen,
            url=url,
            secret_file=secret_file,
            plugin=plugin or PLUGIN,
            service_username=settings.mqtt_bridge_username,
            cache_seconds=settings.mqtt_acl_cache_seconds,
            persistence_dir=persistence_dir,
            websocket=websocket,
            qos1_store=qos1_store,
        ),
        nl=False,
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Seed the demo data only")] = False,
    mqtt_listen: MqttListen = None,
    no_mqtt: NoMqtt = False,
    data_dir: DataDir = None,
) -> None:
    """Create the demo organisation, users and data, print a fresh demo token, and serve (with the
    embedded MQTT broker)."""
    from sensorhub.demo import seed

    settings = settings_for(data_dir)
    result = seed(settings, base_url=f"http://{host}:{port}")
    typer.echo(result.banner())
    if not no_serve:
        _embedded_mqtt(settings, mqtt_listen, no_mqtt, 1)
        if not no_mqtt:
            mhost, _, mport = os.environ["SENSORHUB_MQTT_LISTEN"].rpartition(":")
            typer.echo(
                f"MQTT (docs/mqtt.md): the token is the username and the password\n"
                f'  mosquitto_pub -h {mhost or "127.0.0.1"} -p {mport} -u "$SENSORHUB_TOKEN" -P "$SENSORHUB_TOKEN" '
                "-q 1 -t 'sensorhub/demo/farm/urn:ngsi-ld:WeatherObserved:station-1/temperature' -m 21.5\n"
                f'  mosquitto_sub -h {mhost or "127.0.0.1"} -p {mport} -u "$SENSORHUB_TOKEN" -P "$SENSORHUB_TOKEN" '
                "-t 'sensorhub/demo/#' -v\n"
            )
        _run_server(settings, host, port, 1, "info", False)


@app.command("migrate-data")
def migrate_data(
    from_url: Annotated[
        str | None, typer.Option("--from", help="Source: sqlite:///path/to/sensorhub.db")
    ] = None,
    from_data_dir: Annotated[
        Path | None, typer.Option("--from-data-dir", help="Source: an embedded data directory")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Target postgresql://… (default SENSORHUB_DATABASE_URL)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty target")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Rows per batch")] = 10_000,
) -> None:
    """Copy an embedded SQLite installation into PostgreSQL (schema, every table, verified counts)."""
    from sensorhub.migrate_data import MigrateDataError, run

    try:
        run(from_url, from_data_dir, to, force, batch_size, typer.echo)
    except MigrateDataError as e:
        _fail(str(e))


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .csv or .parquet file", exists=True, dir_okay=False)],
    org: Annotated[str, typer.Option("--org", help="Organisation slug or id")],
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="Only entities of this workspace")
    ] = None,
    entity: Annotated[
        str | None, typer.Option("--entity", help="Wide file: the entity all columns belong to")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Import measurements from CSV/Parquet: long (entity_id, attribute, timestamp, value[, unit]) or
    wide (timestamp + one column per attribute, with --entity). All or nothing per file."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    from sensorhub.errors import SensorhubError
    from sensorhub.timeseries.importer import import_file

    settings = settings_for(data_dir)
    db = _db(settings)
    _ensure_schema(db)
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(f"importing {file.name}", total=None)
            with db.transaction() as s:
                report = import_file(
                    s,
                    file,
                    org,
                    workspace,
                    entity,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
    except SensorhubError as e:
        _fail(f"{file.name}: {e.message} (nothing was imported)")
    finally:
        db.dispose()
    typer.echo(
        f"{file.name}: {report.rows} rows, {report.accepted} points stored, {report.duplicates} duplicates "
        f"skipped, {report.empty} empty cells, {len(report.series)} series"
    )


@admin.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Login email")],
    password: Annotated[
        str, typer.Option(help="Password (at least 8 characters)", prompt=True, hide_input=True)
    ],
    org: Annotated[str, typer.Option(help="Organisation slug (created when missing)")],
    role: Annotated[str, typer.Option(help="owner|admin|member|viewer")] = "member",
    workspace: Annotated[
        str | None, typer.Option(help="Workspace slug (created when missing); members get a grant on it")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a user (or add an existing one) in an organisation with a role."""
    from sensorhub.accounts import service as accounts

    with _admin_transaction(data_dir) as (_, s):
        _, created = accounts.provision_member(
            s, org_ref=org, email=email, password=password, role=role, workspace=workspace
        )
    typer.echo(
        f"{'created' if created else 'updated'} user {email} as {role} of '{org}'"
        + (f" (workspace '{workspace}')" if workspace else "")
    )


@admin.command("create-token")
def create_token(
    email: Annotated[str, typer.Option(help="Owner's email")],
    name: Annotated[str, typer.Option(help="Token name")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: entities,timeseries,export,telemetry,ingest")],
    expires_in_days: Annotated[int | None, typer.Option(help="Lifetime in days (default 365)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Mint a Personal Access Token and print it once."""
    from sensorhub.tokens import service as tokens

    with _admin_transaction(data_dir) as (settings, s):
        user = _user_with_email(s, email)
        minted = tokens.create_pat(
            s,
            user,
            tokens.NewToken(
                name,
                [x for x in scopes.split(",") if x.strip()],
                tokens.ExpirySpec(expires_in_days=expires_in_days),
            ),
            settings=settings,
            created_by=None,
        )
        cred_id, expires = minted.credential.id, minted.credential.expires_at
    typer.echo(f"token id: {cred_id}\nexpires:  {expires.isoformat() if expires else 'never'}")
    typer.echo("token (shown once; copy it now):")
    typer.echo(minted.token)


@admin.command("revoke-token")
def revoke_token(
    id: Annotated[str, typer.Option("--id", help="Token id")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a token (PAT or API key) by id; it is refused from the next request."""
    from sensorhub.tokens import service as tokens

    with _admin_transaction(data_dir) as (_, s):
        cred = tokens.get_any(s, id)
        already = cred.revoked_at is not None
        tokens.revoke(s, cred, actor_id=None)
    typer.echo(f"token {id} {'was already revoked' if already else 'revoked'}")


@admin.command("disable-user")
def disable_user(
    email: Annotated[str, typer.Option(help="User's email")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable instead")] = False,
    data_dir: DataDir = None,
) -> None:
    """Disable (or re-enable) a user: its sessions and tokens stop working at once."""
    from sensorhub.accounts import service as accounts

    with _admin_transaction(data_dir) as (_, s):
        user = _user_with_email(s, email)
        accounts.set_user_disabled(s, user, not enable)
    typer.echo(f"user {email} {'enabled' if enable else 'disabled'}")


def _user_with_email(s: Session, email: str) -> User:
    """The user an admin command names by email; an unknown one ends the command (exit code 2)."""
    from sensorhub.accounts import service as accounts

    user = accounts.get_user_by_email(s, email)
    if user is None:
        _fail(f"no user with email '{email}'")
    assert user is not None
    return user


@contextmanager
def _admin_transaction(data_dir: Path | None) -> Iterator[tuple[Settings, Session]]:
    """The edge of an admin command: one transaction on an up-to-date schema, committed when the
    command's block ends (nothing is written if it fails); domain errors become a clear message and exit
    code 2. A change to who may do what tells running servers to drop cached credentials once committed
    (same host via the epoch file, other hosts via Redis; see ``AppContext.invalidate_auth``)."""
    from sensorhub.context import AppContext
    from sensorhub.errors import SensorhubError

    settings = settings_for(data_dir)
    ctx = AppContext.build(settings)
    _ensure_schema(ctx.db)
    try:
        with ctx.db.transaction() as s:
            yield settings, s
    except SensorhubError as e:
        _fail(e.message)
    finally:
        ctx.db.dispose()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
