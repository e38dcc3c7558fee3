"""Signing in with OpenID Connect in a real browser (Debian's chromium, Playwright): the login page's
"Sign in with Test SSO" → the provider's own login and consent pages (panva's oidc-provider on loopback)
→ back in sensorhub's UI, logged in, on the page that was asked for; logging out ends the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.migrate import upgrade
from tests.builders import World
from tests.oidc_provider import free_port, oidc_provider, oidc_settings, sensorhub_server

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("SENSORHUB_REQUIRE_SERVICES") == "1"
pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists() and not REQUIRED:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.web.test_browser import CHROMIUM_ARGS, main_nav  # noqa: E402


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    accounts = {"mia": {"email": "mia@acme.test", "email_verified": True, "name": "Mia"}}
    with oidc_provider([f"http://127.0.0.1:{port}/login/oidc/callback"], accounts, log_dir=tmp_path) as p:
        settings = oidc_settings(Settings(data_dir=tmp_path / "data", env="test"), p.issuer)
        db = Database(settings)
        upgrade(db)
        db.dispose()
        with sensorhub_server(settings, port) as (url, ctx):
            world = World(ctx)
            world.org("acme", ("farm",))
            world.user("mia@acme.test", "acme", "member")
            yield url


def test_sign_in_through_the_provider_lands_in_the_ui(served: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=served).new_page()
        page.goto("/integrations")  # not logged in: the login page, which remembers where to go
        page.get_by_role("link", name="Sign in with Test SSO").click()
        # The provider's pages (not sensorhub's).
        page.get_by_placeholder("Enter any login").fill("mia")
        page.get_by_placeholder("and password").fill("whatever")
        page.get_by_role("button", name="Sign-in").click()
        page.get_by_role("button", name="Continue").click()
        # Back in sensorhub, logged in, on the page asked for.
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        assert page.url == f"{served}/integrations"
        expect(page.get_by_text("mia@acme.test").first).to_be_visible()
        main_nav(page, "Home").click()
        expect(page.get_by_role("heading", name="acme").first).to_be_visible()
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_text("You are logged out.")).to_be_visible()
        page.goto("/integrations")
        expect(page.get_by_role("link", name="Sign in with Test SSO")).to_be_visible()
        browser.close()
