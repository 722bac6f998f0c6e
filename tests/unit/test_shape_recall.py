"""export.shape_recall: recall per pulse shape, from the own simulator only, with the simulator restored."""

from __future__ import annotations

import numpy as np

from export import shape_recall
from export.sim import simulator, waveforms
from gateway.dsp.params import DEFAULT_PARAMS


def test_every_shape_gets_a_recall_and_the_simulator_is_restored() -> None:
    def loud(w: np.ndarray) -> np.ndarray:  # a stand-in model: "PD" where |x| > 0.3 of the largest
        return (np.abs(w) > 0.3).astype(np.float32)

    result = shape_recall.shape_recall(
        loud, DEFAULT_PARAMS.replace(phase_window=None), snrs=(30.0,), signals=2
    )
    assert set(result) == {
        *waveforms.PD_KINDS,
        "exp_long",
        "osc_fast",
        "osc_long",
        "mexican_hat",
        "gauss_derivative",
    }
    assert all(0.0 <= r["30"] <= 1.0 for r in result.values())
    assert result["exp"]["30"] > 0.5  # loud unipolar pulses at 30 dB cross it
    assert simulator.pd_waveform is waveforms.pd_waveform


def test_the_wide_shapes_are_what_their_names_say() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        long_tail, k = shape_recall.SHAPES["exp_long"](rng)
        assert np.all(long_tail >= 0)  # unipolar
        assert waveforms.support(long_tail)[1] - k >= 40  # above 5 % of its peak for 40+ samples
        ring, _ = shape_recall.SHAPES["osc_fast"](rng)
        assert 0.25 <= np.argmax(np.abs(np.fft.rfft(ring, 4096))) / 4096 <= 0.5


def test_the_simulator_draws_the_shape_under_test(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drawn: list[int] = []

    def spike(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        drawn.append(1)
        return np.array([0.0, 1.0, 0.0]), 1

    monkeypatch.setattr(shape_recall, "SHAPES", {"spike": spike})
    result = shape_recall.shape_recall(lambda w: np.zeros_like(w), DEFAULT_PARAMS, snrs=(30.0,), signals=2)
    assert result == {"spike": {"30": 0.0}}  # a model that never votes finds nothing
    assert len(drawn) == 16  # 2 signals x 8 pulses, every one of them from the shape under test
