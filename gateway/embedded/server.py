"""Launch the Triton 2.51 binary shipped inside the nvidia-pytriton wheel as a child process.

No Docker, no GPU: the project's Python-based "onnxruntime" backend (backend/onnxruntime/model.py)
serves every model whose config says `backend: "onnxruntime"`. See docs/embedded-triton.md.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from gateway.embedded.process import (
    build_backend_dir,
    free_port,
    kill_group,
    pytriton_server_dir,
    remove_shm,
    spawn_tied_to_process,
    triton_env,
)

# Health polls go straight to the local server, never through an http(s)_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmbeddedTritonError(RuntimeError):
    """Triton failed to start, became unready, or exited; the message ends with its log tail."""


class EmbeddedTriton:
    """A real `tritonserver` on local ports, serving `model_repository` in explicit control mode.

    Ports are fixed at construction, so `stop()` then `start()` (or `restart()`) comes back on the
    same addresses. Triton dies with this process (parent-death signal) even without `stop()`.
    """

    def __init__(
        self,
        model_repository: Path | str,
        models: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_verbose: int = 0,
        startup_timeout_s: float = 60.0,
        stop_grace_s: float = 15.0,
        work_dir: Path | str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.models = list(models)
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.log_verbose = log_verbose
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.extra_args = list(extra_args)
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="pd-triton-"))
        self.log_path = self.work_dir / "tritonserver.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._shm_prefix = ""
        self._served = False  # once ready, ports stay fixed so restarts keep their addresses
        given = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self._auto_ports = [name for name, port in given.items() if port is None]

    # -- addresses ---------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        """`host:port`, the form tritonclient.grpc(.aio) expects."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wait: bool = True) -> EmbeddedTriton:
        """Start Triton; with `wait`, block until it is live and every model is ready."""
        if self.is_running():
            raise EmbeddedTritonError(f"tritonserver already running (pid {self.pid})")
        attempts = 3
        while True:
            attempts -= 1
            self._launch()
            if not wait:
                return self
            try:
                self.wait_ready(self.startup_timeout_s)
            except BaseException as exc:
                self.stop()
                # free_port() can hand out a port another process binds before Triton does.
                if attempts and "already in use" in str(exc) and self._repick_ports():
                    continue
                raise
            self._served = True
            return self

    def _launch(self) -> None:
        server_dir = pytriton_server_dir()
        backends = build_backend_dir(self.work_dir / "backends", server_dir)
        # A fresh prefix per start: regions of a killed predecessor may still sit in /dev/shm.
        self._shm_prefix = f"pdgw{os.getpid()}-{secrets.token_hex(4)}-"
        cmd = [str(server_dir / "bin" / "tritonserver"), *self._args(backends)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n".encode())
            log.flush()
            # Own process group, so stop() reaches the stubs too; dies with this process.
            self._proc = spawn_tied_to_process(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=triton_env(server_dir),
                cwd=self.work_dir,
            )

    def _repick_ports(self) -> bool:
        """New free ports for those we chose ourselves, only while no client can have used them."""
        if self._served or not self._auto_ports:
            return False
        for name in self._auto_ports:
            setattr(self, f"{name}_port", free_port(self.host))
        return True

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Poll server liveness, then readiness of every configured model; raise on exit or timeout."""
        deadline = time.monotonic() + (self.startup_timeout_s if timeout_s is None else timeout_s)
        paths = ["/v2/health/live", *(f"/v2/models/{m}/ready" for m in self.models)]
        while paths:
            if not self.is_running():
                code = self._proc.returncode if self._proc is not None else None
                raise EmbeddedTritonError(f"tritonserver exited (code {code})\n{self.log_tail()}")
            if self._http_ok(paths[0]):
                paths.pop(0)
                continue
            if time.monotonic() > deadline:
                raise EmbeddedTritonError(f"tritonserver not ready: {paths[0]} failed\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGINT, wait `stop_grace_s`, then SIGKILL the process group. Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid)
                proc.wait(timeout=10)
        # The group may still hold stubs if Triton died abruptly; they must not outlive it.
        kill_group(proc.pid)
        remove_shm(self._shm_prefix)

    def restart(self, wait: bool = True) -> EmbeddedTriton:
        """Stop and start again on the same ports."""
        self.stop()
        return self.start(wait=wait)

    def close(self) -> None:
        """Stop and delete the temporary work dir (backend copies and log) if we created it."""
        self.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedTriton:
        return self.start() if not self.is_running() else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def log_tail(self, max_chars: int = 6000) -> str:
        """The end of Triton's combined stdout/stderr, its padded tables squeezed to fit more lines."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8 * max_chars))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        text = re.sub(r"-{4,}", "---", re.sub(r" {2,}", " ", text))
        return text[-max_chars:]

    # -- internals ---------------------------------------------------------------------------
    def _args(self, backends: Path) -> list[str]:
        return [
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in self.models),
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            # Triton's own drain timeout ends before our SIGKILL does.
            f"--exit-timeout-secs={max(1, int(self.stop_grace_s) - 3)}",
            # Two servers on one machine collide on the Python backend's shm region names otherwise.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def _http_ok(self, path: str) -> bool:
        try:
            with _OPENER.open(f"http://{self.host}:{self.http_port}{path}", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False
