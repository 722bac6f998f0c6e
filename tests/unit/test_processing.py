"""The shared processing module: seed 000 reproduced exactly, any length works, stitching is exact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gateway.dsp.params import DEFAULT_PARAMS, SEED_PARAMS, ProcessingParams
from gateway.dsp.phase import estimate_ac_phase
from gateway.dsp.processing import (
    make_windows,
    preprocess_batch,
    run_pipeline,
    signal_stats,
    stitch,
    window_starts,
)
from gateway.dsp.regions import find_regions


def test_seed_pipeline_reproduces_published_validity_and_stats(seed_data: np.ndarray) -> None:
    pre, valid = preprocess_batch(list(seed_data), SEED_PARAMS)
    assert valid.tolist() == [False, True, False, True, True, True, False]
    stats = signal_stats(pre[1])
    # seed 000 README, sample 1
    assert stats.max_amplitude == pytest.approx(0.17049315571784973, abs=1e-6)
    assert stats.mean_amplitude == pytest.approx(0.0004181701224297285, abs=1e-6)
    assert stats.std_amplitude == pytest.approx(0.005596190225332975, abs=1e-6)


def test_batch_normalisation_differs_from_per_signal(seed_data: np.ndarray) -> None:
    pre, valid = preprocess_batch(list(seed_data), SEED_PARAMS.replace(normalisation="signal_max"))
    assert valid.all()
    assert all(np.max(np.abs(x)) == pytest.approx(1.0) for x in pre)


@pytest.mark.parametrize("n", [1, 2, 5, 13, 15, 100, 1023, 1024, 1025, 7920])
@pytest.mark.parametrize("params", [SEED_PARAMS, DEFAULT_PARAMS], ids=["seed", "default"])
def test_any_length_runs_end_to_end(n: int, params: ProcessingParams) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    results = run_pipeline([x], params, lambda w: np.full_like(w, 0.9), keep_probability=True)
    (res,) = results
    assert res.probability is None or res.probability.shape == (n,)
    if res.valid:
        assert res.n_windows == window_starts(n, params).size
        assert all(0 <= r.start < r.end <= n for r in res.regions)


ALIGNED = DEFAULT_PARAMS.replace(align_last_window=True)


@pytest.mark.parametrize("params", [SEED_PARAMS, DEFAULT_PARAMS, ALIGNED], ids=["seed", "default", "aligned"])
@pytest.mark.parametrize("n", [1, 700, 1024, 1025, 5000, 20_001])
def test_windows_cover_signal_and_stitch_inverts(params: ProcessingParams, n: int) -> None:
    x = np.random.default_rng(0).normal(size=n).astype(np.float32)
    windows = make_windows(x, params)
    starts = window_starts(n, params)
    assert windows.shape == (starts.size, params.window)
    assert starts[-1] + params.window >= n
    if params.align_last_window and n >= params.window:  # no zero padding: the last window ends at n
        assert starts[-1] + params.window == n and np.array_equal(windows[-1], x[-params.window :])
        assert np.all(np.diff(starts) > 0)
    # a model that returns its input stitches back to the signal itself
    np.testing.assert_allclose(stitch(windows, n, params), x, rtol=1e-5, atol=1e-6)


def test_regions_threshold_merge_and_filters() -> None:
    prob = np.zeros(100, np.float32)
    prob[0:3] = prob[10:20] = prob[22:25] = prob[50:51] = 0.9
    x = np.zeros(100, np.float32)
    x[15] = -0.8
    x[50] = 0.3
    params = ProcessingParams(merge_gap=2, min_region_samples=1)
    regions = find_regions(prob, x, params)
    assert [(r.start, r.end) for r in regions] == [(0, 3), (10, 25), (50, 51)]
    assert regions[1].peak_index == 15 and regions[1].peak_amplitude == pytest.approx(-0.8)
    seed_test = params.replace(drop_edge_regions=True, min_region_peak=0.2)
    assert [(r.start, r.end) for r in find_regions(prob, x, seed_test)] == [(50, 51)]


def test_long_signals_get_the_long_signal_threshold() -> None:
    prob = np.zeros(100, np.float32)
    prob[10:20], prob[50:60] = 0.6, 0.95
    x = np.zeros(100, np.float32)
    params = ProcessingParams(threshold=0.5, long_signal_threshold=0.9, long_signal_samples=100)
    assert [(r.start, r.end) for r in find_regions(prob, x, params)] == [(50, 60)]  # 100 samples: long
    shorter = params.replace(long_signal_samples=101)
    assert [(r.start, r.end) for r in find_regions(prob, x, shorter)] == [(10, 20), (50, 60)]
    assert [(r.start, r.end) for r in find_regions(prob, x, params.replace(long_signal_threshold=None))] == [
        (10, 20),
        (50, 60),
    ]


def test_params_validation_and_round_trip() -> None:
    assert ProcessingParams.from_dict(DEFAULT_PARAMS.to_dict()) == DEFAULT_PARAMS
    with pytest.raises(ValueError, match="unknown"):
        ProcessingParams.from_dict({"windw": 10})
    with pytest.raises(ValueError, match="hop"):
        ProcessingParams(window=64, hop=100)
    with pytest.raises(ValueError, match="normalisation"):
        ProcessingParams(normalisation="zscore")  # type: ignore[arg-type]
    for bad in ({"long_signal_threshold": 1.0}, {"long_signal_threshold": 0.0}, {"long_signal_samples": 0}):
        with pytest.raises(ValueError, match="long_signal"):
            DEFAULT_PARAMS.replace(**bad)


@pytest.mark.parametrize("spc", [3334.0, 800_000.0])
def test_ac_phase_recovered(spc: float) -> None:
    n = 7920 if spc < 10_000 else 800_000
    phase0 = 1.1
    idx = np.arange(n)
    raw = 7e5 * np.sin(2 * math.pi * idx / spc + phase0) + np.random.default_rng(1).normal(0, 1e4, n)
    for known in (spc, None):
        fit = estimate_ac_phase(raw, known)
        assert fit is not None
        assert fit.samples_per_cycle == pytest.approx(spc, rel=0.02)
        assert fit.phase_deg(0) == pytest.approx(math.degrees(phase0), abs=3.0)


def test_ac_phase_none_for_noise() -> None:
    assert estimate_ac_phase(np.random.default_rng(2).normal(size=5000)) is None
    assert estimate_ac_phase(np.zeros(3)) is None


def _regions_by_loop(prob: np.ndarray, x: np.ndarray, p: ProcessingParams) -> list[tuple]:
    """The obvious per-run loop: the vectorised implementation must agree with it exactly."""
    mask = np.concatenate(([False], prob > p.threshold, [False]))
    starts = [i for i in range(1, mask.size) if mask[i] and not mask[i - 1]]
    ends = [i for i in range(1, mask.size) if not mask[i] and mask[i - 1]]
    merged: list[list[int]] = []
    for s, e in zip(starts, ends, strict=True):
        if merged and (s - 1) - merged[-1][1] <= p.merge_gap:
            merged[-1][1] = e - 1
        else:
            merged.append([s - 1, e - 1])
    out = []
    for s, e in merged:
        seg = x[s:e]
        if e - s < p.min_region_samples or (p.drop_edge_regions and s == 0):
            continue
        if p.min_region_peak is not None and seg.max() < p.min_region_peak:
            continue
        k = int(np.argmax(np.abs(seg)))
        out.append((s, e, s + k, float(seg[k]), float(prob[s:e].mean())))
    return out


def test_vectorised_regions_match_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    for trial in range(150):
        n = int(rng.integers(1, 2000))
        prob = rng.random(n).astype(np.float32)
        x = rng.normal(size=n).astype(np.float32)
        if trial % 3 == 0:
            x = np.round(x)  # ties: the first sample reaching the peak wins
        p = ProcessingParams(
            threshold=float(rng.uniform(0.2, 0.9)),
            merge_gap=int(rng.integers(0, 4)),
            min_region_samples=int(rng.integers(1, 4)),
            drop_edge_regions=bool(rng.integers(0, 2)),
            min_region_peak=[None, 0.2][int(rng.integers(0, 2))],
        )
        got = [(r.start, r.end, r.peak_index, r.peak_amplitude) for r in find_regions(prob, x, p)]
        want = _regions_by_loop(prob, x, p)
        assert got == [w[:4] for w in want]
        scores = [r.mean_score for r in find_regions(prob, x, p)]
        np.testing.assert_allclose(scores, [w[4] for w in want], atol=1e-6)


def test_signal_mad_normalisation_measures_pulses_against_noise() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 2.0, 20_000)
    quiet, loud = noise.copy(), noise.copy()
    quiet[5000] += 40.0  # a 20-sigma pulse
    loud[5000] += 40.0
    loud[12000:12004] += [900.0, -900.0, 900.0, -900.0]  # a huge interference burst elsewhere
    params = DEFAULT_PARAMS.replace(normalisation="signal_mad", highpass_wn=None, mad_scale=10.0)
    (q, lo), _ = preprocess_batch([quiet, loud], params)
    # the pulse keeps its size relative to the noise whatever else the signal holds
    assert q[5000] == pytest.approx(lo[5000], rel=0.02)
    assert q[5000] == pytest.approx(2.0, rel=0.1)  # 40 / (10 * sigma=2)
    assert np.std(q) == pytest.approx(0.1, rel=0.1)
    (flat,), _ = preprocess_batch([np.zeros(100)], params)
    assert not np.any(flat)  # no division by zero on a flat signal


def test_soft_clip_bounds_the_input_smoothly() -> None:
    x = np.linspace(-100, 100, 2001)
    params = DEFAULT_PARAMS.replace(normalisation="none", highpass_wn=None, soft_clip=3.0)
    (y,), _ = preprocess_batch([x], params)
    assert np.max(np.abs(y)) <= 3.0 + 1e-6
    assert np.all(np.diff(y) >= 0) and np.all(np.sign(y) == np.sign(x))  # order and sign kept
    assert np.all(np.diff(y[np.abs(x) < 15]) > 0)  # strictly, until float32 saturates
    small = np.abs(x) < 0.3
    np.testing.assert_allclose(y[small], x[small], atol=3e-3)  # ~linear near zero


def test_max_input_scales_down_linearly_and_keeps_shape() -> None:
    rng = np.random.default_rng(4)
    noisy = rng.normal(0, 1.0, 8000)
    noisy[4000] += 30.0
    clean = rng.normal(0, 1e-9, 8000)  # almost no noise: it would otherwise become a huge input
    clean[4000:4003] = [1e-3, 5e-4, 2e-4]
    params = DEFAULT_PARAMS.replace(
        normalisation="signal_mad", highpass_wn=None, mad_scale=4.0, max_input=20.0
    )
    (n, c), _ = preprocess_batch([noisy, clean], params)
    assert n[4000] == pytest.approx(30.0 / 4.0, rel=0.1)  # below the cap: measured against the noise
    assert np.max(np.abs(c)) == pytest.approx(20.0)  # capped, and linearly: the pulse keeps its shape
    np.testing.assert_allclose(c[4000:4003] / c[4000], [1.0, 0.5, 0.2], rtol=1e-4)
    with pytest.raises(ValueError, match="max_input"):
        DEFAULT_PARAMS.replace(max_input=0.0)


@pytest.mark.parametrize("n", [5000, 8192, 8193, 60_000, 200_001, 800_000])
def test_a_blockwise_cap_is_local_smooth_and_never_exceeded(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(0, 1.0, n)
    spike = int(rng.integers(0, n))
    x[spike] = 400.0
    whole = DEFAULT_PARAMS.replace(normalisation="none", highpass_wn=None, max_input=20.0)
    local = whole.replace(max_input_block=8192)
    (a,), _ = preprocess_batch([x], whole)
    (b,), _ = preprocess_batch([x], local)
    assert np.max(np.abs(b)) <= 20.0 * (1 + 1e-6)  # the cap holds everywhere
    if n <= 8192:
        np.testing.assert_array_equal(a, b)  # one block: exactly the whole-signal cap
        return
    gain = b / np.where(x == 0, 1.0, x)
    assert np.max(np.abs(np.diff(gain))) < 0.01  # a smooth gain: no step a window could take for a pulse
    far = np.abs(np.arange(n) - spike) > 3 * 8192
    assert np.any(far) or n < 100_000
    np.testing.assert_allclose(gain[far], 1.0, rtol=1e-6)  # far from the spike nothing is scaled
    assert np.all(gain <= 1.0 + 1e-6) and gain[spike] == pytest.approx(20.0 / 400.0, rel=1e-6)
    silent = np.zeros(3 * 8192, np.float32)  # an all-zero block beside a capped one: no 0/0
    silent[-1] = 400.0
    with np.errstate(all="raise"):
        (z,), _ = preprocess_batch([silent], local)
    assert np.max(np.abs(z)) <= 20.0 * (1 + 1e-6) and not np.any(z[:8192])
    with pytest.raises(ValueError, match="max_input_block"):
        DEFAULT_PARAMS.replace(max_input_block=1)
    with pytest.raises(ValueError, match="wrong type"):
        DEFAULT_PARAMS.replace(max_input_block=8192.0)


def test_carrier_removal_subtracts_carriers_and_keeps_pulses_and_noise() -> None:
    from export.sim.simulator import SimConfig, simulate
    from gateway.dsp.carriers import CARRIER_MIN_SAMPLES, remove_carriers

    cfg = SimConfig(
        n_samples=16_000,
        samples_per_cycle=8000.0,
        ac_amplitude=0.0,
        ac_phase_deg=0.0,
        n_pd=8,
        pd_amplitude=10.0,
        snr_db=10.0,
        spectral_carriers=4,
        spectral_amplitude=3.0,
    )
    sim = simulate(cfg, 3, return_components=True)
    c = sim.components
    assert c is not None
    left = remove_carriers(sim.signal, 8.0) - c["pd"] - c["noise"]
    assert np.std(left) < 0.05 * np.std(c["spectral"])  # the carriers are gone...
    assert np.max(np.abs(left[:50])) < 0.1 * np.max(np.abs(c["spectral"]))  # ...up to the signal's ends
    np.testing.assert_allclose(remove_carriers(c["pd"], 8.0), c["pd"])  # broadband pulses stay as they are
    np.testing.assert_array_equal(remove_carriers(c["noise"], 8.0), c["noise"])  # nothing to remove
    short = np.sin(np.arange(CARRIER_MIN_SAMPLES - 1) * 0.3)
    np.testing.assert_array_equal(remove_carriers(short, 8.0), short)  # too few bins for a floor
    with pytest.raises(ValueError, match="carrier_threshold"):
        DEFAULT_PARAMS.replace(carrier_threshold=1.0)


@pytest.mark.parametrize("n", [1, 255, 256, 359, 1024, 5000, 5003, 20_011])  # 359, 5003, 20011: prime
def test_carrier_removal_runs_at_any_length(n: int) -> None:
    from gateway.dsp.carriers import CARRIER_MIN_SAMPLES, remove_carriers

    noise = np.random.default_rng(n).normal(size=n)
    x = noise + 1e3 * np.sin(np.arange(n) * 0.7 + 0.4)  # a carrier 60 dB above the noise
    out = remove_carriers(x, 8.0)
    assert out.shape == (n,) and np.all(np.isfinite(out))
    if n >= CARRIER_MIN_SAMPLES:  # removed down to the noise: the frequency estimate is exact enough
        assert np.std(out - noise) < 0.5  # from 707 (1e3 / sqrt 2) to under half the noise
    params = DEFAULT_PARAMS.replace(carrier_threshold=8.0)
    (pre,), _ = preprocess_batch([x], params)
    assert pre.shape == (n,) and np.all(np.isfinite(pre))


def test_params_refuse_wrong_types_and_parse_overrides() -> None:
    from gateway.dsp.params import parse_overrides

    for bad in (
        {"align_last_window": "false"},
        {"carrier_threshold": "8"},
        {"window": 1024.0},
        {"hop": True},
        {"long_signal_samples": 1e5},
    ):
        with pytest.raises(ValueError, match="wrong type"):
            DEFAULT_PARAMS.replace(**bad)
    assert parse_overrides(["threshold=0.4", 'normalisation="signal_mad"', "clip=null"]) == {
        "threshold": 0.4,
        "normalisation": "signal_mad",
        "clip": None,
    }
    for item in ["nope=1", "threshold", "threshold=oops"]:
        with pytest.raises(ValueError):
            parse_overrides([item])


def test_noise_floor_keeps_clean_signals_from_blowing_up() -> None:
    t = np.arange(7920)
    params = DEFAULT_PARAMS.replace(normalisation="signal_mad", mad_scale=4.0, max_input=20.0)
    floored = params.replace(noise_floor=1e-3)
    rng = np.random.default_rng(0)
    float_ac = 100.0 * np.sin(2 * np.pi * t / 3334 + 0.3) + rng.normal(0, 1e-6, t.size)  # ~no noise
    int8_ac = np.round(30 * np.sin(2 * np.pi * t / 2000 + 1))  # no noise below its one-count steps
    for clean in (float_ac, int8_ac):
        (raw,), _ = preprocess_batch([clean], params)
        (fl,), _ = preprocess_batch([clean], floored)
        assert np.max(np.abs(raw)) > 2 * np.max(np.abs(fl))  # the floor shrinks a clean signal's artefacts
        assert np.max(np.abs(fl)) < 1.5  # with it they stay near the noise level of a real signal (0.25)
    noisy = rng.normal(0, 5.0, t.size) + 7.2e5 * np.sin(2 * np.pi * t / 3334)
    (a,), _ = preprocess_batch([noisy], params)
    (b,), _ = preprocess_batch([noisy], floored.replace(noise_floor=1e-6))
    np.testing.assert_allclose(a, b)  # a real noise level above the floor is left alone


def test_shipped_version_finds_nothing_in_clean_signals() -> None:
    """A pure AC, a quantised AC and a ramp hold no PD: the shipped v1 must report no region."""
    import onnxruntime as ort

    from gateway.repository import processing_params_from_config, read_config

    model_dir = Path(__file__).resolve().parents[2] / "model_repository" / "pd_unet1d"
    params = ProcessingParams.from_dict(processing_params_from_config(read_config(model_dir), 1) or {})
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    t = np.arange(7920)
    clean = [
        7.2e5 * np.sin(2 * np.pi * t / 3334 + 0.3),
        np.round(30 * np.sin(2 * np.pi * t / 2000 + 1.0)),
        7.2e5 * np.sin(2 * np.pi * t / 3334) + 1e3 * np.sin(0.2 * t),  # AC + a carrier
        t * 1.0,
    ]
    results = run_pipeline(clean, params, lambda w: session.run(None, {"signal": w})[0])
    assert [len(r.regions) for r in results] == [0, 0, 0, 0]
