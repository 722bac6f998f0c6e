"""The power-frequency sinusoid of a raw signal, so every PD region gets its AC phase angle."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_COARSE_POINTS = 16_384  # the period search's FFT length at most
_TRIG_BLOCK = 64


@dataclass(frozen=True)
class AcFit:
    """The power-frequency sinusoid A*sin(2*pi*n/samples_per_cycle + phase0) fitted to a raw signal."""

    samples_per_cycle: float
    phase0_rad: float
    amplitude: float
    r2: float
    period_known: bool = False  # samples_per_cycle was given (fs / power frequency), not estimated

    def phase_deg(self, index: int | np.ndarray) -> float | np.ndarray:
        """AC phase at sample `index`, degrees in [0, 360); 0 deg = rising zero crossing."""
        rad = 2.0 * math.pi * np.asarray(index, dtype=np.float64) / self.samples_per_cycle + self.phase0_rad
        deg = np.mod(np.degrees(rad), 360.0)
        return float(deg) if np.ndim(deg) == 0 else deg


def _geometric(omega: np.ndarray, t0: float, step: float, m: int) -> np.ndarray:
    """sum_{j<m} exp(i omega (t0 + j step)) per omega, in the Dirichlet-kernel form
    exp(i (omega t0 + (m - 1) h)) sin(m h) / sin(h), h = omega step / 2: accurate for any period, the very
    long ones (h near 0) included; where sin(h) is 0 every term is exp(i omega t0)."""
    half = 0.5 * omega * step
    sin_half = np.sin(half)
    zero = sin_half == 0.0
    kernel = np.sin(m * half) / np.where(zero, 1.0, sin_half)
    return np.where(zero, m * np.exp(1j * omega * t0), np.exp(1j * (omega * t0 + (m - 1) * half)) * kernel)


def _projections(omega: np.ndarray, t0: float, step: float, y: np.ndarray) -> np.ndarray:
    """sum_j y[j] exp(i omega (t0 + j step)) per omega, with no [k, m] matrix: y cut into rows of
    _TRIG_BLOCK samples, (block phases) @ rows, then each row's start phase."""
    m, block = y.size, _TRIG_BLOCK
    rows = -(-m // block)
    padded = np.zeros(rows * block)
    padded[:m] = y
    inner = np.exp(1j * omega[:, None] * (t0 + step * np.arange(block)))  # [k, block]
    outer = np.exp(1j * omega[:, None] * (step * block * np.arange(rows)))  # [k, rows]
    return np.einsum("kr,kr->k", outer, inner @ padded.reshape(rows, block).T)


def _fit_sinusoids(idx: np.ndarray, y: np.ndarray, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares y ~ a*sin(w) + b*cos(w) + c for every candidate period at once, on evenly spaced idx.

    Normal equations per candidate (3x3, a tiny ridge keeps sub-cycle periods solvable); the sums of
    sin, cos and their products are geometric series in closed form, and sin @ y, cos @ y come from one
    blocked product, so no [k, m] sin/cos matrix is built. Returns the coefficients [k, 3] and the
    residual variances [k].
    """
    m = idx.size
    t0 = float(idx[0])
    step = float(idx[1] - idx[0]) if m > 1 else 1.0
    omega = 2.0 * math.pi / periods
    e1 = _geometric(omega, t0, step, m)  # sum exp(i w t): cos + i sin
    e2 = _geometric(2.0 * omega, t0, step, m)  # sum exp(2i w t): cos^2 - sin^2 + 2i sin cos
    proj = _projections(omega, t0, step, y)
    s1, c1 = e1.imag, e1.real
    ss, cc, sc = 0.5 * (m - e2.real), 0.5 * (m + e2.real), 0.5 * e2.imag
    mf = float(m)
    gram = np.empty((periods.size, 3, 3))
    gram[:, 0] = np.stack([ss, sc, s1], axis=-1)
    gram[:, 1] = np.stack([sc, cc, c1], axis=-1)
    gram[:, 2] = np.stack([s1, c1, np.full_like(s1, mf)], axis=-1)
    gram += np.eye(3) * (1e-9 * mf)
    rhs = np.stack([proj.imag, proj.real, np.full_like(s1, y.sum())], axis=-1)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    # The residual's variance from the normal equations: no [k, m] residual matrix.
    gram -= np.eye(3) * (1e-9 * mf)
    yy = float(y @ y)
    rss = yy - 2.0 * np.einsum("ki,ki->k", coef, rhs) + np.einsum("ki,kij,kj->k", coef, gram, coef)
    mean = rhs[:, 2] / mf - np.einsum("ki,ki->k", coef, gram[:, 2]) / mf
    resid_var = rss / mf - mean**2
    # A clearly negative variance means the normal equations lost the fit (a period far beyond the
    # signal, where sin is a ramp and cos a constant): no fit, not a perfect one.
    failed = resid_var < -1e-9 * yy / mf
    return coef, np.where(failed, np.inf, np.maximum(resid_var, 0.0))


def _search_period(x: np.ndarray) -> float | None:
    """Coarse period from the strongest FFT bin, refined by least squares (leakage biases the bin).

    The FFT runs on block means of at most _COARSE_POINTS blocks: the power-frequency sinusoid is slow,
    and averaging (a low-pass) keeps fast interference from aliasing onto it.
    """
    n = x.size
    block = max(1, n // _COARSE_POINTS)
    coarse = x[: n - n % block].reshape(-1, block).mean(axis=1) if block > 1 else x
    spectrum = np.abs(np.fft.rfft(coarse - coarse.mean()))
    if spectrum.size < 3:
        return None
    k = round((int(np.argmax(spectrum[1:])) + 1) * n / (coarse.size * block))  # cycles in the signal
    step = max(1, n // 1024)  # the period search needs far fewer points than the final fit
    idx = np.arange(0, n, step, dtype=np.float64)
    y = x[::step]
    lo, hi = max(k - 1.0, 0.5), k + 1.0  # cycles in the signal
    best = float(k)
    for _ in range(3):  # grid, then narrow around the best cycle count
        grid = np.linspace(lo, hi, 25)
        best = float(grid[int(np.argmin(_fit_sinusoids(idx, y, n / grid)[1]))])
        span = (hi - lo) / 12
        lo, hi = max(best - span, 0.25), best + span
    return n / best


def estimate_ac_phase(
    raw: np.ndarray, samples_per_cycle: float | None = None, *, min_r2: float = 0.5
) -> AcFit | None:
    """Fit the power-frequency sinusoid to a raw signal; None when no sinusoid explains it.

    With `samples_per_cycle` known (fs / power frequency) only amplitude and phase are fitted; otherwise
    the period starts from the strongest FFT bin and is refined by least squares, which needs
    at least about one full cycle in the signal.
    """
    x = np.asarray(raw, dtype=np.float64)
    n = x.size
    if n < 16 or not np.all(np.isfinite(x)):
        return None
    step = max(1, n // 8192)  # the sinusoid is smooth: a decimated fit is as good and far cheaper
    idx = np.arange(0, n, step, dtype=np.float64)
    y = x[::step]
    var = float(np.var(y))
    if var == 0:
        return None
    period_known = samples_per_cycle is not None
    if samples_per_cycle is None:
        samples_per_cycle = _search_period(x)
        if samples_per_cycle is None:
            return None
    if not samples_per_cycle > 2:
        return None
    coefs, resid_vars = _fit_sinusoids(idx, y, np.array([samples_per_cycle]))
    coef = coefs[0]
    r2 = 1.0 - float(resid_vars[0]) / var
    if r2 < min_r2:
        return None
    a, b = float(coef[0]), float(coef[1])  # a*sin(w) + b*cos(w) = A*sin(w + phi)
    return AcFit(float(samples_per_cycle), math.atan2(b, a), math.hypot(a, b), r2, period_known)
