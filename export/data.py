"""Training data: simulated signals preprocessed like inference, and batches of windows cut from them.

Each training signal comes from the one simulator (export.sim.simulator) and is preprocessed WHOLE with
the model's ProcessingParams (preprocess_batch), exactly as the gateway does; windows are then cut from it
with the simulator's PD mask as the label. A `Pool` of signals slides along the signal index, so the pool
at any training step is a function of (seed, step) and a resumed run rebuilds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from export.sim.simulator import random_config, simulate
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import preprocess_batch

MIN_SAMPLES_PER_CYCLE = 2000.0  # a faster AC survives the 0.02 high-pass and would swamp the pulses


@dataclass
class Item:
    """One preprocessed training signal: model input, label, and centres of PD/interference pulses.

    With fresh noise, `clean` is the same input without its white noise and `noise_std` that noise's level
    in input units, so every window can be given a new noise draw.
    """

    x: np.ndarray
    mask: np.ndarray
    centres: np.ndarray
    snr_db: float | None = None
    clean: np.ndarray | None = None
    noise_std: float = 0.0


@dataclass(frozen=True)
class LowSnr:
    """Oversample hard signals: `fraction` of training signals get white noise at an SNR in `db`."""

    fraction: float = 0.0
    db: tuple[float, float] = (-3.0, 12.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0 or len(self.db) != 2 or self.db[0] > self.db[1]:
            raise ValueError(
                "--low-snr-fraction must be in [0, 1] and --low-snr-db two values lo,hi with lo <= hi"
            )


@dataclass(frozen=True)
class Mix:
    """What the training signals are made of beyond the regimes.

    profile: the simulator's profile ("short"; "family": PD-family interference and domain
    randomisation; "noisy": "family" plus non-white noise; "wide": "family" plus wider damped pulses;
    "wide_nopair": "wide" without pulses that ring like an opposite-polarity pair), or
    "both": "short" or "family" at random.
    long_fraction: share of signals that are long int8 VSB-format signals (131,072 to
    800,000 samples; a third of them whole 800,000-sample measurements), so the network sees as much
    quantised noise per PD pulse as a whole VSB signal has.
    """

    profile: str = "short"
    long_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.long_fraction <= 1.0:
            raise ValueError("--long-fraction must be in [0, 1]")


def training_item(
    seed: int,
    index: int,
    params: ProcessingParams,
    low_snr: LowSnr = LowSnr(),
    fresh_noise: bool = False,
    mix: Mix = Mix(),
) -> Item:
    """Signal `index` of training stream `seed`: regime, length and AC speed drawn per item.

    fresh_noise: also keep the signal without its white noise (float signals only: int8 rounding mixes
    them), scaled exactly like the input. Only for preprocessing that is a filter and one scale factor.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    u = rng.random()
    n = int(rng.integers(8192, 32769))
    snr = None  # drawn by random_config, unless this item is one of the oversampled low-SNR ones
    if low_snr.fraction > 0 and rng.random() < low_snr.fraction:
        snr = float(rng.uniform(*low_snr.db))
    prof = mix.profile
    if prof == "both":  # half the signals from each interference profile
        prof = "family" if rng.random() < 0.5 else "short"
    if mix.long_fraction > 0 and rng.random() < mix.long_fraction:  # a long int8 VSB-format signal
        n_long = (
            800_000 if rng.random() < 1 / 3 else int(math.exp(rng.uniform(math.log(131072), math.log(8e5))))
        )
        cfg = random_config(rng, regime="vsb", n_samples=n_long, snr_db=snr, profile=prof)
    elif u < 0.2:  # seed-like: the seed's ~3,300-sample AC period and its scale
        cfg = random_config(rng, regime="seed", n_samples=n, snr_db=snr, profile=prof)
    elif u < 0.35:  # a VSB-like slice: int8, 40 MS/s, 800,000 samples per cycle
        cfg = random_config(rng, regime="vsb", n_samples=n, snr_db=snr, profile=prof)
    else:
        spc = math.exp(rng.uniform(math.log(MIN_SAMPLES_PER_CYCLE), math.log(1e6)))
        cfg = random_config(rng, regime="mixed", n_samples=n, samples_per_cycle=spc, snr_db=snr, profile=prof)
    sim = simulate(cfg, int(rng.integers(0, 2**63 - 1)), return_components=fresh_noise)
    pre, _ = preprocess_batch([sim.signal], params)
    centres = [(p.start + p.end) // 2 for p in sim.pulses] + [
        (i.start + i.end) // 2 for i in sim.interference
    ]
    item = Item(pre[0], sim.mask, np.asarray(centres, dtype=np.int64), cfg.snr_db)
    if fresh_noise and sim.components is not None and sim.noise_std > 0 and not cfg.quantize_int8:
        if params.clip is not None or params.soft_clip is not None or params.carrier_threshold is not None:
            # carrier removal picks frequencies from the signal itself: clean and noisy inputs would differ
            raise ValueError("fresh noise needs preprocessing that is a filter and one scale factor")
        linear = params.replace(normalisation="none", max_input=None)
        (filtered,), _ = preprocess_batch([sim.signal], linear)
        (clean,), _ = preprocess_batch([sim.signal - sim.components["noise"]], linear)
        peak = float(np.max(np.abs(item.x)))
        if peak > 0:
            scale = float(np.max(np.abs(filtered))) / peak  # what the normalisation divided by
            item.clean, item.noise_std = (clean / scale).astype(np.float32), sim.noise_std / scale
    return item


class Pool:
    """Signals [r*refresh_count, r*refresh_count + size) at refresh round r; items are cached by index."""

    def __init__(
        self,
        seed: int,
        params: ProcessingParams,
        size: int,
        refresh_count: int,
        low_snr: LowSnr = LowSnr(),
        fresh_noise: bool = False,
        mix: Mix = Mix(),
    ) -> None:
        self.seed, self.params, self.size, self.refresh_count = seed, params, size, refresh_count
        self.low_snr, self.fresh_noise, self.mix = low_snr, fresh_noise, mix
        self.items: dict[int, Item] = {}

    def at_round(self, r: int) -> list[Item]:
        wanted = range(r * self.refresh_count, r * self.refresh_count + self.size)
        self.items = {
            i: self.items.get(i)
            or training_item(self.seed, i, self.params, self.low_snr, self.fresh_noise, self.mix)
            for i in wanted
        }
        return list(self.items.values())


def sample_batch(
    rng: np.random.Generator,
    items: list[Item],
    batch: int,
    window: int,
    event_fraction: float,
    fresh_noise: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """[batch, 1, W] inputs and labels; `event_fraction` of windows hold a PD or interference pulse.

    fresh_noise: items that keep their clean signal get a new white-noise draw at their own level in every
    window, so the network never sees the same noise twice and cannot learn it by heart.
    """
    xs = np.zeros((batch, 1, window), np.float32)
    ys = np.zeros((batch, 1, window), np.float32)
    for b in range(batch):
        item = items[int(rng.integers(len(items)))]
        n = item.x.size
        hi = max(n - window, 0)
        if item.centres.size and rng.random() < event_fraction:
            c = int(item.centres[int(rng.integers(item.centres.size))])
            start = int(np.clip(c - int(rng.integers(16, window - 16)), 0, hi))
        else:
            start = int(rng.integers(hi + 1))
        seg = slice(start, start + window)
        m = item.x[seg].size
        xs[b, 0, :m], ys[b, 0, :m] = item.x[seg], item.mask[seg]
        if fresh_noise and item.clean is not None:
            xs[b, 0, :m] = item.clean[seg] + item.noise_std * rng.standard_normal(m)
    return xs, ys
