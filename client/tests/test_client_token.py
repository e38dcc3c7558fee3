"""Tokens are checked locally before any request; configuration comes from arguments or the environment."""

from __future__ import annotations

import httpx
import pytest
from sdk_fakes import BASE, TOKEN, make_token

import sensorhub_client as sc


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError("no request may be sent with an invalid token")


def _client(token: str | None) -> sc.Client:
    return sc.Client(base_url=BASE, token=token, transport=httpx.MockTransport(_refuse))


@pytest.mark.parametrize(
    ("prefix", "kind"), [("shub", "pat"), ("shub", "key"), ("acme2", "pat"), ("x", "key")]
)
def test_well_formed_tokens_with_any_prefix_are_accepted(prefix, kind):
    c = _client(make_token(prefix, kind))
    assert c.token_kind == kind
    c.close()


def test_tokens_minted_by_the_server_code_pass_the_client_check():
    token_format = pytest.importorskip("sensorhub.auth.token_format")
    for kind in ("pat", "key"):
        _client(token_format.generate("shub", kind)).close()


def _flip(ch: str) -> str:
    return "B" if ch == "A" else "A"


BAD_TOKENS = {
    "checksum": (TOKEN[:-1] + _flip(TOKEN[-1]), "checksum does not match"),
    "typo in secret": (TOKEN[:12] + _flip(TOKEN[12]) + TOKEN[13:], "checksum does not match"),
    "truncated": (TOKEN[:-3], "copied incompletely"),
    "kind": (TOKEN.replace("_pat_", "_pet_"), "must be 'pat' or 'key'"),
    "uppercase prefix": ("SHUB" + TOKEN[4:], "lowercase"),
    "long prefix": ("a" * 17 + TOKEN[4:], "1 to 16"),
    "bearer prefix": ("Bearer " + TOKEN, "without the 'Bearer ' prefix"),
    "space inside": (TOKEN[:20] + " " + TOKEN[21:], "spaces"),
    "non base62": (TOKEN[:20] + "-" + TOKEN[21:], "other than 0-9"),
    "not a token": ("hunter2", "does not look like a sensorhub token"),
    "other vendor": ("ghp_" + "a" * 36, "does not look like a sensorhub token"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_malformed_token_is_rejected_before_any_request_with_a_reason(case):
    token, reason = BAD_TOKENS[case]
    with pytest.raises(sc.InvalidTokenFormat) as info:
        _client(token)
    message = str(info.value)
    assert reason in message
    # The message names the problem without echoing the token or any long piece of it.
    assert token not in message
    for start in range(0, max(1, len(token) - 8)):
        assert token[start : start + 8] not in message


def test_invalid_token_format_is_a_sensorhub_error_and_a_value_error():
    with pytest.raises(sc.SensorhubError):
        _client("nope")
    with pytest.raises(ValueError):
        _client("nope")


def test_missing_token_says_how_to_provide_one():
    with pytest.raises(sc.InvalidTokenFormat, match="SENSORHUB_TOKEN"):
        _client(None)


def test_surrounding_whitespace_from_copy_paste_is_ignored(monkeypatch):
    monkeypatch.setenv("SENSORHUB_TOKEN", TOKEN + "\n")
    seen = []

    def handler(request):
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"name": "nb"})

    with sc.Client(base_url=BASE, transport=httpx.MockTransport(handler)) as c:
        c.whoami()
    assert seen == [f"Bearer {TOKEN}"]


def test_environment_supplies_url_and_token(monkeypatch):
    monkeypatch.setenv("SENSORHUB_URL", "https://hub.example.org/")
    monkeypatch.setenv("SENSORHUB_TOKEN", TOKEN)
    seen = []

    def handler(request):
        seen.append((str(request.url), request.headers["authorization"]))
        return httpx.Response(200, json={"name": "nb"})

    with sc.Client(transport=httpx.MockTransport(handler)) as c:
        assert c.base_url == "https://hub.example.org"
        assert c.whoami() == {"name": "nb"}
    assert seen == [("https://hub.example.org/api/tokens/self", f"Bearer {TOKEN}")]


def test_arguments_win_over_environment(monkeypatch):
    monkeypatch.setenv("SENSORHUB_URL", "https://env.example.org")
    monkeypatch.setenv("SENSORHUB_TOKEN", "garbage-that-would-fail")
    other = make_token()
    seen = []

    def handler(request):
        seen.append((request.url.host, request.headers["authorization"]))
        return httpx.Response(200, json={})

    with sc.Client("https://arg.example.org", other, transport=httpx.MockTransport(handler)) as c:
        c.whoami()
    assert seen == [("arg.example.org", f"Bearer {other}")]


def test_default_url_is_the_local_server(monkeypatch):
    monkeypatch.setenv("SENSORHUB_TOKEN", TOKEN)
    with sc.Client(transport=httpx.MockTransport(_refuse)) as c:
        assert c.base_url == "http://127.0.0.1:8000"


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="http"):
        sc.Client(base_url="ftp://example.org", token=TOKEN)


def test_base_url_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(ValueError, match="must not contain a user name or password") as info:
        sc.Client(base_url="https://alice:s3cret@hub.example.org", token=TOKEN)
    assert "s3cret" not in str(info.value)


def test_base_url_with_a_path_prefix_is_kept(server):
    server.add("GET", "/sensorhub/api/devices", lambda r: httpx.Response(200, json=[]))
    with sc.Client(base_url=BASE + "/sensorhub", token=TOKEN, transport=server.transport()) as c:
        assert c.devices() == []


def test_client_is_a_context_manager_that_closes_its_connections(server):
    server.add("GET", "/api/tokens/self", lambda r: httpx.Response(200, json={}))
    with sc.Client(base_url=BASE, token=TOKEN, transport=server.transport()) as c:
        c.whoami()
    with pytest.raises(RuntimeError, match="closed"):
        c.whoami()
