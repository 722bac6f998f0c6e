"""The load test sends bodies the gateway accepts, and its checks reject inconsistent answers."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.decoding import Limits, decode_detect
from gateway.settings import Settings
from loadtest.payloads import (
    NPY_BATCH,
    SEED_SAMPLES,
    VSB_SAMPLES,
    Payload,
    Pool,
    build_pool,
    check_detect,
    check_ready,
)

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


@pytest.fixture(scope="module")
def pool() -> Pool:
    return build_pool(7, n_json=2, n_npy=1, n_raw=1, extra={"model": "pd_unet1d"})


def _limits() -> Limits:
    s = Settings()
    return Limits(s.MAX_SIGNAL_SAMPLES, s.MAX_TOTAL_SAMPLES, s.MAX_SIGNALS_PER_REQUEST)


def test_locustfile_is_valid_python() -> None:
    ast.parse(LOCUSTFILE.read_text())


def test_pool_is_deterministic(pool: Pool) -> None:
    again = build_pool(7, n_json=2, n_npy=1, n_raw=1, extra={"model": "pd_unet1d"})
    assert [p.body for p in pool.payloads["json"]] == [p.body for p in again.payloads["json"]]
    assert pool.payloads["raw"][0].body == again.payloads["raw"][0].body
    assert pool.payloads["json"][0].body != pool.payloads["json"][1].body
    assert len(pool) == 4
    first = pool.next("json")
    assert pool.next("json") is not first and pool.next("json") is first  # round-robin


@pytest.mark.parametrize(
    ("kind", "n_signals", "n_samples"),
    [("json", 1, SEED_SAMPLES), ("npy", NPY_BATCH, SEED_SAMPLES), ("raw", 1, VSB_SAMPLES)],
)
def test_gateway_decodes_every_payload(pool: Pool, kind: str, n_signals: int, n_samples: int) -> None:
    payload = pool.next(kind)
    assert payload.path.startswith("/v1/detect?")
    query = dict(p.split("=", 1) for p in payload.path.split("?", 1)[1].split("&"))
    decoded = decode_detect(payload.body, payload.content_type, query, _limits())
    assert len(decoded.signals) == payload.n_signals == n_signals
    assert [s.size for s in decoded.signals] == payload.n_samples == [n_samples] * n_signals
    assert decoded.options.model == "pd_unet1d"
    if kind == "raw":  # VSB: 40 MHz, one 50 Hz cycle per signal
        assert decoded.options.sampling_rate_hz == pytest.approx(40e6)
        assert decoded.options.samples_per_cycle == pytest.approx(VSB_SAMPLES)
    if kind == "json":
        assert decoded.options.sampling_rate_hz is not None
        assert np.ptp(decoded.signals[0]) > 0


def _answer(payload: Payload, regions_per_signal: int = 1) -> dict:
    results = [
        {
            "sample_index": i,
            "valid": True,
            "num_regions_detected": regions_per_signal,
            "regions": [{"start": 10, "end": 20}] * regions_per_signal,
        }
        for i in range(payload.n_signals)
    ]
    return {
        "model": "pd_unet1d",
        "version": "1",
        "windows": 15,
        "total_regions": regions_per_signal * payload.n_signals,
        "results": results,
    }


def test_check_detect(pool: Pool) -> None:
    payload = pool.next("npy")
    assert check_detect(_answer(payload), payload) is None
    assert check_detect(_answer(payload, 0), payload) is None

    short = _answer(payload)
    short["results"].pop()
    assert "expected 8 results" in (check_detect(short, payload) or "")
    wrong_total = _answer(payload)
    wrong_total["total_regions"] += 1
    assert "total_regions" in (check_detect(wrong_total, payload) or "")
    outside = _answer(payload)
    outside["results"][3]["regions"] = [{"start": 7900, "end": 8000}]
    assert "outside" in (check_detect(outside, payload) or "")
    miscount = _answer(payload)
    miscount["results"][0]["num_regions_detected"] = 2
    assert "num_regions_detected" in (check_detect(miscount, payload) or "")
    assert "missing fields" in (check_detect({"error": {"code": "x"}}, payload) or "")


def test_check_ready() -> None:
    assert check_ready(200, {"status": "ready", "triton_live": True, "model_ready": True}) is None
    assert "503" in (check_ready(503, {"status": "not_ready"}) or "")
    assert check_ready(200, {"status": "starting"}) is not None


def test_locust_loads_the_locustfile() -> None:
    """Locust itself imports the file (in a child: locust monkey-patches the process with gevent).

    `make test` installs the loadtest extra, so locust is always there: no skip."""
    assert importlib.util.find_spec("locust") is not None, "pip install -e '.[loadtest]'"
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GatewayUser" in proc.stdout + proc.stderr
