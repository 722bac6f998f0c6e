"""PD regions from stitched probabilities: threshold, merge, filter, peak and score per region, then
the version's interference-rejection rules (the opposite-polarity twin, the AC phase window).

Column-wise numpy throughout: a noisy 800,000-sample signal can hold 10^5 regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gateway.dsp.params import ProcessingParams
    from gateway.dsp.phase import AcFit

#: Why a candidate region was rejected (the index is the code `split_regions` returns; 0 = kept).
REJECT_REASONS = ("", "twin", "phase")
#: The phase rule needs the signal to cover this much of an AC cycle: with an estimated period 0.9 (a VSB
#: record is exactly one cycle, and an estimate may come out a little longer); with the period known (the
#: request's sampling_rate_hz / power_frequency_hz) a quarter: on simulated VSB-like int8 pieces (AC 15-45
#: counts, noise 0.6-3) a known-period fit over 0.25 cycle was within 1.7 deg of the true phase (40 pieces).
MIN_PHASE_CYCLES = 0.9
MIN_PHASE_CYCLES_KNOWN_PERIOD = 0.25


@dataclass(frozen=True)
class Region:
    """A run of PD samples [start, end) with its strongest sample and mean model score."""

    start: int
    end: int
    peak_index: int
    peak_amplitude: float
    mean_score: float

    @property
    def duration(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class RegionArrays:
    """Regions as parallel arrays (a noisy signal can yield 10^5 regions: no Python loop per region)."""

    start: np.ndarray
    end: np.ndarray
    peak_index: np.ndarray
    peak_amplitude: np.ndarray
    mean_score: np.ndarray

    def __len__(self) -> int:
        return int(self.start.size)

    def to_list(self, limit: int | None = None) -> list[Region]:
        n = len(self) if limit is None else min(limit, len(self))
        return [
            Region(int(s), int(e), int(k), float(a), float(m))
            for s, e, k, a, m in zip(
                self.start[:n].tolist(),
                self.end[:n].tolist(),
                self.peak_index[:n].tolist(),
                self.peak_amplitude[:n].tolist(),
                self.mean_score[:n].tolist(),
                strict=True,
            )
        ]


def _segment_reduce(ufunc: np.ufunc, x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """ufunc.reduce over each x[start:end] (non-empty, non-overlapping, sorted), vectorised."""
    bounds = np.empty(2 * starts.size, dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    if bounds[-1] == x.size:  # reduceat cannot take len(x) as an index; the last segment runs to the end
        return ufunc.reduceat(x, bounds[:-1])[0::2]
    return ufunc.reduceat(x, bounds)[0::2]


def candidate_regions(prob: np.ndarray, x_pre: np.ndarray, params: ProcessingParams) -> RegionArrays:
    """Threshold the stitched probabilities into regions and apply the version's region filters (before
    the interference-rejection rules of `split_regions`)."""
    edges = np.diff(np.concatenate(([0], (prob > params.threshold_for(prob.size)).view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size > 1 and params.merge_gap > 0:
        keep = (starts[1:] - ends[:-1]) > params.merge_gap  # gap after run i is small: merge with i+1
        starts = np.concatenate((starts[:1], starts[1:][keep]))
        ends = np.concatenate((ends[:-1][keep], ends[-1:]))
    ok = (ends - starts) >= params.min_region_samples
    if params.drop_edge_regions:
        ok &= starts != 0
    starts, ends = starts[ok], ends[ok]
    if starts.size and params.min_region_peak is not None:
        ok = _segment_reduce(np.maximum, x_pre, starts, ends) >= params.min_region_peak
        starts, ends = starts[ok], ends[ok]
    if not starts.size:
        empty = np.zeros(0, np.int64)
        return RegionArrays(empty, empty, empty, np.zeros(0, np.float32), np.zeros(0, np.float64))
    lengths = ends - starts
    a = np.abs(x_pre)
    peak_abs = _segment_reduce(np.maximum, a, starts, ends)
    ids = np.repeat(np.arange(starts.size), lengths)
    # every sample index inside a region, region after region
    idx = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    hits = a[idx] == peak_abs[ids]
    _, first = np.unique(ids[hits], return_index=True)  # first sample reaching the peak, per region
    peak_index = idx[hits][first]
    mean_score = np.add.reduceat(prob[idx].astype(np.float64), np.cumsum(lengths) - lengths) / lengths
    return RegionArrays(starts, ends, peak_index, x_pre[peak_index], mean_score)


def split_regions(
    regions: RegionArrays, x_pre: np.ndarray, params: ProcessingParams, fit: AcFit | None
) -> tuple[RegionArrays, RegionArrays, np.ndarray]:
    """The version's interference-rejection rules: (kept, rejected, reason code per rejected region).

    "twin": the peak has a near-equal opposite-polarity twin within `twin_window` samples (a pair).
    "phase": the peak lies outside `phase_window` (and its mirror half a cycle on), judged only when the AC
    fit `fit` of the raw signal is trustworthy: r2 >= `phase_min_r2` over at least MIN_PHASE_CYCLES of the
    AC, or MIN_PHASE_CYCLES_KNOWN_PERIOD when the period was given (a period searched for in a small piece
    of a cycle, which any slow drift resembles, says little about the phase). The twin is checked first.
    """
    code = np.zeros(len(regions), np.int8)
    if len(regions) and params.twin_window > 0:
        code[has_twin(x_pre, regions.peak_index, params.twin_window, params.twin_ratio)] = 1
    if len(regions) and params.phase_window is not None and phase_fit_usable(fit, x_pre.size, params):
        assert fit is not None
        code[(code == 0) & outside_phase_window(regions.peak_index, fit, params.phase_window)] = 2
    keep = code == 0
    if keep.all():
        return regions, _select(regions, ~keep), code[:0]
    return _select(regions, keep), _select(regions, ~keep), code[~keep]


def phase_fit_usable(fit: AcFit | None, n_samples: int, params: ProcessingParams) -> bool:
    """Is the AC fit good enough to judge a region by its phase (the "phase" rule of `split_regions`)?"""
    if fit is None or fit.r2 < params.phase_min_r2:
        return False
    cycles = MIN_PHASE_CYCLES_KNOWN_PERIOD if fit.period_known else MIN_PHASE_CYCLES
    return n_samples >= cycles * fit.samples_per_cycle


def outside_phase_window(peaks: np.ndarray, fit: AcFit, window: tuple[float, float]) -> np.ndarray:
    """Per peak: is its AC phase outside [lo, hi) and outside [lo + 180, hi + 180) (degrees, mod 360)?"""
    lo, hi = window
    rel = np.mod(np.asarray(fit.phase_deg(peaks), dtype=np.float64) - lo, 180.0)
    return rel >= hi - lo


def find_region_arrays(
    prob: np.ndarray, x_pre: np.ndarray, params: ProcessingParams, fit: AcFit | None = None
) -> RegionArrays:
    """PD regions: `candidate_regions` less those the rejection rules drop (the phase rule needs `fit`)."""
    return split_regions(candidate_regions(prob, x_pre, params), x_pre, params, fit)[0]


def has_twin(x: np.ndarray, peaks: np.ndarray, window: int, ratio: float) -> np.ndarray:
    """Per peak: does x reach the opposite polarity at >= ratio * |x[peak]| within `window` samples?"""
    offsets = np.concatenate((np.arange(-window, 0), np.arange(1, window + 1)))
    idx = np.clip(peaks[:, None] + offsets[None, :], 0, x.size - 1)
    peak = x[peaks].astype(np.float64)
    opposite = -np.sign(peak)[:, None] * x[idx]  # > 0 where the neighbour has the opposite polarity
    return np.max(opposite, axis=1) >= ratio * np.abs(peak)


def _select(r: RegionArrays, keep: np.ndarray) -> RegionArrays:
    return RegionArrays(
        r.start[keep], r.end[keep], r.peak_index[keep], r.peak_amplitude[keep], r.mean_score[keep]
    )


def find_regions(prob: np.ndarray, x_pre: np.ndarray, params: ProcessingParams) -> list[Region]:
    """`find_region_arrays` as a list of `Region`s."""
    return find_region_arrays(prob, x_pre, params).to_list()
