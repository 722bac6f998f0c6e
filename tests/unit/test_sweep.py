"""export.sweep's far-pair stress: one large unlabelled pair per whole signal, away from every PD pulse."""

from __future__ import annotations

import numpy as np

from export.evaluate import heldout_item
from export.sweep import with_far_pair
from gateway.dsp.params import DEFAULT_PARAMS


def test_a_far_pair_is_large_unlabelled_away_from_pd_and_keeps_int8() -> None:
    sim = heldout_item(1, 777, vsb_full=True)  # 17 PD pulses
    assert sim.pulses and np.array_equal(sim.signal, np.round(sim.signal))  # a whole int8 VSB signal
    out, added = with_far_pair(sim, 400.0, DEFAULT_PARAMS, np.random.default_rng(5))
    changed = np.flatnonzero(out.signal != sim.signal)
    assert changed.size and changed.max() - changed.min() < 50  # one pair, 46 samples long
    assert not sim.mask[max(changed.min() - 3000, 0) : changed.max() + 3000].any()
    assert np.array_equal(out.signal, np.round(out.signal)) and np.abs(out.signal).max() <= 128
    assert out.signal[changed].max() > 0 > out.signal[changed].min()  # both polarities
    assert np.array_equal(out.mask, sim.mask) and out.pulses == sim.pulses  # interference: no label
    assert 1.0 < added < 400.0  # clipped at the int8 rails
