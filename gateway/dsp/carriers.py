"""Narrowband carrier removal: stationary sinusoids (radio, switching harmonics) taken out of a signal."""

from __future__ import annotations

from collections.abc import Sequence
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
_ROTATION_BLOCK = 1024  # a carrier's phase as (block phase) x (phase within a block): no per-sample trig


@lru_cache(maxsize=4)
def _hann(m: int) -> np.ndarray:
    """Periodic Hann window of length m, float32 (cached: building it costs as much as the FFT at 800k)."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(m) / m)).astype(np.float32)
    w.flags.writeable = False
    return w


def _geo(omega: np.ndarray, n: int) -> np.ndarray:
    """sum_{t<n} exp(i omega t) for each omega (a geometric series; n where omega is 0 mod 2 pi)."""
    num, den = 1.0 - np.exp(1j * omega * n), 1.0 - np.exp(1j * omega)
    small = np.abs(den) <= 1e-12
    return np.where(small, complex(n), num / np.where(small, 1.0, den))


def _subtract_tones(y: np.ndarray, freqs: Sequence[float]) -> None:
    """Fit and subtract the tones `freqs` from `y` (float64, contiguous) in place, one after the other:
    tone k is least-squares fitted (a cos + c sin of 2*pi*freq*t) to what the tones before it left.

    Two passes over y for all tones, no length-n cos/sin table. With t = r*B + j (B = _ROTATION_BLOCK),
    exp(i w t) = exp(i w r B) exp(i w j): every tone's projections y.cos, y.sin come from one (rows, B) @
    (B, 2K) product weighted by the block phases. Fitting tone k to the residual needs its projections
    on that residual, y's less the earlier tones' fits through their Gram matrices, which are closed
    form (geometric series), as is each tone's own. The sum of the fitted tones is one (rows, 2K) @ (2K, B)
    product subtracted block by block. The samples past the last whole block are done directly.
    """
    n, b, k = y.size, _ROTATION_BLOCK, len(freqs)
    rows = n // b
    head = rows * b
    w = 2.0 * np.pi * np.asarray(freqs, dtype=np.float64)
    inner = np.exp(1j * w[:, None] * np.arange(b, dtype=np.float64))  # (K, B): exp(i w j)
    outer = np.exp(1j * (w[:, None] * b) * np.arange(rows + 1, dtype=np.float64))  # (K, rows + 1)
    tail = outer[:, rows, None] * inner[:, : n - head]  # (K, n - head): exp(i w t) past the last block
    basis = np.concatenate([inner.real, inner.imag])  # (2K, B): cos then sin of w j
    blocks = y[:head].reshape(rows, b)
    per_row = blocks @ basis.T  # (rows, 2K)
    proj = np.einsum("kr,rk->k", outer[:, :rows], per_row[:, :k] + 1j * per_row[:, k:]) + tail @ y[head:]
    p = np.stack([proj.real, proj.imag], axis=1)  # (K, 2): y.cos, y.sin per tone
    # Gram blocks [[cc, cs], [sc, ss]] between tones m and q: sums of cos/sin products, from
    # sum exp(i (w_m -+ w_q) t)
    d, s_ = _geo(w[:, None] - w[None, :], n), _geo(w[:, None] + w[None, :], n)
    cc, ss = 0.5 * (d.real + s_.real), 0.5 * (d.real - s_.real)
    cs = 0.5 * (s_.imag - d.imag)  # sum cos(w_m t) sin(w_q t)
    sc = 0.5 * (s_.imag + d.imag)  # sum sin(w_m t) cos(w_q t)
    coef = np.zeros((k, 2))
    for m in range(k):
        rhs = p[m].copy()
        for q in range(m):  # the earlier tones' fits, seen from tone m
            rhs[0] -= cc[m, q] * coef[q, 0] + cs[m, q] * coef[q, 1]
            rhs[1] -= sc[m, q] * coef[q, 0] + ss[m, q] * coef[q, 1]
        coef[m] = np.linalg.solve([[cc[m, m], cs[m, m]], [sc[m, m], ss[m, m]]], rhs)
    u = (coef[:, 0] - 1j * coef[:, 1])[:, None] * outer  # (K, rows+1): tone = Re(u_r exp(i w j))
    blocks -= np.concatenate([u.real[:, :rows], -u.imag[:, :rows]]).T @ basis
    y[head:] -= (u[:, rows, None] * inner[:, : n - head]).real.sum(axis=0)


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
    high-pass emptied the spectrum cannot pass for tones); the fit is float64: O(m log m) for the spectrum,
    then two passes over the signal for all carriers together (`_subtract_tones`).
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
    fitted: list[int] = []
    freqs: list[float] = []
    for b in peaks:
        if any(abs(int(b) - f) <= CARRIER_GUARD_BINS for f in fitted):
            continue
        lo, mid, hi = spec[b - 1 : b + 2].astype(np.float64)
        delta = 2.0 * (hi - lo) / (lo + 2.0 * mid + hi)  # exact for one tone under the periodic Hann window
        freqs.append((b + delta) / m)
        fitted.append(int(b))
    y = y.copy()
    _subtract_tones(y, freqs)
    return y
