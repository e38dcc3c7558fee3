"""Documented settings and scopes are a contract: every one exists in the docs, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path

from sensorhub.auth.scopes import ALL_SCOPES
from sensorhub.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"SENSORHUB_([A-Z0-9_]+)", text))
    # "`_WINDOW_SECONDS`" style continuations in the table name the previous variable's sibling.
    documented |= (
        {"FAILED_AUTH_WINDOW_SECONDS"}
        if "`SENSORHUB_FAILED_AUTH_LIMIT` / `_WINDOW_SECONDS`" in text
        else set()
    )
    fields = {name.upper() for name in Settings.model_fields}
    fields.discard("ENV")
    missing = sorted(fields - documented)
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"
    unknown = sorted(d for d in documented - fields if d not in {"REQUIRE_SERVICES", "TEST_REDIS"})
    assert unknown == [], f"docs/configuration.md names settings that do not exist: {unknown}"


def test_every_scope_is_documented() -> None:
    text = (DOCS / "tokens.md").read_text()
    for scope in ALL_SCOPES:
        assert f"| `{scope}` |" in text, scope
