"""Restrictions are a registry of data classes: each kind loads what it dumps and verifies to a truthy
Success or a falsy Failure with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sensorhub.auth import restrictions as R

FACTS = R.RequestFacts(client_ip="10.1.2.3", now=datetime(2024, 1, 1, tzinfo=UTC))

EXAMPLES = [
    R.Organisations(frozenset({"o1", "o2"})),
    R.Workspaces({"w1": "o1"}),
    R.Entities(frozenset({"urn:ngsi-ld:Device:1"})),
    R.TimeWindow(datetime(2024, 1, 1, tzinfo=UTC), None),
    R.AllowedIPs(R.parse_networks(["10.0.0.0/8"])),
]


def test_every_registered_kind_has_an_example_that_round_trips() -> None:
    assert [type(r) for r in EXAMPLES] == list(R.REGISTRY.values())
    assert R.load(R.dump(EXAMPLES)) == EXAMPLES


def test_verify_answers_success_or_failure_with_a_reason() -> None:
    ok = R.AllowedIPs(R.parse_networks(["10.0.0.0/8"])).verify(FACTS)
    refused = R.AllowedIPs(R.parse_networks(["192.168.0.0/16"])).verify(FACTS)
    assert ok and isinstance(ok, R.Success)
    assert not refused and refused == R.Failure("client address not in allowlist")
    assert all(r.verify(FACTS) for r in EXAMPLES)


def test_empty_values_restrict_nothing_and_unknown_kinds_are_refused() -> None:
    assert R.load({"organisations": [], "time_window": {"start": None, "end": None}}) == []
    with pytest.raises(ValueError, match="unknown restriction kind"):
        R.load({"geofence": [1, 2]})


def test_a_kind_is_registered_once() -> None:
    with pytest.raises(TypeError):

        class Again(R.Restriction):  # the tag of an existing kind
            kind = "entities"


def test_restriction_inputs_make_the_api_body_the_web_form_and_the_spec() -> None:
    """Adding a restriction kind is adding one class: its ``inputs`` become the token-creation body
    members (with their descriptions), the web form fields, and the service's RestrictionSpec."""
    from dataclasses import fields

    from starlette.datastructures import FormData

    from sensorhub.auth import restrictions as R
    from sensorhub.tokens.schemas import ApiKeyCreate, TokenCreate
    from sensorhub.tokens.service import RestrictionSpec
    from sensorhub.web import forms

    names = [i.name for i in R.inputs()]
    assert names == ["organisations", "workspaces", "entities", "time_start", "time_end", "allowed_ips"]
    assert [f.name for f in fields(RestrictionSpec)] == names
    for model in (TokenCreate, ApiKeyCreate):
        props = model.model_json_schema()["properties"]
        for i in R.inputs():
            assert props[i.name]["description"] == i.description
    form = FormData(
        [
            ("organisations", "o1"),
            ("workspaces", "w1"),
            ("workspaces", "w2"),
            ("entities", "urn:a\nurn:b"),
            ("time_start", "2026-01-01"),
            ("allowed_ips", "10.0.0.0/8, 192.168.1.1"),
        ]
    )
    spec = forms.restrictions(form)
    assert spec.organisations == ["o1"] and spec.workspaces == ["w1", "w2"]
    assert spec.entities == ["urn:a", "urn:b"] and spec.allowed_ips == ["10.0.0.0/8", "192.168.1.1"]
    assert spec.time_start is not None and spec.time_start.year == 2026 and spec.time_end is None
    assert forms.restrictions(form, organisations=False).organisations == ()
    body = TokenCreate(name="n", scopes=["entities"], entities=["urn:a"], time_end="2027-01-01T00:00:00Z")
    spec = body.restriction_spec()
    assert spec.entities == ["urn:a"] and not spec.organisations and not spec.workspaces
    assert spec.time_end is not None and spec.time_end.year == 2027 and spec.time_start is None
