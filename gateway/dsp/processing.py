"""Signal pre/post-processing shared by the gateway, evaluation and export (pure numpy/scipy, no torch).

The flow for a batch of signals is::

    preprocess_batch -> make_windows -> model -> stitch -> find_regions

Every tunable belongs to a model version (`gateway.dsp.params.ProcessingParams`, stored in the Triton
config), so the same code serves the seed-000 checkpoints (`SEED_PARAMS`, reproduced exactly) and our own
models. Carrier removal is in gateway.dsp.carriers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, filtfilt

from gateway.dsp.carriers import remove_carriers
from gateway.dsp.params import ProcessingParams
from gateway.dsp.regions import Region, RegionArrays, find_region_arrays


@dataclass(frozen=True)
class SignalStats:
    max_amplitude: float
    mean_amplitude: float
    std_amplitude: float


def _highpass(x: np.ndarray, params: ProcessingParams) -> np.ndarray:
    if params.highpass_wn is None or x.size == 0:
        return x.astype(np.float64)
    b, a = butter(params.highpass_order, params.highpass_wn, "high")
    padlen = min(3 * max(len(a), len(b)), x.size - 1)  # scipy's default, shrunk so any length >= 1 works
    return filtfilt(b, a, x, padlen=padlen)


def _robust_scale(x: np.ndarray, mad_scale: float) -> float:
    """mad_scale x the noise sigma estimated by the MAD; the max |x| when the MAD is 0 (flat or quantised)."""
    if x.size == 0:
        return 1.0
    sigma = float(np.median(np.abs(x - np.median(x)))) / 0.6745
    if sigma > 0:
        return mad_scale * sigma
    peak = float(np.max(np.abs(x)))
    return peak if peak > 0 else 1.0


def _noise_floor(raw: np.ndarray, fraction: float | None) -> float:
    """The lowest noise sigma to assume for `raw`: `fraction` x max |raw|, and one count for integer data."""
    if fraction is None or raw.size == 0:
        return 0.0
    floor = fraction * float(np.max(np.abs(raw)))
    if np.array_equal(raw, np.round(raw)) and np.any(raw):
        floor = max(floor, 1.0)  # quantisation steps of one count are not PD pulses
    return floor


def preprocess_batch(
    signals: Sequence[np.ndarray], params: ProcessingParams
) -> tuple[list[np.ndarray], np.ndarray]:
    """Filter, clip and normalise each 1-D signal; returns float32 signals and a boolean `valid` array.

    "batch_max" divides every signal by the largest |value| in the whole batch, like seed 000, so a
    quiet signal next to a loud one becomes invalid.
    """
    out, floors = [], []
    for raw in signals:
        raw32 = np.asarray(raw, dtype=np.float32)
        floors.append(_noise_floor(raw32, params.noise_floor))
        x = _highpass(raw32, params)
        if params.carrier_threshold is not None:
            x = remove_carriers(x, params.carrier_threshold)
        if params.clip is not None:
            x = np.clip(x, -params.clip, params.clip)
        out.append(x)
    if params.normalisation == "batch_max":
        peak = max((float(np.max(np.abs(x))) for x in out if x.size), default=0.0)
        out = [x / peak if peak > 0 else x for x in out]
    elif params.normalisation == "signal_mad":
        out = [
            x / max(_robust_scale(x, params.mad_scale), params.mad_scale * floor)
            for x, floor in zip(out, floors, strict=True)
        ]
    elif params.normalisation == "signal_max":
        out = [x / m if x.size and (m := float(np.max(np.abs(x)))) > 0 else x for x in out]
    if params.max_input is not None:
        cap = params.max_input
        out = [x * (cap / m) if x.size and (m := float(np.max(np.abs(x)))) > cap else x for x in out]
    if params.soft_clip is not None:  # bounded input whatever the pulse size: c * tanh(x / c)
        c = params.soft_clip
        out = [c * np.tanh(x / c) for x in out]
    pre = [x.astype(np.float32) for x in out]
    valid = np.array(
        [x.size > 0 and float(np.max(np.abs(x))) > params.valid_threshold for x in pre], dtype=bool
    )
    return pre, valid


def window_starts(n_samples: int, params: ProcessingParams) -> np.ndarray:
    """Start index of every window; the last one may run past the end (zero padded) unless aligned."""
    if n_samples <= params.window:
        return np.zeros(1, dtype=np.int64)
    count = math.ceil((n_samples - params.window) / params.hop) + 1
    starts = np.arange(count, dtype=np.int64) * params.hop
    if params.align_last_window:
        starts[-1] = n_samples - params.window
    return starts


def make_windows(x: np.ndarray, params: ProcessingParams) -> np.ndarray:
    """Cut a preprocessed signal into [n_windows, window] float32 windows (zero padded at the end)."""
    starts = window_starts(x.size, params)
    padded = np.zeros(int(starts[-1]) + params.window, dtype=np.float32)
    padded[: x.size] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, params.window)
    return np.ascontiguousarray(view[starts])


def stitch(probs: np.ndarray, n_samples: int, params: ProcessingParams) -> np.ndarray:
    """Average overlapping window probabilities back into one [n_samples] float32 array.

    With a halo, the outer `halo` samples of each window vote only where no other window covers them
    (the signal's own edges), since a convolutional model is least reliable near a window's border.
    """
    starts = window_starts(n_samples, params)
    if probs.shape != (starts.size, params.window):
        raise ValueError(f"expected probabilities of shape {(starts.size, params.window)}, got {probs.shape}")
    total = int(starts[-1]) + params.window
    acc = np.zeros(total, dtype=np.float64)
    weight = np.zeros(total, dtype=np.float64)
    inner = np.ones(params.window, dtype=np.float64)
    if params.halo:
        inner[: params.halo] = inner[-params.halo :] = 1e-6  # tiny: breaks ties only at the signal edges
    for i, s in enumerate(starts):
        w = inner
        if params.halo and (i == 0 or i == starts.size - 1):
            w = inner.copy()
            if i == 0:
                w[: params.halo] = 1.0
            if i == starts.size - 1:
                w[-params.halo :] = 1.0
        acc[s : s + params.window] += probs[i] * w
        weight[s : s + params.window] += w
    return (acc[:n_samples] / weight[:n_samples]).astype(np.float32)


def signal_stats(x_pre: np.ndarray) -> SignalStats:
    """Seed 000's stats: max and mean of |x|, standard deviation of x (preprocessed units)."""
    if x_pre.size == 0:
        return SignalStats(0.0, 0.0, 0.0)
    a = np.abs(x_pre, dtype=np.float64)
    return SignalStats(float(a.max()), float(a.mean()), float(np.std(x_pre, dtype=np.float64)))


@dataclass
class SignalResult:
    """What the pipeline found in one signal."""

    valid: bool
    stats: SignalStats
    regions: list[Region] = field(default_factory=list)
    n_windows: int = 0
    probability: np.ndarray | None = None


def postprocess(
    probs: np.ndarray, x_pre: np.ndarray, params: ProcessingParams
) -> tuple[np.ndarray, RegionArrays]:
    """Stitch one signal's window probabilities ([n_windows, 1, W] or [n_windows, W]) and find regions."""
    prob = stitch(probs.reshape(-1, params.window), x_pre.size, params)
    return prob, find_region_arrays(prob, x_pre, params)


def run_pipeline(
    signals: Sequence[np.ndarray],
    params: ProcessingParams,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    max_batch_size: int = 64,
    keep_probability: bool = False,
) -> list[SignalResult]:
    """Offline reference pipeline: `infer` maps float32 [N, 1, W] windows to probabilities of that shape.

    The gateway runs the same steps, with Triton instead of `infer`.
    """
    pre, valid = preprocess_batch(signals, params)
    windows = [
        make_windows(x, params) if ok else np.zeros((0, params.window), np.float32)
        for x, ok in zip(pre, valid, strict=True)
    ]
    flat = np.concatenate(windows)[:, None, :] if windows else np.zeros((0, 1, params.window), np.float32)
    probs = np.concatenate(
        [infer(flat[i : i + max_batch_size]) for i in range(0, len(flat), max_batch_size)]
        or [np.zeros((0, 1, params.window), np.float32)]
    )
    results, offset = [], 0
    for x, ok, win in zip(pre, valid, windows, strict=True):
        stats = signal_stats(x)
        if not ok:
            results.append(SignalResult(valid=False, stats=stats))
            continue
        prob, regions = postprocess(probs[offset : offset + len(win)], x, params)
        offset += len(win)
        results.append(
            SignalResult(True, stats, regions.to_list(), len(win), prob if keep_probability else None)
        )
    return results
