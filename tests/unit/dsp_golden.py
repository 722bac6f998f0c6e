"""Golden pre/post-processing answers: regions, stats and AC fits on simulator signals, and the
deterministic stand-in model that produced them (no network: it checks the signal code, not weights).

`tests/data/dsp_golden.json` was written by the pipeline as it stood before the pre/post speed-up (commit
f92dae0, `python -m tests.unit.dsp_golden`); tests/unit/test_dsp_speed.py holds today's code to it.
Regenerate it only for an intended change of results, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.sim.simulator import random_config, simulate
from gateway.dsp.params import SEED_PARAMS, ProcessingParams
from gateway.dsp.phase import estimate_ac_phase
from gateway.dsp.processing import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "dsp_golden.json"
# The shipped v1 processing at the time the golden file was written (config.pbtxt may change later).
SHIPPED_V1 = ProcessingParams.from_dict(
    {
        "align_last_window": True,
        "carrier_threshold": 8.0,
        "clip": None,
        "halo": 64,
        "highpass_wn": 0.02,
        "hop": 896,
        "mad_scale": 4.0,
        "max_input": 20.0,
        "merge_gap": 3,
        "min_region_samples": 3,
        "noise_floor": 0.001,
        "normalisation": "signal_mad",
        "valid_threshold": 0.0,
    }
)
PROFILES = {"shipped": (SHIPPED_V1, 0.6), "seed": (SEED_PARAMS, 0.45)}


def stand_in_model(level: float) -> Callable[[np.ndarray], np.ndarray]:
    """A fixed smooth function of each sample's |x| (a sigmoid around `level`): regions where pulses are."""
    return lambda w: (1.0 / (1.0 + np.exp(-8.0 * (np.abs(w) - level)))).astype(np.float32)


def cases() -> list[tuple[str, np.ndarray]]:
    """Signals of every regime: 3 whole 800k VSB cycles, short mixed ones, seed-like 7,920 samples."""
    out = []
    for i in range(3):
        sim = simulate(random_config(np.random.default_rng(100 + i), regime="vsb"), seed=100 + i)
        out.append((f"vsb{i}", sim.signal))
    for i in range(8):
        rng = np.random.default_rng(200 + i)
        n = int(rng.integers(4096, 40_000))
        sim = simulate(random_config(rng, regime="mixed", n_samples=n), seed=200 + i)
        out.append((f"mixed{i}", sim.signal))
    for i in range(3):
        sim = simulate(random_config(np.random.default_rng(300 + i), regime="seed", n_samples=7920), 300 + i)
        out.append((f"seed{i}", sim.signal))
    return out


def answers(params: ProcessingParams, level: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, x in cases():
        (res,) = run_pipeline([x], params, stand_in_model(level))
        fit = estimate_ac_phase(x)
        out[name] = {
            "valid": res.valid,
            "regions": [[r.start, r.end, r.peak_index] for r in res.regions],
            "mean_score": [r.mean_score for r in res.regions],
            "peak_amplitude": [r.peak_amplitude for r in res.regions],
            "stats": [res.stats.max_amplitude, res.stats.mean_amplitude, res.stats.std_amplitude],
            "ac": None if fit is None else [fit.samples_per_cycle, fit.phase0_rad, fit.amplitude, fit.r2],
        }
    return out


def main() -> int:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({k: answers(*p) for k, p in PROFILES.items()}) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
