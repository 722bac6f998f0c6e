"""Structured logs (structlog, JSON lines or console) and the request-id middleware.

Every log line of a request carries its `request_id`; stdlib loggers (uvicorn, tritonclient, redis)
are rendered by the same formatter. Run uvicorn with `log_config=None` so it keeps this setup.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

access_log = structlog.get_logger("gateway.access")


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
        # Tracebacks become one "exception" string field instead of multi-line text.
        final = [structlog.processors.dict_tracebacks, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        final = [renderer]

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
