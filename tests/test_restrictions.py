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
