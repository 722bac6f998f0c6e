"""Signal pre/post-processing shared by the gateway, evaluation and export (pure numpy/scipy, no torch).

The flow for a batch of signals is two stages around the model, shared by every driver::

    prepare (preprocess_batch, make_windows, screening) -> model -> finish (stitch, regions, AC fit, rules)

`run_pipeline` drives them with an in-process `infer` (evaluation, export checks, the bench); the gateway's
InferenceService drives the same two functions with Triton in between, so both are equal by construction.

Every tunable belongs to a model version (`gateway.dsp.params.ProcessingParams`, stored in the Triton
config), so the same code serves the seed-000 checkpoints (`SEED_PARAMS`, reproduced exactly) and our own
models. Carrier removal is in gateway.dsp.carriers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy.signal import butter, filtfilt

from gateway.dsp.carriers import remove_carriers
from gateway.dsp.params import ProcessingParams
from gateway.dsp.phase import AcFit, estimate_ac_phase
from gateway.dsp.regions import Region, RegionArrays, candidate_regions, split_regions


@dataclass(frozen=True)
class SignalStats:
    max_amplitude: float
    mean_amplitude: float
    std_amplitude: float


@lru_cache(maxsize=16)
def _butter_high(order: int, wn: float) -> tuple[np.ndarray, np.ndarray]:
    b, a = butter(order, wn, "high")  # designing it costs as much as filtering a 7,920-sample signal
    return b, a


def _highpass(x: np.ndarray, params: ProcessingParams) -> np.ndarray:
    if params.highpass_wn is None or x.size == 0:
        return x.astype(np.float64)
    b, a = _butter_high(params.highpass_order, params.highpass_wn)
    padlen = min(3 * max(len(a), len(b)), x.size - 1)  # scipy's default, shrunk so any length >= 1 works
    return filtfilt(b, a, x, padlen=padlen)


_SELECT_MIN = 65_536  # below this np.median is as fast


def exact_median(x: np.ndarray) -> float:
    """np.median of a finite 1-D array, bit for bit, partitioning only the values near the middle.

    A strided sample brackets the middle rank; one counting pass checks the bracket holds both middle
    order statistics (else np.median), and only the values inside it (a few %) are partitioned.
    """
    n = x.size
    if n < _SELECT_MIN:
        return float(np.median(x))
    sample = np.sort(x[:: n // 8192])
    k = sample.size
    margin = int(3 * k**0.5) + 1  # 6 standard deviations of the middle's rank in the sample
    lo, hi = sample[max(k // 2 - margin, 0)], sample[min(k // 2 + margin, k - 1)]
    below = int(np.count_nonzero(x < lo))
    inside = x[(x >= lo) & (x <= hi)]
    r1, r2 = (n - 1) // 2 - below, n // 2 - below  # the middle ranks within `inside`
    if r1 < 0 or r2 >= inside.size:
        return float(np.median(x))
    part = np.partition(inside, (r1, r2))
    return float(np.mean(part[[r1, r2]]) if r1 != r2 else part[r1])


def _robust_scale(x: np.ndarray, mad_scale: float) -> float:
    """mad_scale x the noise sigma estimated by the MAD; the max |x| when the MAD is 0 (flat or quantised)."""
    if x.size == 0:
        return 1.0
    sigma = exact_median(np.abs(x - exact_median(x))) / 0.6745
    if sigma > 0:
        return mad_scale * sigma
    peak = float(np.max(np.abs(x)))
    return peak if peak > 0 else 1.0


def _noise_floor(raw: np.ndarray, fraction: float | None) -> float:
    """The lowest noise sigma to assume for `raw`: `fraction` x max |raw|, and one count for integer data."""
    if fraction is None or raw.size == 0:
        return 0.0
    floor = fraction * float(np.max(np.abs(raw)))
    if np.array_equal(raw, np.round(raw)) and np.any(raw):
        floor = max(floor, 1.0)  # quantisation steps of one count are not PD pulses
    return floor


def _cap(x: np.ndarray, cap: float, block: int | None) -> np.ndarray:
    """`x` scaled down where its |x| exceeds `cap`: as a whole, or per `block` samples with a smooth gain
    (see `ProcessingParams.max_input_block`)."""
    if not x.size:
        return x
    if block is None or x.size <= block:
        m = float(np.max(np.abs(x)))
        return x * (cap / m) if m > cap else x
    starts = np.arange(0, x.size, block)
    peaks = np.maximum(np.maximum.reduceat(x, starts), -np.minimum.reduceat(x, starts))
    over = peaks > cap
    if not over.any():
        return x
    gain = np.ones(peaks.size)
    gain[over] = cap / peaks[over].astype(np.float64)
    gain = np.minimum(gain, np.minimum(np.r_[gain[1:], 1.0], np.r_[1.0, gain[:-1]]))  # <= the neighbours
    centres = (starts + np.minimum(starts + block, x.size) - 1) / 2.0
    return x * np.interp(np.arange(x.size), centres, gain).astype(x.dtype, copy=False)


def preprocess_batch(
    signals: Sequence[np.ndarray], params: ProcessingParams
) -> tuple[list[np.ndarray], np.ndarray]:
    """Filter, clip and normalise each 1-D signal; returns float32 signals and a boolean `valid` array.

    "batch_max" divides every signal by the largest |value| in the whole batch, like seed 000, so a
    quiet signal next to a loud one becomes invalid.
    """
    out, floors = [], []
    for raw in signals:
        raw32 = np.asarray(raw, dtype=np.float32)
        floors.append(_noise_floor(raw32, params.noise_floor))
        x = _highpass(raw32, params)
        if params.carrier_threshold is not None:
            x = remove_carriers(x, params.carrier_threshold)
        if params.clip is not None:
            x = np.clip(x, -params.clip, params.clip)
        out.append(x)
    if params.normalisation == "batch_max":
        peak = max((float(np.max(np.abs(x))) for x in out if x.size), default=0.0)
        out = [x / peak if peak > 0 else x for x in out]
    elif params.normalisation == "signal_mad":
        out = [
            x / max(_robust_scale(x, params.mad_scale), params.mad_scale * floor)
            for x, floor in zip(out, floors, strict=True)
        ]
    elif params.normalisation == "signal_max":
        out = [x / m if x.size and (m := float(np.max(np.abs(x)))) > 0 else x for x in out]
    if params.max_input is not None:
        out = [_cap(x, params.max_input, params.max_input_block) for x in out]
    if params.soft_clip is not None:  # bounded input whatever the pulse size: c * tanh(x / c)
        c = params.soft_clip
        out = [c * np.tanh(x / c) for x in out]
    pre = [x.astype(np.float32) for x in out]
    valid = np.array(
        [x.size > 0 and float(np.max(np.abs(x))) > params.valid_threshold for x in pre], dtype=bool
    )
    return pre, valid


def window_starts(n_samples: int, params: ProcessingParams) -> np.ndarray:
    """Start index of every window; the last one may run past the end (zero padded) unless aligned."""
    if n_samples <= params.window:
        return np.zeros(1, dtype=np.int64)
    count = math.ceil((n_samples - params.window) / params.hop) + 1
    starts = np.arange(count, dtype=np.int64) * params.hop
    if params.align_last_window:
        starts[-1] = n_samples - params.window
    return starts


def make_windows(x: np.ndarray, params: ProcessingParams) -> np.ndarray:
    """Cut a preprocessed signal into [n_windows, window] float32 windows (zero padded at the end)."""
    starts = window_starts(x.size, params)
    padded = np.zeros(int(starts[-1]) + params.window, dtype=np.float32)
    padded[: x.size] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, params.window)
    return np.ascontiguousarray(view[starts])


def stitch(probs: np.ndarray, n_samples: int, params: ProcessingParams) -> np.ndarray:
    """Average overlapping window probabilities back into one [n_samples] float32 array.

    With a halo, the outer `halo` samples of each window vote only where no other window covers them
    (the signal's own edges), since a convolutional model is least reliable near a window's border.
    Vectorised: the windows on the hop grid fall into ceil(window / hop) interleaved groups whose members
    do not overlap, so each group is one strided add (the first and last window, whose halo weights
    differ, are added first and last: the same sums as adding window after window).
    """
    starts = window_starts(n_samples, params)
    if probs.shape != (starts.size, params.window):
        raise ValueError(f"expected probabilities of shape {(starts.size, params.window)}, got {probs.shape}")
    acc = _overlap_add(probs, starts, params, np.float64)
    return (acc[:n_samples] / _stitch_weight(n_samples, params)).astype(np.float32)


def _window_weights(params: ProcessingParams, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weights of the first, inner and last windows (with a halo, only the signal's edges vote fully)."""
    inner = np.ones(params.window, dtype=np.float64)
    halo = params.halo
    if halo:
        inner[:halo] = inner[-halo:] = 1e-6  # tiny: breaks ties only at the signal edges
    first_w, last_w = inner.copy(), inner.copy()
    if halo:
        first_w[:halo] = 1.0
        last_w[-halo:] = 1.0
    if last == 0:
        first_w = np.maximum(first_w, last_w)
    return first_w, inner, last_w


def _overlap_add(
    values: np.ndarray | None, starts: np.ndarray, params: ProcessingParams, dtype: type
) -> np.ndarray:
    """sum over windows i of values[i] * weight_i placed at starts[i] (values None: the weights alone)."""
    w_len, hop = params.window, params.hop
    acc: np.ndarray = np.zeros(int(starts[-1]) + w_len, dtype=dtype)
    last = starts.size - 1
    first_w, inner, last_w = _window_weights(params, last)
    acc[:w_len] += first_w if values is None else values[0] * first_w
    groups = -(-w_len // hop)
    for g in range(1, 1 + groups):  # windows g, g + groups, ... before the last one: no two overlap
        idx = np.arange(g, last, groups)
        if idx.size:
            strides = (groups * hop * acc.itemsize, acc.itemsize)
            view = as_strided(acc[g * hop :], shape=(idx.size, w_len), strides=strides, writeable=True)
            view += inner if values is None else values[idx] * inner
    if last > 0:
        s = int(starts[last])
        acc[s : s + w_len] += last_w if values is None else values[last] * last_w
    return acc


@lru_cache(maxsize=16)
def _stitch_weight(n_samples: int, params: ProcessingParams) -> np.ndarray:
    """The summed window weights over the first n_samples (cached: they depend only on the layout)."""
    weight = _overlap_add(None, window_starts(n_samples, params), params, np.float64)[:n_samples]
    weight.flags.writeable = False
    return weight


def signal_stats(x_pre: np.ndarray) -> SignalStats:
    """Seed 000's stats: max and mean of |x|, standard deviation of x (preprocessed units)."""
    if x_pre.size == 0:
        return SignalStats(0.0, 0.0, 0.0)
    a = np.abs(x_pre, dtype=np.float64)
    return SignalStats(float(a.max()), float(a.mean()), float(np.std(x_pre, dtype=np.float64)))


@dataclass
class SignalResult:
    """What the pipeline found in one signal."""

    valid: bool
    stats: SignalStats
    regions: list[Region] = field(default_factory=list)
    n_windows: int = 0
    probability: np.ndarray | None = None
    fit: AcFit | None = None


@dataclass(frozen=True)
class Detection:
    """What `finish` found in one valid signal."""

    prob: np.ndarray  # stitched probability per sample
    regions: RegionArrays  # the PD regions
    rejected: RegionArrays  # candidates the rejection rules dropped (gateway.dsp.regions.split_regions)
    reasons: np.ndarray  # per rejected region, its code in gateway.dsp.regions.REJECT_REASONS
    fit: AcFit | None  # the raw signal's AC sinusoid; fitted only when there are candidates


def postprocess(
    probs: np.ndarray,
    x_pre: np.ndarray,
    params: ProcessingParams,
    raw: np.ndarray | None = None,
    samples_per_cycle: float | None = None,
) -> Detection:
    """Stitch one signal's window probabilities ([n_windows, 1, W] or [n_windows, W]), find candidate
    regions, fit the AC of the `raw` signal when there are any, and apply the rejection rules."""
    prob = stitch(probs.reshape(-1, params.window), x_pre.size, params)
    candidates = candidate_regions(prob, x_pre, params)
    fit = estimate_ac_phase(raw, samples_per_cycle) if raw is not None and len(candidates) else None
    kept, rejected, reasons = split_regions(candidates, x_pre, params, fit)
    return Detection(prob, kept, rejected, reasons, fit)


def window_peaks(windows: np.ndarray) -> np.ndarray:
    """max |x| of each [n, W] window (two reductions, no |x| copy)."""
    if not windows.size:
        return np.zeros(windows.shape[0], np.float32)
    return np.maximum(windows.max(axis=1), -windows.min(axis=1))


@dataclass
class Prepared:
    """A request after `prepare`: what goes to the model (`batch`) and what `finish` needs back."""

    raw: Sequence[np.ndarray]  # the signals as given (the AC fit reads them)
    pre: list[np.ndarray]  # preprocessed float32 signals
    valid: np.ndarray  # bool per signal; invalid ones have no windows
    n_windows: list[int]  # windows per signal, skipped ones included
    sent: list[np.ndarray | None]  # per signal, the indices of its windows in `batch` (None: all of them)
    batch: np.ndarray  # [n_sent, 1, W] float32, C-contiguous: the model's input

    @property
    def n_sent(self) -> int:
        return int(self.batch.shape[0])


def prepare(signals: Sequence[np.ndarray], params: ProcessingParams) -> Prepared:
    """Preprocess, cut windows, and screen them: windows whose max |x| is below `params.screen_peak`
    are not sent (their probability is 0; see gateway.dsp.params)."""
    pre, valid = preprocess_batch(signals, params)
    parts: list[np.ndarray] = []
    n_windows: list[int] = []
    sent: list[np.ndarray | None] = []
    for x, ok in zip(pre, valid, strict=True):
        if not ok:
            n_windows.append(0)
            sent.append(None)
            continue
        win = make_windows(x, params)
        n_windows.append(len(win))
        if params.screen_peak is None:
            sent.append(None)
            parts.append(win)
            continue
        keep = np.flatnonzero(window_peaks(win) >= params.screen_peak)
        sent.append(keep)
        parts.append(win[keep] if keep.size < len(win) else win)
    if len(parts) == 1:  # one signal: its windows are the batch, no copy
        batch = parts[0][:, None, :]
    elif parts:
        batch = np.concatenate(parts)[:, None, :]
    else:
        batch = np.zeros((0, 1, params.window), np.float32)
    return Prepared(signals, pre, valid, n_windows, sent, batch)


def finish(
    prep: Prepared, probs: np.ndarray, params: ProcessingParams, samples_per_cycle: float | None = None
) -> list[Detection | None]:
    """Per signal (None if invalid): its `Detection`, from the model's output for `prep.batch`
    ([n_sent, 1, W] or [n_sent, W]); screened-out windows count as probability 0. `samples_per_cycle`
    (fs / power frequency), when known, fixes the AC period of the phase fit."""
    probs = probs.reshape(-1, params.window)
    if len(probs) != prep.n_sent:
        raise ValueError(f"expected {prep.n_sent} windows of probabilities, got {len(probs)}")
    out: list[Detection | None] = []
    offset = 0
    for raw, x, ok, n, keep in zip(prep.raw, prep.pre, prep.valid, prep.n_windows, prep.sent, strict=True):
        if not ok:
            out.append(None)
            continue
        if keep is None:
            mine = probs[offset : offset + n]
        else:
            mine = np.zeros((n, params.window), np.float32)
            mine[keep] = probs[offset : offset + keep.size]
        offset += n if keep is None else keep.size
        out.append(postprocess(mine, x, params, raw, samples_per_cycle))
    return out


def run_pipeline(
    signals: Sequence[np.ndarray],
    params: ProcessingParams,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    max_batch_size: int = 64,
    keep_probability: bool = False,
) -> list[SignalResult]:
    """Offline driver of `prepare` and `finish`: `infer` maps float32 [N, 1, W] windows to probabilities
    of that shape, called on batches of at most `max_batch_size`.

    The gateway runs the same two stages, with Triton instead of `infer`.
    """
    prep = prepare(signals, params)
    batch = prep.batch
    probs = np.concatenate(
        [infer(batch[i : i + max_batch_size]) for i in range(0, len(batch), max_batch_size)]
        or [np.zeros((0, 1, params.window), np.float32)]
    )
    results = []
    for x, n, done in zip(prep.pre, prep.n_windows, finish(prep, probs, params), strict=True):
        stats = signal_stats(x)
        if done is None:
            results.append(SignalResult(valid=False, stats=stats))
            continue
        results.append(
            SignalResult(
                True, stats, done.regions.to_list(), n, done.prob if keep_probability else None, done.fit
            )
        )
    return results
