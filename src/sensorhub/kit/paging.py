"""Paging for every API family: opaque keyset cursors, page-size policies and offset bounds.

A cursor is a short URL-safe text that encodes the key of the last row handed out (JSON, base64url,
unpadded). Clients never build one: they follow the ``Link: <…>; rel="next"`` URL as given, so a
cursor that does not decode to the expected shape is a 400 with the same advice in every family.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from sensorhub.errors import BadRequest

MAX_CURSOR_LENGTH = 2048
# Integers inside a cursor: far outside any real timestamp or key, and safe for arithmetic and for
# binding as int64 (a cursor we never handed out must not reach the database driver as an overflow).
CURSOR_INT_MIN = -(2**62)
CURSOR_INT_MAX = 2**62
INVALID_CURSOR = 'cursor is invalid; use the Link rel="next" URL of the previous page as is'

CursorPart = int | str


def encode_cursor(*parts: CursorPart) -> str:
    """The opaque cursor for a key (ints and strings)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def _fits(value: object, kind: type) -> bool:
    if kind is int:
        return type(value) is int and CURSOR_INT_MIN <= value <= CURSOR_INT_MAX
    return isinstance(value, kind)


def decode_cursor(text: str, *kinds: type) -> tuple[CursorPart, ...]:
    """The key a cursor encodes, checked against ``kinds`` (e.g. ``int, str, str``); else 400."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError, TypeError):
        raise BadRequest(INVALID_CURSOR) from None
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(_fits(v, k) for v, k in zip(parts, kinds, strict=True))
    ):
        raise BadRequest(INVALID_CURSOR)
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """A family's page size: ``default`` when absent; below ``minimum`` is a 400; above ``maximum`` is a
    400 naming the range, or clamped to ``maximum`` where the family's own API clamps (NGSI-LD, Akenza)."""

    default: int
    maximum: int
    minimum: int = 1
    clamp: bool = False
    param: str = "limit"

    def resolve(self, limit: int | None) -> int:
        if limit is None:
            return self.default
        if limit < self.minimum:
            raise BadRequest(self._range_text(limit))
        if limit > self.maximum:
            if self.clamp:
                return self.maximum
            raise BadRequest(self._range_text(limit))
        return limit

    @property
    def range_text(self) -> str:
        """For OpenAPI descriptions: ``"1-10000"``."""
        return f"{self.minimum}-{self.maximum}"

    def _range_text(self, limit: int) -> str:
        if self.clamp:
            return f"{self.param} must be {self.minimum} or more"
        return f"{self.param} must be between {self.minimum} and {self.maximum} (got {str(limit)[:30]})"


@dataclass(frozen=True, slots=True)
class OffsetBounds:
    """How far a family lets a client skip: offsets (or page numbers) in ``[0, maximum]``, else 400,
    so that no value the database driver cannot bind as int64 ever reaches it."""

    maximum: int
    param: str = "offset"

    def check(self, offset: int) -> int:
        if offset < 0 or offset > self.maximum:
            raise BadRequest(f"{self.param} must be between 0 and {self.maximum} (got {str(offset)[:30]})")
        return offset
