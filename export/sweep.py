"""Choose post-processing on the VALIDATION set: run the network once, score many region rules.

    python -m export.sweep --checkpoint runs/ft2/checkpoint.pt --seed 777 --n-signals 200 --n-vsb-full 4 \
        --profile family --variant threshold=0.5 --variant threshold=0.7,twin_window=8 --out runs/sweep
    python -m export.sweep --onnx model_repository/pd_unet1d/1/model.onnx ...  (processing: its model card's)

Each --variant is KEY=JSON[,KEY=JSON...] over the model's processing params; only the region stage (threshold,
region filters, rejection rules) may differ, since the probabilities are computed once. Never run it on the
held-out or cross-generator sets: they are for the final report only.

--pair-sigmas A adds to every whole 800,000-sample signal one opposite-polarity pair, A times the signal's
noise sigma, at least 3,000 samples from any PD pulse (unlabelled, like all interference): does one large
event far away change detection elsewhere? (It did, through the whole-signal input cap: `max_input_block`.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from export.evaluate import COLLAR, _requests, bucket_keys, card_params, heldout_set, ort_infer
from export.sim import simulator
from export.sim.scoring import Accumulator, regions_to_mask
from gateway.dsp.params import ProcessingParams, parse_overrides
from gateway.dsp.phase import AcFit, estimate_ac_phase
from gateway.dsp.processing import _highpass, exact_median, preprocess_batch, run_pipeline
from gateway.dsp.regions import find_region_arrays

REGION_STAGE = {
    "threshold",
    "long_signal_threshold",
    "long_signal_samples",
    "min_region_peak",
    "min_region_samples",
    "merge_gap",
    "twin_window",
    "twin_ratio",
    "phase_window",
    "phase_min_r2",
}


def sweep(signals: list, params: ProcessingParams, infer: Any, variants: list[dict[str, Any]]) -> list[dict]:
    """Per variant: overall P/R/F1, false regions on PD-free signals and on whole 800k signals."""
    probs: list[tuple[np.ndarray, np.ndarray, AcFit | None] | None] = [None] * len(signals)
    for group in _requests(signals, 8):
        batch = [signals[i].signal for i in group]
        results = run_pipeline(batch, params, infer, keep_probability=True)
        pre, _ = preprocess_batch(batch, params)
        for i, res, x in zip(group, results, pre, strict=True):
            if res.valid and res.probability is not None:
                probs[i] = (res.probability, x, estimate_ac_phase(signals[i].signal))
    rows = []
    for changes in variants:
        if set(changes) - REGION_STAGE:
            raise ValueError(f"only region-stage params may vary: {sorted(set(changes) - REGION_STAGE)}")
        p = params.replace(**changes)
        acc = Accumulator(COLLAR)
        for sim, pr in zip(signals, probs, strict=True):
            if pr is None:
                pred: list[tuple[int, int]] = []
            else:
                r = find_region_arrays(pr[0], pr[1], p, pr[2])
                pred = list(zip(r.start.tolist(), r.end.tolist(), strict=True))
            n = sim.signal.size
            acc.add(bucket_keys(sim), sim.events, pred, sim.mask, regions_to_mask(pred, n))
        s = acc.summary()
        row = {"variant": changes, **{k: round(s["all"][k], 4) for k in ("precision", "recall", "f1")}}
        for key in ("pd:free", "regime:vsb_full", "interference:pair", "interference:train"):
            if key in s:
                row[key] = {
                    k: round(s[key][k], 4) if isinstance(s[key][k], float) else s[key][k]
                    for k in ("f1", "precision", "recall", "fp", "n_signals")
                }
        rows.append(row)
    return rows


def with_far_pair(
    sim: Any, sigmas: float, params: ProcessingParams, rng: np.random.Generator
) -> tuple[Any, float]:
    """`sim` plus one opposite-polarity pair (a PD-like pulse, then its 0.9x inverted twin 6 samples later)
    of `sigmas` x the noise sigma of its high-passed signal, >= 3,000 samples from any labelled pulse, and
    the pair actually added in those sigmas (half its peak to peak). An int8 recording stays one: the pair
    is clipped at its rails, so on a noisy signal it is smaller than asked."""
    x = sim.signal.astype(np.float64)
    hp = _highpass(x.astype(np.float32), params)
    sigma = exact_median(np.abs(hp - exact_median(hp))) / 0.6745
    for _ in range(100):
        at = int(rng.integers(1000, x.size - 1000))
        if not sim.mask[max(at - 3000, 0) : at + 46 + 3000].any():
            break
    else:
        raise ValueError("no place 3,000 samples from every PD pulse for the far pair")
    t = np.arange(40)
    pulse = np.exp(-t / 4.0) * (1.0 - np.exp(-t))
    pulse *= sigmas * sigma / pulse.max()
    x[at : at + 40] += pulse
    x[at + 6 : at + 46] -= 0.9 * pulse
    if np.array_equal(sim.signal, np.round(sim.signal)):  # an int8 recording stays one
        x = np.round(np.clip(x, -128, 127))
    out = dataclasses.replace(sim, signal=x.astype(sim.signal.dtype, copy=False))
    d = out.signal.astype(np.float64) - sim.signal.astype(np.float64)
    added = float((d.max() - d.min()) / 2.0 / sigma) if sigma > 0 else float("inf")
    return out, added


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pd-gateway sweep", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path)
    src.add_argument("--onnx", type=Path, help="an exported model.onnx; its processing from model_card.json")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override one processing param")
    p.add_argument("--variant", action="append", required=True, help="KEY=JSON[,KEY=JSON...]")
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--n-signals", type=int, default=200)
    p.add_argument("--n-vsb-full", type=int, default=4)
    p.add_argument("--profile", choices=simulator.PROFILES, default="short")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pair-sigmas", type=float, default=0.0, help="a large far pair in each whole signal")
    p.add_argument("--out", type=Path, required=True, help="writes <out>.json")
    args = p.parse_args(argv)
    if args.seed == 20261123:
        raise SystemExit("that is the held-out seed: sweep on validation only")
    if args.onnx is not None:
        params = card_params(args.onnx)
        onnx_bytes = args.onnx.read_bytes()
    else:
        from export.export_onnx import to_onnx_bytes  # torch only here
        from export.model import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
        params = ProcessingParams.from_dict(meta["processing"])
        onnx_bytes = to_onnx_bytes(model, params.window, 17)
    params = params.replace(**parse_overrides(args.set or []))
    infer = ort_infer(onnx_bytes, args.threads)
    signals = heldout_set(args.n_signals, args.n_vsb_full, args.seed, args.profile)
    added: list[float] = []
    if args.pair_sigmas > 0:
        rng = np.random.default_rng(5)
        for i, sim in enumerate(signals):
            if sim.signal.size >= 800_000:
                signals[i], size = with_far_pair(sim, args.pair_sigmas, params, rng)
                added.append(round(size, 1))
        print(f"far pairs added, in noise sigmas (int8 rails clip them): {added}")
    # KEY=JSON items split at commas that start the next KEY= (a JSON list has commas of its own)
    variants = [parse_overrides(re.split(r",(?=[a-z_0-9]+=)", v)) for v in args.variant]
    rows = sweep(signals, params, infer, variants)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"argv": argv or sys.argv[1:], "rows": rows}
    if added:
        report["far_pair_sigmas"] = added
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2))
    for row in rows:
        extra = "  ".join(f"{k} fp {row[k]['fp']}" for k in ("pd:free", "regime:vsb_full") if k in row)
        print(
            f"{json.dumps(row['variant']):>50}  P {row['precision']:.3f} R {row['recall']:.3f} "
            f"F1 {row['f1']:.3f}  {extra}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
