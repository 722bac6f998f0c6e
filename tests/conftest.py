"""Shared fixtures: a real, throwaway redis-server (never a mock), and seed 000's test file when present."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def seed_data_path() -> Path:
    """Seed 000's test file: `SEED_TEST_DATA` if set, else `../shared/data/seed_test_dataa.npy`."""
    env = os.environ.get("SEED_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "seed_test_dataa.npy"


@pytest.fixture(scope="session")
def seed_data() -> np.ndarray:
    """Seed 000's 7 x 7920 test signals; tests that need them skip, saying why, in a clone without them."""
    path = seed_data_path()
    if not path.is_file():
        pytest.skip(f"seed 000's test file is not at {path} (clone without ../shared; set SEED_TEST_DATA)")
    return np.load(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int, password: str | None = None) -> bool:
    auth = f"AUTH {password}\r\n".encode() if password else b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(auth + b"PING\r\n")
            time.sleep(0.05 if password else 0)  # both replies
            return b"+PONG" in sock.recv(64)
    except OSError:
        return False


class RedisServer:
    """A redis-server child process on a fixed free port; `stop()`/`start()` keep the same URL.

    With `password`, the server requires it (`--requirepass`) and `url` carries it."""

    def __init__(self, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH: install it (apt-get install redis-server)")
        self._binary = binary
        self.port = _free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="pdgw-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while not _answers_ping(self.port, self.password):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the whole session (tests must not stop it: use `private_redis` for that)."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """REDIS_URL from the environment if set, else the session's own throwaway server."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may stop and start again (.url, .stop(), .start())."""
    server = RedisServer()
    server.start()
    yield server
    server.close()
