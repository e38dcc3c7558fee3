"""Ready-to-paste examples (curl, requests, sensorhub_client) for the Integrations page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote


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


def build(base: str, token: str | None, kind: str, example: Example | None) -> Snippets:
    shown = token or f"paste-your-token-here  # shub_{kind}_…"
    tok_py = f'"{token}"' if token else '"paste-your-token-here"'
    env = f"export SENSORHUB_URL={base}\nexport SENSORHUB_TOKEN={token or 'paste-your-token-here'}"
    entity = example.entity_id if example else "urn:ngsi-ld:WeatherObserved:station-1"
    attribute = (example.attribute if example else None) or "temperature"
    end_dt = (example.end if example else datetime(2026, 2, 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    end_dt += timedelta(days=1)
    start = (end_dt - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = end_dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = f"/api/timeseries/v2/entities/{quote(entity, safe=':')}/data"
    del shown
    curl = (
        "# What can this token do, and until when?\n"
        f'curl -H "Authorization: Bearer $SENSORHUB_TOKEN" "{base}/api/tokens/self"\n\n'
        "# Entities you may read (scope: entities)\n"
        f'curl -H "Authorization: Bearer $SENSORHUB_TOKEN" "{base}/ngsi-ld/v1/entities?limit=10"\n\n'
        "# One week of a time series, at most 200 points (scope: timeseries)\n"
        f'curl -H "Authorization: Bearer $SENSORHUB_TOKEN" \\\n'
        f'  "{base}{path}?attribute={quote(attribute)}&start_time={start}&end_time={end}&resolution=200"'
    )
    req = (
        "import requests\n\n"
        f'BASE = "{base}"\n'
        f"TOKEN = {tok_py}\n"
        'headers = {"Authorization": f"Bearer {TOKEN}"}\n\n'
        "# What can this token do, and until when?\n"
        'print(requests.get(f"{BASE}/api/tokens/self", headers=headers).json())\n\n'
        "# One week of a time series, at most 200 points (scope: timeseries)\n"
        "r = requests.get(\n"
        f'    f"{{BASE}}{path}",\n'
        f'    params={{"attribute": "{attribute}", "start_time": "{start}", "end_time": "{end}", "resolution": 200}},\n'
        "    headers=headers,\n"
        ")\n"
        "r.raise_for_status()\n"
        "data = r.json()  # {timestamps: [...], attributes: {name: [...]}}"
    )
    sdk = (
        "# pip install sensorhub-client[all]\n"
        "import sensorhub_client as sc\n\n"
        f'client = sc.Client("{base}", token={tok_py})\n'
        "print(client.whoami())\n\n"
        "# A pandas DataFrame indexed by UTC timestamp (scope: timeseries)\n"
        f'df = client.timeseries("{entity}", ["{attribute}"],\n'
        f'                       start="{start}", end="{end}", resolution=200)\n'
        "df.plot()"
    )
    return Snippets(curl=curl, requests=req, sdk=sdk, env=env)
