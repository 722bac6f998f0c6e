"""The response's region list: column-wise construction, µs units, AC phase, and the cap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.dsp.params import ProcessingParams
from gateway.dsp.phase import AcFit
from gateway.dsp.regions import find_region_arrays
from gateway.services.inference import regions_json


def _regions(n_regions: int):
    prob = np.zeros(10 * n_regions, np.float32)
    prob[1::10] = 0.9
    x = np.linspace(-1, 1, prob.size).astype(np.float32)
    return find_region_arrays(prob, x, ProcessingParams())


def test_regions_json_fields_units_and_phase() -> None:
    regions = _regions(4)
    fit = AcFit(samples_per_cycle=40.0, phase0_rad=0.0, amplitude=1.0, r2=1.0)
    out = regions_json(regions, fit, fs_hz=2e6, limit=100)
    assert [r["start"] for r in out] == [1, 11, 21, 31]
    assert all(r["duration"] == 1 and r["duration_us"] == pytest.approx(0.5) for r in out)
    assert out[1]["start_us"] == pytest.approx(5.5)
    assert out[1]["phase_deg"] == pytest.approx(math.fmod(11 / 40 * 360, 360), abs=1e-3)
    assert set(out[0]) == {
        "start", "end", "duration", "peak_index", "peak_amplitude", "mean_score", "phase_deg",
        "start_us", "duration_us",
    }  # fmt: skip


def test_regions_json_without_fs_or_fit_and_capped() -> None:
    regions = _regions(50)
    out = regions_json(regions, None, None, limit=7)
    assert len(out) == 7 and len(regions) == 50
    assert all(r["phase_deg"] is None and "start_us" not in r for r in out)
