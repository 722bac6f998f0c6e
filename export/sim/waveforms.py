"""Pulse shapes for the simulator: PD pulses (damped exponential / damped oscillatory, and for domain
randomisation a Gaussian bump and a Gaussian-windowed oscillation) and the non-PD
interference a threshold detector mistakes for PD (opposite-polarity pairs, pulse trains).

Every shape is a unit-peak numpy array; times are in samples.
"""

from __future__ import annotations

import math

import numpy as np

SUPPORT_FRACTION = 0.05  # pulse support: |waveform| > this fraction of |peak|
_TAIL = 1e-3  # waveforms end where the envelope falls below this fraction of the peak


def damped(tau1: float, tau2: float, fc: float, onset: float) -> tuple[np.ndarray, int]:
    """(e^(-t/tau1) - e^(-t/tau2)) [* sin(2 pi fc t)] from a sub-sample onset; wave[k] = +1 = max|wave|."""
    length = math.ceil(onset + tau1 * math.log(1.0 / _TAIL)) + 2
    t = np.arange(length) - onset
    tt = np.maximum(t, 0.0)
    wave = np.where(t >= 0, np.exp(-tt / tau1) - np.exp(-tt / tau2), 0.0)
    if fc > 0:
        wave = wave * np.sin(2.0 * np.pi * fc * tt)
    k = int(np.argmax(np.abs(wave)))
    return wave / wave[k], k


def support(wave: np.ndarray) -> tuple[int, int]:
    idx = np.flatnonzero(np.abs(wave) > SUPPORT_FRACTION * np.max(np.abs(wave)))
    return int(idx[0]), int(idx[-1]) + 1


def is_free(a: int, b: int, taken: list[tuple[int, int]], gap: int) -> bool:
    return all(b + gap <= s or a >= e + gap for s, e in taken)


#: PD pulse models: damped exponential, damped oscillatory, Gaussian bump and Gaussian-windowed oscillation
#: ("gauss", "gabor": simulator profile "family" only, for domain randomisation).
PD_KINDS = ("exp", "osc", "gauss", "gabor")
#: A "gabor" pulse's largest opposite-polarity excursion is at most this fraction of its peak: a symmetric
#: bipolar impulse of Gaussian shape (a Gaussian pulse and its inverted copy, i.e. a Gaussian derivative) is
#: interference (pd-domain.md; export.sim.interference.bipolar), and the labels must not say both. (A damped
#: oscillatory "osc" pulse may ring near-symmetrically, but it starts sharply and decays exponentially.)
MAX_OPPOSITE_LOBE = 0.7


def gauss_bump(sigma: float, offset: float) -> tuple[np.ndarray, int]:
    """A unit Gaussian bump exp(-t^2 / 2 sigma^2) centred `offset` samples past 4 sigma + 1."""
    half = math.ceil(4.0 * sigma) + 1
    t = np.arange(2 * half + 2) - (half + offset)
    wave = np.exp(-0.5 * (t / sigma) ** 2)
    k = int(np.argmax(wave))
    return wave / wave[k], k


def opposite_lobe(wave: np.ndarray, k: int) -> float:
    """The largest excursion of `wave` opposite in sign to wave[k], as a fraction of |wave[k]|."""
    return float(np.max(-np.sign(wave[k]) * wave, initial=0.0) / abs(wave[k]))


