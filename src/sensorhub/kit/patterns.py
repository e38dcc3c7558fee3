"""Regular expressions from users (``idPattern``, ``q=attr~="…"``): RE2 only, bounded in length.

Python's ``re`` (and PostgreSQL's engine with back-references) backtrack: one crafted pattern such as
``^(([a-zA-Z0-9:-])+)+!`` can run for minutes inside a query while holding the GIL, which stalls every
tenant served by the worker. RE2 matches in time linear in the input and refuses the features that need
backtracking (back-references, look-around), so every user pattern is compiled with RE2 first: a pattern
RE2 refuses is the caller's 400, and on SQLite the ``REGEXP`` SQL function itself runs RE2 (see
:func:`sqlite_regexp`, registered on every connection by :mod:`sensorhub.db`). On PostgreSQL the database
evaluates the (RE2-valid, so back-reference free) pattern under a statement timeout (see
:mod:`sensorhub.entities.service`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from sensorhub.errors import BadRequest

MAX_PATTERN_LENGTH = 256

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the caller's 400, not a line on the server's stderr
_OPTIONS.max_mem = 8 << 20  # RE2's default; the bound on what one compiled pattern may use


@lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:  # re2._Regexp (the package ships no type hints)
    return re2.compile(pattern, _OPTIONS)


def check_pattern(pattern: str, what: str) -> str:
    """``pattern`` if RE2 accepts it and it is at most :data:`MAX_PATTERN_LENGTH` characters; otherwise a
    400 naming ``what`` (the parameter) and the reason."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise BadRequest(f"{what}: the regular expression is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        _compile(pattern)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise BadRequest(
            f"{what}: the regular expression is not supported: {reason} (RE2 syntax; no back-references "
            "or look-around)"
        ) from None
    return pattern


def sqlite_regexp(pattern: str | None, value: str | None) -> bool | None:
    """SQLite's ``value REGEXP pattern`` through RE2 (search semantics, like ``re.search``)."""
    if pattern is None or value is None:
        return None
    return _compile(pattern).search(value) is not None
