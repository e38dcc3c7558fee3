"""The NGSI-LD ``q`` filter language: parsed into a small AST, compiled to SQL on the JSON ``attrs`` column.

Grammar (ETSI GS CIM 009 §4.9, documented in docs/ngsi-ld.md)::

    query      := or_expr
    or_expr    := and_expr ( "|" and_expr )*
    and_expr   := term ( ";" term )*
    term       := "(" or_expr ")" | comparison
    comparison := linked_path [ operator value ]        # no operator: the attribute exists
    linked_path:= name "{" [ type ":" ] linked_path "}"  # the entity a Relationship links to (join)
                | attr_path
    attr_path  := name ( "." name )* ( "[" key ( "." key )* "]" )*
                                                        # dots: sub-attributes (observedAt, unitCode, …)
                                                        # brackets: keys inside a compound value, or
                                                        # a language of a LanguageProperty ([*]: any)
    operator   := "==" | "!=" | ">=" | "<=" | ">" | "<" | "~=" | "!~="
    value      := number | string | "true" | "false" | datetime | uri | term
                | value ".." value                      # range, with == and != only
                | value ( "," value )+                  # list, with == and != only
    string     := '"' chars '"'                         # \\" and \\\\ escape inside
    uri        := scheme ":" chars                      # unquoted, e.g. urn:ngsi-ld:Building:b1
    term       := name                                  # unquoted, compared as a string (a vocab term)

``rel{attr}`` (``rel{Type:attr}``, nested ``rel{rel2{attr}}``) compares an attribute of the entities the
Relationship ``rel`` links to (of type ``Type`` only): it holds when it holds for one of them
(§4.9, EXAMPLE 13/14; only with ``join``, at most ``joinLevel`` deep, checked by the NGSI-LD layer). Inside
braces, ``a:b`` is read as a type and an attribute unless ``a`` is a compact-IRI prefix of the request's
context (``parse_q(prefixes=…)``) or ``b`` starts with ``//`` (an absolute IRI).

A comparison reads the attribute's ``value`` (Property), ``object`` (Relationship), ``vocab``
(VocabProperty) or, inside brackets, the JSON of a JsonProperty or one language of a LanguageProperty
(``[*]``: any of its languages); ordering operators never match a Relationship; a dotted path ends at a
sub-attribute
(its value) or at a metadata member (``observedAt``, ``unitCode``, ``datasetId``, ``createdAt``,
``modifiedAt``).

Comparisons are type-aware: a number only matches numeric attribute values, a quoted string only
string values; ``!=`` matches entities that have the attribute with a different value.

Bounds (each a 400 naming ``q``): at most :data:`MAX_Q_LENGTH` characters and :data:`MAX_TERMS`
comparisons and list values; integers must fit in 64 bits and other numbers in a (finite) double;
regular expressions follow :mod:`sensorhub.kit.patterns` (RE2, at most 256 characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import JSON, Select, and_, case, false, func, literal, not_, or_, select, true, union_all
from sqlalchemy.sql.elements import ColumnElement

from sensorhub.errors import BadRequest, InvalidRequest
from sensorhub.kit.patterns import check_pattern

MAX_Q_LENGTH = 4000
MAX_DEPTH = 32
MAX_TERMS = 100  # comparisons plus the values of lists: each one is a clause in the SQL
INT64 = (-(2**63), 2**63 - 1)

_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_:/#@\-]*")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Unquoted ISO 8601 date-times (NGSI-LD allows them bare); compared as strings.
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?")
_OPERATORS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")

Scalar = float | int | str | bool


METADATA = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "lang"})
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s;|()\",\[\]]+")
_TERM = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?=$|[;|),.])")  # an unquoted term (a vocab value)
ANY_KEY = "*"  # attr[*]: the values of every language of a LanguageProperty
ORDERING = frozenset({">", "<", ">=", "<="})


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]  # attribute name, then sub-attribute names (``a.b``)
    op: str | None  # None = the attribute exists
    value: Scalar | tuple[Scalar, Scalar] | tuple[Scalar, ...] | None = None
    kind: str = "scalar"  # scalar | range | list
    inner: tuple[str, ...] = ()  # keys inside the (compound) value: ``a[k1.k2]`` or ``a[k1][k2]``


@dataclass(frozen=True)
class Linked:
    """``rel{node}`` / ``rel{Type:node}``: ``node`` holds for an entity ``rel`` links to (of ``type``)."""

    rel: str  # the Relationship (or ListRelationship) followed
    type: str | None  # {Type:…}: only linked entities of this type
    node: Comparison | Linked


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple[Node, ...]


Node = Comparison | Linked | BoolOp


def linked_depth(node: Node) -> int:
    """How many Relationships deep ``node`` follows (``a{b{c}}==1``: 2; no braces: 0)."""
    if isinstance(node, BoolOp):
        return max(linked_depth(n) for n in node.items)
    if isinstance(node, Linked):
        return 1 + linked_depth(node.node)
    return 0


def comparisons(node: Node) -> list[Comparison]:
    """Every comparison of ``node``, those on linked entities included."""
    if isinstance(node, BoolOp):
        return [c for n in node.items for c in comparisons(n)]
    if isinstance(node, Linked):
        return comparisons(node.node)
    return [node]


class QSyntaxError(InvalidRequest):
    """A malformed ``q``: 400 with the NGSI-LD type ``InvalidRequest`` naming the problem and position."""


class _Parser:
    def __init__(self, text: str, what: str = "q", prefixes: frozenset[str] = frozenset()) -> None:
        self.s = text
        self.what = what  # the parameter, for messages: q, or csf (which has the same grammar)
        self.prefixes = prefixes  # compact-IRI prefixes: rel{ex:name} names an attribute, not a type
        self.i = 0
        self.depth = 0
        self.terms = 0

    def too_big(self, what: str) -> BadRequest:
        # Limits, not syntax: BadRequestData (a malformed q is InvalidRequest).
        return BadRequest(f"{self.what} is too large at position {self.i}: {what}")

    def count_terms(self) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.too_big(f"{self.what} may hold at most {MAX_TERMS} comparisons and list values")

    def fail(self, what: str) -> QSyntaxError:
        near = self.s[self.i : self.i + 20] or "end of query"
        return QSyntaxError(f"invalid {self.what} at position {self.i} (near '{near}'): {what}")

    def peek(self, tok: str) -> bool:
        return self.s.startswith(tok, self.i)

    def parse(self) -> Node:
        if not self.s.strip():
            raise QSyntaxError(f"{self.what} is empty")
        node = self.or_expr()
        if self.i != len(self.s):
            raise self.fail("expected ';', '|', ')' or the end of the query")
        return node

    def joined(self, sep: str, op: str, operand: Callable[[], Node]) -> Node:
        """``operand (sep operand)*``: one operand alone, several as a :class:`BoolOp` ``op``."""
        items = [operand()]
        while self.peek(sep):
            self.i += 1
            items.append(operand())
        return items[0] if len(items) == 1 else BoolOp(op, tuple(items))

    def or_expr(self) -> Node:
        return self.joined("|", "or", self.and_expr)

    def and_expr(self) -> Node:
        return self.joined(";", "and", self.term)

    def term(self) -> Node:
        if self.peek("("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"more than {MAX_DEPTH} nested parentheses")
            self.i += 1
            node = self.or_expr()
            if not self.peek(")"):
                raise self.fail("missing ')'")
            self.i += 1
            self.depth -= 1
            return node
        return self.comparison()

    def name(self) -> str:
        m = _NAME.match(self.s, self.i)
        if not m:
            raise self.fail("expected an attribute name")
        self.i = m.end()
        return m.group(0)

    def path(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``attr.sub…[key.key][key]…``: (attribute and sub-attributes, keys inside the value)."""
        path = [self.name()]
        while self.peek("."):
            self.i += 1
            path.append(self.name())
        inner: list[str] = []
        if self.s.startswith("[*]", self.i):  # any language of a LanguageProperty
            self.i += 3
            return tuple(path), (ANY_KEY,)
        while self.peek("["):
            self.i += 1
            inner.append(self.name())
            while self.peek("."):
                self.i += 1
                inner.append(self.name())
            if not self.peek("]"):
                raise self.fail("missing ']'")
            self.i += 1
        if self.peek("."):
            raise self.fail("a '.' after ']' is not allowed: write attr.sub[key.key]")
        return tuple(path), tuple(inner)

    def comparison(self) -> Comparison | Linked:
        self.count_terms()
        hops: list[tuple[str, str | None]] = []
        while (m := _NAME.match(self.s, self.i)) and self.s.startswith("{", m.end()):
            if len(hops) >= MAX_DEPTH:
                raise self.fail(f"more than {MAX_DEPTH} nested braces")
            self.i = m.end() + 1
            hops.append((m.group(0), self.linked_type()))
        path, inner = self.path()
        for _ in hops:
            if not self.peek("}"):
                raise self.fail("missing '}'")
            self.i += 1
        c: Comparison | Linked = self.operator_and_value(path, inner)
        for rel, type_ in reversed(hops):
            c = Linked(rel, type_, c)
        return c

    def linked_type(self) -> str | None:
        """``Type:`` right after a ``{`` (consumed), or None; ``prefix:name`` and IRIs are names."""
        m = _NAME.match(self.s, self.i)
        if not m or ":" not in m.group(0):
            return None
        head, _, rest = m.group(0).partition(":")
        if not head or not rest or head in self.prefixes or rest.startswith("//"):
            return None
        self.i += len(head) + 1
        return head

    def operator_and_value(self, path: tuple[str, ...], inner: tuple[str, ...]) -> Comparison:
        op = next((o for o in _OPERATORS if self.peek(o)), None)
        if op is None:
            if self.i < len(self.s) and self.s[self.i] not in ";|)":
                raise self.fail("expected an operator (==, !=, <, >, <=, >=, ~=, !~=)")
            return Comparison(path, None, inner=inner)
        self.i += len(op)
        first = self.value()
        if op in ("~=", "!~="):
            c = self.pattern_comparison(path, op, first)
        elif self.peek(".."):
            c = self.range_comparison(path, op, first)
        elif self.peek(","):
            c = self.list_comparison(path, op, first)
        else:
            c = Comparison(path, op, first)
        return replace(c, inner=inner)

    def pattern_comparison(self, path: tuple[str, ...], op: str, first: Scalar) -> Comparison:
        if not isinstance(first, str):
            raise self.fail(f"{op} needs a quoted regular expression")
        try:
            check_pattern(first, self.what)
        except BadRequest as e:  # part of a malformed q: InvalidRequest, like every q error
            raise self.fail(e.message.removeprefix(f"{self.what}: ")) from None
        return Comparison(path, op, first)

    def range_comparison(self, path: tuple[str, ...], op: str, first: Scalar) -> Comparison:
        """``first..second``; the parser stands on the ``..``."""
        self.i += 2
        second = self.value()
        if op not in ("==", "!="):
            raise self.fail("a range a..b is only allowed with == and !=")
        if (
            isinstance(first, bool)
            or isinstance(second, bool)
            or (isinstance(first, str) != isinstance(second, str))
        ):
            raise self.fail("both ends of a range must be numbers or both strings")
        return Comparison(path, op, (first, second), "range")

    def list_comparison(self, path: tuple[str, ...], op: str, first: Scalar) -> Comparison:
        """``first,second,…``; the parser stands on the first ``,``."""
        values = [first]
        while self.peek(","):
            self.i += 1
            self.count_terms()
            values.append(self.value())
        if op not in ("==", "!="):
            raise self.fail("a list of values is only allowed with == and !=")
        return Comparison(path, op, tuple(values), "list")

    def value(self) -> Scalar:
        if self.i >= len(self.s):
            raise self.fail("expected a value")
        if self.s[self.i] == '"':
            return self.quoted_string()
        text = self.bare_datetime()
        if text is not None:
            return text
        number = self.number()
        if number is not None:
            return number
        for word, val in (("true", True), ("false", False)):
            if self.s.startswith(word, self.i) and not self.s.startswith(":", self.i + len(word)):
                self.i += len(word)
                return val
        m = _URI.match(self.s, self.i) or _TERM.match(self.s, self.i)
        if m:
            text = m.group(0)
            cut = text.find("..")
            if cut > 0:  # urn:a..urn:b is a range of two URIs
                text = text[:cut]
            self.i += len(text)
            return text
        raise self.fail("expected a number, a quoted string, true, false, a date-time, a URI or a term")

    def quoted_string(self) -> str:
        """A ``"…"`` string with ``\\`` escapes; the parser stands on the opening quote."""
        s = self.s
        out: list[str] = []
        j = self.i + 1
        while j < len(s):
            c = s[j]
            if c == "\\" and j + 1 < len(s):
                out.append(s[j + 1])
                j += 2
                continue
            if c == '"':
                self.i = j + 1
                return "".join(out)
            out.append(c)
            j += 1
        raise self.fail("unterminated string (missing closing '\"')")

    def bare_datetime(self) -> str | None:
        """An unquoted date-time, or None (nothing consumed) when there is none here."""
        s, i = self.s, self.i
        m = _DATETIME.match(s, i)
        if not (m and (m.end() == len(s) or s[m.end()] in ";|),.")):
            return None
        # A bare date-time; "2024-01-01..2024-02-01" is a range of two of them.
        text = m.group(0)
        if text.endswith("."):
            text = text[:-1]
        self.i = i + len(text)
        return text

    def number(self) -> int | float | None:
        """A 64-bit integer or a finite double, or None (nothing consumed) when there is none here."""
        s, i = self.s, self.i
        m = _NUMBER.match(s, i)
        if not m:
            return None
        text = m.group(0)
        # "1..5" is a range: do not swallow the first dot of ".." as a decimal point.
        if text.endswith(".") and s.startswith(".", m.end()):
            text = text[:-1]
        if re.fullmatch(r"-?\d+", text):
            value = int(text) if len(text) <= 20 else None
            if value is None or not INT64[0] <= value <= INT64[1]:
                raise self.too_big("an integer must fit in 64 bits")
            self.i = i + len(text)
            return value
        num = float(text)
        if not math.isfinite(num):
            raise self.too_big(f"the number {text[:20]}… does not fit in a double")
        self.i = i + len(text)
        return num


