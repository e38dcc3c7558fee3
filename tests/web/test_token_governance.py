"""The token-governance story of issue 16 in a real browser (Debian's chromium, Playwright, uvicorn):

the organisation requires approval → a member creates a PAT → the admin approves it from the inventory →
the token reads data → days pass (the server's clock moves; nothing sleeps) → the member gets the 7-day
e-mail (a real SMTP server, aiosmtpd) and sees the banner → rotates with a one-day grace, both secrets
work until the grace ends → the admin revokes it for the organisation → the next request is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import CLOCK, Database
from sensorhub.migrate import upgrade
from sensorhub.tokens.expiry import run_expiry_notices
from tests.builders import World
from tests.oidc_provider import sensorhub_server
from tests.smtp import Inbox, smtp_server

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("SENSORHUB_REQUIRE_SERVICES") == "1"
pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists() and not REQUIRED:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.web.test_browser import CHROMIUM_ARGS, _free_port, admin_nav, log_in, main_nav  # noqa: E402

DEVICE = "urn:ngsi-ld:Device:pump-7"
SHOTS = os.environ.get("SENSORHUB_SCREENSHOTS")


def _shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, AppContext, Inbox]]:
    with smtp_server() as (inbox, smtp_port):
        settings = Settings(
            data_dir=tmp_path, env="test", smtp_host="127.0.0.1", smtp_port=smtp_port,
            smtp_security="none", smtp_sender="sensorhub@acme.test",
        )  # fmt: skip
        db = Database(settings)
        upgrade(db)
        db.dispose()
        with sensorhub_server(settings, _free_port()) as (url, ctx):
            world = World(ctx)
            world.org("acme", ("farm",))
            world.user("olga@acme.test", "acme", "owner")
            world.user("mia@acme.test", "acme", "member")
            world.entity("acme", "farm", DEVICE, "Device")
            CLOCK.reset()
            try:
                yield url, ctx, inbox
            finally:
                CLOCK.reset()


def _reads(url: str, token: str) -> int:
    return httpx.get(
        f"{url}/ngsi-ld/v1/entities", params={"type": "Device"}, headers={"Authorization": f"Bearer {token}"}
    ).status_code


def test_approve_warn_rotate_with_grace_and_revoke_for_the_organisation(
    served: tuple[str, AppContext, Inbox],
) -> None:
    url, ctx, inbox = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        admin = browser.new_context(base_url=url).new_page()
        member = browser.new_context(base_url=url).new_page()

        # The owner requires approval of members' tokens.
        log_in(admin, "olga@acme.test")
        admin_nav(admin, "Settings").click()
        admin.get_by_label("Members' tokens need approval").check()
        admin.get_by_role("button", name="Save policy").click()
        expect(admin.get_by_role("status").filter(has_text="Token policy saved")).to_be_visible()
        _shot(admin, "org-token-policy")

        # The member creates a 30-day token: it waits for approval, and says so.
        log_in(member, "mia@acme.test")
        main_nav(member, "Integrations").click()
        member.get_by_label("Name", exact=True).fill("pump-dashboard")
        member.get_by_role("checkbox", name="entities").check()
        member.get_by_label("Expires").select_option("30")
        member.get_by_role("button", name="Create token").click()
        token = member.get_by_label("Your new token", exact=True).input_value()
        main_nav(member, "Integrations").click()
        expect(member.get_by_text("acme: waiting for approval")).to_be_visible()
        assert _reads(url, token) == 403

        # The admin approves it from the inventory; the token reads data.
        admin_nav(admin, "Credentials").click()
        expect(admin.get_by_text("1 token waiting for approval")).to_be_visible()
        _shot(admin, "credentials-inventory")
        admin.get_by_role("button", name="Approve pump-dashboard of mia@acme.test").click()
        expect(admin.get_by_role("status").filter(has_text="Token approved")).to_be_visible()
        assert _reads(url, token) == 200

        # 23 days pass: the member is e-mailed the 7-day notice and sees the banner.
        CLOCK.advance(timedelta(days=23, hours=1))
        run = run_expiry_notices(ctx.db, ctx.settings)
        assert run.sent >= 1 and run.failed == 0
        mails = [m for m in inbox.to("mia@acme.test") if "expires in 7 days" in m["Subject"]]
        assert len(mails) == 1 and "pump-dashboard" in mails[0]["Subject"]
        log_in(member, "mia@acme.test")  # yesterday's session has ended
        banner = member.get_by_role("alert").filter(has_text="pump-dashboard")
        expect(banner).to_contain_text("expires in 7 days")
        _shot(member, "expiry-banner")

        # The member rotates with a one-day grace: both secrets work until the grace ends.
        banner.get_by_role("link", name="Rotate it").click()
        member.get_by_label("Old secret of pump-dashboard keeps working").select_option("1")
        member.once("dialog", lambda d: d.accept())
        member.get_by_role("button", name="Rotate pump-dashboard").click()
        expect(member.get_by_text("The old secret keeps working until")).to_be_visible()
        new_token = member.get_by_label("Your new token", exact=True).input_value()
        assert new_token != token
        assert _reads(url, token) == 200 and _reads(url, new_token) == 200
        main_nav(member, "Integrations").click()
        expect(member.get_by_text("rotated; old secret works until")).to_be_visible()
        expect(member.get_by_role("alert").filter(has_text="pump-dashboard")).to_have_count(0)  # dealt with
        _shot(member, "rotation-grace")
        CLOCK.advance(timedelta(days=1, minutes=1))
        assert _reads(url, token) == 401 and _reads(url, new_token) == 200

        # The admin revokes it for the organisation from the inventory: the next request is refused.
        log_in(admin, "olga@acme.test")
        admin_nav(admin, "Credentials").click()
        admin.once("dialog", lambda d: d.accept())
        admin.get_by_role("button", name="Revoke pump-dashboard of mia@acme.test").click()
        expect(admin.get_by_role("status").filter(has_text="Revoked for this organisation")).to_be_visible()
        assert _reads(url, new_token) == 403
        admin_nav(admin, "Audit log").click()
        admin.get_by_label("Action").fill("token.")
        admin.get_by_role("button", name="Filter").click()
        expect(admin.locator("table.audit")).to_contain_text("token.revoke_for_org")
        expect(admin.locator("table.audit")).to_contain_text("token.approve")
        _shot(admin, "audit-log")
        log_in(member, "mia@acme.test")
        member.get_by_role("navigation", name="Main").get_by_role("link", name="Notifications").click()
        item = member.locator(".notification").filter(has_text="“pump-dashboard” was revoked for Acme")
        expect(item).to_contain_text("keeps working in your other organisations")
        _shot(member, "notifications")
        browser.close()
