"""Non-PD events drawn from the PD family itself (simulator profile "family"), and domain randomisation.

A network that only ever sees pairs made of very short pulses learns to reject *short* pulses, not pairs.
Here every interference event is built from the same pulse models and width range as PD
(`waveforms.pd_waveform`, kinds "exp", "osc", "gauss", "gabor"), so the only cue left is its structure:
- pair: a pulse followed within a few samples by its inverted, slightly smaller twin (ratio 0.6-1.0);
- bipolar: a symmetric bipolar impulse (a pulse and its equal inverted copy, or one cycle of a sine);
- train: 3-10 copies of one pulse at a regular spacing, sometimes alternating in sign;
- impulsive: a burst of 1-2-sample spikes of random sign and size, at no particular AC phase.
Every shape is returned already scaled (amplitude = its largest |value|), ready to add.
"""

from __future__ import annotations

import math

import numpy as np

from export.sim.waveforms import PD_KINDS, log_uniform, pd_waveform, support

FAMILY_KINDS = ("pair", "bipolar", "train", "impulsive")


def _pulse(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    return pd_waveform(rng, str(rng.choice(PD_KINDS)))


def _sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


def _scaled(wave: np.ndarray, amp: float) -> np.ndarray:
    peak = float(np.max(np.abs(wave)))
    return wave * (amp / peak) if peak > 0 else wave


def family_pair(rng: np.random.Generator, amp: float) -> np.ndarray:
    """A PD-like pulse, then its inverted twin (0.6-1.0 of its size) a few samples after its peak or tail."""
    wave, k = _pulse(rng)
    hi = support(wave)[1]
    # the twin's peak 2-8 samples after the first's peak, or the twin starting where the first one fades
    delay = int(rng.integers(2, 9)) if rng.random() < 0.5 else (hi - k) + int(rng.integers(0, 7))
    out = np.zeros(wave.size + delay)
    out[: wave.size] += wave
    out[delay:] -= rng.uniform(0.6, 1.0) * wave
    return _scaled(_sign(rng) * out, amp)


def bipolar(rng: np.random.Generator, amp: float) -> np.ndarray:
    """A symmetric bipolar impulse: one sine cycle, or a pulse and its equal inverted copy half a width on."""
    if rng.random() < 0.5:
        period = log_uniform(rng, 3.0, 40.0)
        t = np.arange(math.ceil(period) + 1) - rng.random()
        out = np.where((t >= 0) & (t <= period), np.sin(2.0 * np.pi * np.clip(t, 0, None) / period), 0.0)
    else:
        wave, _ = pd_waveform(rng, str(rng.choice(["exp", "gauss"])))
        lo, hi = support(wave)
        delay = max(1, round((hi - lo) * rng.uniform(0.4, 1.0)))
        out = np.zeros(wave.size + delay)
        out[: wave.size] += wave
        out[delay:] -= wave
    return _scaled(_sign(rng) * out, amp)


def family_train(rng: np.random.Generator, amp: float) -> np.ndarray:
    """3-10 copies of one PD-like pulse at a regular spacing; 30 % alternate in sign."""
    wave, _ = _pulse(rng)
    lo, hi = support(wave)
    count, spacing = int(rng.integers(3, 11)), (hi - lo) + int(rng.integers(3, 60))
    alternate = rng.random() < 0.3
    out = np.zeros(spacing * (count - 1) + wave.size)
    for i in range(count):
        out[i * spacing : i * spacing + wave.size] += wave * (-1.0 if alternate and i % 2 else 1.0)
    return _scaled(_sign(rng) * out, amp)


def impulsive(rng: np.random.Generator, amp: float) -> np.ndarray:
    """A 20-400-sample burst of 1-2-sample spikes with random signs and log-normal sizes."""
    length = int(rng.integers(20, 401))
    out = np.zeros(length)
    count = max(2, int(rng.poisson(length * rng.uniform(0.02, 0.15))))
    pos = rng.integers(0, length - 1, size=count)
    sizes = rng.choice([-1.0, 1.0], size=count) * rng.lognormal(0.0, 0.5, size=count)
    out[pos] += sizes
    wide = rng.random(count) < 0.4
    out[pos[wide] + 1] += 0.6 * sizes[wide]
    return _scaled(out, amp)


def family_waveform(rng: np.random.Generator, kind: str, pd_amp: float) -> np.ndarray:
    """One interference event of `kind` at an amplitude relative to the PD amplitude (pairs 0.7-10x)."""
    if kind == "pair":
        return family_pair(rng, pd_amp * log_uniform(rng, 0.7, 10.0))
    if kind == "bipolar":
        return bipolar(rng, pd_amp * log_uniform(rng, 0.7, 8.0))
    if kind == "train":
        return family_train(rng, pd_amp * log_uniform(rng, 0.7, 6.0))
    if kind == "impulsive":
        return impulsive(rng, pd_amp * log_uniform(rng, 0.7, 6.0))
    raise ValueError(f"unknown interference kind {kind!r}")


def baseline_wander(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """Slow drift: 1-3 sinusoids with periods from 300 samples to 10x the signal length."""
    idx = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        period = log_uniform(rng, 300.0, 10.0 * max(n, 30))
        out += rng.uniform(0.2, 1.0) * np.sin(2.0 * np.pi * idx / period + rng.uniform(0, 2 * np.pi))
    return amplitude * out
