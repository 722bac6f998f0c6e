"""The Python onnxruntime backend's execute() on mixed batches Triton's core would never build.

Triton rejects a wrong shape before the backend sees it, so the backend's own per-request checks
and its split/fallback logic are tested here with a stand-in for the stub's `pb_utils` module.
The real server is exercised in tests/integration/test_embedded_triton.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

BACKEND = Path(__file__).parents[2] / "gateway" / "embedded" / "backend" / "onnxruntime" / "model.py"
W = 16


class _Error:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message, self.code = message, code


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, output_tensors: list[_Tensor] | None = None, error: _Error | None = None) -> None:
        self.output_tensors, self.error = output_tensors or [], error


def _fake_pb_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.TritonError = _Error  # type: ignore[attr-defined]
    mod.Tensor = _Tensor  # type: ignore[attr-defined]
    mod.InferenceResponse = _Response  # type: ignore[attr-defined]
    mod.get_input_tensor_by_name = (  # type: ignore[attr-defined]
        lambda req, name: _Tensor(name, req[name]) if name in req else None
    )
    mod.triton_string_to_numpy = {"TYPE_FP32": np.float32}.__getitem__  # type: ignore[attr-defined]
    return mod


@pytest.fixture()
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location("ort_backend_under_test", BACKEND)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"])],  # ONNX names differ from the config's on purpose
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, W])],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 9
    (tmp_path / "1").mkdir()
    onnx.save(onnx_model, tmp_path / "1" / "model.onnx")
    config = {
        "name": "m",
        "max_batch_size": 8,
        "input": [{"name": "signal", "data_type": "TYPE_FP32", "dims": ["1", "-1"]}],
        "output": [{"name": "probability", "data_type": "TYPE_FP32", "dims": ["1", "-1"]}],
        "parameters": {
            "intra_op_thread_count": {"string_value": "1"},
            "session.intra_op.allow_spinning": {"string_value": "0"},
            "pd_processing.v1": {"string_value": "{}"},  # not an ORT session entry: ignored
        },
        "optimization": {"graph": {"level": 1}},
    }
    args = {"model_repository": str(tmp_path), "model_version": "1", "model_name": "m"}
    instance = module.TritonPythonModel()
    instance.initialize({**args, "model_config": json.dumps(config), "model_instance_kind": "CPU"})
    yield instance
    instance.finalize()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_options_from_config(model: Any) -> None:
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert (model.input_name, model.ort_input) == ("signal", "x")


def test_mixed_batch_one_response_per_request_in_order(model: Any) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 1, W)).astype(np.float32)
    b = rng.normal(size=(3, 1, W)).astype(np.float32)
    requests = [
        {"signal": a},
        {"signal": a.astype(np.float64)},  # wrong dtype
        {},  # input missing
        {"signal": np.zeros((9, 1, W), np.float32)},  # over max_batch_size
        {"signal": b},
    ]
    responses = model.execute(requests)
    assert len(responses) == len(requests)
    assert [r.error is None for r in responses] == [True, False, False, False, True]
    assert all(r.error.code == "INVALID_ARG" for r in responses[1:4])
    np.testing.assert_allclose(responses[0].output_tensors[0].array, _sigmoid(a), atol=1e-6)
    np.testing.assert_allclose(responses[4].output_tensors[0].array, _sigmoid(b), atol=1e-6)
    assert responses[4].output_tensors[0].name == "probability"


def test_ort_failure_only_fails_the_offending_request(model: Any) -> None:
    good = np.ones((1, 1, W), np.float32)
    bad = np.ones((1, 1, W + 1), np.float32)  # passes the config's -1 dim, rejected by ORT
    responses = model.execute([{"signal": good}, {"signal": bad}, {"signal": good}])
    assert [r.error is None for r in responses] == [True, False, True]
    assert "onnxruntime failed" in responses[1].error.message
    np.testing.assert_allclose(responses[2].output_tensors[0].array, _sigmoid(good), atol=1e-6)
