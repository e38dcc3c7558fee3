"""The seed documents' own code, unmodified but for the base URL and token, against `sensorhub demo`.

One real demo (seeded once for this module, 13 months of readings) and one real server process.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

BIN = Path(sys.executable).parent

NEKAZARI_SNIPPET = """
import requests

PAT = "nkz_pat_..."
BASE = "https://nkz.robotika.cloud"

headers = {"Authorization": f"Bearer {PAT}"}

# Query entities
r = requests.get(
    f"{BASE}/ngsi-ld/v1/entities",
    params={"type": "AgriParcel", "limit": 100},
    headers=headers,
)
parcels = r.json()

# Query timeseries
r = requests.get(
    f"{BASE}/api/timeseries/v2/entities/urn:ngsi-ld:WeatherObserved:station-1/data",
    params={
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-31T00:00:00Z",
        "attribute": "temperature",
        "resolution": 200,
    },
    headers=headers,
)
data = r.json()

# Export as Parquet
r = requests.post(
    f"{BASE}/api/datahub/export",
    json={
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-31T00:00:00Z",
        "series": [{"entity_id": "urn:ngsi-ld:WeatherObserved:station-1", "attribute": "temperature"}],
        "format": "parquet",
    },
    headers=headers,
)
presigned_url = r.json()["download_url"]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, SENSORHUB_DATA_DIR=str(data), SENSORHUB_ALLOW_QUERY_TOKEN="1")
    env.pop("SENSORHUB_DATABASE_URL", None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    seeded = subprocess.run(
        [str(BIN / "sensorhub"), "demo", "--no-serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert seeded.returncode == 0, seeded.stderr
    token = re.search(r"token:\s+(shub_pat_\w+)", seeded.stdout)
    password = re.search(r"password:\s+(\S+)", seeded.stdout)
    assert token and password, seeded.stdout
    server = subprocess.Popen(
        [str(BIN / "sensorhub"), "serve", "--port", str(port), "--log-level", "warning", "--no-mqtt"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield {"base": base, "token": token.group(1), "password": password.group(1), "banner": seeded.stdout}
    finally:
        server.terminate()
        server.wait(20)


def test_nekazari_python_example_runs_unmodified(demo_server: dict[str, Any]) -> None:
    code = NEKAZARI_SNIPPET.replace('"nkz_pat_..."', repr(demo_server["token"])).replace(
        '"https://nkz.robotika.cloud"', repr(demo_server["base"])
    )
    ns: dict[str, Any] = {}
    exec(compile(code, "nekazari-pat.txt", "exec"), ns)

    parcels = ns["parcels"]
    assert isinstance(parcels, list) and len(parcels) >= 5
    assert all(p["type"] == "AgriParcel" for p in parcels)

    data = ns["data"]
    assert data["entity_id"] == "urn:ngsi-ld:WeatherObserved:station-1"
    n = len(data["timestamps"])
    assert 100 <= n <= 200, n  # January at 10-minute readings is 4,320 points: downsampled to ≤ 200 buckets
    temps = [v for v in data["attributes"]["temperature"] if v is not None]
    assert len(temps) == n and -40 < min(temps) < max(temps) < 50

    import pyarrow.parquet as pq

    url = ns["presigned_url"]
    if url.startswith("/"):
        url = demo_server["base"] + url
    body = httpx.get(url).content  # no token: the signature is the credential
    table = pq.read_table(io.BytesIO(body))
    assert table.column_names == ["timestamp", "urn:ngsi-ld:WeatherObserved:station-1.temperature"]
    assert table.num_rows == 4320  # 30 days of 10-minute readings, under the PAT cap of 10,000


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_leaf_curl_lines_work(demo_server: dict[str, Any]) -> None:
    t, b = demo_server["token"], demo_server["base"]
    out = subprocess.run(
        ["curl", "-s", "-H", f"Authorization: Bearer {t}", f"{b}/api/managements"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    managements = json.loads(out)
    assert managements and managements[0]["organisation"] and "department" in managements[0]
    out = subprocess.run(
        ["curl", "-s", f"{b}/api/data/recent?token={t}&limit=20"], capture_output=True, text=True, check=True
    ).stdout
    rows = json.loads(out)
    assert len(rows) == 20
    assert set(rows[0]) >= {"time", "entity", "metric", "value", "tags"}


def test_demo_banner_prints_ready_to_paste_lines(demo_server: dict[str, Any]) -> None:
    banner = demo_server["banner"]
    assert demo_server["base"] in banner and "curl" in banner and "Authorization: Bearer" in banner
