"""The deployment guide is a contract: every setting is documented, and so is every metric."""

from __future__ import annotations

import re
from pathlib import Path

from sensorhub import metrics
from sensorhub.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_in_the_deployment_guide() -> None:
    text = (DOCS / "deployment.md").read_text()
    missing = [
        f"SENSORHUB_{name.upper()}"
        for name in Settings.model_fields
        if f"SENSORHUB_{name.upper()}" not in text
    ]
    assert not missing, f"document these in docs/deployment.md: {missing}"


def test_every_metric_is_in_the_deployment_guide() -> None:
    text = (DOCS / "deployment.md").read_text()
    exported = {
        m.describe()[0].name
        for m in (
            metrics.http_requests,
            metrics.http_duration,
            metrics.auth_failures,
            metrics.auth_cache_lookups,
            metrics.auth_invalidations,
            metrics.ingest_points,
            metrics.ingest_duplicates,
            metrics.export_rows,
        )
    }
    documented = set(re.findall(r"`(sensorhub_[a-z_]+)`", text))
    # prometheus_client names counters without the _total suffix internally.
    missing = [n for n in exported if n not in documented and f"{n}_total" not in documented]
    assert not missing, f"document these metrics in docs/deployment.md: {missing}"
