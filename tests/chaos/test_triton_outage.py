"""Issue 9, failures 5, 6 and 9 (logs): the embedded Triton of a real `pd-gateway serve` is SIGKILLed under
load. The supervisor must reap it, clean up its stubs and shared memory and bring it back by itself;
meanwhile clients get only 503/504 within their deadline, the error log stays a few lines, and the first
200 comes within 2 s of Triton being ready again. Then a Triton that cannot start makes /healthz fail.

Runs after test_bad_clients.py (file order) on the same session server.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton, free_port
from gateway.embedded.supervisor import TritonSupervisor
from gateway.settings import Settings
from tests.chaos.conftest import Served, wait_until_ready

pytestmark = pytest.mark.chaos

SIGNAL = {"signal": np.sin(np.linspace(0, 40, 3000)).round(5).tolist()}
DEADLINE_S = 10.0  # TRITON_TIMEOUT_S of the fixture
RECOVERY_BOUND_S = 2.0  # the requirement: first 200 at most this long after Triton is ready


def _ts(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _gone(pid: int) -> bool:
    """Not running. A stub re-parented to PID 1 may stay a zombie if PID 1 does not reap (a container's
    shell): it holds no memory; the killed tritonserver itself must be reaped by the supervisor."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _restarts(served: Served) -> list[dict]:
    return [e for e in served.events() if e.get("event") == "embedded_triton_restarted"]


def _triton_pid(served: Served) -> int:
    events = [
        e for e in served.events() if e.get("event") in ("embedded_triton_ready", "embedded_triton_restarted")
    ]
    return int(events[-1]["pid"])


def test_killed_triton_comes_back_by_itself_and_clients_recover(served: Served) -> None:
    wait_until_ready(served)
    old_pid = _triton_pid(served)
    triton = psutil.Process(old_pid)
    assert triton.ppid() == served.proc.pid
    stubs = [p.pid for p in triton.children(recursive=True)]
    assert stubs, "no backend stub found under tritonserver"
    shm_prefix = f"pdgw{served.proc.pid}-"
    old_shm = {p.name for p in Path("/dev/shm").glob(f"{shm_prefix}*")}
    assert old_shm, "the embedded Triton's shared-memory regions were not found"

    results: list[tuple[float, float, int]] = []  # (sent, done, status), wall clock
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served.base, headers=served.headers, timeout=DEADLINE_S + 20) as c:
            while not stop.is_set():
                sent = time.time()
                try:
                    status = c.post("/v1/detect", json=SIGNAL).status_code
                except httpx.HTTPError:
                    status = -1
                results.append((sent, time.time(), status))
                time.sleep(0.05)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(2.0)
        before = len(_restarts(served))
        killed_at = time.time()
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 180
        while len(restarted := _restarts(served)) == before:
            assert time.monotonic() < deadline, "the embedded Triton did not come back"
            assert httpx.get(f"{served.base}/healthz", timeout=5).status_code == 200
            time.sleep(0.2)
        ready_at = _ts(restarted[-1])
        time.sleep(RECOVERY_BOUND_S + 3.0)
    finally:
        stop.set()
        for w in workers:
            w.join(60)

    statuses = {s for _, _, s in results}
    assert statuses <= {200, 503, 504}, f"unexpected statuses {statuses - {200, 503, 504}}"
    # Strictly inside the outage (the kill takes a moment; the supervisor logs "ready" after its poll).
    during = [s for sent, done, s in results if killed_at + 0.5 < sent and done < ready_at - 0.5]
    assert during and set(during) <= {503, 504}, f"during the outage: {set(during)}"
    slowest = max(done - sent for sent, done, _ in results)
    assert slowest <= DEADLINE_S + 5.0, f"a request took {slowest:.1f} s (deadline {DEADLINE_S} s)"
    first_ok = min(done for _, done, s in results if s == 200 and done > ready_at)
    recovery = first_ok - ready_at
    assert recovery <= RECOVERY_BOUND_S, f"first 200 came {recovery:.2f} s after Triton was ready"

    # Reaped (no zombie), stubs of the killed server gone, its shared memory removed.
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).ppid() != served.proc.pid
    assert all(_gone(pid) for pid in stubs), "a backend stub of the killed Triton survived"
    assert not old_shm & {p.name for p in Path("/dev/shm").glob(f"{shm_prefix}*")}
    health = httpx.get(f"{served.base}/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["restarts"] >= 1 and health["embedded_triton"] == "running"

    # Rate-limited: a handful of error lines for the whole outage, not one per failed request.
    outage = [e for e in served.events() if killed_at - 1 <= _ts(e) <= ready_at]
    error_lines = [e for e in outage if e.get("event") in ("triton_error", "gateway_error")]
    failed = len(during)
    assert len(error_lines) <= 4 * ((ready_at - killed_at) / 5 + 2), f"{len(error_lines)} error lines"
    print(
        f"outage {ready_at - killed_at:.1f} s: {len(results)} requests, {failed} answered 503/504 during "
        f"it, {len(error_lines)} error log lines; first 200 {recovery:.2f} s after Triton was ready; "
        f"slowest response {slowest:.2f} s"
    )


def test_serve_log_never_holds_a_secret(served: Served) -> None:
    text = served.log_path.read_text(errors="replace")
    assert '"logger": "gateway.access"' in text  # authenticated requests went through this server
    for secret in served.secrets():
        assert secret not in text, "a secret reached the serve log"


def test_healthz_fails_when_triton_cannot_be_brought_back(tmp_path: Path) -> None:
    # A repository without the model it must load: tritonserver exits at every start.
    (tmp_path / "repo").mkdir()
    triton = EmbeddedTriton(tmp_path / "repo", ["missing_model"], startup_timeout_s=60)
    triton.start(wait=False)
    supervisor = TritonSupervisor(triton, max_restarts=1, backoff_s=(0.1,), poll_s=0.1).start()
    settings = Settings(TRITON_GRPC_URL=f"127.0.0.1:{free_port()}")
    app = create_app(settings)
    app.state.liveness = supervisor
    try:
        deadline = time.monotonic() + 120
        while supervisor.healthy():
            assert time.monotonic() < deadline, "the supervisor never gave up"
            time.sleep(0.2)
        assert supervisor.restarts == 1
        resp = TestClient(app).get("/healthz")  # no lifespan needed: liveness never touches Triton
        assert resp.status_code == 503
        assert resp.json()["embedded_triton"] == "failed"
    finally:
        supervisor.stop()
        triton.close()
