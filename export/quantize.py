"""INT8 static quantisation (ONNX Runtime, QDQ) of a PD model, calibrated on simulator windows, and its
measurement against FP32: speed (windows/s, in process, side by side) and event F1 on the held-out set.

    python -m export.quantize --repo model_repository --name pd_unet1d --version 1 --out reports/int8 \
        --save-int8 runs/int8.onnx
    python -m export.evaluate --onnx runs/int8.onnx --processing <params JSON> --cross 300,48 ...

The cross-generator set is scored by export.evaluate only (this calibrating module never imports it).

`export_onnx --int8` uses `quantize_int8` to write a quantised version. Ship one only if it pays: the
report says whether it is faster on this machine and what it costs in F1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from export.evaluate import HELDOUT_SEED, evaluate, heldout_set, ort_infer
from export.sim.simulator import make_dataset
from gateway import repository
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import prepare

CALIBRATION_SEED = 20261202  # neither training's small seeds nor the held-out set's


def calibration_windows(
    params: ProcessingParams, n_signals: int = 64, seed: int = CALIBRATION_SEED
) -> np.ndarray:
    """Windows [N, 1, W] of simulator signals cut by the version's own preprocessing."""
    signals = [s.signal for s in make_dataset(n_signals, seed)]
    return prepare(signals, params.replace(screen_peak=None)).batch


class _Reader(CalibrationDataReader):
    def __init__(self, windows: np.ndarray, batch: int = 64) -> None:
        self._batches = iter([windows[i : i + batch] for i in range(0, len(windows), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {repository.INPUT_NAME: np.ascontiguousarray(batch)}


def quantize_int8(onnx_model: bytes | str | Path, windows: np.ndarray) -> bytes:
    """The model with INT8 weights (per channel) and activations in QDQ form, calibrated on `windows`."""
    with tempfile.TemporaryDirectory(prefix="pd-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_model if isinstance(onnx_model, bytes) else Path(onnx_model).read_bytes())
        quantize_static(
            str(src),
            str(dst),
            _Reader(windows),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return dst.read_bytes()


def windows_per_s(onnx_model: bytes | str, windows: np.ndarray, threads: int, seconds: float) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
    batch = windows[:64]
    session.run(None, {repository.INPUT_NAME: batch})
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {repository.INPUT_NAME: batch})
        done += len(batch)
    return done / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--version", type=int, default=None, help="default: the latest version")
    p.add_argument("--n-signals", type=int, default=200, help="held-out signals for F1")
    p.add_argument("--n-vsb-full", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="per speed measurement")
    p.add_argument("--out", type=Path, help="writes <out>.json")
    p.add_argument("--save-int8", type=Path, help="also write the quantised model here (for export.evaluate)")
    args = p.parse_args(argv)
    model_dir = repository.model_path(args.repo, args.name)
    version = args.version or max(repository.list_versions(model_dir))
    params = ProcessingParams.from_dict(
        repository.processing_params_from_config(repository.read_config(model_dir), version) or {}
    )
    fp32 = (model_dir / str(version) / repository.MODEL_FILENAME).read_bytes()
    int8 = quantize_int8(fp32, calibration_windows(params))
    if args.save_int8:
        args.save_int8.parent.mkdir(parents=True, exist_ok=True)
        args.save_int8.write_bytes(int8)
    windows = calibration_windows(params, 8, seed=1)
    report: dict[str, Any] = {"model": f"{args.name} version {version}", "threads": args.threads}
    for label, model in (("fp32", fp32), ("int8", int8), ("fp32_again", fp32)):  # fp32 twice: drift check
        report[f"windows_per_s_{label}"] = round(windows_per_s(model, windows, args.threads, args.seconds), 1)
    sims = heldout_set(args.n_signals, args.n_vsb_full, HELDOUT_SEED)
    for label, model in (("fp32", fp32), ("int8", int8)):
        res = evaluate(sims, params, ort_infer(model, args.threads), seed_params=False, baseline=False)
        report[f"f1_{label}"] = round(res["detectors"]["model"]["all"]["f1"], 4)
    report["heldout_signals"] = len(sims)
    report["onnx_bytes"] = {"fp32": len(fp32), "int8": len(int8)}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
