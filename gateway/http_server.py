"""uvicorn settings that bound what a slow or hostile client can hold: header and body deadlines, header
size, idle keep-alive, connections per process (see README "Reliability").

uvicorn alone never times out a connection that trickles its request headers (its keep-alive timer is
cancelled by every byte received), so `DeadlineH11Protocol` adds a deadline for the complete request line
and headers; the body deadline is `BODY_READ_TIMEOUT_S` in routes/detect.py's `read_body` (408).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.logging import outage_log
from gateway.settings import Settings

log = structlog.get_logger(__name__)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete in time.

    The deadline starts when the connection opens and again after each response (for the next request
    on a keep-alive connection); it is lifted as soon as h11 has parsed a request's headers.
    """

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_deadline(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            assert self._header_deadline is not None
            self._header_deadline.cancel()
            self._header_deadline = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        outage_log.log(log, "info", "header_timeout", "header_timeout", timeout_s=self.header_timeout_s)
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` carrying the gateway's connection limits."""
    protocol = type(
        "DeadlineH11Protocol", (DeadlineH11Protocol,), {"header_timeout_s": settings.HEADER_READ_TIMEOUT_S}
    )
    return {
        "http": protocol,
        "timeout_keep_alive": settings.KEEP_ALIVE_TIMEOUT_S,
        "h11_max_incomplete_event_size": settings.MAX_HEADER_BYTES,
        # Beyond this many open connections (or tasks) uvicorn answers new requests 503 at once.
        "limit_concurrency": settings.MAX_CONNECTIONS,
    }
