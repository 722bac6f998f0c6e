"""The faster pre/post-processing gives the answers the pipeline gave before it (tests/data/dsp_golden.json,
written by commit f92dae0's code): the same regions, peak indices and validity; amplitudes, scores, stats
and AC fits to floating-point rounding. Plus the exact shortcuts it relies on (median, carrier floor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.fft import prev_fast_len, rfft

from export.sim.simulator import random_config, simulate
from gateway.dsp.carriers import (
    CARRIER_BLOCK,
    CARRIER_GUARD_BINS,
    MAX_CARRIERS,
    _above_floor,
    _subtract_tones,
    remove_carriers,
)
from gateway.dsp.phase import _fit_sinusoids, estimate_ac_phase
from gateway.dsp.processing import _highpass, exact_median
from tests.unit import dsp_golden

GOLDEN = json.loads(dsp_golden.GOLDEN.read_text())


@pytest.mark.parametrize("profile", sorted(dsp_golden.PROFILES))
def test_pipeline_matches_the_golden_answers(profile: str) -> None:
    got, want = dsp_golden.answers(*dsp_golden.PROFILES[profile]), GOLDEN[profile]
    assert sorted(got) == sorted(want)
    for name, g in got.items():
        w = want[name]
        assert g["valid"] == w["valid"], name
        assert g["regions"] == w["regions"], name  # [start, end, peak_index], exactly
        # carriers are now subtracted as cos/sin tables built by complex products, found in a float32
        # spectrum: float32 rounding
        np.testing.assert_allclose(g["peak_amplitude"], w["peak_amplitude"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(g["mean_score"], w["mean_score"], rtol=1e-6, err_msg=name)
        # stats of the float32 preprocessed signal; the carrier finder's spectrum is float32 now
        np.testing.assert_allclose(g["stats"], w["stats"], rtol=1e-6, err_msg=name)
        assert (g["ac"] is None) == (w["ac"] is None), name
        if w["ac"] is not None:  # the period search's FFT now runs on block means
            np.testing.assert_allclose(g["ac"], w["ac"], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(0).normal(size=800_000),
        np.random.default_rng(1).normal(size=100_001).astype(np.float32),
        np.sin(np.arange(200_000) / 1000.0),  # a periodic signal: the strided sample is not random
        np.round(np.random.default_rng(2).normal(size=70_000) * 3),  # many ties
        np.r_[np.zeros(60_000), np.ones(40_000)],  # a bracket that cannot hold the middle
        np.abs(np.random.default_rng(3).standard_cauchy(300_000)),
    ],
    ids=["normal", "float32-odd", "sine", "ties", "steps", "heavy-tail"],
)
def test_exact_median_is_np_median(x: np.ndarray) -> None:
    assert exact_median(x) == float(np.median(x))


def _above_floor_reference(spec: np.ndarray, k: np.ndarray, threshold: float) -> np.ndarray:
    """The carrier test as it was: every block's median, interpolated over every bin."""
    n_blocks = spec.size // CARRIER_BLOCK
    medians = np.median(spec[: n_blocks * CARRIER_BLOCK].reshape(n_blocks, CARRIER_BLOCK), axis=1)
    floor = np.interp(np.arange(spec.size), (np.arange(n_blocks) + 0.5) * CARRIER_BLOCK, medians)
    return k[spec[k] > threshold * floor[k]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [1.5, 4.0, 8.0])
def test_carrier_floor_screen_is_exact(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 50_000))
    spec = np.abs(rng.normal(size=n) + 1j * rng.normal(size=n)) * np.exp(rng.normal(size=n) * seed / 2)
    spec[rng.integers(0, n, size=20)] *= rng.uniform(1, 50, size=20)  # carriers, some on block edges
    spec[: n // 7] *= 30.0  # a loud band: its blocks fail the half-mean bound
    k = np.arange(2, n - 2)
    np.testing.assert_array_equal(
        _above_floor(spec, k, threshold), _above_floor_reference(spec, k, threshold)
    )


def _remove_carriers_float64(x: np.ndarray, threshold: float) -> np.ndarray:
    """remove_carriers as it was: a float64 spectrum, the Gram matrix by dot products, trig per sample."""
    y = np.asarray(x, dtype=np.float64).copy()
    m = prev_fast_len(y.size, real=True)
    spec = np.abs(rfft(y[:m] * (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(m) / m))))
    mid = spec[2:-2]
    k = np.flatnonzero((mid > spec[1:-3]) & (mid >= spec[3:-1])) + 2
    peaks = _above_floor_reference(spec, k, threshold)
    fitted: list[int] = []
    t = np.arange(y.size)
    for b in peaks[np.argsort(-spec[peaks], kind="stable")][:MAX_CARRIERS]:
        if any(abs(int(b) - f) <= CARRIER_GUARD_BINS for f in fitted):
            continue
        lo, mid_, hi = spec[b - 1], spec[b], spec[b + 1]
        freq = (b + 2.0 * (hi - lo) / (lo + 2.0 * mid_ + hi)) / m
        c, s = np.cos(2.0 * np.pi * freq * t), np.sin(2.0 * np.pi * freq * t)
        a = np.linalg.solve([[c @ c, c @ s], [c @ s, s @ s]], [c @ y, s @ y])
        y -= a[0] * c + a[1] * s
        fitted.append(int(b))
    return y


