"""Backfill: chunked, resumable through retries, with progress and summed totals."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sdk_fakes import body_of, error_response

import sensorhub_client as sc

PATH = "/v3/devices/dev-1/backfill"


def records(n: int) -> list[dict]:
    return [
        {"timestamp": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "data": {"t": float(i)}} for i in range(n)
    ]


def accepting(request: httpx.Request) -> httpx.Response:
    chunk = body_of(request)
    return httpx.Response(200, json={"accepted": len(chunk) - 1, "duplicates": 1})


def test_records_go_in_chunks_with_progress_and_summed_totals(client, server):
    server.add("POST", PATH, accepting)
    progress = []
    result = client.backfill(
        "dev-1", records(12), chunk_size=5, progress=lambda sent, total: progress.append((sent, total))
    )
    assert [len(body_of(r)) for r in server.requests] == [5, 5, 2]
    assert progress == [(5, 12), (10, 12), (12, 12)]
    assert result == sc.BackfillResult(accepted=9, duplicates=3, chunks=3)
    assert body_of(server.requests[0])[0] == {"timestamp": "2026-01-01T00:00:00Z", "data": {"t": 0.0}}


def test_429_waits_for_retry_after_and_resends_the_same_chunk(client, server, sleeps):
    answers = iter(["limited", "ok", "ok"])

    def handler(request):
        if next(answers) == "limited":
            return error_response(429, "Too Many Requests", "slow down", {"Retry-After": "3"})
        return accepting(request)

    server.add("POST", PATH, handler)
    result = client.backfill("dev-1", records(4), chunk_size=2)
    assert sleeps == [3.0]
    assert [body_of(r) for r in server.requests[:2]] == [records(2), records(2)]
    assert result.chunks == 2
    assert result.accepted == 2


def test_503_then_success_backs_off_exponentially(client, server, sleeps):
    failures = iter([True, True, False, False])

    def handler(request):
        if next(failures):
            return error_response(503, "Service Unavailable", "restarting")
        return accepting(request)

    server.add("POST", PATH, handler)
    result = client.backfill("dev-1", records(2), chunk_size=1)
    assert sleeps == [0.5, 1.0]
    assert result.chunks == 2


def test_a_dropped_connection_is_retried(client, server, sleeps):
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return accepting(request)

    server.add("POST", PATH, handler)
    assert client.backfill("dev-1", records(3)).chunks == 1
    assert len(sleeps) == 1


def test_giving_up_says_how_far_it_got_and_that_resending_is_safe(client, server, sleeps):
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            return accepting(request)
        return error_response(500, "Internal Server Error", "disk full")

    server.add("POST", PATH, handler)
    with pytest.raises(sc.ServerError) as info:
        client.backfill("dev-1", records(4), chunk_size=2)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "after 2 of 4 records" in notes
    assert "safe" in notes
    assert len(calls) == 1 + 4  # the failing chunk: first try and three retries


def test_validation_errors_are_not_retried(client, server, sleeps):
    server.add("POST", PATH, lambda r: error_response(422, "Unprocessable Entity", "data must be an object"))
    with pytest.raises(sc.ValidationError, match="data must be an object"):
        client.backfill("dev-1", records(1))
    assert sleeps == []


def test_datetime_timestamps_and_topics_are_normalised(client, server):
    server.add("POST", PATH, accepting)
    client.backfill(
        "dev-1",
        [
            {"timestamp": datetime(2026, 1, 1, 12, tzinfo=UTC), "topic": "uplink", "data": {"t": 1}},
            {"data": {"t": 2}},
        ],
    )
    assert body_of(server.requests[0]) == [
        {"timestamp": "2026-01-01T12:00:00Z", "topic": "uplink", "data": {"t": 1}},
        {"data": {"t": 2}},
    ]


def test_a_single_record_is_accepted(client, server):
    server.add("POST", PATH, accepting)
    client.backfill("dev-1", {"data": {"t": 2}})
    assert body_of(server.requests[0]) == [{"data": {"t": 2}}]


def test_generators_stream_with_unknown_total(client, server):
    server.add("POST", PATH, accepting)
    progress = []
    client.backfill("dev-1", iter(records(3)), chunk_size=2, progress=lambda s, t: progress.append((s, t)))
    assert progress == [(2, None), (3, None)]


def test_malformed_records_and_naive_times_are_refused_before_sending(client, server):
    server.add("POST", PATH, accepting)
    with pytest.raises(ValueError, match="'data' mapping"):
        client.backfill("dev-1", [{"timestamp": "2026-01-01T00:00:00Z", "t": 1.0}])
    with pytest.raises(ValueError, match="no time zone"):
        client.backfill("dev-1", [{"timestamp": "2026-01-01T00:00:00", "data": {"t": 1.0}}])
    assert server.requests == []


def test_a_dataframe_with_a_datetime_index_is_sent_column_by_column(client, server):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    frame = pd.DataFrame(
        {"temperature": [21.5, np.nan, 22.0], "count": np.array([1, 2, 3], dtype="int64")},
        index=pd.DatetimeIndex(
            ["2026-01-01 01:00", "2026-01-01 02:00", "2026-01-01 03:00"], tz="Europe/Amsterdam"
        ),
    )
    server.add("POST", PATH, accepting)
    client.backfill("dev-1", frame)
    assert body_of(server.requests[0]) == [
        {"timestamp": "2026-01-01T00:00:00.000000Z", "data": {"temperature": 21.5, "count": 1}},
        {"timestamp": "2026-01-01T01:00:00.000000Z", "data": {"count": 2}},
        {"timestamp": "2026-01-01T02:00:00.000000Z", "data": {"temperature": 22.0, "count": 3}},
    ]


def test_a_dataframe_needs_an_aware_datetime_index(client):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="no time zone"):
        client.backfill("dev-1", pd.DataFrame({"t": [1.0]}, index=pd.DatetimeIndex(["2026-01-01"])))
    with pytest.raises(ValueError, match="DatetimeIndex"):
        client.backfill("dev-1", pd.DataFrame({"t": [1.0]}))


def test_device_ids_are_escaped(client, server):
    server.add("POST", "/v3/devices/a%2Fb/backfill", accepting)
    client.backfill("a/b", records(1))
    assert server.requests[0].url.raw_path == b"/v3/devices/a%2Fb/backfill"
