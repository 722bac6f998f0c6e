"""What an uploaded ONNX model must pass before anything is written to the model repository.

Pure and blocking (run it in a worker thread): parse -> no external data -> onnx.checker (full) ->
the config's tensor contract -> an onnxruntime dry run on simulated windows cut by the version's own
preprocessing. Every failure is an `InvalidModel` (422) whose message says what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from tritonclient.grpc import model_config_pb2 as mc

from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import make_windows, preprocess_batch
from gateway.errors import InvalidInput, InvalidModel
from gateway.model_card import model_card

_MAX_REASON_CHARS = 300
_DRY_RUN_WINDOWS = 2  # batch > 1 also proves the batch axis really is dynamic
_PROB_EPS = 1e-6


def dry_run_signal(seed: int, n: int) -> np.ndarray:
    """A small seeded test signal: AC sinusoid, white noise and a few damped pulses (float32).

    Only the dry run uses it: it proves the model runs on windows cut by the version's own preprocessing,
    so it needs plausible input, not the training simulator (which the serving package does not ship).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    x = 40.0 * np.sin(2.0 * np.pi * t / max(n / 2.0, 1.0)) + rng.normal(0.0, 1.0, n)
    for start in rng.integers(0, max(n - 64, 1), size=4):
        k = np.arange(min(64, n - int(start)), dtype=np.float64)
        x[start : start + k.size] += rng.uniform(5.0, 20.0) * np.exp(-k / 6.0) * np.cos(k / 2.0)
    return x.astype(np.float32)


@dataclass(frozen=True)
class Contract:
    """The tensors a model of this Triton config must have (from config.pbtxt)."""

    input_name: str
    output_name: str

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> Contract:
        if len(config.input) != 1 or len(config.output) != 1:
            raise InvalidInput("the model's config must declare exactly one input and one output")
        for t in (*config.input, *config.output):
            if t.data_type != mc.TYPE_FP32:
                raise InvalidInput(f"config tensor '{t.name}' is not TYPE_FP32; uploads support FP32 only")
        return cls(config.input[0].name, config.output[0].name)


@dataclass(frozen=True)
class ValidationReport:
    opset: int
    ir_version: int
    producer: str
    total_parameters: int
    input_shape: list[int | str]
    output_shape: list[int | str]
    dry_run: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:_MAX_REASON_CHARS]


def merge_processing(overrides: Mapping[str, Any] | None, base: Mapping[str, Any] | None) -> ProcessingParams:
    """The new version's params: `base` (the latest version's) with `overrides` on top, validated."""
    if overrides is None and base is None:
        raise InvalidInput("no 'processing' given and no earlier version to copy processing parameters from")
    merged = {**(base or {}), **(overrides or {})}
    try:
        return ProcessingParams.from_dict(merged)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"invalid processing parameters: {_first_line(e)}") from None


