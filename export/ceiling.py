"""An optimistic ceiling on event F1 for a simulated set: a genie matched-filter detector.

No detector can beat an ideal matched filter at finding a known pulse in white noise, so this one is given
every advantage a real detector lacks:
- it knows the noise sigma and the exact waveform of every PD pulse in the signal;
- it sees only the PD pulses plus the white noise: no AC, carriers, interference pairs/trains or int8
  rounding;
- it correlates the signal with a bank (every true waveform plus GENERIC_SHAPES generic PD shapes),
  normalised so that noise alone gives N(0, 1), and keeps the largest |output| per sample;
- a pulse counts as found when that output exceeds T anywhere within its support +- collar;
- false positives are counted on the noise alone (peaks above T, non-maximum suppression over
  +-NMS_RADIUS samples), so a strong pulse's side lobes are never charged against it;
- the threshold T is picked after the fact for each signal, the one with the fewest errors (false
  positives + misses), as a detector that adapts to each signal perfectly would.

Signals without white noise are scored as perfect. The same genie with one threshold for the whole set
is reported too ("global"); a real detector can beat that one on buckets where it can afford a higher
threshold, so the per-signal figure is the bound. With know_shapes=False the genie loses only the
knowledge of each pulse's waveform and searches the generic bank alone ("shape-blind"): the closest of
these idealised detectors to a real one. Its per-signal figure is a bound; its one-threshold figure is a
reference for an ideal fixed-threshold detector, which a detector that adapts to each signal can beat.
None of them is a detector for the gateway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.signal import correlate

from export.sim.scoring import event_scores
from export.sim.simulator import SimulatedSignal, simulate
from export.sim.waveforms import pd_waveform

THRESHOLDS: tuple[float, ...] = (3.5, 4.0, 4.25, 4.5, 4.75, 5.0, 5.25, 5.5, 6.0, 7.0, 8.0)
GENERIC_SHAPES = 24
NMS_RADIUS = 10
BANK_SEED = 5


def generic_bank(n: int = GENERIC_SHAPES, seed: int = BANK_SEED) -> list[np.ndarray]:
    """Half damped-exponential, half damped-oscillatory unit PD shapes from the simulator."""
    rng = np.random.default_rng(seed)
    return [pd_waveform(rng, "exp" if i < n // 2 else "osc")[0] for i in range(n)]


def _detection_statistic(x: np.ndarray, bank: Sequence[np.ndarray], sigma: float) -> np.ndarray:
    z = np.zeros(x.size)
    for w in bank:
        c = correlate(x, w, mode="same", method="fft") / (sigma * float(np.linalg.norm(w)))
        np.maximum(z, np.abs(c), out=z)
    return z


def _count_peaks(z: np.ndarray, threshold: float, radius: int) -> int:
    """Peaks above `threshold`, strongest first, each suppressing its +-radius neighbourhood."""
    idx = np.flatnonzero(z > threshold)
    taken = np.zeros(z.size, dtype=bool)
    peaks = 0
    for k in idx[np.argsort(-z[idx], kind="stable")]:
        if not taken[k]:
            taken[max(0, k - radius) : k + radius + 1] = True
            peaks += 1
    return peaks


def genie_counts_both(
    sim: SimulatedSignal,
    collar: int,
    thresholds: Sequence[float] = THRESHOLDS,
    bank: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp, fn) per threshold on one signal for the genie and for the shape-blind genie, each an int
    array [len(T), 3]. The blind bank is part of the genie's, so both come from one set of correlations."""
    n_true = len(sim.pulses)
    if sim.noise_std <= 0:  # no white noise: the genie finds every pulse and nothing else
        out = np.zeros((len(thresholds), 3), dtype=np.int64)
        out[:, 0] = n_true
        return out, out.copy()
    comps = simulate(sim.config, sim.seed, return_components=True).components
    assert comps is not None
    pd, noise = comps["pd"], comps["noise"]
    generic = list(generic_bank() if bank is None else bank)
    true = [pd[p.start : p.end] / float(np.max(np.abs(pd[p.start : p.end]))) for p in sim.pulses]
    blind_signal = _detection_statistic(pd + noise, generic, sim.noise_std)
    blind_noise = _detection_statistic(noise, generic, sim.noise_std)
    # the genie's knowledge: every true waveform on top of the generic bank
    genie_signal = np.maximum(blind_signal, _detection_statistic(pd + noise, true, sim.noise_std))
    genie_noise = np.maximum(blind_noise, _detection_statistic(noise, true, sim.noise_std))

    def counts(z_signal: np.ndarray, z_noise: np.ndarray) -> np.ndarray:
        out = np.zeros((len(thresholds), 3), dtype=np.int64)
        best = [float(np.max(z_signal[max(0, p.start - collar) : p.end + collar])) for p in sim.pulses]
        for i, t in enumerate(thresholds):
            tp = sum(b > t for b in best)
            out[i] = (tp, _count_peaks(z_noise, t, NMS_RADIUS), n_true - tp)
        return out

    return counts(genie_signal, genie_noise), counts(blind_signal, blind_noise)


