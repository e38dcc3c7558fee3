"""The web UI in a real browser: Debian's chromium driven by Playwright against a real uvicorn server.

Skips when /usr/bin/chromium is missing, unless SENSORHUB_REQUIRE_SERVICES=1 (CI installs chromium).
Set SENSORHUB_SCREENSHOTS=<dir> to also save screenshots of the main pages there (docs/screenshots).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.migrate import upgrade
from tests.builders import PASSWORD, World
from tests.web.helpers import seed_series

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRED = os.environ.get("SENSORHUB_REQUIRE_SERVICES") == "1"

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists() and not REQUIRED:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

STATION = "urn:ngsi-ld:WeatherObserved:station-1"


@dataclass
class Live:
    url: str
    ctx: AppContext
    world: World


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import uvicorn

    data_dir = tmp_path_factory.mktemp("browser-data")
    settings = Settings(data_dir=data_dir, env="test")
    db = Database(settings)
    upgrade(db)
    db.dispose()
    ctx = AppContext.build(settings)
    app = create_app(settings, ctx)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)

    world = World(ctx)
    world.org("acme", ("farm", "greenhouse"))
    world.user("olga@acme.test", "acme", "owner")
    world.user("mia@acme.test", "acme", "member")
    world.user("kim@acme.test", "acme", "member")
    world.user("phone@acme.test", "acme", "admin")
    world.entity("acme", "farm", STATION, "WeatherObserved")
    world.entity("acme", "farm", "urn:ngsi-ld:Device:pump-7", "Device")
    world.entity("acme", "greenhouse", "urn:ngsi-ld:AgriParcel:bed-3", "AgriParcel")
    seed_series(
        ctx, "acme", STATION, "temperature", "CEL", datetime.now(UTC).replace(microsecond=0), hours=24 * 8
    )
    seed_series(
        ctx, "acme", STATION, "humidity", "P1", datetime.now(UTC).replace(microsecond=0), hours=24 * 8
    )
    yield Live(f"http://127.0.0.1:{port}", ctx, world)
    server.should_exit = True
    thread.join(10)
    ctx.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture
def phone(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(
        base_url=live.url,
        viewport={"width": 375, "height": 812},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    p = context.new_page()
    yield p
    context.close()


def main_nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def admin_nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Organisation administration").get_by_role("link", name=name)


def log_in(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def create_token(page: Page, name: str, scopes: tuple[str, ...] = ()) -> str:
    main_nav(page, "Integrations").click()
    page.get_by_label("Name").fill(name)
    for s in scopes:
        page.get_by_role("checkbox", name=s).check()
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("shown only once")).to_be_visible()
    return page.get_by_label("Your new token", exact=True).input_value()


def api(live: Live, token: str, header: str = "authorization") -> httpx.Response:
    value = f"Bearer {token}" if header == "authorization" else token
    return httpx.get(f"{live.url}/api/tokens/self", headers={header: value})


def test_create_copy_use_and_revoke_a_token(page: Page, live: Live) -> None:
    log_in(page, "mia@acme.test")
    token = create_token(page, "notebook", ("export",))
    assert token.startswith("shub_pat_")
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    # The examples are ready to paste: real base URL, the token itself.
    assert f'"{live.url}"' in page.locator("#code-requests").text_content()  # type: ignore[operator]
    assert token in page.locator("#code-requests").text_content()  # type: ignore[operator]

    r = api(live, token)
    assert r.status_code == 200, r.text
    assert r.json()["effective_scopes"] == ["entities", "export", "timeseries"]

    main_nav(page, "Integrations").click()
    expect(page.get_by_text(token)).to_have_count(0)  # never shown again
    row = page.get_by_role("row").filter(has_text="notebook")
    expect(row.get_by_text("active")).to_be_visible()
    expect(row.get_by_text("from 127.0.0.1")).to_be_visible()  # last used + IP

    # Dismissing the confirmation keeps the token.
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Revoke notebook").click()
    assert api(live, token).status_code == 200
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke notebook").click()
    expect(page.get_by_role("status").filter(has_text="Token revoked")).to_be_visible()
    assert api(live, token).status_code == 401


def test_rotate_reveals_a_new_secret_once(page: Page, live: Live) -> None:
    log_in(page, "kim@acme.test")
    old = create_token(page, "grafana")
    main_nav(page, "Integrations").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Rotate grafana").click()
    expect(page.get_by_text("The old secret stopped working just now.")).to_be_visible()
    new = page.get_by_label("Your new token", exact=True).input_value()
    assert new != old
    assert api(live, old).status_code == 401
    assert api(live, new).status_code == 200


def test_admin_creates_an_api_key_and_an_api_user_with_a_token(page: Page, live: Live) -> None:
    log_in(page, "olga@acme.test")
    admin_nav(page, "API keys").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("API keys")
    page.get_by_label("Name").fill("backfill-service")
    page.get_by_role("checkbox", name="ingest").check()
    page.get_by_role("checkbox", name="Farm").check()
    page.get_by_role("button", name="Create API key").click()
    key = page.get_by_label("Your new API key", exact=True).input_value()
    assert key.startswith("shub_key_")
    r = api(live, key, header="x-api-key")
    assert r.status_code == 200 and "ingest" in r.json()["effective_scopes"]

    admin_nav(page, "API users").click()
    page.get_by_label("Name").fill("etl-pipeline")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("checkbox", name="Greenhouse").check()
    page.get_by_role("button", name="Create API user").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("etl-pipeline")
    page.get_by_label("Name").fill("nightly")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("Your new token", exact=True).input_value()
    r = api(live, token)
    assert r.status_code == 200, r.text
    expect(page.get_by_role("row").filter(has_text="nightly")).to_be_visible()

    admin_nav(page, "Grants").click()
    expect(page.get_by_role("row").filter(has_text="etl-pipeline")).to_contain_text("Greenhouse")
    admin_nav(page, "Members").click()
    expect(page.get_by_role("button", name="Remove mia@acme.test")).to_be_visible()


def test_member_sees_no_admin_links_and_gets_403(page: Page, live: Live) -> None:
    log_in(page, "mia@acme.test")
    for name in ("API keys", "API users", "Grants", "Members", "Settings"):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    resp = page.goto("/orgs/acme/api-keys")
    assert resp is not None and resp.status == 403
    expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    expect(page.get_by_text("Only organisation owners and admins can do this")).to_be_visible()
    expect(page.get_by_role("link", name="API keys", exact=True)).to_have_count(0)


def test_keyboard_only_login_and_token_creation(page: Page, live: Live) -> None:
    page.goto("/login")
    page.locator("body").focus()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "email":
            break
    assert page.evaluate("document.activeElement.id") == "email"
    # Focus is visible.
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.type("olga@acme.test")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()

    page.goto("/integrations")
    for _ in range(40):
        if page.evaluate("document.activeElement.id") == "name":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "name"
    page.keyboard.type("keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_text("shown only once")).to_be_visible()
    # Focus lands on the secret, ready to copy.
    assert page.evaluate("document.activeElement.id") == "new-token"
    token = page.evaluate("document.activeElement.value")
    assert api(live, token).status_code == 200


def test_data_view_draws_a_chart(page: Page, live: Live) -> None:
    log_in(page, "mia@acme.test")
    main_nav(page, "Data").click()
    page.get_by_role("link", name="station-1").click()
    # The first attribute, over the last 7 days up to the newest point.
    expect(page.get_by_role("img", name=f"humidity (P1) of {STATION}")).to_be_visible()
    page.get_by_label("Attribute").select_option("temperature")
    page.get_by_label("Range").select_option("24h")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("img", name=f"temperature (CEL) of {STATION}")).to_be_visible()
    expect(page.get_by_role("figure")).to_contain_text("raw")
    assert page.locator("svg.chart polyline").count() >= 1


def test_data_view_shows_new_values_live(page: Page, live: Live) -> None:
    log_in(page, "mia@acme.test")
    page.goto(f"/data?entity={STATION}")
    expect(page.locator("#live-status")).to_contain_text("Listening")
    token = live.world.pat("mia@acme.test", ["ingest"], name="live-view")
    r = httpx.post(
        f"{live.url}/v3/devices/{STATION}/backfill",
        json=[
            {"timestamp": "2030-01-01T00:00:00Z", "data": {"temperature": {"value": 42.25, "unit": "CEL"}}}
        ],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    row = page.locator("#live-rows tr").first
    expect(row).to_contain_text("42.25 CEL")
    expect(row).to_contain_text("temperature")
    expect(row).to_contain_text("2030-01-01 00:00:00")


def _no_horizontal_scroll(p: Page) -> None:
    width = p.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{p.url} is {width}px wide at 375px"


def test_phone_width_has_no_horizontal_scroll(phone: Page, live: Live) -> None:
    phone.goto("/login")
    _no_horizontal_scroll(phone)
    log_in(phone, "phone@acme.test")
    _no_horizontal_scroll(phone)
    create_token(phone, "a-token-with-a-rather-long-name-for-a-phone-screen", ("telemetry",))
    _no_horizontal_scroll(phone)
    for path in (
        "/integrations",
        f"/data?entity={STATION}",
        "/orgs/acme/api-keys",
        "/orgs/acme/api-users",
        "/orgs/acme/grants",
        "/orgs/acme/members",
        "/orgs/acme/settings",
        "/invitations",
    ):
        phone.goto(path)
        _no_horizontal_scroll(phone)


SHOTS = os.environ.get("SENSORHUB_SCREENSHOTS")


def test_screenshots(browser: Browser, live: Live, tmp_path: Path) -> None:
    """Every main page renders (into tmp, or into SENSORHUB_SCREENSHOTS=<dir> for docs/screenshots)."""
    out = Path(SHOTS) if SHOTS else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
    p = context.new_page()

    def shot(name: str, **kw: Any) -> None:
        p.wait_for_load_state("networkidle")
        p.screenshot(path=str(out / f"{name}.png"), full_page=True, **kw)

    p.goto("/login")
    shot("login")
    p.get_by_label("Email").fill("olga@acme.test")
    p.get_by_label("Password").fill("not the password")
    p.get_by_role("button", name="Log in").click()
    shot("login-wrong-password")
    log_in(p, "olga@acme.test")
    # Some history for the tables.
    create_token(p, "powerbi", ("export",))
    create_token(p, "old-script")
    p.once("dialog", lambda d: d.accept())
    main_nav(p, "Integrations").click()
    p.get_by_role("button", name="Revoke old-script").click()
    httpx.get(
        f"{live.url}/api/tokens/self", headers={"Authorization": f"Bearer {create_token(p, 'grafana')}"}
    )
    p.goto("/")
    shot("home")
    create_token(p, "notebook", ("telemetry",))
    shot("integrations-revealed")
    p.goto("/orgs/acme/api-keys")
    p.get_by_label("Name").fill("backfill-service")
    p.get_by_role("checkbox", name="ingest").check()
    p.get_by_role("button", name="Create API key").click()
    shot("api-keys")
    p.goto("/orgs/acme/api-users")
    if p.get_by_role("link", name="etl-pipeline").count() == 0:
        p.get_by_label("Name").fill("etl-pipeline")
        p.get_by_role("button", name="Create API user").click()
        p.get_by_label("Name").fill("nightly")
        p.get_by_role("button", name="Create token").click()
    p.goto("/orgs/acme/api-users")
    shot("api-users")
    p.get_by_role("link", name="etl-pipeline").first.click()
    shot("api-user")
    p.goto("/orgs/acme/grants")
    shot("grants")
    p.goto("/orgs/acme/members")
    shot("members")
    p.goto("/orgs/acme/settings")
    shot("settings")
    p.goto(f"/data?entity={STATION}&range=7d")
    shot("data")
    context.close()

    mobile = browser.new_context(
        base_url=live.url, viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True
    )
    m = mobile.new_page()
    log_in(m, "olga@acme.test")
    create_token(m, "phone-demo")
    m.wait_for_load_state("networkidle")
    m.screenshot(path=str(out / "phone-integrations.png"), full_page=True)
    m.goto("/")
    m.screenshot(path=str(out / "phone-home.png"), full_page=True)
    m.goto("/integrations")
    m.get_by_role("heading", name="Your tokens").scroll_into_view_if_needed()
    m.screenshot(path=str(out / "phone-tokens.png"))
    mobile.close()
    assert (out / "integrations-revealed.png").stat().st_size > 10_000


LABEL_CHECK = """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
    .map(el => el.outerHTML.slice(0, 120))"""
BUTTON_CHECK = """() => Array.from(document.querySelectorAll('button, a[href]'))
    .filter(el => !(el.innerText || el.textContent || '').trim() && !el.getAttribute('aria-label'))
    .map(el => el.outerHTML.slice(0, 120))"""


def test_every_control_has_a_label_and_every_button_a_name(page: Page, live: Live) -> None:
    page.goto("/login")
    assert page.evaluate(LABEL_CHECK) == []
    log_in(page, "olga@acme.test")
    for path in (
        "/",
        "/integrations",
        f"/data?entity={STATION}",
        "/orgs/acme/api-keys",
        "/orgs/acme/api-users",
        "/orgs/acme/grants",
        "/orgs/acme/members",
        "/orgs/acme/settings",
        "/invitations",
    ):
        page.goto(path)
        assert page.evaluate(LABEL_CHECK) == [], path
        assert page.evaluate(BUTTON_CHECK) == [], path
