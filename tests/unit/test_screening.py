"""Window screening: skipped windows cost nothing and change no region, and the calibration generalises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.evaluate import heldout_set, ort_infer
from export.screening import agreement, calibrate, window_votes
from gateway import repository
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import finish, prepare, run_pipeline, window_peaks
from tests.unit.dsp_golden import SHIPPED_V1, cases, stand_in_model

ROOT = repository.model_path(Path(__file__).resolve().parents[2] / "model_repository", "pd_unet1d")


def test_screened_windows_are_not_sent_and_count_as_zero() -> None:
    x = cases()[0][1]  # a whole VSB cycle
    full = prepare([x], SHIPPED_V1)
    peaks = window_peaks(full.batch[:, 0])
    screen = float(np.median(peaks))
    params = SHIPPED_V1.replace(screen_peak=screen)
    prep = prepare([x], params)
    (keep,) = prep.sent
    assert keep is not None and 0 < prep.n_sent == keep.size < prep.n_windows[0]
    np.testing.assert_array_equal(keep, np.flatnonzero(peaks >= screen))
    np.testing.assert_array_equal(prep.batch, full.batch[keep])
    probs = np.ones((prep.n_sent, 1, params.window), np.float32)
    (done,) = finish(prep, probs, params)
    assert done is not None
    prob = done.prob
    assert prob.max() == 1.0 and prob.min() == 0.0  # sent windows vote 1, skipped ones 0
    with pytest.raises(ValueError, match="windows of probabilities"):
        finish(prep, probs[1:], params)


@pytest.mark.parametrize(("name", "x"), cases()[:6])
def test_screening_below_the_stand_in_models_reach_keeps_regions(name: str, x: np.ndarray) -> None:
    model = stand_in_model(0.6)  # a window with peak < 0.3 stays below 0.04 everywhere
    (off,) = run_pipeline([x], SHIPPED_V1, model)
    (on,) = run_pipeline([x], SHIPPED_V1.replace(screen_peak=0.3), model)
    assert [(r.start, r.end, r.peak_index) for r in on.regions] == [
        (r.start, r.end, r.peak_index) for r in off.regions
    ]


def test_screen_peak_is_validated_and_optional() -> None:
    assert ProcessingParams().screen_peak is None
    assert ProcessingParams.from_dict({"screen_peak": 0.4}).screen_peak == 0.4
    with pytest.raises(ValueError, match="screen_peak"):
        ProcessingParams(screen_peak=-1.0)


def test_calibrate_takes_the_smallest_voting_peak_over_the_margin() -> None:
    peaks = np.array([0.2, 0.5, 0.9, 3.0])
    votes = np.array([0.0, 0.3, 0.9, 0.1])
    assert calibrate(peaks, votes, threshold=0.5, margin=2.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no window ever voted"):
        calibrate(peaks, np.zeros(4), threshold=0.5, margin=1.5)


def test_shipped_model_calibrated_screen_agrees_on_other_random_signals() -> None:
    """Calibrated on one draw of simulator signals, checked on another: no region may change."""
    config = repository.read_config(ROOT)
    version = max(repository.list_versions(ROOT))
    params = ProcessingParams.from_dict(repository.processing_params_from_config(config, version) or {})
    infer = ort_infer(str(ROOT / str(version) / repository.MODEL_FILENAME), 1)
    calib = [s.signal for s in heldout_set(24, 0, seed=7)]
    screen = params.screen_peak or calibrate(*window_votes(calib, params, infer), params.threshold, 1.5)
    check = [s.signal for s in heldout_set(24, 0, seed=8)]
    report = agreement(check, params.replace(screen_peak=screen), infer)
    assert report["regions"] > 0
    assert report["regions_changed"] == 0, report
