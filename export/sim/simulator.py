"""The one partial-discharge (PD) signal simulator: training, evaluation, tests, load tests and demos.

A signal is the sum of an AC sinusoid, PD pulses, white noise, discrete spectral carriers and non-PD pulse
interference (opposite-polarity pairs and pulse trains). Only PD pulses are labelled in `mask`.
Five profiles (`random_config(profile=...)`): "short" (the held-out set's, unchanged: pairs and trains of
very short pulses), "family" (training: pairs, bipolar impulses, trains and impulsive bursts built from the
PD pulse family itself, plus domain randomisation: two more pulse models (Gaussian bumps, Gaussian-windowed
oscillations), baseline wander and int8 re-quantisation of whole signals; export.sim.interference) and
"noisy" ("family", then non-white noise of the same variance: AR(1) low-pass for 30 % of signals, Student-t
tails for 15 %; "family" signals are bit-identical to before "noisy" existed) and "wide" ("family", then
20-60 % of its damped pulses from wider ranges: decay constants up to 80 samples, ringing up to Nyquist;
waveforms.pd_waveform(wide=True)); "wide_nopair" is "wide" whose fast ringing lasts at least three periods
per decay constant, so no wide PD pulse rings like an opposite-polarity pair (training; "wide" stays the
validation profile).
Everything is drawn from `np.random.default_rng(seed)`: the same config and seed give bit-identical output.

Conventions
- AC phase is measured like sin(): the AC is ``A*sin(2*pi*n/samples_per_cycle + ac_phase)``, 0 deg = rising
  zero crossing. PD pulses peak in the quarters where |AC| rises: [0, 90) and [180, 270) deg.
- A pulse's support is where its |waveform| > 5 % of its own |peak|, as [start, end); `mask` is the union.
- SNR (real-valued signals): ``SNR_dB = 10*log10(P_pd / sigma^2)``. P_pd is the mean of pulse^2 over each
  PD pulse's support, averaged over the signal's pulses (a reference pulse of amplitude `pd_amplitude` when
  there are none) and sigma^2 is the variance of the real noise (Gaussian and white unless the config
  colours it or gives it heavy tails; its variance is sigma^2 either way); there is no complex 1/2 factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.signal import lfilter

from export.sim.interference import baseline_wander, family_waveform
from export.sim.waveforms import (
    REF_POWER_RATIO,
    is_free,
    log_uniform,
    pair_waveform,
    pd_waveform,
    support,
    train_waveform,
)

PD_GAP = 2  # empty samples kept between two PD waveforms
INTERFERENCE_MARGIN = 16  # samples kept between interference and PD waveforms, so labels stay clean
VSB_FS_HZ = 40e6  # VSB: 800,000 samples per 20 ms
REGIMES = ("vsb", "seed", "mixed")
INTERFERENCE_KINDS = ("spectral", "pair", "train", "bipolar", "impulsive")
_SHORT_KINDS = INTERFERENCE_KINDS[:3]  # what the "short" profile draws
PROFILES = ("short", "family", "noisy", "wide", "wide_nopair")
_FAMILY_PROFILES = PROFILES[1:]  # "noisy" is "family" plus non-white noise, "wide" plus wider pulses
#: AC phase windows [lo, hi) deg where PD pulses peak: the quarters where |AC| rises.
PD_PHASE_WINDOWS: tuple[tuple[float, float], ...] = ((0.0, 90.0), (180.0, 270.0))
#: What SimulatedSignal.kinds can contain.
KINDS = ("pd", "white", *INTERFERENCE_KINDS)


@dataclass(frozen=True)
class Pulse:
    """A PD pulse: support [start, end), signed peak `amplitude` at `peak_index`, AC phase at the peak."""

    start: int
    end: int
    peak_index: int
    amplitude: float
    kind: str  # "exp" | "osc" | "gauss" | "gabor" (waveforms.PD_KINDS)
    phase_deg: float


@dataclass(frozen=True)
class Interference:
    """A non-PD pulse event (not in the mask): support [start, end) of the whole pair or train."""

    start: int
    end: int
    kind: str  # "pair" | "train" | "bipolar" | "impulsive"


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Everything `simulate` needs besides the seed. Amplitudes are in the signal's own units.

    n_pd is a request: fewer pulses are placed when the phase windows have no room left.
    pd_phase_windows: [lo, hi) AC phase ranges in degrees where PD peaks (may wrap through 0).
    snr_db=None means no white noise. spectral_amplitude is the typical amplitude of each carrier.
    osc_fraction: probability that a PD pulse is oscillatory. polarity_bias: probability that a pulse has the
    polarity of its half-cycle (positive in 0-90 deg, negative in 180-270 deg).
    quantize_int8: round and clip to [-128, 127] like the VSB digitiser.
    """

    n_samples: int
    samples_per_cycle: float
    power_freq_hz: float = 50.0
    ac_amplitude: float
    ac_phase_deg: float
    n_pd: int
    pd_amplitude: float
    snr_db: float | None
    spectral_carriers: int = 0
    spectral_amplitude: float = 0.0
    pair_count: int = 0
    train_count: int = 0
    pd_phase_windows: tuple[tuple[float, float], ...] = PD_PHASE_WINDOWS
    osc_fraction: float = 0.4
    polarity_bias: float = 0.75
    quantize_int8: bool = False
    regime: str = "custom"
    # profile "family" (all off by default, so "short" signals are bit-identical to before it existed)
    interference_style: str = "short"  # "short": pairs/trains of very short pulses; "family": PD-like
    bipolar_count: int = 0
    impulsive_count: int = 0
    gauss_fraction: float = 0.0  # probability that a PD pulse is a Gaussian bump
    gabor_fraction: float = 0.0  # probability that a PD pulse is a Gaussian-windowed oscillation
    wander_amplitude: float = 0.0  # slow baseline drift, signal units
    requantize_peak: float | None = None  # round the whole signal to integers with this max |value|
    noise_pole: float = 0.0  # AR(1) coefficient of the noise: 0 = white, towards 1 = low-pass (coloured)
    noise_df: float | None = None  # Student-t degrees of freedom (> 2) for heavy tails; None = Gaussian
    wide_fraction: float = 0.0  # probability that an "exp"/"osc" PD pulse takes waveforms' wide ranges
    wide_min_periods: float = 1.0  # a wide oscillation's periods per tau1, at least (pd_waveform)

    def __post_init__(self) -> None:
        if self.n_samples < 1 or not self.samples_per_cycle > 0 or not self.power_freq_hz > 0:
            raise ValueError("n_samples must be >= 1, samples_per_cycle and power_freq_hz > 0")
        counts = (self.n_pd, self.spectral_carriers, self.pair_count, self.train_count, self.bipolar_count)
        if min(*counts, self.impulsive_count) < 0:
            raise ValueError("counts must be >= 0")
        if self.pd_amplitude < 0 or self.spectral_amplitude < 0 or self.ac_amplitude < 0:
            raise ValueError("amplitudes must be >= 0")
        if not all(0 <= f <= 1 for f in (self.osc_fraction, self.polarity_bias, self.wide_fraction)):
            raise ValueError("osc_fraction, polarity_bias and wide_fraction must be in [0, 1]")
        if not -1 < self.noise_pole < 1 or (self.noise_df is not None and not self.noise_df > 2):
            raise ValueError("noise_pole must be in (-1, 1) and noise_df > 2")
        if not self.wide_min_periods >= 1.0:
            raise ValueError("wide_min_periods must be >= 1")

    @property
    def fs_hz(self) -> float:
        return self.samples_per_cycle * self.power_freq_hz


