"""`pd-gateway bench --quick`: the whole benchmark runs end to end (Triton, gateway, every quick row) and
writes its JSON, Markdown and plot. No timing is asserted: only that every row ran and was recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export import bench

pytestmark = pytest.mark.integration


def test_quick_bench_writes_every_report(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--seconds", "0.5", "--rounds", "2", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    paths = [r["path"] for r in report["rows"]]
    assert {"floor", "direct_triton", "gateway_npy", "seed_algorithm"} <= set(paths)
    assert len(paths) == len(set(paths))  # two interleaved rounds, merged into one row per path
    seed = next(r for r in report["rows"] if r["path"] == "seed_algorithm")
    assert len(seed["rounds_signals_per_s"]) == len(seed["rounds_gateway_ratio"]) == 2
    assert all(r["signals"] >= 1 for r in report["rows"])
    gateway = next(r for r in report["rows"] if r["path"] == "gateway_npy")
    assert gateway["triton"]["windows"] >= gateway["signals"] * gateway["windows_per_signal"] > 0
    assert "gateway_npy@8" not in report["ratios_gateway_over"]["7920"]  # the row compared against
    assert "direct_triton@8" in report["ratios_gateway_over"]["7920"]
    md = out.with_suffix(".md").read_text()
    assert "7,920-sample" in md and "seed 000" in md and "round by round" in md
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
