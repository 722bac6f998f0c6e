"""How a model behaves when the noise is not white Gaussian: coloured (AR(1) low-pass) and heavy-tailed.

Own simulator only (`SimConfig.noise_pole` / `noise_df`: the same noise variance as the white noise they
replace, so the SNR is unchanged), no interference, so every region on a PD-free signal is a noise alarm:
- false regions per PD-free whole 800,000-sample int8 VSB-format signal;
- precision / recall / F1 on short signals with PD at a fixed SNR (mixed regime).
A network that has only seen white Gaussian noise takes smooth noise bumps and rare large noise samples for
PD. Not a test set: nothing here chooses a run or a threshold.

    python -m export.noise_robustness --onnx model_repository/pd_unet1d/1/model.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.evaluate import card_params, ort_infer, predict_model
from export.sim import simulator
from export.sim.scoring import match_events
from gateway.dsp.params import ProcessingParams

#: name -> (noise_pole, noise_df)
NOISES: dict[str, tuple[float, float | None]] = {
    "white": (0.0, None),
    "coloured 0.5": (0.5, None),
    "coloured 0.8": (0.8, None),
    "student-t 3": (0.0, 3.0),
}


def _signal(
    regime: str, seed: int, noise: tuple[float, float | None], **kw: Any
) -> simulator.SimulatedSignal:
    cfg = simulator.random_config(np.random.default_rng(seed), regime=regime, interference=(), **kw)
    pole, df = noise
    return simulator.simulate(dataclasses.replace(cfg, noise_pole=pole, noise_df=df), seed + 50_000)


def noise_robustness(
    infer: Callable[[np.ndarray], np.ndarray],
    params: ProcessingParams,
    *,
    long_signals: int = 4,
    short_signals: int = 60,
    snr_db: float = 10.0,
    collar: int = 10,
) -> dict[str, dict[str, float]]:
    """{noise: {false_per_800k, precision, recall, f1}}; the same seeds (signals) for every noise."""
    out: dict[str, dict[str, float]] = {}
    for name, noise in NOISES.items():
        longs = [_signal("vsb", 7000 + i, noise, n_samples=800_000, n_pd=0) for i in range(long_signals)]
        shorts = [_signal("mixed", 8000 + i, noise, snr_db=snr_db) for i in range(short_signals)]
        false = sum(len(p) for p in predict_model(longs, params, infer, 1))
        tp = fp = fn = 0
        for sim, pred in zip(shorts, predict_model(shorts, params, infer, 8), strict=True):
            t, f, n = match_events(sim.events, pred, collar)
            tp, fp, fn = tp + t, fp + f, fn + n
        p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
        out[name] = {
            "false_per_800k": round(false / max(1, long_signals), 2),
            "precision": round(p, 3),
            "recall": round(r, 3),
            "f1": round(2 * p * r / (p + r), 3) if p + r > 0 else 0.0,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.noise_robustness", description=__doc__.split("\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="model.onnx; processing from its model_card.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long-signals", type=int, default=4)
    p.add_argument("--short-signals", type=int, default=60)
    p.add_argument("--snr-db", type=float, default=10.0)
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = p.parse_args(argv)
    result = noise_robustness(
        ort_infer(args.onnx.read_bytes(), args.threads),
        card_params(args.onnx),
        long_signals=args.long_signals,
        short_signals=args.short_signals,
        snr_db=args.snr_db,
    )
    for name, row in result.items():
        print(f"{name:>14}  " + "  ".join(f"{k} {v}" for k, v in row.items()))
    if args.out:
        report = {"onnx": str(args.onnx), "snr_db": args.snr_db, "result": result}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
