"""Request-id middleware: accept sane ids, replace others, echo, bind to logs, one access event."""

from __future__ import annotations

import re

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.errors import register_error_handlers
from gateway.logging import RequestIdMiddleware, configure_logging, sane_request_id

GENERATED = re.compile(r"[0-9a-f]{32}")


def _app() -> FastAPI:
    app = FastAPI()
    register_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/ctx")
    async def ctx() -> dict[str, object]:
        return {"bound": structlog.contextvars.get_contextvars().get("request_id")}

    @app.get("/sync-ctx")
    def sync_ctx() -> dict[str, object]:
        # Sync routes run in a worker thread; the context must follow them there.
        return {"bound": structlog.contextvars.get_contextvars().get("request_id")}

    @app.get("/fail")
    async def fail() -> None:
        raise ValueError("boom")

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app(), raise_server_exceptions=False)


@pytest.mark.parametrize("path", ["/ctx", "/sync-ctx"])
def test_generated_id_is_echoed_and_bound(client: TestClient, path: str) -> None:
    resp = client.get(path)
    rid = resp.headers["X-Request-ID"]
    assert GENERATED.fullmatch(rid)
    assert resp.json()["bound"] == rid


def test_sane_incoming_id_is_kept(client: TestClient) -> None:
    resp = client.get("/ctx", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert resp.headers["X-Request-ID"] == "abc.DEF_123-x"
    assert resp.json()["bound"] == "abc.DEF_123-x"


@pytest.mark.parametrize("bad", ["a" * 129, "has space", "semi;colon", "new\\nline", "ünï", ""])
def test_insane_incoming_id_is_replaced(client: TestClient, bad: str) -> None:
    resp = client.get("/ctx", headers={"X-Request-ID": bad.encode("utf-8")})
    rid = resp.headers["X-Request-ID"]
    assert rid != bad
    assert GENERATED.fullmatch(rid)


def test_each_request_gets_a_new_id(client: TestClient) -> None:
    assert client.get("/ctx").headers["X-Request-ID"] != client.get("/ctx").headers["X-Request-ID"]


def test_id_on_404_and_500(client: TestClient) -> None:
    for path, status in (("/missing", 404), ("/fail", 500)):
        resp = client.get(path, headers={"X-Request-ID": "req-1"})
        assert resp.status_code == status
        assert resp.headers["X-Request-ID"] == "req-1"
        assert resp.json()["error"]["request_id"] == "req-1"


def test_one_access_event_without_headers(client: TestClient) -> None:
    with structlog.testing.capture_logs() as logs:
        client.get(
            "/missing?token=SECRETQ", headers={"X-Request-ID": "req-2", "Authorization": "Bearer SECRETH"}
        )
    events = [e for e in logs if e["event"] == "request"]
    assert len(events) == 1
    ev = events[0]
    assert (ev["method"], ev["path"], ev["status"]) == ("GET", "/missing", 404)
    assert ev["duration_ms"] >= 0
    assert "SECRET" not in repr(logs)


def test_500_logs_traceback_with_request_id(client: TestClient) -> None:
    with structlog.testing.capture_logs() as logs:
        client.get("/fail", headers={"X-Request-ID": "req-3"})
    errors = [e for e in logs if e["event"] == "unhandled_exception"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "req-3"
    assert isinstance(errors[0]["exc_info"], ValueError)
    assert [e["status"] for e in logs if e["event"] == "request"] == [500]


def test_sane_request_id_rules() -> None:
    assert sane_request_id("x" * 128) == "x" * 128
    assert sane_request_id("x" * 129) is None
    assert sane_request_id(None) is None
    assert sane_request_id("a/b") is None


def test_json_logging_renders_one_line_with_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    configure_logging("info", json=True)
    try:
        with structlog.contextvars.bound_contextvars(request_id="rid-9"):
            structlog.get_logger("t").info("hello", n=1)
            logging.getLogger("uvicorn.error").warning("from stdlib %s", "uvicorn")
        lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    finally:
        logging.getLogger().handlers = []
        structlog.reset_defaults()
    assert lines[0]["event"] == "hello" and lines[0]["request_id"] == "rid-9" and lines[0]["n"] == 1
    assert lines[1]["event"] == "from stdlib uvicorn" and lines[1]["request_id"] == "rid-9"
    assert lines[1]["level"] == "warning"
