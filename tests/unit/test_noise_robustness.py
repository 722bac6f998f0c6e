"""export.noise_robustness: alarms and recall under non-white noise, from the own simulator only."""

from __future__ import annotations

import numpy as np

from export import noise_robustness
from gateway.dsp.params import DEFAULT_PARAMS


def test_a_silent_model_raises_no_alarm_and_finds_nothing() -> None:
    result = noise_robustness.noise_robustness(
        lambda w: np.zeros_like(w), DEFAULT_PARAMS, long_signals=1, short_signals=4
    )
    assert set(result) == set(noise_robustness.NOISES)
    for row in result.values():
        assert row == {"false_per_800k": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_a_threshold_model_fires_on_heavy_tailed_noise_more_than_on_white() -> None:
    def loud(w: np.ndarray) -> np.ndarray:  # "PD" wherever |x| > 1.5 = 6 robust noise sigmas
        return (np.abs(w) > 1.5).astype(np.float32)

    params = DEFAULT_PARAMS.replace(normalisation="signal_mad", mad_scale=4.0, phase_window=None)
    result = noise_robustness.noise_robustness(loud, params, long_signals=1, short_signals=4)
    assert result["student-t 3"]["false_per_800k"] > result["white"]["false_per_800k"]
    assert result["white"]["recall"] > 0.3  # the stand-in does find 10 dB pulses
