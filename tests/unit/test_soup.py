"""export.soup: weight averages of models of one graph (WiSE-FT, model soups)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export import soup
from tests.onnx_factory import tiny_model

SHIPPED = Path(__file__).resolve().parents[2] / "model_repository" / "pd_unet1d" / "1" / "model.onnx"


def _write(path: Path, **kw: float) -> Path:
    path.write_bytes(tiny_model(**kw))
    return path


def _inits(model: onnx.ModelProto) -> dict[str, float]:
    return {i.name: float(numpy_helper.to_array(i)) for i in model.graph.initializer}


def test_weighted_mean_of_every_initializer(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.onnx", scale=8.0, bias=-2.0)
    b = _write(tmp_path / "b.onnx", scale=4.0, bias=-6.0)
    assert _inits(soup.average([a, b], [1.0, 1.0])) == {"scale": 6.0, "bias": -4.0}
    assert _inits(soup.average([a, b], [3.0, 1.0])) == {"scale": 7.0, "bias": -3.0}
    assert _inits(soup.average([a, b], [1.0, 0.0])) == {"scale": 8.0, "bias": -2.0}


def test_models_must_share_one_graph_and_weights_must_make_sense(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.onnx")
    other = _write(tmp_path / "c.onnx", sigmoid=False)  # Identity instead of Sigmoid
    with pytest.raises(ValueError, match="not the same graph"):
        soup.average([a, other], [1.0, 1.0])
    for paths, weights in (([a], [1.0]), ([a, a], [1.0]), ([a, a], [-1.0, 2.0]), ([a, a], [0.0, 0.0])):
        with pytest.raises(ValueError, match="non-negative weight"):
            soup.average(paths, weights)


def _scaled_copy(path: Path, factor: float) -> Path:
    model = onnx.load(str(SHIPPED))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
    onnx.save(model, str(path))
    return path


def test_an_attribute_difference_is_another_graph(tmp_path: Path) -> None:
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} is not in this checkout")
    model = onnx.load(str(SHIPPED))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dil = next(a for a in conv.attribute if a.name == "dilations")
    dil.ints[0] += 1  # same tensors, same node names and wiring, another function
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not the same graph"):
        soup.average([SHIPPED, tmp_path / "other.onnx"], [1.0, 1.0])


def test_cli_writes_the_average_and_an_exact_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} is not in this checkout")
    from export.model import load_checkpoint
    from export.onnx_init import parity

    other = _scaled_copy(tmp_path / "other.onnx", 0.8)
    out, ckpt = tmp_path / "soup.onnx", tmp_path / "soup.pt"
    argv = ["--onnx", str(SHIPPED), "--onnx", str(other), "--out", str(out), "--checkpoint", str(ckpt)]
    assert soup.main([*argv, "--weights", "3,1"]) == 0
    shipped = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(SHIPPED)).graph.initializer}
    for init in onnx.load(str(out)).graph.initializer:  # 3/4 of the weights + 1/4 of 0.8 of them = 0.95
        np.testing.assert_allclose(
            numpy_helper.to_array(init), 0.95 * shipped[init.name], rtol=1e-5, atol=1e-7
        )
    model, meta = load_checkpoint(ckpt)
    assert meta["training_data"] == {"soup_of": [str(SHIPPED), str(other)], "weights": [3.0, 1.0]}
    x = np.random.default_rng(2).standard_normal((2, 1, 1024)).astype(np.float32)
    assert parity(model, out, x) < 1e-4  # the checkpoint is the averaged network...
    assert parity(model, SHIPPED, x) > 1e-3  # ...not the first model
