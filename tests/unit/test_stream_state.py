"""Re-blocking of streams (gateway.services.stream): the blocks, hence the events, do not depend on how
the signal was cut or when the frames arrived; the sample queue is bounded and drops nothing.

`detect` here is a small pure function of the block's samples (a unit test of the re-blocking alone; the
integration tests run the real Triton).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from gateway.dsp.params import ProcessingParams
from gateway.errors import Overloaded
from gateway.schemas import DetectOptions
from gateway.services.stream import BlockGeometry, SampleQueue, StreamState, process_ready, retrying

GEOMETRY = BlockGeometry.for_model(block_samples=1000, margin_samples=100, window=64, hop=32)


async def block_detect(
    signals: list[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
) -> dict[str, Any]:
    """Regions where |x| exceeds 4 x the block's median |x|: the result depends on the whole block."""
    (x,) = signals
    above = np.abs(x) > 4.0 * np.median(np.abs(x))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
    regions = [
        {"start": int(s), "end": int(e), "peak_index": int(s)}
        for s, e in zip(edges[::2], edges[1::2], strict=True)
    ]
    return {"model": "m", "version": "1", "results": [{"regions": regions, "ac": None, "valid": True}]}


def signal(n: int = 7777, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n).astype(np.float32)
    for p in rng.integers(0, n - 10, 40):
        x[p : p + 5] += 12.0
    return x


async def run(x: np.ndarray, cuts: list[int], flush_every: int) -> list[tuple[int, int]]:
    """Feed `x` cut at `cuts`, running ready blocks only every `flush_every` chunks (late arrivals)."""
    state = StreamState(GEOMETRY)
    events: list[tuple[int, int]] = []
    pieces = np.split(x, cuts)
    for i, piece in enumerate(pieces):
        state.append(piece)
        last = i == len(pieces) - 1
        if last or i % flush_every == 0:
            async for block in process_ready(state, block_detect, DetectOptions(), final=last):
                events += [(e["start"], e["end"]) for e in block.events]
    return events


def test_every_block_is_thresholded_as_a_long_signal() -> None:
    """A stream has no end to measure: each block asks for the long-signal threshold, short blocks too."""
    seen: list[int | None] = []

    async def recording(
        signals: list[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
    ) -> dict[str, Any]:
        seen.append(signal_samples)
        return await block_detect(signals, options)

    async def scenario() -> None:
        state = StreamState(GEOMETRY)
        state.append(signal(1500))
        async for _ in process_ready(state, recording, DetectOptions(), final=True):
            pass

    asyncio.run(scenario())
    assert len(seen) >= 2 and all(n is not None and n >= 2**62 for n in seen)
    params = ProcessingParams(long_signal_threshold=0.9, long_signal_samples=100_000)
    assert DetectOptions().effective_params(params, seen[0]).threshold == 0.9


def test_geometry_is_on_the_hop_grid() -> None:
    g = BlockGeometry.for_model(block_samples=262_144, margin_samples=4096, window=1024, hop=896)
    assert g.stride % 896 == 0 and g.margin % 896 == 0 and g.margin >= 2048 and g.stride >= 262_144


@pytest.mark.parametrize("flush_every", [1, 3, 1000])
def test_events_do_not_depend_on_the_cuts(flush_every: int) -> None:
    x = signal()
    whole = asyncio.run(run(x, [], 1))
    assert len(whole) > 20
    rng = np.random.default_rng(1)
    for cuts in ([1, 2, 3], list(range(1, x.size, 1)), sorted(rng.integers(1, x.size, 50).tolist()), [4000]):
        assert asyncio.run(run(x, cuts, flush_every)) == whole
    starts = [s for s, _ in whole]
    assert starts == sorted(set(starts))  # each event once, in order


def test_state_keeps_only_one_block_of_samples() -> None:
    state = StreamState(GEOMETRY)

    async def feed() -> None:
        for piece in np.array_split(signal(20_000), 200):
            state.append(piece)
            async for _ in process_ready(state, block_detect, DetectOptions(), final=False):
                pass
            assert state.buffer.size <= GEOMETRY.block + piece.size

    asyncio.run(feed())
    assert state.blocks > 10


def test_sample_queue_blocks_the_writer_and_drops_nothing() -> None:
    async def scenario() -> None:
        q = SampleQueue(max_bytes=40)
        await q.put(np.zeros(8, np.float32))  # 32 bytes
        writer = asyncio.create_task(q.put(np.ones(8, np.float32)))
        await asyncio.sleep(0.01)
        assert not writer.done()  # full: the reader of the socket waits, the client is slowed
        first = await q.get_all()
        await writer
        second = await q.get_all()
        assert [a.sum() for a, _ in first + second] == [0.0, 8.0]
        big = np.zeros(100, np.float32)  # a frame larger than the budget still passes alone
        await q.put(big)
        assert (await q.get_all())[0][0] is big

    asyncio.run(scenario())


def test_retrying_waits_out_shedding_but_not_forever() -> None:
    calls = []

    async def shed_twice(
        signals: list[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
    ) -> dict[str, Any]:
        calls.append(1)
        if len(calls) <= 2:
            raise Overloaded("queue full", retry_after_s=0)
        return await block_detect(signals, options)

    async def scenario() -> None:
        out = await retrying(shed_twice, patience_s=5.0)([signal(100)], DetectOptions())
        assert out["results"][0]["valid"] and len(calls) == 3
        with pytest.raises(Overloaded):
            await retrying(_always_shed, patience_s=0.05)([signal(100)], DetectOptions())

    asyncio.run(scenario())


async def _always_shed(
    signals: list[np.ndarray], options: DetectOptions, *, signal_samples: int | None = None
) -> dict[str, Any]:
    raise Overloaded("queue full", retry_after_s=1)
