"""Side-by-side latency of one signal: the gateway (JSON / .npy / raw), a direct Triton client, and the
seed-000 way (in-process PyTorch, one 1024-sample chunk per forward pass), all in one run.

    python loadtest/bench_latency.py --repeats 10 --out reports/bench_latency.json

It starts its own embedded Triton and gateway (subprocess) on free ports. Reports medians and ratios;
absolute numbers only mean something together with the machine line it prints.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as grpcclient

from export.sim.simulator import dataset_item, random_config, simulate
from gateway.dsp.params import SEED_PARAMS, ProcessingParams
from gateway.dsp.processing import run_pipeline
from gateway.embedded import EmbeddedTriton, free_port
from gateway.repository import processing_params_from_config, read_config

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    py = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {py}"


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()  # warm-up: connection, caches, ORT arenas
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000.0)
    runs.sort()
    return {"median_ms": statistics.median(runs), "p90_ms": runs[int(0.9 * (len(runs) - 1))], "n": len(runs)}


def npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def signals() -> dict[str, np.ndarray]:
    seed_like = dataset_item(11, 0, regime="seed").signal.astype(np.float32)
    vsb = simulate(random_config(np.random.default_rng(5), regime="vsb"), seed=5).signal.astype(np.float32)
    return {"7920": seed_like[:7920], "800000": vsb[:800_000]}


def seed_style(x: np.ndarray, widths: tuple[int, ...]) -> Callable[[], object]:
    """Seed 000's serving loop: PyTorch in the request process, its own pipeline (50 % overlap), and a
    batch of one 1024-sample chunk per forward pass."""
    import torch

    from export.model import UNet1D

    torch.set_num_threads(os.cpu_count() or 1)
    model = UNet1D(widths=widths).eval()

    def infer(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([torch.sigmoid(model(torch.from_numpy(w[None]))).numpy() for w in windows])

    return lambda: run_pipeline([x], SEED_PARAMS, infer, max_batch_size=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--model", default="pd_unet1d")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed-width-repeats", type=int, default=1, help="0 skips the seed-width run")
    ap.add_argument("--seed-width-800k", action="store_true", help="also the seed width on 800k (minutes)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    params = ProcessingParams.from_dict(
        processing_params_from_config(read_config(args.repo / args.model), 1) or {}
    )
    card = json.loads((args.repo / args.model / "1" / "model_card.json").read_text())
    widths = tuple(card.get("pd:checkpoint", {}).get("widths", (16, 32, 64, 128)))
    data = signals()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with EmbeddedTriton(args.repo, [args.model]) as triton:
        port = free_port()
        env = {**os.environ, "LOG_LEVEL": "warning", "TRITON_GRPC_URL": triton.grpc_url, "PORT": str(port)}
        # The 800k-sample JSON row (~17 MB of text) is over the default JSON limit (8 MiB) on purpose.
        env["MAX_JSON_BODY_BYTES"] = str(64 * 1024 * 1024)
        gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            for _ in range(200):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            direct = grpcclient.InferenceServerClient(triton.grpc_url)

            def triton_infer(w: np.ndarray) -> np.ndarray:
                inp = grpcclient.InferInput("signal", list(w.shape), "FP32")
                inp.set_data_from_numpy(w)
                return direct.infer(args.model, [inp]).as_numpy("probability")

            for name, x in data.items():
                reps = args.repeats if x.size < 100_000 else max(3, args.repeats // 3)
                row = results.setdefault(name, {})

                def post(body: bytes, ctype: str) -> None:
                    r = client.post("/v1/detect", content=body, headers={"content-type": ctype})
                    r.raise_for_status()

                as_json = json.dumps({"signal": x.tolist()}).encode()
                row["gateway_json"] = timed(lambda b=as_json: post(b, "application/json"), reps)
                as_npy, as_raw = npy(x), x.tobytes()
                row["gateway_npy"] = timed(lambda b=as_npy: post(b, "application/x-npy"), reps)
                row["gateway_raw_f32"] = timed(lambda b=as_raw: post(b, "application/octet-stream"), reps)
                row["direct_triton_sequential"] = timed(
                    lambda x=x: run_pipeline([x], params, triton_infer, max_batch_size=64), reps
                )
                row["seed_style_our_width"] = timed(seed_style(x, widths), max(1, reps // 3))
                if args.seed_width_repeats and (x.size < 100_000 or args.seed_width_800k):
                    row["seed_style_seed_width"] = timed(
                        seed_style(x, (64, 128, 256, 512)), args.seed_width_repeats
                    )
                print(name, json.dumps(row, indent=1), flush=True)
        finally:
            gw.terminate()
            gw.wait(30)
    report = {"machine": machine(), "model_widths": widths, "results": results}
    for name, row in results.items():
        base = row["gateway_npy"]["median_ms"]
        report.setdefault("ratios_vs_gateway_npy", {})[name] = {
            k: round(v["median_ms"] / base, 2) for k, v in row.items()
        }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
