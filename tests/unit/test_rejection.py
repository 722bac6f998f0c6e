"""Issue 11: the rejection rules after thresholding (the twin, the AC phase window) and fine-tuning from ONNX
weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.dsp.params import ProcessingParams
from gateway.dsp.phase import AcFit, estimate_ac_phase
from gateway.dsp.processing import run_pipeline
from gateway.dsp.regions import REJECT_REASONS, candidate_regions, find_region_arrays, has_twin, split_regions

MODEL = Path(__file__).resolve().parents[2] / "model_repository" / "pd_unet1d" / "1" / "model.onnx"


def _pulse(n: int, at: int, amp: float, width: float = 3.0) -> np.ndarray:
    t = np.arange(n) - at
    return amp * np.where(t >= 0, np.exp(-np.clip(t, 0, None) / width), 0.0)


def test_twin_rule_drops_the_pair_and_keeps_a_unipolar_pulse() -> None:
    n = 400
    x = (
        _pulse(n, 100, 5.0, 1.0) - _pulse(n, 104, 4.5, 1.0) + _pulse(n, 300, 5.0)
    )  # a pair at 100, a PD at 300
    prob = np.zeros(n, np.float32)
    prob[98:112] = prob[298:310] = 0.9
    off = ProcessingParams(min_region_samples=3)
    on = off.replace(twin_window=8, twin_ratio=0.8)
    assert find_region_arrays(prob, x, off).start.tolist() == [98, 298]
    assert find_region_arrays(prob, x, on).start.tolist() == [298]  # default off: versions unchanged
    # a twin beyond the window, or smaller than the ratio, is not a twin
    assert not has_twin(x, np.array([300]), 8, 0.8)[0]
    assert has_twin(x, np.array([100]), 8, 0.8)[0] and not has_twin(x, np.array([100]), 2, 0.8)[0]
    assert not has_twin(x, np.array([100]), 8, 0.95)[0]


def test_twin_params_are_validated() -> None:
    with pytest.raises(ValueError, match="twin"):
        ProcessingParams(twin_window=-1)
    with pytest.raises(ValueError, match="twin"):
        ProcessingParams(twin_ratio=1.5)
    with pytest.raises(ValueError, match="wrong type"):
        ProcessingParams.from_dict({"twin_window": 2.5})


def _phase_case() -> tuple[np.ndarray, np.ndarray, AcFit]:
    """Two AC cycles of 1,000 samples from 0 deg; pulses peaking at 36, 108, 216, 324 and 396 deg."""
    n = 2000
    x = sum(_pulse(n, at, 5.0) for at in (100, 300, 600, 900, 1100))
    prob = np.zeros(n, np.float32)
    for at in (100, 300, 600, 900, 1100):
        prob[at - 2 : at + 8] = 0.9
    return np.asarray(x), prob, AcFit(1000.0, 0.0, 1.0, 0.99)


def test_phase_rule_keeps_the_rising_quarters_of_both_half_cycles() -> None:
    x, prob, fit = _phase_case()
    off = ProcessingParams(min_region_samples=3)
    on = off.replace(phase_window=(0.0, 90.0))
    assert find_region_arrays(prob, x, off, fit).peak_index.tolist() == [100, 300, 600, 900, 1100]
    kept, rejected, reasons = split_regions(candidate_regions(prob, x, on), x, on, fit)
    assert kept.peak_index.tolist() == [100, 600, 1100]  # 36, 216 and 36 deg (second cycle)
    assert rejected.peak_index.tolist() == [300, 900]  # 108 and 324 deg
    assert [REJECT_REASONS[c] for c in reasons.tolist()] == ["phase", "phase"]
    # a window through 0 deg: [-40, 50) and [140, 230) keep 36, 216 and 324 deg (= -36), drop 108
    wrap = off.replace(phase_window=(-40.0, 50.0))
    assert find_region_arrays(prob, x, wrap, fit).peak_index.tolist() == [100, 600, 900, 1100]
    narrow = off.replace(phase_window=(-40.0, 30.0))
    assert find_region_arrays(prob, x, narrow, fit).peak_index.tolist() == [900]  # only -36 is in


def test_phase_rule_needs_a_trustworthy_ac_fit() -> None:
    x, prob, _ = _phase_case()
    on = ProcessingParams(min_region_samples=3, phase_window=(0.0, 90.0))
    everything = [100, 300, 600, 900, 1100]
    assert find_region_arrays(prob, x, on, None).peak_index.tolist() == everything  # no AC found
    poor = AcFit(1000.0, 0.0, 1.0, 0.5)  # the sinusoid explains half the variance: r2 < phase_min_r2
    assert find_region_arrays(prob, x, on, poor).peak_index.tolist() == everything
    assert len(find_region_arrays(prob, x, on.replace(phase_min_r2=0.4), poor)) == 3
    piece = AcFit(4000.0, 0.0, 1.0, 0.99)  # 2,000 samples are half of this period's cycle, estimated
    assert find_region_arrays(prob, x, on, piece).peak_index.tolist() == everything
    known = AcFit(4000.0, 0.0, 1.0, 0.99, period_known=True)  # given: half a cycle is enough
    assert find_region_arrays(prob, x, on, known).peak_index.tolist() == [100, 300, 600, 900]  # not 99 deg
    short = AcFit(10_000.0, 0.0, 1.0, 0.99, period_known=True)  # a fifth of a cycle: not enough
    assert find_region_arrays(prob, x, on, short).peak_index.tolist() == everything


def test_known_period_fit_of_a_piece_of_a_cycle_finds_the_phase() -> None:
    """What the stream's blocks (a third of a VSB cycle by default) rely on: with the period given, a fit
    over a quarter cycle or more of a noisy int8 AC is within a few degrees of the true phase."""
    rng = np.random.default_rng(1)
    period = 800_000.0
    for frac in (0.25, 0.34, 0.5):
        for _ in range(10):
            start, ph = int(rng.integers(0, 800_000)), rng.uniform(0, 2 * np.pi)
            t = np.arange(start, start + int(frac * period))
            x = rng.uniform(15, 45) * np.sin(2 * np.pi * t / period + ph) + rng.uniform(-5, 5)
            x = np.clip(np.round(x + rng.uniform(0.6, 3) * rng.standard_normal(t.size)), -128, 127)
            fit = estimate_ac_phase(x, period)
            if fit is None:  # the AC explains too little of this piece: no phase, no rule
                continue
            assert fit.period_known
            true = np.degrees(2 * np.pi * start / period + ph) % 360
            assert abs((np.degrees(fit.phase0_rad) - true + 180) % 360 - 180) < 3.0


def test_twin_is_checked_before_the_phase() -> None:
    n = 2000
    x = _pulse(n, 300, 5.0, 1.0) - _pulse(n, 304, 4.5, 1.0)  # a pair at 108 deg
    prob = np.zeros(n, np.float32)
    prob[298:310] = 0.9
    p = ProcessingParams(min_region_samples=3, twin_window=8, phase_window=(0.0, 90.0))
    _, rejected, reasons = split_regions(candidate_regions(prob, x, p), x, p, AcFit(1000.0, 0.0, 1.0, 0.99))
    assert len(rejected) == 1 and REJECT_REASONS[int(reasons[0])] == "twin"


def test_pipeline_fits_the_ac_of_the_raw_signal_for_the_phase_rule() -> None:
    """run_pipeline (like the gateway) fits the AC on the raw samples: a pulse at 120 deg of a real
    sinusoid goes, one at 45 deg stays; without an AC in the signal both stay."""
    n, period = 4000, 2000.0
    t = np.arange(n)
    pulses = _pulse(n, round(45 / 360 * period), 50.0, 2.0) + _pulse(n, round(120 / 360 * period), 50.0, 2.0)
    params = ProcessingParams(
        window=256,
        hop=128,
        highpass_wn=0.05,
        clip=None,
        normalisation="none",
        valid_threshold=0.0,
        min_region_samples=3,
        phase_window=(0.0, 90.0),
    )

    def model(w: np.ndarray) -> np.ndarray:  # a stand-in: probability 0.9 where the input exceeds 10
        return (np.abs(w) > 10.0).astype(np.float32) * 0.9

    (with_ac,) = run_pipeline([1000.0 * np.sin(2 * np.pi * t / period) + pulses], params, model)
    assert with_ac.fit is not None and abs(with_ac.fit.samples_per_cycle - period) < 20
    assert [r.peak_index for r in with_ac.regions] == [250]
    (no_ac,) = run_pipeline([pulses], params, model)
    assert [r.peak_index for r in no_ac.regions] == [250, 667]


def test_phase_params_are_validated_and_survive_json() -> None:
    p = ProcessingParams.from_dict({"phase_window": [-10, 100]})
    assert p.phase_window == (-10, 100)
    assert ProcessingParams.from_dict(json.loads(p.to_json())) == p
    for bad in ([90, 0], [0, 200], [-200, -100], [0, 90, 180]):
        with pytest.raises(ValueError, match="phase_window"):
            ProcessingParams.from_dict({"phase_window": bad})
    with pytest.raises(ValueError, match="phase_window"):
        ProcessingParams.from_dict({"phase_window": "0-90"})
    with pytest.raises(ValueError, match="phase_window"):
        ProcessingParams.from_dict({"phase_window": [True, 90]})
    with pytest.raises(ValueError, match="phase_min_r2"):
        ProcessingParams(phase_min_r2=1.5)


def test_onnx_weights_load_back_into_the_torch_model_exactly() -> None:
    torch = pytest.importorskip("torch")
    from export.model import UNet1D
    from export.onnx_init import load_onnx_weights, parity

    torch.manual_seed(0)
    model = UNet1D(1, 1, (8, 16, 32, 64), (1, 2, 4, 8))
    calib = torch.randn(16, 1, 1024)
    load_onnx_weights(model, MODEL, calib)
    x = np.random.default_rng(0).standard_normal((4, 1, 1024)).astype(np.float32)
    assert parity(model, MODEL, x) < 1e-4
    # training-mode BatchNorm on the calibration batch itself gives the same function
    model.train()
    with torch.no_grad():
        train_out = torch.sigmoid(model(calib))
    model.eval()
    with torch.no_grad():
        eval_out = torch.sigmoid(model(calib))
    assert float(torch.max(torch.abs(train_out - eval_out))) < 1e-3
