"""Narrowband carrier removal: stationary sinusoids (radio, switching harmonics) taken out of a signal."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import prev_fast_len, rfft

CARRIER_BLOCK = 64  # spectrum bins per block of the local noise floor (median magnitude)
CARRIER_MIN_SAMPLES = 4 * CARRIER_BLOCK  # shorter signals have too few bins for a noise floor
MAX_CARRIERS = 16  # strongest spectral peaks considered per signal
CARRIER_GUARD_BINS = 6  # peaks this close to a stronger one are its window side lobes, not carriers
#: The float32 spectrum's rounding: no bin error above this x eps32 x ||windowed signal|| was seen (<= 350 on
#: 800k simulator signals, AC included). Bins below `threshold` x this are rounding, never carriers: where a
#: high-pass has emptied the spectrum (near DC) the local floor is rounding, and its peaks are not tones.
_F32_ROUNDING = 2048.0
_ROTATION_BLOCK = 1024  # cos/sin of a carrier as (block phase) x (phase within a block): no per-sample trig


@lru_cache(maxsize=4)
def _hann(m: int) -> np.ndarray:
    """Periodic Hann window of length m, float32 (cached: building it costs as much as the FFT at 800k)."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(m) / m)).astype(np.float32)
    w.flags.writeable = False
    return w


def _cos_sin(freq: float, n: int) -> np.ndarray:
    """[cos, sin] of 2*pi*freq*t for t = 0..n-1 as the rows of an (n, 2) view, from two short tables and one
    complex product (no per-sample trig)."""
    b = _ROTATION_BLOCK
    rows = -(-n // b)
    outer = np.exp(1j * (2.0 * np.pi * freq * b) * np.arange(rows, dtype=np.float64))
    inner = np.exp(1j * (2.0 * np.pi * freq) * np.arange(b, dtype=np.float64))
    return (outer[:, None] * inner[None, :]).ravel()[:n].view(np.float64).reshape(n, 2)


def _gram(freq: float, n: int) -> np.ndarray:
    """[[c.c, c.s], [c.s, s.s]] for c, s = cos, sin of 2*pi*freq*t, t < n, in closed form: with
    S = sum_t exp(2i w t) (a geometric series), c.c = (n + Re S) / 2, s.s = (n - Re S) / 2, c.s = Im S / 2."""
    w2 = 4.0 * np.pi * freq
    denom = 1.0 - np.exp(1j * w2)
    geo = (1.0 - np.exp(1j * w2 * n)) / denom if abs(denom) > 1e-12 else complex(n)
    cs = 0.5 * geo.imag
    return np.array([[0.5 * (n + geo.real), cs], [cs, 0.5 * (n - geo.real)]])


def _above_floor(spec: np.ndarray, k: np.ndarray, threshold: float, least: float = 0.0) -> np.ndarray:
    """The bins `k` whose magnitude exceeds `threshold` x the noise floor: the median of each
    CARRIER_BLOCK-bin block, linearly interpolated between block centres, and at least `least`.

    Exact, but sorts few blocks: half a block's mean is a lower bound of its median whenever at most half
    the block lies below it (one counting pass checks), so a lower-bounded floor screens the bins first and
    true medians are taken only where a bin passes, or the bound does not hold.
    """
    n_blocks = spec.size // CARRIER_BLOCK
    blocks = spec[: n_blocks * CARRIER_BLOCK].reshape(n_blocks, CARRIER_BLOCK)
    centres = (np.arange(n_blocks) + 0.5) * CARRIER_BLOCK
    medians = 0.5 * blocks.mean(axis=1)
    exact = np.zeros(n_blocks, dtype=bool)
    exact[np.count_nonzero(blocks < medians[:, None], axis=1) > (CARRIER_BLOCK - 1) // 2] = True
    medians[exact] = np.median(blocks[exact], axis=1)
    k = k[spec[k] > threshold * np.maximum(np.interp(k, centres, medians), least)]  # a superset
    if k.size:  # np.interp reads the two blocks around each bin (the end blocks beyond the centres)
        j = np.clip((k - CARRIER_BLOCK // 2) // CARRIER_BLOCK, 0, n_blocks - 1)
        need = np.zeros(n_blocks, dtype=bool)
        need[j] = need[np.minimum(j + 1, n_blocks - 1)] = True
        need &= ~exact
        medians[need] = np.median(blocks[need], axis=1)
        k = k[spec[k] > threshold * np.maximum(np.interp(k, centres, medians), least)]
    return k


def remove_carriers(x: np.ndarray, threshold: float) -> np.ndarray:
    """Subtract the narrowband carriers of `x`: stationary sinusoids standing out of the spectrum.

    A Hann-windowed spectrum is compared with its noise floor (the median of each CARRIER_BLOCK-bin block,
    interpolated); each local peak above `threshold` x the floor is a carrier. Its frequency is refined
    between bins (Grandke's interpolation for the Hann window), its amplitude and phase are fitted by
    least squares over the whole signal, and it is subtracted. Unlike zeroing spectrum bins this leaves no
    ringing at the signal's ends and removes no noise or pulse energy. The spectrum is taken over the
    first m samples, m the largest length <= n the FFT is fast at (at most a few % shorter; a length with
    a large prime factor made it up to 30x slower), in float32 (it only finds the carriers: 2x faster; bins
    below `threshold` x its rounding level, _F32_ROUNDING, are never carriers, so the rounding noise where a
    high-pass emptied the spectrum cannot pass for tones); the fit is float64: O(m log m) for the spectrum
    and O(n) per carrier, one pass for the projections and one to subtract.
    """
    n = x.size
    if n < CARRIER_MIN_SAMPLES:
        return x
    y = np.asarray(x, dtype=np.float64)
    m = prev_fast_len(n, real=True)
    windowed = y[:m].astype(np.float32) * _hann(m)  # periodic Hann: the estimator below is exact
    rounding = _F32_ROUNDING * float(np.finfo(np.float32).eps) * float(np.linalg.norm(windowed))
    spec = np.abs(rfft(windowed, overwrite_x=True))
    mid = spec[2:-2]
    k = np.flatnonzero((mid > spec[1:-3]) & (mid >= spec[3:-1])) + 2  # local maxima
    peaks = _above_floor(spec, k, threshold, rounding)
    if not peaks.size:
        return y
    peaks = peaks[np.argsort(-spec[peaks], kind="stable")][:MAX_CARRIERS]
    y = y.copy()
    fitted: list[int] = []
    for b in peaks:
        if any(abs(int(b) - f) <= CARRIER_GUARD_BINS for f in fitted):
            continue
        lo, mid, hi = spec[b - 1 : b + 2].astype(np.float64)
        delta = 2.0 * (hi - lo) / (lo + 2.0 * mid + hi)  # exact for one tone under the periodic Hann window
        freq = (b + delta) / m
        cs = _cos_sin(freq, n)
        y -= cs @ np.linalg.solve(_gram(freq, n), y @ cs)
        fitted.append(int(b))
    return y
