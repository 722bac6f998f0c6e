"""Where a gateway under load spends its CPU, every thread included (yappi, CPU clock).

    python scripts/profile_gateway.py --workload 800k --clients 4 --seconds 20 [--top 40]

Starts an embedded Triton on a temporary copy of the model repository (as `pd-gateway bench` does), runs
the gateway app in this process under yappi, and loads it from a separate client process (so the client
holds neither this process's GIL nor its profile) with the bench's own signals as `.npy` bodies. Prints
the functions with the most CPU per request, inclusive (`ttot`) and in their own code (`tsub`).

Why yappi and not cProfile: at 800,000 samples `prepare` and `finish` run in worker threads, which
cProfile does not see; and py-spy attached to this gateway once crashed the embedded Triton (README,
Performance). yappi's own overhead inflates every figure: read them as shares of the gateway's CPU.
yappi comes with `make setup-dev` (a dev dependency, not one of the product's).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def client_main(url: str, workload: str, clients: int, seconds: float) -> int:
    """The load: `clients` threads posting the bench's signals until `seconds` pass; prints the count."""
    import httpx

    from export.bench import make_signals, npy, run_for

    bodies = [npy(x) for x in make_signals(workload, 4 if workload == "800k" else 16)]

    # one kept-alive connection per client, as the bench does
    conns = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]

    def work(c: int, i: int) -> int:
        r = conns[c].post(
            "/v1/detect",
            content=bodies[(c + i) % len(bodies)],
            headers={"content-type": "application/x-npy"},
        )
        r.raise_for_status()
        return 1

    try:
        result = run_for(seconds, clients, work)
    finally:
        for conn in conns:
            conn.close()
    print(f"requests={result['signals']:.0f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", choices=["800k", "7920"], default="800k")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as the load generator
    args = p.parse_args()
    if args.client:
        return client_main(args.client, args.workload, args.clients, args.seconds)

    import uvicorn
    import yappi

    from export.bench import _wait_ready, bench_repo
    from gateway import repository
    from gateway.app import create_app
    from gateway.embedded import EmbeddedTriton, free_port
    from gateway.http_server import uvicorn_options
    from gateway.settings import Settings

    for key in ("API_KEYS", "API_KEYS_FILE"):  # open endpoints, as in the bench
        os.environ.pop(key, None)
    version = max(repository.list_versions(args.repo / args.name))
    with tempfile.TemporaryDirectory(prefix="pd-profile-") as tmp:
        bench_repo(args.repo.resolve(), args.name, version, Path(tmp))
        with EmbeddedTriton(tmp, [args.name]) as triton:
            port = free_port()
            settings = Settings(
                TRITON_GRPC_URL=triton.grpc_url,
                TRITON_TIMEOUT_S=600,
                LOG_LEVEL="warning",
                REDIS_URL=None,
                DEFAULT_MODEL=args.name,
            )
            config = uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                **uvicorn_options(settings),
            )
            server = uvicorn.Server(config)
            yappi.set_clock_type("cpu")
            yappi.start(profile_threads=True)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url)
            warm = [sys.executable, __file__, "--client", url, "--workload", args.workload, "--clients", "1"]
            subprocess.run([*warm, "--seconds", "0"], check=True, capture_output=True)  # first request
            yappi.clear_stats()
            out = subprocess.run(
                [*warm[:-1], str(args.clients), "--seconds", str(args.seconds)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            yappi.stop()
            server.should_exit = True
            thread.join(30)
    n = max(int(out.strip().split("=")[-1]), 1)
    stats = yappi.get_func_stats()
    total = sum(t.ttot for t in yappi.get_thread_stats())
    print(
        f"{n} requests ({args.workload}, {args.clients} clients, {args.seconds:g} s); gateway CPU "
        f"{1000 * total / n:.1f} ms/request over all threads (yappi on, so inflated)"
    )
    for key, label in (("ttot", "inclusive"), ("tsub", "own code")):
        print(f"\n-- top {args.top} by {label} CPU, ms per request --")
        for s in sorted(stats, key=lambda s: getattr(s, key), reverse=True)[: args.top]:
            where = f"{Path(s.module).name}:{s.lineno}"
            print(f"{1000 * getattr(s, key) / n:9.2f}  {s.ncall / n:8.1f}x  {s.name}  ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
