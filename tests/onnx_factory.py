"""Tiny ONNX models built with onnx.helper (no torch): valid ones of any window, and broken ones."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

Dim = int | str


def tiny_model(
    window: Dim = "length",
    *,
    scale: float = 8.0,
    bias: float = -2.0,
    batch: Dim = "N",
    channels: Dim = 1,
    input_name: str = "signal",
    output_name: str = "probability",
    elem_type: int = TensorProto.FLOAT,
    sigmoid: bool = True,
) -> bytes:
    """probability = sigmoid(scale * |signal| + bias): a stand-in segmenter that marks large samples."""
    shape = [batch, channels, window]
    x = helper.make_tensor_value_info(input_name, elem_type, shape)
    y = helper.make_tensor_value_info(output_name, elem_type, shape)
    s = helper.make_tensor("scale", elem_type, [], [scale])
    b = helper.make_tensor("bias", elem_type, [], [bias])
    nodes = [
        helper.make_node("Abs", [input_name], ["a"]),
        helper.make_node("Mul", ["a", "scale"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["z"]),
    ]
    nodes.append(
        helper.make_node("Sigmoid", ["z"], [output_name])
        if sigmoid
        else helper.make_node("Identity", ["z"], [output_name])
    )
    graph = helper.make_graph(nodes, "tiny_pd", [x], [y], [s, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 9  # what onnxruntime of every supported release reads
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def nan_model(window: Dim = "length") -> bytes:
    """Passes the checker but answers NaN: log(-|x| - 1)."""
    shape = ["N", 1, window]
    x = helper.make_tensor_value_info("signal", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, shape)
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Abs", ["signal"], ["a"]),
        helper.make_node("Add", ["a", "one"], ["b"]),
        helper.make_node("Neg", ["b"], ["c"]),
        helper.make_node("Log", ["c"], ["probability"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "nan", [x], [y], [one]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    return model.SerializeToString()


def external_data_model() -> bytes:
    """A model whose weight points at a file outside the version directory."""
    model = onnx.load_from_string(tiny_model())
    t = model.graph.initializer[0]
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../../../etc/passwd")
    return model.SerializeToString()
