"""Issue 9, failure 1: an internal error with API keys configured must not put a key (or REDIS_URL's
password) into any log line, in JSON or console format; the rate limiter turns an outage into a few lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.embedded import free_port
from gateway.logging import RateLimitedLog, redact_text
from gateway.settings import Settings

pytestmark = pytest.mark.chaos

INFERENCE_KEY = "inference-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-fedcba9876543210"
REDIS_PASSWORD = "redis-pass-5f1e0c"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """create_app points the root logger at this test's captured stderr: detach it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.mark.parametrize("log_json", [True, False])
def test_internal_error_logs_no_secret(
    log_json: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Triton or Redis needed: the error happens before either is called; the unreachable Redis URL
    # (with a password) makes the cache log its own connection failures too.
    settings = Settings(
        TRITON_GRPC_URL=f"127.0.0.1:{free_port()}",
        REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        API_KEYS=f"ops:operator:{OPERATOR_KEY},app:inference:{INFERENCE_KEY}",
        LOG_JSON=log_json,
        LOG_LEVEL="debug",
        REDIS_TIMEOUT_S=0.2,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:

        async def boom(signals: object, options: object) -> None:
            headers = {"authorization": f"Bearer {OPERATOR_KEY}", "x-api-key": INFERENCE_KEY}
            # The worst case: the secret in the exception message itself, and in the frame's locals.
            raise RuntimeError(f"failed with {headers} on redis://:{REDIS_PASSWORD}@cache:6379")

        monkeypatch.setattr(app.state.inference, "detect", boom)
        for auth in ({"X-API-Key": INFERENCE_KEY}, {"Authorization": f"Bearer {OPERATOR_KEY}"}):
            resp = client.post("/v1/detect", json={"signal": [0.0, 1.0, 2.0]}, headers=auth)
            assert resp.status_code == 500
            assert resp.json()["error"]["code"] == "internal_error"
        # A stdlib logger (uvicorn, redis, tritonclient) with a secret in its message and a traceback.
        try:
            raise ValueError(f"connect to redis://user:{REDIS_PASSWORD}@db failed, key {INFERENCE_KEY}")
        except ValueError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    err = capsys.readouterr().err
    assert "unhandled_exception" in err and "RuntimeError" in err, err[-2000:]
    assert "Exception in ASGI application" in err
    for secret in (INFERENCE_KEY, OPERATOR_KEY, REDIS_PASSWORD):
        assert secret not in err, f"a secret reached the log:\n{err[-3000:]}"
    structlog.contextvars.clear_contextvars()


def test_settings_repr_hides_redis_password() -> None:
    s = Settings(REDIS_URL=f"redis://:{REDIS_PASSWORD}@cache:6379/0", API_KEYS=f"a:inference:{INFERENCE_KEY}")
    assert REDIS_PASSWORD not in repr(s) and INFERENCE_KEY not in repr(s)
    assert REDIS_PASSWORD not in str(s.model_dump())


def test_url_credentials_are_redacted() -> None:
    assert redact_text("redis://u:secret@h:1/0 and rediss://:pw@h") == (
        "redis://u:[redacted]@h:1/0 and rediss://:[redacted]@h"
    )
    assert redact_text("http://host/path?a=b@c") == "http://host/path?a=b@c"


def test_rate_limited_log_counts_what_it_drops() -> None:
    limiter = RateLimitedLog(interval_s=3600)
    assert limiter.allow("triton:infer") == 0  # the first line always goes out
    assert all(limiter.allow("triton:infer") is None for _ in range(1000))
    assert limiter.allow("other") == 0  # keys are independent
    limiter.interval_s = 0.0
    assert limiter.allow("triton:infer") == 1000  # the next line carries the count
