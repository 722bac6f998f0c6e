"""ONNX Runtime speed per UNet1D width on this machine, next to the trained widths' accuracy.

    python -m export.bench_widths --widths 8,16,32,64 16,32,64,128 64,128,256,512 \
        --eval 8,16,32,64=reports/eval_w8.json --eval 16,32,64,128=reports/eval_w16.json \
        --out reports/bench_widths

Speed: untrained models (weights do not change the cost) exported like the shipped one, CPU execution
provider with `--threads` intra-op threads, batches of `--batch` windows; each width is timed for about
`--seconds` after a warm-up. "ms per VSB signal" = the windows an 800,000-sample signal needs with the
shipped processing params (hop 896) divided by the measured throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gateway.dsp.params import DEFAULT_PARAMS
from gateway.dsp.processing import window_starts

VSB_SAMPLES = 800_000


def machine() -> dict[str, Any]:
    """nproc, CPU model and versions: a timing means nothing without them."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in cpuinfo.read_text().splitlines()
                if ln.startswith("model name")
            ),
            model,
        )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "platform": platform.platform(),
        "onnxruntime": ort.__version__,
        "loadavg_1m": os.getloadavg()[0],
    }


def bench_width(widths: tuple[int, ...], *, window: int, batch: int, threads: int, seconds: float) -> dict:
    """Windows per second of an untrained UNet1D of `widths` through ONNX Runtime."""
    import torch  # export only

    from export.export_onnx import to_onnx_bytes
    from export.model import UNet1D, count_parameters

    torch.manual_seed(0)
    model = UNet1D(1, 1, widths, (1, 2, 4, 8)[: len(widths)]).eval()
    data = to_onnx_bytes(model, window, 17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 1, window)).astype(np.float32)
    session.run(None, {"signal": x})  # warm-up: allocations, kernel selection
    runs, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or runs < 2:
        session.run(None, {"signal": x})
        runs += 1
    wps = runs * batch / elapsed
    n_windows = int(window_starts(VSB_SAMPLES, DEFAULT_PARAMS).size)
    return {
        "widths": list(widths),
        "parameters": count_parameters(model),
        "onnx_bytes": len(data),
        "windows_per_s": round(wps, 1),
        "ms_per_batch": round(1000 * elapsed / runs, 2),
        "ms_per_vsb_signal": round(1000 * n_windows / wps, 1),
        "timed_batches": runs,
    }


def _widths(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['nproc']} CPU(s), {m['cpu_model']}; onnxruntime {m['onnxruntime']}, "
        f"{report['threads']} intra-op threads, batch {report['batch']} x {report['window']}; "
        f"1-min load average at start {m['loadavg_1m']:.2f} (the cores are shared).",
        "",
        "| widths | parameters | ONNX size | windows/s | ms per 800k signal "
        "| event F1 | SNR<0 F1 | pair F1 | train F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        acc = row.get("accuracy") or {}
        cells = [f"{acc[k]:.3f}" if k in acc else "-" for k in ("f1", "snr<0", "pair", "train")]
        lines.append(
            f"| {','.join(map(str, row['widths']))} | {row['parameters']:,} "
            f"| {row['onnx_bytes'] / 1e6:.2f} MB "
            f"| {row['windows_per_s']:.0f} | {row['ms_per_vsb_signal']:.0f} | {' | '.join(cells)} |"
        )
    return "\n".join(lines) + "\n"


def _accuracy(path: Path) -> dict[str, float]:
    model = json.loads(path.read_text())["detectors"]["model"]
    picks = {"f1": "all", "snr<0": "snr:snr<0", "pair": "interference:pair", "train": "interference:train"}
    return {k: model[b]["f1"] for k, b in picks.items() if b in model}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.bench_widths", description=__doc__.split("\n")[0])
    p.add_argument(
        "--widths", nargs="+", type=_widths, default=[(8, 16, 32, 64), (16, 32, 64, 128), (64, 128, 256, 512)]
    )
    p.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="WIDTHS=EVAL_JSON",
        help="accuracy of a trained width, from export.evaluate's JSON",
    )
    p.add_argument("--window", type=int, default=DEFAULT_PARAMS.window)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, required=True, help="writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    accuracy = {_widths(w): _accuracy(Path(f)) for w, _, f in (e.partition("=") for e in args.eval)}
    report: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "batch": args.batch,
        "window": args.window,
        "rows": [],
    }
    for widths in args.widths:
        row = bench_width(
            widths, window=args.window, batch=args.batch, threads=args.threads, seconds=args.seconds
        )
        row["accuracy"] = accuracy.get(widths)
        report["rows"].append(row)
        print(
            f"{widths}: {row['windows_per_s']:.0f} windows/s, {row['ms_per_vsb_signal']:.0f} ms/800k signal"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
