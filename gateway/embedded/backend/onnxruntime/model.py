"""Python-based Triton backend named "onnxruntime", used by the embedded server.

Triton loads this file (copied to `<backend-dir>/onnxruntime/model.py`) for every model whose
config.pbtxt says `backend: "onnxruntime"`, so the same repository also runs unchanged under the
native C++ onnxruntime backend in NVIDIA's container. It is model-agnostic: the first input and
first output of the model config name the tensors.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Same mapping as the native backend's `optimization { graph { level } }` (0 or absent = all).
_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


def _error(message: str, invalid_arg: bool = False) -> Any:
    """Build a TritonError; older stubs have no error codes, so fall back to message only."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG" if invalid_arg else "INTERNAL", None)
    if code is None:
        return pb_utils.TritonError(message)
    return pb_utils.TritonError(message, code)


def _find_model_file(args: dict[str, str], config: dict[str, Any]) -> Path:
    """`args["model_repository"]` is the model's own directory (`<repo>/<name>`) in Triton 2.51."""
    filename = config.get("default_model_filename") or "model.onnx"
    path = Path(args["model_repository"]) / args["model_version"] / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"no {filename} for version {args['model_version']} under {path.parent.parent}"
        )
    return path


def _param(config: dict[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value not in (None, "") else None


def _session_options(config: dict[str, Any]) -> ort.SessionOptions:
    options = ort.SessionOptions()
    intra = _param(config, "intra_op_thread_count")
    inter = _param(config, "inter_op_thread_count")
    if intra is not None:
        options.intra_op_num_threads = int(intra)
    if inter is not None:
        options.inter_op_num_threads = int(inter)
    # ORT session config entries given as parameters ("session.intra_op.allow_spinning": "0" lets idle
    # intra-op threads sleep instead of spin-waiting for work, which on a small CPU takes cores from the
    # gateway between batches); the native backend ignores parameters it does not know.
    for key, value in config.get("parameters", {}).items():
        if key.startswith("session.") and value.get("string_value") not in (None, ""):
            options.add_session_config_entry(key, value["string_value"])
    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0) or 0)
    options.graph_optimization_level = _GRAPH_LEVELS.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return options


def _providers(args: dict[str, str]) -> list[Any]:
    use_gpu = args.get("model_instance_kind") == "GPU"
    if use_gpu and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds CUDA/cuDNN from the nvidia-* pip packages this way; if that fails the
        # CPU provider still serves.
        with contextlib.suppress(Exception):
            ort.preload_dlls()
    if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        device_id = int(args.get("model_instance_device_id", "0") or 0)
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    """Runs one ONNX model with onnxruntime; one ORT call per dynamically formed batch."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config.get("name", args.get("model_name", "?"))
        self.max_batch_size = int(config.get("max_batch_size", 0))
        in_cfg, out_cfg = config["input"][0], config["output"][0]
        self.input_name: str = in_cfg["name"]
        self.output_name: str = out_cfg["name"]
        self.input_dtype = np.dtype(pb_utils.triton_string_to_numpy(in_cfg["data_type"]))
        self.output_dtype = np.dtype(pb_utils.triton_string_to_numpy(out_cfg["data_type"]))
        # Per-item dims from the config (batch axis excluded when max_batch_size > 0); -1 = any.
        self.item_dims = [int(d) for d in in_cfg["dims"]]
        path = _find_model_file(args, config)
        self.session: ort.InferenceSession | None = ort.InferenceSession(
            str(path), sess_options=_session_options(config), providers=_providers(args)
        )
        logger = getattr(pb_utils, "Logger", None)
        if logger is not None:  # the server log then says which provider really serves this instance
            logger.log_info(
                f"{self.model_name} v{args.get('model_version')} on {args.get('model_instance_kind')}: "
                f"onnxruntime {ort.__version__} providers {self.session.get_providers()}, "
                f"numpy {np.__version__}"
            )
        self.ort_input = self.session.get_inputs()[0].name
        self.ort_output = self.session.get_outputs()[0].name
        # The ONNX graph may name tensors differently from the config; prefer exact names when present.
        if self.input_name in {i.name for i in self.session.get_inputs()}:
            self.ort_input = self.input_name
        if self.output_name in {o.name for o in self.session.get_outputs()}:
            self.ort_output = self.output_name

    def _validate(self, array: np.ndarray) -> str | None:
        """Return an error message for a tensor that does not match the config, else None."""
        if array.dtype != self.input_dtype:
            return f"input '{self.input_name}' has dtype {array.dtype}, expected {self.input_dtype}"
        expected = ([-1] if self.max_batch_size > 0 else []) + self.item_dims
        shape = list(array.shape)
        if len(shape) != len(expected) or any(
            e != -1 and e != s for e, s in zip(expected, shape, strict=True)
        ):
            return f"input '{self.input_name}' has shape {shape}, expected {expected} (-1 = any)"
        if self.max_batch_size > 0 and not 1 <= shape[0] <= self.max_batch_size:
            return f"batch size {shape[0]} outside 1..{self.max_batch_size}"
        return None

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One ORT call over all arrays; without a batch axis each request runs alone."""
        assert self.session is not None, "model is finalized"
        if self.max_batch_size <= 0:
            return [self.session.run([self.ort_output], {self.ort_input: a})[0] for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        out = self.session.run([self.ort_output], {self.ort_input: batch})[0]
        splits = np.cumsum([a.shape[0] for a in arrays])[:-1]
        return np.split(out, splits, axis=0)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request, in order, with exactly one response or error response."""
        responses: list[Any] = [None] * len(requests)
        valid: list[int] = []
        arrays: list[np.ndarray] = []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            problem: str | None
            if tensor is None:
                problem = f"missing input '{self.input_name}'"
            else:
                array = tensor.as_numpy()
                problem = self._validate(array)
            if problem is not None:
                responses[i] = pb_utils.InferenceResponse(error=_error(problem, invalid_arg=True))
                continue
            valid.append(i)
            arrays.append(array)
        if valid:
            try:
                outputs: list[np.ndarray | Exception] = list(self._run(arrays))
            except Exception:  # one bad request must not fail its batch-mates: retry one by one
                outputs = [self._run_one(a) for a in arrays]
            for i, out in zip(valid, outputs, strict=True):
                if isinstance(out, Exception):
                    err = _error(f"onnxruntime failed for model '{self.model_name}': {out}")
                    responses[i] = pb_utils.InferenceResponse(error=err)
                else:
                    tensor = pb_utils.Tensor(self.output_name, np.ascontiguousarray(out, self.output_dtype))
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
        return responses

    def _run_one(self, array: np.ndarray) -> np.ndarray | Exception:
        """Run one request alone; an exception is returned, never raised, so the stub survives."""
        try:
            return self._run([array])[0]
        except Exception as exc:
            return exc

    def finalize(self) -> None:
        self.session = None
