"""Chaos fixtures: one real `pd-gateway serve` (embedded Triton) with API keys and a password-protected
Redis, its log file, and peak-RSS probes of the gateway process (VmHWM, reset through clear_refs)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.embedded import free_port
from tests.conftest import RedisServer
from tests.integration.conftest import copy_repository

STARTUP_S = 180.0


@dataclass
class Served:
    """A running `pd-gateway serve` subprocess and what the tests need to know about it."""

    proc: subprocess.Popen[bytes]
    base: str
    port: int
    log_path: Path
    inference_key: str
    operator_key: str
    redis_password: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.inference_key}

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def secrets(self) -> list[str]:
        return [self.inference_key, self.operator_key, self.redis_password]

    # Peak resident memory of the gateway process (kB), reset before a measurement.
    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak_rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/<pid>/status")


def wait_until_ready(served: Served, timeout_s: float = STARTUP_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert served.proc.poll() is None, served.log_path.read_text()[-3000:]
        try:
            if httpx.get(f"{served.base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not become ready"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`pd-gateway serve` on a private copy of the model repository; short deadlines so tests stay short."""
    tmp = tmp_path_factory.mktemp("chaos")
    repo = copy_repository(tmp)
    redis = RedisServer(password="redis-" + secrets.token_hex(12))
    redis.start()
    port = free_port()
    inference_key, operator_key = "inf-" + secrets.token_hex(16), "ops-" + secrets.token_hex(16)
    env = {
        **os.environ,
        "MODEL_REPOSITORY": str(repo),
        "PORT": str(port),
        "LOG_JSON": "true",
        "LOG_LEVEL": "info",
        "TRITON_GRPC_URL": "",
        "REDIS_URL": redis.url,
        "API_KEYS": f"ops:operator:{operator_key},app:inference:{inference_key}",
        "HEADER_READ_TIMEOUT_S": "2",
        "BODY_READ_TIMEOUT_S": "3",
        "KEEP_ALIVE_TIMEOUT_S": "2",
        "ERROR_LOG_INTERVAL_S": "5",
        "TRITON_TIMEOUT_S": "10",
        "TRITON_CONTROL_TIMEOUT_S": "2",
    }
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], env=env, stdout=log, stderr=log
        )
    s = Served(
        proc, f"http://127.0.0.1:{port}", port, log_path, inference_key, operator_key, redis.password, env
    )
    try:
        wait_until_ready(s)
        yield s
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        redis.close()
