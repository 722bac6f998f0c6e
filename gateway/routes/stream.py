"""WS /v1/stream: continuous PD detection on one channel (protocol and close codes in README "Streams").

One reader task turns binary frames into samples and queues them (bounded: a full queue stops reading,
so TCP slows the client); one processor task re-blocks them (`gateway.services.stream`), runs each block
through the inference service and sends the final events, which also go to Redis (`pd:events:{channel}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway import metrics
from gateway.auth import inference_key_for
from gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidInput,
    ModelNotFound,
    Unauthorized,
    UpstreamUnavailable,
    VersionNotFound,
)
from gateway.schemas import DetectOptions, parse_options
from gateway.services.events import EventPublisher
from gateway.services.inference import InferenceService
from gateway.services.stream import BlockGeometry, SampleQueue, StreamState, process_ready, retrying
from gateway.settings import Settings

router = APIRouter(tags=["streams"])
log = structlog.get_logger(__name__)

DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
}
_CHANNEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STREAM_KEYS = {"type", "channel", "dtype", "block_samples"}
_NOT_FOR_STREAMS = {"profile", "include_probability"}
_CODE_FOR_ERROR = {Unauthorized: 4401, Forbidden: 4403, ModelNotFound: 4404, VersionNotFound: 4404}


class StreamClose(Exception):
    """Close the stream with `code` and `reason`; `kind` is the metrics label."""

    def __init__(self, code: int, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.code, self.reason, self.kind = code, reason, kind


def _close_for(error: GatewayError) -> StreamClose:
    code = _CODE_FOR_ERROR.get(type(error))
    if code is None:
        code = (
            4400
            if isinstance(error, InvalidInput)
            else 1013
            if isinstance(error, UpstreamUnavailable)
            else 1011
        )
    return StreamClose(code, error.message, "bad_open" if code >= 4400 else "error")


@dataclass(frozen=True)
class StreamOpen:
    channel: str
    dtype: np.dtype
    options: DetectOptions
    block_samples: int | None


def parse_open(raw: dict[str, Any], max_block_samples: int) -> StreamOpen:
    """Validate an open message (or the query string); InvalidInput with a client-readable message."""
    if raw.get("type", "open") != "open":
        raise InvalidInput('the first message must be {"type": "open", "channel": ..., ...}')
    bad = sorted(set(raw) & _NOT_FOR_STREAMS)
    if bad:
        raise InvalidInput(f"option(s) not available on streams: {', '.join(bad)}")
    channel = str(raw.get("channel", ""))
    if not _CHANNEL.match(channel):
        raise InvalidInput("'channel' is required: 1-64 characters of A-Z a-z 0-9 _ . : -")
    dtype = DTYPES.get(str(raw.get("dtype", "float32")))
    if dtype is None:
        raise InvalidInput(f"'dtype' must be one of {', '.join(DTYPES)}")
    block = raw.get("block_samples")
    if block is not None:
        try:
            block = int(block)
        except (TypeError, ValueError):
            raise InvalidInput("'block_samples' must be an integer") from None
        if not 1 <= block <= max_block_samples:
            raise InvalidInput(f"'block_samples' must be in [1, {max_block_samples}]")
    options = parse_options({k: v for k, v in raw.items() if k not in _STREAM_KEYS})
    return StreamOpen(channel, dtype, options, block)


class StreamSession:
    """One open stream: reader, processor and stats tasks around a `StreamState`."""

    def __init__(
        self,
        ws: WebSocket,
        opened: StreamOpen,
        geometry: BlockGeometry,
        service: InferenceService,
        publisher: EventPublisher,
        settings: Settings,
    ) -> None:
        self.ws, self.opened, self.service, self.publisher = ws, opened, service, publisher
        self.settings = settings
        self._detect = retrying(service.detect, settings.STREAM_IDLE_TIMEOUT_S)
        self.id = uuid.uuid4().hex[:12]
        self.state = StreamState(geometry)
        self.queue = SampleQueue(settings.STREAM_BUFFER_BYTES)
        self._send_lock = asyncio.Lock()
        self._arrivals: deque[tuple[int, float]] = deque()  # (samples received after a frame, its time)
        self._buffered = 0  # this stream's share of the buffered-samples gauge
        self._last_lag_s: float | None = None
        self._last_ac: dict[str, Any] | None = None
        self._t0 = time.monotonic()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":")))

    async def read(self) -> None:
        """Frames -> samples -> queue, until the client's end message; StreamClose on a bad frame."""
        itemsize = self.opened.dtype.itemsize
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), self.settings.STREAM_IDLE_TIMEOUT_S)
            except TimeoutError:
                raise StreamClose(
                    4408, f"idle for more than {self.settings.STREAM_IDLE_TIMEOUT_S:g} s", "idle"
                ) from None
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            data = msg.get("bytes")
            if data is None:
                if _is_end(msg.get("text")):
                    await self.queue.put(None)
                    return
                raise StreamClose(
                    1003,
                    'text frame: samples go in binary frames; the only text is {"type": "end"}',
                    "bad_frame",
                )
            if len(data) > self.settings.STREAM_MAX_FRAME_BYTES:
                raise StreamClose(
                    1009,
                    f"frame of {len(data)} bytes exceeds {self.settings.STREAM_MAX_FRAME_BYTES}",
                    "bad_frame",
                )
            if len(data) % itemsize:
                raise StreamClose(
                    1007,
                    f"frame of {len(data)} bytes is not a whole number of {self.opened.dtype.name} "
                    f"samples ({itemsize} bytes)",
                    "bad_frame",
                )
            samples = np.frombuffer(data, dtype=self.opened.dtype).astype(np.float32)
            if not np.all(np.isfinite(samples)):
                raise StreamClose(1007, "frame contains NaN or Inf", "bad_frame")
            metrics.STREAM_SAMPLES_TOTAL.inc(samples.size)
            metrics.STREAM_BUFFERED_SAMPLES.inc(samples.size)
            self._buffered += samples.size
            await self.queue.put(samples)

    async def process(self) -> None:
        """Queue -> blocks -> events, until the end marker has been processed."""
        final = False
        while not final:
            for samples, t in await self.queue.get_all():
                if samples is None:
                    final = True
                    continue
                self.state.append(samples)
                self._arrivals.append((self.state.received, t))
            before = self.state.next_core
            try:
                async for block in process_ready(self.state, self._detect, self.opened.options, final):
                    await self._emit(block.events, block.core_end, block.ac)
            except GatewayError as e:
                raise _close_for(e) from None
            finally:
                metrics.STREAM_BUFFERED_SAMPLES.dec(self.state.next_core - before)
                self._buffered -= self.state.next_core - before

    async def _emit(self, events: list[dict[str, Any]], core_end: int, ac: dict[str, Any] | None) -> None:
        needed = min(self.state.received, core_end + self.state.geometry.margin)
        while len(self._arrivals) > 1 and self._arrivals[0][0] < needed:
            self._arrivals.popleft()
        self._last_lag_s = time.monotonic() - self._arrivals[0][1]
        metrics.STREAM_LAG_SECONDS.observe(self._last_lag_s)
        self._last_ac = ac or self._last_ac
        channel = self.opened.channel
        for ev in events:
            ev["channel"] = channel
            await self.send({"type": "event", **ev})
        metrics.STREAM_EVENTS_TOTAL.inc(len(events))
        await self.publisher.publish(channel, events)

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        s = self.state
        return {
            "type": "stats",
            "samples_received": s.received,
            "samples_final": s.next_core,
            "buffered_samples": s.pending,
            "blocks": s.blocks,
            "events": s.events,
            "samples_per_s": round(s.received / elapsed, 1),
            "lag_s": None if self._last_lag_s is None else round(self._last_lag_s, 4),
            "ac": self._last_ac,
        }

    async def stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.STREAM_STATS_INTERVAL_S)
            await self.send(self.stats())

    async def run(self) -> StreamClose:
        """Serve the stream to its end; returns how it ended (the caller closes the socket)."""
        reader = asyncio.create_task(self.read())
        processor = asyncio.create_task(self.process())
        stats = asyncio.create_task(self.stats_loop())
        try:
            done, _ = await asyncio.wait({reader, processor}, return_when=asyncio.FIRST_COMPLETED)
            if processor in done or reader.exception() is not None:
                first = processor if processor in done else reader
                first.result()  # raises what ended the stream
            await processor  # the reader saw the end marker: finish the last block
            await self.send({**self.stats(), "type": "end"})
            return StreamClose(1000, "end of stream", "normal")
        finally:
            for task in (reader, processor, stats):
                task.cancel()
            for task in (reader, processor, stats):
                with contextlib.suppress(BaseException):
                    await task
            metrics.STREAM_BUFFERED_SAMPLES.dec(self._buffered)


