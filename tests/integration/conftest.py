"""Integration fixtures: a real embedded Triton on a copy of the model repository, a real Redis, the app."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from gateway.settings import Settings
from tests.conftest import _free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL = "pd_unet1d"


def source_repository() -> Path:
    """The project's shipped model repository (PDGW_TEST_REPOSITORY overrides it for development)."""
    return Path(os.environ.get("PDGW_TEST_REPOSITORY", ROOT / "model_repository"))


def copy_repository(dst_parent: Path) -> Path:
    """A private copy of the shipped repository: tests may deploy and unload without touching the checkout."""
    src = source_repository()
    if not (src / MODEL / "config.pbtxt").is_file():
        pytest.fail(f"no {MODEL} model in {src}: export one first (see README)")
    dst = dst_parent / "model_repository"
    shutil.copytree(src, dst)
    return dst


@contextlib.contextmanager
def running_triton(repo: Path) -> Iterator[EmbeddedTriton]:
    """A real embedded Triton serving `repo` on free ports, stopped on exit."""
    server = EmbeddedTriton(repo, [MODEL], startup_timeout_s=180)
    server.start(wait=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="session")
def triton(model_repo: Path) -> Iterator[EmbeddedTriton]:
    with running_triton(model_repo) as server:
        yield server


def make_settings(triton_url: str, redis_url: str | None, model_repo: Path, **kw: object) -> Settings:
    return Settings(
        TRITON_GRPC_URL=triton_url,
        REDIS_URL=redis_url,
        MODEL_REPOSITORY=model_repo,
        LOG_JSON=True,
        LOG_LEVEL="warning",
        **kw,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """`app` served over real HTTP by uvicorn on a free loopback port (a thread of this process)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def client(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> Iterator[TestClient]:
    """The gateway app through its lifespan, talking to the session's Triton and Redis."""
    settings = make_settings(triton.grpc_url, redis_url, model_repo, MAX_SIGNAL_SAMPLES=1_000_000)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def reference_infer(model_repo: Path):
    """In-process ONNX Runtime on the same model.onnx: the offline reference the gateway must equal."""
    sessions: dict[str, ort.InferenceSession] = {}

    def infer(windows: np.ndarray, version: str = "1") -> np.ndarray:
        if version not in sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sessions[version] = ort.InferenceSession(
                str(model_repo / MODEL / version / "model.onnx"), opts, providers=["CPUExecutionProvider"]
            )
        return sessions[version].run(None, {"signal": windows.astype(np.float32)})[0]

    return infer
