"""Rate limit, load shedding, circuit breaker, key rotation and tracing against the real Triton and Redis."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from tests.integration.conftest import make_settings, running_triton

pytestmark = pytest.mark.integration

SIGNAL = {"signal": np.sin(np.linspace(0, 20, 3000)).tolist()}
T = TypeVar("T")
KEY_A = "a" * 24
KEY_B = "b" * 24


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _wait_for(check: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """Poll `check()` until it returns something truthy (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def test_rate_limit_is_shared_through_redis_and_survives_redis_dying(
    triton: EmbeddedTriton, private_redis, model_repo: Path
) -> None:
    keys = f"alice:inference:{KEY_A},bob:inference:{KEY_B}"
    settings = make_settings(
        triton.grpc_url, private_redis.url, model_repo, API_KEYS=keys, RATE_LIMIT="3/hour"
    )
    alice, bob = {"X-API-Key": KEY_A}, {"X-API-Key": KEY_B}
    limited_before = _metric("pdgw_rate_limited_total")
    # Two gateway instances (as two replicas) sharing one Redis: the key's budget is global.
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        assert one.get("/v1/models", headers=alice).status_code == 200
        assert two.get("/v1/models", headers=alice).status_code == 200
        assert one.post("/v1/detect", json=SIGNAL, headers=alice).status_code == 200
        over = two.get("/v1/models", headers=alice)
        assert over.status_code == 429, over.text
        body = over.json()["error"]
        assert body["code"] == "rate_limited" and body["request_id"] == over.headers["X-Request-ID"]
        assert int(over.headers["Retry-After"]) >= 1
        assert KEY_A not in over.text
        assert _metric("pdgw_rate_limited_total") == limited_before + 1
        # Another key has its own budget; a missing key is refused by auth before it counts.
        assert two.get("/v1/models", headers=bob).status_code == 200
        assert two.get("/v1/models").status_code == 401

        errors_before = _metric("pdgw_cache_redis_errors_total", {"op": "rate_limit"})
        private_redis.stop()
        # Redis down: counted in process memory instead, never an error for the client.
        assert one.get("/v1/models", headers=alice).status_code == 200
        assert _metric("pdgw_cache_redis_errors_total", {"op": "rate_limit"}) > errors_before
        assert "429" in str(one.app.openapi()["paths"]["/v1/detect"]["post"]["responses"])


@pytest.fixture
def own_triton(model_repo: Path) -> Iterator[EmbeddedTriton]:
    """A Triton of this test alone, which it stops and restarts on the same ports."""
    with running_triton(model_repo) as server:
        yield server


def test_breaker_opens_when_triton_dies_and_closes_when_it_returns(
    own_triton: EmbeddedTriton, redis_url: str, model_repo: Path
) -> None:
    settings = make_settings(
        own_triton.grpc_url,
        redis_url,
        model_repo,
        CIRCUIT_BREAKER_FAILURES=2,
        CIRCUIT_BREAKER_RESET_S=1.0,
        TRITON_CONTROL_TIMEOUT_S=2.0,
    )
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/detect", json=SIGNAL).status_code == 200
        assert _metric("pdgw_circuit_breaker_state") == 0
        opened_before = _metric("pdgw_circuit_breaker_opened_total")

        own_triton.stop()

        def open_answer() -> httpx.Response | None:
            resp = c.post("/v1/detect", json=SIGNAL)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == "upstream_unavailable"
            assert int(resp.headers["Retry-After"]) >= 1
            return resp if "circuit breaker open" in resp.json()["error"]["message"] else None

        open_answer_resp = _wait_for(open_answer, "the breaker to open")
        assert open_answer_resp.headers["Retry-After"] == "1"  # never longer than CIRCUIT_BREAKER_RESET_S
        assert _metric("pdgw_circuit_breaker_state") == 2
        assert _metric("pdgw_circuit_breaker_opened_total") == opened_before + 1
        assert _metric("pdgw_circuit_breaker_rejected_total") >= 1
        # Readiness is not behind the breaker: it keeps telling the truth.
        assert c.get("/readyz").status_code == 503

        own_triton.start(wait=True)
        _wait_for(lambda: c.get("/readyz").status_code == 200, "readiness after the restart")
        _wait_for(lambda: c.post("/v1/detect", json=SIGNAL).status_code == 200, "a 200 after the restart")
        assert _metric("pdgw_circuit_breaker_state") == 0


@pytest.mark.asyncio
async def test_deep_queue_sheds_new_requests_at_once(
    triton: EmbeddedTriton, redis_url: str, model_repo: Path
) -> None:
    # One call slot and a bound of one queued batch: a request of many batches saturates it alone.
    settings = make_settings(
        triton.grpc_url, redis_url, model_repo, MAX_CONCURRENT_TRITON_CALLS=1, SHED_QUEUED_BATCHES=1
    )
    app = create_app(settings)
    big = np.random.default_rng(0).standard_normal(64 * 896 * 16).astype("<f4").tobytes()  # ~16 batches
    shed_before = _metric("pdgw_shed_total")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=120) as client:
            assert (await client.post("/v1/detect", json=SIGNAL)).status_code == 200  # metadata cached
            octet = {"content-type": "application/octet-stream"}
            big_task = asyncio.create_task(client.post("/v1/detect", content=big, headers=octet))
            deadline = time.monotonic() + 60
            while app.state.triton.queued_batches < 1:
                assert not big_task.done() and time.monotonic() < deadline, "the big request never queued"
                await asyncio.sleep(0.005)
            shed = await client.post("/v1/detect", json=SIGNAL)
            assert shed.status_code == 503, shed.text
            assert shed.json()["error"]["code"] == "overloaded"
            assert int(shed.headers["Retry-After"]) >= 1
            assert _metric("pdgw_shed_total") == shed_before + 1
            # The admitted request is never cut short, and the gateway takes traffic again after it.
            assert (await big_task).status_code == 200
            assert _metric("pdgw_triton_queued_batches") == 0
            assert (await client.post("/v1/detect", json=SIGNAL)).status_code == 200


