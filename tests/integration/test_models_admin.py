"""Model management against a real Triton (own server, own repository copy) and a real Redis."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.cache import MetadataCache
from gateway.cli import main as cli_main
from gateway.dsp.params import ProcessingParams
from gateway.embedded import EmbeddedTriton
from gateway.errors import ModelRejected
from gateway.repository import processing_params_from_config, read_config
from gateway.services.management import ModelManager
from gateway.services.models import ModelRegistry
from gateway.services.validation import Contract, ValidationReport
from gateway.triton_client import TritonClient
from tests.integration.conftest import MODEL, copy_repository, make_settings, running_triton
from tests.integration.mgmt_helpers import (
    API_KEYS,
    APP,
    OPS,
    live_server,
    redis_db,
    reference_regions,
    simulated,
    tree,
)
from tests.onnx_factory import external_data_model, tiny_model

pytestmark = pytest.mark.integration

V2_PROCESSING = {"window": 2048, "hop": 1792, "halo": 128}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(tmp_path_factory.mktemp("admin"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[EmbeddedTriton]:
    with running_triton(repo) as triton:
        yield triton


@pytest.fixture(scope="module")
def admin_redis(redis_url: str) -> str:
    return redis_db(redis_url, 1)


@pytest.fixture(scope="module")
def admin(server: EmbeddedTriton, admin_redis: str, repo: Path) -> Iterator[TestClient]:
    settings = make_settings(server.grpc_url, admin_redis, repo, API_KEYS=API_KEYS)
    with TestClient(create_app(settings)) as c:
        yield c


def upload(client: TestClient, model: bytes, name: str = MODEL, **fields: object) -> object:
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    files = {"model": ("model.onnx", model, "application/octet-stream")}
    return client.post(f"/v1/models/{name}/versions", files=files, data=data, headers=OPS)


def detect(client: TestClient, x, version: str | None = None):
    params = {"version": version} if version else {}
    return client.post(
        "/v1/detect",
        params=params,
        content=x.tobytes(),
        headers={"content-type": "application/octet-stream", **APP},
    )


def test_describe_shows_config_versions_processing_and_card(admin: TestClient) -> None:
    body = admin.get(f"/v1/models/{MODEL}", headers=OPS).json()
    assert body["name"] == MODEL and body["default"] is True
    assert body["config"]["inputs"][0]["name"] == "signal"
    assert body["config"]["max_batch_size"] >= 1
    (v1,) = body["versions"]
    assert (v1["version"], v1["state"], v1["in_repository"]) == ("1", "READY", True)
    assert v1["processing"]["window"] == v1["window"]
    assert v1["model_card"]["pd:version"] == 1
    listing = admin.get(f"/v1/models/{MODEL}/versions", headers=OPS).json()
    assert listing["served"] == ["1"] and listing["serving_version"] == "1"


def test_deploy_other_window_pin_unload_and_reload(admin: TestClient, repo: Path) -> None:
    resp = upload(admin, tiny_model("length"), processing=V2_PROCESSING)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["version"] == "2" and body["loaded"] is True
    assert body["served"] == ["1", "2"] and body["processing"]["window"] == 2048
    assert body["validation"]["dry_run"]["windows"] == 2
    config = read_config(repo / MODEL)
    assert list(config.input[0].dims) == [1, -1]  # the shape admits both windows
    assert list(config.version_policy.specific.versions) == [1, 2]  # persisted for a Triton restart
    assert (repo / MODEL / "2" / "model.onnx").read_bytes() == tiny_model("length")

    x = simulated(7920, 3)
    for version, windows in (("1", None), ("2", 5)):
        got = detect(admin, x, version)
        assert got.status_code == 200, got.text
        assert got.json()["version"] == version
        regions = [(r["start"], r["end"]) for r in got.json()["results"][0]["regions"]]
        assert regions == reference_regions(repo, int(version), x)
        if windows is not None:  # ceil((7920 - 2048) / 1792) + 1: the 2048 geometry was used
            assert got.json()["windows"] == windows
    assert detect(admin, x).json()["version"] == "2"

    resp = admin.post(f"/v1/models/{MODEL}/unload", json={"versions": [1]}, headers=OPS)
    assert resp.status_code == 200, resp.text
    assert resp.json()["served"] == ["2"]
    assert {v["version"]: v["state"] for v in resp.json()["versions"]}["1"] != "READY"
    pinned = detect(admin, x, "1")
    assert pinned.status_code == 404 and pinned.json()["error"]["code"] == "version_not_found"
    assert detect(admin, x).json()["version"] == "2"
    assert list(read_config(repo / MODEL).version_policy.specific.versions) == [2]

    resp = admin.post(f"/v1/models/{MODEL}/load", json={"versions": [1, 2]}, headers=OPS)
    assert resp.status_code == 200, resp.text
    assert resp.json()["served"] == ["1", "2"]
    assert detect(admin, x, "1").json()["version"] == "1"


REJECTED = [
    ("corrupt onnx", MODEL, b"\x08\x07garbage-not-a-protobuf\xff", {}, 422, "not a valid ONNX file"),
    ("wrong input shape", MODEL, tiny_model(512), {}, 422, "has length 512 but the processing window"),
    ("fixed batch axis", MODEL, tiny_model(batch=8), {}, 422, "fixed batch axis"),
    ("wrong input name", MODEL, tiny_model(input_name="x"), {}, 422, "config expects 'signal'"),
    ("logits, no sigmoid", MODEL, tiny_model(sigmoid=False), {}, 422, "not within [0, 1]"),
    ("external data", MODEL, external_data_model(), {}, 422, "external tensor data"),
    ("bad processing", MODEL, tiny_model(), {"processing": {"windw": 4}}, 400, "unknown processing"),
    ("processing not JSON", MODEL, tiny_model(), {"processing": "{nope"}, 400, "not valid JSON"),
    ("version with path", MODEL, tiny_model(), {"version": "../3"}, 400, "invalid model version"),
    ("existing version", MODEL, tiny_model(), {"version": "1"}, 409, "already exists"),
    ("unknown field", MODEL, tiny_model(), {"path": "/tmp/x"}, 400, "unknown upload field"),
    ("traversal name", "%2E%2E", tiny_model(), {}, 400, "invalid model name"),
    ("dotted name", "pd_unet1d..", tiny_model(), {}, 400, "invalid model name"),
    ("hidden name", ".pd_unet1d", tiny_model(), {}, 400, "invalid model name"),
    ("unknown model", "not_a_model", tiny_model(), {}, 404, "not in the model repository"),
]


@pytest.mark.parametrize(
    ("case", "name", "model", "fields", "status", "message"), REJECTED, ids=[r[0] for r in REJECTED]
)
def test_bad_upload_changes_nothing(
    admin: TestClient, repo: Path, case: str, name: str, model: bytes, fields: dict, status: int, message: str
) -> None:
    before = tree(repo.parent)
    served = admin.get(f"/v1/models/{MODEL}/versions", headers=OPS).json()["served"]
    resp = upload(admin, model, name=name, **fields)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"]["message"]
    assert "Traceback" not in resp.text
    assert tree(repo.parent) == before
    assert admin.get(f"/v1/models/{MODEL}/versions", headers=OPS).json()["served"] == served


def test_slash_traversal_never_reaches_the_repository(admin: TestClient, repo: Path) -> None:
    before = tree(repo.parent)
    for path in ("/v1/models/..%2F..%2Fetc/versions", "/v1/models/a/../../x/versions"):
        resp = admin.post(path, files={"model": ("m.onnx", tiny_model())}, headers=OPS)
        assert 400 <= resp.status_code < 500, (path, resp.status_code)
    assert tree(repo.parent) == before


def test_upload_over_limit_is_413(server: EmbeddedTriton, admin_redis: str, repo: Path) -> None:
    settings = make_settings(server.grpc_url, admin_redis, repo, API_KEYS=API_KEYS, MAX_UPLOAD_BYTES=2048)
    before = tree(repo.parent)
    with TestClient(create_app(settings)) as c:
        resp = upload(c, b"\0" * 4096)
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
            yield b"--b\r\nContent-Disposition: form-data; name=model; filename=m.onnx\r\n\r\n"
            yield from (b"\0" * 1024 for _ in range(8))

        streamed = c.post(
            f"/v1/models/{MODEL}/versions",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b", **OPS},
        )
        assert streamed.status_code == 413, streamed.text
        not_multipart = c.post(f"/v1/models/{MODEL}/versions", content=b"x", headers=OPS)
        assert not_multipart.status_code == 415
    assert tree(repo.parent) == before


@pytest.mark.parametrize(
    ("action", "body", "status", "code"),
    [
        ("load", {"versions": [99]}, 404, "version_not_found"),
        ("unload", {"versions": [99]}, 404, "version_not_found"),
        ("load", {"versions": [0]}, 422, "validation_error"),
    ],
)
def test_load_unload_errors(
    admin: TestClient, repo: Path, action: str, body: dict, status: int, code: str
) -> None:
    before = tree(repo.parent)
    resp = admin.post(f"/v1/models/{MODEL}/{action}", json=body, headers=OPS)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert tree(repo.parent) == before


@pytest.mark.parametrize("action", ["load", "unload"])
def test_unknown_model_is_404_not_triton_internal(admin: TestClient, action: str) -> None:
    resp = admin.post(f"/v1/models/no_such_model/{action}", headers=OPS)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


async def test_triton_refusal_rolls_back_the_deploy(
    server: EmbeddedTriton, admin_redis: str, repo: Path
) -> None:
    """A model that passes our validation but that Triton cannot load leaves no trace."""

    def accept_anything(data: bytes, contract: Contract, params: ProcessingParams) -> ValidationReport:
        return ValidationReport(17, 9, "test", 0, ["N", 1, "L"], ["N", 1, "L"], {"windows": 0})

    cache = MetadataCache(admin_redis)
    async with TritonClient(server.grpc_url) as triton:
        manager = ModelManager(triton, ModelRegistry(triton, cache, MODEL), repo, validator=accept_anything)
        before = tree(repo.parent)
        served = (await manager.versions(MODEL))["served"]
        with pytest.raises(ModelRejected) as err:
            await manager.deploy(MODEL, b"\x08\x07 onnxruntime cannot parse this")
        assert "rolled back" in err.value.message and "InvalidProtobuf" in err.value.message
        assert tree(repo.parent) == before
        after = await manager.versions(MODEL)
        assert after["served"] == served
        assert all(v["in_repository"] for v in after["versions"])  # the failed version is not listed
    await cache.close()


ENDPOINTS = [
    ("GET", f"/v1/models/{MODEL}", "operator"),
    ("GET", f"/v1/models/{MODEL}/versions", "operator"),
    ("POST", "/v1/models/no_such_model/load", "operator"),
    ("POST", "/v1/models/no_such_model/unload", "operator"),
    ("POST", "/v1/models/no_such_model/versions", "operator"),
    ("POST", "/v1/detect", "inference"),
    ("GET", "/v1/models", "inference"),
]
EXPECTED = {
    ("operator", "none"): {401},
    ("operator", "inference"): {403},
    ("operator", "operator"): {200, 404},  # 404: the harmless unknown-model targets
    ("inference", "none"): {401},
    ("inference", "inference"): {200},
    ("inference", "operator"): {200},
}
CALLERS = {"none": {}, "inference": APP, "operator": OPS}


def _call(client: TestClient, method: str, path: str, headers: dict) -> object:
    if path == "/v1/detect":
        return client.post(path, json={"signal": [0.0, 1.0, 0.5] * 100}, headers=headers)
    if path.endswith("/versions") and method == "POST":
        return client.post(path, files={"model": ("m.onnx", tiny_model())}, headers=headers)
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("method", "path", "role"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_auth_matrix(admin: TestClient, method: str, path: str, role: str, caller: str) -> None:
    resp = _call(admin, method, path, CALLERS[caller])
    assert resp.status_code in EXPECTED[(role, caller)], resp.text
    if resp.status_code == 401:
        assert resp.headers["WWW-Authenticate"] == "ApiKey"
        assert resp.json()["error"]["code"] == "unauthorized"
    if resp.status_code == 403:
        assert resp.json()["error"]["code"] == "forbidden"


def test_bearer_header_and_open_endpoints(admin: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {OPS['X-API-Key']}"}
    assert admin.get(f"/v1/models/{MODEL}/versions", headers=bearer).status_code == 200
    wrong = {"Authorization": "Bearer not-a-key-of-this-gateway"}
    assert admin.get(f"/v1/models/{MODEL}/versions", headers=wrong).status_code == 401
    for path in ("/healthz", "/readyz", "/metrics", "/"):
        assert admin.get(path).status_code == 200, path


def test_without_keys_inference_is_open_and_management_closed(
    server: EmbeddedTriton, admin_redis: str, repo: Path
) -> None:
    settings = make_settings(server.grpc_url, admin_redis, repo)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/models").status_code == 200
        assert c.post("/v1/detect", json={"signal": [0.0, 1.0, 0.5] * 100}).status_code == 200
        for headers in ({}, OPS):
            resp = c.get(f"/v1/models/{MODEL}", headers=headers)
            assert resp.status_code == 401, resp.text
            assert c.post(f"/v1/models/{MODEL}/unload", headers=headers).status_code == 401


def test_keys_never_reach_logs(admin: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = "stranger-key-0123456789abcdef"
    admin.get(f"/v1/models/{MODEL}", headers={"X-API-Key": stranger})
    admin.get(f"/v1/models/{MODEL}", headers=APP)
    admin.post(f"/v1/models/{MODEL}/load", json={"versions": [99]}, headers=OPS)
    admin.get("/v1/models", headers={"Authorization": f"Bearer {APP['X-API-Key']}"})
    upload(admin, b"garbage")
    text = caplog.text
    assert "auth_rejected" in text and "'api_key': 'app'" in text  # names are logged ...
    for secret in (OPS["X-API-Key"], APP["X-API-Key"], stranger):
        assert secret not in text  # ... keys never


def run_cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str, key: str = OPS["X-API-Key"]) -> tuple:
    status = cli_main(["models", *argv, "--url", url, "--api-key", key])
    out, err = capsys.readouterr()
    assert key not in out + err
    return status, out, err


def test_cli_against_a_live_gateway(
    admin: TestClient,
    server: EmbeddedTriton,
    admin_redis: str,
    repo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(server.grpc_url, admin_redis, repo, API_KEYS=API_KEYS)
    with live_server(create_app(settings)) as url:
        status, out, _ = run_cli(capsys, url, "list")
        assert status == 0 and "MODEL" in out and MODEL in out and "READY" in out

        (tmp_path / "m.onnx").write_bytes(tiny_model(scale=4.0))
        (tmp_path / "p.json").write_text(json.dumps({"window": 4096, "hop": 3584, "halo": 256}))
        status, out, err = run_cli(
            capsys,
            url,
            "deploy",
            MODEL,
            str(tmp_path / "m.onnx"),
            "--processing",
            str(tmp_path / "p.json"),
            "--no-load",
        )
        assert status == 0, err
        new = re.search(r"deployed pd_unet1d version (\d+) \(window 4096, written, not loaded\)", out)
        assert new, out
        version = new.group(1)
        assert version not in admin.get(f"/v1/models/{MODEL}/versions", headers=OPS).json()["served"]

        status, out, err = run_cli(capsys, url, "load", MODEL, "--versions", f"2,{version}")
        assert status == 0, err
        assert f"serving 2, {version}" in out
        status, out, _ = run_cli(capsys, url, "show", MODEL)
        stored = processing_params_from_config(read_config(repo / MODEL), int(version))
        assert stored is not None and stored["window"] == 4096
        assert status == 0 and "4096" in out and "WINDOW" in out and stored["normalisation"] in out
        status, out, err = run_cli(capsys, url, "unload", MODEL, "--versions", version)
        assert status == 0 and "serving 2 " in out, err

        status, _, err = run_cli(capsys, url, "load", MODEL, "--versions", "42")
        assert status == 1 and "404 version_not_found" in err
        status, _, err = run_cli(capsys, url, "show", MODEL, key=APP["X-API-Key"])
        assert status == 1 and "403 forbidden" in err
        status, _, err = run_cli(capsys, url, "unload", MODEL, "--versions", "one")
        assert status == 2 and "--versions" in err
    status, _, err = run_cli(capsys, url, "list")  # the server is gone
    assert status == 1 and "cannot reach the gateway" in err


def test_gateway_without_the_repository_says_so(
    server: EmbeddedTriton, admin_redis: str, tmp_path: Path
) -> None:
    settings = make_settings(server.grpc_url, admin_redis, tmp_path / "not-mounted", API_KEYS=API_KEYS)
    with TestClient(create_app(settings)) as c:
        for resp in (c.post(f"/v1/models/{MODEL}/load", headers=OPS), upload(c, tiny_model())):
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == "repository_unavailable"
        listing = c.get(f"/v1/models/{MODEL}/versions", headers=OPS).json()  # reads still work from Triton
        assert listing["served"] and not any(v["in_repository"] for v in listing["versions"])
