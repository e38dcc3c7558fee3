"""What a delivery may carry is cut to its owner's readable time windows (visible_message): unbounded,
a window ending inside the points, one starting inside them, and two windows."""

from __future__ import annotations

from datetime import UTC, datetime

from sensorhub.authz.access import Access, AccessRule
from sensorhub.push.targets import visible_message

T = [int(datetime(2026, 1, 1, h, tzinfo=UTC).timestamp() * 1e6) for h in range(6)]


def _message() -> dict[str, object]:
    return {
        "type": "data",
        "organisation": {"id": "o", "slug": "o"},
        "workspace": {"id": "w", "slug": "w"},
        "device": {"id": "urn:d", "type": "Device"},
        "data": [{"attribute": "t", "topic": "default", "points": [[t, float(i)] for i, t in enumerate(T)]}],
    }


def _kept(*windows: tuple[int | None, int | None]) -> list[float] | str:
    def at(h: int | None) -> datetime | None:
        return None if h is None else datetime(2026, 1, 1, h, tzinfo=UTC)

    access = Access(tuple(AccessRule("o", None, None, at(a), at(b)) for a, b in windows))
    cut = visible_message(access, _message())
    return cut if isinstance(cut, str) else [p[1] for d in cut["data"] for p in d["points"]]  # type: ignore[index]


def test_points_are_cut_to_the_readable_windows() -> None:
    assert _kept((None, None)) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert _kept((None, 3)) == [0.0, 1.0, 2.0]  # one window from before the first point, ending inside
    assert _kept((2, None)) == [2.0, 3.0, 4.0, 5.0]  # starting inside
    assert _kept((0, 1), (4, 5)) == [0.0, 4.0]  # two windows
    assert "none of these points" in str(_kept((10, 11)))
    assert "may no longer read" in str(visible_message(Access(()), _message()))
