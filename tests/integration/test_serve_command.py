"""`pd-gateway serve`: one command starts Triton + gateway; SIGTERM drains requests and stops both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.embedded import free_port

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_starts_triton_and_gateway_and_drains_on_sigterm(model_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MODEL_REPOSITORY": str(model_repo),
        "PORT": str(port),
        "LOG_JSON": "true",
        "REDIS_URL": "",
        "TRITON_GRPC_URL": "",
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], env=env, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        triton_pid = next(e["pid"] for e in events if e.get("event") == "embedded_triton_ready")
        assert _pid_alive(triton_pid)

        # A long request is in flight when SIGTERM arrives: it must still complete.
        body = np.random.default_rng(0).normal(size=400_000).astype("<f4").tobytes()
        result: dict[str, object] = {}

        def post() -> None:
            r = httpx.post(
                f"{base}/v1/detect",
                content=body,
                headers={"content-type": "application/octet-stream"},
                timeout=120,
            )
            result["status"] = r.status_code

        worker = threading.Thread(target=post)
        worker.start()
        # SIGTERM once the gateway is handling it (a fixed sleep lost the race on a loaded machine: the
        # client had not connected yet when the listening socket closed).
        deadline = time.monotonic() + 60
        while "pdgw_http_requests_in_flight 1.0" not in httpx.get(f"{base}/metrics", timeout=10).text:
            assert time.monotonic() < deadline and worker.is_alive(), result
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        worker.join(120)
        assert result.get("status") == 200, log_path.read_text()[-3000:]
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10
        while _pid_alive(triton_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pid_alive(triton_pid), "Triton outlived the serve command"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
