"""`pd-gateway stream`: replay a .npy signal into WS /v1/stream at real time or full speed, print events.

    pd-gateway stream signal.npy --sampling-rate-hz 40e6 --channel ch1 --speed 1      # real time
    pd-gateway stream signal.npy --channel ch1 --loop 10 --json                      # full speed, JSON lines

Exit status: 0 after the gateway confirmed the end of the stream, 1 when it closed the stream with an
error (the close code and reason are printed), 2 for bad arguments or an unreadable file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

_DTYPES = {"float32": "<f4", "int16": "<i2", "int8": "i1"}


@dataclass
class Replay:
    """What happened to one replayed stream."""

    events: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str = ""
    sent_samples: int = 0
    max_behind_s: float = 0.0  # the most the sender fell behind its real-time schedule (backpressure)
    seconds: float = 0.0


async def replay(
    url: str,
    signal: np.ndarray,
    open_msg: dict[str, Any],
    *,
    chunk_samples: int,
    speed: float | None,
    loops: int = 1,
    headers: dict[str, str] | None = None,
    on_message: Callable[[dict[str, Any]], None] | None = None,
) -> Replay:
    """Stream `signal` (already in the wire dtype) `loops` times; `speed` x real time, None = full speed."""
    out = Replay()
    fs = open_msg.get("sampling_rate_hz")
    if speed is not None and not fs:
        raise ValueError("real-time replay needs sampling_rate_hz")
    t0 = time.monotonic()
    async with connect(url, additional_headers=headers or {}, max_size=None, open_timeout=30) as ws:
        await ws.send(json.dumps(open_msg))

        async def receive() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "event":
                    out.events.append(msg)
                if on_message is not None:
                    on_message(msg)
                if msg.get("type") == "end":
                    out.end = msg
                    return

        receiver = asyncio.create_task(receive())
        try:
            data = signal.tobytes()
            step = chunk_samples * signal.itemsize
            for _ in range(loops):
                for i in range(0, len(data), step):
                    if receiver.done():
                        break  # the gateway closed the stream
                    await ws.send(data[i : i + step])
                    out.sent_samples += min(step, len(data) - i) // signal.itemsize
                    if speed is not None and fs:
                        due = t0 + out.sent_samples / (fs * speed)
                        now = time.monotonic()
                        out.max_behind_s = max(out.max_behind_s, now - due)
                        if due > now:
                            await asyncio.sleep(due - now)
            if not receiver.done():
                await ws.send('{"type": "end"}')
            await receiver
            await ws.close()
        except ConnectionClosed:
            pass
        finally:
            receiver.cancel()
        out.close_code, out.close_reason = ws.close_code, ws.close_reason or ""
    out.seconds = time.monotonic() - t0
    return out


def load_signal(path: Path, row: int, dtype: str) -> np.ndarray:
    """One row of a .npy file as the wire dtype (`auto`: int8/int16 stay integers, the rest float32)."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 2:
        arr = arr[row]
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{path}: need a 1-D or 2-D numeric array, got {arr.ndim}-D {arr.dtype}")
    if dtype == "auto":
        dtype = arr.dtype.name if arr.dtype.name in ("int8", "int16") else "float32"
    return arr.astype(_DTYPES[dtype])


def _format(msg: dict[str, Any]) -> str:
    if msg["type"] == "event":
        phase = "-" if msg.get("phase_deg") is None else f"{msg['phase_deg']:.1f}°"
        when = f" t={msg['t_s']:.6f}s" if "t_s" in msg else ""
        return (
            f"event {msg['channel']} start={msg['start']} end={msg['end']} peak={msg['peak_amplitude']:.3g} "
            f"phase={phase}{when}"
        )
    fields = ("samples_received", "events", "buffered_samples", "samples_per_s", "lag_s")
    return f"{msg['type']} " + " ".join(f"{k}={msg.get(k)}" for k in fields)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pd-gateway stream", description=__doc__.split("\n")[0])
    p.add_argument("file", type=Path, help=".npy file: one signal (1-D) or one per row (2-D, see --row)")
    p.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="the gateway's stream endpoint")
    p.add_argument("--channel", help="channel id (default: the file's name)")
    p.add_argument("--row", type=int, default=0, help="row of a 2-D file")
    p.add_argument("--dtype", choices=["auto", *_DTYPES], default="auto", help="wire sample type")
    p.add_argument("--sampling-rate-hz", type=float, help="needed for --speed and for times in events")
    p.add_argument("--power-frequency-hz", type=float, help="AC frequency (gateway default 50)")
    p.add_argument("--model")
    p.add_argument("--version")
    p.add_argument("--threshold", type=float)
    p.add_argument("--block-samples", type=int, help="the gateway's re-blocking stride for this stream")
    p.add_argument("--chunk-samples", type=int, default=8192, help="samples per binary frame")
    p.add_argument(
        "--speed", default="max", help="'max' (default) or a multiple of real time (1 = real time)"
    )
    p.add_argument("--loop", type=int, default=1, help="replay the signal this many times back to back")
    p.add_argument("--stats", action="store_true", help="also print the gateway's periodic stats")
    p.add_argument("--json", action="store_true", help="print messages as JSON lines")
    p.add_argument("--api-key", default=os.environ.get("PDGW_API_KEY"), help="default: $PDGW_API_KEY")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        speed = None if args.speed == "max" else float(args.speed)
        if speed is not None and (speed <= 0 or not args.sampling_rate_hz):
            raise ValueError("--speed needs a positive number and --sampling-rate-hz")
        if args.chunk_samples < 1 or args.loop < 1:
            raise ValueError("--chunk-samples and --loop must be >= 1")
        signal = load_signal(args.file, args.row, args.dtype)
    except (OSError, ValueError, IndexError) as e:
        print(f"pd-gateway stream: {e}", file=sys.stderr)
        return 2
    open_msg: dict[str, Any] = {
        "type": "open",
        "channel": args.channel or args.file.stem,
        "dtype": signal.dtype.name,
    }
    for key in ("sampling_rate_hz", "power_frequency_hz", "model", "version", "threshold", "block_samples"):
        if getattr(args, key) is not None:
            open_msg[key] = getattr(args, key)

    def show(msg: dict[str, Any]) -> None:
        if msg["type"] == "stats" and not args.stats:
            return
        print(json.dumps(msg) if args.json else _format(msg), flush=True)

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        result = asyncio.run(
            replay(
                args.url,
                signal,
                open_msg,
                chunk_samples=args.chunk_samples,
                speed=speed,
                loops=args.loop,
                headers=headers,
                on_message=show,
            )
        )
    except (OSError, ConnectionClosed, TimeoutError) as e:
        print(f"pd-gateway stream: cannot stream to {args.url}: {e}", file=sys.stderr)
        return 1
    if result.end is None or result.close_code != 1000:
        print(f"pd-gateway stream: closed {result.close_code}: {result.close_reason}", file=sys.stderr)
        return 1
    rate = result.sent_samples / max(result.seconds, 1e-9)
    print(
        f"# {result.sent_samples} samples in {result.seconds:.2f} s ({rate:,.0f} samples/s), "
        f"{len(result.events)} events, max {result.max_behind_s:.3f} s behind schedule",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
