"""WS /v1/stream end to end against the real Triton and the real Redis (no mocks).

The stream re-blocks the signal into fixed blocks, so the events must be identical whatever the chunk size;
against /v1/detect on the whole signal they match one to one, boundaries within a sample on these signals
(each block estimates its own robust scale and carriers, so weak edges of other signals can move a few
samples: see README "Streams").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from starlette.websockets import WebSocketDisconnect

from export.sim.simulator import dataset_item
from gateway import stream_client
from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from gateway.services.events import events_key
from tests.integration.conftest import make_settings
from tests.integration.mgmt_helpers import live_server

pytestmark = pytest.mark.integration

RAW = {"content-type": "application/octet-stream"}
FS = 40e6


def simulated(n: int, index: int) -> np.ndarray:
    return np.asarray(dataset_item(7, index, n_samples=n).signal[:n], dtype=np.float32)


@pytest.fixture(scope="module")
def gw(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> Iterator[TestClient]:
    settings = make_settings(
        triton.grpc_url,
        redis_url,
        model_repo,
        STREAM_MAX_FRAME_BYTES=1024 * 1024,
        STREAM_IDLE_TIMEOUT_S=2.0,
        STREAM_STATS_INTERVAL_S=0.5,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def stream(
    client: TestClient, x: np.ndarray, chunk: int, channel: str, **open_kw: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Stream `x` in chunks of `chunk` samples; the events and the final 'end' message."""
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps({"type": "open", "channel": channel, "sampling_rate_hz": FS, **open_kw}))
        opened = ws.receive_json()
        assert opened["type"] == "opened", opened
        dtype = np.dtype({"float32": "<f4", "int16": "<i2", "int8": "i1"}[opened["dtype"]])
        data = x.astype(dtype)
        for i in range(0, data.size, chunk):
            ws.send_bytes(data[i : i + chunk].tobytes())
        ws.send_text('{"type": "end"}')
        events = []
        while (msg := ws.receive_json())["type"] != "end":
            if msg["type"] == "event":
                events.append(msg)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1000
    return events, msg


