"""The one grammar of attribute names and device references on every ingest path.

HTTP backfill, ``sensorhub import`` (CSV/Parquet) and every future adapter (MQTT, line protocol) call
:func:`check_attribute_name` and :func:`check_device_ref` before anything is stored.

Attribute names follow the NGSI-LD attribute grammar this server already uses for entities
(:mod:`sensorhub.entities.normalize`): a JSON-LD term or compact IRI made of ASCII letters, digits and
``_ : / # @ -``, starting with a letter, ``_`` or ``@``; at most :data:`MAX_ATTRIBUTE_LENGTH` characters
(the ``series.attribute`` column). No quotes, backslashes, dots, spaces or control characters: a name can
never change the meaning of the URL, query (``q``), sensor id (``<entity>.<attribute>``) or code snippet
it ends up in. Snippets still escape everything they paste (defence in depth, and for data stored
before this grammar was enforced).
"""

from __future__ import annotations

import re
import unicodedata

from sensorhub.errors import BadRequest

MAX_ATTRIBUTE_LENGTH = 200
MAX_DEVICE_REF_LENGTH = 512
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_:/#@\-]*")
# Members of an NGSI-LD entity that are not attributes, so never data keys.
RESERVED_NAMES = frozenset(
    {"id", "type", "@context", "@id", "@type", "location", "scope", "createdAt", "modifiedAt", "deletedAt"}
)
GRAMMAR_TEXT = (
    f"1-{MAX_ATTRIBUTE_LENGTH} characters: ASCII letters, digits and _ : / # @ -, "
    "starting with a letter, _ or @"
)
# A device reference (an NGSI-LD entity id, i.e. a URI/IRI, or an asset id): no whitespace, quotes,
# backslashes or characters that delimit URLs and headers (the set refused in entity ids) ...
_DEVICE_REF = re.compile(r"[^\s<>\"'{}|\\^`,;?#]+")
# ... and no control, format (e.g. bidi overrides) or separator characters anywhere.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def is_attribute_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= MAX_ATTRIBUTE_LENGTH
        and ATTRIBUTE_NAME.fullmatch(name) is not None
        and name not in RESERVED_NAMES
    )


def check_attribute_name(name: object, where: str) -> str:
    """``name`` if it is a valid attribute name, else a :class:`BadRequest` that says ``where`` it was
    (e.g. ``record 3: data key``) and what the grammar is. The offending name is quoted with ``repr``
    (escaped, shortened), never pasted raw."""
    if is_attribute_name(name):
        return name  # type: ignore[return-value]
    shown = repr(name[:60] if isinstance(name, str) else name)
    if isinstance(name, str) and name in RESERVED_NAMES:
        raise BadRequest(f"{where} {shown} is a reserved NGSI-LD name; rename the attribute")
    raise BadRequest(f"{where} {shown} is not a valid attribute name: use {GRAMMAR_TEXT}")


def check_device_ref(ref: str, what: str = "device id") -> str:
    """A device (entity) id or asset id as given in a path or a file: a URI-like token of at most
    :data:`MAX_DEVICE_REF_LENGTH` characters, without whitespace, control characters or quotes."""
    if (
        not ref
        or len(ref) > MAX_DEVICE_REF_LENGTH
        or _DEVICE_REF.fullmatch(ref) is None
        or any(unicodedata.category(c) in _INVISIBLE for c in ref)
    ):
        raise BadRequest(
            f"{what} {ref[:80]!r} is not a valid id: use an NGSI-LD id such as urn:ngsi-ld:Device:sensor-1 "
            f"or an asset id (at most {MAX_DEVICE_REF_LENGTH} characters, no spaces, quotes or control "
            "characters)"
        )
    return ref
