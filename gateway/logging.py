"""Structured logs (structlog, JSON lines or console) and the request-id middleware.

Every log line of a request carries its `request_id`; stdlib loggers (uvicorn, tritonclient, redis)
are rendered by the same formatter. Run uvicorn with `log_config=None` so it keeps this setup.

Nothing secret reaches a line: tracebacks are rendered without frame locals, and `redact` (the last
step before rendering) blanks sensitive keys (headers, keys, passwords), the password of any URL and
every registered secret value (the configured API keys, REDIS_URL's password) wherever it appears.
`RateLimitedLog` turns an error repeated during an outage into one line per interval with a count.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

access_log = structlog.get_logger("gateway.access")

REDACTED = "[redacted]"
# Event keys whose value is never logged (compared lower-case, "-" and "_" alike). Not `api_key`: the
# project logs the key's NAME under it (auth, model management); a key VALUE is a registered secret and is
# redacted wherever it appears.
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "x_api_key",
        "api_keys",
        "password",
        "secret",
        "token",
        "cookie",
        "set_cookie",
        "redis_url",
        "proxy_authorization",
    }
)
# scheme://user:password@host -> scheme://user:[redacted]@host (also "redis://:password@host").
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*):[^/\s@'\"]+@")
_secrets: frozenset[str] = frozenset()
_MAX_DEPTH = 12


def register_secrets(values: Iterable[str]) -> None:
    """Add values (API keys, passwords) that must never appear in a log line, whatever the field."""
    global _secrets
    _secrets = _secrets | {v for v in values if v and len(v) >= 4}


def secrets_of_url(url: str) -> list[str]:
    """The password of `url` (e.g. redis://:pw@host), as a list for `register_secrets`."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []


def redact_text(text: str) -> str:
    """`text` with URL passwords and registered secrets replaced by "[redacted]"."""
    if "@" in text:
        text = _URL_CREDENTIALS.sub(rf"\1:{REDACTED}@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > _MAX_DEPTH:
        return value if isinstance(value, (int, float, bool)) or value is None else REDACTED
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and k.lower().replace("-", "_") in _SENSITIVE_KEYS
            else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        # ASGI headers are (name, value) byte pairs.
        if len(value) == 2 and isinstance(value[0], (bytes, str)):
            name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            if name.lower().replace("-", "_") in _SENSITIVE_KEYS:
                return (value[0], REDACTED)
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("latin-1"))
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact_text(str(value))


def redact(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: the event with every secret blanked (runs after exception formatting)."""
    return dict(_redact(event_dict))


class RateLimitedLog:
    """One log line per `interval_s` per key; lines dropped in between are counted into the next one.

    During an outage every request fails the same way; this keeps the cause visible (first line at once,
    then `suppressed=N` every interval) without a line per request.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> int | None:
        """None to drop this line, else the number of lines dropped since the last one for `key`."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            if len(self._last) > 1024:  # keys come from a few fixed codes; never grow without bound
                self._last, self._suppressed = {key: now}, {}
            return self._suppressed.pop(key, 0)

    def log(self, logger: Any, level: str, key: str, event: str, **kw: Any) -> None:
        suppressed = self.allow(key)
        if suppressed is not None:
            getattr(logger, level)(event, **kw, **({"suppressed": suppressed} if suppressed else {}))


# Shared by the error handlers and the Triton client; create_app sets its interval (ERROR_LOG_INTERVAL_S).
outage_log = RateLimitedLog()


def configure_logging(level: str = "info", json: bool = True) -> None:
    """Route structlog and stdlib logging through one handler on stderr; safe to call more than once."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    final: list[structlog.types.Processor]
    if json:
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks become a structured "exception" field, without frame locals: a frame's locals hold
        # the ASGI scope with its raw Authorization / X-API-Key headers.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        final = [tracebacks, redact, renderer]
    else:
        # Plain text tracebacks (never rich's, which prints locals), formatted before `redact` sees them.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        final = [structlog.processors.format_exc_info, redact, renderer]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers created before configure_logging() must pick up this config.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # The middleware below logs one "request" event per request; uvicorn's access line would duplicate it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def sane_request_id(value: str | None) -> str | None:
    """`value` if it is a safe id to echo and log (<=128 chars of [A-Za-z0-9._-]), else None."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return None


class RequestIdMiddleware:
    """Pure ASGI middleware: one request id per request, bound to the log context and echoed back.

    Also stores the id in `scope["state"]["request_id"]` (i.e. `request.state.request_id`) for the error
    handlers, and logs one "request" event with method, path, status and duration_ms. Headers and
    query strings are never logged (they may hold credentials).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", ()):
            if key == _HEADER_KEY:
                incoming = sane_request_id(value.decode("latin-1"))
                break
        rid = incoming or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500  # an exception escaping the app becomes a 500 from Starlette's error middleware
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER_KEY]
                headers.append((_HEADER_KEY, rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - start) * 1000.0, 2),
                )
