"""Prove the GPU path on a machine with an NVIDIA GPU and onnxruntime-gpu installed.

1. ONNX Runtime, CUDA execution provider vs CPU, on the shipped model: parity and windows/s.
2. The same model repository with `instance_group KIND_GPU`, served by the embedded Triton: the
   backend picks the CUDA provider, answers match the CPU reference, and throughput through gRPC.

    python loadtest/gpu_check.py --out reports/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.sim.simulator import dataset_item
from gateway import repository
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import make_windows, preprocess_batch

ROOT = Path(__file__).resolve().parents[1]


def windows(params: ProcessingParams, n: int, filtered: bool = True) -> np.ndarray:
    """`n` model inputs from simulated signals, preprocessed and cut as the gateway does (or, without
    scipy, only scaled: parity and speed do not depend on the high-pass)."""
    out: list[np.ndarray] = []
    i = 0
    while sum(len(w) for w in out) < n:
        raw = dataset_item(3, i, n_samples=32_768).signal.astype(np.float32)
        if filtered:
            x = preprocess_batch([raw], params)[0][0]
        else:
            x = (raw - raw.mean()) / np.abs(raw - raw.mean()).max()
        out.append(make_windows(x, params))
        i += 1
    return np.concatenate(out)[:n, None, :]


def throughput(run, batch: np.ndarray, seconds: float = 3.0) -> float:
    run(batch)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - t0)


def triton_check(args: argparse.Namespace, kind: str, x: np.ndarray, ref: np.ndarray) -> dict[str, object]:
    """Serve a copy of the repository with `instance_group {kind}` and compare with the CPU reference."""
    import tritonclient.grpc as grpcclient

    from gateway.embedded import EmbeddedTriton

    out: dict[str, object] = {}
    work = Path(tempfile.mkdtemp(prefix="gpu-repo-"))
    repo = work / "model_repository"
    shutil.copytree(args.repo, repo)
    cfg = repository.read_config(repo / args.model)
    repository.set_serving_options(cfg, instance_kind=kind)
    repository.write_config(repo / args.model, cfg)
    with EmbeddedTriton(repo, [args.model], startup_timeout_s=300) as triton:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        served = client.get_model_config(args.model, as_json=True)["config"]
        out["instance_group"] = served["instance_group"]

        def infer(batch: np.ndarray) -> np.ndarray:
            inp = grpcclient.InferInput("signal", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch)
            return client.infer(args.model, [inp]).as_numpy("probability")

        log = triton.log_tail(200_000)
        out["backend_log"] = [ln[-200:] for ln in log.splitlines() if "providers" in ln or " E11" in ln[:6]]
        try:
            got = np.concatenate([infer(x[i : i + 64]) for i in range(0, len(x), 64)])
        except Exception as e:
            out["error"] = repr(e)
            return out
        out["max_abs_diff_vs_ort_cpu"] = float(np.max(np.abs(ref - got)))
        batch = x[:64]
        with ThreadPoolExecutor(8) as pool:
            t0 = time.perf_counter()
            n = sum(len(r) for r in pool.map(lambda _: infer(batch), range(200)))
            out["grpc_windows_per_s_8_clients_b64"] = n / (time.perf_counter() - t0)
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--model", default="pd_unet1d")
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-scipy", action="store_true", help="scale instead of filtering the test windows")
    ap.add_argument("--triton-kinds", default="KIND_GPU", help="comma-separated instance kinds to serve")
    ap.add_argument(
        "--stub-pythonpath", default="", help="prepended to PYTHONPATH for Triton's backend stubs"
    )
    args = ap.parse_args()
    if args.stub_pythonpath:  # e.g. numpy<2 for the backend stub when the host Python has numpy 2
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [args.stub_pythonpath, os.environ.get("PYTHONPATH")])
        )
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* pip packages
    report: dict[str, object] = {
        "gpu": subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    onnx_path = args.repo / args.model / str(args.version) / "model.onnx"
    config = repository.read_config(args.repo / args.model)
    params = ProcessingParams.from_dict(repository.processing_params_from_config(config, args.version) or {})
    cpu = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gpu = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    report["session_providers"] = gpu.get_providers()
    x = windows(params, 256, filtered=not args.no_scipy)
    ref = cpu.run(None, {"signal": x})[0]
    got = gpu.run(None, {"signal": x})[0]
    report["ort_cuda_vs_cpu_max_abs_diff"] = float(np.max(np.abs(ref - got)))
    speeds = {}
    for b in (64, 256, 1024):
        xb = np.resize(x, (b, 1, x.shape[-1])).astype(np.float32)
        speeds[f"cuda_b{b}_windows_per_s"] = throughput(lambda a: gpu.run(None, {"signal": a}), xb)
    speeds["cpu_b64_windows_per_s"] = throughput(lambda a: cpu.run(None, {"signal": a}), x[:64])
    report["ort_speed"] = speeds
    print(json.dumps(report, indent=1), flush=True)

    # Triton: the same repository, only the instance group changed.
    for kind in args.triton_kinds.split(","):
        report[kind] = triton_check(args, kind, x, ref)
        print(kind, json.dumps(report[kind], indent=1), flush=True)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
