"""Recall of a model per PD pulse shape, at a few SNRs: which shapes a network has learned to drop.

Own simulator only (seed regime, PD pulses and white noise, no interference), every pulse of one shape:
the simulator's four PD models; damped pulses past the family's ranges (long tails, tau1 15-80 samples;
fast ringing, 0.25-0.5 cycles/sample; long ringing pulses), which the "wide" profile adds; and two shapes
no profile trains on, for diagnosis: a Mexican hat (side lobes 0.45 of the peak) and a Gaussian derivative
(a symmetric bipolar impulse, which the family profile treats as interference). Not a test set: nothing
here chooses a run or a threshold.

    python -m export.shape_recall --onnx model_repository/pd_unet1d/1/model.onnx
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np

from export.evaluate import card_params, ort_infer, predict_model
from export.sim import simulator, waveforms
from export.sim.scoring import match_events
from gateway.dsp.params import ProcessingParams

Shape = Callable[[np.random.Generator], tuple[np.ndarray, int]]


def _symmetric(fn: Callable[[np.ndarray, float], np.ndarray]) -> Shape:
    """A shape fn(t, sigma) centred at a random sub-sample offset, sigma 0.8-6 samples, unit peak."""

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        sigma = waveforms.log_uniform(rng, 0.8, 6.0)
        half = math.ceil(5.0 * sigma) + 1
        wave = fn(np.arange(2 * half + 2) - (half + rng.random()), sigma)
        k = int(np.argmax(np.abs(wave)))
        return wave / wave[k], k

    return draw


def _damped(tau: tuple[float, float], ratio: tuple[float, float], freq: tuple[float, float]) -> Shape:
    """A damped pulse with tau1 log-uniform in `tau`, tau2/tau1 and the ringing frequency uniform."""

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        tau1 = waveforms.log_uniform(rng, *tau)
        return waveforms.damped(tau1, tau1 * rng.uniform(*ratio), rng.uniform(*freq), rng.random())

    return draw


SHAPES: dict[str, Shape] = {
    **{kind: (lambda rng, kind=kind: waveforms.pd_waveform(rng, kind)) for kind in waveforms.PD_KINDS},
    # the literature's damped pulses beyond the family's ranges (profile "wide" trains on them)
    "exp_long": _damped((15.0, 80.0), (0.02, 0.45), (0.0, 0.0)),
    "osc_fast": _damped((4.0, 25.0), (0.05, 0.3), (0.25, 0.5)),
    "osc_long": _damped((25.0, 80.0), (0.02, 0.3), (0.02, 0.25)),
    "mexican_hat": _symmetric(lambda t, s: (1.0 - (t / s) ** 2) * np.exp(-0.5 * (t / s) ** 2)),
    "gauss_derivative": _symmetric(lambda t, s: -(t / s) * np.exp(-0.5 * (t / s) ** 2)),
}


def _drawing_only(draw: Shape) -> Callable[..., tuple[np.ndarray, int]]:
    """A stand-in for the simulator's pd_waveform that draws `draw` whatever it is asked for (kind, width)."""

    def pd_waveform(rng: np.random.Generator, *_args: object, **_kwargs: object) -> tuple[np.ndarray, int]:
        return draw(rng)

    return pd_waveform


def shape_recall(
    infer: Callable[[np.ndarray], np.ndarray],
    params: ProcessingParams,
    snrs: tuple[float, ...] = (5.0, 15.0, 30.0),
    signals: int = 25,
    collar: int = 16,
) -> dict[str, dict[str, float]]:
    """{shape: {snr: recall}} over `signals` seed-regime signals of 8 pulses per SNR."""
    out: dict[str, dict[str, float]] = {}
    for name, draw in SHAPES.items():
        with mock.patch.object(simulator, "pd_waveform", _drawing_only(draw)):
            sims = [
                (
                    snr,
                    simulator.simulate(
                        simulator.random_config(
                            np.random.default_rng(1000 + i),
                            regime="seed",
                            snr_db=snr,
                            interference=(),
                            n_pd=8,
                        ),
                        5000 + i,
                    ),
                )
                for snr in snrs
                for i in range(signals)
            ]
        preds = predict_model([s for _, s in sims], params, infer, 8)
        out[name] = {}
        for snr in snrs:
            tp = fn = 0
            for (s_snr, sim), pred in zip(sims, preds, strict=True):
                if s_snr == snr:
                    t, _, n = match_events(sim.events, pred, collar)
                    tp, fn = tp + t, fn + n
            out[name][f"{snr:g}"] = round(tp / max(1, tp + fn), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.shape_recall", description=__doc__.split("\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="model.onnx; processing from its model_card.json")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    result = shape_recall(ort_infer(args.onnx.read_bytes(), args.threads), card_params(args.onnx))
    for name, by_snr in result.items():
        print(f"{name:>18}  " + "  ".join(f"{snr} dB: {r:.3f}" for snr, r in by_snr.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
