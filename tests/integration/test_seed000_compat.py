"""Seed 000's README client commands as HTTP calls against the real gateway + Triton; examples; pages."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

CURL = {"accept": "*/*"}  # what `curl -X GET` sends
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}
# Seed 000's README: sample 1 of its test file.
SEED_SAMPLE_1_STATS = {
    "max_amplitude": 0.17049315571784973,
    "mean_amplitude": 0.0004181701224297285,
    "std_amplitude": 0.005596190225332975,
}


def _check_seed_shape(body: dict) -> None:
    """Every field seed 000 documents for /test-text, with its type."""
    assert isinstance(body["total_samples_processed"], int)
    assert isinstance(body["valid_samples_found"], int)
    assert isinstance(body["results"], list)
    assert len(body["results"]) == body["valid_samples_found"] <= body["total_samples_processed"]
    for r in body["results"]:
        assert isinstance(r["sample_index"], int)
        assert isinstance(r["num_regions_detected"], int)
        assert isinstance(r["regions"], list) and len(r["regions"]) == r["num_regions_detected"]
        for g in r["regions"]:
            assert set(g) == {"start", "end", "duration"}
            assert all(isinstance(g[k], int) for k in g)
            assert g["duration"] == g["end"] - g["start"] > 0
        assert set(r["signal_stats"]) == set(SEED_SAMPLE_1_STATS)
        assert all(isinstance(v, float) for v in r["signal_stats"].values())
    indices = [r["sample_index"] for r in body["results"]]
    assert indices == sorted(indices)


def test_seed_readme_commands(client: TestClient, seed_data: np.ndarray) -> None:
    health = client.get("/healthz", headers=CURL)  # curl -X GET http://localhost:8080/healthz
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    root = client.get("/", headers=CURL)  # curl -X GET http://localhost:8080/
    assert root.status_code == 200 and root.json()["service"] == "pd-gateway"
    assert {"/test", "/test-text", "/ui"} <= set(root.json()["endpoints"])
    text = client.get("/test-text", headers=CURL)  # curl -X GET http://localhost:8080/test-text
    assert text.status_code == 200, text.text
    _check_seed_shape(text.json())
    assert text.json()["total_samples_processed"] == 7 and text.json()["data"] == "seed000-test-file"
    page = client.get("/test", headers=BROWSER)  # open http://localhost:8080/test
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-autoload="seed000-test-file"' in page.text and 'data-mode="test"' in page.text


def test_test_text_seed_profile_reproduces_seed_000(client: TestClient, seed_data: np.ndarray) -> None:
    resp = client.get("/test-text", params={"profile": "seed"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    _check_seed_shape(body)
    assert body["total_samples_processed"] == 7
    assert body["valid_samples_found"] == 4
    assert [r["sample_index"] for r in body["results"]] == [1, 3, 4, 5]
    stats = body["results"][0]["signal_stats"]
    for key, value in SEED_SAMPLE_1_STATS.items():
        assert stats[key] == pytest.approx(value, abs=1e-6)
    # The same numbers as /v1/detect on the same file: /test-text is the public pipeline, reshaped.
    buf = io.BytesIO()
    np.save(buf, seed_data)
    detect = client.post(
        "/v1/detect?profile=seed", content=buf.getvalue(), headers={"content-type": "application/x-npy"}
    ).json()
    assert [r["signal_stats"] for r in detect["results"] if r["valid"]] == [
        r["signal_stats"] for r in body["results"]
    ]


def test_test_text_rejects_a_bad_profile(client: TestClient) -> None:
    resp = client.get("/test-text", params={"profile": "nope"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_input"


@pytest.fixture(scope="module")
def client_without_seed_file(
    triton: EmbeddedTriton, redis_url: str, model_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    missing = tmp_path_factory.mktemp("noseed") / "absent.npy"
    settings = make_settings(triton.grpc_url, redis_url, model_repo, SEED_TEST_DATA=missing)
    with TestClient(create_app(settings)) as c:
        yield c


def test_without_seed_file_the_simulated_file_is_used(client_without_seed_file: TestClient) -> None:
    c = client_without_seed_file
    names = [e["name"] for e in c.get("/v1/examples").json()["examples"]]
    assert "seed000-test-file" not in names and "seed-regime" in names
    body = c.get("/test-text").json()
    _check_seed_shape(body)
    assert body["data"] == "seed-regime" and body["total_samples_processed"] == 7
    assert sum(r["num_regions_detected"] for r in body["results"]) > 0  # the simulated PD is found


def test_examples_listed_fetched_deterministic_and_detectable(client: TestClient) -> None:
    listed = client.get("/v1/examples").json()["examples"]
    assert {"seed-regime", "vsb-800k", "vsb-slices"} <= {e["name"] for e in listed}
    for e in listed:
        first = client.get(e["url"])
        assert first.status_code == 200 and first.headers["content-type"] == "application/x-npy"
        arr = np.load(io.BytesIO(first.content))
        assert arr.shape == ((e["n_signals"], e["n_samples"]) if arr.ndim == 2 else (e["n_samples"],))
        assert client.get(e["url"]).content == first.content
    small = next(e for e in listed if e["name"] == "vsb-slices")
    resp = client.post(
        "/v1/detect",
        params={
            "sampling_rate_hz": small["sampling_rate_hz"],
            "include_preprocessed": "true",
            "include_probability": "true",
        },
        content=client.get(small["url"]).content,
        headers={"content-type": "application/x-npy"},
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["num_regions_detected"] > 0 for r in results].count(True) >= 2  # PD found, and PD-free
    for r in results:
        assert len(r["preprocessed"]) == len(r["probability"]) == r["n_samples"]
        # Short JSON numbers: rounded in float64 (a rounded float32 would print 0.0012300000526...).
        assert all(round(v, 5) == v for v in r["probability"])
        assert all(round(v, 6) == v for v in r["preprocessed"])
        if r["ac"] is not None:
            assert 0.0 <= r["ac"]["phase0_deg"] < 360.0


def test_unknown_example_is_a_json_404(client: TestClient) -> None:
    resp = client.get("/v1/examples/nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "example_not_found"


def test_browser_root_goes_to_the_page_and_docs_are_offline(client: TestClient) -> None:
    resp = client.get("/", headers=BROWSER, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/ui"
    for path in ("/ui", "/docs", "/redoc"):
        page = client.get(path, headers=BROWSER)
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "https://" not in page.text.replace("https://redocly.com", "")
    for asset in ("plotly.min.js", "swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        got = client.get(f"/ui/vendor/{asset}")
        assert got.status_code == 200 and len(got.content) > 10_000
    assert client.get("/ui/vendor/..%2Fsettings.py").status_code == 404
