"""The circuit breaker around Triton calls (`purgatory`, in-process state); health probes bypass it.

After CIRCUIT_BREAKER_FAILURES consecutive calls that found no Triton (gRPC UNAVAILABLE: refused, server
gone) or no answer in time (DEADLINE_EXCEEDED: a hung server would otherwise hold every request for
TRITON_TIMEOUT_S) it opens: calls answer 503 with `Retry-After` at once, without the network. After
CIRCUIT_BREAKER_RESET_S calls go through half-open; the first success closes it, a failure opens it
again, so it adds at most CIRCUIT_BREAKER_RESET_S to the recovery after Triton returns: keep it short.
A cancelled call (its request's sibling failed) records nothing; any other answer from Triton, errors
included, counts as a success (Triton is there).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tritonclient.utils import InferenceServerException

from gateway.errors import UpstreamUnavailable
from gateway.metrics import (
    CIRCUIT_BREAKER_OPENED_TOTAL,
    CIRCUIT_BREAKER_REJECTED_TOTAL,
    CIRCUIT_BREAKER_STATE,
)

if TYPE_CHECKING:
    from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker

log = structlog.get_logger(__name__)

_CIRCUIT = "triton_infer"
_STATE_VALUES = {"closed": 0, "half-opened": 1, "opened": 2}
_FAILURES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"})
_NEUTRAL = frozenset({"StatusCode.CANCELLED"})


class CircuitBreaker:
    """One breaker per gateway process around `TritonClient`'s calls; state exported as a gauge."""

    def __init__(self, failures: int = 5, reset_s: float = 1.0) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._factory = AsyncCircuitBreakerFactory(default_threshold=failures, default_ttl=reset_s)
        self._factory.add_listener(self._on_event)
        self._breaker: AsyncCircuitBreaker | None = None
        CIRCUIT_BREAKER_STATE.set(0)

    async def _get(self) -> AsyncCircuitBreaker:
        # In-memory state: the factory returns the same context every time; fetch it once.
        if self._breaker is None:
            self._breaker = await self._factory.get_breaker(_CIRCUIT)
        return self._breaker

    def _on_event(self, name: str, event_name: str, event: Any) -> None:
        if event_name != "state_changed":
            return
        CIRCUIT_BREAKER_STATE.set(_STATE_VALUES.get(event.state, 0))
        if event.state == "opened":
            CIRCUIT_BREAKER_OPENED_TOTAL.inc()
            log.warning("circuit_breaker_opened", reset_s=self.reset_s, failures=self.failures)
        elif event.state == "closed":
            log.info("circuit_breaker_closed")

    def _rejection(self, remaining_s: float) -> UpstreamUnavailable:
        CIRCUIT_BREAKER_REJECTED_TOTAL.inc()
        return UpstreamUnavailable(
            "inference server unavailable (circuit breaker open)",
            retry_after_s=max(1, math.ceil(remaining_s)),
        )

    async def state(self) -> str:
        """The state as purgatory names it: closed, half-opened or opened."""
        brk = await self._get()
        return brk.context.state

    async def raise_if_open(self) -> None:
        """Refuse at once while open (before a request spends CPU on preprocessing); changes nothing."""
        brk = await self._get()
        ctx = brk.context
        if ctx.state == "opened" and ctx.opened_at is not None:
            remaining = ctx.opened_at + self.reset_s - time.time()
            if remaining > 0:
                raise self._rejection(remaining)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run one Triton call inside the breaker (raises UpstreamUnavailable while open)."""
        brk = await self._get()
        try:
            await brk.__aenter__()
        except OpenedState as opened:
            raise self._rejection(opened.opened_at + self.reset_s - time.time()) from None
        try:
            yield
        except InferenceServerException as e:
            status = e.status()
            if status in _FAILURES:
                await brk.__aexit__(type(e), e, e.__traceback__)
            elif status not in _NEUTRAL:
                await brk.__aexit__(None, None, None)  # Triton answered, if only with an error
            raise
        # Anything else (a cancelled call: its request's sibling failed, or the client left) records
        # neither success nor failure.
        else:
            await brk.__aexit__(None, None, None)