@dataclass
class SimulatedSignal:
    """A simulated signal with its labels. `components` (float64, before quantisation) only on request."""

    signal: np.ndarray
    mask: np.ndarray
    pulses: list[Pulse]
    interference: list[Interference]
    config: SimConfig
    fs_hz: float
    seed: int = 0
    noise_std: float = 0.0
    components: dict[str, np.ndarray] | None = None

    @property
    def kinds(self) -> set[str]:
        """What is present: "pd", "white", "spectral", "pair", "train"."""
        cfg = self.config
        out = {i.kind for i in self.interference}
        if self.pulses:
            out.add("pd")
        if cfg.snr_db is not None:
            out.add("white")
        if cfg.spectral_carriers > 0 and cfg.spectral_amplitude > 0:
            out.add("spectral")
        return out

    @property
    def events(self) -> list[tuple[int, int]]:
        """PD pulse supports as [start, end) tuples, the ground truth for event scoring."""
        return [(p.start, p.end) for p in self.pulses]


def phase_deg(index: int | np.ndarray, config: SimConfig) -> np.ndarray:
    """AC phase in degrees, [0, 360), at sample `index` (0 deg = rising zero crossing)."""
    idx = np.asarray(index, dtype=np.float64)
    return np.mod(idx * (360.0 / config.samples_per_cycle) + config.ac_phase_deg, 360.0)


