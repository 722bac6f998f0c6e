"""Process plumbing for the embedded Triton: backend directory, environment, spawning, cleanup.

Facts behind each step are in docs/embedded-triton.md; the server's lifecycle is in server.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_BACKEND_SRC = Path(__file__).parent / "backend" / "onnxruntime" / "model.py"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pytriton_server_dir() -> Path:
    """The `tritonserver/` folder of the installed nvidia-pytriton wheel (binary, backends, stubs)."""
    # find_spec, not import: pytriton's __init__ pulls in its own client stack (gevent, ...), which
    # starting the binary does not need.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "tritonserver"


def _install(src: Path, dst: Path) -> None:
    """Copy via rename: a stub still exiting from a killed server keeps the old inode ("text file busy")."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def build_backend_dir(target: Path, server_dir: Path) -> Path:
    """`python/` = libtriton_python.so + utils + the stub for this Python; `onnxruntime/model.py`.

    Triton looks for a Python-based backend's stub in `<dir>/<name>/`, then `<dir>/python/`.
    """
    python_dir, ort_dir = target / "python", target / "onnxruntime"
    python_dir.mkdir(parents=True, exist_ok=True)
    ort_dir.mkdir(parents=True, exist_ok=True)
    for src in (server_dir / "backends" / "python").iterdir():
        if src.is_file():
            _install(src, python_dir / src.name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FileNotFoundError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    _install(stub, python_dir / stub.name)
    _install(_BACKEND_SRC, ort_dir / "model.py")  # refreshed on every start: edits take effect
    return target


def triton_env(server_dir: Path) -> dict[str, str]:
    """Environment for tritonserver and the stubs it spawns."""
    env = os.environ.copy()
    # The stub is copied out of the wheel, so its $ORIGIN rpath to the bundled libs no longer works.
    libs = [str(server_dir.parent.parent / "nvidia_pytriton.libs")]
    # The stub links libpython3.X.so.1.0; prefer this interpreter's over the system's.
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        libs.append(libdir)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [env.get("LD_LIBRARY_PATH", ""), *libs]))
    env["PATH"] = os.pathsep.join([str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")])
    # The stub's embedded Python must import numpy/onnxruntime from the launcher's venv.
    # An explicit PYTHONPATH (e.g. an overlay with onnxruntime-gpu) keeps its precedence.
    site = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), *site]))
    return env


def _set_parent_death_signal() -> None:
    """Runs in the child before exec: SIGTERM to Triton when the forking thread dies."""
    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def spawn_tied_to_process(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen in its own process group that dies with this process.

    PR_SET_PDEATHSIG fires when the forking *thread* ends, so a fork from a short-lived worker
    (asyncio.to_thread, a Starlette threadpool) would take Triton down with that worker: fork from
    the main thread or from one spawner thread that lives as long as the process.
    """
    global _spawner

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, start_new_session=True, preexec_fn=_set_parent_death_signal, **kwargs)

    if threading.current_thread() is threading.main_thread():
        return spawn()
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-spawner")
    return _spawner.submit(spawn).result()


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (Triton and its stubs); a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def remove_shm(prefix: str) -> None:
    """Remove shared-memory regions a killed server or stub left behind under `prefix`."""
    shm = Path("/dev/shm")
    if prefix and shm.is_dir():
        for region in shm.glob(f"{prefix}*"):
            region.unlink(missing_ok=True)
