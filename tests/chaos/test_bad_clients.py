"""Issue 9, failures 2, 3, 4, 7 and 8 against a real `pd-gateway serve`: hostile .npy headers and big JSON
within a stated memory bound, malformed bodies as 400, client disconnects as 499, slow clients cut off.

Memory is the gateway process's peak RSS (VmHWM, reset through /proc/<pid>/clear_refs before each
request), so the bound covers everything the request made the process allocate.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.chaos.conftest import Served

pytestmark = pytest.mark.chaos

MiB = 1024 * 1024
# Peak RSS growth allowed per request: 3x its body plus this much for the allocator and a request's
# bookkeeping (the "3x body + working set"; these requests never reach the model).
SLACK_BYTES = 48 * MiB
JSON_LIMIT = 8 * MiB  # MAX_JSON_BODY_BYTES default
# Parsed JSON numbers are Python floats (32 bytes each incl. the list slot) for as little as 4 bytes of
# text ("0.1,"), and orjson's own parse peaks at ~15x such a body: the stated bound for a JSON request is
# 20x the JSON body limit (160 MiB at the default 8 MiB, 5x MAX_TOTAL_SAMPLES x 4 bytes), never more.
JSON_PEAK_BOUND = 20 * JSON_LIMIT


def npy_bytes(shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"") -> bytes:
    """A .npy header declaring `shape`, followed by `data` (any length: hostile files lie)."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    )
    return f.getvalue() + data


def post(served: Served, body: bytes, content_type: str, **kw: object) -> httpx.Response:
    headers = {**served.headers, "content-type": content_type}
    return httpx.post(f"{served.base}/v1/detect", content=body, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


def peak_growth(served: Served, send) -> tuple[httpx.Response, int]:  # type: ignore[no-untyped-def]
    served.reset_peak_rss()
    base = served.rss_bytes()
    resp = send()
    return resp, served.peak_rss_bytes() - base


@pytest.mark.parametrize(
    ("shape", "dtype", "data_len", "status"),
    [
        ((10**7, 0), "<f4", 0, 400),  # 128 bytes that cost 1.3 GB before
        ((10**9, 0), "<f4", 0, 400),
        ((0, 7920), "<f8", 0, 400),  # empty batches answered 200 with no results before
        ((0, 0), "<f8", 0, 400),
        ((10**9, 7920), "<f4", 0, 413),  # declares 31 TB
        ((4_000_000, 1), "|i1", 4_000_000, 413),  # 4 MB that cost 866 MB before
        ((7, 7920), "<f8", 1000, 400),  # truncated
        ((2**62, 2**62), "<f4", 0, 413),  # sizes that overflow int64
    ],
)
def test_hostile_npy_bounded_before_allocation(
    served: Served, shape: tuple[int, ...], dtype: str, data_len: int, status: int
) -> None:
    body = npy_bytes(shape, dtype, b"\0" * data_len)
    resp, growth = peak_growth(served, lambda: post(served, body, "application/x-npy"))
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] in ("invalid_input", "payload_too_large")
    assert growth <= 3 * len(body) + SLACK_BYTES, f"{shape}: peak RSS grew {growth / MiB:.0f} MiB"
    print(f"npy {shape} {dtype} body {len(body)} B -> {resp.status_code}, peak +{growth / MiB:.1f} MiB")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "deep nesting (RecursionError -> 500 before)"),
        (b'{"signal": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}", "deep nesting inside the signal"),
        (b'{"signal": [1, 2, 3], "threshold": ' + b"9" * 400 + b"}", "400-digit number"),
        (b'{"signal": [1e400]}', "beyond float64"),
        (b'{"signals": []}', "no signals"),
        (b'{"signals": [[]]}', "an empty signal"),
    ],
)
def test_malformed_json_is_400(served: Served, body: bytes, why: str) -> None:
    resp = post(served, body, "application/json")
    assert resp.status_code == 400, f"{why}: {resp.status_code} {resp.text[:300]}"
    assert resp.json()["error"]["code"] == "invalid_input"


