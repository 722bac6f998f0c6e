"""Rate limiting per API key (per client address when no keys are configured), shared through Redis.

`limits` does the counting (sliding-window counter: two Redis keys per identity and window, one Lua
call per request). Redis is never a reason to fail a request: on an error or a missed REDIS_TIMEOUT_S
deadline the limiter counts in process memory instead (per-process limits), skips Redis for a few
seconds, then tries it again. Over the limit: 429 `rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import math
import time
from types import TracebackType
from typing import Annotated

import structlog
from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.apikeys import ApiKey
from gateway.auth import require_inference
from gateway.errors import RateLimited
from gateway.metrics import CACHE_ERRORS_TOTAL, RATE_LIMITED_TOTAL
from gateway.settings import Settings, redis_url

log = structlog.get_logger(__name__)

_REDIS_RETRY_S = 2.0  # after a Redis failure, count in memory this long before trying Redis again
_WARN_EVERY_S = 10.0
# Routes document the 429 with gateway.schemas.error_responses (the one error body, Retry-After).


def _limits_uri(redis_url: str) -> str:
    """REDIS_URL in the form `limits` wants for its asyncio storage."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class RateLimiter:
    """`check(identity)` raises RateLimited when `identity` is over any of the configured rates."""

    def __init__(self, rate: str, redis_url: str | None = None, *, redis_timeout_s: float = 0.5) -> None:
        self.items: list[RateLimitItem] = parse_many(rate) if rate.strip() else []
        self._timeout_s = redis_timeout_s
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._client: Redis | None = None
        self._redis: SlidingWindowCounterRateLimiter | None = None
        if self.items and redis_url:
            # Our own client (closed on exit), one attempt per command as the metadata cache's:
            # retries would multiply the deadline.
            self._client = Redis.from_url(
                redis_url,
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            storage = RedisStorage(
                _limits_uri(redis_url),
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix="pdgw:ratelimit",
                connection_pool=self._client.connection_pool,  # type: ignore[arg-type]
            )
            self._redis = SlidingWindowCounterRateLimiter(storage)
        self._skip_redis_until = 0.0
        self._last_warning = -_WARN_EVERY_S

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.RATE_LIMIT, redis_url(settings), redis_timeout_s=settings.REDIS_TIMEOUT_S)

    @property
    def enabled(self) -> bool:
        return bool(self.items)

    async def __aenter__(self) -> RateLimiter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def check(self, identity: str) -> None:
        """Count one request of `identity`; raise RateLimited (with the seconds to wait) when over."""
        if not self.items:
            return
        if self._redis is not None and time.monotonic() >= self._skip_redis_until:
            try:
                async with asyncio.timeout(self._timeout_s):
                    over = await self._over(self._redis, identity)
            except Exception as e:  # StorageError, timeout: never fail a request because of Redis
                self._redis_failed(e)
                over = await self._over(self._memory, identity)
        else:
            over = await self._over(self._memory, identity)
        if over is not None:
            RATE_LIMITED_TOTAL.inc()
            raise RateLimited(f"rate limit of {over[0]} exceeded", retry_after_s=over[1])

    async def _over(self, limiter: SlidingWindowCounterRateLimiter, identity: str) -> tuple[str, int] | None:
        """None if every item admits the hit (each is counted), else (item, seconds until it admits)."""
        for item in self.items:
            if not await limiter.hit(item, "pdgw", identity):
                stats = await limiter.get_window_stats(item, "pdgw", identity)
                return str(item), max(1, math.ceil(stats.reset_time - time.time()))
        return None

    def _redis_failed(self, exc: BaseException) -> None:
        self._skip_redis_until = time.monotonic() + _REDIS_RETRY_S
        CACHE_ERRORS_TOTAL.labels("rate_limit").inc()
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning("rate_limit_redis_unavailable", error=type(exc).__name__, fallback="memory")


def _identity(request: Request, key: ApiKey | None) -> str:
    if key is not None:
        return f"key:{key.name}"
    client = request.client
    return f"addr:{client.host if client is not None else 'unknown'}"


async def limit_inference(
    request: Request, key: Annotated[ApiKey | None, Depends(require_inference)]
) -> ApiKey | None:
    """`require_inference`, then one hit against RATE_LIMIT for the key's name (or client address)."""
    limiter: RateLimiter = request.app.state.limiter
    await limiter.check(_identity(request, key))
    return key
