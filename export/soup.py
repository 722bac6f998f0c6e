"""Average the weights of models fine-tuned from one model: a weight-space ensemble of one model's size.

    python -m export.soup --onnx shipped.onnx --onnx finetuned.onnx --out runs/soup.onnx
    python -m export.soup --onnx a.onnx --onnx b.onnx --onnx c.onnx --weights 1,1,1 --out runs/soup.onnx \\
        --checkpoint runs/soup/checkpoint.pt     # also a checkpoint, for `export.export_onnx --checkpoint`

WiSE-FT (Wortsman et al. 2022) interpolates a fine-tune with the weights it started from, and model soups
average several fine-tunes of one model: when the fine-tunes stay in one basin the average keeps most of what
each learned and forgets less than any. Our ONNX files fold each BatchNorm into its conv, so averaging them
averages the eval-mode network layer by layer; the graphs must be the same (same export, same widths).
The checkpoint route loads the average back into a UNet1D exactly (export.onnx_init), so the usual export
checks parity and writes the model card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def average(paths: list[Path], weights: list[float]) -> onnx.ModelProto:
    """The first model's graph with every initializer replaced by the weighted mean over `paths`."""
    if len(paths) < 2 or len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("need two or more models and one non-negative weight per model")
    models = [onnx.load(str(p)) for p in paths]
    base = models[0]
    tensors = [{i.name: numpy_helper.to_array(i) for i in m.graph.initializer} for m in models]
    for p, m, t in zip(paths[1:], models[1:], tensors[1:], strict=True):
        if _structure(m) != _structure(base):  # nodes with their attributes, inputs/outputs, opsets
            raise ValueError(f"{p}: not the same graph as {paths[0]}")
        if {k: (a.dtype, a.shape) for k, a in t.items()} != {
            k: (a.dtype, a.shape) for k, a in tensors[0].items()
        }:
            raise ValueError(f"{p}: not the same initializers (names, dtypes, shapes) as {paths[0]}")
    share = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    out = onnx.ModelProto()
    out.CopyFrom(base)
    for init in out.graph.initializer:
        arrays = [t[init.name] for t in tensors]
        if not np.issubdtype(arrays[0].dtype, np.floating):
            if any(not np.array_equal(a, arrays[0]) for a in arrays):
                raise ValueError(f"initializer {init.name}: non-float values differ between models")
            continue
        mean = sum(w * a.astype(np.float64) for w, a in zip(share, arrays, strict=True))
        init.CopyFrom(numpy_helper.from_array(np.asarray(mean, dtype=arrays[0].dtype), init.name))
    onnx.checker.check_model(out)
    return out


def _structure(model: onnx.ModelProto) -> tuple[list[bytes], list[bytes], list[bytes], list[tuple[str, int]]]:
    g = model.graph
    return (
        [n.SerializeToString(deterministic=True) for n in g.node],
        [v.SerializeToString(deterministic=True) for v in g.input],
        [v.SerializeToString(deterministic=True) for v in g.output],
        sorted((o.domain, o.version) for o in model.opset_import),
    )


def to_checkpoint(onnx_path: Path, out: Path, sources: list[Path], weights: list[float]) -> None:
    """A UNet1D checkpoint holding the averaged weights (eval mode exact), with the recipe recorded."""
    from export.model import UNet1D, load_checkpoint, save_checkpoint
    from export.onnx_init import load_checked

    card = json.loads((sources[0].parent / "model_card.json").read_text())
    arch = card["pd:checkpoint"]
    model = UNet1D(
        1,
        1,
        tuple(arch["widths"]),
        tuple(arch["dilations"]),
        stem_kernel=int(arch.get("stem_kernel") or 0),
        stem_channels=int(arch.get("stem_channels") or 0),
    )
    # BatchNorm statistics for training mode only (eval mode is exact whatever they are)
    load_checked(model, onnx_path, int(card["pd:processing"]["window"]), "the first model's card")
    model.eval()
    save_checkpoint(
        out,
        model,
        processing=card["pd:processing"],
        step=0,
        hyperparameters={"soup": [str(p) for p in sources], "weights": list(weights)},
        final=True,
        training_data={"soup_of": [str(p) for p in sources], "weights": list(weights)},
    )
    load_checkpoint(out)  # fails loudly if the file does not load back


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.soup", description=__doc__.split("\n")[0])
    p.add_argument("--onnx", action="append", type=Path, required=True, help="a model (twice or more)")
    p.add_argument("--weights", help="comma-separated, one per model (default: equal)")
    p.add_argument("--out", type=Path, required=True, help="the averaged ONNX file")
    p.add_argument("--checkpoint", type=Path, help="also write a checkpoint (needs the first model's card)")
    args = p.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(args.onnx)
    model = average(args.onnx, weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out))
    if args.checkpoint:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        to_checkpoint(args.out, args.checkpoint, args.onnx, weights)
    print(json.dumps({"out": str(args.out), "models": [str(x) for x in args.onnx], "weights": weights}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