@pytest.mark.parametrize("regime", ["vsb", "seed", "mixed"])
def test_carriers_found_in_float32_are_the_float64_ones(regime: str) -> None:
    """On the high-passed signal (where the pipeline removes carriers) the float32 spectrum finds the same
    carriers (no rounding peaks where the high-pass emptied the spectrum) and the closed-form fit subtracts
    the same tones, to float32 rounding. (On a raw signal the AC, 1e5 x the noise in the seed regime,
    would set the rounding.)"""
    params = dsp_golden.SHIPPED_V1
    for seed in range(3):
        sim = simulate(
            random_config(np.random.default_rng(seed), regime=regime, interference=("spectral",)), seed
        )
        x = _highpass(sim.signal.astype(np.float64), params)
        want = _remove_carriers_float64(x, params.carrier_threshold)
        assert not np.allclose(want, x)  # there were carriers to find
        np.testing.assert_allclose(
            remove_carriers(x, params.carrier_threshold), want, rtol=0, atol=1e-5 * np.std(want)
        )


@pytest.mark.parametrize("n", [256, 1000, 1024, 5000, 65_537, 800_000])
def test_all_tones_in_two_passes_equal_fitting_them_one_by_one(n: int) -> None:
    """_subtract_tones (blocked projections, closed-form Gram matrices, one subtraction) leaves what
    fitting each tone by per-sample trig to the previous one's residual leaves, close tones included."""
    rng = np.random.default_rng(n)
    t = np.arange(n)
    freqs = [*rng.uniform(0.001, 0.499, 5), 0.1, 0.1 + 3.0 / n, 0.37]  # two tones 3 bins apart
    y = rng.normal(size=n) + sum(
        rng.uniform(0.5, 20.0) * np.cos(2.0 * np.pi * f * t + rng.uniform(0, 6.3)) for f in freqs
    )
    want = y.copy()
    for f in freqs:
        c, s = np.cos(2.0 * np.pi * f * t), np.sin(2.0 * np.pi * f * t)
        a = np.linalg.solve([[c @ c, c @ s], [c @ s, s @ s]], [c @ want, s @ want])
        want -= a[0] * c + a[1] * s
    got = y.copy()
    _subtract_tones(got, freqs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * np.abs(y).max())


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_sinusoid_fit_is_least_squares(seed: int) -> None:
    """The AC fit's normal equations from geometric series and blocked projections give np.linalg.lstsq's
    coefficients and residual variance, for every candidate period, sub-cycle ones included."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 900_000))
    step = max(1, n // int(rng.choice([1024, 8192])))
    idx = np.arange(int(rng.integers(0, step)), n, step, dtype=np.float64)
    y = rng.normal(size=idx.size) + 5.0 * np.sin(2.0 * np.pi * idx / rng.uniform(50.0, 3.0 * n) + 1.0)
    periods = np.r_[n / np.linspace(0.3, rng.uniform(2.0, 30.0), 9), 2.01 * step, 2.5 * step]
    coef, resid_var = _fit_sinusoids(idx, y, periods)
    for k, period in enumerate(periods):
        w = 2.0 * np.pi * idx / period
        design = np.stack([np.sin(w), np.cos(w), np.ones_like(w)], axis=1)
        want, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ want
        np.testing.assert_allclose(coef[k], want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
        np.testing.assert_allclose(resid_var[k], np.var(resid), rtol=1e-6)


def test_a_period_far_beyond_the_signal_is_no_fit_not_a_perfect_one() -> None:
    """10,000 samples at 1 GS/s of a 50 Hz AC (2e7 samples per cycle): the fit must not claim r2 = 1 with an
    absurd amplitude (a closed form that took the sums as exactly m did)."""
    rng = np.random.default_rng(0)
    x = 100.0 * np.sin(2.0 * np.pi * np.arange(10_000) / 2e7 + 0.3) + rng.normal(size=10_000)
    for spc in (2e7, 6.3e6, 1e9):
        fit = estimate_ac_phase(x, spc)
        assert fit is None or (fit.r2 < 1.0 and fit.amplitude < 1e4), (spc, fit)
