"""Upload validation (pure): each broken model is refused with a reason an operator can act on."""

from __future__ import annotations

import pytest
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2 as mc

from gateway.dsp.params import DEFAULT_PARAMS
from gateway.errors import InvalidInput, InvalidModel
from gateway.repository import build_config
from gateway.services.validation import Contract, merge_processing, validate_onnx
from tests.onnx_factory import external_data_model, nan_model, tiny_model

CONTRACT = Contract("signal", "probability")


@pytest.mark.parametrize("window", ["length", 1024])
def test_valid_model_passes_with_a_report(window: int | str) -> None:
    report = validate_onnx(tiny_model(window), CONTRACT, DEFAULT_PARAMS)
    assert report.opset == 17 and report.total_parameters == 2
    assert report.input_shape == ["N", 1, window]
    assert report.dry_run["windows"] == 2 and 0.0 <= report.dry_run["min"] <= report.dry_run["max"] <= 1.0


BROKEN = [
    ("empty", b"", "empty"),
    ("not protobuf", b"\x08\x07garbage\xff", "not a valid ONNX file"),
    ("truncated", tiny_model()[:40], "not a valid ONNX file"),
    ("other window", tiny_model(512), "has length 512 but the processing window is 1024"),
    ("fixed batch", tiny_model(batch=4), "fixed batch axis"),
    ("two channels", tiny_model(channels=2), "2 channels"),
    ("input name", tiny_model(input_name="x"), "input is named 'x'"),
    ("output name", tiny_model(output_name="y"), "output is named 'y'"),
    ("float64", tiny_model(elem_type=TensorProto.DOUBLE), "dtype DOUBLE"),
    ("logits", tiny_model(sigmoid=False), "not within [0, 1]"),
    ("NaN output", nan_model(), "NaN or Inf"),
    ("external data", external_data_model(), "external tensor data"),
]


@pytest.mark.parametrize(("case", "data", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_models_are_refused(case: str, data: bytes, message: str) -> None:
    with pytest.raises(InvalidModel) as err:
        validate_onnx(data, CONTRACT, DEFAULT_PARAMS)
    assert message in err.value.message and err.value.status_code == 422


def test_contract_comes_from_the_config() -> None:
    config = build_config("pd_unet1d", window=1024)
    assert Contract.from_config(config) == CONTRACT
    config.input[0].data_type = mc.TYPE_FP16
    with pytest.raises(InvalidInput, match="FP32"):
        Contract.from_config(config)


def test_processing_overrides_the_latest_version() -> None:
    merged = merge_processing({"window": 2048, "hop": 1792}, DEFAULT_PARAMS.to_dict())
    assert (merged.window, merged.hop, merged.halo) == (2048, 1792, DEFAULT_PARAMS.halo)
    assert merge_processing(None, DEFAULT_PARAMS.to_dict()) == DEFAULT_PARAMS
    with pytest.raises(InvalidInput, match="unknown processing"):
        merge_processing({"windw": 1}, DEFAULT_PARAMS.to_dict())
    with pytest.raises(InvalidInput, match="hop must be"):
        merge_processing({"hop": 5000}, DEFAULT_PARAMS.to_dict())
    with pytest.raises(InvalidInput, match="no earlier version"):
        merge_processing(None, None)