def _is_end(text: str | None) -> bool:
    try:
        doc = json.loads(text or "")
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("type") == "end"


async def _open_message(ws: WebSocket, settings: Settings) -> dict[str, Any]:
    """The open parameters: the query string when it names a channel, else the first (text) message."""
    if "channel" in ws.query_params:
        return dict(ws.query_params)
    try:
        msg = await asyncio.wait_for(ws.receive(), settings.STREAM_IDLE_TIMEOUT_S)
    except TimeoutError:
        raise StreamClose(4408, "no open message", "idle") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    try:
        doc = json.loads(msg.get("text") or "")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise StreamClose(1008, 'no open message: send {"type": "open", "channel": ...} first', "bad_open")
    return doc


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Continuous detection on one channel; see README "Streams" for messages and close codes."""
    app = ws.app
    settings: Settings = app.state.settings
    service: InferenceService = app.state.inference
    publisher: EventPublisher = app.state.events
    await ws.accept()
    outcome: StreamClose
    session: StreamSession | None = None
    metrics.STREAMS_OPEN.inc()
    app.state.open_streams = getattr(app.state, "open_streams", 0) + 1
    try:
        if app.state.open_streams > settings.STREAM_MAX_OPEN:
            raise StreamClose(
                1013, f"more than {settings.STREAM_MAX_OPEN} streams open; retry later", "error"
            )
        inference_key_for(app.state.keys, ws.headers, ws.url.path)
        opened = parse_open(await _open_message(ws, settings), settings.STREAM_MAX_BLOCK_SAMPLES)
        mv = await service.registry.resolve(opened.options.model, opened.options.version)
        geometry = BlockGeometry.for_model(
            opened.block_samples or settings.STREAM_BLOCK_SAMPLES,
            settings.STREAM_MARGIN_SAMPLES,
            mv.params.window,
            mv.params.hop,
        )
        session = StreamSession(ws, opened, geometry, service, publisher, settings)
        log.info("stream_opened", stream_id=session.id, channel=opened.channel, dtype=opened.dtype.name)
        await session.send(
            {
                "type": "opened",
                "stream_id": session.id,
                "channel": opened.channel,
                "dtype": opened.dtype.name,
                "model": mv.name,
                "version": mv.version,
                "block_samples": geometry.stride,
                "margin_samples": geometry.margin,
                "max_frame_bytes": settings.STREAM_MAX_FRAME_BYTES,
                "redis": publisher.enabled,
            }
        )
        outcome = await session.run()
    except StreamClose as e:
        outcome = e
    except GatewayError as e:
        outcome = _close_for(e)
    except WebSocketDisconnect:
        outcome = StreamClose(1000, "client gone", "client_gone")
    except Exception:
        log.exception("stream_failed", stream_id=session.id if session else None)
        outcome = StreamClose(1011, "internal error", "error")
    finally:
        metrics.STREAMS_OPEN.dec()
        app.state.open_streams -= 1
    metrics.STREAM_CLOSED_TOTAL.labels(outcome.kind).inc()
    log.info(
        "stream_closed",
        stream_id=session.id if session else None,
        code=outcome.code,
        reason=outcome.reason,
        samples=session.state.received if session else 0,
        events=session.state.events if session else 0,
    )
    if outcome.kind != "client_gone" and ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):  # the client may be gone already
            await ws.close(outcome.code, outcome.reason.encode()[:120].decode(errors="ignore"))
