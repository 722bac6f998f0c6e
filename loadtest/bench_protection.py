"""What the protections cost and buy, side by side in one run (gateway in process, real Triton and Redis).

    python loadtest/bench_protection.py --rounds 5 --out reports/bench_protection.json

1. Overhead per small /v1/detect: protections off vs RATE_LIMIT through Redis vs tracing on (spans to a
   discarding exporter through the production BatchSpanProcessor). Rounds are interleaved.
2. Shedding: latency of a small request while one big request fills the Triton queue, with
   SHED_QUEUED_BATCHES on (503 at once) and off (it waits its turn).
3. Recovery: Triton restarted; time from its readiness to the gateway's first 200, breaker on vs off.
Ratios matter; absolute numbers only with the machine line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from export.bench import machine
from gateway.app import create_app
from gateway.embedded import EmbeddedTriton, free_port
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"signal": np.sin(np.linspace(0, 20, 3000)).tolist()}
OCTET = {"content-type": "application/octet-stream"}


class Discard(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def settings(triton: EmbeddedTriton, redis_url: str | None, repo: Path, **kw: Any) -> Settings:
    return Settings(
        TRITON_GRPC_URL=triton.grpc_url, REDIS_URL=redis_url, MODEL_REPOSITORY=repo, LOG_LEVEL="error", **kw
    )


async def timed_ms(client: httpx.AsyncClient, **kw: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    resp = await client.post("/v1/detect", **kw)
    return (time.perf_counter() - t0) * 1000.0, resp.status_code


async def overhead(triton: EmbeddedTriton, redis_url: str, repo: Path, rounds: int, n: int) -> dict[str, Any]:
    apps = {
        "off": create_app(settings(triton, redis_url, repo)),
        "rate_limit_redis": create_app(settings(triton, redis_url, repo, RATE_LIMIT="1000000/second")),
        "tracing_on": create_app(settings(triton, redis_url, repo), span_exporter=Discard()),
    }
    times: dict[str, list[float]] = {k: [] for k in apps}
    clients = {}
    stack = []
    for name, app in apps.items():  # the tracing app last: only its gRPC channel gets instrumented
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        stack.append(ctx)
        clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        await clients[name].post("/v1/detect", json=SMALL)  # warm-up: metadata, channel
    try:
        for _ in range(rounds):
            for name, client in clients.items():
                for _ in range(n):
                    ms, status = await timed_ms(client, json=SMALL)
                    assert status == 200, status
                    times[name].append(ms)
    finally:
        for client in clients.values():
            await client.aclose()
        for ctx in reversed(stack):
            await ctx.__aexit__(None, None, None)
    base = statistics.median(times["off"])
    return {
        name: {
            "median_ms": round(statistics.median(t), 2),
            "ratio_to_off": round(statistics.median(t) / base, 3),
        }
        for name, t in times.items()
    }


async def shedding(triton: EmbeddedTriton, redis_url: str, repo: Path, rounds: int) -> dict[str, Any]:
    big = np.random.default_rng(0).standard_normal(64 * 896 * 24).astype("<f4").tobytes()  # ~24 batches
    out: dict[str, Any] = {}
    for name, shed in (("shed_on", 4), ("shed_off", 0)):
        app = create_app(
            settings(triton, redis_url, repo, MAX_CONCURRENT_TRITON_CALLS=2, SHED_QUEUED_BATCHES=shed)
        )
        small_ms, statuses, big_ms = [], [], []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=300) as c:
                await c.post("/v1/detect", json=SMALL)
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    task = asyncio.create_task(c.post("/v1/detect", content=big, headers=OCTET))
                    while app.state.triton.queued_batches < 8:
                        await asyncio.sleep(0.002)
                    ms, status = await timed_ms(c, json=SMALL)
                    small_ms.append(ms)
                    statuses.append(status)
                    assert (await task).status_code == 200
                    big_ms.append((time.perf_counter() - t0) * 1000.0)
        out[name] = {
            "small_median_ms": round(statistics.median(small_ms), 2),
            "small_statuses": sorted(set(statuses)),
            "big_median_ms": round(statistics.median(big_ms), 1),
        }
    out["small_latency_ratio_off_to_on"] = round(
        out["shed_off"]["small_median_ms"] / out["shed_on"]["small_median_ms"], 1
    )
    return out


async def recovery(triton: EmbeddedTriton, redis_url: str, repo: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, failures in (("breaker_on", 5), ("breaker_off", 1_000_000)):
        app = create_app(settings(triton, redis_url, repo, CIRCUIT_BREAKER_FAILURES=failures))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as c:
                assert (await c.post("/v1/detect", json=SMALL)).status_code == 200
                triton.stop()
                down = [(await timed_ms(c, json=SMALL)) for _ in range(20)]
                await asyncio.to_thread(triton.start, wait=True)
                t0 = time.perf_counter()
                while (await c.post("/v1/detect", json=SMALL)).status_code != 200:
                    await asyncio.sleep(0.05)
                out[name] = {
                    "down_503_median_ms": round(statistics.median(ms for ms, _ in down), 2),
                    "first_200_after_triton_ready_s": round(time.perf_counter() - t0, 2),
                }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20, help="small requests per config and round")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server is not on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "model_repository"
        shutil.copytree(ROOT / "model_repository", repo)
        port = free_port()
        redis = subprocess.Popen(
            [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        triton = EmbeddedTriton(repo, ["pd_unet1d"], startup_timeout_s=180)
        try:
            triton.start(wait=True)
            url = f"redis://127.0.0.1:{port}/0"
            report = {
                "machine": machine(),
                "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                "overhead": asyncio.run(overhead(triton, url, repo, args.rounds, args.requests)),
                "shedding": asyncio.run(shedding(triton, url, repo, args.rounds)),
                "recovery": asyncio.run(recovery(triton, url, repo)),
            }
        finally:
            triton.close()
            redis.terminate()
            redis.wait(timeout=10)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
