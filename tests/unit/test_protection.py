"""Breaker, rate limiter, key reload and tracing switch, each module alone (services: see integration)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import ValidationError
from tritonclient.utils import InferenceServerException

from gateway.apikeys import KeyRing, load_api_keys
from gateway.app import create_app
from gateway.breaker import CircuitBreaker
from gateway.errors import RateLimited, UpstreamUnavailable
from gateway.keyreload import reload_keys
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings

KEY_A, KEY_B = "a" * 20, "b" * 20


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def _fail(breaker: CircuitBreaker, status: str) -> None:
    with pytest.raises(InferenceServerException):
        async with breaker.guard():
            raise InferenceServerException("triton says no", status=status)


async def test_breaker_counts_consecutive_unavailable_or_deadline() -> None:
    breaker = CircuitBreaker(failures=3, reset_s=30.0)
    await _fail(breaker, "StatusCode.UNAVAILABLE")
    await _fail(breaker, "StatusCode.DEADLINE_EXCEEDED")
    await _fail(breaker, "StatusCode.INVALID_ARGUMENT")  # Triton answered: the count starts again
    await _fail(breaker, "StatusCode.UNAVAILABLE")
    await _fail(breaker, "StatusCode.CANCELLED")  # neutral
    await _fail(breaker, "StatusCode.UNAVAILABLE")
    assert await breaker.state() == "closed"
    await _fail(breaker, "StatusCode.DEADLINE_EXCEEDED")
    assert await breaker.state() == "opened"
    assert _metric("pdgw_circuit_breaker_state") == 2
    with pytest.raises(UpstreamUnavailable) as info:
        await breaker.raise_if_open()
    assert info.value.headers()["Retry-After"] == "30"
    with pytest.raises(UpstreamUnavailable, match="circuit breaker open"):
        async with breaker.guard():
            pytest.fail("an open breaker must not run the call")


async def test_breaker_half_open_probe_closes_or_reopens() -> None:
    breaker = CircuitBreaker(failures=1, reset_s=0.05)
    await _fail(breaker, "StatusCode.UNAVAILABLE")
    await asyncio.sleep(0.1)
    await _fail(breaker, "StatusCode.UNAVAILABLE")  # the probe fails: open again
    assert await breaker.state() == "opened"
    await asyncio.sleep(0.1)
    await breaker.raise_if_open()  # past the reset: admitted
    async with breaker.guard():
        pass
    assert await breaker.state() == "closed"
    assert _metric("pdgw_circuit_breaker_state") == 0


async def test_cancelled_call_records_nothing() -> None:
    breaker = CircuitBreaker(failures=1, reset_s=0.05)
    await _fail(breaker, "StatusCode.UNAVAILABLE")
    await asyncio.sleep(0.1)
    with pytest.raises(asyncio.CancelledError):
        async with breaker.guard():
            raise asyncio.CancelledError
    assert await breaker.state() == "half-opened"  # still waiting for a probe's answer


async def test_rate_limit_in_memory_and_per_identity() -> None:
    limiter = RateLimiter("2/hour")
    await limiter.check("key:a")
    await limiter.check("key:a")
    with pytest.raises(RateLimited) as info:
        await limiter.check("key:a")
    assert int(info.value.headers()["Retry-After"]) >= 1
    assert info.value.status_code == 429 and info.value.code == "rate_limited"
    await limiter.check("key:b")
    await RateLimiter("").check("key:a")  # off: never refuses


async def test_unreachable_redis_falls_back_to_memory() -> None:
    with socket.socket() as sock:  # a port where nothing listens: Redis is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = _metric("pdgw_cache_redis_errors_total", {"op": "rate_limit"})
    async with RateLimiter("1/hour", f"redis://127.0.0.1:{port}/0", redis_timeout_s=0.2) as limiter:
        await limiter.check("key:a")
        with pytest.raises(RateLimited):
            await limiter.check("key:a")
    assert _metric("pdgw_cache_redis_errors_total", {"op": "rate_limit"}) == before + 1


def test_rate_limit_setting_is_validated() -> None:
    assert Settings(RATE_LIMIT=" 100/second ").RATE_LIMIT == "100/second"
    assert Settings(RATE_LIMIT="600/minute;20/second").RATE_LIMIT
    with pytest.raises(ValidationError, match="RATE_LIMIT"):
        Settings(RATE_LIMIT="lots")
    with pytest.raises(ValidationError):
        Settings(SHED_QUEUED_BATCHES=-1)


def test_reload_keeps_old_keys_on_a_bad_or_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"ci:inference:{KEY_A}\n")
    settings = Settings(API_KEYS_FILE=path)
    app = FastAPI()
    app.state.keys = KeyRing(load_api_keys("", path))

    path.write_text(f"ci:operator:{KEY_B}\n")
    assert reload_keys(app, settings)
    assert app.state.keys.identify(KEY_B).role == "operator" and app.state.keys.identify(KEY_A) is None

    for bad in (f"ci:root:{KEY_A}\n", "", "not a key file"):
        path.write_text(bad)
        assert not reload_keys(app, settings)
        assert app.state.keys.identify(KEY_B) is not None
    path.unlink()
    assert not reload_keys(app, settings)
    assert app.state.keys.identify(KEY_B) is not None


def test_tracing_is_not_installed_without_an_endpoint() -> None:
    app = create_app(Settings(TRITON_GRPC_URL="127.0.0.1:1"))
    assert app.state.tracer_provider is None
    assert not [m for m in app.user_middleware if "Span" in m.cls.__name__]
