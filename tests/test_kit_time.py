"""kit.time: the one ISO 8601 rendering of microsecond timestamps, scalar and vectorised, agree."""

from __future__ import annotations

import numpy as np

from sensorhub.kit.time import iso, iso_array


def test_iso_and_iso_array_render_every_timestamp_alike() -> None:
    rng = np.random.default_rng(7)
    samples = np.concatenate(
        [
            rng.integers(-(2**50), 2**55, 5000),  # microseconds, before and after 1970
            rng.integers(0, 2**51, 5000) // 1_000_000 * 1_000_000,  # whole seconds
            rng.integers(0, 2**51, 5000) // 1000 * 1000,  # milliseconds
            np.array([0, -1, 1, 253_402_300_799_999_999]),  # the epoch, around it, 9999-12-31T23:59:59.999999
        ]
    ).astype(np.int64)
    for us in samples.tolist():
        assert iso(us) == str(iso_array(np.array([us], np.int64))[0]), us
    assert iso(1_764_547_200_123_000) == "2025-12-01T00:00:00.123Z"
    assert iso(-1) == "1969-12-31T23:59:59.999999Z"
    assert iso(0) == "1970-01-01T00:00:00Z"


def test_iso_many_renders_each_timestamp_as_iso_does() -> None:
    """The vectorised list rendering (latest values of many series) picks each timestamp's form itself:
    whole seconds, milliseconds and microseconds mixed in one list come out as ``iso`` gives them."""
    from sensorhub.kit.time import iso_many

    rng = np.random.default_rng(11)
    mixed = np.concatenate(
        [
            rng.integers(-(2**50), 2**55, 3000),
            rng.integers(0, 2**51, 3000) // 1_000_000 * 1_000_000,
            rng.integers(0, 2**51, 3000) // 1000 * 1000,
        ]
    ).astype(np.int64)
    rng.shuffle(mixed)
    samples = [*mixed.tolist(), 0, -1, 1, 253_402_300_799_999_999]
    assert iso_many(samples) == [iso(us) for us in samples]
    assert iso_many(samples[:3]) == [iso(us) for us in samples[:3]]  # the short way
    assert iso_many([]) == []
