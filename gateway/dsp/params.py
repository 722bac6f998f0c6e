"""The processing parameters of a model version (`ProcessingParams`) and the two profiles we name.

Every tunable of the pre/post-processing belongs to a model version and is stored in its Triton config, so
the same code serves seed 000's checkpoints (`SEED_PARAMS`, reproduced exactly) and our own models. The
functions that use them live in gateway.dsp.processing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

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
        pulse is broadband and loses nothing; a radio carrier is one tall narrow peak and goes. The
        spectrum is float32: a carrier below about 2e-4 of the filtered signal's norm is not looked for,
        so without the high-pass (`highpass_wn` None) a large AC hides weak carriers.
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
    max_input_block: with `max_input`, the cap's scale is taken per block of this many samples instead
        of over the whole signal (None = whole signal). Each block's factor is min(1, max_input / its
        max |x|), lowered to its neighbours' smallest, and the factors are interpolated linearly between
        block centres, so no sample exceeds the cap and the gain changes smoothly. A signal no longer than
        one block is scaled exactly as with None. Without it one large interference event anywhere in a
        whole 800,000-sample signal shrinks every pulse and the noise everywhere else (issue 11).
    valid_threshold: a signal is valid when max |preprocessed| > this; invalid signals are not inferred.
    threshold: probability above which a sample belongs to a PD region.
    long_signal_threshold / long_signal_samples: the threshold for signals of at least
        `long_signal_samples` samples (None = `threshold` at every length). A whole VSB measurement
        (800,000 samples, ~900 windows) gives the network ~50x the chances of a short signal to fire on
        noise or interference, so a fixed per-sample threshold buys far more false regions per signal
        there; a stricter one, chosen on whole-signal validation sets, keeps them rare (issue 11). A
        request's `threshold` option replaces both.
    min_region_peak: drop regions whose signed max of the preprocessed signal is below this (None = keep).
    drop_edge_regions: drop regions starting at sample 0 (seed 000's /test endpoint did).
    min_region_samples / merge_gap: drop shorter runs; merge runs separated by at most this many samples.
    twin_window / twin_ratio (interference rejection, issue 11): drop a region when, within `twin_window`
        samples of its peak (either side), the preprocessed signal reaches the opposite polarity at
        >= `twin_ratio` times the peak's |value| -- the near-equal inverted twin of an opposite-polarity
        pair. 0 = off (the default, so versions without it are unchanged).
    phase_window / phase_min_r2 (interference rejection, issue 11): [lo, hi) AC phase in degrees, and the
        same window half a cycle later, where a PD region's peak must lie; a region peaking elsewhere is
        rejected. PD fires on the rising quarters of the AC (0-90 and 180-270 deg, see pd-domain.md in
        ../shared/docs), while pairs, trains and impulsive noise come at any phase. Applied only when the
        raw signal's AC fit (gateway.dsp.phase) explains at least `phase_min_r2` of its variance over 0.9 of
        a cycle or more, a quarter of one when the request gives the period (gateway.dsp.regions.
        phase_fit_usable); otherwise (no AC in the signal, too short a piece of it) every region is kept.
        None = off (the default).
    screen_peak: window screening (None = off): a window whose max |preprocessed| is below this is not
        sent to the model and gets probability 0. Calibrated per model version on simulator signals
        (`python -m export.screening`) as the smallest window peak at which the model was ever seen to
        reach the threshold, divided by a safety margin.
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
    max_input_block: int | None = None
    valid_threshold: float = 0.1
    threshold: float = 0.5
    long_signal_threshold: float | None = None
    long_signal_samples: int = 100_000
    min_region_peak: float | None = None
    drop_edge_regions: bool = False
    min_region_samples: int = 1
    merge_gap: int = 0
    # interference rejection rule (issue 11)
    twin_window: int = 0
    twin_ratio: float = 0.8
    phase_window: tuple[float, float] | None = None
    phase_min_r2: float = 0.9
    screen_peak: float | None = None  # window screening (export.screening)

    def __post_init__(self) -> None:
        if isinstance(self.phase_window, list):  # JSON has no tuples
            object.__setattr__(self, "phase_window", tuple(self.phase_window))
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
        if self.max_input_block is not None and self.max_input_block < 2:
            problems.append("max_input_block must be >= 2 or null")
        if self.screen_peak is not None and not self.screen_peak >= 0:
            problems.append("screen_peak must be >= 0 or null")
        if not self.mad_scale > 0:
            problems.append("mad_scale must be > 0")
        if self.normalisation not in NORMALISATIONS:
            problems.append(f"normalisation must be one of {NORMALISATIONS}")
        if not 0.0 < self.threshold < 1.0:
            problems.append("threshold must be in (0, 1)")
        if self.long_signal_threshold is not None and not 0.0 < self.long_signal_threshold < 1.0:
            problems.append("long_signal_threshold must be in (0, 1) or null")
        if self.long_signal_samples < 1:
            problems.append("long_signal_samples must be >= 1")
        if self.twin_window < 0 or not 0.0 < self.twin_ratio <= 1.0:
            problems.append("twin_window must be >= 0 and twin_ratio in (0, 1]")
        if self.phase_window is not None:
            lo, hi = self.phase_window
            if not (-180.0 <= lo < hi <= 360.0 and hi - lo < 180.0):
                problems.append("phase_window must be [lo, hi] deg, -180 <= lo < hi <= 360 and hi - lo < 180")
        if not 0.0 <= self.phase_min_r2 <= 1.0:
            problems.append("phase_min_r2 must be in [0, 1]")
        if self.valid_threshold < 0 or self.min_region_samples < 1 or self.merge_gap < 0:
            problems.append("valid_threshold, merge_gap must be >= 0 and min_region_samples >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def threshold_for(self, n_samples: int) -> float:
        """The probability threshold for a signal of `n_samples` samples."""
        if self.long_signal_threshold is not None and n_samples >= self.long_signal_samples:
            return self.long_signal_threshold
        return self.threshold

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
_INTS = (
    "window",
    "hop",
    "halo",
    "highpass_order",
    "min_region_samples",
    "merge_gap",
    "twin_window",
    "long_signal_samples",
)


def _type_problems(params: ProcessingParams) -> list[str]:
    """JSON gives any type: a "false" string must not pass for a bool, nor a bool for a number."""
    problems = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name in _BOOLS:
            ok = isinstance(value, bool)
        elif f.name == "max_input_block":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        elif f.name in _INTS:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif f.name == "normalisation":
            ok = isinstance(value, str)
        elif f.name == "phase_window":
            ok = value is None or (
                isinstance(value, tuple)
                and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            )
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
