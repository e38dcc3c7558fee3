"""Rules: conditions on incoming values, per workspace (optionally per device type), each with a state
per device (``ok``/``firing``), a history of its changes, a cooldown, and actions (connectors with a
message template). A rule without a condition forwards everything.

Conditions (``condition`` JSON):

- ``{"type": "above", "attribute": a, "threshold": x, "hysteresis": h}`` — fires when a value is
  above ``x``; back to ok only below ``x - h`` (``h`` ≥ 0, default 0). ``below`` mirrors it.
- ``{"type": "outside", "attribute": a, "min": lo, "max": hi, "hysteresis": h}`` — fires outside
  ``[lo, hi]``; ok again within ``[lo + h, hi - h]``.
- ``{"type": "rate", "attribute": a, "per_minute": r}`` — fires when the value changes faster than
  ``r`` per minute between two consecutive points (either direction); ok when it no longer does.
- ``{"type": "equals", "attribute": a, "value": v}`` — a state (text, bool) equal to ``v`` fires; any
  other value is ok.
- ``{"type": "no_data", "minutes": n, "attribute": a?}`` — fires when a device that reported has sent
  nothing (for ``a``, or at all) for ``n`` minutes; evaluated by a periodic job; ok at its next value.

Points are evaluated in time order, one after the other, so a bulk backfill crossing a threshold
several times goes through every transition (all in the history). A notification goes out on each
change to ``firing`` (and, with ``notify_resolved``, back to ``ok``) unless the rule notified for that
device less than ``cooldown_s`` seconds ago (the change is still recorded).

Templates are Jinja2, rendered in a sandbox (no attribute access to internals, no imports), with
``rule``, ``device``, ``attribute``, ``topic``, ``value``, ``unit``, ``time``, ``state``, ``organisation`` and
``workspace``; an invalid template is refused when the rule is created.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from sensorhub.errors import BadRequest
from sensorhub.kit.time import iso

CONDITION_TYPES = ("above", "below", "outside", "rate", "equals", "no_data")
DEFAULT_TEMPLATE = "{{ rule.name }}: {{ device.id }} {{ attribute }} = {{ value }}{% if unit %} {{ unit }}{% endif %} at {{ time }} ({{ state }})"
MAX_TEMPLATE = 4000

_env = SandboxedEnvironment(autoescape=False)


def _num(c: dict[str, Any], key: str, *, default: float | None = None, minimum: float | None = None) -> float:
    v = c.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise BadRequest(f"condition.{key} must be a finite number")
    if minimum is not None and v < minimum:
        raise BadRequest(f"condition.{key} must be at least {minimum}")
    return float(v)


_FIELDS = {
    "above": {"type", "attribute", "threshold", "hysteresis"},
    "below": {"type", "attribute", "threshold", "hysteresis"},
    "outside": {"type", "attribute", "min", "max", "hysteresis"},
    "rate": {"type", "attribute", "per_minute"},
    "equals": {"type", "attribute", "value"},
    "no_data": {"type", "attribute", "minutes"},
}


def check_condition(c: Any) -> dict[str, Any] | None:
    """The condition, normalised; :class:`BadRequest` naming what to fix."""
    if c is None:
        return None
    if not isinstance(c, dict) or c.get("type") not in CONDITION_TYPES:
        raise BadRequest(f"condition.type must be one of: {', '.join(CONDITION_TYPES)} (or no condition)")
    t = c["type"]
    unknown = sorted(set(c) - _FIELDS[t])
    if unknown:
        raise BadRequest(f"condition of type {t}: unknown field(s) {', '.join(unknown)}")
    out: dict[str, Any] = {"type": t}
    attr = c.get("attribute")
    if t != "no_data" or attr is not None:
        if not isinstance(attr, str) or not attr:
            raise BadRequest("condition.attribute is required: the attribute the rule watches")
        out["attribute"] = attr
    return out | _PARAMS[t](c)


def _threshold(c: dict[str, Any]) -> dict[str, Any]:
    return {"threshold": _num(c, "threshold"), "hysteresis": _num(c, "hysteresis", default=0, minimum=0)}


def _outside(c: dict[str, Any]) -> dict[str, Any]:
    out = {
        "min": _num(c, "min"),
        "max": _num(c, "max"),
        "hysteresis": _num(c, "hysteresis", default=0, minimum=0),
    }
    if out["min"] + 2 * out["hysteresis"] > out["max"]:
        raise BadRequest("condition.min + 2 × hysteresis must not exceed condition.max")
    return out


def _equals(c: dict[str, Any]) -> dict[str, Any]:
    if "value" not in c or c["value"] is None:
        raise BadRequest("condition.value is required: the state that fires the rule")
    return {"value": c["value"]}


_PARAMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "above": _threshold,
    "below": _threshold,
    "outside": _outside,
    "rate": lambda c: {"per_minute": _num(c, "per_minute", minimum=0)},
    "equals": _equals,
    "no_data": lambda c: {"minutes": _num(c, "minutes", minimum=1)},
}


def check_template(template: Any) -> str:
    if template is None:
        return DEFAULT_TEMPLATE
    if not isinstance(template, str) or len(template) > MAX_TEMPLATE:
        raise BadRequest(f"template must be a string of at most {MAX_TEMPLATE} characters")
    try:
        render(template, _sample())
    except (TemplateError, TypeError, ValueError, ArithmeticError) as e:
        raise BadRequest(f"template is invalid: {type(e).__name__}: {e}") from None
    return template


def render(template: str, context: dict[str, Any]) -> str:
    return _env.from_string(template).render(**context)[:10_000]


def _sample() -> dict[str, Any]:
    return {
        "rule": {"id": "r", "name": "rule"},
        "device": {"id": "urn:ngsi-ld:Device:sample", "type": "Device"},
        "attribute": "temperature",
        "topic": "default",
        "value": 21.5,
        "unit": "CEL",
        "time": "2026-01-01T00:00:00Z",
        "state": "firing",
        "organisation": {"id": "o", "slug": "org"},
        "workspace": {"id": "w", "slug": "main"},
    }


@dataclass
class Transition:
    index: int  # which point of the event
    to_state: str
    time_us: int
    value: Any


def _masks(
    cond: dict[str, Any], ts: np.ndarray, vals: np.ndarray, prev: tuple[int, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(fires, clears) per point for numeric conditions."""
    t = cond["type"]
    if t == "above":
        return vals > cond["threshold"], vals < cond["threshold"] - cond["hysteresis"]
    if t == "below":
        return vals < cond["threshold"], vals > cond["threshold"] + cond["hysteresis"]
    if t == "outside":
        h = cond["hysteresis"]
        return (vals < cond["min"]) | (vals > cond["max"]), (vals >= cond["min"] + h) & (
            vals <= cond["max"] - h
        )
    # rate: between consecutive points (the first against the previous one the rule saw)
    pts = np.concatenate(([prev[0]], ts)) if prev else ts
    vs = np.concatenate(([prev[1]], vals)) if prev else vals
    dt = np.diff(pts).astype(np.float64) / 60e6
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.abs(np.diff(vs)) / np.where(dt > 0, dt, np.nan)
    fast = np.nan_to_num(rate, nan=0.0) > cond["per_minute"]
    if not prev:
        fast = np.concatenate(([False], fast))
    return fast, ~fast


