"""MetadataCache against a real redis-server: layering, TTLs, single-flight, outages, pub/sub."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from gateway.cache import MetadataCache


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class CountingLoader:
    """A loader returning {"n": calls}, so a test can see which call produced a value."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.gate = gate

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        n = self.calls
        if self.gate is not None:
            await self.gate.wait()
        return {"n": n, "dims": ["1", "4096"]}


@pytest.fixture
def model() -> str:
    # A unique model name per test: keys never collide, even on a shared REDIS_URL.
    return f"m{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def caches(redis_url: str) -> AsyncIterator[Callable[..., MetadataCache]]:
    made: list[MetadataCache] = []

    def make(url: str | None = redis_url, **kw: Any) -> MetadataCache:
        kw.setdefault("local_ttl_s", 60.0)
        cache = MetadataCache(url, **kw)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


async def _eventually(pred: Callable[[], Any], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await pred():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_local_then_redis_then_loader(caches: Callable[..., MetadataCache], model: str) -> None:
    a, b = caches(), caches()
    key = f"{model}:config:1"
    load_a, load_b = CountingLoader(), CountingLoader()
    local_hits = _count("pdgw_cache_hits_total", layer="local")
    redis_hits = _count("pdgw_cache_hits_total", layer="redis")

    assert await a.get_or_load(key, load_a) == {"n": 1, "dims": ["1", "4096"]}
    assert await a.get_or_load(key, load_a) == {"n": 1, "dims": ["1", "4096"]}
    assert load_a.calls == 1
    assert _count("pdgw_cache_hits_total", layer="local") == local_hits + 1

    # Another process: misses locally, finds A's value in Redis, never calls its loader.
    assert await b.get_or_load(key, load_b) == {"n": 1, "dims": ["1", "4096"]}
    assert load_b.calls == 0
    assert _count("pdgw_cache_hits_total", layer="redis") == redis_hits + 1


async def test_single_flight(caches: Callable[..., MetadataCache], model: str) -> None:
    cache = caches()
    gate = asyncio.Event()
    loader = CountingLoader(gate)
    waiters = [asyncio.create_task(cache.get_or_load(f"{model}:config", loader)) for _ in range(20)]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*waiters)
    assert loader.calls == 1
    assert all(r == {"n": 1, "dims": ["1", "4096"]} for r in results)


async def test_cancelled_waiter_does_not_cancel_the_load(
    caches: Callable[..., MetadataCache], model: str
) -> None:
    cache = caches(None)
    gate = asyncio.Event()
    loader = CountingLoader(gate)
    first = asyncio.create_task(cache.get_or_load(f"{model}:c", loader))
    second = asyncio.create_task(cache.get_or_load(f"{model}:c", loader))
    await asyncio.sleep(0.02)
    first.cancel()
    gate.set()
    assert (await second)["n"] == 1
    assert loader.calls == 1


async def test_ttls_expire(caches: Callable[..., MetadataCache], model: str) -> None:
    cache = caches(local_ttl_s=0.1, ttl_s=0.6)
    key = f"{model}:config"
    loader = CountingLoader()
    redis_hits = _count("pdgw_cache_hits_total", layer="redis")
    await cache.get_or_load(key, loader)
    await asyncio.sleep(0.2)  # local entry expired, Redis entry alive
    assert (await cache.get_or_load(key, loader))["n"] == 1
    assert _count("pdgw_cache_hits_total", layer="redis") == redis_hits + 1
    await asyncio.sleep(0.7)  # both expired
    assert (await cache.get_or_load(key, loader))["n"] == 2


async def test_without_redis(caches: Callable[..., MetadataCache], model: str) -> None:
    cache = caches(None, local_ttl_s=0.1)
    assert not cache.redis_enabled
    loader = CountingLoader()
    await cache.get_or_load(f"{model}:c", loader)
    await cache.get_or_load(f"{model}:c", loader)
    assert loader.calls == 1
    await asyncio.sleep(0.15)
    await cache.get_or_load(f"{model}:c", loader)
    assert loader.calls == 2
    await cache.start_listener()  # no-ops without Redis
    await cache.invalidate(model)
    await cache.get_or_load(f"{model}:c", loader)
    assert loader.calls == 3


async def test_loader_errors_propagate_and_are_not_cached(
    caches: Callable[..., MetadataCache], model: str
) -> None:
    cache = caches()
    calls = 0

    async def failing() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise LookupError("model not found")

    for _ in range(2):
        with pytest.raises(LookupError):
            await cache.get_or_load(f"{model}:config", failing)
    assert calls == 2


async def test_non_json_value_is_rejected(caches: Callable[..., MetadataCache], model: str) -> None:
    cache = caches(None)

    async def bad() -> dict[str, Any]:
        return {"x": object()}

    with pytest.raises(TypeError):
        await cache.get_or_load(f"{model}:c", bad)


def test_drop_local_is_segment_aware() -> None:
    cache = MetadataCache(None)
    for key in ("pd", "pd:config", "pd:config:2", "pd_unet1d:config", "pdx"):
        cache._store_local(key, {"k": key})
    assert cache.drop_local("pd") == 3
    assert sorted(cache._local) == ["pd_unet1d:config", "pdx"]
    assert cache.drop_local("pd_unet1d:config") == 1