def test_big_json_memory_bounded(served: Served) -> None:
    # Over the JSON limit: refused from Content-Length, nothing read (60 MiB cost 840 MB before).
    big = b'{"signal": [' + b"0.1," * (15 * MiB) + b"0.1]}"
    resp, growth = peak_growth(served, lambda: post(served, big, "application/json"))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"
    assert growth <= SLACK_BYTES, f"peak RSS grew {growth / MiB:.0f} MiB"
    print(f"json {len(big) / MiB:.0f} MiB -> 413, peak +{growth / MiB:.1f} MiB")
    # Just under the limit, the most numbers per byte, parsed then refused (65 signals > 64).
    row = b"[" + b"0.1," * (JSON_LIMIT // 4 // 65 - 2) + b"0.1]"
    worst = b'{"signals": [' + b",".join([row] * 65) + b"]}"
    assert len(worst) <= JSON_LIMIT
    resp, growth = peak_growth(served, lambda: post(served, worst, "application/json"))
    assert resp.status_code == 413, resp.text
    assert growth <= JSON_PEAK_BOUND, f"peak RSS grew {growth / MiB:.0f} MiB"
    print(f"json {len(worst) / MiB:.1f} MiB of numbers -> 413, peak +{growth / MiB:.1f} MiB")


def _raw_request(served: Served, content_length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.sendall(
        (
            f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nX-API-Key: {served.inference_key}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {content_length}\r\n\r\n"
        ).encode()
    )
    return sock


def _metric(served: Served, status: str) -> float:
    text = httpx.get(f"{served.base}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pdgw_http_requests_total{") and f'status="{status}"' in line
    )


def test_client_disconnect_mid_body_is_499_not_500(served: Served) -> None:
    before_499, before_500 = _metric(served, "499"), _metric(served, "500")
    for _ in range(3):
        sock = _raw_request(served, 1_000_000)
        sock.sendall(b"\0" * 4000)
        sock.close()
    deadline = time.monotonic() + 10
    while _metric(served, "499") < before_499 + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _metric(served, "499") == before_499 + 3
    assert _metric(served, "500") == before_500
    events = served.events()
    disconnects = [e for e in events if e.get("event") == "request" and e.get("status") == 499]
    assert len(disconnects) >= 3 and all(e["level"] == "info" for e in disconnects)
    assert not [e for e in events if e.get("event") == "unhandled_exception"]


def _fd_count(served: Served) -> int:
    return len(os.listdir(f"/proc/{served.proc.pid}/fd"))


def _closed_by_server(sock: socket.socket, trickle: bytes, wait_s: float) -> tuple[bool, bytes]:
    """Send `trickle` one byte per 0.2 s until the server closes the connection (or `wait_s` passes)."""
    sock.setblocking(False)
    received = b""
    end = time.monotonic() + wait_s
    i = 0
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
            if not chunk:
                return True, received
            received += chunk
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            return True, received
        try:
            sock.send(trickle[i % len(trickle) : i % len(trickle) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return True, received
        i += 1
        time.sleep(0.2)
    return False, received


def test_slow_headers_and_slow_bodies_are_cut_off(served: Served) -> None:
    # HEADER_READ_TIMEOUT_S=2, BODY_READ_TIMEOUT_S=3 in the fixture; each client trickles forever.
    fds_before = _fd_count(served)
    slow_headers = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
        slow_headers.append(s)
    slow_bodies = [_raw_request(served, 100_000) for _ in range(20)]
    start = time.monotonic()
    header_results = [_closed_by_server(s, b"X-Slow: aaaa\r\n", 20) for s in slow_headers]
    body_results = [_closed_by_server(s, b"\0", 20) for s in slow_bodies]
    elapsed = time.monotonic() - start
    assert all(closed for closed, _ in header_results), "a slow-header connection was never closed"
    assert all(closed for closed, _ in body_results), "a slow-body connection was never closed"
    assert all(b" 408 " in data.split(b"\r\n", 1)[0] for _, data in body_results)
    for s in slow_headers + slow_bodies:
        s.close()
    time.sleep(0.5)
    assert _fd_count(served) <= fds_before + 5
    print(
        f"40 slow connections all closed by the server within {elapsed:.1f} s; fds {fds_before} -> "
        f"{_fd_count(served)}"
    )


def test_log_has_no_secret_so_far(served: Served) -> None:
    text = Path(served.log_path).read_text(errors="replace")
    for secret in served.secrets():
        assert secret not in text