def parse_q(text: str, what: str = "q", prefixes: frozenset[str] = frozenset()) -> Node:
    """Parse ``q`` (or another parameter of the same grammar, named ``what`` in messages, such as a
    context source filter ``csf``); raises :class:`QSyntaxError` (400) naming the problem.
    ``prefixes``: the compact-IRI prefixes of the request's context (``rel{ex:name}`` is an attribute)."""
    if len(text) > MAX_Q_LENGTH:
        raise BadRequest(f"{what} is longer than {MAX_Q_LENGTH} characters")
    return _Parser(text, what, prefixes).parse()


# --- SQL ---------------------------------------------------------------------------------------------


class JsonAttrs:
    """Dialect-specific access to a JSON column of NGSI-LD attributes (SQLite json1 / PostgreSQL json)."""

    def __init__(self, column: Any, dialect: str) -> None:
        self.col = column
        self.pg = dialect == "postgresql"

    def keys_of(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """The path inside the column of a path that starts with an attribute name."""
        return keys

    def _sqlite_path(self, keys: tuple[str, ...]) -> str:
        return "$" + "".join(f'."{k}"' for k in self.keys_of(keys))

    def _pg_at(self, keys: tuple[str, ...]) -> Any:
        k = self.keys_of(keys)
        return func.json_extract_path(self.col, *k) if k else self.col

    def _pg_text(self, keys: tuple[str, ...]) -> Any:
        return func.json_extract_path_text(self.col, *self.keys_of(keys))

    def json_type(self, keys: tuple[str, ...]) -> ColumnElement[Any]:
        """Normalised JSON type name: number | string | boolean | object | array | null (NULL if absent)."""
        if self.pg:
            return func.json_typeof(self._pg_at(keys))
        t = func.json_type(self.col, self._sqlite_path(keys))
        return case(
            (t.in_(("integer", "real")), "number"),
            (t == "text", "string"),
            (t.in_(("true", "false")), "boolean"),
            else_=t,
        )

    def exists(self, keys: tuple[str, ...]) -> ColumnElement[bool]:
        if self.pg:
            return self._pg_at(keys).is_not(None)  # type: ignore[no-any-return]
        return func.json_type(self.col, self._sqlite_path(keys)).is_not(None)

    def number(self, keys: tuple[str, ...]) -> ColumnElement[Any]:
        """The value as a float where it is a JSON number, else NULL (CASE keeps PostgreSQL from casting
        strings)."""
        if self.pg:
            return case(
                (self.json_type(keys) == "number", func.cast(self._pg_text(keys), _float())), else_=None
            )
        return case(
            (
                func.json_type(self.col, self._sqlite_path(keys)).in_(("integer", "real")),
                func.json_extract(self.col, self._sqlite_path(keys)),
            ),
            else_=None,
        )

    def string(self, keys: tuple[str, ...]) -> ColumnElement[Any]:
        if self.pg:
            return case((self.json_type(keys) == "string", self._pg_text(keys)), else_=None)
        return case(
            (
                func.json_type(self.col, self._sqlite_path(keys)) == "text",
                func.json_extract(self.col, self._sqlite_path(keys)),
            ),
            else_=None,
        )

    def linked_ids(self, rel: str) -> list[tuple[Any, ColumnElement[Any], ColumnElement[bool]]]:
        """The entity ids the Relationship ``rel`` of this row links to: ``(each, id, guard)`` triples,
        ``each`` a table-valued function over the row's JSON whose rows give ``id`` (NULL for what is not
        an id) while ``guard`` holds — the ``object`` (a URI or an array of them) of a Relationship, and
        the ``objectList`` (URIs or ``{"object": URI}``) of a ListRelationship."""
        obj, lst = (rel, "object"), (rel, "objectList")
        is_rel = func.coalesce(self.string((rel, "type")) == "Relationship", false())
        is_list = func.coalesce(self.string((rel, "type")) == "ListRelationship", false())
        if self.pg:
            one = self._pg_at(obj)
            arr = case((func.json_typeof(one) == "array", one), else_=func.json_build_array(one))
            each = func.json_array_elements(arr).table_valued("value").alias()
            items = self._pg_at(lst)
            safe = case((func.json_typeof(items) == "array", items), else_=func.cast(literal("[]"), JSON()))
            listed = func.json_array_elements(safe).table_valued("value").alias()
            return [(each, _pg_id(each.c.value), is_rel), (listed, _pg_id(listed.c.value), is_list)]
        each = func.json_each(self.col, self._sqlite_path(obj)).table_valued("value", "type").alias()
        listed = func.json_each(self.col, self._sqlite_path(lst)).table_valued("value", "type").alias()
        return [(each, _sqlite_id(each), is_rel), (listed, _sqlite_id(listed), is_list)]

    def boolean_is(self, keys: tuple[str, ...], value: bool) -> ColumnElement[bool]:
        if self.pg:
            return and_(
                self.json_type(keys) == "boolean",
                self._pg_text(keys) == ("true" if value else "false"),
            )
        return func.json_type(self.col, self._sqlite_path(keys)) == ("true" if value else "false")


class _Instance(JsonAttrs):
    """One attribute instance (a JSON object): a path's first key, the attribute name, is the object."""

    def keys_of(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        return keys[1:]


class DatasetInstances:
    """The other instances of multi-attributes (``entities.datasets``: name → array of instances): a
    comparison holds for the row when it holds for one of them (ETSI GS CIM 009 §4.9: a multi-attribute
    matches when one of its instances does). ``visible(instance)``: the time-window condition on one
    instance (:func:`sensorhub.entities.windows.visible_instance`), if any."""

    def __init__(
        self, column: Any, dialect: str, visible: Callable[[Any], ColumnElement[bool]] | None
    ) -> None:
        self.col = column
        self.dialect = dialect
        self.visible = visible

    def _instances(self, name: str) -> tuple[Any, list[ColumnElement[bool]]]:
        """The instances of ``name`` as a table-valued function, and the conditions on its rows."""
        if self.dialect == "postgresql":
            arr = func.json_extract_path(self.col, name)
            safe = case((func.json_typeof(arr) == "array", arr), else_=func.cast(literal("[]"), JSON()))
            return func.json_array_elements(safe).table_valued("value").alias(), []
        each = func.json_each(self.col, f'$."{name}"').table_valued("value", "type").alias()
        return each, [each.c.type == "object"]

    def any_matches(self, node: Comparison) -> ColumnElement[bool]:
        each, conds = self._instances(node.path[0])
        cond = _comparison(node, _Instance(each.c.value, self.dialect))
        if self.visible is not None:
            cond = and_(cond, self.visible(each.c.value))
        inner = select(literal(1)).select_from(each).where(*conds, cond)
        return and_(self.col.is_not(None), inner.exists())

    def linked_ids(self, rel: str) -> list[Select[Any]]:
        """The ids the (visible) instances of the Relationship ``rel`` link to, as one-column selects."""
        each, conds = self._instances(rel)
        visible = [] if self.visible is None else [self.visible(each.c.value)]
        return [
            select(eid)
            .select_from(each)
            .join(ids, true())
            .where(*conds, *visible, guard)
            .correlate_except(each, ids)
            for ids, eid, guard in _Instance(each.c.value, self.dialect).linked_ids(rel)
        ]


def _pg_id(v: Any) -> ColumnElement[Any]:
    """A JSON element as an entity id: a string, or the ``object`` of ``{"object": …}``; else NULL."""
    return case(
        (func.json_typeof(v) == "string", func.json_extract_path_text(func.json_build_array(v), "0")),
        (func.json_typeof(v) == "object", func.json_extract_path_text(v, "object")),
        else_=None,
    )


def _sqlite_id(each: Any) -> ColumnElement[Any]:
    return case(
        (each.c.type == "text", each.c.value),
        (each.c.type == "object", func.json_extract(each.c.value, "$.object")),
        else_=None,
    )


def _float() -> Any:
    from sqlalchemy import Float

    return Float()


def _typed(j: JsonAttrs, keys: tuple[str, ...], value: Scalar) -> tuple[ColumnElement[Any], Any]:
    if isinstance(value, bool):
        raise AssertionError("booleans are handled separately")
    if isinstance(value, str):
        return j.string(keys), value
    return j.number(keys), value


def _eq(j: JsonAttrs, keys: tuple[str, ...], value: Scalar) -> ColumnElement[bool]:
    if isinstance(value, bool):
        return j.boolean_is(keys, value)
    expr, v = _typed(j, keys, value)
    return func.coalesce(expr == v, false())


def _cmp(j: JsonAttrs, keys: tuple[str, ...], op: str, value: Scalar) -> ColumnElement[bool]:
    if isinstance(value, bool):
        raise QSyntaxError(f"{op} cannot compare with a boolean")
    expr, v = _typed(j, keys, value)
    out = {">": expr > v, "<": expr < v, ">=": expr >= v, "<=": expr <= v}[op]
    return func.coalesce(out, false())


def _positive(j: JsonAttrs, c: Comparison, keys: tuple[str, ...]) -> ColumnElement[bool]:
    """The ``==`` (or ``~=``) meaning of a comparison, NULL-free."""
    if c.op in ("~=", "!~="):
        assert isinstance(c.value, str)
        return func.coalesce(j.string(keys).regexp_match(c.value), false())
    if c.kind == "range":
        assert isinstance(c.value, tuple)
        lo, hi = c.value
        expr, _ = _typed(j, keys, lo)
        return func.coalesce(and_(expr >= lo, expr <= hi), false())
    if c.kind == "list":
        return or_(*[_eq(j, keys, v) for v in c.value])  # type: ignore[union-attr]
    return _eq(j, keys, c.value)  # type: ignore[arg-type]


Visible = Callable[[str], ColumnElement[bool]]
# How a comparison on linked entities (``rel{…}``) is answered, given the ids the row's Relationship links
# to (a one-column select): the caller's, which knows the table of entities and which of them the request
# may read.
Link = Callable[[Linked, Any], ColumnElement[bool]]


def compile_q(
    node: Node,
    j: JsonAttrs,
    visible: Visible | None = None,
    others: DatasetInstances | None = None,
    link: Link | None = None,
) -> ColumnElement[bool]:
    """A WHERE clause for ``node`` over the normalized attributes in ``j``.

    ``visible(name)``, when given, is the condition under which the row's attribute ``name`` may be
    seen at all (time-limited credentials, :mod:`sensorhub.entities.windows`); every comparison is
    AND-ed with it, so a hidden attribute behaves exactly like an absent one. ``others``: the other
    instances of multi-attributes; a comparison holds when it holds for any instance. ``link``: how a
    comparison on linked entities (:class:`Linked`) is answered (without it, such a comparison is an
    error of the caller)."""
    if isinstance(node, BoolOp):
        parts = [compile_q(n, j, visible, others, link) for n in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if isinstance(node, Linked):
        return _linked(node, j, visible, others, link)
    clause = _comparison(node, j)
    clause = clause if visible is None else and_(clause, visible(node.path[0]))
    return clause if others is None else or_(clause, others.any_matches(node))


def _linked(
    node: Linked, j: JsonAttrs, visible: Visible | None, others: DatasetInstances | None, link: Link | None
) -> ColumnElement[bool]:
    """``rel{…}``: the ids every visible instance of the Relationship ``rel`` links to, in one
    subquery (so that the linked entities' condition is compiled once per level, not once per way of
    linking), answered by ``link``."""
    if link is None:
        raise AssertionError("q on linked entities needs the caller's link resolver")
    seen = [] if visible is None else [visible(node.rel)]
    # correlate_except: the row these ids come from is the enclosing query's (two levels up, where the
    # automatic correlation of SQLAlchemy, one level, would add the table to this FROM again).
    ids = [
        select(eid).select_from(each).where(guard, *seen).correlate_except(each)
        for each, eid, guard in j.linked_ids(node.rel)
    ]
    if others is not None:
        ids += others.linked_ids(node.rel)
    return link(node, union_all(*ids))


def roots_of(c: Comparison) -> list[tuple[str, ...]]:
    """The JSON paths a comparison reads: the attribute (and sub-attributes) then the member that holds
    its value — ``value``, ``object`` or ``vocab`` (strings only), ``json`` with keys, ``languageMap``
    with one key (a language: ``label[de]``) — then the keys."""
    base = c.path
    if c.path[-1] in METADATA and len(c.path) > 1:
        return [base] if not c.inner else []
    sample = c.value[0] if isinstance(c.value, tuple) else c.value
    if c.inner == (ANY_KEY,):
        return [(*base, "languageMap", ANY_KEY)]
    if c.inner:
        roots = [(*base, "value", *c.inner), (*base, "json", *c.inner)]
        return [*roots, (*base, "languageMap", *c.inner)] if len(c.inner) == 1 else roots
    if c.op in ORDERING and isinstance(sample, str):  # never a Relationship's object (§4.9)
        return [(*base, "value"), (*base, "vocab")]
    if isinstance(sample, str) or c.op in ("~=", "!~="):
        return [(*base, "value"), (*base, "object"), (*base, "vocab")]
    if c.op is None:
        return [base]
    return [(*base, "value")]


def _comparison(node: Comparison, j: JsonAttrs) -> ColumnElement[bool]:
    roots = roots_of(node)
    if not roots:
        return false()
    if roots[0][-1] == ANY_KEY:
        return _any_language(node, j, roots[0][:-1])
    if node.op is None:
        if len(node.path) == 1 and not node.inner:
            return j.exists((node.path[0],))
        return or_(*[j.exists(r) for r in roots])
    if node.op in ("!=", "!~="):
        return and_(or_(*[j.exists(r) for r in roots]), not_(or_(*[_positive(j, node, r) for r in roots])))
    if node.op in ("==", "~="):
        return or_(*[_positive(j, node, r) for r in roots])
    assert isinstance(node.value, (int, float, str))
    return or_(*[_cmp(j, r, node.op, node.value) for r in roots])


def _any_language(node: Comparison, j: JsonAttrs, keys: tuple[str, ...]) -> ColumnElement[bool]:
    """``attr[*]``: the comparison on any value of the languageMap at ``keys`` (``!=``: on none)."""
    if node.op is None:
        return j.exists(keys)
    if node.op in ORDERING:
        if not isinstance(node.value, str):
            return false()  # languages hold strings
        bound = node.value
        ops: dict[str, Callable[[ColumnElement[Any]], ColumnElement[bool]]] = {
            ">": lambda v: v > bound, "<": lambda v: v < bound, ">=": lambda v: v >= bound, "<=": lambda v: v <= bound,
        }  # fmt: skip
        return _exists_text(j, keys, ops[str(node.op)])
    positive = replace(node, op="~=" if node.op in ("~=", "!~=") else "==")

    def matches(v: ColumnElement[Any]) -> ColumnElement[bool]:
        if positive.op == "~=":
            return v.regexp_match(str(node.value))
        if node.kind == "range":
            assert isinstance(node.value, tuple)
            lo, hi = node.value
            return and_(v >= lo, v <= hi)
        values = node.value if node.kind == "list" else (node.value,)
        return v.in_([x for x in values if isinstance(x, str)])  # type: ignore[union-attr]

    hit = _exists_text(j, keys, matches)
    return and_(j.exists(keys), not_(hit)) if node.op in ("!=", "!~=") else hit


def _exists_text(
    j: JsonAttrs, keys: tuple[str, ...], pred: Callable[[ColumnElement[Any]], ColumnElement[bool]]
) -> ColumnElement[bool]:
    """Whether some string value of the JSON object at ``keys`` satisfies ``pred``."""
    if j.pg:
        obj = j._pg_at(keys)
        safe = case((func.json_typeof(obj) == "object", obj), else_=func.cast(literal("{}"), JSON()))
        each = func.json_each_text(safe).table_valued("key", "value")
        return select(literal(1)).select_from(each).where(pred(each.c.value)).exists()
    each = func.json_each(j.col, j._sqlite_path(keys)).table_valued("value", "type")
    return select(literal(1)).select_from(each).where(each.c.type == "text", pred(each.c.value)).exists()


def expand_values(node: Node, attrs: frozenset[str], fn: Callable[[str], str]) -> Node:
    """``expandValues``: the string values that comparisons on the attributes ``attrs`` (stored names, at
    any linked level) compare with, mapped by ``fn`` — expanded as IRIs against the request's context
    (and written as stored). Numbers and booleans stay; a pattern (``~=``) is not a value and stays."""
    if isinstance(node, BoolOp):
        return BoolOp(node.op, tuple(expand_values(n, attrs, fn) for n in node.items))
    if isinstance(node, Linked):
        inner = expand_values(node.node, attrs, fn)
        assert not isinstance(inner, BoolOp)
        return replace(node, node=inner)
    if node.path[0] not in attrs or node.op in (None, "~=", "!~=") or len(node.path) > 1:
        return node

    def one(v: Scalar) -> Scalar:
        return fn(v) if isinstance(v, str) else v

    value = node.value
    new = tuple(one(v) for v in value) if isinstance(value, tuple) else one(value)  # type: ignore[arg-type]
    return replace(node, value=new)


def rename(node: Node, fn: Callable[[str], str]) -> Node:
    """``node`` with its attribute and sub-attribute names mapped by ``fn`` (e.g. a request's JSON-LD
    context onto stored names), and the Relationships and types of linked-entity paths; metadata members
    and keys inside values are left as written."""
    if isinstance(node, BoolOp):
        return BoolOp(node.op, tuple(rename(n, fn) for n in node.items))
    if isinstance(node, Linked):
        inner = rename(node.node, fn)
        assert not isinstance(inner, BoolOp)
        return Linked(fn(node.rel), None if node.type is None else fn(node.type), inner)
    path = tuple(p if (i > 0 and p in METADATA) else fn(p) for i, p in enumerate(node.path))
    return replace(node, path=path)
