"""Event matching, F1 conventions, mask IoU and bucketed accumulation."""

from __future__ import annotations

import numpy as np
import pytest

from export.sim.scoring import (
    Accumulator,
    event_scores,
    mask_iou,
    mask_to_regions,
    match_events,
    regions_to_mask,
)


def test_perfect_prediction() -> None:
    events = [(10, 20), (50, 60)]
    assert match_events(events, events, collar=0) == (2, 0, 0)
    assert event_scores(2, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_miss_and_false_positive() -> None:
    assert match_events([(10, 20), (50, 60)], [(12, 18)], collar=0) == (1, 0, 1)
    assert match_events([(10, 20)], [(12, 18), (100, 110)], collar=0) == (1, 1, 0)
    scores = event_scores(1, 1, 1)
    assert scores["precision"] == scores["recall"] == scores["f1"] == pytest.approx(0.5)


def test_collar_edge() -> None:
    # The true interval widened by collar c is [10 - c, 20 + c); a prediction must overlap it.
    assert match_events([(10, 20)], [(22, 25)], collar=2) == (0, 1, 1)
    assert match_events([(10, 20)], [(22, 25)], collar=3) == (1, 0, 0)
    assert match_events([(10, 20)], [(20, 21)], collar=0) == (0, 1, 1)  # touching is not overlapping
    assert match_events([(10, 20)], [(5, 8)], collar=2) == (0, 1, 1)
    assert match_events([(10, 20)], [(5, 9)], collar=2) == (1, 0, 0)


def test_matching_is_one_to_one_and_nearest_first() -> None:
    assert match_events([(10, 20)], [(10, 14), (16, 20)], collar=0) == (1, 1, 0)
    assert match_events([(10, 20), (12, 22)], [(11, 21)], collar=0) == (1, 0, 1)
    # Nearest centres first: (2,6) takes (0,10), leaving (10,20) to (8,14); matching in prediction order
    # would give (8,14) to (0,10) and leave (2,6) unmatched.
    assert match_events([(0, 10), (10, 20)], [(8, 14), (2, 6)], collar=0) == (2, 0, 0)
    with pytest.raises(ValueError):
        match_events([(0, 1)], [(0, 1)], collar=-1)


def test_zero_division_conventions() -> None:
    assert event_scores(0, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert event_scores(0, 0, 3) == {"precision": 1.0, "recall": 0.0, "f1": 0.0}
    assert event_scores(0, 2, 0) == {"precision": 0.0, "recall": 1.0, "f1": 0.0}
    assert match_events([], [], collar=5) == (0, 0, 0)
    assert match_events([(1, 2)], [], collar=5) == (0, 0, 1)


def test_mask_iou_and_region_helpers() -> None:
    empty = np.zeros(10, dtype=bool)
    assert mask_iou(empty, empty) == 1.0
    a = regions_to_mask([(0, 4)], 10)
    b = regions_to_mask([(2, 6)], 10)
    assert mask_iou(a, b) == pytest.approx(2 / 6)
    assert mask_iou(a, empty) == 0.0
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros(9, dtype=bool))
    regions = [(0, 2), (5, 6), (8, 10)]
    assert mask_to_regions(regions_to_mask(regions, 10)) == regions
    assert regions_to_mask([(-3, 2), (9, 50)], 10).sum() == 3


def test_accumulator_buckets_and_micro_averages() -> None:
    acc = Accumulator(collar=2)
    true, pred = [(10, 20)], [(11, 19)]
    counts = acc.add(["snr:high"], true, pred, regions_to_mask(true, 50), regions_to_mask(pred, 50))
    assert counts == (1, 0, 0)
    acc.add(["snr:low"], [(5, 10), (30, 40)], [(30, 35), (45, 48)])  # masks from the events themselves
    acc.add(["snr:low", "pair"], [], [])
    out = acc.summary()
    assert set(out) == {"all", "snr:high", "snr:low", "pair"}
    assert out["snr:high"]["f1"] == 1.0 and out["snr:high"]["iou"] == pytest.approx(8 / 10)
    low = out["snr:low"]
    assert (low["tp"], low["fp"], low["fn"], low["n_signals"]) == (1, 1, 1, 2)
    assert low["iou"] == pytest.approx(5 / 18)
    assert low["mean_signal_iou"] == pytest.approx((5 / 18 + 1.0) / 2)
    everything = out["all"]
    assert (everything["n_signals"], everything["n_true"], everything["n_pred"]) == (3, 3, 3)
    assert everything["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert everything["signal_mcc"] == pytest.approx(1.0)  # PD signals flagged, the clean one silent
    assert out["pair"]["f1"] == 1.0 and out["pair"]["n_signals"] == 1
    with pytest.raises(ValueError):
        acc.add([], [], [], true_mask=np.zeros(3, dtype=bool))
