"""The faster pre/post-processing gives the answers the pipeline gave before it (tests/data/dsp_golden.json,
written by commit f92dae0's code): the same regions, peak indices and validity; amplitudes, scores, stats
and AC fits to floating-point rounding. Plus the exact shortcuts it relies on (median, carrier floor)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.dsp.carriers import CARRIER_BLOCK, _above_floor
from gateway.dsp.processing import exact_median
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
        # carriers are now subtracted as cos/sin tables built by complex products: float32 rounding
        np.testing.assert_allclose(g["peak_amplitude"], w["peak_amplitude"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(g["mean_score"], w["mean_score"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(g["stats"], w["stats"], rtol=1e-9, err_msg=name)
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