def _tensors(nodes: Any) -> Iterator[onnx.TensorProto]:
    """Tensors held in node attributes, subgraphs included."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            graphs = [attr.g] if attr.HasField("g") else []
            for g in [*graphs, *attr.graphs]:
                yield from _graph_tensors(g)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _tensors(graph.node)


def _shape(value: onnx.ValueInfoProto) -> list[int | str] | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _check_tensor(kind: str, value: onnx.ValueInfoProto, expected_name: str, window: int) -> list[int | str]:
    if value.name != expected_name:
        raise InvalidModel(f"{kind} is named '{value.name}'; the model's config expects '{expected_name}'")
    elem = value.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        dtype = onnx.TensorProto.DataType.Name(elem) if elem else "unknown"
        raise InvalidModel(f"{kind} '{value.name}' has dtype {dtype}; the config expects FLOAT (FP32)")
    shape = _shape(value)
    want = f"[N, 1, {window}] (N dynamic; the length may also be dynamic)"
    if shape is None or len(shape) != 3:
        raise InvalidModel(f"{kind} '{value.name}' has shape {shape}; expected {want}")
    batch, channels, length = shape
    if isinstance(batch, int):
        # Triton's dynamic batcher stacks requests along this axis (max_batch_size > 1).
        raise InvalidModel(f"{kind} '{value.name}' has a fixed batch axis {shape}; expected {want}")
    if isinstance(channels, int) and channels != 1:
        raise InvalidModel(f"{kind} '{value.name}' has {channels} channels {shape}; expected {want}")
    if isinstance(length, int) and length != window:
        raise InvalidModel(
            f"{kind} '{value.name}' has length {length} but the processing window is {window}; "
            f"expected {want}"
        )
    return shape


def _dry_run(data: bytes, contract: Contract, params: ProcessingParams, seed: int) -> dict[str, Any]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unloadable models
        raise InvalidModel(f"onnxruntime cannot load the model: {_first_line(e)}") from None
    signal = dry_run_signal(seed, 2 * params.window)
    pre, _ = preprocess_batch([signal], params)
    windows = make_windows(pre[0], params)[:_DRY_RUN_WINDOWS][:, None, :]
    try:
        out = session.run([contract.output_name], {contract.input_name: windows})[0]
    except Exception as e:
        raise InvalidModel(f"dry run on {len(windows)} simulated windows failed: {_first_line(e)}") from None
    out = np.asarray(out)
    if out.shape != windows.shape:
        raise InvalidModel(f"dry run: output shape {list(out.shape)} != input shape {list(windows.shape)}")
    if not np.all(np.isfinite(out)):
        raise InvalidModel("dry run: the output contains NaN or Inf")
    lo, hi = float(out.min()), float(out.max())
    if lo < -_PROB_EPS or hi > 1 + _PROB_EPS:
        raise InvalidModel(
            f"dry run: output range [{lo:.4g}, {hi:.4g}] is not within [0, 1]; "
            "the model must end with a sigmoid (probabilities, not logits)"
        )
    return {"windows": len(windows), "window": params.window, "min": lo, "max": hi}


def validate_onnx(
    data: bytes, contract: Contract, params: ProcessingParams, *, seed: int = 0
) -> ValidationReport:
    """Every check an upload must pass, cheapest first; raises InvalidModel with the reason."""
    if not data:
        raise InvalidModel("the uploaded model file is empty")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError) as e:
        raise InvalidModel(f"not a valid ONNX file (protobuf parse failed: {_first_line(e)})") from None
    functions = [n for f in model.functions for n in f.node]
    if any(
        t.data_location == onnx.TensorProto.EXTERNAL
        for t in (*_graph_tensors(model.graph), *_tensors(functions))
    ):
        # External data names files next to the model: a path outside the version directory is a trick.
        raise InvalidModel("external tensor data is not accepted: upload one self-contained .onnx file")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # ValidationError, InferenceError, and C++ errors surfaced as others
        raise InvalidModel(f"ONNX checker: {_first_line(e)}") from None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise InvalidModel(
            f"the model must have exactly one input and one output, has {len(inputs)} and "
            f"{len(model.graph.output)}"
        )
    in_shape = _check_tensor("input", inputs[0], contract.input_name, params.window)
    out_shape = _check_tensor("output", model.graph.output[0], contract.output_name, params.window)
    dry = _dry_run(data, contract, params, seed)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ValidationReport(
        opset=int(opset),
        ir_version=int(model.ir_version),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        total_parameters=int(sum(math.prod(t.dims) for t in model.graph.initializer)),
        input_shape=in_shape,
        output_shape=out_shape,
        dry_run=dry,
    )


def default_card(name: str, params: ProcessingParams, report: ValidationReport) -> dict[str, Any]:
    """The card of an upload that came without one: what validation learned, and where it came from."""
    card = model_card(
        name=name,
        window=params.window,
        total_parameters=report.total_parameters,
        framework_version=report.producer or "unknown",
        opset=report.opset,
        processing=params.to_dict(),
    )
    card.update({"mlm:framework": "onnx", "pd:source": "upload", "pd:validation": report.to_dict()})
    card["description"] = "Uploaded through the gateway's model management API; no training record."
    return card
