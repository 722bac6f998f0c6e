"""Score a model on the cross-generator set (export.crossgen), per regime, next to the held-out set.

    python -m export.evaluate ... --cross 300,48      # 300 short float signals, 48 whole 800k int8 ones

Evaluation only: training, model selection and threshold choice never import this module or
export.crossgen (tests/unit/test_crossgen.py checks the imports). Per regime it reports event precision,
recall, F1 (one-to-one within CROSS_COLLAR samples, the collar of the measurement in issue 11), per
bucket (PD presence, peak SNR, interference kinds present), false regions per PD-free signal, and for
each interference kind the fraction of events that produce a region (a region overlapping the event's
span widened by the collar).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from export.crossgen.generator import REGIMES, CrossSignal, cross_set
from export.sim.scoring import Accumulator, regions_to_mask
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import run_pipeline

CROSS_SEED = 20261201
CROSS_COLLAR = 16
PEAK_SNR_EDGES = ((0.0, 12.0, "peak_snr<12"), (12.0, 25.0, "peak_snr12-25"), (25.0, math.inf, "peak_snr>=25"))


def _keys(sig: CrossSignal) -> list[str]:
    keys = ["pd:present" if sig.events else "pd:free"]
    keys += [next(f"{k}" for lo, hi, k in PEAK_SNR_EDGES if lo <= sig.peak_snr < hi)]
    kinds = sorted({k for k, _, _ in sig.interference})
    keys += [f"interference:{k}" for k in kinds] or ["interference:none"]
    return keys


def _hits(spans: list[tuple[int, int]], regions: list[tuple[int, int]], collar: int) -> int:
    if not spans or not regions:
        return 0
    r = np.asarray(regions)
    return sum(bool(np.any((r[:, 0] < b + collar) & (r[:, 1] > a - collar))) for a, b in spans)


def evaluate_cross(
    params: ProcessingParams,
    infer: Any,
    n_short: int,
    n_long: int,
    *,
    seed: int = CROSS_SEED,
    collar: int = CROSS_COLLAR,
    request_size: int = 8,
) -> dict[str, Any]:
    """{regime: {"scores": Accumulator summary, "interference": {kind: {...}}, "false_per_pd_free": x}}."""
    out: dict[str, Any] = {"seed": seed, "collar": collar}
    for regime, count in zip(REGIMES, (n_short, n_long), strict=True):
        if count <= 0:
            continue
        signals = cross_set(regime, count, seed)
        size = 1 if regime == "long" else request_size
        acc = Accumulator(collar)
        hit: dict[str, list[int]] = {}
        starts = range(0, len(signals), size)
        for k in tqdm(starts, desc=f"cross {regime}", unit="request", disable=not sys.stderr.isatty()):
            group = signals[k : k + size]
            results = run_pipeline([s.signal for s in group], params, infer)
            for sig, res in zip(group, results, strict=True):
                pred = [(r.start, r.end) for r in res.regions] if res.valid else []
                n = sig.signal.size
                acc.add(
                    _keys(sig), sig.events, pred, regions_to_mask(sig.events, n), regions_to_mask(pred, n)
                )
                for kind in {k for k, _, _ in sig.interference}:
                    spans = [(a, b) for kk, a, b in sig.interference if kk == kind]
                    h = hit.setdefault(kind, [0, 0])
                    h[0] += _hits(spans, pred, collar)
                    h[1] += len(spans)
        summary = acc.summary()
        free = summary.get("pd:free")
        out[regime] = {
            "n_signals": len(signals),
            "scores": summary,
            "interference": {
                kind: {"events": t, "with_region": h, "fraction": h / t if t else 0.0}
                for kind, (h, t) in sorted(hit.items())
            },
            "pd_free_signals": int(free["n_signals"]) if free else 0,
            "false_per_pd_free": free["fp"] / free["n_signals"] if free else 0.0,
        }
    return out


def _f(v: float) -> str:
    return f"{v:.3f}"


def cross_markdown(cross: dict[str, Any], heldout: dict[str, Any] | None = None) -> str:
    """The cross-generator tables; `heldout` (the model's held-out summary) adds the side-by-side row."""
    lines = [
        "## Cross-generator set (export.crossgen: independent code, evaluation only)",
        "",
        f"Seed {cross['seed']}; collar {cross['collar']} samples. short = 7,920-sample float signals like "
        "seed 000's; long = whole 800,000-sample int8 signals (VSB format).",
        "",
        "| set | signals | true | pred | precision | recall | F1 | false regions per PD-free signal "
        "| pairs with a region |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if heldout is not None:
        a = heldout["all"]
        free = heldout.get("pd:free", {"fp": 0, "n_signals": 1})
        lines.append(
            f"| own held-out (export.sim) | {a['n_signals']} | {a['n_true']} | {a['n_pred']} "
            f"| {_f(a['precision'])} | {_f(a['recall'])} | {_f(a['f1'])} "
            f"| {free['fp'] / free['n_signals']:.2f} | - |"
        )
    for regime in REGIMES:
        if regime not in cross:
            continue
        r = cross[regime]
        a = r["scores"]["all"]
        pair = r["interference"].get("pair", {"fraction": 0.0, "with_region": 0, "events": 0})
        lines.append(
            f"| cross {regime} | {a['n_signals']} | {a['n_true']} | {a['n_pred']} | {_f(a['precision'])} "
            f"| {_f(a['recall'])} | {_f(a['f1'])} | {r['false_per_pd_free']:.2f} "
            f"| {_f(pair['fraction'])} ({pair['with_region']}/{pair['events']}) |"
        )
    for regime in REGIMES:
        if regime not in cross:
            continue
        r = cross[regime]
        lines += [
            "",
            f"### cross {regime}: per bucket",
            "",
            "| bucket | signals | true | pred | P | R | F1 |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for key in sorted(k for k in r["scores"] if k != "all"):
            b = r["scores"][key]
            lines.append(
                f"| {key} | {b['n_signals']} | {b['n_true']} | {b['n_pred']} | {_f(b['precision'])} "
                f"| {_f(b['recall'])} | {_f(b['f1'])} |"
            )
        lines += ["", "| interference kind | events | with a region | fraction |", "|---|---|---|---|"]
        for kind, v in r["interference"].items():
            lines.append(f"| {kind} | {v['events']} | {v['with_region']} | {_f(v['fraction'])} |")
    return "\n".join(lines) + "\n"
