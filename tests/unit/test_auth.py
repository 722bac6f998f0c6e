"""API keys: formats, roles, constant-time lookup, the 401/403 rules, and keys kept out of logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway import apikeys
from gateway.apikeys import KeyRing, load_api_keys, parse_api_keys
from gateway.auth import InferenceKey, OperatorKey
from gateway.errors import register_error_handlers
from gateway.logging import RequestIdMiddleware, configure_logging
from gateway.settings import Settings

OPS_KEY = "operator-secret-0123456789"
APP_KEY = "inference-secret-0123456789"
KEYS = f"ops:operator:{OPS_KEY},app:inference:{APP_KEY}"


def test_line_format_with_comments_and_colons_in_keys() -> None:
    keys = parse_api_keys(
        f"# deploy bots\nops:operator:{OPS_KEY}\napp:inference:{APP_KEY},x:inference:a:b:c:defghijklmnop"
    )
    assert [(k.name, k.role) for k in keys] == [("ops", "operator"), ("app", "inference"), ("x", "inference")]
    assert KeyRing(keys).identify("a:b:c:defghijklmnop").name == "x"


def test_json_format_and_file(tmp_path: Path) -> None:
    doc = [{"name": "ci", "role": "operator", "key": OPS_KEY}]
    (tmp_path / "keys.json").write_text(json.dumps(doc))
    (tmp_path / "keys.txt").write_text(f"app:inference:{APP_KEY}\n")
    keys = load_api_keys(json.dumps(doc)) + load_api_keys("", tmp_path / "keys.txt")
    assert [k.name for k in keys] == ["ci", "app"]
    assert [k.name for k in load_api_keys("", tmp_path / "keys.json")] == ["ci"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"ops:admin:{OPS_KEY}", "role must be one of"),
        ("ops:operator:short", "at least 16"),
        (f"ops:operator:{OPS_KEY},ops:inference:{APP_KEY}", "duplicate name"),
        (f"ops:operator:{OPS_KEY},app:inference:{OPS_KEY}", "same key"),
        (f"no-role-{OPS_KEY}", "expected name:role:key"),
        (f"bad name:operator:{OPS_KEY}", "name must be"),
        ('[{"name": "x", "role": "operator"}]', "key must be"),
        ("[not json", "not valid JSON"),
    ],
)
def test_bad_entries_fail_without_echoing_keys(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_api_keys(text)
    assert OPS_KEY not in str(err.value) and APP_KEY not in str(err.value)


def test_settings_fail_at_start_up_and_never_print_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_KEYS", f"ops:root:{OPS_KEY}")
    with pytest.raises(ValidationError) as err:
        Settings()
    assert OPS_KEY not in str(err.value) and "role must be one of" in str(err.value)
    monkeypatch.setenv("API_KEYS", KEYS)
    settings = Settings()
    assert OPS_KEY not in repr(settings) and OPS_KEY not in str(settings.model_dump())
    monkeypatch.setenv("API_KEYS_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(ValidationError, match="cannot read"):
        Settings()


def test_identify_compares_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(parse_api_keys(KEYS))
    calls: list[int] = []
    real = apikeys.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", counting)
    assert ring.identify(OPS_KEY).name == "ops"  # the first key matches ...
    assert len(calls) == 2  # ... and the second is compared all the same
    assert ring.identify("nope") is None and len(calls) == 4
    assert ring.identify(OPS_KEY).allows("inference") and not ring.identify(APP_KEY).allows("operator")


def _app(keys: str) -> FastAPI:
    app = FastAPI()
    app.state.keys = KeyRing(parse_api_keys(keys))
    register_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/op")
    async def op(key: OperatorKey) -> dict[str, str]:
        return {"name": key.name}

    @app.get("/inf")
    async def inf(key: InferenceKey) -> dict[str, str | None]:
        return {"name": key.name if key else None}

    return app


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/op", {}, 401),
        ("/op", {"X-API-Key": "wrong-key-0123456789"}, 401),
        ("/op", {"X-API-Key": APP_KEY}, 403),
        ("/op", {"X-API-Key": OPS_KEY}, 200),
        ("/op", {"Authorization": f"Bearer {OPS_KEY}"}, 200),
        ("/op", {"Authorization": f"Basic {OPS_KEY}"}, 401),
        ("/inf", {}, 401),
        ("/inf", {"X-API-Key": APP_KEY}, 200),
        ("/inf", {"X-API-Key": OPS_KEY}, 200),
        ("/inf", {"Authorization": f"Bearer {APP_KEY}"}, 200),
    ],
)
def test_roles_with_keys_configured(path: str, headers: dict, status: int) -> None:
    with TestClient(_app(KEYS)) as c:
        resp = c.get(path, headers=headers)
    assert resp.status_code == status, resp.text
    if status == 401:
        assert resp.headers["WWW-Authenticate"] == "ApiKey"
    for secret in (OPS_KEY, APP_KEY):
        assert secret not in resp.text


def test_without_keys_inference_is_open_and_operator_closed() -> None:
    with TestClient(_app("")) as c:
        assert c.get("/inf").json() == {"name": None}
        assert c.get("/op").status_code == 401
        assert c.get("/op", headers={"X-API-Key": OPS_KEY}).status_code == 401


def test_forbidden_names_the_key_not_the_secret() -> None:
    with TestClient(_app(KEYS)) as c:
        err = c.get("/op", headers={"X-API-Key": APP_KEY}).json()["error"]
    assert err["code"] == "forbidden" and "'app'" in err["message"] and APP_KEY not in err["message"]


def test_logs_carry_the_key_name_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("debug", json=True)  # structlog through stdlib logging, as the app sets it up
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced the root's handlers
    caplog.set_level(logging.DEBUG)
    with TestClient(_app(KEYS)) as c:
        c.get("/op", headers={"X-API-Key": APP_KEY})
        c.get("/op", headers={"X-API-Key": "wrong-key-0123456789"})
        c.get("/op", headers={"Authorization": f"Bearer {OPS_KEY}"})
        c.get("/inf", headers={"X-API-Key": APP_KEY})
    assert "'api_key': 'app'" in caplog.text and "'api_key': 'ops'" in caplog.text
    access = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request"]
    assert [a.get("api_key") for a in access] == ["app", None, "ops", "app"]  # the name on each access line
    for secret in (OPS_KEY, APP_KEY, "wrong-key-0123456789"):
        assert secret not in caplog.text
