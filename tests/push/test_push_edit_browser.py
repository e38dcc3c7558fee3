"""Editing push in a real browser (Debian's chromium, Playwright, a real uvicorn server on SQLite; the
services under these pages run on both backends in tests/push/test_editing.py):

- the issue's done-when: a webhook and a threshold rule made in the UI, a backfill over the threshold
  with an ingest key, a signed message at the local receiver, the attempt in the delivery log; the
  threshold edited in the UI (with a preview of the message) and the next backfills respecting it;
- a connector edited: errors next to their field with nothing saved, custom and secret headers, the
  Slack preset, disable, a rotated signing secret shown once with the old one still signing;
- the NGSI-LD subscriptions page: what a read token subscribed, its deliveries, pause/resume, a 410
  shown with its reason, delete; a member sees only their own tokens' subscriptions;
- the delivery log paged and filtered.

Set SENSORHUB_SCREENSHOTS=<dir> to keep the screenshots (docs/screenshots)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import PASSWORD, World
from tests.push.conftest import Receiver
from tests.push.test_ngsi_subscriptions import SUBS, subscription
from tests.push.test_push_browser import CHROMIUM, DEV
from tests.push.test_push_browser import server as server  # the fixture
from tests.push.test_webhook import verify

pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists() and os.environ.get("SENSORHUB_REQUIRE_SERVICES") != "1":
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

Server = tuple[str, World]


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def new_page(browser: Browser, server: Server, email: str) -> Page:
    context = browser.new_context(base_url=server[0], viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.goto("/login")
    p.get_by_label("Email").fill(email)
    p.get_by_label("Password").fill(PASSWORD)
    p.get_by_role("button", name="Log in").click()
    expect(p.get_by_role("button", name="Log out")).to_be_visible()
    return p


def shot(page: Page, name: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("SENSORHUB_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"push-{name}.png"), full_page=True)


def backfill(url: str, key: str, t: str, value: float) -> None:
    r = httpx.post(
        f"{url}/v3/devices/{DEV}/backfill",
        json=[{"timestamp": t, "data": {"temperature": value}}],
        headers={"x-api-key": key},
    )
    assert r.status_code == 200, r.text


def create_webhook(page: Page, name: str, url: str) -> str:
    page.goto("/orgs/acme/connectors")
    wh = page.locator("form").filter(has=page.get_by_role("heading", name="Webhook"))
    wh.get_by_label("Name").fill(name)
    wh.get_by_label("URL").fill(url)
    wh.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_text("shown only once")).to_be_visible()
    return page.get_by_role("textbox", name="Signing secret").input_value()


def saved(page: Page, what: str) -> None:
    expect(page.get_by_role("status").filter(has_text=what)).to_be_visible()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_done_when_threshold_rule_made_and_edited_in_the_ui(
    browser: Browser, server: Server, receiver: Receiver, tmp_path: Path, backend: str
) -> None:
    url, world = server
    page = new_page(browser, server, "olga@acme.test")
    secret = create_webhook(page, "ops hook", receiver.url)

    page.goto("/orgs/acme/rules")
    page.get_by_label("Name").fill("boiler too hot")
    # Only the chosen condition's fields are shown.
    page.get_by_label("Condition").select_option("outside")
    expect(page.get_by_label("Min", exact=True)).to_be_visible()
    expect(page.get_by_label("Threshold")).to_be_hidden()
    page.get_by_label("Condition").select_option("above")
    expect(page.get_by_label("Min", exact=True)).to_be_hidden()
    page.get_by_label("Attribute").fill("temperature")
    page.get_by_label("Threshold").fill("80")
    page.get_by_label("ops hook").check()
    page.get_by_label("Message template").fill("{{ rule.name }}: {{ value }} ({{ state }})")
    page.get_by_role("button", name="Create rule").click()
    saved(page, "Rule created")

    key = world.api_key("acme", scopes=["ingest"])
    backfill(url, key, "2026-01-01T00:00:00Z", 86.5)
    (msg,) = receiver.wait_for(lambda r: len(r) >= 1)
    assert verify(secret, msg.headers["x-sensorhub-signature"], msg.body)
    assert msg.json()["text"] == "boiler too hot: 86.5 (firing)"

    # The delivery log shows the attempt.
    page.goto("/orgs/acme/connectors")
    page.get_by_role("link", name="ops hook").click()
    row = page.get_by_role("row").filter(has_text="boiler too hot → firing")
    expect(row.get_by_text("delivered", exact=True)).to_be_visible()
    row.get_by_text("1 attempt").click()
    expect(row.get_by_role("cell", name="OK 200")).to_be_visible()

    # Edit the threshold in the UI, preview the message, save.
    page.goto("/orgs/acme/rules")
    page.get_by_role("link", name="boiler too hot").click()
    expect(page.get_by_role("heading", name="boiler too hot")).to_contain_text("firing")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save rule"))
    expect(form.get_by_label("Threshold")).to_have_value("80")
    form.get_by_label("Threshold").fill("90")
    form.get_by_label("Hysteresis").fill("2")
    form.get_by_label("Message template").fill("{{ rule.name }} hit {{ value }} {{ unit }}")
    form.get_by_role("button", name="Preview message").click()
    expect(page.locator("#preview")).to_have_text("boiler too hot hit 91.0 CEL")
    expect(form.get_by_label("Threshold")).to_have_value("90")  # kept, not saved yet
    # An invalid template: shown next to the field, nothing saved.
    form.get_by_label("Message template").fill("{{ value | nosuchfilter }}")
    form.get_by_role("button", name="Save rule").click()
    expect(page.locator("#err-template")).to_contain_text("template is invalid")
    expect(form.get_by_label("Message template")).to_have_attribute("aria-invalid", "true")
    shot(page, "rule-edit-error", tmp_path)
    page.goto(page.url.rsplit("/edit", 1)[0])
    expect(page.get_by_label("Threshold")).to_have_value("80")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save rule"))
    form.get_by_label("Threshold").fill("90")
    form.get_by_label("Message template").fill("{{ rule.name }} hit {{ value }}")
    form.get_by_role("button", name="Preview message").click()
    expect(page.locator("#preview")).to_have_text("boiler too hot hit 91.0")
    shot(page, "rule-edit-preview", tmp_path)
    form.get_by_role("button", name="Save rule").click()
    saved(page, "Rule saved")
    expect(page.get_by_role("heading", name="boiler too hot")).to_contain_text("ok")
    expect(page.get_by_text("When temperature above 90 →")).to_be_visible()

    # 88 is over the old threshold but not the new one: no message; 95 is.
    backfill(url, key, "2026-01-01T00:01:00Z", 88.0)
    backfill(url, key, "2026-01-01T00:02:00Z", 95.0)
    got = receiver.wait_for(lambda r: len(r) >= 2)
    time.sleep(0.5)  # anything more would have arrived by now (deliveries are in order per device)
    assert [m.json()["text"] for m in receiver.received] == [
        "boiler too hot: 86.5 (firing)",
        "boiler too hot hit 95.0",
    ]
    assert verify(secret, got[1].headers["x-sensorhub-signature"], got[1].body)
    page.reload()
    history = page.get_by_role("table", name="State changes, newest first")
    expect(history.get_by_role("row").filter(has_text="95")).to_be_visible()
    expect(history.get_by_role("row").filter(has_text="88")).to_have_count(0)
    shot(page, "rule-edited", tmp_path)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_connector_edited_in_the_ui(
    browser: Browser, server: Server, receiver: Receiver, tmp_path: Path, backend: str
) -> None:
    page = new_page(browser, server, "olga@acme.test")
    old_secret = create_webhook(page, "ops hook", receiver.url)
    page.get_by_role("link", name="Open the connector").click()
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save connector"))
    expect(form.get_by_label("URL")).to_have_value(receiver.url)

    # An invalid URL: the error is next to the field, what was typed is kept, nothing is saved.
    form.get_by_label("Name", exact=True).fill("renamed")
    form.get_by_label("URL").fill("ftp://example.com/hook")
    form.get_by_role("button", name="Save connector").click()
    expect(page.locator("#err-config-url")).to_contain_text("config.url")
    expect(form.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("URL")).to_have_value("ftp://example.com/hook")
    shot(page, "connector-edit-error", tmp_path)
    page.goto(page.url.rsplit("/edit", 1)[0])
    expect(page.get_by_role("heading", level=1)).to_contain_text("ops hook")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save connector"))
    expect(form.get_by_label("URL")).to_have_value(receiver.url)

    # Headers (a row added), a secret header, the Slack preset.
    form.get_by_label("Header name 1").fill("X-Team")
    form.get_by_label("Value 1", exact=True).fill("ops")
    form.get_by_label("Secret header name").fill("Authorization")
    form.get_by_label("Secret header value").fill("Bearer hush-hush")
    form.get_by_label("Body").select_option("slack")
    form.get_by_label("Timeout (seconds)").fill("1.5")
    form.get_by_role("button", name="Save connector").click()
    saved(page, "Connector saved")
    assert "hush-hush" not in page.content()
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save connector"))
    expect(form.get_by_label("Header name 1")).to_have_value("X-Team")
    expect(form.get_by_text("Remove Authorization (value hidden)")).to_be_visible()
    shot(page, "connector-edit", tmp_path)
    page.get_by_role("button", name="Send test message").click()
    saved(page, "Test message delivered")
    (msg,) = receiver.received
    assert msg.headers["x-team"] == "ops" and msg.headers["authorization"] == "Bearer hush-hush"
    assert set(msg.json()) == {"text"}
    assert verify(old_secret, msg.headers["x-sensorhub-signature"], msg.body)

    # Remove the header row (cleared) and the secret header (ticked).
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save connector"))
    form.get_by_label("Header name 1").fill("")
    form.get_by_label("Value 1", exact=True).fill("")
    form.get_by_label("Remove Authorization (value hidden)").check()
    form.get_by_role("button", name="Save connector").click()
    saved(page, "Connector saved")

    # Rotate: the new secret is shown once, and the old one still signs during the grace.
    page.get_by_label("Old secret valid for (hours)").fill("2")
    page.get_by_role("button", name="Rotate signing secret").click()
    expect(page.get_by_text("shown only once")).to_be_visible()
    new_secret = page.get_by_role("textbox", name="Signing secret").input_value()
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    shot(page, "connector-rotated", tmp_path)
    page.get_by_role("button", name="Send test message").click()
    saved(page, "Test message delivered")
    msg = receiver.received[1]
    assert "x-team" not in msg.headers and "authorization" not in msg.headers
    sig = msg.headers["x-sensorhub-signature"]
    assert verify(new_secret, sig, msg.body) and verify(old_secret, sig, msg.body)
    page.reload()
    expect(page.get_by_role("textbox", name="Signing secret")).to_have_count(0)  # never again

    # Disable from the form: the badge says so and a test message is refused by the delivery.
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save connector"))
    form.get_by_label("Enabled").uncheck()
    form.get_by_role("button", name="Save connector").click()
    saved(page, "Connector saved")
    expect(page.get_by_role("heading", level=1)).to_contain_text("disabled")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_subscriptions_page(
    browser: Browser, server: Server, receiver: Receiver, tmp_path: Path, backend: str
) -> None:
    url, world = server
    world.user("ann@acme.test", "acme", "member")
    world.user("vic@acme.test", "acme", "viewer")
    read = world.pat("ann@acme.test", ["entities"], name="ann-read")
    key = world.api_key("acme", scopes=["ingest"])
    body = subscription(receiver.url, subscriptionName="hot boilers", entities=[{"type": "Boiler"}])
    r = httpx.post(f"{url}{SUBS}", json=body, headers={"authorization": f"Bearer {read}"})
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[1]
    backfill(url, key, "2026-01-01T00:00:00Z", 35.0)
    receiver.wait_for(lambda r: len(r) == 1)

    page = new_page(browser, server, "olga@acme.test")
    page.get_by_role("navigation", name="Organisation administration").get_by_role(
        "link", name="Subscriptions"
    ).click()
    row = page.get_by_role("row").filter(has_text="hot boilers")
    expect(row).to_contain_text("ann-read")
    expect(row).to_contain_text("ann@acme.test")
    expect(row.get_by_text("active", exact=True)).to_be_visible()
    expect(row).to_contain_text("attributes: temperature")
    expect(row).to_contain_text("q: temperature>30")
    expect(row).to_contain_text(receiver.url)
    expect(row).to_contain_text("1 sent")
    shot(page, "subscriptions", tmp_path)
    row.get_by_role("link", name="hot boilers").click()
    expect(
        page.get_by_role("table", name="Notifications of this subscription, newest first")
    ).to_contain_text("delivered")

    page.get_by_role("button", name="Pause").click()
    saved(page, "Subscription paused")
    expect(page.get_by_role("heading", level=1)).to_contain_text("paused")
    got = httpx.get(f"{url}{SUBS}/{sub_id}", headers={"authorization": f"Bearer {read}"}).json()
    assert got["isActive"] is False
    page.get_by_role("button", name="Resume").click()
    saved(page, "Subscription resumed")

    # A 410 turns it off; the page says why.
    receiver.statuses = [410]
    backfill(url, key, "2026-01-01T00:01:00Z", 36.0)
    deadline = time.monotonic() + 15
    bare = page.url.split("?", 1)[0]
    while "Turned off by the server" not in page.content():
        assert time.monotonic() < deadline
        time.sleep(0.2)
        page.goto(bare)
    expect(page.get_by_role("heading", level=1)).to_contain_text("paused")
    expect(page.get_by_role("note")).to_contain_text("410 Gone")
    shot(page, "subscription-410", tmp_path)

    # A member sees their own token's subscription; a viewer with no token sees none, and no connectors.
    ann = new_page(browser, server, "ann@acme.test")
    ann.goto("/orgs/acme/subscriptions")
    expect(ann.get_by_role("row").filter(has_text="hot boilers")).to_be_visible()
    vic = new_page(browser, server, "vic@acme.test")
    vic.goto("/orgs/acme/subscriptions")
    expect(vic.get_by_text("No subscriptions")).to_be_visible()
    resp = vic.goto("/orgs/acme/connectors")
    assert resp is not None and resp.status == 403

    # The owner deletes it from the UI.
    ann.get_by_role("link", name="hot boilers").click()
    ann.once("dialog", lambda d: d.accept())
    ann.get_by_role("button", name="Delete").click()
    saved(ann, "Subscription deleted")
    r = httpx.get(f"{url}{SUBS}/{sub_id}", headers={"authorization": f"Bearer {read}"})
    assert r.status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_delivery_log_pages_and_filters(
    browser: Browser,
    server: Server,
    receiver: Receiver,
    tmp_path: Path,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sensorhub.web import push_pages

    monkeypatch.setattr(push_pages, "PAGE_SIZE", 2)
    page = new_page(browser, server, "olga@acme.test")
    create_webhook(page, "ops hook", receiver.url)
    page.get_by_role("link", name="Open the connector").click()
    receiver.statuses = [400]
    for _ in range(3):
        page.get_by_role("button", name="Send test message").click()
        expect(page.locator(".notice")).to_be_visible()
    log = page.get_by_role("table", name="Deliveries, newest first")
    expect(log.locator(":scope > tbody > tr")).to_have_count(2)
    page.get_by_role("link", name="Older deliveries").click()
    expect(log.locator(":scope > tbody > tr")).to_have_count(1)
    expect(log).to_contain_text("dead")  # the first one, answered 400
    page.get_by_role("link", name="Newest").click()
    filters = page.get_by_role("navigation", name="Delivery log filters")
    filters.get_by_role("link", name="dead (1)").click()
    expect(log.locator(":scope > tbody > tr")).to_have_count(1)
    filters.get_by_role("link", name="last 1h").click()
    assert "status=dead" in page.url and "range=1h" in page.url
    expect(log.locator(":scope > tbody > tr")).to_have_count(1)
    shot(page, "delivery-log-filtered", tmp_path)

    # The organisation's Deliveries page: every connector's, filtered by connector, status and time.
    create_webhook(page, "second hook", receiver.url)
    page.get_by_role("link", name="Open the connector").click()
    page.get_by_role("button", name="Send test message").click()
    saved(page, "Test message delivered")
    page.get_by_role("navigation", name="Organisation administration").get_by_role(
        "link", name="Deliveries"
    ).click()
    expect(log.locator(":scope > tbody > tr")).to_have_count(2)
    expect(log.locator(":scope > tbody > tr").first).to_contain_text("second hook")
    page.get_by_role("link", name="Older deliveries").click()
    expect(log.locator(":scope > tbody > tr")).to_have_count(2)
    filters = page.get_by_role("form", name="Filter the deliveries")
    filters.get_by_label("Connector").select_option(label="ops hook")
    filters.get_by_label("Status").select_option("dead")
    filters.get_by_label("Created").select_option("24h")
    filters.get_by_role("button", name="Filter").click()
    expect(log.locator(":scope > tbody > tr")).to_have_count(1)
    expect(log).to_contain_text("ops hook")
    expect(log).not_to_contain_text("second hook")
    shot(page, "deliveries", tmp_path)
    log.get_by_role("button", name="Replay").click()
    saved(page, "queued again")
    assert "/orgs/acme/deliveries" in page.url
    receiver.wait_for(lambda r: len(r) == 4)

    # At phone width (375 px) the push pages do not scroll sideways.
    page.set_viewport_size({"width": 375, "height": 812})
    connector = page.get_by_role("link", name="ops hook").first.get_attribute("href")
    for path in ("/orgs/acme/deliveries", str(connector), "/orgs/acme/connectors", "/orgs/acme/rules"):
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, (path, wide)
    shot(page, "phone-connector", tmp_path)
