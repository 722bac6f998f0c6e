"""`pd-gateway bench --rounds K`: interleaved rounds merge into one row per path, with every round kept."""

from __future__ import annotations

from export.bench import merge_rounds, ratios
from export.bench_report import render_markdown


def _round(floor: float, direct: float, gateway: float, seed: float, r: int) -> list[dict]:
    return [
        {"workload": "800k", "path": "floor", "clients": 1, "signals_per_s": floor},
        {"workload": "800k", "path": "direct_triton", "clients": 4, "signals_per_s": direct},
        {
            "workload": "800k",
            "path": "gateway_npy",
            "clients": 4,
            "signals_per_s": gateway,
            "triton": {"r": r},
        },
        {"workload": "800k", "path": "seed_algorithm", "clients": 1, "signals_per_s": seed},
    ]


def test_rounds_merge_into_the_median_round_with_each_rounds_ratio() -> None:
    rows = _round(5, 4, 3, 1, 0) + _round(2, 2, 1.5, 0.6, 1) + _round(4, 3, 2.5, 1.25, 2)
    merged = merge_rounds(rows)
    assert [r["path"] for r in merged] == ["floor", "direct_triton", "gateway_npy", "seed_algorithm"]
    floor, _, gateway, seed = merged
    assert floor["signals_per_s"] == 4 and floor["rounds_signals_per_s"] == [5, 2, 4]
    assert gateway["triton"] == {"r": 2}  # the median round's row, whole: its Triton statistics with it
    assert "rounds_gateway_ratio" not in gateway
    assert seed["rounds_gateway_ratio"] == [3.0, 2.5, 2.0]  # the same round's rates, not the medians'
    assert merge_rounds(rows[:4]) == rows[:4]  # one round: unchanged
    # the reported ratio is the median of the within-round ratios, not median gateway / median seed
    assert ratios(merged)["800k"]["seed_algorithm@1"] == 2.5
    assert ratios(merged)["800k"]["floor@1"] == 0.62  # rounds 0.6, 0.75, 0.62


def test_the_report_shows_the_rounds() -> None:
    rows = merge_rounds(_round(5, 4, 3, 1, 0) + _round(2, 2, 1.5, 0.6, 1) + _round(4, 3, 2.5, 1.25, 2))
    report = {
        "command": "pd-gateway bench --rounds 3",
        "model": "m",
        "seconds_per_row": 6,
        "rounds": 3,
        "machine": {"cpus": 2, "cpu_model": "x", "python": "3.11", "loadavg_1m_at_start": 0.1},
        "loadavg_1m_at_end": 1.0,
        "rows": rows,
        "ratios_gateway_over": {"800k": {"seed_algorithm@1": 2.5}},
    }
    text = render_markdown(report)
    assert "ran 3 times, interleaved" in text
    assert "2.0–3.0× (rounds: 3.0×, 2.5×, 2.0×)" in text
