"""Continuous detection on one channel: re-block an endless signal and run each block through detection.

The client may cut its signal anywhere; this module re-cuts it into fixed, overlapping blocks so the
result depends only on the samples, never on the chunking::

    block k = [k*S - M, (k+1)*S + M)  (clipped at 0 and at the end of the stream)
    core  k = [k*S, (k+1)*S)          events are taken from block k when they start in its core

S (stride) and M (margin) are whole multiples of the model version's hop, so every block's windows lie
on the same grid as /v1/detect's windows on the whole signal; the margins keep the filter's start-up
transient and the window edges away from the core. Each block goes through `InferenceService.detect`,
exactly as a /v1/detect request with that block as its signal, so the per-block robust (MAD) scale,
carrier removal and AC fit are the pipeline's own, estimated over the block's S + 2M samples; only the
threshold is the one for a long signal in every block (a version may be stricter on long signals:
`long_signal_threshold`; a stream has no end to measure), unless the stream's options give one.
An event seen by two neighbouring blocks is reported once: block k+1 also accepts events starting up to
`guard` samples before its core, unless they overlap an event already sent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gateway.errors import UpstreamUnavailable
from gateway.schemas import DetectOptions

#: A stream is an unbounded signal: every block is thresholded as a long one (the version's
#: `long_signal_threshold`), whatever `block_samples` and however short the first or last block.
STREAM_SIGNAL_SAMPLES = 2**62


class Detect(Protocol):
    """`InferenceService.detect`'s shape: `signal_samples` is the length of the signal the pieces are cut
    from, when that is not their own length (it picks the version's threshold for that length)."""

    def __call__(
        self, signals: list[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
    ) -> Awaitable[dict[str, Any]]: ...


@dataclass(frozen=True)
class BlockGeometry:
    """Stride S and margin M of the re-blocking, both whole multiples of the model's hop."""

    stride: int
    margin: int
    guard: int

    @classmethod
    def for_model(cls, block_samples: int, margin_samples: int, window: int, hop: int) -> BlockGeometry:
        margin = hop * math.ceil(max(margin_samples, 2 * window) / hop)
        stride = hop * max(1, math.ceil(block_samples / hop))
        return cls(stride=stride, margin=margin, guard=min(window, margin))

    @property
    def block(self) -> int:
        return self.stride + 2 * self.margin


@dataclass
class StreamState:
    """Samples received and not yet processed, and what has been reported so far (absolute indices)."""

    geometry: BlockGeometry
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    buffer_start: int = 0  # absolute index of buffer[0]
    next_core: int = 0  # absolute start of the next core to process
    last_end: int = -1  # end of the last event sent (events overlapping it are duplicates)
    received: int = 0
    events: int = 0
    blocks: int = 0

    def append(self, samples: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, samples]) if self.buffer.size else samples
        self.received += int(samples.size)

    @property
    def pending(self) -> int:
        """Samples received whose events are not final yet."""
        return self.received - self.next_core

    def ready_block(self, final: bool) -> tuple[int, int, int] | None:
        """(block_start, core_start, core_end) of the next block to process, or None if none is ready.

        With `final` (end of stream) the last block runs to the end of the samples received.
        """
        g = self.geometry
        core_start = self.next_core
        core_end = core_start + g.stride
        if core_end + g.margin > self.received:
            if not final or core_start >= self.received:
                return None
            core_end = self.received
        return max(0, core_start - g.margin), core_start, core_end

    def block_samples(self, block_start: int, core_end: int) -> np.ndarray:
        """The block's samples: its core plus a margin each side (less at the stream's two ends)."""
        end = min(self.received, core_end + self.geometry.margin)
        return self.buffer[block_start - self.buffer_start : end - self.buffer_start]

    def accept(
        self,
        regions: list[dict[str, Any]],
        block_start: int,
        core_start: int,
        core_end: int,
        fs_hz: float | None = None,
    ) -> list[dict[str, Any]]:
        """Absolute, de-duplicated regions of this block's core; advances the state past the block."""
        out = []
        lo = core_start - self.geometry.guard
        for r in regions:
            start = block_start + int(r["start"])
            if not lo <= start < core_end or start <= self.last_end:
                continue
            out.append(absolute_region(r, block_start, fs_hz))
            self.last_end = block_start + int(r["end"])
        self.next_core = core_end
        self.blocks += 1
        self.events += len(out)
        keep_from = max(0, core_end - self.geometry.margin)  # the next block's first sample
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[keep_from - self.buffer_start :].copy()
            self.buffer_start = keep_from
        return out


def absolute_region(region: dict[str, Any], offset: int, fs_hz: float | None) -> dict[str, Any]:
    """A /v1/detect region moved from block to absolute sample indices; `t_s` = seconds from sample 0."""
    out = dict(region)
    for key in ("start", "end", "peak_index"):
        out[key] = int(region[key]) + offset
    if fs_hz is not None:
        out["start_us"] = out["start"] / fs_hz * 1e6
        out["t_s"] = out["start"] / fs_hz
    return out


@dataclass(frozen=True)
class BlockResult:
    events: list[dict[str, Any]]
    core_start: int
    core_end: int
    ac: dict[str, Any] | None
    valid: bool
    model: str
    version: str


async def process_ready(
    state: StreamState, detect: Detect, options: DetectOptions, final: bool
) -> AsyncIterator[BlockResult]:
    """Run every block that is ready through `detect`, yielding each block's result as it completes."""
    while (span := state.ready_block(final)) is not None:
        block_start, core_start, core_end = span
        samples = state.block_samples(block_start, core_end)
        result = await detect([samples], options, signal_samples=STREAM_SIGNAL_SAMPLES)
        item = result["results"][0]
        events = state.accept(item["regions"], block_start, core_start, core_end, options.sampling_rate_hz)
        yield BlockResult(
            events, core_start, core_end, item["ac"], item["valid"], result["model"], result["version"]
        )


class SampleQueue:
    """Frames between the WebSocket reader and the block processor, bounded in bytes.

    `put` waits while the queue holds `max_bytes` or more (one frame alone always fits), so a client that
    sends faster than its stream is processed is slowed by TCP flow control, and nothing is dropped.
    `None` marks the end of the stream.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[tuple[np.ndarray | None, float]] = deque()
        self._bytes = 0
        self._cond = asyncio.Condition()

    async def put(self, samples: np.ndarray | None) -> None:
        n = 0 if samples is None else samples.nbytes
        async with self._cond:
            await self._cond.wait_for(lambda: self._bytes == 0 or self._bytes + n <= self.max_bytes)
            self._items.append((samples, time.monotonic()))
            self._bytes += n
            self._cond.notify_all()

    async def get_all(self) -> list[tuple[np.ndarray | None, float]]:
        """Every queued item with its arrival time (waits for at least one)."""
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
            return items


def retrying(detect: Detect, patience_s: float) -> Detect:
    """`detect` that waits out 503s (load shedding, breaker open, model reloading) for up to `patience_s`.

    A stream or a job is long-lived: a block shed under a burst is retried after the error's Retry-After
    (the bounded queue slows the client meanwhile) instead of ending the whole stream or job.
    """

    async def call(
        signals: list[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
    ) -> dict[str, Any]:
        give_up = time.monotonic() + patience_s
        while True:
            try:
                return await detect(signals, options, signal_samples=signal_samples)
            except UpstreamUnavailable as e:
                wait_s = max(float(e.retry_after_s), 0.1)
                if time.monotonic() + wait_s > give_up:
                    raise
                await asyncio.sleep(wait_s)

    return call
