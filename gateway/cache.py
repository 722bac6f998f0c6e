"""Two-layer cache for model metadata (Triton config, processing parameters): in-process, then Redis.

The key is the model name (one entry per model: its version states and Triton config);
`invalidate(name)` also reaches any "<name>:..." key. Redis is optional and never fatal: any Redis
error or timeout is counted, logged (rate-limited) and answered from the loader. Invalidations travel
on a pub/sub channel to every gateway process; if that message is lost (Redis down), the short local
TTL bounds how long an entry can stay stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.metrics import CACHE_ERRORS_TOTAL, CACHE_HITS_TOTAL, CACHE_MISSES_TOTAL
from gateway.settings import Settings, redis_url

log = structlog.get_logger(__name__)

Loader = Callable[[], Awaitable[dict[str, Any]]]
_FAILED = object()  # a Redis call failed or was skipped (distinct from a None reply)
_WARN_EVERY_S = 10.0
_LISTENER_MAX_BACKOFF_S = 5.0
_CLOSE_WAIT_S = 3.0  # how long close() waits for the listener to stop
# SET KEYS[1] = ARGV[1] (PX ARGV[3]) only while the counter KEYS[2] still reads ARGV[2] ("" = never set).
_SET_IF_GENERATION = """
if (redis.call('GET', KEYS[2]) or '') == ARGV[2] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return false
"""


def _key_matches(key: str, prefix: str) -> bool:
    # Segment-aware: "pd" must not invalidate "pd_unet1d:config".
    return key == prefix or key.startswith(prefix + ":")


class MetadataCache:
    """`get_or_load` with single-flight, local TTL in front of Redis, and pub/sub invalidation.

    Returned dicts are shared between callers: treat them as read-only.
    """

    def __init__(
        self,
        redis_url: str | None,
        *,
        ttl_s: float = 300.0,
        local_ttl_s: float = 5.0,
        redis_timeout_s: float = 0.5,
        redis_retry_s: float = 2.0,
        key_prefix: str = "pdgw:meta:",
        generation_prefix: str = "pdgw:gen:",
        channel: str = "pdgw:invalidate",
        max_local_entries: int = 1024,
    ) -> None:
        self.ttl_s = ttl_s
        self.local_ttl_s = local_ttl_s
        self.key_prefix = key_prefix
        self.generation_prefix = generation_prefix
        self.channel = channel
        self._timeout_s = redis_timeout_s
        self._retry_s = redis_retry_s  # after a Redis failure, skip Redis this long (no per-request stalls)
        self._max_local = max_local_entries
        self._local: dict[str, tuple[float, dict[str, Any]]] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._generation = 0  # bumped by every invalidation; a load that straddles one is not stored
        self._skip_redis_until = 0.0
        self._last_warning = -_WARN_EVERY_S
        self._listener: asyncio.Task[None] | None = None
        self._closing = False  # the listener's loops also end on this, not only on cancellation
        self._subscribed = asyncio.Event()
        self._redis: Redis | None = None
        if redis_url:
            # One attempt per command: retries would multiply the timeout on every request.
            self._redis = Redis.from_url(
                redis_url,
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> MetadataCache:
        return cls(
            redis_url(settings),
            ttl_s=settings.CACHE_TTL_S,
            local_ttl_s=settings.LOCAL_CACHE_TTL_S,
            redis_timeout_s=settings.REDIS_TIMEOUT_S,
        )

    @property
    def redis_enabled(self) -> bool:
        return self._redis is not None

    @property
    def listener_connected(self) -> bool:
        """True while the invalidation listener is subscribed (for readiness details and tests)."""
        return self._listener is not None and self._subscribed.is_set()

    async def get_or_load(self, key: str, loader: Loader) -> dict[str, Any]:
        """The cached value of `key`, else the loader's (one loader call for concurrent misses).

        Loader errors propagate to every waiter and are not cached; Redis errors never propagate.
        """
        entry = self._local.get(key)
        if entry is not None and entry[0] > time.monotonic():
            CACHE_HITS_TOTAL.labels("local").inc()
            return entry[1]
        CACHE_MISSES_TOTAL.labels("local").inc()
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._load(key, loader))
            self._inflight[key] = fut
            fut.add_done_callback(functools.partial(self._load_done, key))
        # shield: one cancelled caller must not cancel the load the others are waiting for.
        return await asyncio.shield(fut)

    def drop_local(self, prefix: str) -> int:
        """Drop this process's entries for `prefix` (a model name or key prefix); returns how many."""
        self._generation += 1
        doomed = [k for k in self._local if _key_matches(k, prefix)]
        for k in doomed:
            del self._local[k]
        return len(doomed)

    async def invalidate(self, prefix: str) -> None:
        """Invalidate `prefix` everywhere: here, in Redis, and (via pub/sub) in every other process."""
        self.drop_local(prefix)
        await self.publish_invalidation(prefix)

    async def publish_invalidation(self, prefix: str) -> None:
        """Delete the Redis keys of `prefix`, then tell every subscribed process to drop its copies."""

        async def op(r: Redis) -> None:
            await r.incr(self._gkey(prefix))  # first: loads that started before this cannot store
            keys = [self._rkey(prefix)]
            pattern = self._rkey(re.sub(r"([*?\[\]\\])", r"\\\1", prefix)) + ":*"
            keys += [k async for k in r.scan_iter(match=pattern, count=500)]
            await r.unlink(*keys)
            # Keys go first, so a process that reloads on this message cannot read the stale value.
            await r.publish(self.channel, prefix)

        # force: an invalidation is rare and matters, so try even while Redis is marked as failing.
        await self._redis_call("invalidate", op, force=True, timeout_s=self._timeout_s * 4)

    async def start_listener(self) -> None:
        """Subscribe to the invalidation channel in the background (waits briefly for the first subscribe)."""
        if self._redis is None or self._listener is not None:
            return
        self._listener = asyncio.create_task(self._listen(), name="pdgw-cache-invalidation-listener")
        try:
            await asyncio.wait_for(self._subscribed.wait(), self._timeout_s * 4)
        except TimeoutError:
            log.warning("cache_listener_not_subscribed_yet", channel=self.channel)

    async def close(self) -> None:
        """Stop the listener and close the Redis pool; safe to call twice."""
        listener, self._listener = self._listener, None
        self._closing = True
        if listener is not None:
            listener.cancel()
            # Bounded: a cancellation swallowed inside the Redis client must not hang shutdown; the flag
            # ends the loops within one get_message timeout anyway.
            await asyncio.wait({listener}, timeout=_CLOSE_WAIT_S)
        self._subscribed.clear()
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    # -- internals ----------------------------------------------------------------------------------

    def _gkey(self, key: str) -> str:
        """The invalidation counter of the model `key` belongs to (its first segment)."""
        return self.generation_prefix + key.split(":", 1)[0]

    def _rkey(self, key: str) -> str:
        return self.key_prefix + key

    def _load_done(self, key: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if not fut.cancelled():
            fut.exception()  # mark retrieved: every waiter may have been cancelled

    def _store_local(self, key: str, value: dict[str, Any]) -> None:
        self._local.pop(key, None)
        if len(self._local) >= self._max_local:
            self._local.pop(next(iter(self._local)))  # oldest insertion first
        self._local[key] = (time.monotonic() + self.local_ttl_s, value)

    async def _load(self, key: str, loader: Loader) -> dict[str, Any]:
        generation = self._generation
        # One round trip: the cached value and the model's invalidation counter, read before loading.
        reply = await self._redis_call("get", lambda r: r.mget(self._rkey(key), self._gkey(key)))
        raw, redis_gen = (reply[0], reply[1] or "") if reply is not _FAILED else (_FAILED, None)
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except ValueError:
                value = None  # a corrupt entry is a miss; the SET below overwrites it
            if isinstance(value, dict):
                CACHE_HITS_TOTAL.labels("redis").inc()
                if generation == self._generation:
                    self._store_local(key, value)
                return value
        if raw is not _FAILED:
            CACHE_MISSES_TOTAL.labels("redis").inc()
        value = await loader()
        # Serialized even without Redis, so a non-JSON value fails the same way in every deployment.
        encoded = json.dumps(value)
        if generation == self._generation:
            self._store_local(key, value)
            if redis_gen is not None:
                # Stored only if no replica invalidated the model while we were loading: otherwise our
                # value may predate the change and would stay in Redis for CACHE_TTL_S.
                ttl_ms = max(1, int(self.ttl_s * 1000))
                await self._redis_call(
                    "set",
                    lambda r: r.eval(
                        _SET_IF_GENERATION, 2, self._rkey(key), self._gkey(key), encoded, redis_gen, ttl_ms
                    ),
                )
        return value

    async def _redis_call(
        self,
        op: str,
        fn: Callable[[Redis], Awaitable[Any]],
        *,
        force: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """`fn(redis)` under an overall deadline, or `_FAILED`; never raises (except cancellation)."""
        redis = self._redis
        if redis is None or (not force and time.monotonic() < self._skip_redis_until):
            return _FAILED
        try:
            # Connect and command each have socket timeouts; this bounds their sum.
            result = await asyncio.wait_for(fn(redis), timeout_s or self._timeout_s * 2)
        except Exception as e:
            self._redis_failed(op, e)
            return _FAILED
        self._skip_redis_until = 0.0
        return result

    def _redis_failed(self, op: str, exc: BaseException) -> None:
        CACHE_ERRORS_TOTAL.labels(op).inc()
        now = time.monotonic()
        self._skip_redis_until = now + self._retry_s
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning("redis_unavailable", op=op, error=f"{type(exc).__name__}: {exc}")

    async def _listen(self) -> None:
        """Subscribe, drop local entries per message, and resubscribe with backoff when Redis goes away."""
        assert self._redis is not None
        backoff = 0.1
        connected_before = False
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self._timeout_s * 2)
                if connected_before:
                    # Messages sent while we were away are lost: forget everything instead.
                    self._generation += 1
                    self._local.clear()
                connected_before = True
                self._subscribed.set()
                backoff = 0.1
                while not self._closing:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message" and isinstance(msg["data"], str):
                        self.drop_local(msg["data"])
            except Exception as e:
                self._subscribed.clear()
                self._redis_failed("subscribe", e)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _LISTENER_MAX_BACKOFF_S)
