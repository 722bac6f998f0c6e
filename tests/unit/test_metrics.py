"""HTTP metrics middleware: route templates as labels, never raw paths."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from gateway.errors import register_error_handlers
from gateway.metrics import MetricsMiddleware, latest_metrics


def _requests(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("pdgw_http_requests_total", labels) or 0.0


def _app() -> FastAPI:
    app = FastAPI()
    register_error_handlers(app)
    app.add_middleware(MetricsMiddleware)

    @app.get("/models/{model}/info")
    async def info(model: str) -> dict[str, str]:
        return {"model": model}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("x")

    return app


def test_route_template_label_and_unmatched() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    before = _requests("/models/{model}/info", "GET", "200")
    unmatched = _requests("unmatched", "GET", "404")
    crashed = _requests("/crash", "GET", "500")
    for name in ("a", "b", "c"):
        assert client.get(f"/models/{name}/info").status_code == 200
    client.get("/no/such/path")
    client.get("/crash")
    assert _requests("/models/{model}/info", "GET", "200") == before + 3
    assert _requests("unmatched", "GET", "404") == unmatched + 1
    assert _requests("/crash", "GET", "500") == crashed + 1
    assert (
        REGISTRY.get_sample_value(
            "pdgw_http_requests_total", {"route": "/models/a/info", "method": "GET", "status": "200"}
        )
        is None
    )
    assert REGISTRY.get_sample_value("pdgw_http_requests_in_flight") == 0


def test_exposition() -> None:
    body, content_type = latest_metrics()
    assert b"pdgw_triton_request_duration_seconds" in body
    assert content_type.startswith("text/plain")


def test_error_counters_read_zero_before_any_error() -> None:
    """Dashboards and alerts see 0, not "No data", while nothing has failed."""
    body = latest_metrics()[0].decode()
    for line in (
        'pdgw_triton_errors_total{kind="upstream_unavailable",op="infer"}',
        'pdgw_triton_errors_total{kind="upstream_timeout",op="infer"}',
        'pdgw_cache_redis_errors_total{op="get"}',
        'pdgw_cache_redis_errors_total{op="invalidate"}',
    ):
        assert line in body


def test_the_scrape_is_not_counted_in_flight() -> None:
    app = FastAPI()
    app.add_middleware(MetricsMiddleware)

    @app.get("/metrics")
    async def metrics_route() -> dict[str, float | None]:
        return {"in_flight": REGISTRY.get_sample_value("pdgw_http_requests_in_flight")}

    @app.get("/work")
    async def work() -> dict[str, float | None]:
        return {"in_flight": REGISTRY.get_sample_value("pdgw_http_requests_in_flight")}

    client = TestClient(app)
    assert client.get("/metrics").json() == {"in_flight": 0.0}
    assert client.get("/work").json() == {"in_flight": 1.0}
