"""PD regions from stitched probabilities: threshold, merge, filter, peak and score per region.

Column-wise numpy throughout: a noisy 800,000-sample signal can hold 10^5 regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gateway.dsp.params import ProcessingParams


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


def find_region_arrays(prob: np.ndarray, x_pre: np.ndarray, params: ProcessingParams) -> RegionArrays:
    """Threshold the stitched probabilities into PD regions and apply the version's region filters."""
    edges = np.diff(np.concatenate(([0], (prob > params.threshold).view(np.int8), [0])))
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
    regions = RegionArrays(starts, ends, peak_index, x_pre[peak_index], mean_score)
    if params.twin_window > 0:
        regions = _select(regions, ~has_twin(x_pre, peak_index, params.twin_window, params.twin_ratio))
    return regions


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
