"""Two real gateway processes on one Triton and one Redis agree on what is served within a second.

Their in-process cache TTL is 60 s, so only the pub/sub invalidation can explain a change seen in
time; a third replica that missed the message converges through its (short) TTL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.cli import main as cli_main
from gateway.embedded import EmbeddedTriton, free_port
from tests.conftest import RedisServer
from tests.integration.conftest import MODEL, copy_repository, make_settings, running_triton
from tests.integration.mgmt_helpers import API_KEYS, APP, OPS, redis_db
from tests.onnx_factory import tiny_model

pytestmark = pytest.mark.integration

HONOUR_WITHIN_S = 1.0  # the bound for another replica to follow an operation
SIGNAL = np.sin(np.linspace(0.0, 40.0, 5000)).astype(np.float32) * 3.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(tmp_path_factory.mktemp("replicas"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[EmbeddedTriton]:
    with running_triton(repo) as triton:
        yield triton


class Replica:
    """`pd-gateway serve` as a child process against an external Triton; logs go to a file."""

    def __init__(self, name: str, triton_url: str, redis_url: str, repo: Path, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "MODEL_REPOSITORY": str(repo),
            "API_KEYS": API_KEYS,
            "LOCAL_CACHE_TTL_S": "60",
            "LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--triton-url",
            triton_url,
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"replica exited:\n{self.log_path.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"replica not up:\n{self.log_path.read_text()[-3000:]}"
            time.sleep(0.1)

    def detect(self, version: str | None = None) -> httpx.Response:
        params = {"version": version} if version else {}
        headers = {"content-type": "application/octet-stream", **APP}
        return httpx.post(f"{self.url}/v1/detect", params=params, content=SIGNAL.tobytes(), headers=headers)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # uvicorn drains and runs the lifespan exit
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def replicas(
    server: EmbeddedTriton, redis_url: str, repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    logs = tmp_path_factory.mktemp("replica-logs")
    shared = redis_db(redis_url, 2)
    pair = (
        Replica("a", server.grpc_url, shared, repo, logs),
        Replica("b", server.grpc_url, shared, repo, logs),
    )
    try:
        for r in pair:
            r.wait_ready()
        yield pair
    finally:
        for r in pair:
            r.stop()


def poll_until(check, within_s: float, what: str) -> float:
    """Seconds until `check()` is true; fails if that takes longer than `within_s`."""
    start = time.monotonic()
    while not check():
        elapsed = time.monotonic() - start
        assert elapsed < within_s, f"{what}: not within {within_s} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_operations_through_a_are_honoured_by_b_within_a_second(
    replicas: tuple[Replica, Replica], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = replicas
    files = {"model": ("v2.onnx", tiny_model(), "application/octet-stream")}
    deployed = httpx.post(
        f"{a.url}/v1/models/{MODEL}/versions",
        files=files,
        data={"processing": '{"window": 2048}'},
        headers=OPS,
        timeout=120,  # validation + Triton load; httpx's 5 s default is too short on a loaded 2-core machine
    )
    assert deployed.status_code == 201, deployed.text
    assert [b.detect(v).json()["version"] for v in ("1", "2", None)] == ["1", "2", "2"]  # B's cache is warm

    # Unload v1 through A with the operator CLI, over HTTP.
    assert (
        cli_main(
            ["models", "unload", MODEL, "--versions", "1", "--url", a.url, "--api-key", OPS["X-API-Key"]]
        )
        == 0
    )
    assert "serving 2 " in capsys.readouterr().out

    def b_refuses_v1() -> bool:
        resp = b.detect("1")
        # The registry's own 404 ("not being served"): B's metadata changed, not just Triton refusing.
        return resp.status_code == 404 and "not being served" in resp.json()["error"]["message"]

    poll_until(b_refuses_v1, HONOUR_WITHIN_S, "B still serves v1 after the unload through A")
    assert b.detect().json()["version"] == "2"

    # The other direction is visible only through B's metadata: a stale B would keep answering 404.
    resp = httpx.post(f"{a.url}/v1/models/{MODEL}/load", json={"versions": [1, 2]}, headers=OPS, timeout=120)
    assert resp.status_code == 200, resp.text
    poll_until(
        lambda: b.detect("1").status_code == 200, HONOUR_WITHIN_S, "B does not serve v1 after the load"
    )


def test_replica_that_missed_the_message_converges_through_its_ttl(
    replicas: tuple[Replica, Replica], server: EmbeddedTriton, repo: Path
) -> None:
    a, _ = replicas
    ttl_s = 4.0
    body = {"content": SIGNAL.tobytes(), "headers": {"content-type": "application/octet-stream", **APP}}
    resp = httpx.post(f"{a.url}/v1/models/{MODEL}/unload", json={"versions": [2]}, headers=OPS, timeout=60)
    assert resp.status_code == 200, resp.text
    lonely = RedisServer()  # C's own Redis: C never hears A's invalidations, and then it goes away
    lonely.start()
    try:
        settings = make_settings(
            server.grpc_url, lonely.url, repo, API_KEYS=API_KEYS, LOCAL_CACHE_TTL_S=ttl_s
        )
        with TestClient(create_app(settings)) as c:
            lonely.stop()
            assert c.post("/v1/detect?version=2", **body).status_code == 404  # C caches: only v1 served
            warmed = time.monotonic()
            resp = httpx.post(
                f"{a.url}/v1/models/{MODEL}/load", json={"versions": [1, 2]}, headers=OPS, timeout=120
            )
            assert resp.status_code == 200, resp.text
            if time.monotonic() - warmed < ttl_s - 0.5:  # still inside C's TTL: C has not noticed
                assert c.post("/v1/detect?version=2", **body).status_code == 404
            poll_until(
                lambda: c.post("/v1/detect?version=2", **body).status_code == 200,
                ttl_s + 10.0,
                "C never converged to the versions A loaded",
            )
            assert c.post("/v1/detect", **body).json()["version"] == "2"
    finally:
        lonely.close()


def test_replica_logs_hold_key_names_never_keys(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    text = a.log_path.read_text() + b.log_path.read_text()
    assert '"event": "model_unloaded"' in text and '"api_key": "ops"' in text
    assert OPS["X-API-Key"] not in text and APP["X-API-Key"] not in text
