"""Error hierarchy → HTTP: status, one JSON shape, headers, and no traceback ever sent."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gateway.errors import (
    ClientClosedRequest,
    Forbidden,
    GatewayError,
    InvalidInput,
    ModelNotFound,
    RequestTimeout,
    SignalTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    VersionNotFound,
    register_error_handlers,
)
from gateway.logging import RequestIdMiddleware

SECRET = "secret-internal-detail-42"


class Body(BaseModel):
    values: list[float]


def _app() -> FastAPI:
    app = FastAPI()
    register_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/raise/{name}")
    async def raise_named(name: str) -> dict[str, str]:
        classes = {c.__name__: c for c in ALL_ERRORS}
        raise classes[name]()

    @app.get("/unavailable")
    async def unavailable() -> dict[str, str]:
        raise UpstreamUnavailable("model is loading", retry_after_s=7)

    @app.get("/details")
    async def details() -> dict[str, str]:
        raise InvalidInput("signal 3 is empty", details={"signal": 3})

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError(SECRET)

    @app.post("/body")
    async def body(b: Body) -> dict[str, int]:
        return {"n": len(b.values)}

    return app


ALL_ERRORS: list[type[GatewayError]] = [
    InvalidInput,
    Unauthorized,
    Forbidden,
    ModelNotFound,
    VersionNotFound,
    SignalTooLarge,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamUnavailable,
    UpstreamTimeout,
    RequestTimeout,
    ClientClosedRequest,
]

EXPECTED = {
    InvalidInput: (400, "invalid_input"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    ModelNotFound: (404, "model_not_found"),
    VersionNotFound: (404, "version_not_found"),
    SignalTooLarge: (413, "payload_too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    UpstreamError: (502, "upstream_error"),
    UpstreamUnavailable: (503, "upstream_unavailable"),
    UpstreamTimeout: (504, "upstream_timeout"),
    RequestTimeout: (408, "request_timeout"),
    ClientClosedRequest: (499, "client_closed_request"),
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app(), raise_server_exceptions=False)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_each_error_maps_to_status_and_code(client: TestClient, cls: type[GatewayError]) -> None:
    resp = client.get(f"/raise/{cls.__name__}")
    status, code = EXPECTED[cls]
    assert resp.status_code == status == cls.status_code
    err = resp.json()["error"]
    assert set(err) == {"code", "message", "request_id"}
    assert err["code"] == code
    assert err["message"] == cls.message
    assert err["request_id"] == resp.headers["X-Request-ID"]


def test_unavailable_sends_retry_after(client: TestClient) -> None:
    resp = client.get("/unavailable")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "7"
    assert resp.json()["error"]["message"] == "model is loading"


def test_timeout_sends_retry_after(client: TestClient) -> None:
    resp = client.get("/raise/UpstreamTimeout")
    assert resp.status_code == 504 and resp.headers["Retry-After"] == "1"


def test_unauthorized_sends_challenge(client: TestClient) -> None:
    assert "WWW-Authenticate" in client.get("/raise/Unauthorized").headers


def test_details_are_included(client: TestClient) -> None:
    err = client.get("/details").json()["error"]
    assert err["details"] == {"signal": 3}
    assert err["message"] == "signal 3 is empty"


def test_unknown_route_and_method_use_same_shape(client: TestClient) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    resp = client.delete("/boom")
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


def test_validation_error_is_readable_and_does_not_echo_input(client: TestClient) -> None:
    marker = "x" * 5000 + "MARKER"
    resp = client.post("/body", json={"values": [marker] * 200})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "validation_error"
    assert "values" in err["message"]
    assert "MARKER" not in resp.text
    assert len(err["details"]) <= 20
    assert len(resp.content) < 10_000


def test_unhandled_exception_is_500_without_traceback(client: TestClient) -> None:
    resp = client.get("/boom")
    assert resp.status_code == 500
    err = resp.json()["error"]
    assert err["code"] == "internal_error"
    assert SECRET not in resp.text
    assert "Traceback" not in resp.text
    assert "RuntimeError" not in resp.text
    assert err["request_id"] == resp.headers["X-Request-ID"]
