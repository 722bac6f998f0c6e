"""The PD simulator: determinism, labels, physics knobs and regimes."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.signal import find_peaks

from export.sim import simulator as sim
from export.sim.scoring import regions_to_mask
from export.sim.waveforms import (
    MAX_OPPOSITE_LOBE,
    PD_KINDS,
    WIDE_MAX_FREQ,
    WIDE_MAX_TAU,
    damped,
    log_uniform,
    opposite_lobe,
    pd_waveform,
    support,
)


def _config(**changes: object) -> sim.SimConfig:
    base = sim.SimConfig(
        n_samples=16384,
        samples_per_cycle=5000.0,
        ac_amplitude=100.0,
        ac_phase_deg=30.0,
        n_pd=8,
        pd_amplitude=10.0,
        snr_db=10.0,
        spectral_carriers=2,
        spectral_amplitude=1.0,
        pair_count=2,
        train_count=1,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def dataset() -> list[sim.SimulatedSignal]:
    return sim.make_dataset(80, seed=123, n_samples=4096, return_components=True)


def test_same_seed_is_bit_identical_and_other_seed_differs() -> None:
    cfg = _config()
    a, b, c = sim.simulate(cfg, 7), sim.simulate(cfg, 7), sim.simulate(cfg, 8)
    assert a.signal.tobytes() == b.signal.tobytes()
    assert np.array_equal(a.mask, b.mask)
    assert a.pulses == b.pulses and a.interference == b.interference
    assert not np.array_equal(a.signal, c.signal)


def test_dataset_is_deterministic_and_items_do_not_depend_on_size() -> None:
    first = sim.make_dataset(4, seed=5, n_samples=2048)
    again = sim.make_dataset(6, seed=5, n_samples=2048)
    for x, y in zip(first, again[:4], strict=True):
        assert x.config == y.config
        assert np.array_equal(x.signal, y.signal)
    assert np.array_equal(sim.dataset_item(5, 2, n_samples=2048).signal, first[2].signal)
    assert not np.array_equal(first[0].signal, first[1].signal)


def test_mask_is_union_of_pulse_supports_covering_each_peak(dataset: list[sim.SimulatedSignal]) -> None:
    n_pulses = 0
    for s in dataset:
        assert s.mask.dtype == bool and s.mask.shape == s.signal.shape
        assert np.array_equal(s.mask, regions_to_mask(s.events, s.signal.size))
        supports = sorted(s.events)
        assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(supports))  # disjoint
        pd = s.components["pd"]
        for p in s.pulses:
            n_pulses += 1
            assert p.start <= p.peak_index < p.end and s.mask[p.peak_index]
            assert pd[p.peak_index] == pytest.approx(p.amplitude)
            seg = np.abs(pd[p.start : p.end])
            assert seg.max() == pytest.approx(abs(p.amplitude))
            # Support ends are exactly where |pulse| crosses 5 % of its peak.
            assert seg[0] > 0.05 * abs(p.amplitude) and seg[-1] > 0.05 * abs(p.amplitude)
            for edge in (p.start - 1, p.end):
                if 0 <= edge < pd.size:
                    assert abs(pd[edge]) <= 0.05 * abs(p.amplitude) + 1e-12
    assert n_pulses > 100


def test_every_kind_appears_and_some_signals_have_no_pd(dataset: list[sim.SimulatedSignal]) -> None:
    seen = set().union(*(s.kinds for s in dataset))
    assert seen == set(sim.KINDS) - {"bipolar", "impulsive"}  # those two are the "family" profile's
    pd_free = sum("pd" not in s.kinds for s in dataset)
    assert 4 <= pd_free <= 32  # about 20 % of 80
    assert any(s.config.snr_db is not None and s.config.snr_db < 0 for s in dataset)


def test_interference_stays_outside_the_mask(dataset: list[sim.SimulatedSignal]) -> None:
    n_events = 0
    for s in dataset:
        assert not np.any(s.components["interference"][s.mask])
        for ev in s.interference:
            n_events += 1
            lo, hi = max(0, ev.start - 8), ev.end + 8
            assert not s.mask[lo:hi].any()
    assert n_events > 10


def test_pairs_are_large_opposite_polarity_and_trains_repeat() -> None:
    cfg = _config(n_pd=0, snr_db=None, spectral_carriers=0, pair_count=3, train_count=2)
    s = sim.simulate(cfg, 3, return_components=True)
    kinds = [ev.kind for ev in s.interference]
    assert kinds.count("pair") == 3 and kinds.count("train") == 2
    for ev in s.interference:
        seg = s.components["interference"][ev.start : ev.end]
        if ev.kind == "pair":
            assert seg.max() > 0 > seg.min() and np.abs(seg).max() >= 2 * 10.0 * 0.8
        else:
            peaks, _ = find_peaks(np.abs(seg), height=0.5 * np.abs(seg).max())
            assert peaks.size >= 3 and np.ptp(np.diff(peaks)) <= 1  # regular spacing


def test_pulses_peak_in_rising_quarters(dataset: list[sim.SimulatedSignal]) -> None:
    for s in dataset:
        for p in s.pulses:
            assert 0 <= p.phase_deg < 90 or 180 <= p.phase_deg < 270
            assert p.phase_deg == pytest.approx(float(sim.phase_deg(p.peak_index, s.config)))


def test_requested_snr_is_the_measured_snr() -> None:
    for snr in (-5.0, 0.0, 10.0, 25.0):
        s = sim.simulate(_config(n_samples=32768, snr_db=snr), 11, return_components=True)
        assert len(s.pulses) == 8
        pd, noise = s.components["pd"], s.components["noise"]
        p_pd = np.mean([np.mean(pd[p.start : p.end] ** 2) for p in s.pulses])
        assert 10 * np.log10(p_pd / np.var(noise)) == pytest.approx(snr, abs=0.5)


def test_no_pd_uses_reference_power_and_none_means_no_noise() -> None:
    s = sim.simulate(_config(n_pd=0, snr_db=6.0), 1, return_components=True)
    assert not s.pulses and not s.mask.any() and "pd" not in s.kinds
    ref = 10.0**2 * sim.REF_POWER_RATIO
    assert 10 * np.log10(ref / np.var(s.components["noise"])) == pytest.approx(6.0, abs=0.5)
    quiet = sim.simulate(_config(snr_db=None), 1, return_components=True)
    assert not quiet.components["noise"].any() and "white" not in quiet.kinds


def test_vsb_regime_is_one_int8_cycle() -> None:
    rng = np.random.default_rng(0)
    cfg = sim.random_config(rng, regime="vsb", n_pd=5, interference=("pair",))
    s = sim.simulate(cfg, 0)
    assert s.signal.shape == (800_000,) and s.signal.dtype == np.float64
    assert s.fs_hz == pytest.approx(40e6)
    assert s.signal.min() >= -128 and s.signal.max() <= 127
    assert np.array_equal(s.signal, np.round(s.signal))
    assert 10 <= cfg.ac_amplitude <= 40 and len(s.pulses) == 5


def test_seed_regime_matches_the_seed_data_scale() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        cfg = sim.random_config(rng, regime="seed", n_pd=3)
        s = sim.simulate(cfg, 1, return_components=True)
        assert s.signal.shape == (7920,)
        assert 3300 <= cfg.samples_per_cycle <= 3370
        assert 6.5e5 <= np.abs(s.components["ac"]).max() <= 8e5
        assert all(0.002 * cfg.ac_amplitude < abs(p.amplitude) < 2 * cfg.ac_amplitude for p in s.pulses)


def test_random_config_knobs() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        cfg = sim.random_config(rng, snr_db=3.0, interference=())
        assert cfg.snr_db == 3.0 and cfg.spectral_carriers == cfg.pair_count == cfg.train_count == 0
        assert 4096 <= cfg.n_samples <= 32768 and cfg.power_freq_hz in (50.0, 60.0)
    only_pairs = sim.random_config(rng, interference=("pair",), white_noise=False, n_pd=0)
    assert only_pairs.pair_count > 0 and only_pairs.train_count == only_pairs.spectral_carriers == 0
    assert only_pairs.snr_db is None and only_pairs.n_pd == 0
    with pytest.raises(ValueError):
        sim.random_config(rng, interference=("lightning",))
    with pytest.raises(ValueError):
        sim.random_config(rng, regime="nope")


def test_tiny_signals_work() -> None:
    for n in (1, 5, 40):
        s = sim.simulate(_config(n_samples=n), 0)
        assert s.signal.shape == (n,) and s.mask.shape == (n,)
        assert all(0 <= p.start < p.end <= n for p in s.pulses)


def test_custom_phase_windows_may_wrap_through_zero() -> None:
    s = sim.simulate(_config(n_pd=12, pd_phase_windows=((270.0, 110.0),)), 4)
    assert len(s.pulses) == 12
    assert all(p.phase_deg >= 270 or p.phase_deg < 110 for p in s.pulses)
    assert any(p.phase_deg >= 270 for p in s.pulses) and any(p.phase_deg < 110 for p in s.pulses)


def test_family_profile_draws_every_pd_model_and_no_gabor_pulse_is_symmetric_bipolar() -> None:
    family = sim.make_dataset(40, seed=3, profile="family")
    assert {p.kind for s in family for p in s.pulses} == set(PD_KINDS)
    rng = np.random.default_rng(0)
    lobes = []
    for _ in range(300):
        wave, k = pd_waveform(rng, "gabor")
        assert wave[k] == 1.0 and np.abs(wave).max() == 1.0
        lobes.append(opposite_lobe(wave, k))
    assert max(lobes) <= MAX_OPPOSITE_LOBE  # a Gaussian derivative (equal lobes) is interference, not PD
    assert np.mean(np.array(lobes) > 0.2) > 0.3  # but side lobes of the other polarity are common
    # the "short" profile (held-out and validation sets) has neither Gaussian bumps nor gabor pulses
    assert {p.kind for s in sim.make_dataset(40, seed=3) for p in s.pulses} == {"exp", "osc"}


@pytest.mark.parametrize(("pole", "df"), [(0.0, None), (0.8, None), (0.0, 3.5), (0.6, 4.0)])
def test_coloured_and_heavy_tailed_noise_keep_the_noise_variance(pole: float, df: float | None) -> None:
    cfg = _config(n_samples=200_000, n_pd=0, pair_count=0, train_count=0, spectral_carriers=0, snr_db=0.0)
    s = sim.simulate(dataclasses.replace(cfg, noise_pole=pole, noise_df=df), 1, return_components=True)
    assert s.components is not None
    w = s.components["noise"]
    assert w.std() == pytest.approx(s.noise_std, rel=0.03)  # the SNR means the same for every noise
    assert np.corrcoef(w[:-1], w[1:])[0, 1] == pytest.approx(pole, abs=0.02)
    excess_kurtosis = float(np.mean((w / w.std()) ** 4)) - 3.0
    if df is None:
        assert abs(excess_kurtosis) < 0.1
    else:
        assert excess_kurtosis > 1.0  # heavy tails: large noise samples far more often than Gaussian


def test_only_the_noisy_profile_colours_the_noise_and_the_others_keep_their_draws() -> None:
    noisy = sim.make_dataset(100, seed=3, profile="noisy")
    assert 10 < sum(s.config.noise_pole > 0 for s in noisy) < 50
    assert 3 < sum(s.config.noise_df is not None for s in noisy) < 30
    family = sim.make_dataset(100, seed=3, profile="family")
    for s in (*sim.make_dataset(100, seed=3), *family):
        assert s.config.noise_pole == 0.0 and s.config.noise_df is None
    # "noisy" draws its noise after everything "family" draws: the same configs but for noise and SNR
    for f, n in zip(family, noisy, strict=True):
        same = {"noise_pole": 0.0, "noise_df": None, "snr_db": f.config.snr_db}
        assert dataclasses.replace(n.config, **same) == f.config
        assert n.config.snr_db == f.config.snr_db or n.config.noise_pole > 0  # only coloured noise moves it
    with pytest.raises(ValueError, match="noise_df"):
        _config(noise_df=2.0)
    with pytest.raises(ValueError, match="noise_pole"):
        _config(noise_pole=1.0)


def test_wide_profile_is_family_with_wider_damped_pulses() -> None:
    family = sim.make_dataset(60, seed=4, profile="family")
    wide = sim.make_dataset(60, seed=4, profile="wide")
    assert all(s.config.wide_fraction == 0.0 for s in (*family, *sim.make_dataset(60, seed=4)))
    for f, w in zip(family, wide, strict=True):  # drawn last: the same configs but for wide_fraction
        assert 0.2 <= w.config.wide_fraction <= 0.6
        assert dataclasses.replace(w.config, wide_fraction=0.0) == f.config
    # pulses no family signal has: supports past 100 samples (tails up to 80 samples' decay constant)
    assert max(p.end - p.start for s in family for p in s.pulses) < 100
    assert sum(p.end - p.start > 100 for s in wide for p in s.pulses) >= 10
    with pytest.raises(ValueError, match="wide_fraction"):
        _config(wide_fraction=1.5)


def test_wide_oscillations_ring_fast_and_show_several_decaying_lobes() -> None:
    rng = np.random.default_rng(0)
    fast = 0
    for _ in range(300):
        wave, _ = pd_waveform(rng, "osc", wide=True)
        spectrum = np.abs(np.fft.rfft(wave, 4096))
        freq = np.argmax(spectrum) / 4096
        fast += freq > 0.25
        # at least one period per tau1: over 5 % of the peak, the pulse changes sign at least twice
        big = wave[np.abs(wave) > 0.05]
        assert np.count_nonzero(np.diff(np.sign(big))) >= 2
    assert fast > 60  # about half the draws ring above 0.25 cycles/sample, which "family" never does
    for _ in range(100):
        wave, k = pd_waveform(rng, "exp", wide=True)
        assert np.all(wave >= 0)  # still a unipolar damped exponential, only longer:
        assert support(wave)[1] - k >= 25  # tau1 >= 10, so over 5 % of the peak for 10 * ln(20) samples


def test_wide_nopair_is_wide_without_pair_like_ringing() -> None:
    wide = sim.make_dataset(40, seed=4, profile="wide")
    nopair = sim.make_dataset(40, seed=4, profile="wide_nopair")
    for w, n in zip(wide, nopair, strict=True):  # the same configs but for the ringing's minimum length
        assert n.config.wide_min_periods == 3.0 and w.config.wide_min_periods == 1.0
        assert dataclasses.replace(n.config, wide_min_periods=1.0) == w.config
    with pytest.raises(ValueError, match="wide_min_periods"):
        _config(wide_min_periods=0.5)

    def sign_changes(min_periods: float) -> list[int]:
        rng, out = np.random.default_rng(0), []
        for _ in range(300):
            wave, _ = pd_waveform(rng, "osc", wide=True, min_periods=min_periods)
            if np.argmax(np.abs(np.fft.rfft(wave, 4096))) / 4096 > 0.2:  # fast ringing only
                big = wave[np.abs(wave) > 0.05]
                out.append(int(np.count_nonzero(np.diff(np.sign(big)))))
        return out

    # "wide" rings near Nyquist with as few as a handful of lobes over 5 % of the peak (pair-like);
    # "wide_nopair" rings on for many more
    assert min(sign_changes(1.0)) < 10 <= min(sign_changes(3.0))


def test_wide_oscillations_are_drawn_as_before_min_periods_existed() -> None:
    """The "wide" profile's draws, written out as they were before `min_periods`: bit-identical."""

    def before(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        fc = rng.uniform(0.02, WIDE_MAX_FREQ)
        tau1 = log_uniform(rng, max(2.0, 1.0 / fc), WIDE_MAX_TAU)
        return damped(tau1, tau1 * rng.uniform(0.02, 0.3), fc, rng.random())

    now, then = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(300):
        (a, ka), (b, kb) = pd_waveform(now, "osc", wide=True), before(then)
        assert ka == kb and np.array_equal(a, b)


def test_old_profiles_draw_nothing_for_wide_pulses() -> None:
    """With wide_fraction 0 no random number is drawn for it (so "short", "family" and "noisy" signals are
    bit-identical to before "wide" existed): a tiny positive fraction, which never widens a pulse, draws
    one per pulse and so shifts every later draw."""
    cfg = _config(n_pd=8)
    base = sim.simulate(cfg, 5)
    drawn = sim.simulate(dataclasses.replace(cfg, wide_fraction=1e-300), 5)
    assert len(base.pulses) == 8 and np.array_equal(base.signal, sim.simulate(cfg, 5).signal)
    assert not np.array_equal(base.signal, drawn.signal)
