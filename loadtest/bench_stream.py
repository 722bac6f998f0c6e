"""Real-time capacity of WS /v1/stream: how many channels at a given sampling rate one gateway + Triton keep
up with, lag bounded.

    python loadtest/bench_stream.py --rate-hz 100000 --channels 1,2,4,8 --seconds 20
    python loadtest/bench_stream.py --url ws://host:8000/v1/stream ...   # an already running gateway

Without --url it starts `pd-gateway serve` (embedded Triton) on free ports and stops it afterwards.
Each row streams N channels at `rate` samples/s each, in real time, for `seconds`, plus one row at full
speed on one channel (the throughput ceiling). A row keeps up when every sender stayed within one block
of its schedule (the gateway's bounded queue slows a sender that is ahead of processing) and the last
events arrived within a few blocks after the last sample. Results go to stdout and --out (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.sim.simulator import dataset_item  # noqa: E402
from gateway.embedded import free_port  # noqa: E402
from gateway.stream_client import replay  # noqa: E402


async def run_row(
    url: str, signal: np.ndarray, channels: int, rate: float | None, total: int, chunk: int, block: int
) -> dict[str, Any]:
    """N concurrent channels streaming `total` samples each; `rate` None = full speed (times at 1 MS/s)."""
    fs = rate or 1e6
    signal = signal[:total]  # a row shorter than the file streams a prefix of it
    loops = max(1, -(-total // signal.size))
    opened = [
        {"type": "open", "channel": f"bench-{i}", "sampling_rate_hz": fs, "block_samples": block}
        for i in range(channels)
    ]
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(
            replay(url, signal, o, chunk_samples=chunk, speed=1.0 if rate else None, loops=loops)
            for o in opened
        )
    )
    wall = time.monotonic() - t0
    sent = sum(r.sent_samples for r in results)
    behind = max(r.max_behind_s for r in results)
    block_s = block / fs
    ok = all(r.close_code == 1000 for r in results)
    stream_s = loops * signal.size / fs
    tail = max(r.seconds for r in results) - stream_s  # after the last sample is due, until the end message
    return {
        "channels": channels,
        "rate_hz_per_channel": rate,
        "seconds": round(wall, 2),
        "samples_per_s_total": round(sent / wall),
        "events": sum(len(r.events) for r in results),
        "events_per_s": round(sum(len(r.events) for r in results) / wall, 1),
        "max_sender_behind_s": round(behind, 3),
        "end_tail_s": round(tail, 3) if rate else None,
        "block_s": round(block_s, 4),
        "server_last_block_lag_s": max((r.end or {}).get("lag_s") or 0.0 for r in results),
        "keeps_up": None if rate is None else ok and behind <= block_s + 0.5 and tail <= 3 * block_s + 2.0,
        "all_closed_normally": ok,
    }


def detect_row(url: str, signal: np.ndarray, repeats: int = 2) -> dict[str, Any]:
    """The same signal as one /v1/detect request (raw float32), side by side with the streams."""
    http = url.replace("ws://", "http://").replace("/v1/stream", "/v1/detect")
    times = []
    for _ in range(repeats):
        t0 = time.monotonic()
        resp = httpx.post(
            http, content=signal.tobytes(), headers={"content-type": "application/octet-stream"}, timeout=600
        )
        resp.raise_for_status()
        times.append(time.monotonic() - t0)
    best = min(times)
    return {
        "channels": "detect",
        "rate_hz_per_channel": None,
        "seconds": round(best, 3),
        "samples_per_s_total": round(signal.size / best),
        "events": resp.json()["total_regions"],
        "events_per_s": None,
        "max_sender_behind_s": None,
        "end_tail_s": None,
        "keeps_up": None,
    }


def start_gateway(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "LOG_LEVEL": "warning"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc, f"ws://127.0.0.1:{port}/v1/stream"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"gateway did not start; see {log_path}")
        time.sleep(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="ws://.../v1/stream of a running gateway (default: start one)")
    p.add_argument("--rate-hz", type=float, default=100_000.0, help="sampling rate of every channel")
    p.add_argument("--channels", default="1,2,4,8", help="comma-separated channel counts, one row each")
    p.add_argument("--seconds", type=float, default=20.0, help="signal time streamed per row")
    p.add_argument("--full-speed-samples", type=int, default=800_000, help="the full-speed row's length")
    p.add_argument("--chunk-samples", type=int, default=4096)
    p.add_argument("--block-samples", type=int, default=65_536, help="block_samples of the real-time rows")
    p.add_argument("--full-speed-block-samples", type=int, default=262_144)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_stream.json")
    args = p.parse_args()

    signal = np.asarray(dataset_item(7, 3, n_samples=800_000).signal, dtype=np.float32)
    proc = None
    if args.url is None:
        proc, args.url = start_gateway(Path("/tmp") / f"bench_stream_gateway_{os.getpid()}.log")
    rows = []
    try:
        rows.append(detect_row(args.url, signal))
        print(json.dumps(rows[-1]), flush=True)
        rows.append(
            asyncio.run(
                run_row(
                    args.url,
                    signal,
                    1,
                    None,
                    args.full_speed_samples,
                    args.chunk_samples,
                    args.full_speed_block_samples,
                )
            )
        )
        print(json.dumps(rows[-1]), flush=True)
        for n in (int(c) for c in args.channels.split(",")):
            rows.append(
                asyncio.run(
                    run_row(
                        args.url,
                        signal,
                        n,
                        args.rate_hz,
                        int(args.rate_hz * args.seconds),
                        args.chunk_samples,
                        args.block_samples,
                    )
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("| channels | rate/channel | samples/s | events/s | sender behind (max) | end tail | keeps up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rate = (
            "one /v1/detect"
            if r["channels"] == "detect"
            else "full speed"
            if r["rate_hz_per_channel"] is None
            else f"{r['rate_hz_per_channel']:,.0f} Hz"
        )
        tail = "-" if r["end_tail_s"] is None else f"{r['end_tail_s']} s"
        print(
            f"| {r['channels']} | {rate} | {r['samples_per_s_total']:,} | {r['events_per_s']} | "
            f"{r['max_sender_behind_s']} s | {tail} | {r['keeps_up']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