def test_rotated_key_file_takes_effect_without_restart(
    triton: EmbeddedTriton, redis_url: str, model_repo: Path, tmp_path: Path, capfd
) -> None:
    # The Kubernetes Secret layout: the file is a symlink through "..data", swapped atomically.
    secret = tmp_path / "secret"
    secret.mkdir()

    def publish(content: str, version: int) -> None:
        data = secret / f"..v{version}"
        data.mkdir()
        (data / "api-keys").write_text(content)
        (secret / "..data_tmp").symlink_to(data.name)
        os.replace(secret / "..data_tmp", secret / "..data")

    publish(f"ci:inference:{KEY_A}\n", 1)
    (secret / "api-keys").symlink_to("..data/api-keys")
    settings = make_settings(triton.grpc_url, redis_url, model_repo, API_KEYS_FILE=secret / "api-keys")
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/models", headers={"X-API-Key": KEY_A}).status_code == 200
        assert c.get("/v1/models", headers={"X-API-Key": KEY_B}).status_code == 401

        publish(f"ci:inference:{KEY_B}\n", 2)
        _wait_for(lambda: c.get("/v1/models", headers={"X-API-Key": KEY_B}).status_code == 200, "the new key")
        assert c.get("/v1/models", headers={"X-API-Key": KEY_A}).status_code == 401

        # A bad file (an unknown role) keeps the old keys, and its key reaches no log line.
        errors = _metric("pdgw_api_key_reloads_total", {"result": "error"})
        leaked = "leakedsecret0123456789"
        publish(f"ci:admin:{leaked}\n", 3)
        _wait_for(
            lambda: _metric("pdgw_api_key_reloads_total", {"result": "error"}) > errors, "the rejection"
        )
        assert c.get("/v1/models", headers={"X-API-Key": KEY_B}).status_code == 200
        out, err = capfd.readouterr()
        assert "api_keys_reload_rejected" in out + err
        assert leaked not in out + err and KEY_B not in out + err


def test_traces_carry_the_request_id(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = make_settings(triton.grpc_url, redis_url, model_repo)
    with TestClient(create_app(settings, span_exporter=exporter)) as c:
        resp = c.post("/v1/detect", json=SIGNAL, headers={"X-Request-ID": "trace-me-1"})
        assert resp.status_code == 200
        assert c.get("/healthz").status_code == 200  # not traced
    spans = exporter.get_finished_spans()
    server = [s for s in spans if (s.attributes or {}).get("request_id") == "trace-me-1"]
    assert len(server) == 1
    trace_id = server[0].context.trace_id
    grpc = [s for s in spans if s.context.trace_id == trace_id and "ModelInfer" in s.name]
    assert grpc, [s.name for s in spans]
    assert not [s for s in spans if "healthz" in s.name]
