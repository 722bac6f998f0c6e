"""Triton's request id is the gateway's: a traced Triton records the X-Request-ID of the HTTP request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from tests.integration.conftest import MODEL, copy_repository, make_settings

pytestmark = pytest.mark.integration


def _traced_ids(trace: Path) -> list[str]:
    """Request ids of every traced inference (Triton writes trace.json.<n> per `log-frequency` traces)."""
    ids = []
    for path in sorted(trace.parent.glob(trace.name + "*")):
        ids += [e["request_id"] for e in json.loads(path.read_text()) if "model_name" in e]
    return ids


def test_every_triton_call_carries_the_gateway_request_id(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    tracing = [
        f"--trace-config=triton,file={trace}",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",
        "--trace-config=triton,log-frequency=1",
    ]
    server = EmbeddedTriton(copy_repository(tmp_path), [MODEL], startup_timeout_s=180, extra_args=tracing)
    server.start(wait=True)
    try:
        settings = make_settings(server.grpc_url, None, tmp_path / "model_repository")
        signals = np.random.default_rng(0).normal(size=(2, 5000)).astype("<f4")  # > 1 Triton call
        with TestClient(create_app(settings)) as client:
            for rid in ("join-test-1", "join-test-2"):
                r = client.post(
                    "/v1/detect", json={"signals": signals.tolist()}, headers={"X-Request-ID": rid}
                )
                assert r.status_code == 200 and r.headers["X-Request-ID"] == rid
                assert r.json()["windows"] > 0
        deadline = time.monotonic() + 10
        while len(_traced_ids(trace)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.close()
    ids = _traced_ids(trace)
    assert set(ids) == {"join-test-1", "join-test-2"}, ids