def gabor(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A Gaussian-windowed oscillation exp(-t^2 / 2 sigma^2) cos(2 pi f t + phi), sigma 0.8-6 samples, up to
    a quarter cycle per sigma, any phase: a family that holds the Gaussian bump, Mexican-hat-like pulses with
    side lobes of either sign and short wave packets. Phases that make it symmetric bipolar (an opposite lobe
    over MAX_OPPOSITE_LOBE of the peak) are drawn again; after 20 tries the cosine phase (phi = 0) is used."""
    sigma = log_uniform(rng, 0.8, 6.0)
    freq = rng.uniform(0.0, 0.25) / sigma
    half = math.ceil(4.0 * sigma) + 1
    t = np.arange(2 * half + 2) - (half + rng.random())
    envelope = np.exp(-0.5 * (t / sigma) ** 2)
    for attempt in range(21):
        phi = rng.uniform(0.0, 2.0 * np.pi) if attempt < 20 else 0.0
        wave = envelope * np.cos(2.0 * np.pi * freq * t + phi)
        k = int(np.argmax(np.abs(wave)))
        if opposite_lobe(wave, k) <= MAX_OPPOSITE_LOBE:
            break
    return wave / wave[k], k


#: Simulator profile "wide": damped pulses nearer the literature's illustrative ranges (pd-domain.md: tau1
#: 0.3-2 us, 12-80 samples at the VSB's 40 MS/s; ringing at 10-40 MHz, 0.1-0.4 cycles/sample at the 100 MS/s
#: those are given for, aliased at lower rates: we take 0.02 cycles/sample up to Nyquist).
WIDE_MAX_TAU = 80.0
WIDE_MAX_FREQ = 0.5
#: Profile "wide_nopair": the decay constant a fast-ringing wide pulse needs at least (min_periods / fc),
#: capped here, so slow ringing keeps "wide"'s range (its half-period alone is longer than a pair's gap).
WIDE_NOPAIR_TAU_CAP = 20.0


def pd_waveform(
    rng: np.random.Generator, kind: str, wide: bool = False, min_periods: float = 1.0
) -> tuple[np.ndarray, int]:
    """Unit PD pulse, tau in samples: supports of a few to a few tens of samples.

    wide: an "exp" or "osc" pulse from the wider ranges (profile "wide"): decay constants tau1 of 10-80
    samples (supports up to ~240), and oscillations up to Nyquist that last at least one period per tau1, so
    a fast oscillating pulse shows several decaying lobes (a pair, interference, has two).
    min_periods: a wide oscillation lasts at least this many periods per tau1 (up to tau1 20 samples).
    At 1 ("wide") a pulse ringing near Nyquist can decay within two or three lobes, i.e. look like an
    opposite-polarity pair, which is interference; at 3 ("wide_nopair") each lobe is about 85 % of the
    one before, so it rings on where a pair stops. 1 draws exactly what it drew before the option existed.
    """
    if wide and kind == "osc":
        fc = rng.uniform(0.02, WIDE_MAX_FREQ)
        lo = max(2.0, 1.0 / fc, min(min_periods / fc, WIDE_NOPAIR_TAU_CAP))
        tau1 = log_uniform(rng, lo, WIDE_MAX_TAU)
        return damped(tau1, tau1 * rng.uniform(0.02, 0.3), fc, rng.random())
    if wide and kind == "exp":
        tau1 = log_uniform(rng, 10.0, WIDE_MAX_TAU)
        return damped(tau1, tau1 * rng.uniform(0.02, 0.45), 0.0, rng.random())
    if kind == "gabor":
        return gabor(rng)
    if kind == "gauss":
        return gauss_bump(log_uniform(rng, 0.6, 6.0), rng.random())
    if kind == "osc":
        tau1 = log_uniform(rng, 2.0, 25.0)
        return damped(tau1, tau1 * rng.uniform(0.05, 0.3), rng.uniform(0.02, 0.25), rng.random())
    tau1 = log_uniform(rng, 1.0, 15.0)
    return damped(tau1, tau1 * rng.uniform(0.08, 0.45), 0.0, rng.random())


def _short_pulse(rng: np.random.Generator, max_tau: float) -> tuple[np.ndarray, int]:
    tau1 = log_uniform(rng, 0.5, max_tau)
    return damped(tau1, tau1 * rng.uniform(0.1, 0.4), 0.0, rng.random())


def pair_waveform(rng: np.random.Generator, amp: float) -> np.ndarray:
    """A pulse followed within a few samples by its slightly smaller inverted twin."""
    wave, k = _short_pulse(rng, 2.0)  # fast decay, so the twin is not swamped by the first tail
    delay = k + int(rng.integers(1, 5))
    out = np.zeros(wave.size + delay)
    out[: wave.size] += wave
    out[delay:] -= rng.uniform(0.8, 1.0) * wave
    return amp * rng.choice([-1.0, 1.0]) * out


def train_waveform(rng: np.random.Generator, amp: float) -> np.ndarray:
    """3-8 identical pulses at a regular spacing."""
    wave, k = _short_pulse(rng, 4.0)
    count, spacing = int(rng.integers(3, 9)), int(rng.integers(k + 4, 60))
    out = np.zeros(spacing * (count - 1) + wave.size)
    for i in range(count):
        out[i * spacing : i * spacing + wave.size] += wave
    return amp * rng.choice([-1.0, 1.0]) * out


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


_REF_WAVE = damped(4.0, 1.0, 0.0, 0.5)[0]
#: Mean pulse^2 over the support of a typical unit-peak pulse: the SNR reference when a signal has no PD.
REF_POWER_RATIO = float(np.mean(_REF_WAVE[slice(*support(_REF_WAVE))] ** 2))
