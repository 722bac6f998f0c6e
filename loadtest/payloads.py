"""Request bodies and response checks for the pd-gateway load test.

No Locust import here, so the bodies and checks can be tested alone (tests/unit/test_deploy_artifacts.py
decodes every body with the gateway's own decoder). Signals come from the project's one simulator,
`export.sim.simulator`, drawn from a fixed seed: two runs send the same bytes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np

from export.sim.simulator import SimulatedSignal, dataset_item
from gateway.client import encode_signals

SEED_SAMPLES = 7920  # the seed data's signal length (seed regime of the simulator)
VSB_SAMPLES = 800_000  # one 20 ms cycle at 40 MHz (VSB regime)
NPY_BATCH = 8  # signals per .npy request, like a seed file
DETECT_PATH = "/v1/detect"


@dataclass(frozen=True)
class Payload:
    """One ready-to-send /v1/detect request."""

    kind: str  # "json" | "npy" | "raw"
    body: bytes
    content_type: str
    params: dict[str, str]  # query string (options of bodies that cannot carry them)
    n_signals: int
    n_samples: list[int]  # per signal

    @property
    def path(self) -> str:
        """/v1/detect with this payload's query string."""
        return DETECT_PATH + (f"?{urlencode(self.params)}" if self.params else "")


def _query(extra: dict[str, str] | None, **options: float) -> dict[str, str]:
    params = {k: f"{v:.10g}" for k, v in options.items()}
    params.update(extra or {})
    return params


def json_payload(sim: SimulatedSignal, extra: dict[str, str] | None = None) -> Payload:
    """{"signal": [...], "sampling_rate_hz": fs, ...}: the options travel in the body."""
    doc = {
        "signal": np.round(sim.signal, 3).tolist(),
        "sampling_rate_hz": sim.fs_hz,
        "power_frequency_hz": sim.config.power_freq_hz,
    }
    return Payload(
        "json",
        json.dumps(doc, separators=(",", ":")).encode(),
        "application/json",
        dict(extra or {}),
        1,
        [sim.signal.size],
    )


def npy_payload(sims: Sequence[SimulatedSignal], extra: dict[str, str] | None = None) -> Payload:
    """A [n, 7920] float64 .npy file, like the seed data: one signal per row, no sampling rate.

    Encoded as the Python client sends signals (`gateway.client.encode_signals`)."""
    body, ctype = encode_signals(np.stack([s.signal for s in sims]).astype(np.float64))
    sizes = [s.signal.size for s in sims]
    return Payload("npy", body, ctype, dict(extra or {}), len(sims), sizes)


def raw_payload(sim: SimulatedSignal, extra: dict[str, str] | None = None) -> Payload:
    """Little-endian float32 samples; the sampling rate goes in the query string."""
    body = sim.signal.astype("<f4").tobytes()
    params = _query(extra, sampling_rate_hz=sim.fs_hz, power_frequency_hz=sim.config.power_freq_hz)
    return Payload("raw", body, "application/octet-stream", params, 1, [sim.signal.size])


@dataclass
class Pool:
    """Pre-built payloads per kind, handed out round-robin (generation stays out of the timed loop)."""

    payloads: dict[str, list[Payload]]
    _cycles: dict[str, Iterator[Payload]] = field(default_factory=dict, repr=False)

    def next(self, kind: str) -> Payload:
        if kind not in self._cycles:
            self._cycles[kind] = itertools.cycle(self.payloads[kind])
        return next(self._cycles[kind])

    def __len__(self) -> int:
        return sum(len(v) for v in self.payloads.values())


def build_pool(
    seed: int = 0,
    *,
    n_json: int = 16,
    n_npy: int = 4,
    n_raw: int = 2,
    extra: dict[str, str] | None = None,
) -> Pool:
    """Simulate the signals once: seed-regime signals for JSON and .npy, VSB-regime ones for raw float32.

    Item indices do not overlap between kinds, so no two requests carry the same signal.
    """
    idx = itertools.count()
    json_items = [json_payload(dataset_item(seed, next(idx), regime="seed"), extra) for _ in range(n_json)]
    npy_items = [
        npy_payload([dataset_item(seed, next(idx), regime="seed") for _ in range(NPY_BATCH)], extra)
        for _ in range(n_npy)
    ]
    raw_items = [raw_payload(dataset_item(seed, next(idx), regime="vsb"), extra) for _ in range(n_raw)]
    return Pool({"json": json_items, "npy": npy_items, "raw": raw_items})


def check_detect(doc: Any, payload: Payload) -> str | None:
    """Why a /v1/detect answer is wrong for `payload`, or None when it is consistent."""
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    missing = [k for k in ("model", "version", "results", "total_regions", "windows") if k not in doc]
    if missing:
        return f"missing fields: {', '.join(missing)}"
    results = doc["results"]
    if not isinstance(results, list) or len(results) != payload.n_signals:
        got = len(results) if isinstance(results, list) else type(results).__name__
        return f"expected {payload.n_signals} results, got {got}"
    if not isinstance(doc["windows"], int) or doc["windows"] < 0:
        return f"bad windows: {doc['windows']!r}"
    total = 0
    for i, (item, n) in enumerate(zip(results, payload.n_samples, strict=True)):
        if item.get("sample_index") != i or not isinstance(item.get("valid"), bool):
            return f"result {i}: bad sample_index or valid"
        regions = item.get("regions")
        if not isinstance(regions, list) or item.get("num_regions_detected") != len(regions):
            return f"result {i}: num_regions_detected does not match regions"
        if any(not 0 <= r.get("start", -1) < r.get("end", -1) <= n for r in regions):
            return f"result {i}: a region lies outside [0, {n})"
        total += len(regions)
    if doc["total_regions"] != total:
        return f"total_regions {doc['total_regions']} != {total} regions listed"
    return None


def check_ready(status: int, doc: Any) -> str | None:
    """Why a /readyz answer is not "ready", or None."""
    if status != 200:
        return f"not ready (HTTP {status}): {doc}"
    if not isinstance(doc, dict) or doc.get("status") != "ready":
        return f"unexpected body: {doc}"
    return None
