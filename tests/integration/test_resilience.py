"""Failures of the real dependencies: Redis dies mid-run, Triton stops and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from tests.integration.conftest import make_settings, running_triton

pytestmark = pytest.mark.integration

SIGNAL = {"signal": np.sin(np.linspace(0, 20, 3000)).tolist()}


def test_requests_survive_redis_dying(triton: EmbeddedTriton, private_redis, model_repo: Path) -> None:
    # A tiny local TTL so requests after the stop must go past the in-process layer to Redis.
    settings = make_settings(triton.grpc_url, private_redis.url, model_repo, LOCAL_CACHE_TTL_S=0.05)
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/detect", json=SIGNAL).status_code == 200
        assert c.get("/readyz").json()["redis"] == "connected"
        private_redis.stop()
        for _ in range(5):
            time.sleep(0.06)
            resp = c.post("/v1/detect", json=SIGNAL)
            assert resp.status_code == 200, resp.text
        assert "pdgw_cache_redis_errors_total" in c.get("/metrics").text
        # Redis is reported (once the listener notices the closed connection), never a reason to stop
        # taking traffic.
        deadline = time.monotonic() + 10
        while (ready := c.get("/readyz")).json()["redis"] != "disconnected":
            assert ready.status_code == 200 and time.monotonic() < deadline
            time.sleep(0.1)
        assert ready.status_code == 200
        private_redis.start()
        time.sleep(0.06)
        assert c.post("/v1/detect", json=SIGNAL).status_code == 200


@pytest.fixture
def own_triton(model_repo: Path) -> Iterator[EmbeddedTriton]:
    """A Triton of this test alone, which it stops and restarts on the same ports."""
    with running_triton(model_repo) as server:
        yield server


def test_triton_down_gives_503_then_recovers(
    own_triton: EmbeddedTriton, redis_url: str, model_repo: Path
) -> None:
    settings = make_settings(own_triton.grpc_url, redis_url, model_repo, TRITON_CONTROL_TIMEOUT_S=2.0)
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/detect", json=SIGNAL).status_code == 200

        own_triton.stop()
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["triton_live"] is False
        assert "Retry-After" in ready.headers
        down = c.post("/v1/detect", json=SIGNAL)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "upstream_unavailable"
        assert int(down.headers["Retry-After"]) >= 1
        assert c.get("/healthz").status_code == 200  # liveness never depends on Triton

        own_triton.start(wait=True)
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "gateway did not see Triton come back"
            time.sleep(0.5)
        assert c.post("/v1/detect", json=SIGNAL).status_code == 200


def test_deadline_exceeded_is_504(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> None:
    settings = make_settings(triton.grpc_url, redis_url, model_repo, TRITON_TIMEOUT_S=0.0005)
    with TestClient(create_app(settings)) as c:
        resp = c.post("/v1/detect", json={"signal": [0.1, 0.2, 0.3] * 100})
        assert resp.status_code == 504, resp.text
        assert resp.json()["error"]["code"] == "upstream_timeout"
