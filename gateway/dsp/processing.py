"""Signal pre/post-processing shared by the gateway, evaluation and export (pure numpy/scipy, no torch).

The flow for a batch of signals is::

    preprocess_batch -> make_windows -> model -> stitch -> find_regions

Every tunable belongs to a model version (`ProcessingParams`, stored in the Triton config), so the same
code serves the seed-000 checkpoints (`SEED_PARAMS`, reproduced exactly) and our own models.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.signal import butter, filtfilt

from gateway.dsp.regions import Region, RegionArrays, find_region_arrays

Normalisation = Literal["batch_max", "signal_max", "signal_mad", "none"]
NORMALISATIONS: tuple[str, ...] = ("batch_max", "signal_max", "signal_mad", "none")


@dataclass(frozen=True)
class ProcessingParams:
    """Everything between raw samples and PD regions, for one model version.

    window/hop: model input length and stride between windows (hop < window means overlap).
    halo: samples at each inner window edge that do not vote when stitching (0 = plain averaging).
    align_last_window: end the last window exactly at the signal's end (it overlaps its neighbour more)
        instead of zero padding it (seed 000 padded). A model trained on windows inside signals never saw
        a signal stop dead inside a window; there it may take the drop to zero for a pulse.
    highpass_wn: Butterworth high-pass cut-off as a fraction of Nyquist (None = no filter), zero-phase.
    carrier_threshold: subtract discrete spectral interference after the filter (`remove_carriers`):
        sinusoids whose spectral peak exceeds this many times the local noise floor (None = off). A PD
        pulse is broadband and loses nothing; a radio carrier is one tall narrow peak and goes.
    clip: symmetric clip applied after the filter (None = none).
    normalisation: "batch_max" divides by the max |x| over the whole request (seed 000),
        "signal_max" by each signal's own max |x|, "signal_mad" by `mad_scale` times the signal's robust
        noise level (median absolute deviation / 0.6745), so pulses are measured against the noise and a
        large interference burst does not shrink them; "none" leaves the scale alone.
    soft_clip: after normalising, c * tanh(x / c) bounds the input smoothly (None = off).
    noise_floor: with "signal_mad", the noise level is taken as at least this fraction of the raw signal's
        max |x|, and for a signal whose samples are all integers (a digitiser's counts, e.g. VSB int8)
        at least one count (None = off). A signal with no noise at all (a pure AC, a synthetic trace) is
        then not blown up until the filter's start-up transient or its own quantisation steps look like
        pulses.
    max_input: after normalising, a signal whose max |x| exceeds this is scaled down to it, linearly, so
        pulse shapes survive (None = off). With "signal_mad" it keeps clean signals, whose noise level is
        near 0, from becoming huge inputs.
    valid_threshold: a signal is valid when max |preprocessed| > this; invalid signals are not inferred.
    threshold: probability above which a sample belongs to a PD region.
    min_region_peak: drop regions whose signed max of the preprocessed signal is below this (None = keep).
    drop_edge_regions: drop regions starting at sample 0 (seed 000's /test endpoint did).
    min_region_samples / merge_gap: drop shorter runs; merge runs separated by at most this many samples.
    """

    window: int = 1024
    hop: int = 512
    halo: int = 0
    align_last_window: bool = False
    highpass_order: int = 3
    highpass_wn: float | None = 0.8
    carrier_threshold: float | None = None
    clip: float | None = 800000.0
    normalisation: Normalisation = "batch_max"
    mad_scale: float = 10.0
    soft_clip: float | None = None
    noise_floor: float | None = None
    max_input: float | None = None
    valid_threshold: float = 0.1
    threshold: float = 0.5
    min_region_peak: float | None = None
    drop_edge_regions: bool = False
    min_region_samples: int = 1
    merge_gap: int = 0

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:  # the range checks below assume the right types
            raise ValueError("; ".join(problems))
        if self.window < 16:
            problems.append("window must be >= 16")
        if not 1 <= self.hop <= self.window:
            problems.append("hop must be in [1, window]")
        if self.halo < 0 or self.hop > self.window - 2 * self.halo:
            problems.append("halo must be >= 0 and hop <= window - 2*halo (full coverage)")
        if self.highpass_wn is not None and not 0.0 < self.highpass_wn < 1.0:
            problems.append("highpass_wn must be in (0, 1) or null")
        if not 1 <= self.highpass_order <= 8:
            problems.append("highpass_order must be in [1, 8]")
        if self.carrier_threshold is not None and not self.carrier_threshold > 1:
            problems.append("carrier_threshold must be > 1 or null")
        if self.clip is not None and not self.clip > 0:
            problems.append("clip must be > 0 or null")
        if self.soft_clip is not None and not self.soft_clip > 0:
            problems.append("soft_clip must be > 0 or null")
        if self.noise_floor is not None and not 0 < self.noise_floor < 1:
            problems.append("noise_floor must be in (0, 1) or null")
        if self.max_input is not None and not self.max_input > 0:
            problems.append("max_input must be > 0 or null")
        if not self.mad_scale > 0:
            problems.append("mad_scale must be > 0")
        if self.normalisation not in NORMALISATIONS:
            problems.append(f"normalisation must be one of {NORMALISATIONS}")
        if not 0.0 < self.threshold < 1.0:
            problems.append("threshold must be in (0, 1)")
        if self.valid_threshold < 0 or self.min_region_samples < 1 or self.merge_gap < 0:
            problems.append("valid_threshold, merge_gap must be >= 0 and min_region_samples >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessingParams:
        """Build from a dict, rejecting unknown keys (a typo must not silently fall back to a default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown processing parameter(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> ProcessingParams:
        return dataclasses.replace(self, **changes)


_BOOLS = ("align_last_window", "drop_edge_regions")
_INTS = ("window", "hop", "halo", "highpass_order", "min_region_samples", "merge_gap")


def _type_problems(params: ProcessingParams) -> list[str]:
    """JSON gives any type: a "false" string must not pass for a bool, nor a bool for a number."""
    problems = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name in _BOOLS:
            ok = isinstance(value, bool)
        elif f.name in _INTS:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif f.name == "normalisation":
            ok = isinstance(value, str)
        else:  # floats, most of them optional
            ok = (value is None and "None" in str(f.type)) or (
                isinstance(value, int | float) and not isinstance(value, bool)
            )
        if not ok:
            problems.append(f"{f.name} has the wrong type ({type(value).__name__})")
    return problems


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """The CLIs' `--set KEY=JSON` items as a dict; ValueError for a malformed item or an unknown key."""
    known = {f.name for f in dataclasses.fields(ProcessingParams)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--set {item!r}: expected KEY=JSON, KEY one of {', '.join(sorted(known))}")
        try:
            out[key] = json.loads(value)  # 0.5, 3, null, true, "signal_mad"
        except json.JSONDecodeError as e:
            raise ValueError(f"--set {item!r}: the value must be JSON ({e.msg})") from e
    return out


#: Seed 000's pipeline exactly (its /test-text endpoint): 0.4*fs high-pass, clip, batch-wide max.
SEED_PARAMS = ProcessingParams()

#: The training default and `--profile default`: a gentle high-pass keeps pulse shape, per-signal scale.
#: The shipped pd_unet1d v1 sets more on top (noise-relative scale, carrier removal; see its config.pbtxt).
DEFAULT_PARAMS = ProcessingParams(
    window=1024,
    hop=896,
    halo=64,
    highpass_wn=0.02,
    clip=None,
    normalisation="signal_max",
    valid_threshold=0.0,
)


@dataclass(frozen=True)
class SignalStats:
    max_amplitude: float
    mean_amplitude: float
    std_amplitude: float


def _highpass(x: np.ndarray, params: ProcessingParams) -> np.ndarray:
    if params.highpass_wn is None or x.size == 0:
        return x.astype(np.float64)
    b, a = butter(params.highpass_order, params.highpass_wn, "high")
    padlen = min(3 * max(len(a), len(b)), x.size - 1)  # scipy's default, shrunk so any length >= 1 works
    return filtfilt(b, a, x, padlen=padlen)


CARRIER_BLOCK = 64  # spectrum bins per block of the local noise floor (median magnitude)
CARRIER_MIN_SAMPLES = 4 * CARRIER_BLOCK  # shorter signals have too few bins for a noise floor
MAX_CARRIERS = 16  # strongest spectral peaks considered per signal
CARRIER_GUARD_BINS = 6  # peaks this close to a stronger one are its window side lobes, not carriers


def remove_carriers(x: np.ndarray, threshold: float) -> np.ndarray:
    """Subtract the narrowband carriers of `x`: stationary sinusoids standing out of the spectrum.

    A Hann-windowed spectrum is compared with its noise floor (the median of each CARRIER_BLOCK-bin block,
    interpolated); each local peak above `threshold` x the floor is a carrier. Its frequency is refined
    between bins (Grandke's interpolation for the Hann window), its amplitude and phase are fitted by
    least squares over the whole signal, and it is subtracted. Unlike zeroing spectrum bins this leaves no
    ringing at the signal's ends and removes no noise or pulse energy. O(n log n) for the spectrum and
    O(n) per carrier.
    """
    n = x.size
    if n < CARRIER_MIN_SAMPLES:
        return x
    y = np.asarray(x, dtype=np.float64).copy()
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic Hann: the estimator below is exact
    spec = np.abs(np.fft.rfft(y * window))
    n_blocks = spec.size // CARRIER_BLOCK
    medians = np.median(spec[: n_blocks * CARRIER_BLOCK].reshape(n_blocks, CARRIER_BLOCK), axis=1)
    floor = np.interp(np.arange(spec.size), (np.arange(n_blocks) + 0.5) * CARRIER_BLOCK, medians)
    k = np.arange(2, spec.size - 2)
    is_peak = (spec[k] > spec[k - 1]) & (spec[k] >= spec[k + 1]) & (spec[k] > threshold * floor[k])
    peaks = k[is_peak]
    peaks = peaks[np.argsort(-spec[peaks], kind="stable")][:MAX_CARRIERS]
    t = np.arange(n, dtype=np.float64)
    fitted: list[int] = []
    for b in peaks:
        if any(abs(int(b) - f) <= CARRIER_GUARD_BINS for f in fitted):
            continue
        lo, mid, hi = spec[b - 1], spec[b], spec[b + 1]
        delta = 2.0 * (hi - lo) / (lo + 2.0 * mid + hi)  # exact for one tone under the periodic Hann window
        phase = (2.0 * np.pi * (b + delta) / n) * t
        c, s = np.cos(phase), np.sin(phase)
        gram = np.array([[c @ c, c @ s], [c @ s, s @ s]])
        a_cos, a_sin = np.linalg.solve(gram, [c @ y, s @ y])
        y -= a_cos * c + a_sin * s
        fitted.append(int(b))
    return y


def _robust_scale(x: np.ndarray, mad_scale: float) -> float:
    """mad_scale x the noise sigma estimated by the MAD; the max |x| when the MAD is 0 (flat or quantised)."""
    if x.size == 0:
        return 1.0
    sigma = float(np.median(np.abs(x - np.median(x)))) / 0.6745
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
        cap = params.max_input
        out = [x * (cap / m) if x.size and (m := float(np.max(np.abs(x)))) > cap else x for x in out]
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
    """
    starts = window_starts(n_samples, params)
    if probs.shape != (starts.size, params.window):
        raise ValueError(f"expected probabilities of shape {(starts.size, params.window)}, got {probs.shape}")
    total = int(starts[-1]) + params.window
    acc = np.zeros(total, dtype=np.float64)
    weight = np.zeros(total, dtype=np.float64)
    inner = np.ones(params.window, dtype=np.float64)
    if params.halo:
        inner[: params.halo] = inner[-params.halo :] = 1e-6  # tiny: breaks ties only at the signal edges
    for i, s in enumerate(starts):
        w = inner
        if params.halo and (i == 0 or i == starts.size - 1):
            w = inner.copy()
            if i == 0:
                w[: params.halo] = 1.0
            if i == starts.size - 1:
                w[-params.halo :] = 1.0
        acc[s : s + params.window] += probs[i] * w
        weight[s : s + params.window] += w
    return (acc[:n_samples] / weight[:n_samples]).astype(np.float32)


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


def postprocess(
    probs: np.ndarray, x_pre: np.ndarray, params: ProcessingParams
) -> tuple[np.ndarray, RegionArrays]:
    """Stitch one signal's window probabilities ([n_windows, 1, W] or [n_windows, W]) and find regions."""
    prob = stitch(probs.reshape(-1, params.window), x_pre.size, params)
    return prob, find_region_arrays(prob, x_pre, params)


def run_pipeline(
    signals: Sequence[np.ndarray],
    params: ProcessingParams,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    max_batch_size: int = 64,
    keep_probability: bool = False,
) -> list[SignalResult]:
    """Offline reference pipeline: `infer` maps float32 [N, 1, W] windows to probabilities of that shape.

    The gateway runs the same steps, with Triton instead of `infer`.
    """
    pre, valid = preprocess_batch(signals, params)
    windows = [
        make_windows(x, params) if ok else np.zeros((0, params.window), np.float32)
        for x, ok in zip(pre, valid, strict=True)
    ]
    flat = np.concatenate(windows)[:, None, :] if windows else np.zeros((0, 1, params.window), np.float32)
    probs = np.concatenate(
        [infer(flat[i : i + max_batch_size]) for i in range(0, len(flat), max_batch_size)]
        or [np.zeros((0, 1, params.window), np.float32)]
    )
    results, offset = [], 0
    for x, ok, win in zip(pre, valid, windows, strict=True):
        stats = signal_stats(x)
        if not ok:
            results.append(SignalResult(valid=False, stats=stats))
            continue
        prob, regions = postprocess(probs[offset : offset + len(win)], x, params)
        offset += len(win)
        results.append(
            SignalResult(True, stats, regions.to_list(), len(win), prob if keep_probability else None)
        )
    return results