async def test_unreachable_redis_is_tolerated(caches: Callable[..., MetadataCache], model: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    errors = _count("pdgw_cache_redis_errors_total", op="get")
    cache = caches(f"redis://127.0.0.1:{port}/0", redis_timeout_s=0.2)
    loader = CountingLoader()
    assert (await cache.get_or_load(f"{model}:c", loader))["n"] == 1
    await cache.start_listener()
    await cache.invalidate(model)
    assert (await cache.get_or_load(f"{model}:c", loader))["n"] == 2
    assert _count("pdgw_cache_redis_errors_total", op="get") > errors


async def test_redis_killed_mid_test(
    caches: Callable[..., MetadataCache], private_redis: Any, model: str
) -> None:
    cache = caches(private_redis.url, local_ttl_s=0.05, redis_timeout_s=0.2, redis_retry_s=0.1)
    loader = CountingLoader()
    assert (await cache.get_or_load(f"{model}:a", loader))["n"] == 1

    private_redis.stop()
    await asyncio.sleep(0.1)  # local entry expires
    errors = _count("pdgw_cache_redis_errors_total", op="get")
    assert (await cache.get_or_load(f"{model}:a", loader))["n"] == 2
    assert (await cache.get_or_load(f"{model}:b", loader))["n"] == 3
    assert _count("pdgw_cache_redis_errors_total", op="get") > errors
    await cache.invalidate(model)  # must not raise either

    private_redis.start()  # empty: no persistence
    raw = Redis.from_url(private_redis.url, decode_responses=True)
    try:

        async def written() -> bool:
            cache.drop_local(model)
            await cache.get_or_load(f"{model}:c", loader)
            return await raw.get(f"pdgw:meta:{model}:c") is not None

        assert await _eventually(written, timeout_s=5.0), "cache never went back to Redis"
    finally:
        await raw.aclose()


async def test_pubsub_invalidation_reaches_other_instance(
    caches: Callable[..., MetadataCache], model: str
) -> None:
    a, b = caches(), caches()
    await b.start_listener()
    assert b.listener_connected
    other = f"{model}x"
    load_a, load_b, load_other = CountingLoader(), CountingLoader(), CountingLoader()
    await a.get_or_load(f"{model}:config", load_a)
    await b.get_or_load(f"{model}:config", load_b)
    await b.get_or_load(f"{other}:config", load_other)
    assert (load_a.calls, load_b.calls, load_other.calls) == (1, 0, 1)

    await a.invalidate(model)

    async def b_reloaded() -> bool:
        await b.get_or_load(f"{model}:config", load_b)
        return load_b.calls == 1

    assert await _eventually(b_reloaded, timeout_s=1.0), "B kept its local entry after invalidation"
    await b.get_or_load(f"{other}:config", load_other)
    assert load_other.calls == 1  # another model's entry survived


async def test_listener_reconnects(
    caches: Callable[..., MetadataCache], private_redis: Any, model: str
) -> None:
    a = caches(private_redis.url, redis_timeout_s=0.2, redis_retry_s=0.1)
    b = caches(private_redis.url, redis_timeout_s=0.2, redis_retry_s=0.1)
    await b.start_listener()
    private_redis.stop()

    async def disconnected() -> bool:
        return not b.listener_connected

    assert await _eventually(disconnected, timeout_s=5.0)
    private_redis.start()

    async def connected() -> bool:
        return b.listener_connected

    assert await _eventually(connected, timeout_s=10.0), "listener did not resubscribe"
    loader = CountingLoader()
    await b.get_or_load(f"{model}:config", loader)
    await a.invalidate(model)

    async def b_reloaded() -> bool:
        await b.get_or_load(f"{model}:config", loader)
        return loader.calls == 2

    assert await _eventually(b_reloaded, timeout_s=1.0)


async def test_close_is_idempotent(caches: Callable[..., MetadataCache]) -> None:
    cache = caches()
    await cache.start_listener()
    await cache.close()
    await cache.close()
    assert not cache.listener_connected


async def test_load_straddling_a_remote_invalidation_is_not_written_to_redis(
    caches: Callable[..., MetadataCache], model: str
) -> None:
    # B has no listener, so only Redis can tell it that A invalidated the model mid-load.
    a, b, c = caches(), caches(), caches()
    gate = asyncio.Event()
    stale = CountingLoader(gate)
    loading = asyncio.create_task(b.get_or_load(model, stale))
    await asyncio.sleep(0.05)  # B has read Redis (miss) and is inside its loader
    await a.invalidate(model)  # e.g. an unload through replica A
    gate.set()
    assert (await loading)["n"] == 1  # B's own caller still gets what it loaded
    fresh = CountingLoader()
    # C must not find B's possibly stale value in Redis: it loads anew.
    assert (await c.get_or_load(model, fresh))["n"] == 1
    assert fresh.calls == 1
    # Without an invalidation in between, a load is shared through Redis as before.
    d = caches()
    other = CountingLoader()
    assert (await d.get_or_load(model, other))["n"] == 1
    assert other.calls == 0
