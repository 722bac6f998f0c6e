"""Cross-generator: simulated PD measurements from code that shares nothing with export.sim.

Used ONLY to evaluate (export.evaluate --cross): never for training, model selection or threshold
tuning. Its settings were fixed before any model was run on it, from the physics notes in
../shared/docs/pd-domain.md, not from the other simulator's code or from model results.

Two regimes:
- "short": 7,920 float64 samples like seed 000's test file (an AC of ~7e5 with a ~3,334-sample period);
- "long": 800,000 int8 samples like a VSB measurement (one 50 Hz cycle at 40 MS/s, a DC offset).

A signal = AC + PD pulses + white noise + narrow-band carriers + non-PD interference. PD pulses sit in
the rising quarters of the AC cycle (0-90 and 180-270 degrees of sin) and use three pulse models of its
own: double exponential, damped sine, and the second derivative of a Gaussian (a Ricker wavelet).
Interference:
opposite-polarity pairs (a PD-model pulse 2-8x the PD amplitude, then its inverted 0.7-0.95x twin whose
start follows the first peak by 1-6 samples, at any phase), symmetric bipolar impulses (first derivative
of a Gaussian), regular pulse trains and single-sample impulsive noise, none locked to the AC phase.
About a quarter of the signals carry no PD at all.

Labels: a PD event is the [start, end) span where |pulse| >= 10 % of its own peak. Interference spans
are kept (kind, start, end) so an evaluation can count what fires on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHORT_N = 7920
LONG_N = 800_000
REGIMES = ("short", "long")
PD_MODELS = ("double_exp", "damped_sine", "gauss_d2")
EVENT_LEVEL = 0.10  # a PD event spans |pulse| >= 10 % of its peak
SEPARATION = 48  # samples kept free between any two events (PD or interference)
RISING = ((0.0, 90.0), (180.0, 270.0))  # AC phase quarters, degrees of sin(), where PD sits


@dataclass
class CrossSignal:
    """One cross-generator signal: the samples, the true PD events and the interference spans."""

    signal: np.ndarray
    regime: str
    events: list[tuple[int, int]]
    interference: list[tuple[str, int, int]]
    peak_snr: float  # typical PD peak over the white-noise sigma (even when the signal has no PD)
    pd_models: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(a, b) for kind, a, b in self.interference if kind == "pair"]


def _shape(rng: np.random.Generator, model: str) -> np.ndarray:
    """A PD-model pulse, peak |value| 1, sampled from a random sub-sample start; length >= 4."""
    t0 = rng.uniform(0.0, 1.0)
    if model == "double_exp":
        fall = np.exp(rng.uniform(np.log(1.5), np.log(12.0)))
        rise = fall * rng.uniform(0.05, 0.5)
        t = np.arange(int(np.ceil(fall * 7.0)) + 3) - t0
        tt = np.clip(t, 0.0, None)
        y = np.where(t > 0, np.exp(-tt / fall) - np.exp(-tt / rise), 0.0)
    elif model == "damped_sine":
        tau = np.exp(rng.uniform(np.log(2.0), np.log(15.0)))
        freq = rng.uniform(0.03, 0.2)
        t = np.arange(int(np.ceil(tau * 7.0)) + 3) - t0
        tt = np.clip(t, 0.0, None)
        y = np.where(t > 0, np.exp(-tt / tau) * np.sin(2.0 * np.pi * freq * tt), 0.0)
    elif model == "gauss_d2":  # Ricker: main lobe with two small opposite side lobes
        s = np.exp(rng.uniform(np.log(0.8), np.log(5.0)))
        t = np.arange(int(np.ceil(s * 10.0)) + 3) - (s * 5.0 + t0)
        u = (t / s) ** 2
        y = (1.0 - u) * np.exp(-u / 2.0)
    elif model == "gauss_d1":  # a symmetric bipolar impulse (interference only)
        s = np.exp(rng.uniform(np.log(0.8), np.log(5.0)))
        t = np.arange(int(np.ceil(s * 10.0)) + 3) - (s * 5.0 + t0)
        y = -(t / s) * np.exp(-((t / s) ** 2) / 2.0)
    else:
        raise ValueError(model)
    return y / np.max(np.abs(y))


def _span(y: np.ndarray, level: float) -> tuple[int, int]:
    above = np.flatnonzero(np.abs(y) >= level * np.max(np.abs(y)))
    return int(above[0]), int(above[-1]) + 1


class _Canvas:
    """The signal under construction, with the spans already used (kept SEPARATION apart)."""

    def __init__(self, n: int) -> None:
        self.x = np.zeros(n)
        self.used: list[tuple[int, int]] = []

    def fits(self, a: int, b: int) -> bool:
        if a < 0 or b > self.x.size:
            return False
        return all(b + SEPARATION <= s or a >= e + SEPARATION for s, e in self.used)

    def put(self, a: int, y: np.ndarray) -> None:
        self.x[a : a + y.size] += y
        self.used.append((a, a + y.size))


def _rising_quarter_positions(
    rng: np.random.Generator, n: int, period: float, phase: float, k: int
) -> list[int]:
    """k candidate sample indices whose AC phase lies in a rising quarter."""
    out: list[int] = []
    while len(out) < k:
        idx = rng.integers(0, n, size=4 * k)
        deg = np.mod(360.0 * idx / period + phase, 360.0)
        ok = np.zeros(idx.size, dtype=bool)
        for lo, hi in RISING:
            ok |= (deg >= lo) & (deg < hi)
        out.extend(int(i) for i in idx[ok])
    return out[:k]


def _interference(rng: np.random.Generator, kind: str, pd_amp: float) -> np.ndarray:
    if kind == "pair":
        first = _shape(rng, str(rng.choice(PD_MODELS)))
        lead = int(np.argmax(np.abs(first))) + int(rng.integers(1, 7))
        y = np.zeros(lead + first.size)
        y[: first.size] += first
        y[lead:] -= rng.uniform(0.7, 0.95) * first
        return y * pd_amp * rng.uniform(2.0, 8.0) * rng.choice([-1.0, 1.0])
    if kind == "bipolar":
        return _shape(rng, "gauss_d1") * pd_amp * rng.uniform(1.5, 6.0) * rng.choice([-1.0, 1.0])
    if kind == "train":
        unit = _shape(rng, "double_exp")
        gap = int(rng.integers(15, 81))
        count = int(rng.integers(4, 13))
        y = np.zeros(gap * (count - 1) + unit.size)
        for i in range(count):
            y[i * gap : i * gap + unit.size] += unit
        return y * pd_amp * rng.uniform(1.0, 4.0) * rng.choice([-1.0, 1.0])
    if kind == "spike":
        return np.array([pd_amp * rng.uniform(1.0, 4.0) * rng.choice([-1.0, 1.0])])
    raise ValueError(kind)


def generate(regime: str, seed: int, index: int) -> CrossSignal:
    """Signal `index` of the cross set `seed` in `regime`; deterministic, independent of set size."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, REGIMES.index(regime), index])))
    long = regime == "long"
    n = LONG_N if long else SHORT_N
    period = 800_000.0 if long else rng.uniform(3300.0, 3370.0)
    phase = rng.uniform(0.0, 360.0)
    t = np.arange(n)
    if long:
        sigma = rng.uniform(0.6, 3.0)  # counts
        ac = rng.uniform(15.0, 45.0) * np.sin(2.0 * np.pi * t / period + np.deg2rad(phase))
        ac += rng.uniform(-5.0, 5.0)
    else:
        amp_ac = rng.uniform(6.5e5, 7.8e5)
        sigma = amp_ac * np.exp(rng.uniform(np.log(2e-4), np.log(5e-3)))
        ac = amp_ac * np.sin(2.0 * np.pi * t / period + np.deg2rad(phase))
    peak_snr = float(np.exp(rng.uniform(np.log(6.0), np.log(80.0))))
    pd_amp = sigma * peak_snr
    if long:
        pd_amp = min(pd_amp, 60.0)
    canvas = _Canvas(n)
    has_pd = rng.random() >= 0.25
    n_pd = int(rng.integers(3, 31) if long else rng.integers(1, 9)) if has_pd else 0
    events: list[tuple[int, int]] = []
    models: list[str] = []
    candidates = _rising_quarter_positions(rng, n, period, phase, 30 * max(n_pd, 1))
    for centre in candidates:
        if len(events) >= n_pd:
            break
        model = str(rng.choice(PD_MODELS))
        y = _shape(rng, model) * pd_amp * rng.uniform(0.6, 1.6)
        deg = np.mod(360.0 * centre / period + phase, 360.0)
        polarity = 1.0 if deg < 180.0 else -1.0
        if rng.random() < 0.2:
            polarity = -polarity
        a = centre - int(np.argmax(np.abs(y)))
        if not canvas.fits(a, a + y.size):
            continue
        canvas.put(a, polarity * y)
        lo, hi = _span(y, EVENT_LEVEL)
        events.append((a + lo, a + hi))
        models.append(model)
    counts = {
        "pair": rng.integers(2, 11) if long else rng.integers(0, 4),
        "bipolar": rng.integers(0, 5) if long else rng.integers(0, 3),
        "train": rng.integers(0, 3) if long else rng.integers(0, 2),
        "spike": rng.integers(0, 9) if long else rng.integers(0, 3),
    }
    interference: list[tuple[str, int, int]] = []
    for kind, count in counts.items():
        for _ in range(int(count)):
            y = _interference(rng, kind, pd_amp)
            for _try in range(50):
                a = int(rng.integers(0, n - y.size))
                if canvas.fits(a, a + y.size):
                    canvas.put(a, y)
                    lo, hi = _span(y, EVENT_LEVEL)
                    interference.append((kind, a + lo, a + hi))
                    break
    carriers = np.zeros(n)
    for _ in range(int(rng.integers(0, 4))):
        f = rng.uniform(0.02, 0.45)
        depth, f_mod = rng.uniform(0.0, 0.3), rng.uniform(1e-5, 1e-3)
        envelope = 1.0 + depth * np.sin(2.0 * np.pi * f_mod * t + rng.uniform(0, 2 * np.pi))
        carriers += (
            sigma * rng.uniform(0.5, 3.0) * envelope * np.sin(2.0 * np.pi * f * t + rng.uniform(0, 6.3))
        )
    x = ac + canvas.x + carriers + sigma * rng.standard_normal(n)
    if long:
        x = np.clip(np.round(x), -128, 127).astype(np.int8)
    events.sort()
    interference.sort(key=lambda e: e[1])
    return CrossSignal(x, regime, events, interference, peak_snr, models)


def cross_set(regime: str, n: int, seed: int) -> list[CrossSignal]:
    return [generate(regime, seed, i) for i in range(n)]
