"""Evaluation CLI on a handful of held-out signals with an untrained tiny model (keys, files, buckets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from export import evaluate
from export.export_onnx import to_onnx_bytes
from export.model import UNet1D
from export.report import card_metrics
from gateway.dsp.params import DEFAULT_PARAMS


def test_heldout_is_deterministic_and_disjoint_from_training_seeds() -> None:
    a, b = evaluate.heldout_item(3), evaluate.heldout_item(3)
    assert (a.signal == b.signal).all() and a.events == b.events
    assert evaluate.HELDOUT_SEED > 10_000  # training seeds are small ints
    keys = evaluate.bucket_keys(a)
    assert any(k.startswith("snr:") for k in keys) and any(k.startswith("regime:") for k in keys)
    assert any(k.startswith("interference:") for k in keys) and ("pd:free" in keys) != ("pd:present" in keys)


def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    torch.manual_seed(0)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(to_onnx_bytes(UNet1D(widths=(4, 8), dilations=(1, 2)).eval(), 1024, 17))
    proc = tmp_path / "p.json"
    proc.write_text(json.dumps(DEFAULT_PARAMS.to_dict()))
    out = tmp_path / "eval"
    argv = ["--onnx", str(onnx_path), "--processing", str(proc), "--out", str(out)]
    argv += ["--n-signals", "5", "--n-vsb-full", "0", "--threads", "1", "--ceiling"]
    assert evaluate.main(argv) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert set(report["detectors"]) == {"model", "model_seedpp", "baseline"}
    assert report["collar"] == evaluate.COLLAR and report["heldout"]["n_signals"] == 5
    assert report["processing"] == DEFAULT_PARAMS.to_dict()
    for summary in report["detectors"].values():
        assert summary["all"]["n_signals"] == 5
        assert {"precision", "recall", "f1", "iou", "tp", "fp", "fn"} <= set(summary["all"])
        assert any(k.startswith("snr:") for k in summary)
        assert any(k.startswith("interference:") for k in summary)
    md = Path(f"{out}.md").read_text()
    assert "| model |" in md and "| baseline |" in md and "| model_seedpp |" in md
    genie, blind = report["ceiling"], report["ceiling_blind"]
    assert genie["know_shapes"] and not blind["know_shapes"]
    assert genie["buckets"]["all"]["n_true"] == blind["global_buckets"]["all"]["n_true"]
    assert "## Ceiling" in md and "shape-blind, one T" in md

    # The model card's metrics come from this report (and a validation one) through export.report.
    metrics = card_metrics(report, report)
    assert metrics["event_f1"] == round(report["detectors"]["model"]["all"]["f1"], 4)
    assert metrics["heldout_signals"] == 5 and metrics["validation"]["signals"] == 5
    assert set(metrics["ceiling_shape_blind_one_threshold"]) == {"f1", "precision", "recall", "threshold"}
    assert {"baseline", "model_with_seed_preprocessing", "ceiling_genie_matched_filter"} <= set(metrics)
    with pytest.raises(ValueError, match="no 'model'"):
        card_metrics({**report, "detectors": {"baseline": report["detectors"]["baseline"]}})
