"""Issue 11: injecting an opposite-polarity pair or a pulse train into a PD signal adds no region and
removes none of the true ones. Shipped pd_unet1d v1 (ONNX Runtime) through the real pipeline, with the
version's own processing params; pairs at 2-8x the PD amplitude, PD-like shapes and widths."""

from __future__ import annotations

import numpy as np
import pytest

from export.sim.interference import family_pair, family_train
from export.sim.scoring import match_events
from tests.unit.conftest import clean_pd_signal

COLLAR = 10
CLEARANCE = 80  # samples between an injected event and any PD pulse or region


def _base(seed: int):  # type: ignore[no-untyped-def]
    return clean_pd_signal(seed, osc_fraction=0.4)


def _free_spot(s, taken: list[tuple[int, int]], size: int, rng: np.random.Generator) -> int:  # type: ignore[no-untyped-def]
    for _ in range(500):
        a = int(rng.integers(CLEARANCE, s.signal.size - size - CLEARANCE))
        if all(a + size + CLEARANCE <= lo or a >= hi + CLEARANCE for lo, hi in taken):
            return a
    raise AssertionError("no room")


def _check(detect, seed: int, kind: str) -> None:  # type: ignore[no-untyped-def]
    """Three pairs (2, 4, 8x PD amplitude) and one train (3x), each injected alone at a free spot."""
    s = _base(seed)
    before = detect(s.signal)
    found = {i for i, ev in enumerate(s.events) if match_events([ev], before, COLLAR)[0]}
    assert len(found) >= 4  # a clean 20 dB signal: the base detection works
    rng = np.random.default_rng(seed)
    taken = [*s.events, *before]
    waves = [("pair", family_pair(rng, a)) for a in (2.0, 4.0, 8.0)] + [("train", family_train(rng, 3.0))]
    spots = [_free_spot(s, taken, wave.size, rng) for _, wave in waves]
    for (k, wave), a in zip(waves, spots, strict=True):
        if k != kind:
            continue
        x = s.signal.copy()
        x[a : a + wave.size] += wave
        after = detect(x)
        new = [r for r in after if r[1] > a - COLLAR and r[0] < a + wave.size + COLLAR]
        assert not new, f"a region on the injected {k} at {a}: {new}"
        kept = {i for i, ev in enumerate(s.events) if match_events([ev], after, COLLAR)[0]}
        assert found <= kept, f"true pulses lost: {sorted(found - kept)}"


KNOWN_LOSS = pytest.mark.xfail(
    strict=True,
    reason="v1 puts a region on one of these pairs (in the PD phase window). Over seeds 11-40 the pairs of 5 "
    "seeds fire (the previous weights: 4) and the trains of 1 (previous: 3); docs/model.md",
)


@pytest.mark.parametrize("seed", [11, 12, 13, pytest.param(24, marks=KNOWN_LOSS)])
def test_pairs_add_no_region_and_remove_no_true_one(detect, seed: int) -> None:  # type: ignore[no-untyped-def]
    _check(detect, seed, "pair")


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_trains_add_no_region_and_remove_no_true_one(detect, seed: int) -> None:  # type: ignore[no-untyped-def]
    _check(detect, seed, "train")


@pytest.mark.parametrize("seed", range(11, 21))
def test_pairs_outside_the_pd_phase_window_are_rejected(detect, seed: int) -> None:  # type: ignore[no-untyped-def]
    """The version's phase rule: a pair (2, 4 or 8x the PD amplitude) whose peak falls outside the rising
    AC quarters adds no region, whatever the network makes of it; the true pulses stay. (Without the rule
    the network itself puts a region on some of these: 6 of seeds 11-20 fail with `phase_window` off.)"""
    s = _base(seed)
    before = detect(s.signal)
    found = {i for i, ev in enumerate(s.events) if match_events([ev], before, COLLAR)[0]}
    rng = np.random.default_rng(seed)
    taken = [*s.events, *before]
    for amp in (2.0, 4.0, 8.0, 2.0, 4.0, 8.0):
        wave = family_pair(rng, amp)
        peak = int(np.argmax(np.abs(wave)))
        for _try in range(200):  # a free spot whose peak lies at 100-170 or 280-350 deg (period 3,333)
            a = _free_spot(s, taken, wave.size, rng)
            if 100.0 <= np.mod(360.0 * (a + peak) / 3333.0, 180.0) < 170.0:
                break
        else:
            raise AssertionError("no out-of-window spot")
        x = s.signal.copy()
        x[a : a + wave.size] += wave
        after = detect(x)
        assert not [r for r in after if r[1] > a - COLLAR and r[0] < a + wave.size + COLLAR]
        kept = {i for i, ev in enumerate(s.events) if match_events([ev], after, COLLAR)[0]}
        assert found <= kept, f"true pulses lost: {sorted(found - kept)}"
