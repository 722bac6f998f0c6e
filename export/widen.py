"""Widen a trained UNet1D without changing what it computes (Net2WiderNet, Chen et al. 2016).

    python -m export.widen --onnx model_repository/pd_unet1d/1/model.onnx --widths 10,20,40,80 \\
        --out runs/widened.onnx

A measurement tool, not a shipping path: it answers "would more channels let a fine-tune learn new pulse
shapes without forgetting the old ones?" without paying for a from-scratch run. Every feature map gets
its old channels plus copies of randomly chosen old ones. A layer that reads a copied channel splits the
weight it had for that channel between the original and its copies (per weight element, at random, summing
to the old weight), so the widened network gives the old outputs (eval mode, up to float rounding); and
since those split weights, the copies' outgoing weights, differ, so do the copies' gradients, and they
learn apart (an even split would keep them identical under Adam). The attention's query/key gain channels
whose keys are zero (their products add nothing) and whose queries are random (so the keys get gradients).

Works on the eval-mode network that `export.onnx_init.load_onnx_weights` rebuilds from the ONNX file, so
the widened ONNX file is the input of `export.train --init-onnx` (and of `--distill-onnx`) with the new
`--widths`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from export.model import UNet1D

Mapping = np.ndarray  # new channel -> old channel


def channel_map(old: int, new: int, rng: np.random.Generator) -> Mapping:
    """The old channels in order, then `new - old` copies of old channels drawn at random."""
    if new < old:
        raise ValueError(f"cannot narrow {old} channels to {new}")
    return np.concatenate([np.arange(old), rng.integers(0, old, new - old)])


def _split(mapping: Mapping, shape: tuple[int, ...], axis: int, rng: np.random.Generator) -> np.ndarray:
    """Per-element factors along `axis` (new input channels) that sum to 1 over each old channel's copies."""
    moved = (shape[axis], *(s for i, s in enumerate(shape) if i != axis))
    raw = rng.uniform(0.75, 1.25, size=moved)
    total = np.zeros((int(mapping.max()) + 1, *moved[1:]))
    np.add.at(total, mapping, raw)
    return np.moveaxis(raw / total[mapping], 0, axis)


def _take(t: torch.Tensor, out_map: Mapping | None, in_map: Mapping | None, in_axis: int = 1) -> np.ndarray:
    a = t.detach().numpy()
    out_axis = 1 - in_axis if a.ndim > 1 else 0
    if out_map is not None:
        a = np.take(a, out_map, axis=out_axis)
    if in_map is not None:
        a = np.take(a, in_map, axis=in_axis)
    return a


