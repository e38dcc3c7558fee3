"""JSON-LD contexts for NGSI-LD: which context a request names, and its terms ↔ IRIs.

**Where a context comes from.** The core context (ETSI GS CIM 009 V1.8, Annex B) ships with the package
(``data/ngsi-ld-core-context-v1.8.jsonld``): it is never fetched. A request names a user context with the
``Link: <url>; rel="http://www.w3.org/ns/json-ld#context"`` header or, in an ``application/ld+json``
body, with ``@context``. A URL is served

- locally when it is one of the contexts this server hosts (``/ngsi-ld/v1/jsonldContexts/{name}``, the
  ``*.jsonld`` files of ``SENSORHUB_NGSI_LD_CONTEXT_DIR``), wherever the request says the server is;
- from the network only when it starts with one of ``SENSORHUB_NGSI_LD_CONTEXT_ALLOW`` (URL prefixes, empty
  by default): one GET, no redirects, at most :data:`MAX_CONTEXT_BYTES` and
  ``SENSORHUB_NGSI_LD_CONTEXT_TIMEOUT_SECONDS``, cached for :data:`CACHE_SECONDS`. Anything else is a 400
  naming the URL, so a request can never make the server reach an address of the client's choosing (no SSRF).

**Terms.** PyLD processes the context (remote parts through the loader above, so the same rules apply to
``@import`` and nested URLs); the result becomes a :class:`TermMap` — term → IRI and IRI → term, ``@vocab``
and prefixes — so that expanding and compacting names on the hot path is a dictionary look-up, not a
JSON-LD algorithm run per entity (a full PyLD ``expand`` of one entity costs ~3 ms; a page of 100 would
cost 0.3 s).

**Stored names.** Attribute names and types are stored in one canonical form: the IRI compacted against
the core context (``temperature`` for ``https://uri.etsi.org/ngsi-ld/default-context/temperature``,
``location`` for ``https://uri.etsi.org/ngsi-ld/location``, and an IRI outside both as itself). That form is
a bijection with the expanded IRIs, so the stored data is the expanded form written shorter:
a request's term ``t`` is stored as ``CORE.compact(ctx.expand(t))`` and rendered as
``ctx.compact(CORE.expand(stored))``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pyld import jsonld

from sensorhub.errors import BadRequest, SensorhubError

JSONLD_REL = "http://www.w3.org/ns/json-ld#context"
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CORE_CONTEXT_V18 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
_CORE_URL = re.compile(r"^https://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.\d+)?\.jsonld$")
CONTEXTS_PATH = "/ngsi-ld/v1/jsonldContexts/"
MAX_CONTEXT_BYTES = 256 * 1024
MAX_CONTEXT_URLS = 8  # distinct URLs one request's context may pull in (nested ones included)
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 64
V = TypeVar("V")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


class ContextNotAvailable(SensorhubError):
    """An allow-listed context could not be fetched (network, timeout, size, status): ETSI
    ``LdContextNotAvailable``, 503 — the request may succeed later."""

    status = 503
    error = "Service Unavailable"
    ngsi_type = "LdContextNotAvailable"
    code = "ld_context_not_available"


class ContextRefused(BadRequest):
    """A context the server will not load (not allow-listed, not JSON-LD, too many URLs): 400."""


def core_document() -> dict[str, Any]:
    text = resources.files("sensorhub.compat.ngsi_ld").joinpath("data/ngsi-ld-core-context-v1.8.jsonld")
    doc: dict[str, Any] = json.loads(text.read_text("utf-8"))
    return doc


def is_core(url: Any) -> bool:
    return isinstance(url, str) and bool(_CORE_URL.match(url))


# --- term maps -------------------------------------------------------------------------------------------


@dataclass
class TermMap:
    """A processed context as look-up tables (see the module docstring)."""

    terms: dict[str, str]  # term → IRI (only terms that map to IRIs, not keywords)
    prefixes: dict[str, str]  # terms usable as a compact-IRI prefix
    vocab: str | None
    inverse: dict[str, str] = field(default_factory=dict)  # IRI → the shortest term
    _exp: dict[str, str] = field(default_factory=dict)
    _cmp: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, active: dict[str, Any]) -> TermMap:
        terms: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        for term, d in active.get("mappings", {}).items():
            iri = d.get("@id") if isinstance(d, dict) else None
            if not isinstance(iri, str) or iri.startswith("@") or d.get("reverse"):
                continue
            terms[term] = iri
            if d.get("_prefix"):
                prefixes[term] = iri
        inverse: dict[str, str] = {}
        for term, iri in sorted(terms.items(), key=lambda kv: (len(kv[0]), kv[0]), reverse=True):
            inverse[iri] = term  # shortest (then alphabetically first) wins: written last
        vocab = active.get("@vocab")
        return cls(terms, prefixes, vocab if isinstance(vocab, str) else None, inverse)

    def expand(self, term: str) -> str:
        hit = self._exp.get(term)
        if hit is not None:
            return hit
        iri = self.terms.get(term)
        if iri is None:
            prefix, colon, suffix = term.partition(":")
            if colon and prefix in self.prefixes and not suffix.startswith("//"):
                iri = self.prefixes[prefix] + suffix
            elif colon:
                iri = term  # an absolute IRI (or a URN) already
            elif self.vocab is not None:
                iri = self.vocab + term
            else:
                iri = term
        if len(self._exp) < 10_000:
            self._exp[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        hit = self._cmp.get(iri)
        if hit is not None:
            return hit
        term = self.inverse.get(iri)
        if term is None and self.vocab is not None and iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and rest not in self.terms and ":" not in rest:
                term = rest
        if term is None:
            best = ""
            for p, base in self.prefixes.items():
                if (
                    iri.startswith(base)
                    and len(base) > len(self.prefixes.get(best, ""))
                    and len(iri) > len(base)
                ):
                    best = p
            term = f"{best}:{iri[len(self.prefixes[best]) :]}" if best else iri
        if len(self._cmp) < 10_000:
            self._cmp[iri] = term
        return term


def _process(local: Any, loader: Any) -> TermMap:
    proc = jsonld.JsonLdProcessor()
    opts = {"documentLoader": loader, "base": ""}
    active = proc._get_initial_context(opts)
    return TermMap.of(proc.process_context(active, local, opts))


CORE_DOC = core_document()
CORE = _process(CORE_DOC["@context"], None)


# --- the context a request names --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestContext:
    """The context of one request: its terms, and what to echo (``Link`` URL or ``@context`` value)."""

    terms: TermMap
    ref: Any  # a URL string, a list, or an inline object (POST bodies)
    link_url: str  # the URL for a Link header (the core context when the context is inline)

    @property
    def is_core(self) -> bool:
        return self.terms is CORE

    @property
    def prefixes(self) -> frozenset[str]:
        """The terms of the request's context usable as compact-IRI prefixes (``ex:name``)."""
        return frozenset(self.terms.prefixes)

    def stored(self, term: str) -> str:
        """The stored (canonical) name of the request's ``term`` (an expanded IRI too: the core context's
        default-context IRI of ``temperature`` is stored as ``temperature``)."""
        if self.terms is CORE and ":" not in term:
            return term
        return CORE.compact(self.terms.expand(term))

    def shown(self, stored: str) -> str:
        """How a stored name is written in the answer."""
        if self.terms is CORE:
            return stored
        return self.terms.compact(CORE.expand(stored))


