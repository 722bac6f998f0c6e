"""The classic wavelet/threshold PD detector."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from export.sim import simulator as sim
from export.sim.baseline import baseline_mask, detect_baseline, wavelet_denoise
from export.sim.scoring import Accumulator


def _valid(regions: list[tuple[int, int]], n: int) -> bool:
    ordered = all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(regions))
    return ordered and all(0 <= s < e <= n and isinstance(s, int) for s, e in regions)


def test_finds_an_isolated_large_pulse_in_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(4096)
    x = 50.0 * np.sin(2 * np.pi * t / 3334) + rng.standard_normal(4096)
    k = np.arange(40)
    x[2000:2040] += 30.0 * (np.exp(-k / 6.0) - np.exp(-k / 1.0)) / 0.6
    regions = detect_baseline(x)
    assert len(regions) == 1
    start, end = regions[0]
    assert start <= 2003 < end and end - start < 60


def test_pure_low_noise_is_mostly_silent() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(8192)
    silent = 0
    for _ in range(20):
        x = 1000.0 * np.sin(2 * np.pi * t / 5000 + rng.uniform(0, 6)) + 0.5 * rng.standard_normal(t.size)
        silent += detect_baseline(x) == []
    assert silent >= 18


@pytest.mark.parametrize("n", [1, 2, 3, 7, 15, 16, 63, 64, 100, 1025])
def test_any_length_works(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    x[n // 2] += 40.0
    regions = detect_baseline(x)
    assert _valid(regions, n)
    mask = baseline_mask(x)
    assert mask.shape == (n,) and mask.dtype == bool
    assert detect_baseline(np.zeros(n)) == []
    assert detect_baseline(np.arange(n, dtype=np.int32)) == []  # a ramp (any dtype) has no pulses
    if n >= 7:
        assert any(s <= n // 2 < e for s, e in regions)


def test_noise_sigma_is_the_median_estimate() -> None:
    # Many strong spikes would inflate a mean-absolute-deviation estimate; the median ignores them.
    rng = np.random.default_rng(2)
    x = rng.standard_normal(16384)
    x[rng.choice(x.size, 160, replace=False)] += 40.0
    _, sigma = wavelet_denoise(x)
    assert sigma == pytest.approx(1.0, rel=0.1)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        detect_baseline(np.zeros((2, 10)))
    with pytest.raises(ValueError):
        detect_baseline(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError):
        detect_baseline(np.zeros(100), fs_hz=1000.0, cutoff_hz=600.0)


def test_scores_well_on_clean_high_snr_simulations() -> None:
    acc = Accumulator(collar=5)
    for s in sim.iter_dataset(15, seed=3, n_samples=8192, snr_db=20.0, interference=()):
        acc.add([], s.events, detect_baseline(s.signal))
    assert acc.summary()["all"]["f1"] > 0.8