def widen(model: UNet1D, widths: tuple[int, ...], rng: np.random.Generator) -> UNet1D:
    """A UNet1D of `widths` (each >= the old one) computing what `model` computes in eval mode."""
    if (
        len(widths) != len(model.widths)
        or model.stem_kernel
        or (model.in_channels, model.out_channels) != (1, 1)
    ):
        raise ValueError("same depth, one input and one output channel, no stem")
    if any(b != 2 * a for a, b in itertools.pairwise(widths)):
        raise ValueError(f"UNet1D widths double at each level, not {widths}")
    new = UNet1D(1, 1, widths, model.dilations)
    old_mods, new_mods = dict(model.named_modules()), dict(new.named_modules())
    state: dict[str, np.ndarray] = {}

    def conv(name: str, in_map: Mapping, out_map: Mapping) -> None:
        """A Conv1d (weight out, in, k) reading `in_map` channels, writing `out_map` channels."""
        w = _take(old_mods[name].weight, out_map, in_map)
        state[f"{name}.weight"] = w * _split(in_map, w.shape, 1, rng)
        if old_mods[name].bias is not None:
            state[f"{name}.bias"] = _take(old_mods[name].bias, out_map, None)

    def bn(name: str, out_map: Mapping) -> None:
        for key in ("weight", "bias", "running_mean", "running_var"):
            state[f"{name}.{key}"] = np.take(getattr(old_mods[name], key).detach().numpy(), out_map)

    def double(name: str, in_map: Mapping, width_old: int, width_new: int) -> Mapping:
        inner = channel_map(width_old, width_new, rng)
        conv(f"{name}.conv.0", in_map, inner)
        bn(f"{name}.conv.1", inner)
        out = channel_map(width_old, width_new, rng)
        conv(f"{name}.conv.3", inner, out)
        bn(f"{name}.conv.4", out)
        return out

    x: Mapping = np.zeros(1, dtype=int)  # the input: one channel
    skips: list[Mapping] = []
    for i, (w_old, w_new) in enumerate(zip(model.widths, widths, strict=True)):
        x = double(f"downs.{i}", x, w_old, w_new)
        skips.append(x)
    x = double("bottleneck_conv", x, 2 * model.widths[-1], 2 * widths[-1])
    # attention: value and the residual keep the map; query/key gain dead-key channels
    qk_old, qk_new = old_mods["attention.query"].out_channels, new_mods["attention.query"].out_channels
    qk = np.concatenate([np.arange(qk_old), np.zeros(qk_new - qk_old, dtype=int)])
    for name in ("attention.query", "attention.key"):
        conv(name, x, qk)
        extra = slice(qk_old, None)
        if name.endswith("key"):
            state[f"{name}.weight"][extra] = 0.0
            state[f"{name}.bias"][extra] = 0.0
        else:
            scale = float(np.std(state[f"{name}.weight"][:qk_old]))
            state[f"{name}.weight"][extra] = rng.normal(0.0, scale, state[f"{name}.weight"][extra].shape)
            state[f"{name}.bias"][extra] = 0.0
    conv("attention.value", x, x)
    state["attention.gamma"] = model.attention.gamma.detach().numpy().copy()
    for k, (skip, w_old, w_new) in enumerate(
        zip(reversed(skips), reversed(model.widths), reversed(widths), strict=True)
    ):
        up = channel_map(w_old, w_new, rng)
        name = f"ups.{2 * k}"  # ConvTranspose1d: weight (in, out, k)
        w = _take(old_mods[name].weight, up, x, in_axis=0)
        state[f"{name}.weight"] = w * _split(x, w.shape, 0, rng)
        state[f"{name}.bias"] = _take(old_mods[name].bias, up, None)
        cat = np.concatenate([skip, w_old + up])  # torch.cat((skip, up)) in the old channel numbering
        x = double(f"ups.{2 * k + 1}", cat, w_old, w_new)
    conv("final_conv", x, np.zeros(1, dtype=int))
    full = new.state_dict()
    missing = [k for k in full if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"not widened: {missing}")
    tensors = {k: torch.as_tensor(np.asarray(v), dtype=full[k].dtype) for k, v in state.items()}
    new.load_state_dict(tensors, strict=False)  # num_batches_tracked keeps its default
    return new.eval()


def main(argv: list[str] | None = None) -> int:
    from export.export_onnx import simulated_windows, to_onnx_bytes
    from export.onnx_init import load_checked
    from export.train import _parse_ints

    p = argparse.ArgumentParser(prog="python -m export.widen", description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", required=True, help="the trained model (an export of export.export_onnx)")
    p.add_argument("--widths", required=True, help="new widths: each >= the old, doubling; e.g. 10,20,40,80")
    p.add_argument("--old-widths", default="8,16,32,64")
    p.add_argument("--dilations", default="1,2,4,8")
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the widened ONNX file (written only if it passes the check)")
    a = p.parse_args(argv)
    old = UNet1D(1, 1, _parse_ints(a.old_widths), _parse_ints(a.dilations))
    try:
        load_checked(old, a.onnx, a.window, f"widths {a.old_widths}, dilations {a.dilations}", seed=a.seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    new = widen(old.eval(), _parse_ints(a.widths), np.random.default_rng(a.seed))
    data = to_onnx_bytes(new, a.window, 17)
    # the check: simulated windows through the model's own preprocessing (its card), old file vs new file
    card = Path(a.onnx).with_name("model_card.json")
    processing = json.loads(card.read_text())["pd:processing"] if card.exists() else {}
    threshold = float(processing.get("threshold", 0.5))
    x = simulated_windows(256, a.window, processing, seed=5)[:, None, :]
    p_old, p_new = _run(Path(a.onnx).read_bytes(), x), _run(data, x)
    gap, flips = float(np.max(np.abs(p_old - p_new))), int(np.sum((p_old > threshold) != (p_new > threshold)))
    print(
        f"widths {a.old_widths} -> {a.widths}: on 256 simulated windows through the model's preprocessing, "
        f"max |p_widened - p_old| {gap:.2e}, {flips} samples change side of {threshold}"
    )
    if gap > 1e-4:
        raise SystemExit("the widened network does not reproduce the old one: not written")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_bytes(data)
    print(f"wrote {a.out}")
    return 0


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    """An ONNX model's output on `x` (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


if __name__ == "__main__":
    sys.exit(main())
