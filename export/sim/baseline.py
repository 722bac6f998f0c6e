"""Classic PD detector, the baseline the model must beat: high-pass, wavelet denoise, hysteresis threshold.

1. Zero-phase Butterworth high-pass removes the AC and its harmonics.
2. db4 wavelet denoising with the universal threshold lambda = sigma*sqrt(2 ln N), where
   sigma = MEDIAN(|d1|)/0.6745 from the finest detail coefficients (the median, not the mean, so pulses
   do not inflate the noise estimate); detail coefficients are soft-thresholded.
3. Regions: runs where |denoised| > k_low*sigma that contain a sample > k_high*sigma, trimmed to where
   |denoised| > edge_fraction of the run's peak (the simulator's 5 % support), gaps <= merge_gap merged.
Every step that cannot apply to a short signal is skipped, so any length >= 1 works.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pywt
from scipy.signal import butter, sosfiltfilt

from export.sim.scoring import mask_to_regions, regions_to_mask


def _remove_line(x: np.ndarray) -> np.ndarray:
    """Subtract a robust line (slope from the medians of the two halves, so one pulse does not tilt it)."""
    n = x.size
    if n < 2:
        return x - x
    half = n // 2
    t = np.arange(n, dtype=np.float64)
    slope = float((np.median(x[half:]) - np.median(x[:half])) / (np.median(t[half:]) - np.median(t[:half])))
    resid = x - slope * t
    return resid - np.median(resid)


def highpass(x: np.ndarray, *, wn: float, order: int = 4, min_len: int = 64) -> np.ndarray:
    """Zero-phase high-pass at `wn` (fraction of Nyquist), after removing a robust line.

    The filter ignores a line anyway, but a line's start-up transient would survive at the edges; below
    `min_len` samples the filter would mostly ring, so only the line is removed.
    """
    x = _remove_line(x)
    n = x.size
    if n < max(min_len, 16):
        return x
    sos = butter(order, wn, "high", output="sos")
    # A pad of a few filter time constants (not the default 15 samples) tames the edge transient
    # of a large AC component.
    return sosfiltfilt(sos, x, padlen=min(n - 1, round(6.0 / wn)))


def wavelet_denoise(x: np.ndarray, *, wavelet: str = "db4", level: int = 6) -> tuple[np.ndarray, float]:
    """VisuShrink soft-threshold denoising; returns (denoised, sigma).

    Without room for one decomposition level, sigma comes from the median absolute deviation of x itself.
    """
    n = x.size
    max_level = pywt.dwt_max_level(n, pywt.Wavelet(wavelet).dec_len) if n else 0
    if max_level < 1:
        sigma = float(np.median(np.abs(x - np.median(x)))) / 0.6745 if n else 0.0
        return x, sigma
    coeffs = pywt.wavedec(x, wavelet, level=min(level, max_level))
    sigma = float(np.median(np.abs(coeffs[-1]))) / 0.6745
    lam = sigma * math.sqrt(2.0 * math.log(n))
    # Soft threshold by hand: pywt.threshold warns (0/0) on exactly-zero coefficients.
    coeffs[1:] = [np.sign(c) * np.maximum(np.abs(c) - lam, 0.0) for c in coeffs[1:]]
    return pywt.waverec(coeffs, wavelet)[:n], sigma


def _merge(regions: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in regions:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def detect_baseline(
    x: np.ndarray,
    *,
    fs_hz: float | None = None,
    cutoff_hz: float | None = None,
    cutoff_wn: float = 0.02,
    order: int = 4,
    wavelet: str = "db4",
    level: int = 6,
    k_high: float = 4.0,
    k_low: float = 1.5,
    edge_fraction: float = 0.05,
    merge_gap: int = 3,
    min_len: int = 1,
    rel_floor: float = 0.001,
) -> list[tuple[int, int]]:
    """PD regions [start, end) of a 1-D signal, sorted and non-overlapping.

    The high-pass cut-off is `cutoff_hz` when both it and `fs_hz` are given, else `cutoff_wn` (fraction of
    Nyquist; 0.02 = 0.01 cycles/sample keeps pulses of a few tens of samples). sigma is floored at
    `rel_floor` * half the raw peak-to-peak range, so on a noiseless signal the filter's edge transients
    and rounding errors do not become pulses.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("x must be 1-D")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    wn = cutoff_hz / (fs_hz / 2.0) if cutoff_hz is not None and fs_hz is not None else cutoff_wn
    if not 0.0 < wn < 1.0:
        raise ValueError(f"high-pass cut-off must be in (0, 1) of Nyquist, got {wn}")
    hp = highpass(x, wn=wn, order=order)
    den, sigma = wavelet_denoise(hp, wavelet=wavelet, level=level)
    half_range = float(np.ptp(x)) / 2.0 if x.size else 0.0
    sigma = max(sigma, rel_floor * half_range)
    if sigma <= 0.0:
        return []  # a constant (or linear) signal has no pulses
    a = np.abs(den)
    runs = mask_to_regions(a > k_low * sigma)
    if not runs:
        return []
    # A seed must be strong before denoising too: on short signals the (unthresholded) approximation
    # can wander above k_high*sigma on its own.
    seed = np.minimum(a, np.abs(hp))
    starts = np.fromiter((s for s, _ in runs), dtype=np.intp, count=len(runs))
    run_max = np.maximum.reduceat(a, starts)  # runs are disjoint, so segment [s_i, s_{i+1}) max = run max
    run_seed = np.maximum.reduceat(seed, starts)  # gap samples sit below k_low*sigma, never a seed
    regions = []
    for (start, end), top, strongest in zip(runs, run_max, run_seed, strict=True):
        if strongest <= k_high * sigma:
            continue
        strong = np.flatnonzero(a[start:end] > edge_fraction * top)
        regions.append((start + int(strong[0]), start + int(strong[-1]) + 1))
    return [r for r in _merge(regions, merge_gap) if r[1] - r[0] >= min_len]


def baseline_mask(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Boolean per-sample mask of `detect_baseline(x, **kwargs)`."""
    return regions_to_mask(detect_baseline(x, **kwargs), np.asarray(x).size)
