"""The gateway end to end against a real Triton and a real Redis (no mocks)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from export.sim.simulator import dataset_item
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import run_pipeline
from gateway.repository import processing_params_from_config, read_config

pytestmark = pytest.mark.integration

NPY = {"content-type": "application/x-npy"}
RAW = {"content-type": "application/octet-stream"}


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def version_params(model_repo: Path, version: int = 1) -> ProcessingParams:
    raw = processing_params_from_config(read_config(model_repo / "pd_unet1d"), version)
    assert raw is not None
    return ProcessingParams.from_dict(raw)


def simulated(n: int, index: int) -> np.ndarray:
    """A simulated PD signal of exactly n samples (the simulator's seed regime, cropped or tiled)."""
    sig = dataset_item(7, index, n_samples=max(n, 64)).signal
    return np.asarray(sig[:n], dtype=np.float32)


def test_health_and_info(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_ready"] is True
    info = client.get("/").json()
    assert info["model"]["name"] == "pd_unet1d" and info["model"]["version"] == "1"
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["pd_unet1d"]
    assert models[0]["serving_version"] == "1"


@pytest.mark.parametrize("n", [1, 1000, 7920, 800_000])
def test_regions_equal_offline_reference(
    client: TestClient, model_repo: Path, reference_infer, n: int
) -> None:
    x = simulated(n, index=n % 97)
    resp = client.post("/v1/detect", content=x.tobytes(), headers=RAW)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    params = version_params(model_repo)
    (ref,) = run_pipeline([x], params, reference_infer, max_batch_size=64)
    (got,) = body["results"]
    assert got["valid"] == ref.valid
    assert got["n_samples"] == n
    assert [(r["start"], r["end"]) for r in got["regions"]] == [(r.start, r.end) for r in ref.regions]
    for g, r in zip(got["regions"], ref.regions, strict=True):
        assert g["peak_index"] == r.peak_index
        assert g["mean_score"] == pytest.approx(r.mean_score, abs=1e-4)
    assert got["signal_stats"]["max_amplitude"] == pytest.approx(ref.stats.max_amplitude, rel=1e-6)
    assert body["windows"] == (ref.n_windows if ref.valid else 0)


def test_seed_test_file_with_seed_profile(client: TestClient, seed_data: np.ndarray) -> None:
    data = seed_data
    resp = client.post("/v1/detect?profile=seed", content=npy_bytes(data), headers=NPY)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total_samples_processed"] == 7
    assert body["valid_samples_found"] == 4
    assert [r["valid"] for r in body["results"]] == [False, True, False, True, True, True, False]
    stats = body["results"][1]["signal_stats"]
    assert stats["max_amplitude"] == pytest.approx(0.17049315571784973, abs=1e-6)
    assert stats["mean_amplitude"] == pytest.approx(0.0004181701224297285, abs=1e-6)
    assert stats["std_amplitude"] == pytest.approx(0.005596190225332975, abs=1e-6)


def test_json_and_binary_bodies_agree(client: TestClient) -> None:
    rows = np.stack([simulated(7920, i) for i in range(3)])
    opts = {"sampling_rate_hz": 396_000.0, "power_frequency_hz": 50.0}
    as_json = client.post("/v1/detect", json={"signals": rows.tolist(), **opts})
    as_npy = client.post("/v1/detect", params=opts, content=npy_bytes(rows), headers=NPY)
    singles = [
        client.post("/v1/detect", params=opts, content=row.tobytes(), headers=RAW).json()["results"][0]
        for row in rows
    ]
    assert as_json.status_code == as_npy.status_code == 200
    a, b = as_json.json()["results"], as_npy.json()["results"]
    assert a == b
    for i, single in enumerate(singles):
        single["sample_index"] = i
        assert single == a[i]
    regions = [r for res in a for r in res["regions"]]
    for r in regions:
        assert r["duration_us"] == pytest.approx(r["duration"] / 396_000.0 * 1e6)
        assert r["phase_deg"] is None or 0.0 <= r["phase_deg"] < 360.0


def _pulses_at_phases(degrees: list[float]) -> np.ndarray:
    """Seed-like 7,920 samples (AC 7e5, period 3,334 from 0 deg, noise 500) with a clean PD-shaped pulse
    (40x the noise, the half-cycle's polarity) peaking at each AC phase in `degrees`."""
    from export.sim.waveforms import damped

    n, period = 7920, 3334.0
    x = 7e5 * np.sin(2 * np.pi * np.arange(n) / period) + 500 * np.random.default_rng(0).standard_normal(n)
    wave, k = damped(4.0, 1.0, 0.0, 0.3)
    for deg in degrees:
        at = round(deg / 360 * period) - k
        x[at : at + wave.size] += (1 if deg % 360 < 180 else -1) * 2e4 * wave
    return x


def test_version_phase_rule_and_include_rejected(
    client: TestClient, model_repo: Path, reference_infer
) -> None:
    """The shipped version keeps PD peaks in the rising AC quarters only; include_rejected shows the rest,
    with reason "phase" -- the same answer as the offline pipeline."""
    assert version_params(model_repo).phase_window == (0, 90)
    x = _pulses_at_phases([45, 135, 225, 315, 405, 495])
    plain = client.post("/v1/detect", content=npy_bytes(x), headers=NPY)
    shown = client.post("/v1/detect?include_rejected=true", content=npy_bytes(x), headers=NPY)
    assert plain.status_code == shown.status_code == 200, shown.text
    (a,), (b,) = plain.json()["results"], shown.json()["results"]
    kept = [round(r["phase_deg"]) for r in a["regions"]]
    assert kept == [45, 225, 45] and a.get("rejected") is None
    assert b["regions"] == a["regions"] and a["ac"]["r2"] > 0.99
    assert [(round(r["phase_deg"]), r["reason"]) for r in b["rejected"]] == [
        (135, "phase"),
        (315, "phase"),
        (135, "phase"),
    ]
    # the version's rule off (an offline run of the same weights): all six are regions
    off = version_params(model_repo).replace(phase_window=None)
    (ref,) = run_pipeline([x], off, reference_infer)
    assert sorted([r.peak_index for r in ref.regions]) == sorted(
        r["peak_index"] for r in a["regions"] + b["rejected"]
    )


def test_request_id_echoed_and_metrics(client: TestClient) -> None:
    resp = client.post("/v1/detect", json={"signal": [0.0, 1.0, 0.5]}, headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    text = client.get("/metrics").text
    for name in (
        "pdgw_http_requests_total",
        "pdgw_http_request_duration_seconds_bucket",
        "pdgw_triton_request_duration_seconds_bucket",
        "pdgw_windows_per_request_bucket",
        "pdgw_regions_found_total",
        "pdgw_cache_hits_total",
        "pdgw_cache_misses_total",
    ):
        assert name in text
    assert 'route="/v1/detect"' in text


BAD_INPUTS = [
    ("empty signal", "application/json", b'{"signal": []}', 400, "signal 0 is empty"),
    # NaN/Infinity are not JSON: orjson refuses them while parsing (issue 9)
    ("NaN", "application/json", b'{"signal": [1.0, NaN]}', 400, "not valid JSON"),
    ("Infinity", "application/json", b'{"signal": [1.0, Infinity]}', 400, "not valid JSON"),
    ("beyond float32", "application/json", b'{"signal": [1.0, 1e300]}', 400, "float32 range"),
    ("string in signal", "application/json", b'{"signal": [1, "a"]}', 400, "flat array of numbers"),
    ("ragged", "application/json", b'{"signals": [[1, 2], [3, [4]]]}', 400, "signal 1 must be a flat array"),
    ("not JSON", "application/json", b"{signal", 400, "not valid JSON"),
    ("no signal key", "application/json", b'{"data": [1]}', 400, "exactly one of"),
    ("both keys", "application/json", b'{"signal": [1], "signals": [[1]]}', 400, "exactly one of"),
    ("unknown option", "application/json", b'{"signal": [1], "colour": 1}', 400, "unknown option"),
    ("bad threshold", "application/json", b'{"signal": [1], "threshold": 2}', 400, "threshold"),
    ("3-D npy", "application/x-npy", npy_bytes(np.zeros((2, 2, 2))), 400, "1-D"),
    ("npy of strings", "application/x-npy", npy_bytes(np.array(["a", "b"])), 400, "integers or floats"),
    ("corrupt npy", "application/x-npy", b"\x93NUMPYgarbage", 400, "not a valid .npy"),
    ("raw not float32", "application/octet-stream", b"\x00\x00\x00", 400, "multiple of 4"),
    ("too many samples", "application/octet-stream", np.zeros(1_000_001, "<f4").tobytes(), 413, "limit"),
    ("unknown media type", "text/csv", b"1,2,3", 415, "unsupported content type"),
    ("unknown model", "application/json", b'{"signal": [1, 2], "model": "nope"}', 404, "nope"),
    ("unknown version", "application/json", b'{"signal": [1, 2], "version": "99"}', 404, "99"),
]


@pytest.mark.parametrize(
    ("case", "ctype", "body", "status", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_inputs(
    client: TestClient, case: str, ctype: str, body: bytes, status: int, message: str
) -> None:
    resp = client.post("/v1/detect", content=body, headers={"content-type": ctype})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert message in err["message"]
    assert err["request_id"] and "Traceback" not in resp.text


def test_body_over_limit_is_413(triton, redis_url: str, model_repo: Path) -> None:
    from gateway.app import create_app
    from tests.integration.conftest import make_settings

    settings = make_settings(triton.grpc_url, redis_url, model_repo, MAX_BODY_BYTES=1000)
    with TestClient(create_app(settings)) as c:
        resp = c.post(
            "/v1/detect",
            content=json.dumps({"signal": [0.5] * 1000}),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "payload_too_large"


def test_blas_threads_are_limited_while_the_app_serves(triton, redis_url: str, model_repo: Path) -> None:
    """BLAS_THREADS holds the process's OpenBLAS threads while the app is up and gives them back at exit."""
    from threadpoolctl import threadpool_info

    from gateway.app import create_app
    from tests.integration.conftest import make_settings

    def blas() -> list[int]:
        return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas()
    assert before, "numpy's OpenBLAS is not visible to threadpoolctl"
    target = 2 if before == [1] * len(before) else 1
    with TestClient(
        create_app(make_settings(triton.grpc_url, redis_url, model_repo, BLAS_THREADS=target))
    ) as c:
        assert blas() == [target] * len(before)
        assert c.post("/v1/detect", json={"signal": simulated(7920, 1).tolist()}).status_code == 200
    assert blas() == before
