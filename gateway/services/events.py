"""PD events of streams appended to Redis Streams (`pd:events:{channel}`) for other systems to consume.

Consumers (alerting, historians) read them with consumer groups (XREADGROUP/XACK). Each entry is the
event's fields as strings plus `event` (the whole event as JSON). The stream is capped with an
approximate MAXLEN. Redis is optional and never fatal: without it, or when a write fails or misses its
deadline, the WebSocket client still gets every event; the failure is counted and logged (rate-limited).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.metrics import STREAM_REDIS_ERRORS_TOTAL
from gateway.settings import Settings, redis_url

log = structlog.get_logger(__name__)

_WARN_EVERY_S = 10.0
_FIELDS = ("start", "end", "peak_index", "peak_amplitude", "phase_deg", "t_s")


def events_key(channel: str) -> str:
    return f"pd:events:{channel}"


class EventPublisher:
    """XADDs events to `pd:events:{channel}`; `redis` None = publish nowhere (WebSocket only)."""

    def __init__(self, redis: Redis | None, maxlen: int) -> None:
        self._redis = redis
        self.maxlen = maxlen
        self._last_warning = -_WARN_EVERY_S

    @classmethod
    def from_settings(cls, settings: Settings) -> EventPublisher:
        redis = None
        url = redis_url(settings)
        if url:
            t = settings.REDIS_TIMEOUT_S  # an event write must never stall a stream for long
            redis = Redis.from_url(
                url, socket_timeout=t, socket_connect_timeout=t, retry=Retry(NoBackoff(), 0)
            )
        return cls(redis, settings.STREAM_EVENTS_MAXLEN)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    async def publish(self, channel: str, events: Sequence[dict[str, Any]]) -> bool:
        """Append `events` in order, in one round trip; False when Redis is off or failed."""
        if self._redis is None or not events:
            return self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for ev in events:
            fields = {k: str(ev[k]) for k in _FIELDS if ev.get(k) is not None}
            fields["event"] = json.dumps(ev, separators=(",", ":"))
            pipe.xadd(events_key(channel), fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        try:
            await pipe.execute()
        except (RedisError, OSError) as e:
            STREAM_REDIS_ERRORS_TOTAL.inc()
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY_S:
                self._last_warning = now
                log.warning("stream_events_redis_failed", channel=channel, error=type(e).__name__)
            return False
        return True
