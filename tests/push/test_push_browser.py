"""The connectors and rules pages in a real browser (Debian's chromium, Playwright) against a real
uvicorn server: an owner creates a webhook and a threshold rule in the UI, data over the threshold is
backfilled with an ingest key, the receiver gets a signed message, and the delivery log shows it
(and a failed delivery with its attempts, replayed from the page).

Set SENSORHUB_SCREENSHOTS=<dir> to keep the screenshots."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.migrate import upgrade
from tests.builders import PASSWORD, World
from tests.push.conftest import FAST, Receiver
from tests.push.test_mail import free_port
from tests.push.test_webhook import verify

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists() and os.environ.get("SENSORHUB_REQUIRE_SERVICES") != "1":
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

DEV = "urn:ngsi-ld:Device:boiler-9"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, World]]:
    import uvicorn

    settings = Settings(data_dir=tmp_path / "data", env="test", **FAST)
    db = Database(settings)
    upgrade(db)
    db.dispose()
    ctx = AppContext.build(settings)
    app = create_app(settings, ctx)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and t.is_alive()
        time.sleep(0.05)
    world = World(ctx)
    world.org("acme", ("plant",))
    world.user("olga@acme.test", "acme", "owner")
    world.entity("acme", "plant", DEV, "Boiler")
    yield f"http://127.0.0.1:{port}", world
    srv.should_exit = True
    t.join(10)
    ctx.db.dispose()


@pytest.fixture
def page(server: tuple[str, World]) -> Iterator[Page]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = b.new_context(base_url=server[0], viewport={"width": 1280, "height": 900})
        yield context.new_page()
        b.close()


def shot(page: Page, name: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("SENSORHUB_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"push-{name}.png"), full_page=True)


# The pages run over the same services as the API (tested on both backends): one backend here, not a skip.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_webhook_and_threshold_rule_made_in_the_ui(
    page: Page, server: tuple[str, World], receiver: Receiver, tmp_path: Path, backend: str
) -> None:
    url, world = server
    page.goto("/login")
    page.get_by_label("Email").fill("olga@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    page.goto("/orgs/acme/connectors")
    wh = page.locator("form").filter(has=page.get_by_role("heading", name="Webhook"))
    wh.get_by_label("Name").fill("ops hook")
    wh.get_by_label("URL").fill(receiver.url)
    wh.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_text("shown only once")).to_be_visible()
    secret = page.get_by_role("textbox", name="Signing secret").input_value()
    assert secret.startswith("whsec_")
    shot(page, "connector-created", tmp_path)

    page.goto("/orgs/acme/rules")
    page.get_by_label("Name").fill("boiler too hot")
    page.get_by_label("Workspace").select_option("plant")
    page.get_by_label("Condition").select_option("above")
    page.get_by_label("Attribute").fill("temperature")
    page.get_by_label("Threshold").fill("80")
    page.get_by_label("Hysteresis").fill("5")
    page.get_by_label("ops hook").check()
    page.get_by_label("Message template").fill("{{ device.id }} at {{ value }} °C")
    page.get_by_role("button", name="Create rule").click()
    expect(page.get_by_role("status").filter(has_text="Rule created")).to_be_visible()

    key = world.api_key("acme", scopes=["ingest"])
    r = httpx.post(
        f"{url}/v3/devices/{DEV}/backfill",
        json=[
            {"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": 70}},
            {"timestamp": "2026-01-01T00:01:00Z", "data": {"temperature": 86.5}},
        ],
        headers={"x-api-key": key},
    )
    assert r.status_code == 200, r.text
    (msg,) = receiver.wait_for(lambda r: len(r) >= 1)
    assert verify(secret, msg.headers["x-sensorhub-signature"], msg.body)
    assert msg.json()["text"] == f"{DEV} at 86.5 °C"

    page.goto("/orgs/acme/rules")
    row = page.get_by_role("row").filter(has_text="boiler too hot")
    expect(row.get_by_text("firing")).to_be_visible()
    shot(page, "rules", tmp_path)
    row.get_by_role("link", name="boiler too hot").click()
    expect(page.get_by_role("table", name="State per device").get_by_text("firing")).to_be_visible()
    shot(page, "rule", tmp_path)

    # A failing receiver: the attempts and the dead letter are in the log, and can be replayed.
    receiver.statuses = [400]
    page.goto("/orgs/acme/connectors")
    page.get_by_role("link", name="ops hook").click()
    page.get_by_role("button", name="Send test message").click()
    expect(page.get_by_role("status").filter(has_text="not delivered")).to_be_visible()
    dead = page.get_by_role("row").filter(has_text="dead")
    dead.get_by_text("1 attempt").click()
    expect(dead.get_by_role("cell", name="HTTP 400: ok", exact=True)).to_be_visible()
    shot(page, "delivery-log", tmp_path)
    dead.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status").filter(has_text="queued again")).to_be_visible()
    receiver.wait_for(lambda r: len(r) >= 2)
    page.reload()
    expect(page.get_by_role("row").filter(has_text="dead")).to_have_count(0)
