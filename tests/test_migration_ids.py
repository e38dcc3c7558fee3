"""Migration files and their Alembic revision ids.

Revisions 0006-0015 were landed with ids that do not match their file numbers (``0011_series_topic.py``
is revision ``0006_series_topic``). Databases made from main store those ids in ``alembic_version``, so
they stay as they are (changing one would leave such a database at a revision Alembic cannot find);
from 0016 on, a revision id starts with its file's number, so the file list reads as the chain does.
"""

from __future__ import annotations

import re
from pathlib import Path

import sensorhub

VERSIONS = Path(sensorhub.__file__).parent / "migrations" / "versions"
# The ids as they were landed (see the module docstring): never to be changed.
LANDED = {
    "0001": "0001", "0002": "0002", "0004": "0004", "0005": "0005", "0006": "0006_push",
    "0007": "0006_tokens", "0008": "0008_live_subscriptions", "0009": "0006_sumsq",
    "0010": "0009_push_delivery", "0011": "0006_series_topic", "0012": "0010_geo",
    "0013": "0013_live_subscription_counts", "0014": "0008_tokens", "0015": "0009_tokens",
}  # fmt: skip


def _revisions() -> dict[str, str]:
    out = {}
    for p in sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")):
        m = re.search(r'^revision\s*(?::\s*str)?\s*=\s*["\']([^"\']+)', p.read_text(), re.M)
        assert m, p.name
        out[p.name[:4]] = m.group(1)
    return out


def test_landed_revision_ids_never_change() -> None:
    revs = _revisions()
    for number, rev in LANDED.items():
        assert revs.get(number) == rev, (
            f"migration {number}: revision id {revs.get(number)!r}, landed as {rev!r}"
        )


def test_new_revision_ids_start_with_their_file_number() -> None:
    for number, rev in _revisions().items():
        if number not in LANDED:
            assert rev.split("_")[0] == number, f"{number}_*.py has revision {rev!r}: start it with {number}"
