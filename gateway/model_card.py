"""The model card stored next to each version's ONNX file: STAC MLM extension fields (`mlm:*`) plus ours
(`pd:*`: processing parameters, training data, evaluation metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.repository import INPUT_NAME, OUTPUT_NAME

_PRE = "gateway.dsp.processing: preprocess_batch, make_windows"
_POST = "gateway.dsp.processing: stitch; gateway.dsp.regions: find_regions"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def model_card(
    *,
    name: str,
    window: int,
    total_parameters: int,
    framework_version: str,
    opset: int,
    processing: Mapping[str, Any],
    pretrained: bool = False,
    pretrained_source: str | None = None,
    training_data: str | Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A STAC MLM-style card (`mlm:*` keys from the MLM extension, `pd:*` ours); `extra` adds/overrides."""
    spec = {"shape": [-1, 1, int(window)], "dim_order": ["batch", "channel", "time"], "data_type": "float32"}
    return {
        "mlm:name": name,
        "mlm:architecture": "UNet1D (dilated encoder, SAGAN self-attention bottleneck)",
        "mlm:tasks": ["segmentation"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": framework_version,
        "mlm:total_parameters": int(total_parameters),
        "mlm:memory_size": 4 * int(total_parameters),  # float32 weights
        "mlm:pretrained": pretrained,
        "mlm:pretrained_source": pretrained_source,
        "mlm:batch_size_suggestion": 64,
        "mlm:input": [{"name": INPUT_NAME, "bands": [], "input": spec, "pre_processing_function": _PRE}],
        "mlm:output": [
            {
                "name": OUTPUT_NAME,
                "tasks": ["segmentation"],
                "result": spec,
                "post_processing_function": _POST,
                "classification:classes": [{"value": 1, "name": "partial_discharge"}],
            }
        ],
        "description": "Sample-wise partial-discharge probability for 1-D signal windows.",
        "created": utc_now(),
        "pd:training_data": training_data,
        "pd:metrics": dict(metrics or {}),
        "pd:processing": dict(processing),
        "pd:onnx_opset": int(opset),
        **extra,
    }
