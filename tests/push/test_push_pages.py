"""The push edit forms over HTTP (the web layer's parsing of each connector kind's form into the
service's configuration and secrets), on SQLite and PostgreSQL: what each form stores, an error shown
next to its field with nothing saved, write-only credentials, CSRF, and who may open what."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.push import crypto
from sensorhub.push.models import Connector
from tests.builders import World
from tests.web.helpers import web_login

MQTT_FORM = {
    "name": "broker",
    "enabled": "on",
    "host": "127.0.0.1",
    "port": "1884",
    "topic": "{org}/{device}/{attribute}",
    "qos": "2",
    "retain": "on",
    "username": "pub",
    "password": "",
    "timeout_s": "1.5",
}


@pytest.fixture
def csrf(client: TestClient, world: World) -> str:
    world.org("acme")
    world.user("olga@acme.test", "acme", "owner")
    world.user("mia@acme.test", "acme", "member")
    return web_login(client, "olga@acme.test")


def create(client: TestClient, body: dict[str, Any]) -> str:
    # The JSON API needs the session's CSRF token as a header.
    me = client.get("/api/auth/me").json()
    r = client.post("/api/orgs/acme/connectors", json=body, headers={"x-csrf-token": me["csrf_token"]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def stored(world: World, cid: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
    with world.ctx.db.session() as s:
        c = s.get(Connector, cid)
        assert c is not None
        return dict(c.config), crypto.decrypt(world.ctx.settings, c.secrets_enc), c.enabled


def edit(client: TestClient, cid: str, csrf: str, form: dict[str, Any]) -> Any:
    return client.post(
        f"/orgs/acme/connectors/{cid}/edit", data={**form, "csrf_token": csrf}, follow_redirects=False
    )


def test_mqtt_form_keeps_replaces_and_removes_the_password(
    client: TestClient, world: World, csrf: str
) -> None:
    cid = create(
        client,
        {"kind": "mqtt", "name": "b", "config": {"host": "127.0.0.1"}, "secrets": {"password": "pw-1"}},
    )
    page = client.get(f"/orgs/acme/connectors/{cid}").text
    assert "pw-1" not in page and "One is stored." in page
    r = edit(client, cid, csrf, MQTT_FORM)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=connector-saved")
    config, secrets, enabled = stored(world, cid)
    assert config == {
        "host": "127.0.0.1",
        "port": 1884,
        "tls": False,
        "topic": "{org}/{device}/{attribute}",
        "qos": 2,
        "retain": True,
        "username": "pub",
        "timeout_s": 1.5,
    }
    assert secrets == {"password": "pw-1"} and enabled  # an empty password field keeps it
    assert edit(client, cid, csrf, {**MQTT_FORM, "password": "pw-2"}).status_code == 303
    assert stored(world, cid)[1] == {"password": "pw-2"}
    assert edit(client, cid, csrf, {**MQTT_FORM, "remove_password": "on"}).status_code == 303
    assert stored(world, cid)[1] == {}
    assert "None stored." in client.get(f"/orgs/acme/connectors/{cid}").text


def test_an_invalid_form_shows_the_error_at_its_field_and_saves_nothing(
    client: TestClient, world: World, csrf: str
) -> None:
    cid = create(client, {"kind": "mqtt", "name": "b", "config": {"host": "127.0.0.1"}})
    before = stored(world, cid)
    for form, field in (
        ({**MQTT_FORM, "name": "renamed", "topic": "a/#"}, "config-topic"),
        ({**MQTT_FORM, "name": "renamed", "qos": "7"}, "config-qos"),
        ({**MQTT_FORM, "name": "renamed", "port": "many"}, "config-port"),
        ({**MQTT_FORM, "name": "renamed", "timeout_s": "99"}, "config-timeout_s"),
        ({**MQTT_FORM, "name": ""}, "name"),
    ):
        r = edit(client, cid, csrf, form)
        assert r.status_code == 400, form
        m = re.search(rf'<p class="field-error" id="err-{field}">([^<]+)</p>', r.text)
        assert m, (field, r.text[:3000])
        assert f'aria-describedby="err-{field}"' in r.text
    assert stored(world, cid) == before


def test_influxdb_and_email_forms(client: TestClient, world: World, csrf: str) -> None:
    cid = create(
        client,
        {
            "kind": "influxdb",
            "name": "influx",
            "config": {"url": "http://127.0.0.1:8086", "database": "db1"},
            "secrets": {"password": "pw"},
        },
    )
    form = {
        "name": "influx2",
        "enabled": "on",
        "url": "http://127.0.0.1:8087",
        "version": "2",
        "org": "acme",
        "bucket": "sensors",
        "measurement": "m",
        "token": "tok-9",
        "remove_password": "on",
    }
    assert edit(client, cid, csrf, form).status_code == 303
    config, secrets, _ = stored(world, cid)
    assert config == {
        "url": "http://127.0.0.1:8087",
        "version": "2",
        "measurement": "m",
        "org": "acme",
        "bucket": "sensors",
    }
    assert secrets == {"token": "tok-9"}
    page = client.get(f"/orgs/acme/connectors/{cid}").text
    assert "tok-9" not in page and 'value="sensors"' in page
    # 2.x without a bucket: the error names the field.
    r = edit(client, cid, csrf, {**form, "bucket": "", "token": ""})
    assert r.status_code == 400 and 'id="err-config-bucket"' in r.text
    assert stored(world, cid)[0]["bucket"] == "sensors"


def test_email_form(client: TestClient, world: World, csrf: str) -> None:
    world.ctx.settings.smtp_host = "127.0.0.1"
    try:
        cid = create(client, {"kind": "email", "name": "mail", "config": {"to": ["a@acme.test"]}})
        r = edit(client, cid, csrf, {"name": "mail", "to": "a@acme.test; b@acme.test", "subject": "alarm"})
        assert r.status_code == 303
        config, _, enabled = stored(world, cid)
        assert config["to"] == ["a@acme.test", "b@acme.test"] and config["subject"] == "alarm"
        assert not enabled  # the Enabled box was not ticked
        r = edit(client, cid, csrf, {"name": "mail", "to": "not-an-address", "enabled": "on"})
        assert r.status_code == 400 and 'id="err-config-to"' in r.text
    finally:
        world.ctx.settings.smtp_host = None


def test_csrf_and_roles(client: TestClient, world: World, csrf: str) -> None:
    cid = create(client, {"kind": "mqtt", "name": "b", "config": {"host": "127.0.0.1"}})
    r = client.post(f"/orgs/acme/connectors/{cid}/edit", data={**MQTT_FORM, "name": "x"})
    assert r.status_code == 403 and "form has expired" in r.text
    r = client.post("/orgs/acme/subscriptions/1/delete", data={})
    assert r.status_code == 403 and "form has expired" in r.text
    assert stored(world, cid)[0]["host"] == "127.0.0.1"

    client.cookies.clear()
    mia = web_login(client, "mia@acme.test")
    for path in (f"/orgs/acme/connectors/{cid}", "/orgs/acme/connectors", "/orgs/acme/rules"):
        r = client.get(path)
        assert r.status_code == 403 and "127.0.0.1" not in r.text, path
    r = edit(client, cid, mia, {**MQTT_FORM, "host": "10.0.0.1"})
    assert r.status_code == 403
    assert stored(world, cid)[0]["host"] == "127.0.0.1"
    r = client.get("/orgs/acme/subscriptions")
    assert r.status_code == 200 and "You see the subscriptions of your own tokens" in r.text
    assert "Your NGSI-LD subscriptions" in client.get("/").text
    assert client.get("/orgs/acme/subscriptions/1").status_code == 404


def test_the_create_rule_form_keeps_what_was_typed_and_marks_the_field(
    client: TestClient, world: World, csrf: str
) -> None:
    cid = create(client, {"kind": "mqtt", "name": "b", "config": {"host": "127.0.0.1"}})
    form = {
        "csrf_token": csrf,
        "name": "too hot",
        "condition": "above",
        "attribute": "temperature",
        "threshold": "hot",
        "connectors": cid,
        "template": "{{ value }}!",
        "cooldown_s": "60",
    }
    r = client.post("/orgs/acme/rules", data=form)
    assert r.status_code == 400
    assert 'id="err-condition-threshold"' in r.text and "condition.threshold must be a number" in r.text
    assert 'value="too hot"' in r.text and 'value="hot"' in r.text and "{{ value }}!</textarea>" in r.text
    assert f'value="{cid}" checked' in r.text and '<option value="above" selected>' in r.text
    r = client.post("/orgs/acme/rules", data={**form, "threshold": "80", "template": "{{ value | nope }}"})
    assert r.status_code == 400 and 'id="err-template"' in r.text
    r = client.post("/orgs/acme/rules", data={**form, "threshold": "80", "cooldown_s": "soon"})
    assert r.status_code == 400 and 'id="err-cooldown_s"' in r.text
    assert "No rules yet." in client.get("/orgs/acme/rules").text
    r = client.post("/orgs/acme/rules", data={**form, "threshold": "80"}, follow_redirects=False)
    assert r.status_code == 303
    assert "too hot" in client.get("/orgs/acme/rules").text


def test_the_create_connector_forms_keep_what_was_typed_and_mark_the_field(
    client: TestClient, world: World, csrf: str
) -> None:
    base = {"csrf_token": csrf, "kind": "webhook", "name": "ops", "headers": "X-Team: ops"}
    r = client.post("/orgs/acme/connectors", data={**base, "url": "ftp://example.com/x"})
    assert r.status_code == 400
    assert 'id="err-webhook-config-url"' in r.text and 'value="ftp://example.com/x"' in r.text
    assert 'aria-describedby="err-webhook-config-url"' in r.text and "X-Team: ops</textarea>" in r.text
    assert 'id="err-mqtt-' not in r.text  # only the form that was sent is marked
    r = client.post(
        "/orgs/acme/connectors", data={**base, "url": "http://127.0.0.1:9/", "headers": "nocolon"}
    )
    assert r.status_code == 400 and 'id="err-webhook-config-headers"' in r.text
    mq = {"csrf_token": csrf, "kind": "mqtt", "name": "b", "host": "127.0.0.1", "port": "x", "qos": "1"}
    r = client.post("/orgs/acme/connectors", data=mq)
    assert r.status_code == 400 and 'id="err-mqtt-config-port"' in r.text and 'value="127.0.0.1"' in r.text
    assert "No connectors yet." in client.get("/orgs/acme/connectors").text


def test_rule_forms_set_the_topic(client: TestClient, world: World, csrf: str) -> None:
    cid = create(client, {"kind": "mqtt", "name": "b", "config": {"host": "127.0.0.1"}})
    form = {"csrf_token": csrf, "name": "hot", "condition": "above", "attribute": "t", "threshold": "1"}
    r = client.post("/orgs/acme/rules", data={**form, "connectors": cid, "topic": "*"})
    assert r.status_code == 400 and 'id="err-topic"' in r.text and 'value="*"' in r.text
    r = client.post(
        "/orgs/acme/rules", data={**form, "connectors": cid, "topic": "env"}, follow_redirects=False
    )
    assert r.status_code == 303
    me = client.get("/api/auth/me").json()
    (rule,) = client.get("/api/orgs/acme/rules", headers={"x-csrf-token": me["csrf_token"]}).json()
    assert rule["topic"] == "env"
    page = client.get(f"/orgs/acme/rules/{rule['id']}").text
    assert 'name="topic" placeholder="default with a condition, * without" value="env"' in page
    edit = {**form, "connectors": cid, "topic": "power", "enabled": "on", "action": "save"}
    r = client.post(f"/orgs/acme/rules/{rule['id']}/edit", data=edit, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(f"/api/orgs/acme/rules/{rule['id']}").json()["topic"] == "power"
