"""One benchmark, side by side in one run: the gateway against the floor, a direct Triton client and seed
000's algorithm on the same model, for whole 800k VSB signals and seed-like 7,920-sample signals.

    python -m export.bench [--seconds 8] [--out reports/bench]       # wired as `pd-gateway bench`
    python -m export.bench --quick                                     # a few seconds (CI smoke)

It starts its own embedded Triton (a temporary copy of the model repository: version 1 unscreened,
version 2 with the version's `screen_peak` when it has one) and a gateway subprocess on free ports.
Every row runs for --seconds with its clients, counting finished signals:

  floor          in-process ONNX Runtime, all non-overlapping windows in batches of max_batch_size
  direct_triton  tritonclient gRPC to the same Triton, the same windows, no pre/post, C client threads
  gateway_*      POST /v1/detect, one signal per request (.npy, raw float32 or JSON), C client threads
  seed_algorithm seed 000's way on the same model: its preprocessing, 50 % overlap, one window per pass

plus a concurrency sweep (1, 4, 16; .npy), screening on vs off, and Triton's own statistics per gateway
row (windows per execution, queue vs compute time). Writes <out>.json, <out>.md (the README's performance
section quotes it) and <out>.png. Ratios compare rows of this one run; absolute figures only with its
machine line (the load average is recorded because the cores may be shared).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient

from export.bench_report import render_markdown, render_plot
from export.evaluate import ort_infer
from export.sim.simulator import dataset_item, random_config, simulate
from gateway import repository
from gateway.dsp.params import SEED_PARAMS, ProcessingParams
from gateway.dsp.processing import run_pipeline
from gateway.embedded import EmbeddedTriton, free_port

WORKLOADS = {"800k": 800_000, "7920": 7920}
MAIN_CONCURRENCY = {"800k": 4, "7920": 8}  # the issue's 800k table; seed 000's own workload
SWEEP = (1, 4, 16)


def machine() -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def make_signals(kind: str, count: int) -> list[np.ndarray]:
    """Whole VSB cycles (sparse PD, int8-like) or seed-regime 7,920-sample signals, float32."""
    if kind == "800k":
        sims = [
            simulate(random_config(np.random.default_rng(50 + i), regime="vsb"), 50 + i) for i in range(count)
        ]
    else:
        sims = [dataset_item(11, i, regime="seed", n_samples=7920) for i in range(count)]
    return [s.signal.astype(np.float32) for s in sims]


def npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def run_for(seconds: float, clients: int, work: Callable[[int, int], int]) -> dict[str, float]:
    """`clients` threads call work(client, i) until `seconds` pass (each at least once, so a loaded machine
    that starts a thread late still measures a rate); signals/s over the finished calls."""
    done = [0] * clients
    stop = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def loop(c: int) -> None:
        i = 0
        try:
            while i == 0 or time.perf_counter() < stop:
                done[c] += work(c, i)
                i += 1
        except BaseException as e:  # surfaced below: a failing row must not pass as a slow one
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - t0
    return {
        "signals_per_s": round(sum(done) / elapsed, 3),
        "signals": sum(done),
        "seconds": round(elapsed, 2),
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its live descendants so far (Linux /proc); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()
        ]
    except (OSError, IndexError, ValueError):
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(c) for c in children)


def prepost_ms(signals: list[np.ndarray], params: ProcessingParams, repeats: int) -> dict[str, float]:
    """Median thread CPU ms of the gateway's own work per signal (prepare, finish, AC fit), model
    excluded, in steady state (after one untimed pass): run on one core whatever else the machine does."""
    from gateway.dsp.phase import estimate_ac_phase
    from gateway.dsp.processing import finish, prepare

    if signals:  # one untimed pass: window, filter and stitch-weight caches, first-touch page faults
        prep = prepare([signals[0]], params)
        finish(prep, np.zeros(prep.batch.shape, np.float32), params)
    times = []
    for _ in range(repeats):
        for x in signals:
            t0 = time.thread_time()
            prep = prepare([x], params)
            t1 = time.thread_time()
            probs = np.zeros(prep.batch.shape, np.float32)  # not timed: stands for the model
            t2 = time.thread_time()
            (done,) = finish(prep, probs, params)
            if done is not None:
                estimate_ac_phase(x)  # finish fits it only for candidates (none here): the worst case
            times.append((t1 - t0) + (time.thread_time() - t2))
    return {"median_ms": round(1000 * float(np.median(times)), 2), "signals": len(times)}


def triton_stats(client: grpcclient.InferenceServerClient, model: str, version: str) -> dict[str, int]:
    stats = client.get_inference_statistics(model, version, as_json=True)["model_stats"][0]
    s = stats["inference_stats"]
    return {
        "inferences": int(stats.get("inference_count", 0)),
        "executions": int(stats.get("execution_count", 0)),
        "queue_ns": int(s["queue"].get("ns", 0)),
        "compute_ns": int(s["compute_infer"].get("ns", 0)),
        "requests": int(s["success"].get("count", 0)),
    }


def stats_delta(a: dict[str, int], b: dict[str, int]) -> dict[str, float]:
    d = {k: b[k] - a[k] for k in a}
    return {
        "windows": d["inferences"],
        "executions": d["executions"],
        "windows_per_execution": round(d["inferences"] / max(d["executions"], 1), 1),
        "queue_ms_per_request": round(d["queue_ns"] / max(d["requests"], 1) / 1e6, 2),
        "compute_ms_per_execution": round(d["compute_ns"] / max(d["executions"], 1) / 1e6, 2),
    }


def bench_repo(
    src: Path, name: str, version: int, dst: Path, screen_peak: float | None = None
) -> tuple[ProcessingParams, bool]:
    """A copy of `name` version `version`: v1 unscreened, v2 screened (if the version has a screen, or
    `screen_peak` gives one)."""
    config = repository.read_config(src / name)
    params = ProcessingParams.from_dict(repository.processing_params_from_config(config, version) or {})
    if screen_peak is not None:
        params = params.replace(screen_peak=screen_peak)
    screened = params.screen_peak is not None
    for v, p in [(1, params.replace(screen_peak=None))] + ([(2, params)] if screened else []):
        (dst / name / str(v)).mkdir(parents=True)
        shutil.copy(src / name / str(version) / repository.MODEL_FILENAME, dst / name / str(v))
        repository.set_version_processing(config, v, p.to_dict())
    for key in list(config.parameters):
        if key.startswith(repository.PROCESSING_KEY_PREFIX) and key not in {
            repository.processing_key(v) for v in (1, 2)
        }:
            del config.parameters[key]
    config.ClearField("version_policy")
    config.version_policy.all.SetInParent()
    repository.write_config(dst / name, config)
    return params, screened


class Bench:
    def __init__(self, args: argparse.Namespace, params: ProcessingParams, onnx_path: Path) -> None:
        self.args = args
        self.params = params
        self.w = params.window
        self.infer = ort_infer(str(onnx_path), args.threads)
        self.rows: list[dict[str, Any]] = []
        self.pids: tuple[int | None, int | None] = (None, None)  # gateway, Triton: CPU accounting
        self.prepost: dict[str, dict[str, float]] = {}

    def row(self, workload: str, path: str, clients: int, result: dict[str, Any], **extra: Any) -> None:
        entry = {"workload": workload, "path": path, "clients": clients, **result, **extra}
        self.rows.append(entry)
        print(json.dumps(entry), flush=True)

    def floor(self, workload: str, signals: list[np.ndarray], batch: int) -> None:
        def work(_c: int, i: int) -> int:
            x = signals[i % len(signals)]
            win = x[: x.size // self.w * self.w].reshape(-1, 1, self.w)
            for k in range(0, len(win), batch):
                self.infer(win[k : k + batch])
            return 1

        self.row(workload, "floor", 1, run_for(self.args.seconds, 1, work))

    def direct(self, workload: str, signals: list[np.ndarray], url: str, batch: int, clients: int) -> None:
        conns = [grpcclient.InferenceServerClient(url) for _ in range(clients)]

        def work(c: int, i: int) -> int:
            x = signals[(c + i * clients) % len(signals)]
            win = np.ascontiguousarray(x[: x.size // self.w * self.w].reshape(-1, 1, self.w))
            for k in range(0, len(win), batch):
                part = win[k : k + batch]
                inp = grpcclient.InferInput("signal", list(part.shape), "FP32")
                inp.set_data_from_numpy(part)
                conns[c].infer(self.args.name, [inp], model_version="1")
            return 1

        self.row(workload, "direct_triton", clients, run_for(self.args.seconds, clients, work))

    def seed(self, workload: str, signals: list[np.ndarray]) -> None:
        seed_params = SEED_PARAMS.replace(window=self.w, hop=self.w // 2)

        def work(_c: int, i: int) -> int:
            run_pipeline([signals[i % len(signals)]], seed_params, self.infer, max_batch_size=1)
            return 1

        self.row(workload, "seed_algorithm", 1, run_for(self.args.seconds, 1, work))

    def gateway(
        self,
        workload: str,
        bodies: dict[str, list[tuple[bytes, str]]],
        base: str,
        stats: Callable[[], dict[str, int]],
        body: str,
        clients: int,
        version: str = "1",
        path: str = "",
    ) -> None:
        conns = [httpx.Client(base_url=base, timeout=300) for _ in range(clients)]
        sent = [0] * clients

        def work(c: int, i: int) -> int:
            content, ctype = bodies[body][(c + i * clients) % len(bodies[body])]
            r = conns[c].post(
                "/v1/detect", content=content, headers={"content-type": ctype}, params={"version": version}
            )
            r.raise_for_status()
            sent[c] += int(r.json()["windows_inferred"])
            return 1

        pids = self.pids
        before, cpu0 = stats(), [cpu_seconds(p) for p in pids]
        result = run_for(self.args.seconds, clients, work)
        triton = stats_delta(before, stats())
        n = max(result["signals"], 1)
        result["windows_per_signal"] = round(sum(sent) / n, 1)
        gw_cpu, triton_cpu = (1000 * (cpu_seconds(p) - c) / n for p, c in zip(pids, cpu0, strict=True))
        result["gateway_cpu_ms_per_signal"] = round(gw_cpu, 2)
        result["triton_cpu_ms_per_signal"] = round(triton_cpu, 2)
        self.row(workload, path or f"gateway_{body}", clients, result, triton=triton)
        for conn in conns:
            conn.close()


def merge_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of interleaved rounds (the same paths in the same order each round) as one row per path: the
    round with the median rate (the slower middle one for an even count), plus every round's rate
    (`rounds_signals_per_s`) and, for the other paths, the gateway's ratio to it in each round
    (`rounds_gateway_ratio`, whose median `ratios` reports)."""
    paths = list(dict.fromkeys((r["path"], r["clients"]) for r in rows))
    per_path = {key: [r for r in rows if (r["path"], r["clients"]) == key] for key in paths}
    if len({len(v) for v in per_path.values()}) != 1 or len(next(iter(per_path.values()))) < 2:
        return rows
    gateway = next((v for (path, _), v in per_path.items() if path == "gateway_npy"), None)
    out = []
    for key, runs in per_path.items():
        rates = [r["signals_per_s"] for r in runs]
        median = dict(sorted(runs, key=lambda r: r["signals_per_s"])[(len(runs) - 1) // 2])
        median["rounds_signals_per_s"] = rates
        if gateway is not None and key[0] != "gateway_npy":
            median["rounds_gateway_ratio"] = [
                round(g["signals_per_s"] / r, 2) if r > 0 else None
                for g, r in zip(gateway, rates, strict=True)
            ]
        out.append(median)
    return out


def _ratio(main: dict[str, Any], row: dict[str, Any]) -> float:
    """The gateway's main row over `row`: with interleaved rounds, the median of the ratios taken within
    each round (never one round's gateway over another round's row)."""
    per_round = [v for v in row.get("rounds_gateway_ratio", []) if v is not None]
    if per_round:
        return round(float(np.median(per_round)), 2)
    return round(main["signals_per_s"] / row["signals_per_s"], 2)


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per workload: the gateway's main row (.npy, main concurrency) against each other row."""
    out: dict[str, dict[str, float]] = {}
    for wl in WORKLOADS:
        main = next(
            (
                r
                for r in rows
                if r["workload"] == wl and r["path"] == "gateway_npy" and r["clients"] == MAIN_CONCURRENCY[wl]
            ),
            None,
        )
        if main is None:
            continue
        out[wl] = {
            f"{r['path']}@{r['clients']}": _ratio(main, r)
            for r in rows
            if r["workload"] == wl and r is not main and r["signals_per_s"] > 0
        }
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pd-gateway bench", description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--version", type=int, default=None, help="default: the latest version")
    p.add_argument("--seconds", type=float, default=8.0, help="per row")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the four main rows (floor, direct, gateway, seed) this many times, interleaved; "
        "each reports its median round and every round's gateway ratio",
    )
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (in-process rows)")
    p.add_argument("--workloads", default="800k,7920")
    p.add_argument(
        "--detail-workloads",
        default="800k,7920",
        help="workloads that also get the body formats and the concurrency sweep",
    )
    p.add_argument("--screen-peak", type=float, help="screen for the screened row (default: the version's)")
    p.add_argument("--quick", action="store_true", help="1 s rows, 7,920 samples, no sweep: a smoke run")
    p.add_argument("--out", type=Path, default=Path("reports/bench"), help="writes <out>.json/.md/.png")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    if args.quick:
        args.seconds, args.workloads = min(args.seconds, 1.0), "7920"
    workloads = [w for w in args.workloads.split(",") if w]
    if unknown := set(workloads) - set(WORKLOADS):
        raise SystemExit(f"unknown workload(s) {sorted(unknown)}; choose from {sorted(WORKLOADS)}")
    src = args.repo.resolve()
    version = args.version or max(repository.list_versions(src / args.name))
    report: dict[str, Any] = {"machine": machine(), "model": f"{args.name} version {version}", "rows": []}
    with tempfile.TemporaryDirectory(prefix="pd-bench-") as tmp:
        params, screened = bench_repo(src, args.name, version, Path(tmp), args.screen_peak)
        bench = Bench(args, params, Path(tmp) / args.name / "1" / repository.MODEL_FILENAME)
        config = repository.read_config(Path(tmp) / args.name)
        batch = config.max_batch_size or 64
        with EmbeddedTriton(tmp, [args.name]) as triton:
            port = free_port()
            env = {
                **os.environ,
                "LOG_LEVEL": "warning",
                "TRITON_GRPC_URL": triton.grpc_url,
                "PORT": str(port),
            }
            env["TRITON_TIMEOUT_S"] = "600"  # throughput, not deadlines, is measured here
            env["MAX_JSON_BODY_BYTES"] = str(64 * 1024 * 1024)  # an 800k JSON body is ~17 MB
            env.pop("API_KEYS", None)
            gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env)
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_ready(base)
                bench.pids = (gw.pid, triton.pid)
                stats_client = grpcclient.InferenceServerClient(triton.grpc_url)
                for wl in workloads:
                    detail = not args.quick and wl in args.detail_workloads.split(",")
                    _bench_workload(bench, wl, base, triton.grpc_url, batch, screened, stats_client, detail)
            finally:
                gw.terminate()
                gw.wait(30)
    report.update(
        rows=bench.rows,
        ratios_gateway_over=ratios(bench.rows),
        seconds_per_row=args.seconds,
        rounds=args.rounds,
        loadavg_1m_at_end=round(os.getloadavg()[0], 2),
        screen_peak=params.screen_peak,
        prepost_cpu_ms_per_signal=bench.prepost,
        command=" ".join(["pd-gateway bench", *(argv if argv is not None else sys.argv[1:])]),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n")
    Path(f"{args.out}.md").write_text(render_markdown(report))
    render_plot(report, Path(f"{args.out}.png"))
    print(f"wrote {args.out}.json, {args.out}.md and {args.out}.png")
    return 0


def _wait_ready(base: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"the gateway at {base} did not become ready within {timeout_s:g} s")


def _bench_workload(
    bench: Bench,
    wl: str,
    base: str,
    grpc_url: str,
    batch: int,
    screened: bool,
    stats_client: grpcclient.InferenceServerClient,
    detail: bool,
) -> None:
    signals = make_signals(wl, 4 if wl == "800k" else 16)
    bodies = {
        "npy": [(npy(x), "application/x-npy") for x in signals],
        "raw": [(x.tobytes(), "application/octet-stream") for x in signals],
        "json": [(json.dumps({"signal": x.tolist()}).encode(), "application/json") for x in signals],
    }
    name = bench.args.name
    c = MAIN_CONCURRENCY[wl]
    bench.prepost[wl] = prepost_ms(signals, bench.params.replace(screen_peak=None), 3 if detail else 1)

    def stats(v: str = "1") -> dict[str, int]:
        return triton_stats(stats_client, name, v)

    bench.gateway(wl, bodies, base, stats, "npy", 1)  # warm-up: connections, ORT arenas, caches
    bench.rows.pop()
    first = len(bench.rows)
    for _ in range(bench.args.rounds):  # interleaved: a machine whose speed drifts slows every row alike
        bench.floor(wl, signals, batch)
        bench.direct(wl, signals, grpc_url, batch, c)
        bench.gateway(wl, bodies, base, stats, "npy", c)
        bench.seed(wl, signals)
    bench.rows[first:] = merge_rounds(bench.rows[first:])
    if detail:
        for body in ("raw", "json"):
            bench.gateway(wl, bodies, base, stats, body, c)
        for clients in SWEEP:
            if clients != c:
                bench.gateway(wl, bodies, base, stats, "npy", clients)
    if screened and not bench.args.quick:
        bench.gateway(
            wl, bodies, base, lambda: stats("2"), "npy", c, version="2", path="gateway_npy_screened"
        )


if __name__ == "__main__":
    sys.exit(main())