def genie_counts(
    sim: SimulatedSignal,
    collar: int,
    thresholds: Sequence[float] = THRESHOLDS,
    bank: Sequence[np.ndarray] | None = None,
    *,
    know_shapes: bool = True,
) -> np.ndarray:
    """(tp, fp, fn) of the genie (or, know_shapes=False, the shape-blind genie) on one signal: [len(T), 3]."""
    return genie_counts_both(sim, collar, thresholds, bank)[0 if know_shapes else 1]


def _scores(counts: np.ndarray, n_signals: int) -> dict[str, Any]:
    tp, fp, fn = map(int, counts)
    return {
        **event_scores(tp, fp, fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_true": tp + fn,
        "n_pred": tp + fp,
        "n_signals": n_signals,
    }


def _summarise(
    counts: Sequence[np.ndarray],
    signal_keys: Sequence[list[str]],
    thresholds: Sequence[float],
    know_shapes: bool,
) -> dict[str, Any]:
    adaptive: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))
    per_t: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((len(thresholds), 3), dtype=np.int64))
    n_signals: dict[str, int] = defaultdict(int)
    for c, keys in zip(counts, signal_keys, strict=True):
        # fewest errors; on a tie the higher threshold (later index) wins
        best = min(range(len(thresholds)), key=lambda i: (int(c[i, 1] + c[i, 2]), -i))
        for key in dict.fromkeys(["all", *keys]):
            adaptive[key] += c[best]
            per_t[key] += c
            n_signals[key] += 1
    total = per_t["all"]
    by_t = {float(t): event_scores(*map(int, total[i])) for i, t in enumerate(thresholds)}
    # best F1; on a tie the higher threshold wins, as in the per-signal pick
    g = max(range(len(thresholds)), key=lambda i: (by_t[float(thresholds[i])]["f1"], i))
    return {
        "buckets": {key: _scores(c, n_signals[key]) for key, c in adaptive.items()},
        "global": {"threshold": float(thresholds[g]), **_scores(total[g], n_signals["all"])},
        "global_buckets": {key: _scores(c[g], n_signals[key]) for key, c in per_t.items()},
        "by_threshold": by_t,
        "know_shapes": know_shapes,
    }


def ceilings(
    signals: Sequence[SimulatedSignal],
    keys: Callable[[SimulatedSignal], list[str]],
    collar: int,
    thresholds: Sequence[float] = THRESHOLDS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(genie, shape-blind genie) scores on `signals`, overall and per bucket (`keys`), in one pass.

    Each is {"buckets": {bucket: scores, threshold picked per signal}, "global": {"threshold", scores with
    the one best threshold for the whole set}, "global_buckets": {bucket: scores at that threshold},
    "by_threshold": {T: overall scores}, "know_shapes": bool}. The shape-blind genie has the true waveforms
    taken out of its bank: it searches only the generic shapes, like a detector that knows the pulse
    family but not each pulse.
    """
    bank = generic_bank()
    both = [genie_counts_both(sim, collar, thresholds, bank) for sim in signals]
    signal_keys = [keys(sim) for sim in signals]
    genie = _summarise([g for g, _ in both], signal_keys, thresholds, True)
    blind = _summarise([b for _, b in both], signal_keys, thresholds, False)
    return genie, blind


def ceiling(
    signals: Sequence[SimulatedSignal],
    keys: Callable[[SimulatedSignal], list[str]],
    collar: int,
    thresholds: Sequence[float] = THRESHOLDS,
    *,
    know_shapes: bool = True,
) -> dict[str, Any]:
    """The genie's (know_shapes=False: the shape-blind genie's) scores; see `ceilings`."""
    return ceilings(signals, keys, collar, thresholds)[0 if know_shapes else 1]
