"""Locust load test of pd-gateway with simulated PD signals (export.sim.simulator, seeded).

    locust -f loadtest/locustfile.py --headless -u 16 -r 4 -t 60s --host http://127.0.0.1:8000 \\
        --csv runs/loadtest/lt

Task mix (weights): JSON single 7,920-sample signal (6), .npy batch of 8 seed-like signals (3),
raw float32 800,000-sample VSB signal (1), GET /readyz (1). Select kinds with --tags json npy raw ready.

Environment: PDGW_LT_SEED (default 0), PDGW_LT_POOL (JSON signals in the pool, default 16),
PDGW_LT_MODEL / PDGW_LT_VERSION (query options; default: the gateway's default model),
PDGW_API_KEY (sent as X-API-Key; the chart and compose turn auth on).
PDGW_LT_CLIENT=1 adds `ClientUser`: .npy batches sent through the Python client (`gateway.client`),
typed results, retries on 503 (off by default, so the default mix stays as measured).
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from locust import FastHttpUser, User, between, events, tag, task
from locust.env import Environment

# Locust puts only this file's folder on sys.path: the repository root gives `gateway` and `loadtest`.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from gateway.client import GatewayClient, GatewayHTTPError  # noqa: E402
from loadtest.payloads import Payload, Pool, build_pool, check_detect, check_ready  # noqa: E402

_POOL: Pool | None = None


def _extra_params() -> dict[str, str]:
    params = {}
    for env, key in (("PDGW_LT_MODEL", "model"), ("PDGW_LT_VERSION", "version")):
        if os.environ.get(env):
            params[key] = os.environ[env]
    return params


def pool() -> Pool:
    """The process's payload pool, built once (each worker process builds its own, same seed)."""
    global _POOL
    if _POOL is None:
        n_json = int(os.environ.get("PDGW_LT_POOL", "16"))
        _POOL = build_pool(
            int(os.environ.get("PDGW_LT_SEED", "0")),
            n_json=n_json,
            n_npy=max(1, n_json // 4),
            n_raw=2,
            extra=_extra_params(),
        )
    return _POOL


@events.init.add_listener
def _build_pool_at_start(environment: Environment, **_kwargs: object) -> None:
    # Simulating takes a second or so: do it before users spawn, not inside the first timed request.
    p = pool()
    print(f"pd-gateway load test: {len(p)} payloads pre-built", file=sys.stderr)


class GatewayUser(FastHttpUser):
    """A client of /v1/detect in all three body formats, plus a readiness poller."""

    wait_time = between(0.0, 0.2)
    network_timeout = 60.0  # a raw VSB request can take seconds on a CPU-only Triton

    def _detect(self, payload: Payload, name: str) -> None:
        headers = {"Content-Type": payload.content_type, "Accept": "application/json"}
        if os.environ.get("PDGW_API_KEY"):
            headers["X-API-Key"] = os.environ["PDGW_API_KEY"]
        # Bytes bodies work (geventhttpclient sends them as is); Locust's type hint only says str | dict.
        with self.client.post(
            payload.path,
            data=payload.body,  # type: ignore[arg-type]
            headers=headers,
            name=name,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                doc = resp.json()
            except ValueError:
                resp.failure("response is not JSON")
                return
            problem = check_detect(doc, payload)
            if problem:
                resp.failure(problem)
            else:
                resp.success()

    @tag("detect", "json")
    @task(6)
    def detect_json(self) -> None:
        self._detect(pool().next("json"), "POST /v1/detect [json 1x7920]")

    @tag("detect", "npy")
    @task(3)
    def detect_npy(self) -> None:
        self._detect(pool().next("npy"), "POST /v1/detect [npy 8x7920]")

    @tag("detect", "raw")
    @task(1)
    def detect_raw_vsb(self) -> None:
        self._detect(pool().next("raw"), "POST /v1/detect [raw f32 1x800000]")

    @tag("ready")
    @task(1)
    def readyz(self) -> None:
        with self.client.get("/readyz", name="GET /readyz", catch_response=True) as resp:
            try:
                doc = resp.json()
            except ValueError:
                doc = resp.text
            problem = check_ready(resp.status_code, doc)
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class ClientUser(User):
    """What a Python client sees: the same .npy batches through `gateway.client.GatewayClient`."""

    abstract = os.environ.get("PDGW_LT_CLIENT") != "1"
    wait_time = between(0.0, 0.2)

    def on_start(self) -> None:
        self.gateway = GatewayClient(self.host, api_key=os.environ.get("PDGW_API_KEY"), timeout_s=60.0)

    def on_stop(self) -> None:
        self.gateway.close()

    @tag("client")
    @task
    def detect_npy_client(self) -> None:
        payload = pool().next("npy")
        signals = np.load(io.BytesIO(payload.body))
        start, error, size = time.perf_counter(), None, len(payload.body)
        try:
            result = self.gateway.detect(signals, **payload.params)
            if len(result.results) != payload.n_signals:
                error = AssertionError(f"expected {payload.n_signals} results, got {len(result.results)}")
        except (GatewayHTTPError, OSError) as e:
            error = e
        self.environment.events.request.fire(
            request_type="CLIENT",
            name="detect [client npy 8x7920]",
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=size,
            exception=error,
            context={},
        )
