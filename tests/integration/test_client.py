"""gateway.client against a live gateway on the real Triton: typed results equal the HTTP API's, .npy on
the wire, options checked before sending, 503 retried after Retry-After, API keys sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.client import AsyncGatewayClient, GatewayClient, GatewayHTTPError, encode_signals
from gateway.embedded import EmbeddedTriton
from gateway.errors import InvalidInput
from tests.conftest import _free_port
from tests.integration.conftest import MODEL, live_server, make_settings

pytestmark = pytest.mark.integration

KEY = "client-test-key-0123456789"


@pytest.fixture(scope="module")
def gateway_url(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> Iterator[str]:
    settings = make_settings(triton.grpc_url, redis_url, model_repo, API_KEYS=f"client:inference:{KEY}")
    with live_server(create_app(settings)) as url:
        yield url


def test_sync_client_equals_the_http_api(gateway_url: str, seed_data: np.ndarray) -> None:
    with GatewayClient(gateway_url, api_key=KEY) as gw:
        typed = gw.detect(seed_data, profile="seed", request_id="client-sync-1")
        assert gw.ready().status == "ready"
        assert [m.name for m in gw.models().models] == [MODEL]
    body, ctype = encode_signals(seed_data)
    assert ctype == "application/x-npy"
    raw = httpx.post(
        f"{gateway_url}/v1/detect?profile=seed",
        content=body,
        headers={"Content-Type": ctype, "X-API-Key": KEY},
        timeout=60,
    ).json()
    assert typed.total_samples_processed == len(seed_data) == raw["total_samples_processed"]
    for got, want in zip(typed.results, raw["results"], strict=True):
        assert [(r.start, r.end, r.peak_index) for r in got.regions] == [
            (r["start"], r["end"], r["peak_index"]) for r in want["regions"]
        ]


async def test_async_client_ragged_signals_and_options(gateway_url: str) -> None:
    rng = np.random.default_rng(3)
    signals = [rng.normal(size=3000), rng.normal(size=5000)]  # ragged: travels as JSON
    async with AsyncGatewayClient(gateway_url, api_key=KEY) as gw:
        result = await gw.detect(signals, sampling_rate_hz=1e6, threshold=0.6)
        assert [r.n_samples for r in result.results] == [3000, 5000]
        with pytest.raises(InvalidInput, match="thresh"):  # checked before any request
            await gw.detect(signals, thresh=0.6)


def test_errors_carry_code_and_request_id(gateway_url: str) -> None:
    with GatewayClient(gateway_url, api_key="wrong-key") as gw, pytest.raises(GatewayHTTPError) as e:
        gw.detect(np.ones(100), request_id="client-err-1")
    assert (e.value.status, e.value.code, e.value.request_id) == (401, "unauthorized", "client-err-1")
    with GatewayClient(gateway_url, api_key=KEY) as gw, pytest.raises(GatewayHTTPError) as e:
        gw.detect(np.ones(100), model="no_such_model")
    assert (e.value.status, e.value.code) == (404, "model_not_found")


def _detect_503s(url: str) -> float:
    """The gateway's count of 503 answers on /v1/detect (Prometheus, process-wide)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("pdgw_http_requests_total{") and '"/v1/detect"' in line and 'status="503"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_503_is_retried_after_retry_after(tmp_path: Path) -> None:
    """A gateway whose Triton is down answers 503 + Retry-After: the client retries, then raises."""
    settings = make_settings(f"127.0.0.1:{_free_port()}", None, tmp_path, TRITON_CONTROL_TIMEOUT_S=1)
    with live_server(create_app(settings)) as url:
        before = _detect_503s(url)
        with GatewayClient(url, retries=2, max_wait_s=0.05) as gw, pytest.raises(GatewayHTTPError) as e:
            gw.detect(np.ones(100), request_id="client-retry")
        assert (e.value.status, e.value.code) == (503, "upstream_unavailable")
        assert _detect_503s(url) - before == 3  # the first try and two retries
