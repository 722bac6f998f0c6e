"""`pd-gateway serve` keeps its embedded Triton alive: reap, clean up, restart with back-off, or give up.

When tritonserver exits (killed, OOM, crash) the supervisor thread reaps it, kills what is left of its
process group (the Python backend stubs) and removes its shared-memory regions (`EmbeddedTriton.stop`),
then starts it again on the same ports after a back-off (1, 2, 4, 8, 16 s). More than `max_restarts`
restarts within `window_s` means it cannot be brought back: `healthy()` turns False, `/healthz` answers
503, and an orchestrator's liveness probe restarts the whole pod. The gateway's gRPC client reconnects by
itself (triton_client.CHANNEL_ARGS); requests meanwhile get 503 with Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog

from gateway.embedded.server import EmbeddedTriton, EmbeddedTritonError

log = structlog.get_logger(__name__)

BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


class TritonSupervisor:
    """A daemon thread watching one EmbeddedTriton; `stop()` it before closing the server."""

    def __init__(
        self,
        triton: EmbeddedTriton,
        *,
        max_restarts: int = 5,
        window_s: float = 600.0,
        backoff_s: Sequence[float] = BACKOFF_S,
        poll_s: float = 0.5,
    ) -> None:
        self.triton = triton
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.backoff_s = tuple(backoff_s)
        self.poll_s = poll_s
        self.restarts = 0
        self.state = "running"  # running | restarting | failed
        self._recent: deque[float] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-supervisor", daemon=True)

    def start(self) -> TritonSupervisor:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """No more restarts; waits briefly for a restart in progress (close() kills it anyway)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def healthy(self) -> bool:
        """False once the embedded Triton could not be brought back (liveness should fail)."""
        return self.state != "failed"

    def status(self) -> dict[str, Any]:
        return {"embedded_triton": self.state, "restarts": self.restarts, "pid": self.triton.pid}

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.triton.is_running():
                continue
            proc = self.triton._proc
            code = proc.returncode if proc is not None else None
            self.state = "restarting"
            log.error("embedded_triton_exited", code=code, restarts=self.restarts)
            self.triton.stop()  # reaped already; kills the stubs of its group and removes its shm
            now = time.monotonic()
            while self._recent and now - self._recent[0] > self.window_s:
                self._recent.popleft()
            if len(self._recent) >= self.max_restarts:
                self.state = "failed"
                log.error(
                    "embedded_triton_given_up",
                    restarts=len(self._recent),
                    window_s=self.window_s,
                    log_tail=self.triton.log_tail(2000),
                )
                return
            delay = self.backoff_s[min(len(self._recent), len(self.backoff_s) - 1)]
            self._recent.append(now)
            if self._stop.wait(delay):
                return
            self.restarts += 1
            try:
                self.triton.start(wait=True)
            except (EmbeddedTritonError, OSError) as e:
                # The next poll sees it not running and counts another attempt.
                log.error("embedded_triton_restart_failed", error=str(e).splitlines()[0])
                continue
            self.state = "running"
            log.info("embedded_triton_restarted", pid=self.triton.pid, restarts=self.restarts)


def supervise(triton: EmbeddedTriton, app: Any, max_restarts: int) -> TritonSupervisor:
    """Start a supervisor for `triton` and make the app's /healthz follow it (`app.state.liveness`)."""
    supervisor = TritonSupervisor(triton, max_restarts=max_restarts).start()
    app.state.liveness = supervisor
    return supervisor
