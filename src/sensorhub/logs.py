"""Logging setup with secret redaction.

Redaction happens when a log record is *created* (a LogRecord factory), so it covers every logger and
every handler — the access log, third-party libraries, and test capture alike. It removes anything shaped
like one of our tokens (percent-encoded too), ``token=`` query parameters (keys decoded the way the
server decodes them, so ``?%74oken=`` is covered), ``Authorization`` / ``x-api-key`` header values and
session cookies.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote_plus

# The current request's id, set by the edge middleware (api/middleware.py); JSON log lines carry it.
request_id_var: ContextVar[str | None] = ContextVar("sensorhub_request_id", default=None)

_installed_prefixes: set[str] = set()
_patterns: list[tuple[re.Pattern[str], str]] = []


def _build_patterns(prefixes: set[str]) -> list[tuple[re.Pattern[str], str]]:
    alts = "|".join(re.escape(p) for p in sorted(prefixes))
    return [
        # Anything shaped like a token, valid checksum or not, truncated or not, wherever it stands
        # (no leading word boundary: ``x_shub_pat_…`` hides one too).
        (re.compile(rf"(?:{alts})_(?:pat|key)_[0-9A-Za-z]*"), TOKEN_MARK),
        # token=... / access_token=... / api_key=... in query strings, forms and JSON-ish text
        (
            re.compile(
                r"(?i)((?:access_)?token|api[_-]?key|password|csrf_token)(=|\"?\s*:\s*\"?)([^&\s\"',;]+)"
            ),
            r"\1\2[REDACTED]",
        ),
        # Header values
        (
            re.compile(
                r"(?i)(authorization|x-api-key|cookie|x-csrf-token)(['\"]?\s*[:,=]\s*['\"]?)([^'\"\r\n]+)"
            ),
            r"\1\2[REDACTED]",
        ),
        (re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [REDACTED]"),
    ]


TOKEN_MARK = "[REDACTED-TOKEN]"  # noqa: S105  (the placeholder, not a secret)
# Query parameters whose value is a secret, compared after decoding the key.
# ``code``, ``code_verifier`` and ``client_secret`` (and ``id_token``, ending in "token"): what an OpenID
# Connect sign-in carries in its redirect back (/login/oidc/callback?code=…) and its token request.
SECRET_KEYS = frozenset(
    {
        "token",
        "access_token",
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "password",
        "csrf_token",
        "code",
        "code_verifier",
        "client_secret",
    }
)
# A run of text that may be a query string (``/path?a=1&token=…`` or ``a=1&b=2``).
_QUERY_RUN = re.compile(r"[^\s\"'<>]*=[^\s\"'<>]*")
# A run of URL characters containing at least one percent-escape (``shub%5Fpat%5F…``).
_ESCAPED_RUN = re.compile(
    r"(?:[0-9A-Za-z_.~-]|%[0-9A-Fa-f]{2})*%[0-9A-Fa-f]{2}(?:[0-9A-Za-z_.~-]|%[0-9A-Fa-f]{2})*"
)
_token_shape: re.Pattern[str] | None = None


def _redact_query(run: str) -> str:
    """Redact secret parameters of a query string the way the server reads them: keys and values are
    percent-decoded first, exactly like Starlette's ``query_params`` (``%74oken`` is ``token``), so
    whatever could authenticate is also redacted."""
    head, qmark, query = run.partition("?")
    if not qmark:
        head, query = "", run
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        key, eq, value = part.partition("=")
        if not eq:
            continue
        name = unquote_plus(key).strip().lower()
        secret = name in SECRET_KEYS or name.endswith("token")
        if secret or (_token_shape is not None and _token_shape.search(unquote_plus(value))):
            parts[i] = f"{key}=[REDACTED]"
            changed = True
    if not changed:
        return run
    return head + qmark + "&".join(parts)


def _redact_escaped(m: re.Match[str]) -> str:
    run = m.group(0)
    return TOKEN_MARK if _token_shape is not None and _token_shape.search(unquote_plus(run)) else run


# Each pattern above needs one of these in the text to match: a keyword (any case) followed by what the
# keyword patterns need after it (a ':', ',' or '=', perhaps after a quote and spaces; or a space); an
# installed token prefix; "=" or a percent-escape. A text with none of them is returned as is after one
# search. Most access-log arguments (addresses, methods, plain paths such as /api/tokens/self) take this way.
def _build_hint(prefixes: set[str]) -> re.Pattern[str]:
    alts = "|".join(re.escape(p) for p in sorted(prefixes))
    keywords = r"(?:token|api[_-]?key|password|authorization|cookie|bearer)(?=['\"]?\s*[:,=]|\s)"
    return re.compile(rf"(?i){keywords}|=|%[0-9a-f]{{2}}|{alts}")


_hint: re.Pattern[str] = _build_hint({"shub"})


def redact(text: str) -> str:
    return _redact_all(text) if _hint.search(text) else text


def _redact_all(text: str) -> str:
    if "=" in text:
        text = _QUERY_RUN.sub(lambda m: _redact_query(m.group(0)), text)
    if "%" in text:
        text = _ESCAPED_RUN.sub(_redact_escaped, text)
    for pat, repl in _patterns:
        text = pat.sub(repl, text)
    return text


def _redact_obj(obj: Any) -> Any:
    if isinstance(obj, (int, float, bool)) or obj is None:
        return obj
    text = str(obj)
    clean = redact(text)
    return obj if clean == text else clean


def install_redaction(prefix: str = "shub") -> None:
    """Idempotent; call once per process (every token prefix in use is covered)."""
    global _patterns, _token_shape, _hint
    if prefix in _installed_prefixes:
        return
    first = not _installed_prefixes
    _installed_prefixes.add(prefix)
    _patterns = _build_patterns(_installed_prefixes)
    _hint = _build_hint(_installed_prefixes)
    _token_shape = _patterns[0][0]
    if not first:
        return
    old_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)
        # Redact the format string and each argument separately: formatters such as uvicorn's access
        # formatter unpack ``record.args`` and need them to keep their shape.
        if not isinstance(record.msg, str):
            record.msg = str(record.msg)
        if redact(record.msg) != record.msg:
            # The format string itself carries a secret: format first, then redact the whole text.
            try:
                text = record.getMessage()
            except Exception:
                text = record.msg
            record.msg, record.args = redact(text), None
        elif isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else _redact_obj(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            out["request_id"] = rid
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out)


def make_formatter(json_logs: bool = False, prefix: str = "shub") -> logging.Formatter:
    """Formatter factory for ``logging.config`` (uvicorn worker processes): installs redaction first."""
    install_redaction(prefix)
    return (
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )


# Libraries whose INFO lines narrate their internals (the MQTT broker's state machine): warnings only.
QUIET_LOGGERS = ("transitions", "amqtt")


def dict_config(level: str = "INFO", json_logs: bool = False, prefix: str = "shub") -> dict[str, Any]:
    """The same setup as :func:`configure_logging` as a ``dictConfig``, which uvicorn applies in every
    worker process it spawns (``serve --workers N``); picklable."""
    fmt = {"()": "sensorhub.logs.make_formatter", "json_logs": json_logs, "prefix": prefix}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn looks these two names up; both are ours.
        "formatters": {"default": dict(fmt), "access": dict(fmt)},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": "WARNING"} for name in QUIET_LOGGERS},
    }


def configure_logging(level: str = "INFO", json_logs: bool = False, prefix: str = "shub") -> None:
    install_redaction(prefix)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
