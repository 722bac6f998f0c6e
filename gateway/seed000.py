"""Seed 000 compatibility: its /test-text JSON shape, and what replaces its environment variables.

Seed 000 (the PD Inference API this gateway replaces) answered `GET /test-text` with
`total_samples_processed`, `valid_samples_found` and `results[]` for the valid samples only, each with
`sample_index`, `num_regions_detected`, `regions[{start, end, duration}]` and `signal_stats`.
docs/migrating-from-seed-000.md says, field by field, what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Seed 000's variables and what replaces each in pd-gateway (Settings maps WORKER_THREADS).
SEED000_ENV: dict[str, str] = {
    "WORKER_THREADS": (
        "sets MAX_CONCURRENT_TRITON_CALLS (inference calls in flight per gateway process) unless that is "
        "set; rename it to MAX_CONCURRENT_TRITON_CALLS"
    ),
    "MAX_BATCH_SIZE": (
        "ignored: windows go to Triton in batches of the model's own max_batch_size (config.pbtxt, set by "
        "export_onnx --max-batch-size) and Triton's dynamic batcher merges requests"
    ),
    "TORCH_NUM_THREADS": (
        "ignored: the gateway runs no torch; the model's threads are set per model in config.pbtxt "
        "(export_onnx), Triton runs it"
    ),
    "OMP_NUM_THREADS": (
        "not read by the gateway: it only limits OpenMP threads of native libraries in this process; the "
        "model's threads are set in config.pbtxt"
    ),
}


def seed000_env_notes(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, what replaces it) for each of seed 000's variables set in `environ`."""
    return [(name, note) for name, note in SEED000_ENV.items() if environ.get(name, "").strip()]


def log_seed000_env(environ: Mapping[str, str]) -> None:
    """One deprecation warning at start-up per seed 000 variable that is set."""
    for name, note in seed000_env_notes(environ):
        log.warning("seed000_env_var_deprecated", variable=name, replacement=note)


def seed_test_text_body(detect_result: Mapping[str, Any], data: str, profile: str) -> dict[str, Any]:
    """Seed 000's /test-text body from a /v1/detect result: valid samples only, seed 000's fields.

    Top-level extras (`model`, `version`, `profile`, `data`) are ignored by seed 000's clients.
    """
    results = [
        {
            "sample_index": r["sample_index"],
            "num_regions_detected": r["num_regions_detected"],
            "regions": [
                {"start": g["start"], "end": g["end"], "duration": g["duration"]} for g in r["regions"]
            ],
            "signal_stats": dict(r["signal_stats"]),
        }
        for r in detect_result["results"]
        if r["valid"]
    ]
    return {
        "total_samples_processed": detect_result["total_samples_processed"],
        "valid_samples_found": detect_result["valid_samples_found"],
        "results": results,
        "model": detect_result["model"],
        "version": detect_result["version"],
        "profile": profile,
        "data": data,
    }
