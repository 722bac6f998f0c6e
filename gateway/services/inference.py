"""The inference path, and nothing of HTTP: signals in, PD regions out.

    prepare (thread) -> batched concurrent Triton calls -> finish + response rows (thread)

`prepare` and `finish` are gateway.dsp.processing's, the same two stages the offline evaluator drives
(`run_pipeline`), so online and offline answers are equal by construction. CPU-bound numpy work on large
requests runs in worker threads so the event loop keeps serving other requests; a small request's
(under INLINE_CPU_SAMPLES) costs less than the thread hand-off and runs inline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from gateway import metrics
from gateway.dsp.params import ProcessingParams
from gateway.dsp.phase import AcFit
from gateway.dsp.processing import Prepared, finish, prepare, signal_stats
from gateway.dsp.regions import REJECT_REASONS, RegionArrays
from gateway.errors import ModelNotFound, VersionNotFound
from gateway.schemas import DetectOptions
from gateway.services.models import ModelRegistry, ModelVersion
from gateway.triton_client import TritonClient

T = TypeVar("T")

#: Requests with fewer samples than this run their CPU stages on the event loop: at 7,920 samples they
#: take about a millisecond, less than handing them to a worker thread and back under load.
INLINE_CPU_SAMPLES = 65_536


async def _cpu(total_samples: int, fn: Callable[..., T], *args: Any) -> T:
    if total_samples < INLINE_CPU_SAMPLES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def regions_json(
    regions: RegionArrays, fit: AcFit | None, fs_hz: float | None, limit: int
) -> list[dict[str, Any]]:
    """Region dicts for the response (the first `limit`), built column-wise: no per-region numpy calls."""
    n = min(limit, len(regions))
    start, end = regions.start[:n], regions.end[:n]
    cols: dict[str, list[Any]] = {
        "start": start.tolist(),
        "end": end.tolist(),
        "duration": (end - start).tolist(),
        "peak_index": regions.peak_index[:n].tolist(),
        "peak_amplitude": regions.peak_amplitude[:n].astype(float).tolist(),
        "mean_score": np.round(regions.mean_score[:n], 6).tolist(),
        "phase_deg": (
            np.round(np.asarray(fit.phase_deg(regions.peak_index[:n])), 3).tolist()
            if fit is not None
            else [None] * n
        ),
    }
    if fs_hz is not None:
        cols["start_us"] = (start / fs_hz * 1e6).tolist()
        cols["duration_us"] = ((end - start) / fs_hz * 1e6).tolist()
    keys = list(cols)
    return [dict(zip(keys, row, strict=True)) for row in zip(*cols.values(), strict=True)]


class InferenceService:
    """Owns detection: one instance per process, made in the lifespan, shared by all requests."""

    def __init__(
        self, triton: TritonClient, registry: ModelRegistry, max_regions_per_signal: int = 10_000
    ) -> None:
        self._triton = triton
        self.registry = registry
        self.max_regions_per_signal = max_regions_per_signal

    async def _infer_all(self, mv: ModelVersion, windows: np.ndarray) -> np.ndarray:
        """Send [N, 1, W] windows as batches of at most max_batch_size, concurrently (the client bounds
        how many are in flight), and reassemble them in order."""
        step = mv.max_batch_size
        try:
            async with asyncio.TaskGroup() as tg:  # one failure cancels the request's other calls
                tasks = [
                    tg.create_task(
                        self._triton.infer(
                            mv.name, mv.version, windows[i : i + step], mv.input_name, mv.output_name
                        )
                    )
                    for i in range(0, len(windows), step)
                ]
        except ExceptionGroup as group:
            raise group.exceptions[0] from None  # the first failure is the client's answer
        parts = [t.result() for t in tasks]
        return np.concatenate(parts) if parts else np.zeros_like(windows)

    async def detect(
        self, signals: Sequence[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
    ) -> dict[str, Any]:
        """Detect PD in `signals`. `signal_samples`: they are pieces of a signal this long (a stream's
        blocks), which picks the version's threshold; by default each signal's own length does."""
        t_start = time.perf_counter()
        await self._triton.admit()  # 503 at once (breaker open, queue too deep), before any CPU is spent
        mv = await self.registry.resolve(options.model, options.version)
        params = options.effective_params(mv.params, signal_samples)

        total_samples = sum(int(np.size(x)) for x in signals)
        t0 = time.perf_counter()
        prep = await _cpu(total_samples, prepare, signals, params)
        preprocess_ms = _ms(t0)

        t0 = time.perf_counter()
        n_windows = sum(prep.n_windows)
        metrics.WINDOWS_PER_REQUEST.observe(prep.n_sent)
        try:
            probs = (
                await self._infer_all(mv, prep.batch)
                if prep.n_sent
                else np.zeros((0, 1, params.window), np.float32)
            )
        except (ModelNotFound, VersionNotFound):
            await self.registry.invalidate(mv.name)  # served state changed under us: re-read it next time
            raise
        inference_ms = _ms(t0)

        t0 = time.perf_counter()
        results = await _cpu(
            total_samples, self._finish, prep, probs, params, options, self.max_regions_per_signal
        )
        postprocess_ms = _ms(t0)

        n_regions = sum(r["num_regions_detected"] for r in results)
        metrics.REGIONS_FOUND_TOTAL.inc(n_regions)
        n_valid = int(prep.valid.sum())
        metrics.SIGNALS_PROCESSED_TOTAL.labels(valid="true").inc(n_valid)
        metrics.SIGNALS_PROCESSED_TOTAL.labels(valid="false").inc(len(signals) - n_valid)
        return {
            "model": mv.name,
            "version": mv.version,
            "total_samples_processed": len(signals),
            "valid_samples_found": n_valid,
            "total_regions": n_regions,
            "windows": n_windows,
            "windows_inferred": prep.n_sent,
            "results": results,
            "timings_ms": {
                "preprocess": preprocess_ms,
                "inference": inference_ms,
                "postprocess": postprocess_ms,
                "total": _ms(t_start),
            },
        }

    @staticmethod
    def _finish(
        prep: Prepared,
        probs: np.ndarray,
        params: ProcessingParams,
        options: DetectOptions,
        max_regions: int,
    ) -> list[dict[str, Any]]:
        out = []
        done_all = finish(prep, probs, params, options.samples_per_cycle)
        for i, (x, done) in enumerate(zip(prep.pre, done_all, strict=True)):
            stats = signal_stats(x)
            item: dict[str, Any] = {
                "sample_index": i,
                "n_samples": int(x.size),
                "valid": done is not None,
                "num_regions_detected": 0,
                "regions": [],
                "signal_stats": {
                    "max_amplitude": stats.max_amplitude,
                    "mean_amplitude": stats.mean_amplitude,
                    "std_amplitude": stats.std_amplitude,
                },
                "ac": None,
                "regions_truncated": False,
            }
            if done is not None:
                regions, fit = done.regions, done.fit
                item["regions"] = regions_json(regions, fit, options.sampling_rate_hz, max_regions)
                item["num_regions_detected"] = len(regions)  # all of them, even past the cap
                item["regions_truncated"] = len(regions) > max_regions
                if fit is not None:
                    item["ac"] = {
                        "samples_per_cycle": fit.samples_per_cycle,
                        "amplitude": fit.amplitude,
                        "r2": fit.r2,
                        "phase0_deg": round(float(np.degrees(fit.phase0_rad)) % 360.0, 4),
                    }
                if options.include_rejected:
                    rejected = regions_json(done.rejected, fit, options.sampling_rate_hz, max_regions)
                    for r, code in zip(rejected, done.reasons.tolist(), strict=False):
                        r["reason"] = REJECT_REASONS[code]
                    item["rejected"] = rejected
                if options.include_probability:
                    # float64 first: a rounded float32 prints as 0.0012300000526 (2.5x the JSON)
                    item["probability"] = np.round(done.prob.astype(np.float64), 5).tolist()
            if options.include_preprocessed:  # opt-in, for the page (/ui): what the model saw
                item["preprocessed"] = np.round(x.astype(np.float64), 6).tolist()
            out.append(item)
        return out