CORE_REQUEST = RequestContext(CORE, CORE_CONTEXT, CORE_CONTEXT)

_LINK_PART = re.compile(r'\s*<([^>]*)>\s*((?:;\s*[A-Za-z*]+\s*=\s*(?:"[^"]*"|[^;,]*)\s*)*)(?:,|$)')
_LINK_PARAM = re.compile(r';\s*([A-Za-z*]+)\s*=\s*(?:"([^"]*)"|([^;,]*))')


def context_links(header: str | None) -> list[str]:
    """The URLs of the ``Link`` header entries with the JSON-LD context relation."""
    if not header:
        return []
    out: list[str] = []
    pos = 0
    while pos < len(header):
        m = _LINK_PART.match(header, pos)
        if not m or m.end() == pos:
            raise BadRequest(
                'the Link header is malformed: use <url>; rel="http://www.w3.org/ns/json-ld#context"'
            )
        params = {
            k.lower(): (a if a is not None else b).strip() for k, a, b in _LINK_PARAM.findall(m.group(2))
        }
        if params.get("rel") == JSONLD_REL:
            out.append(m.group(1).strip())
        pos = m.end()
    return out


class ContextStore:
    """Loads and caches contexts by the rules in the module docstring (one per application)."""

    def __init__(
        self,
        allow: list[str],
        directory: Path | None,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.allow = [a for a in allow if a]
        self.directory = directory
        self.timeout = timeout
        self.transport = transport
        self._lock = threading.Lock()
        self._docs: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._maps: OrderedDict[str, tuple[float, TermMap]] = OrderedDict()

    # hosted contexts
    def hosted_names(self) -> list[str]:
        names = ["ngsi-ld-core-context-v1.8.jsonld"]
        if self.directory is not None and self.directory.is_dir():
            names += sorted(p.name for p in self.directory.glob("*.jsonld") if _NAME.match(p.name))
        return names

    def hosted(self, name: str) -> dict[str, Any] | None:
        if name == "ngsi-ld-core-context-v1.8.jsonld":
            return CORE_DOC
        if self.directory is None or not _NAME.match(name) or not name.endswith(".jsonld"):
            return None
        path = self.directory / name
        if not path.is_file() or path.stat().st_size > MAX_CONTEXT_BYTES:
            return None
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and "@context" in doc else None

    # resolution
    def for_request(self, link: str | None, body_context: Any = None) -> RequestContext:
        """The context of a request from its Link header, or the ``@context`` of its ld+json body."""
        if body_context is not None:
            if isinstance(body_context, str) and is_core(body_context):
                return CORE_REQUEST
            terms = self._terms(body_context, json.dumps(body_context, sort_keys=True))
            url = body_context if isinstance(body_context, str) else CORE_CONTEXT
            return RequestContext(terms, body_context, url)
        urls = context_links(link)
        if not urls:
            return CORE_REQUEST
        if len(urls) > 1:
            raise BadRequest("the request may name one JSON-LD context in its Link header, not several")
        url = urls[0]
        if is_core(url):
            return CORE_REQUEST
        return RequestContext(self._terms(url, url), url, url)

    def _terms(self, local: Any, key: str) -> TermMap:
        now = time.monotonic()
        with self._lock:
            hit = self._maps.get(key)
            if hit is not None and hit[0] > now:
                self._maps.move_to_end(key)
                return hit[1]
        seen: list[str] = []

        def loader(url: str, options: Any = None) -> dict[str, Any]:
            if url not in seen:
                seen.append(url)
            if len(seen) > MAX_CONTEXT_URLS:
                raise ContextRefused(f"@context: more than {MAX_CONTEXT_URLS} context URLs are involved")
            return {
                "contentType": "application/ld+json",
                "contextUrl": None,
                "documentUrl": url,
                "document": self.document(url),
            }

        # The core context is always the base: a user context adds terms to it (it cannot redefine its
        # protected ones).
        local_list = local if isinstance(local, list) else [local]
        try:
            terms = _process([CORE_DOC["@context"], *local_list], loader)
        except jsonld.JsonLdError as e:
            cause = _cause(e)
            if isinstance(cause, SensorhubError):
                raise cause from None
            raise ContextRefused(
                f"@context {str(key)[:200]} is not a valid JSON-LD context: {_reason(e)}"
            ) from None
        self._keep(self._maps, key, terms, now)
        return terms

    def document(self, url: str) -> Any:
        """The JSON document at ``url`` if this server may read it (hosted, or allow-listed)."""
        if is_core(url):
            return CORE_DOC
        if CONTEXTS_PATH in url:
            doc = self.hosted(url.rsplit("/", 1)[-1])
            if doc is not None:
                return doc
        if not any(url.startswith(a) for a in self.allow) or not url.startswith(("https://", "http://")):
            raise ContextRefused(
                f"@context {url[:200]} is not served by this server and not on its allow-list "
                "(SENSORHUB_NGSI_LD_CONTEXT_ALLOW); host it under /ngsi-ld/v1/jsonldContexts or use the core context"
            )
        now = time.monotonic()
        with self._lock:
            hit = self._docs.get(url)
            if hit is not None and hit[0] > now:
                return hit[1]
        doc = self._fetch(url)
        self._keep(self._docs, url, doc, now)
        return doc

    def _keep(self, cache: OrderedDict[str, tuple[float, V]], key: str, value: V, now: float) -> None:
        """Caches ``value`` for CACHE_SECONDS from ``now``, dropping the oldest entries beyond CACHE_ENTRIES."""
        with self._lock:
            cache[key] = (now + CACHE_SECONDS, value)
            while len(cache) > CACHE_ENTRIES:
                cache.popitem(last=False)

    def _fetch(self, url: str) -> Any:
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False, transport=self.transport) as c,
                c.stream("GET", url, headers={"Accept": "application/ld+json, application/json"}) as r,
            ):
                if r.status_code != 200:
                    raise ContextNotAvailable(
                        f"@context {url[:200]} could not be loaded: HTTP {r.status_code}"
                    )
                body = b""
                deadline = time.monotonic() + self.timeout  # in total, not per read
                for chunk in r.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise ContextNotAvailable(f"@context {url[:200]} took longer than {self.timeout:g} s")
                    if len(body) > MAX_CONTEXT_BYTES:
                        raise ContextRefused(f"@context {url[:200]} is larger than {MAX_CONTEXT_BYTES} bytes")
        except httpx.HTTPError as e:
            raise ContextNotAvailable(
                f"@context {url[:200]} could not be loaded: {type(e).__name__}"
            ) from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise ContextRefused(f"@context {url[:200]} is not JSON") from None
        if not isinstance(doc, dict) or "@context" not in doc:
            raise ContextRefused(
                f"@context {url[:200]} is not a JSON-LD context document (no @context member)"
            )
        return doc


def _cause(e: BaseException) -> BaseException | None:
    seen = 0
    cur: Any = e
    while cur is not None and seen < 10:
        if isinstance(cur, SensorhubError):
            return cur
        nxt = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
        cur, seen = nxt, seen + 1
    return None


def _reason(e: Any) -> str:
    code = getattr(e, "code", None)
    msg = str(getattr(e, "message", "") or e).splitlines()[0][:200]
    return f"{msg} ({code})" if code else msg