def transitions(
    cond: dict[str, Any],
    state: str,
    ts: np.ndarray,
    vals: np.ndarray | list[Any],
    prev: tuple[int, float] | None,
) -> list[Transition]:
    """The state changes these points (in time order) cause, starting from ``state``."""
    out: list[Transition] = []
    if cond["type"] == "equals":
        for i, (t, v) in enumerate(zip(ts.tolist(), list(vals), strict=True)):
            new = "firing" if v == cond["value"] else "ok"
            if new != state:
                out.append(Transition(i, new, int(t), v))
                state = new
        return out
    arr = np.asarray(vals, dtype=np.float64)
    fires, clears = _masks(cond, ts, arr, prev)
    pos, n = 0, len(arr)
    while pos < n:
        mask = clears if state == "firing" else fires
        rest = mask[pos:]
        if not rest.any():
            break
        i = pos + int(np.argmax(rest))
        state = "ok" if state == "firing" else "firing"
        out.append(Transition(i, state, int(ts[i]), float(arr[i])))
        pos = i + 1
    return out


def template_context(
    rule: Any,
    message: dict[str, Any],
    attribute: str | None,
    value: Any,
    unit: str | None,
    time_us: int | None,
    state: str,
    topic: str | None = None,
) -> dict[str, Any]:
    return {
        "rule": {"id": rule.id, "name": rule.name},
        "device": message["device"],
        "attribute": attribute,
        "topic": topic,
        "value": value,
        "unit": unit,
        "time": iso(time_us) if time_us is not None else None,
        "state": state,
        "organisation": message["organisation"],
        "workspace": message["workspace"],
    }
