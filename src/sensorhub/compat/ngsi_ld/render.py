"""Entities as NGSI-LD JSON: normalized, concise or keyValues; ``lang``; ``pick``/``omit``; names compacted
against the request's JSON-LD context (:mod:`sensorhub.compat.ngsi_ld.contexts`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sensorhub.entities.models import times_of
from sensorhub.entities.normalize import VALUE_MEMBER, one_or_many
from sensorhub.kit.time import from_us

# Members of an attribute that are not sub-attributes (their names are core terms, never compacted).
CORE_MEMBERS = frozenset(
    {
        "type",
        "value",
        "object",
        "languageMap",
        "valueList",
        "vocab",
        "json",
        "objectList",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "lang",
        "objectType",
        "entity",
        "instanceId",
    }
)


# ``pick``/``omit``: member name → the projection of the entity it links to (``locatedAt{id,name}``), or None.
Projection = dict[str, "Projection | None"]


def project(out: dict[str, Any], pick: Projection | None, omit: Projection | None) -> dict[str, Any]:
    """``out`` with the members ``pick`` keeps (or without those ``omit`` leaves out, when nothing nested
    is named for them)."""
    if pick is not None:
        out = {k: v for k, v in out.items() if k in pick or k == "@context"}
    if omit is not None:
        out = {k: v for k, v in out.items() if k not in omit or omit[k] is not None}
    return out


@dataclass(frozen=True)
class Representation:
    """How a page of entities is written (from ``options``, ``format``, ``lang``, ``pick``, ``omit``)."""

    form: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    lang: tuple[str, ...] | None = None  # priority list (``*`` any)
    pick: Projection | None = None  # shown names, "id" and "type" included; nested: linked entities
    omit: Projection | None = None
    attrs: frozenset[str] | None = None  # projection on attribute (stored) names
    # ``datasetId``: the instances to show (None in the set: the default instance); None: all of them
    datasets: frozenset[str | None] | None = None


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pick_lang(lmap: dict[str, Any], langs: tuple[str, ...]) -> tuple[str | None, Any]:
    """The language of ``lmap`` that the priority list ``langs`` prefers (RFC 4647 lookup: the tag, then
    its shorter prefixes, then a longer tag it is a prefix of; ``*`` any), else any language it has
    (ETSI GS CIM 009 §4.15: the broker then defaults to any supported language)."""
    keys = {k.lower(): k for k in lmap}
    for lang in langs:
        if lang == "*":
            break
        tag = lang.lower()
        while tag:
            if tag in keys:
                return keys[tag], lmap[keys[tag]]
            tag = tag.rpartition("-")[0]
        longer = sorted(k for k in keys if k.startswith(lang.lower() + "-"))
        if longer:
            return keys[longer[0]], lmap[keys[longer[0]]]
    for cand in ("@none", "en"):
        if cand in lmap:
            return cand, lmap[cand]
    if lmap:
        k = sorted(lmap)[0]
        return k, lmap[k]
    return None, None


def _vocab(v: Any, shown: Callable[[str], str]) -> Any:
    """A ``vocab`` (a term or a list of terms), compacted."""
    if isinstance(v, str):
        return shown(v)
    if isinstance(v, list):
        return [shown(x) if isinstance(x, str) else x for x in v]
    return v


def _attr(attr: Any, rep: Representation, shown: Callable[[str], str]) -> Any:
    if not isinstance(attr, dict):
        return attr
    t = attr.get("type")
    if t == "LanguageProperty" and rep.lang is not None:
        code, text = _pick_lang(attr.get("languageMap") or {}, rep.lang)
        attr = {k: v for k, v in attr.items() if k not in ("type", "languageMap")}
        attr = {"type": "Property", "value": text, **({"lang": code} if code else {}), **attr}
        t = "Property"
    if rep.form == "keyValues":
        member = VALUE_MEMBER.get(str(t), "value")
        v = attr.get(member)
        return _vocab(v, shown) if t == "VocabProperty" else v
    out: dict[str, Any] = {}
    for k, v in attr.items():
        if k in CORE_MEMBERS:
            if k == "vocab":
                v = _vocab(v, shown)
            out[k] = v
        else:  # a sub-attribute
            out[shown(k)] = _attr(v, rep, shown)
    if rep.form == "concise":
        out.pop("type", None)
        if t in ("Property", "GeoProperty") and set(out) == {"value"}:
            return out["value"]
    return out


def render_attr(attr: Any, rep: Representation, shown: Callable[[str], str]) -> Any:
    """One attribute (or one instance of it, for the temporal API) as ``rep`` writes it."""
    return _attr(attr, rep, shown)


def _dataset_id(attr: Any) -> str | None:
    d = attr.get("datasetId") if isinstance(attr, dict) else None
    return d if isinstance(d, str) else None


def _stamped(
    instances: list[Any], name: str, rep: Representation, attr_times: dict[str, dict[str, list[int]]] | None
) -> list[Any]:
    """The instances with their createdAt/modifiedAt (``options=sysAttrs``, not keyValues), where known."""
    if not rep.sys_attrs or rep.form == "keyValues":
        return instances
    out = []
    for i in instances:
        times = times_of(attr_times, name, i)
        if times is not None and isinstance(i, dict):
            i = {**i, "createdAt": _iso(from_us(times[0])), "modifiedAt": _iso(from_us(times[1]))}
        out.append(i)
    return out


def _instances(instances: list[Any], rep: Representation, shown: Callable[[str], str]) -> Any:
    """An attribute with its instances (ETSI GS CIM 009 §4.5.5): one instance as itself; several as an
    array of instances (normalized, concise — each an object, ``{"value": …}`` at least, so that an
    instance is never mistaken for an array value) or, in keyValues, ``{"dataset": {datasetId: value}}``
    with ``@none`` for the default instance (§4.5.3)."""
    if len(instances) == 1:
        return _attr(instances[0], rep, shown)
    if rep.form == "keyValues":
        return {"dataset": {(_dataset_id(i) or "@none"): _attr(i, rep, shown) for i in instances}}
    out = []
    for i in instances:
        one = _attr(i, rep, shown)
        if rep.form == "concise" and not isinstance(one, dict):
            one = {"value": one}
        out.append(one)
    return out


def types_of(row: Any) -> list[str]:
    """Every type of a listed entity row (its ``type`` column, then ``extra_types``)."""
    return [row.type, *(getattr(row, "extra_types", None) or [])]


def render_entity(
    entity_id: str,
    etype: str | list[str],
    attrs: dict[str, Any],
    location: dict[str, Any] | None,
    rep: Representation,
    shown: Callable[[str], str],
    *,
    sys_attrs: tuple[datetime, datetime] | None = None,
    context: Any = None,
    scopes: list[str] | None = None,
    datasets: dict[str, list[dict[str, Any]]] | None = None,
    attr_times: dict[str, dict[str, list[int]]] | None = None,
) -> dict[str, Any]:
    """One entity. ``attrs`` are already what the reader may see; ``shown`` writes a stored name as the
    request's context does; ``context`` (ld+json answers) is added as ``@context``; ``scopes`` are shown
    after the type (a string for one, an array for several, nothing for none); ``datasets``: the other
    instances of multi-attributes (``Entity.datasets``); ``attr_times``: the attributes' createdAt and
    modifiedAt (``Entity.attr_times``), shown on each instance with sysAttrs (not in keyValues)."""
    types = [etype] if isinstance(etype, str) else etype
    out: dict[str, Any] = {
        "id": entity_id,
        "type": one_or_many([shown(t) for t in types]),
    }
    if scopes:
        out["scope"] = one_or_many(scopes)
    others = datasets or {}
    for name in [*attrs, *(n for n in others if n not in attrs)]:
        if rep.attrs is not None and name not in rep.attrs:
            continue
        instances = [*([attrs[name]] if name in attrs else []), *others.get(name, [])]
        if rep.datasets is not None:
            instances = [i for i in instances if _dataset_id(i) in rep.datasets]
        if instances:
            out[shown(name)] = _instances(_stamped(instances, name, rep, attr_times), rep, shown)
    if rep.datasets is not None and None not in rep.datasets:
        location = None  # the location is a default instance
    if location is not None and (rep.attrs is None or "location" in rep.attrs):
        (geo,) = _stamped([{"type": "GeoProperty", "value": location}], "location", rep, attr_times)
        out[shown("location")] = _attr(geo, rep, shown)
    if sys_attrs is not None and rep.sys_attrs:
        out["createdAt"] = _iso(sys_attrs[0])
        out["modifiedAt"] = _iso(sys_attrs[1])
    out = project(out, rep.pick, rep.omit)
    if context is not None:
        out["@context"] = context
    return out