def _window_position(theta: np.ndarray, windows: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Relative position in [0, 1) of each phase inside its PD phase window; NaN outside all windows."""
    pos = np.full(np.shape(theta), np.nan)
    for lo, hi in windows:
        width = (hi - lo) % 360.0 or 360.0
        rel = np.mod(theta - lo, 360.0) / width  # windows may wrap through 0 deg, e.g. (270, 90)
        pos = np.where(np.isnan(pos) & (rel < 1.0), rel, pos)
    return pos


def _noise_std(config: SimConfig, pd_power: float | None) -> float:
    if config.snr_db is None:
        return 0.0
    if pd_power is None:
        pd_power = config.pd_amplitude**2 * REF_POWER_RATIO
    return math.sqrt(pd_power / 10.0 ** (config.snr_db / 10.0))


def _noise(rng: np.random.Generator, cfg: SimConfig, sigma: float, n: int) -> np.ndarray:
    """Zero-mean noise of standard deviation sigma: white Gaussian, or Student-t and/or AR(1)-coloured."""
    if sigma <= 0:
        return np.zeros(n)
    if cfg.noise_pole == 0.0 and cfg.noise_df is None:
        return sigma * rng.standard_normal(n)  # "short" and "family" signals: the same draw as always
    if cfg.noise_df is None:
        base = rng.standard_normal(n)
    else:
        base = rng.standard_t(cfg.noise_df, n) / math.sqrt(cfg.noise_df / (cfg.noise_df - 2.0))
    if cfg.noise_pole != 0.0:
        a = cfg.noise_pole
        # start in the stationary state, so the first samples have the same variance as the rest
        base[0] /= math.sqrt(1.0 - a * a)
        base = lfilter([math.sqrt(1.0 - a * a)], [1.0, -a], base)
    return sigma * base


def _place_pd(rng: np.random.Generator, cfg: SimConfig, pd: np.ndarray) -> tuple[list[Pulse], list]:
    """Add PD pulses into `pd` (in place); returns pulses and their full waveform extents."""
    n = cfg.n_samples
    if cfg.n_pd == 0 or cfg.pd_amplitude == 0:
        return [], []
    theta = phase_deg(np.arange(n), cfg)
    # Cluster peaks mid-window (a half-sine bump) with a floor over the whole window.
    weight = np.nan_to_num(0.1 + np.sin(np.pi * _window_position(theta, cfg.pd_phase_windows)), nan=0.0)
    cdf = np.cumsum(weight)
    if cdf[-1] <= 0:
        return [], []
    cand = np.searchsorted(cdf, rng.random(cfg.n_pd * 40) * cdf[-1], side="right").clip(0, n - 1)
    pulses: list[Pulse] = []
    extents: list[tuple[int, int]] = []
    ci = 0
    for _ in range(cfg.n_pd):
        kind = "osc" if rng.random() < cfg.osc_fraction else "exp"
        if cfg.gauss_fraction > 0 and rng.random() < cfg.gauss_fraction:
            kind = "gauss"
        if cfg.gabor_fraction > 0 and rng.random() < cfg.gabor_fraction:
            kind = "gabor"
        wide = cfg.wide_fraction > 0 and kind in ("exp", "osc") and rng.random() < cfg.wide_fraction
        wave, k = pd_waveform(rng, kind, wide, cfg.wide_min_periods)
        mag = cfg.pd_amplitude * float(np.clip(rng.lognormal(0.0, 0.35), 0.3, 3.0))
        a = None
        for peak in cand[ci : ci + 40]:
            ci += 1
            start = int(peak) - k
            if start >= 0 and start + wave.size <= n and is_free(start, start + wave.size, extents, PD_GAP):
                a = start
                break
        if a is None:
            break  # the phase windows have no room left
        b, peak = a + wave.size, a + k
        theta_p = float(theta[peak])
        same = rng.random() < cfg.polarity_bias
        sign = (1.0 if theta_p < 180.0 else -1.0) * (1.0 if same else -1.0)
        pd[a:b] += sign * mag * wave
        lo, hi = support(wave)
        pulses.append(Pulse(a + lo, a + hi, peak, float(sign * mag), kind, theta_p))
        extents.append((a, b))
    return pulses, extents


def _place_interference(
    rng: np.random.Generator, cfg: SimConfig, out: np.ndarray, pd_extents: list
) -> list[Interference]:
    """Add pairs and trains anywhere (any phase) away from PD waveforms; returns their supports."""
    n = cfg.n_samples
    placed: list[tuple[int, int]] = []
    events: list[Interference] = []
    jobs = ["pair"] * cfg.pair_count + ["train"] * cfg.train_count
    jobs += ["bipolar"] * cfg.bipolar_count + ["impulsive"] * cfg.impulsive_count
    for kind in jobs:
        if cfg.interference_style == "family" and (kind not in ("pair", "train") or rng.random() < 0.8):
            wave = family_waveform(rng, kind, cfg.pd_amplitude)  # 20 % of pairs/trains stay "short"
        elif kind == "pair":
            wave = pair_waveform(rng, cfg.pd_amplitude * rng.uniform(2.0, 10.0))
        else:
            wave = train_waveform(rng, cfg.pd_amplitude * rng.uniform(1.5, 6.0))
        if wave.size > n:
            continue
        starts = rng.integers(0, n - wave.size + 1, size=30)
        for a in starts:
            a = int(a)
            b = a + wave.size
            if is_free(a, b, pd_extents, INTERFERENCE_MARGIN) and is_free(a, b, placed, 4):
                out[a:b] += wave
                lo, hi = support(wave)
                events.append(Interference(a + lo, a + hi, kind))
                placed.append((a, b))
                break
    return events


def simulate(config: SimConfig, seed: int, *, return_components: bool = False) -> SimulatedSignal:
    """Simulate one signal. Same config and seed -> bit-identical signal, mask and labels."""
    cfg = config
    n = cfg.n_samples
    rng = np.random.default_rng(seed)
    idx = np.arange(n, dtype=np.float64)
    ac = cfg.ac_amplitude * np.sin(2.0 * np.pi * idx / cfg.samples_per_cycle + math.radians(cfg.ac_phase_deg))
    pd = np.zeros(n)
    pulses, extents = _place_pd(rng, cfg, pd)
    interference = np.zeros(n)
    events = _place_interference(rng, cfg, interference, extents)
    spectral = np.zeros(n)
    if cfg.spectral_carriers and cfg.spectral_amplitude > 0:
        freqs = rng.uniform(0.05, 0.35, cfg.spectral_carriers)  # cycles/sample
        amps = cfg.spectral_amplitude * rng.uniform(0.5, 1.5, cfg.spectral_carriers)
        phases = rng.uniform(0.0, 2.0 * np.pi, cfg.spectral_carriers)
        for f, a, ph in zip(freqs, amps, phases, strict=True):
            spectral += a * np.sin(2.0 * np.pi * f * idx + ph)
    pd_power = float(np.mean([np.mean(pd[p.start : p.end] ** 2) for p in pulses])) if pulses else None
    sigma = _noise_std(cfg, pd_power)
    noise = _noise(rng, cfg, sigma, n)
    signal = ac + pd + interference + spectral + noise
    if cfg.wander_amplitude > 0:
        signal = signal + baseline_wander(rng, n, cfg.wander_amplitude)
    if cfg.requantize_peak is not None:  # a digitiser's counts; only when PD stays above 3 counts
        scale = cfg.requantize_peak / max(float(np.max(np.abs(signal))), 1e-300)
        if cfg.pd_amplitude * scale >= 3.0:
            signal = np.clip(np.round(signal * scale), -128.0, 127.0) / scale
    if cfg.quantize_int8:
        signal = np.clip(np.round(signal), -128.0, 127.0)
    mask = np.zeros(n, dtype=bool)
    for p in pulses:
        mask[p.start : p.end] = True
    comps = None
    if return_components:
        comps = {"ac": ac, "pd": pd, "noise": noise, "spectral": spectral, "interference": interference}
    return SimulatedSignal(signal, mask, pulses, events, cfg, cfg.fs_hz, seed, sigma, comps)


def random_config(
    rng: np.random.Generator,
    *,
    regime: str = "mixed",
    n_samples: int | None = None,
    snr_db: float | None = None,
    white_noise: bool | None = None,
    interference: tuple[str, ...] | None = None,
    n_pd: int | None = None,
    pd_free_prob: float = 0.2,
    power_freq_hz: float | None = None,
    samples_per_cycle: float | None = None,
    pd_phase_windows: tuple[tuple[float, float], ...] = PD_PHASE_WINDOWS,
    profile: str = "short",
) -> SimConfig:
    """Draw a config for `regime` ("vsb", "seed" or "mixed"); every keyword pins one aspect for buckets.

    snr_db: a fixed SNR (turns white noise on); None draws it (-5..25 dB; seed regime 5..35 dB).
    white_noise: False = no white noise; None = regime default (always for vsb, 95 % mixed, 50 % seed).
    interference: exactly these of "spectral", "pair", "train" (``()`` = none); None draws each at random.
    n_pd: fixed PD pulse count; None = 0 with probability `pd_free_prob`, else 1..min(24, n/400).
    profile: "short" (the held-out and validation sets), "family" (PD-family interference and domain
    randomisation, drawn after everything "short" draws), "noisy" ("family", then non-white noise),
    "wide" ("family", then wider damped pulses) or "wide_nopair" ("wide" without pair-like ringing).
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}")
    if interference is not None and not set(interference) <= set(INTERFERENCE_KINDS):
        raise ValueError(f"interference kinds must be among {INTERFERENCE_KINDS}")
    if snr_db is not None and white_noise is False:
        raise ValueError("snr_db given but white_noise=False")
    f = power_freq_hz or (float(rng.choice([50.0, 60.0])) if regime == "mixed" else 50.0)
    quantize = False
    if regime == "vsb":
        spc = samples_per_cycle or VSB_FS_HZ / f
        n = n_samples or round(spc)
        style, p_white, snr_range = "int8", 1.0, (-5.0, 25.0)
    elif regime == "seed":
        spc = samples_per_cycle or rng.uniform(3300.0, 3370.0)
        n = n_samples or 7920
        style, p_white, snr_range = "seed", 0.5, (5.0, 35.0)
    else:
        spc = samples_per_cycle or log_uniform(rng, 500.0, 1e6)
        n = n_samples or int(rng.integers(4096, 32769))
        style = str(rng.choice(["int8", "seed", "free", "free"]))
        p_white, snr_range = 0.95, (-5.0, 25.0)
    if style == "int8":
        ac_amp, pd_amp, quantize = rng.uniform(10.0, 40.0), rng.uniform(5.0, 30.0), True
    elif style == "seed":
        ac_amp = rng.uniform(6.8e5, 7.6e5)
        pd_amp = ac_amp * log_uniform(rng, 0.01, 0.6)  # the seed's own spikes reach ~60 % of the AC
    else:
        ac_amp = 10.0 ** rng.uniform(-2.0, 6.0)
        pd_amp = ac_amp * 10.0 ** rng.uniform(-2.3, 0.3)
    if snr_db is None and (white_noise or (white_noise is None and rng.random() < p_white)):
        snr_db = float(rng.uniform(*snr_range))
    if n_pd is None:
        n_pd = 0 if rng.random() < pd_free_prob else int(rng.integers(1, min(24, max(1, n // 400)) + 1))
    ac_phase = rng.uniform(0.0, 360.0)
    if n_pd > 0:  # a signal shorter than a cycle may miss the phase windows: move it so PD has room
        grid = np.linspace(0.0, n - 1, min(n, 2048))
        for _ in range(20):
            theta = np.mod(grid * 360.0 / spc + ac_phase, 360.0)
            if np.mean(~np.isnan(_window_position(theta, pd_phase_windows))) >= 0.1:
                break
            ac_phase = rng.uniform(0.0, 360.0)
    if interference is None:
        odds = (0.4, 0.35, 0.3)
        interference = tuple(k for k, p in zip(_SHORT_KINDS, odds, strict=True) if rng.random() < p)
        if profile in _FAMILY_PROFILES:
            interference += tuple(k for k in ("bipolar", "impulsive") if rng.random() < 0.3)
            if "pair" not in interference and rng.random() < 0.3:  # the commonest false PD: more of it
                interference += ("pair",)
    kinds = set(interference)
    long_signal = n > 100_000
    # Carriers comparable to the white noise (to the noise of a 20 dB SNR when there is none).
    sigma_ref = pd_amp * math.sqrt(REF_POWER_RATIO) / 10.0 ** ((20.0 if snr_db is None else snr_db) / 20.0)
    spectral_amp = sigma_ref * rng.uniform(0.5, 2.0)
    if quantize:
        spectral_amp = max(spectral_amp, 1.0)  # below one count the carriers would round away
    family: dict[str, Any] = {}
    if profile in _FAMILY_PROFILES:
        family = {
            "interference_style": "family",
            "bipolar_count": int(rng.integers(1, 6 if long_signal else 3)) if "bipolar" in kinds else 0,
            "impulsive_count": int(rng.integers(1, 6 if long_signal else 3)) if "impulsive" in kinds else 0,
            "gauss_fraction": float(rng.uniform(0.0, 0.4)),
            "gabor_fraction": float(rng.uniform(0.0, 0.4)),
            "wander_amplitude": float(ac_amp * rng.uniform(0.01, 0.3)) if rng.random() < 0.5 else 0.0,
            "requantize_peak": float(rng.uniform(30.0, 127.0))
            if not quantize and rng.random() < 0.2
            else None,
        }
    cfg = SimConfig(
        n_samples=int(n),
        samples_per_cycle=float(spc),
        power_freq_hz=float(f),
        ac_amplitude=float(ac_amp),
        ac_phase_deg=float(ac_phase),
        n_pd=int(n_pd),
        pd_phase_windows=tuple((float(lo), float(hi)) for lo, hi in pd_phase_windows),
        pd_amplitude=float(pd_amp),
        snr_db=None if snr_db is None else float(snr_db),
        spectral_carriers=int(rng.integers(1, 5)) if "spectral" in kinds else 0,
        spectral_amplitude=float(spectral_amp) if "spectral" in kinds else 0.0,
        pair_count=int(rng.integers(1, 8 if long_signal else 4)) if "pair" in kinds else 0,
        train_count=int(rng.integers(1, 4 if long_signal else 3)) if "train" in kinds else 0,
        osc_fraction=float(rng.uniform(0.0, 0.8)),
        polarity_bias=float(rng.uniform(0.5, 0.95)),
        quantize_int8=quantize,
        regime=regime,
        **family,
    )
    if profile == "noisy":  # drawn last, so "noisy" signals are "family" signals with other noise
        # amplifier and digitiser noise is rarely white or Gaussian: a network that only saw white
        # Gaussian noise takes smooth noise bumps and rare large noise samples for PD
        pole = float(rng.uniform(0.2, 0.85)) if rng.random() < 0.3 else 0.0
        df = float(rng.uniform(3.0, 10.0)) if rng.random() < 0.15 else None
        snr = cfg.snr_db
        if pole > 0 and snr is not None:
            # Low-pass noise of the same variance is (1+a)/(1-a) times denser where pulses live: the SNR
            # goes up by half that (dB), so the weakest labelled pulses stay findable at all, rather than
            # teaching the network that a noise bump of that size is PD.
            snr += 5.0 * math.log10((1.0 + pole) / (1.0 - pole))
        cfg = replace(cfg, noise_pole=pole, noise_df=df, snr_db=snr)
    if profile in ("wide", "wide_nopair"):  # drawn last too: "family" signals with some pulses wider
        # The family's damped pulses decay with tau1 up to 15-25 samples and ring below 0.25 cycles/sample;
        # pd-domain.md's illustrative ranges reach tau1 = 2 us (80 samples at 40 MS/s) and ring faster.
        cfg = replace(cfg, wide_fraction=float(rng.uniform(0.2, 0.6)))
        if profile == "wide_nopair":  # the same draws; fast ringing lasts >= 3 periods per tau1
            cfg = replace(cfg, wide_min_periods=3.0)
    return cfg


def dataset_item(seed: int, index: int, *, return_components: bool = False, **kw: Any) -> SimulatedSignal:
    """Item `index` of dataset `seed`, independent of dataset size (so workers can generate items alone)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    config = random_config(rng, **kw)
    return simulate(config, int(rng.integers(0, 2**63 - 1)), return_components=return_components)


def iter_dataset(n: int, seed: int, **kw: Any) -> Iterator[SimulatedSignal]:
    """Lazily yield `make_dataset(n, seed, **kw)` one signal at a time."""
    for i in range(n):
        yield dataset_item(seed, i, **kw)


def make_dataset(n: int, seed: int, **kw: Any) -> list[SimulatedSignal]:
    """`n` signals, deterministic in `seed`; keywords go to `random_config` (and `return_components`)."""
    return list(iter_dataset(n, seed, **kw))
