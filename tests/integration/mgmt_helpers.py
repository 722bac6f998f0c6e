"""Helpers shared by the model-management integration tests (plain functions, not fixtures)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn

from export.sim.simulator import dataset_item
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import run_pipeline
from gateway.embedded import free_port
from gateway.repository import processing_params_from_config, read_config
from tests.integration.conftest import MODEL

OPS_KEY = "ops-key-0123456789abcdefghij"
APP_KEY = "app-key-0123456789abcdefghij"
API_KEYS = f"ops:operator:{OPS_KEY},app:inference:{APP_KEY}"
OPS = {"X-API-Key": OPS_KEY}
APP = {"X-API-Key": APP_KEY}


def redis_db(url: str, db: int) -> str:
    """The same Redis server, another database: cached keys stay apart from other test modules'.

    (Pub/sub is server-wide, so other modules' gateways only hear harmless invalidations.)
    """
    base = re.sub(r"/\d+$", "", url.rstrip("/"))
    return f"{base}/{db}"


def tree(repo: Path) -> dict[str, str]:
    """Every path under `repo` with a content hash: equal trees mean an unchanged repository."""
    out = {}
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def version_params(repo: Path, version: int) -> ProcessingParams:
    raw = processing_params_from_config(read_config(repo / MODEL), version)
    assert raw is not None, f"no processing params for version {version}"
    return ProcessingParams.from_dict(raw)


def simulated(n: int, index: int) -> np.ndarray:
    return np.asarray(dataset_item(11, index, n_samples=n).signal[:n], dtype=np.float32)


def reference_regions(repo: Path, version: int, x: np.ndarray) -> list[tuple[int, int]]:
    """Regions from the offline pipeline on the version's own ONNX file and processing params."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(repo / MODEL / str(version) / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )

    def infer(windows: np.ndarray) -> np.ndarray:
        return session.run(None, {"signal": windows.astype(np.float32)})[0]

    (result,) = run_pipeline([x], version_params(repo, version), infer)
    return [(r.start, r.end) for r in result.regions]


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a thread of this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
