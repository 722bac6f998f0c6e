"""Start training from an exported ONNX model's weights (fine-tuning when no torch checkpoint exists).

The export folds each BatchNorm into the conv before it, so the ONNX file holds, per conv + BN pair, one
fused weight W' and bias b' (the conv itself has no bias). A fused pair is loaded back exactly: the conv
gets W', and the BN is set so that in eval mode it adds b' and nothing else. For fine-tuning, the BN
must also behave in training mode (batch statistics): its running mean/var are measured on training-like
windows (forward hooks on the conv outputs of the already-loaded network, in eval mode), and
gamma = sqrt(var + eps), beta = mean + b'. Eval mode is then still exactly W'x + b', and a training batch
whose statistics match the measured ones gives nearly the same output.

Every ONNX node is named after its torch module (`/model/downs.0/conv/conv.0/Conv`), which is how the
tensors are matched; shapes are checked and every parameter must be filled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn


def _module_path(node_name: str) -> str:
    """'/model/downs.0/conv/conv.0/Conv' -> 'downs.0.conv.0' (the ProbabilityModel wrapper dropped)."""
    parts = node_name.strip("/").split("/")[1:-1]  # drop 'model' and the op name
    if len(parts) >= 2 and parts[-1].startswith(parts[-2] + "."):  # 'conv/conv.0' -> 'conv.0'
        parts = [*parts[:-2], parts[-1]]
    return ".".join(parts)


def load_onnx_weights(model: nn.Module, onnx_path: str | Path, calibration: torch.Tensor) -> None:
    """Fill `model` (a UNet1D of the same widths) from the ONNX file; calibrate BN on `calibration`."""
    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    modules = dict(model.named_modules())
    state = model.state_dict()
    filled: set[str] = set()
    fused_bias: dict[str, torch.Tensor] = {}  # BN module path -> b'
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        path = _module_path(node.name)
        conv = modules[path]
        weight, bias = inits[node.input[1]], inits[node.input[2]] if len(node.input) > 2 else None
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{path}: ONNX weight {tuple(weight.shape)} vs model {tuple(conv.weight.shape)}")
        state[f"{path}.weight"] = weight
        filled.add(f"{path}.weight")
        if getattr(conv, "bias", None) is not None:
            state[f"{path}.bias"] = bias
            filled.add(f"{path}.bias")
        elif bias is not None:  # a conv + BN pair folded together: the BN right after the conv
            head, _, idx = path.rpartition(".")
            bn_path = f"{head}.{int(idx) + 1}"
            if not isinstance(modules.get(bn_path), nn.BatchNorm1d):
                raise ValueError(f"{path}: fused bias but no BatchNorm after it")
            fused_bias[bn_path] = bias
    gamma = next(i for i in graph.initializer if i.name.endswith("attention.gamma"))
    state["attention.gamma"] = torch.from_numpy(numpy_helper.to_array(gamma).copy())
    filled.add("attention.gamma")
    for bn_path, b in fused_bias.items():  # identity + b' first, exactly
        bn = modules[bn_path]
        state[f"{bn_path}.weight"] = torch.ones_like(b)
        state[f"{bn_path}.bias"] = b
        state[f"{bn_path}.running_mean"] = torch.zeros_like(b)
        state[f"{bn_path}.running_var"] = torch.full_like(b, 1.0 - bn.eps)
        filled |= {f"{bn_path}.{k}" for k in ("weight", "bias", "running_mean", "running_var")}
    missing = [k for k in state if k not in filled and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"not in the ONNX file: {missing}")
    model.load_state_dict(state)
    _calibrate(model, {p: modules[p] for p in fused_bias}, fused_bias, calibration)


@torch.no_grad()
def _calibrate(
    model: nn.Module, bns: dict[str, nn.Module], fused_bias: dict[str, torch.Tensor], x: torch.Tensor
) -> None:
    """Set each BN's running stats to its input's statistics and re-express b' through gamma and beta."""
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):  # type: ignore[no-untyped-def]
        def fn(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            y = inputs[0]
            stats[name] = (y.mean(dim=(0, 2)), y.var(dim=(0, 2), unbiased=False))

        return fn

    handles = [m.register_forward_hook(hook(p)) for p, m in bns.items()]
    was_training = model.training
    model.eval()
    model(x)
    for h in handles:
        h.remove()
    for path, bn in bns.items():
        mean, var = stats[path]
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean + fused_bias[path])
    model.train(was_training)


def load_checked(model: nn.Module, onnx_path: str | Path, window: int, what: str, seed: int = 0) -> None:
    """`load_onnx_weights` on noise windows (BN statistics for training only), then a parity check.

    Tensor shapes alone do not pin a UNet1D (other dilations, a stem of the same size load the same
    tensors), so the rebuilt network must reproduce the file: ValueError "not a UNet1D of `what`" if not.
    """
    gen = torch.Generator().manual_seed(seed)
    load_onnx_weights(model, onnx_path, torch.randn(16, 1, window, generator=gen))
    if (gap := parity(model, onnx_path, torch.randn(4, 1, window, generator=gen).numpy())) > 1e-4:
        raise ValueError(f"{onnx_path}: not a UNet1D of {what} (max |diff| {gap:.2e})")


def parity(model: nn.Module, onnx_path: str | Path, x: np.ndarray) -> float:
    """Max |sigmoid(model(x)) - ONNX(x)| in eval mode."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    model.eval()
    with torch.no_grad():
        out = torch.sigmoid(model(torch.from_numpy(x.astype(np.float32)))).numpy()
    return float(np.max(np.abs(out - ref)))
