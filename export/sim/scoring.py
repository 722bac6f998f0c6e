"""Detection scoring: one-to-one event matching with a collar, precision/recall/F1, mask IoU, buckets.

Events are [start, end) sample intervals. A predicted event matches a true event when it overlaps the true
interval widened by `collar` samples on each side, i.e. ``[start - collar, end + collar)``; so collar=0 needs
a real overlap and collar=c forgives a prediction that ends up to c samples early or late.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

Interval = tuple[int, int]


def match_events(true: Sequence[Interval], pred: Sequence[Interval], collar: int) -> tuple[int, int, int]:
    """One-to-one greedy matching by smallest centre distance; returns (tp, fp, fn).

    Candidate pairs are those whose intervals overlap once the true interval is widened by `collar`;
    pairs are taken closest centres first (ties by true then predicted order), each event used at most once.
    """
    if collar < 0:
        raise ValueError("collar must be >= 0")
    if not true or not pred:
        return 0, len(pred), len(true)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    ts, te = t[:, :1] - collar, t[:, 1:] + collar
    overlap = (p[None, :, 0] < te) & (p[None, :, 1] > ts)  # [n_true, n_pred]
    ti, pi = np.nonzero(overlap)
    if ti.size == 0:
        return 0, len(pred), len(true)
    dist = np.abs(t[ti].sum(axis=1) - p[pi].sum(axis=1)) / 2.0
    order = np.lexsort((pi, ti, dist))  # stable: distance, then true index, then pred index
    used_t = np.zeros(len(true), dtype=bool)
    used_p = np.zeros(len(pred), dtype=bool)
    tp = 0
    for k in order:
        i, j = ti[k], pi[k]
        if not used_t[i] and not used_p[j]:
            used_t[i] = used_p[j] = True
            tp += 1
    return tp, len(pred) - tp, len(true) - tp


def event_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 = 2tp/(2tp+fp+fn).

    0/0 conventions: no predictions -> precision 1 (nothing false was said); no true events -> recall 1
    (nothing was missed); F1 is 1 only when there are neither (perfect silence on a clean signal).
    """
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": precision, "recall": recall, "f1": f1}


def mask_iou(true_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two boolean masks; 1.0 when both are empty."""
    inter, union = _inter_union(true_mask, pred_mask)
    return inter / union if union else 1.0


def _inter_union(true_mask: np.ndarray, pred_mask: np.ndarray) -> tuple[int, int]:
    a = np.asarray(true_mask, dtype=bool)
    b = np.asarray(pred_mask, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b))


def regions_to_mask(regions: Iterable[Interval], n: int) -> np.ndarray:
    """Boolean mask of length n, True on every [start, end) region (clipped to the signal)."""
    mask = np.zeros(n, dtype=bool)
    for start, end in regions:
        mask[max(0, int(start)) : max(0, min(n, int(end)))] = True
    return mask


def mask_to_regions(mask: np.ndarray) -> list[Interval]:
    """Contiguous True runs of a boolean mask as [start, end) tuples."""
    m = np.asarray(mask, dtype=bool).ravel()
    edges = np.flatnonzero(np.diff(np.concatenate(([False], m, [False])).astype(np.int8)))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def _mcc(tp: int, fp: int, fn: int, tn: int) -> float:
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


class Accumulator:
    """Aggregates event counts and mask overlap over many signals, per bucket.

    Every signal also counts in the "all" bucket. Summary values are micro-averaged (counts summed
    first), plus a signal-level verdict: a signal "has PD" when it has true events and "is flagged" when
    it has predictions, scored with the Matthews correlation coefficient (the VSB competition metric).
    """

    def __init__(self, collar: int) -> None:
        self.collar = collar
        self._counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(
        self,
        bucket_keys: Sequence[str],
        true_events: Sequence[Interval],
        pred_events: Sequence[Interval],
        true_mask: np.ndarray | None = None,
        pred_mask: np.ndarray | None = None,
    ) -> tuple[int, int, int]:
        """Score one signal into "all" and each bucket; returns its (tp, fp, fn).

        Masks default to the events' own intervals when not given (then the length is unknown, so
        both must be given or neither).
        """
        if (true_mask is None) != (pred_mask is None):
            raise ValueError("give both masks or neither")
        tp, fp, fn = match_events(true_events, pred_events, self.collar)
        if true_mask is None or pred_mask is None:
            n = max([0, *(e for _, e in true_events), *(e for _, e in pred_events)])
            true_mask, pred_mask = regions_to_mask(true_events, n), regions_to_mask(pred_events, n)
        inter, union = _inter_union(true_mask, pred_mask)
        has, flagged = bool(true_events), bool(pred_events)
        row = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "intersection": inter,
            "union": union,
            "iou_sum": inter / union if union else 1.0,
            "n_signals": 1,
            "n_true": len(true_events),
            "n_pred": len(pred_events),
            "sig_tp": has and flagged,
            "sig_fp": flagged and not has,
            "sig_fn": has and not flagged,
            "sig_tn": not has and not flagged,
        }
        for key in dict.fromkeys(["all", *bucket_keys]):  # ordered, de-duplicated
            bucket = self._counts[key]
            for name, value in row.items():
                bucket[name] += value
        return tp, fp, fn

    def summary(self) -> dict[str, dict[str, float]]:
        """bucket -> precision, recall, f1, iou (micro), mean_signal_iou, signal_mcc and the raw counts."""
        out: dict[str, dict[str, float]] = {}
        for key, c in self._counts.items():
            tp, fp, fn = int(c["tp"]), int(c["fp"]), int(c["fn"])
            n_signals = int(c["n_signals"])
            out[key] = {
                **event_scores(tp, fp, fn),
                "iou": c["intersection"] / c["union"] if c["union"] else 1.0,
                "mean_signal_iou": c["iou_sum"] / n_signals,
                "signal_mcc": _mcc(*(int(c[k]) for k in ("sig_tp", "sig_fp", "sig_fn", "sig_tn"))),
                "n_signals": n_signals,
                "n_true": int(c["n_true"]),
                "n_pred": int(c["n_pred"]),
                "tp": tp,
                "fp": fp,
                "fn": fn,
            }
        return out