def detect_whole(client: TestClient, x: np.ndarray, **params: Any) -> list[dict[str, Any]]:
    resp = client.post(
        "/v1/detect", content=x.tobytes(), headers=RAW, params={"sampling_rate_hz": FS, **params}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["results"][0]["regions"]


def spans(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(e["start"], e["end"]) for e in events]


def assert_match_within_one(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want), (spans(got), spans(want))
    for g, w in zip(got, want, strict=True):
        assert abs(g["start"] - w["start"]) <= 1 and abs(g["end"] - w["end"]) <= 1, (g, w)


Run = tuple[list[dict[str, Any]], dict[str, Any]]  # (events, end message)


@pytest.fixture(scope="module")
def invariance_runs(gw: TestClient) -> tuple[np.ndarray, dict[int, Run]]:
    x = simulated(800_000, index=11)  # 12 PD pulses at 20 dB, opposite-polarity pairs, ~4 AC cycles
    return x, {chunk: stream(gw, x, chunk, f"inv-{chunk}") for chunk in (997, 8192, 100_000)}


def test_chunking_invariance(invariance_runs: Any) -> None:
    x, runs = invariance_runs
    first = runs[997][0]
    assert first, "the test signal must contain PD"
    for chunk, (events, end) in runs.items():
        assert [{k: v for k, v in e.items() if k != "channel"} for e in events] == [
            {k: v for k, v in e.items() if k != "channel"} for e in first
        ], chunk  # identical, not just close: the blocks do not depend on the chunks
        assert end["samples_received"] == end["samples_final"] == x.size
        assert end["events"] == len(events)
    for e in first:
        assert e["t_s"] == pytest.approx(e["start"] / FS)


def test_stream_equals_detect_on_the_whole_signal(gw: TestClient, invariance_runs: Any) -> None:
    x, runs = invariance_runs
    first, want = runs[997][0], detect_whole(gw, x)
    assert want, "the whole signal's /v1/detect finds its PD"
    assert_match_within_one(first, want)
    for e, w in zip(first, want, strict=True):
        assert (e["phase_deg"] is None) == (w["phase_deg"] is None)


def test_one_sample_chunks(gw: TestClient) -> None:
    """Chunks of 1 sample on a shorter signal (40k frames), with small blocks so it spans several. A stream
    is thresholded as a long signal, a 40k /v1/detect as a short one: both are given one threshold here."""
    x = simulated(40_000, index=3)
    one, end = stream(gw, x, 1, "inv-1", block_samples=8192, threshold=0.5)
    assert end["blocks"] > 3
    bulk, _ = stream(gw, x, 8192, "inv-1b", block_samples=8192, threshold=0.5)
    assert one == [{**e, "channel": "inv-1"} for e in bulk]
    assert_match_within_one(one, detect_whole(gw, x, threshold=0.5))


def test_int16_stream(gw: TestClient) -> None:
    # One block holds the whole signal: this checks the int16 frames, not the re-blocking (tested above).
    x = np.round(simulated(50_000, index=3) * 1000.0).astype(np.int16)
    events, _ = stream(gw, x, 4096, "int16", dtype="int16", block_samples=65_536, threshold=0.5)
    resp = gw.post(
        "/v1/detect",
        content=_npy(x),
        headers={"content-type": "application/x-npy"},
        # as the stream declares it: the same AC fit and phase rule; one threshold (a stream is long)
        params={"sampling_rate_hz": FS, "threshold": 0.5},
    )
    assert_match_within_one(events, resp.json()["results"][0]["regions"])


def _npy(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_events_reach_redis_consumer_group_exactly_once(gw: TestClient, redis_url: str) -> None:
    channel = "cg-test"
    r = Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    key = events_key(channel)
    r.delete(key)
    r.xgroup_create(key, "alerting", id="0", mkstream=True)
    events, _ = stream(gw, simulated(300_000, index=3), 65_536, channel, block_samples=65_536)
    assert len(events) > 5
    seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    idle_rounds = 0
    while idle_rounds < 2:  # alternate the two readers until both find nothing new
        idle_rounds += 1
        for consumer in ("a", "b"):
            reply = r.xreadgroup("alerting", consumer, {key: ">"}, count=3)
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    ev = json.loads(fields["event"])
                    seen[consumer].append((ev["start"], ev["end"]))
                    r.xack(key, "alerting", entry_id)
                    idle_rounds = 0
    assert seen["a"] and seen["b"], "both readers must have received some events"
    got = seen["a"] + seen["b"]
    assert len(got) == len(set(got)) == len(events)
    assert sorted(got) == spans(events)
    assert r.xpending(key, "alerting")["pending"] == 0
    r.close()


def _closed(ws: Any) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_json()
    return closed.value


BAD = {
    "wrong_dtype_size": (
        {"type": "open", "channel": "bad", "dtype": "int16"},
        ("bytes", b"\x00\x01\x02"),
        1007,
        "not a whole number",
    ),
    "oversize_frame": (
        {"type": "open", "channel": "bad"},
        ("bytes", b"\x00" * (1024 * 1024 + 4)),
        1009,
        "exceeds",
    ),
    "text_frame": ({"type": "open", "channel": "bad"}, ("text", "0.1, 0.2, 0.3"), 1003, "text frame"),
    "nan": ({"type": "open", "channel": "bad"}, ("bytes", np.array([np.nan], "<f4").tobytes()), 1007, "NaN"),
    "no_open_message": (None, ("bytes", b"\x00" * 8), 1008, "no open message"),
    "bad_dtype": ({"type": "open", "channel": "bad", "dtype": "float64"}, None, 4400, "'dtype'"),
    "bad_channel": ({"type": "open", "channel": "a b"}, None, 4400, "'channel'"),
    "unknown_version": ({"type": "open", "channel": "bad", "version": "99"}, None, 4404, "version"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_closes_that_stream_only(gw: TestClient, case: str) -> None:
    open_msg, frame, code, reason = BAD[case]
    x = simulated(120_000, index=3)
    good_open = {"type": "open", "channel": "good", "sampling_rate_hz": FS, "block_samples": 16_384}
    with gw.websocket_connect("/v1/stream") as good:
        good.send_text(json.dumps(good_open))
        assert good.receive_json()["type"] == "opened"
        good.send_bytes(x[:60_000].tobytes())
        with gw.websocket_connect("/v1/stream") as bad:
            if open_msg is not None:
                bad.send_text(json.dumps(open_msg))
                if code < 4400:
                    assert bad.receive_json()["type"] == "opened"
            if frame is not None:
                kind, payload = frame
                bad.send_bytes(payload) if kind == "bytes" else bad.send_text(payload)
            closed = _closed(bad)
        assert closed.code == code and reason in closed.reason, (closed.code, closed.reason)
        good.send_bytes(x[60_000:].tobytes())
        good.send_text('{"type": "end"}')
        events = []
        while (msg := good.receive_json())["type"] != "end":
            events += [msg] if msg["type"] == "event" else []
    want, _ = stream(gw, x, 7000, "good-ref", block_samples=16_384)
    assert [{**e, "channel": "x"} for e in events] == [{**e, "channel": "x"} for e in want]


def test_idle_stream_is_closed(gw: TestClient) -> None:
    with gw.websocket_connect("/v1/stream?channel=idle") as ws:
        assert ws.receive_json()["type"] == "opened"
        closed = _closed(ws)
    assert closed.code == 4408 and "idle" in closed.reason


def test_stats_and_metrics(gw: TestClient) -> None:
    x = simulated(60_000, index=3)
    with gw.websocket_connect(f"/v1/stream?channel=stats&sampling_rate_hz={FS}&block_samples=8192") as ws:
        assert ws.receive_json()["type"] == "opened"
        ws.send_bytes(x.tobytes())
        msg = ws.receive_json()
        while msg["type"] != "stats" or msg["samples_received"] < x.size:
            msg = ws.receive_json()
        assert msg["blocks"] >= 1 and msg["samples_per_s"] > 0
        ws.send_text('{"type": "end"}')
        while ws.receive_json()["type"] != "end":
            pass
    text = gw.get("/metrics").text
    for name in (
        "pdgw_streams_open",
        "pdgw_stream_samples_total",
        "pdgw_stream_events_total",
        "pdgw_stream_buffered_samples",
        "pdgw_stream_lag_seconds_bucket",
        'pdgw_stream_closed_total{reason="idle"}',
        "pdgw_jobs_queued",
        "pdgw_jobs_running",
        'pdgw_job_duration_seconds_bucket{le="0.1",state="succeeded"}',
    ):
        assert name in text, name


def test_cli_replays_a_file_through_a_real_server_with_backpressure(
    triton: EmbeddedTriton,
    redis_url: str,
    model_repo: Path,
    gw: TestClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`pd-gateway stream` against uvicorn; a 64 KiB queue makes the full-speed sender wait, nothing lost."""
    x = simulated(300_000, index=3)
    path = tmp_path / "signal.npy"
    np.save(path, x)
    settings = make_settings(triton.grpc_url, redis_url, model_repo, STREAM_BUFFER_BYTES=64 * 1024)
    with live_server(create_app(settings)) as base:
        url = base.replace("http://", "ws://") + "/v1/stream"
        args = [str(path), "--url", url, "--channel", "cli", "--chunk-samples", "5000", "--json"]
        assert stream_client.main([*args, "--sampling-rate-hz", str(FS), "--block-samples", "65536"]) == 0
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert (
            stream_client.main(
                [str(path), "--url", url, "--channel", "bad", "--dtype", "int16", "--block-samples", "0"]
            )
            == 1
        )
        assert "4400" in capsys.readouterr().err
    events = [m for m in printed if m["type"] == "event"]
    (end,) = [m for m in printed if m["type"] == "end"]
    assert end["samples_final"] == x.size  # every sample processed
    want, _ = stream(gw, x, 8192, "cli", block_samples=65_536)
    assert events == want


def test_stream_works_when_redis_is_down(
    triton: EmbeddedTriton, model_repo: Path, gw: TestClient, private_redis: Any
) -> None:
    """Redis stopped under a running gateway: events still reach the WebSocket, the misses are counted."""
    x = simulated(60_000, index=3)
    want, _ = stream(gw, x, 8192, "no-redis", block_samples=16_384)
    settings = make_settings(triton.grpc_url, private_redis.url, model_repo)
    with TestClient(create_app(settings)) as other:
        private_redis.stop()
        got, _ = stream(other, x, 8192, "no-redis", block_samples=16_384)
        metrics_text = other.get("/metrics").text
        job = other.post("/v1/jobs", json={"signal": [0.0, 1.0, 0.5]})
    assert got == want
    (line,) = [li for li in metrics_text.splitlines() if li.startswith("pdgw_stream_redis_errors_total ")]
    assert float(line.split()[1]) >= 1
    assert job.status_code == 503 and job.json()["error"]["code"] == "upstream_unavailable"
