"""Ready-to-paste examples (curl, requests, sensorhub_client) for the Integrations page.

Everything pasted into an example that comes from data (the base URL, the token, the entity id, the
attribute name, the dates) goes through an escaper for the language it lands in — :func:`py_str` for
Python string literals, :func:`shlex.quote` for shell words, :func:`urllib.parse.quote` for URL parts —
and never through plain string formatting: a stored attribute name is chosen by whoever may ingest, and
the person copying the snippet runs it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from sensorhub.kit.time import MAX_TIME, MIN_TIME

PLACEHOLDER_TOKEN = "paste-your-token-here"  # noqa: S105  (a placeholder, not a secret)
DEFAULT_ENTITY = "urn:ngsi-ld:WeatherObserved:station-1"
DEFAULT_ATTRIBUTE = "temperature"
WEEK = timedelta(days=7)


@dataclass
class Example:
    """Something real to read in the examples: an entity the user may see, and one of its attributes."""

    entity_id: str
    attribute: str | None
    end: datetime


@dataclass
class Snippets:
    curl: str
    requests: str
    sdk: str
    env: str


def py_str(value: str) -> str:
    """A Python string literal whose value is exactly ``value`` (``repr``), in double quotes when that
    needs no escaping of its own (the style of the rest of the snippet)."""
    r = repr(value)
    if r.startswith("'") and '"' not in value:
        # repr chose single quotes although the text has no quote at all: the body is the same.
        r = '"' + r[1:-1] + '"'
    return r


def example_window(end: datetime | None) -> tuple[datetime, datetime]:
    """The week shown in the examples: the seven days up to the end of ``end``'s day, kept inside the
    supported time range (data stored before the range was enforced may lie outside it)."""
    end = end or datetime(2026, 2, 1, tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    end = min(max(end, MIN_TIME + WEEK), MAX_TIME - timedelta(days=1))
    stop = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return stop - WEEK, stop


def build(base: str, token: str | None, kind: str, example: Example | None) -> Snippets:
    del kind  # every kind of token is sent the same way
    entity = example.entity_id if example else DEFAULT_ENTITY
    attribute = (example.attribute if example else None) or DEFAULT_ATTRIBUTE
    start_dt, end_dt = example_window(example.end if example else None)
    start = start_dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = end_dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = f"/api/timeseries/v2/entities/{quote(entity, safe=':')}/data"
    query = urlencode(
        {"attribute": attribute, "start_time": start, "end_time": end, "resolution": 200}, quote_via=quote
    )
    token_py = py_str(token or PLACEHOLDER_TOKEN)

    env = f"export SENSORHUB_URL={shlex.quote(base)}\nexport SENSORHUB_TOKEN={shlex.quote(token or PLACEHOLDER_TOKEN)}"
    auth = '-H "Authorization: Bearer $SENSORHUB_TOKEN"'  # a constant: only the variable expands
    curl = (
        "# What can this token do, and until when?\n"
        f"curl {auth} {shlex.quote(base + '/api/tokens/self')}\n\n"
        "# Entities you may read (scope: entities)\n"
        f"curl {auth} {shlex.quote(base + '/ngsi-ld/v1/entities?local=true&limit=10')}\n\n"
        "# One week of a time series, at most 200 points (scope: timeseries)\n"
        f"curl {auth} \\\n"
        f"  {shlex.quote(base + path + '?' + query)}"
    )
    req = (
        "import requests\n\n"
        f"BASE = {py_str(base)}\n"
        f"TOKEN = {token_py}\n"
        'headers = {"Authorization": f"Bearer {TOKEN}"}\n\n'
        "# What can this token do, and until when?\n"
        'print(requests.get(BASE + "/api/tokens/self", headers=headers).json())\n\n'
        "# One week of a time series, at most 200 points (scope: timeseries)\n"
        "r = requests.get(\n"
        f"    BASE + {py_str(path)},\n"
        f'    params={{"attribute": {py_str(attribute)}, "start_time": {py_str(start)}, '
        f'"end_time": {py_str(end)}, "resolution": 200}},\n'
        "    headers=headers,\n"
        ")\n"
        "r.raise_for_status()\n"
        "data = r.json()  # {timestamps: [...], attributes: {name: [...]}}"
    )
    sdk = (
        "# pip install sensorhub-client[all]\n"
        "import sensorhub_client as sc\n\n"
        f"client = sc.Client({py_str(base)}, token={token_py})\n"
        "print(client.whoami())\n\n"
        "# A pandas DataFrame indexed by UTC timestamp (scope: timeseries)\n"
        f"df = client.timeseries({py_str(entity)}, [{py_str(attribute)}],\n"
        f"                       start={py_str(start)}, end={py_str(end)}, resolution=200)\n"
        "df.plot()"
    )
    return Snippets(curl=curl, requests=req, sdk=sdk, env=env)
