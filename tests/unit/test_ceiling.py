"""The genie matched-filter ceiling: perfect where there is no noise, and it behaves like a threshold."""

from __future__ import annotations

import numpy as np

from export.ceiling import THRESHOLDS, ceiling, genie_counts
from export.sim.simulator import SimConfig, simulate


def _sim(snr_db: float | None, n_pd: int = 6, seed: int = 1) -> object:
    cfg = SimConfig(
        n_samples=16_000,
        samples_per_cycle=8000.0,
        ac_amplitude=100.0,
        ac_phase_deg=0.0,
        n_pd=n_pd,
        pd_amplitude=10.0,
        snr_db=snr_db,
    )
    return simulate(cfg, seed)


def test_no_white_noise_is_perfect() -> None:
    sim = _sim(None)
    counts = genie_counts(sim, collar=10)
    assert counts.shape == (len(THRESHOLDS), 3)
    assert (counts[:, 0] == len(sim.pulses)).all() and not counts[:, 1:].any()


def test_loud_pulses_are_all_found_and_quiet_ones_are_not() -> None:
    loud, quiet = _sim(30.0), _sim(-15.0)
    assert (genie_counts(loud, collar=10)[:, 0] == len(loud.pulses)).all()
    assert genie_counts(quiet, collar=10)[:, 0].sum() < len(quiet.pulses) * len(THRESHOLDS) / 2


def test_false_alarms_fall_as_the_threshold_rises() -> None:
    counts = genie_counts(_sim(0.0, n_pd=0), collar=10, thresholds=(2.0, 3.0, 4.0, 6.0))
    fp = counts[:, 1]
    assert fp[0] > fp[1] >= fp[2] >= fp[3] and fp[0] > 0  # pure noise, scanned by the bank
    assert not counts[:, 0].any() and not counts[:, 2].any()


def test_per_signal_and_global_thresholds_and_buckets_add_up() -> None:
    sims = [_sim(snr, seed=i) for i, snr in enumerate([None, 20.0, 5.0, -3.0])]
    out = ceiling(sims, lambda s: ["noisy" if s.noise_std > 0 else "clean"], collar=10)
    best = max(out["by_threshold"].values(), key=lambda v: v["f1"])
    assert out["global"]["f1"] == best["f1"] and out["global"]["threshold"] in THRESHOLDS
    assert out["buckets"]["all"]["f1"] >= out["global"]["f1"]  # on this data; not a theorem
    b = out["buckets"]
    assert b["all"]["tp"] == b["noisy"]["tp"] + b["clean"]["tp"]
    assert b["clean"]["f1"] == 1.0 and b["all"]["n_true"] == sum(len(s.pulses) for s in sims)
    assert np.isfinite(b["all"]["precision"])


def test_shape_blind_genie_finds_no_more_than_the_genie_and_buckets_add_up() -> None:
    sims = [_sim(snr, seed=i) for i, snr in enumerate([3.0, 6.0, 9.0, 0.0])]
    keys = lambda s: ["low" if s.config.snr_db < 4.0 else "high"]  # noqa: E731
    genie = ceiling(sims, keys, collar=10)
    blind = ceiling(sims, keys, collar=10, know_shapes=False)
    assert genie["know_shapes"] and not blind["know_shapes"]
    for t, g in genie["by_threshold"].items():  # same noise, a bank without the true shapes: fewer hits
        assert blind["by_threshold"][t]["recall"] <= g["recall"]
    at_t = blind["global_buckets"]
    assert at_t["all"]["tp"] == at_t["low"]["tp"] + at_t["high"]["tp"]
    assert at_t["all"]["f1"] == blind["global"]["f1"] and at_t["all"]["n_true"] == genie["global"]["n_true"]
