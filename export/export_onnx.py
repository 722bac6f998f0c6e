"""Export a UNet1D checkpoint to ONNX and add it to the Triton model repository as a new version.

    python -m export.export_onnx --checkpoint best_model.pth --profile seed
    python -m export.export_onnx --checkpoint runs/x/checkpoint.pt --repo model_repository --gpu

Steps: load strictly -> export the sigmoid-wrapped model (dynamic batch and length axes) -> onnx checker
-> parity against PyTorch on random and simulated windows -> atomic write of the version, its model
card and its processing params. A parity failure exits non-zero and writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.model import ProbabilityModel, UNet1D, load_checkpoint
from export.report import card_metrics
from export.sim.simulator import dataset_item
from gateway import repository
from gateway.dsp import params as dsp_params
from gateway.dsp import processing as proc
from gateway.model_card import model_card

PARITY_BATCH_SIZES = (1, 4, 16)
SEED_SOURCE = "seed 000 (PD Inference API) best_model.pth"


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree by more than the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    version: int
    model_dir: Path
    onnx_path: Path
    window: int
    total_parameters: int
    max_abs_diff: float
    parity: dict[str, float]  # case -> max |p_torch - p_onnx|
    onnx_size_bytes: int


def resolve_processing(
    processing: Mapping[str, Any] | dsp_params.ProcessingParams | None,
    profile: str | None,
    meta: Mapping[str, Any],
    window: int | None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The version's processing dict: explicit > profile > checkpoint's own > seed params for seed weights.

    Validated through gateway.dsp.params.ProcessingParams; `overrides` then replace single params
    (unknown names are refused), and `window` overrides the stored window.
    """
    if processing is None and profile is not None:
        profiles = {"seed": dsp_params.SEED_PARAMS, "default": dsp_params.DEFAULT_PARAMS}
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; choose from {sorted(profiles)}")
        processing = profiles[profile]
    if processing is None:
        processing = meta.get("processing") or (
            dsp_params.SEED_PARAMS if meta.get("source") == "seed" else None
        )
    if processing is None:
        raise ValueError("no processing params: pass --processing FILE or --profile")
    if not isinstance(processing, dsp_params.ProcessingParams):
        processing = dsp_params.ProcessingParams.from_dict(dict(processing))
    params = processing
    if overrides:
        params = dsp_params.ProcessingParams.from_dict({**params.to_dict(), **overrides})
    if window is not None and int(window) != params.window:
        # Keep the overlap geometry: hop and halo scale with the window.
        scale = int(window) / params.window
        halo = int(params.halo * scale)
        hop = max(1, min(round(params.hop * scale), int(window) - 2 * halo))
        params = params.replace(window=int(window), hop=hop, halo=halo)
    return params.to_dict()


def to_onnx_bytes(model: UNet1D, window: int, opset: int) -> bytes:
    """Trace with the TorchScript exporter (no onnxscript needed); batch and length axes are dynamic.

    A dynamic length lets one Triton model hold versions with different windows (config dims -1).
    """
    wrapper = ProbabilityModel(model).eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its successor
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, model.in_channels, window),),
            Path(tmp) / "model.onnx",
            dynamo=False,
            input_names=[repository.INPUT_NAME],
            output_names=[repository.OUTPUT_NAME],
            dynamic_axes={
                n: {0: "batch", 2: "length"} for n in (repository.INPUT_NAME, repository.OUTPUT_NAME)
            },
            opset_version=opset,
            do_constant_folding=True,
        )
        data = (Path(tmp) / "model.onnx").read_bytes()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([repository.INPUT_NAME], [repository.OUTPUT_NAME]):
        raise RuntimeError(f"unexpected ONNX inputs/outputs {names}")
    return data


def simulated_windows(n: int, window: int, processing: Mapping[str, Any], seed: int = 0) -> np.ndarray:
    """Windows cut from simulated PD signals through the version's own preprocessing, [n, W] float32."""
    params = dsp_params.ProcessingParams.from_dict(dict(processing))
    out: list[np.ndarray] = []
    index = 0
    while sum(len(w) for w in out) < n:
        sig = dataset_item(seed, index, regime="mixed", n_samples=max(4 * window, 4096)).signal
        pre, _ = proc.preprocess_batch([sig], params)
        out.append(proc.make_windows(pre[0], params))
        index += 1
    return np.concatenate(out)[:n]


def parity_cases(
    window: int, processing: Mapping[str, Any], batch_sizes: Iterable[int], seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs [N, 1, L] to compare on: random and simulated at each batch size, and one other length."""
    rng = np.random.default_rng(seed)
    cases = {}
    for b in batch_sizes:
        cases[f"random_b{b}"] = rng.standard_normal((b, 1, window)).astype(np.float32)
        cases[f"simulated_b{b}"] = simulated_windows(b, window, processing, seed + b)[:, None, :]
    cases[f"random_len{2 * window}_b2"] = rng.standard_normal((2, 1, 2 * window)).astype(np.float32)
    return cases


def parity_check(model: UNet1D, onnx_bytes: bytes, cases: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max |PyTorch - onnxruntime| probability per case (CPU execution provider)."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    wrapper = ProbabilityModel(model).eval()
    diffs = {}
    with torch.inference_mode():
        for case, x in cases.items():
            expected = wrapper(torch.from_numpy(x)).numpy()
            got = session.run([repository.OUTPUT_NAME], {repository.INPUT_NAME: x})[0]
            if got.shape != expected.shape:
                raise ParityError(f"{case}: onnx output shape {got.shape} != torch {expected.shape}")
            diffs[case] = float(np.max(np.abs(got - expected)))
    return diffs


def export_checkpoint(
    checkpoint: str | Path,
    repo: str | Path = "model_repository",
    *,
    name: str = "pd_unet1d",
    version: int | None = None,
    window: int | None = None,
    processing: Mapping[str, Any] | dsp_params.ProcessingParams | None = None,
    profile: str | None = None,
    opset: int = 17,
    parity_tol: float = 1e-4,
    parity_batch_sizes: Iterable[int] = PARITY_BATCH_SIZES,
    overwrite: bool = False,
    config_options: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    int8: bool = False,
) -> ExportResult:
    """Export, verify and write one version; raises ParityError (nothing written) above `parity_tol`.

    `int8` writes the verified FP32 graph statically quantised (export.quantize: QDQ, calibrated on
    simulator windows); measure it with `python -m export.quantize` before serving it.

    `metrics` goes into the model card's `pd:metrics`; without it the checkpoint's own metrics do.
    """
    model_dir = repository.model_path(repo, name)
    if (
        version is not None
        and not overwrite
        and (model_dir / str(repository.validate_version(version))).exists()
    ):
        raise repository.VersionExistsError(
            f"{model_dir / str(version)} exists (use --overwrite)"
        )  # fail fast
    model, meta = load_checkpoint(checkpoint)
    params = resolve_processing(processing, profile, meta, window, overrides)
    win = int(params["window"])
    if win % model.min_length:
        raise ValueError(f"window {win} must be a multiple of {model.min_length} for this model")
    max_batch = int((config_options or {}).get("max_batch_size") or 64)
    sizes = sorted({min(int(b), max_batch) for b in parity_batch_sizes})
    onnx_bytes = to_onnx_bytes(model, win, opset)
    parity = parity_check(model, onnx_bytes, parity_cases(win, params, sizes))
    worst = max(parity.values())
    if not worst <= parity_tol:  # also catches NaN
        raise ParityError(f"ONNX/PyTorch max abs diff {worst:.3g} > tolerance {parity_tol:g}: {parity}")
    quantization = None
    if int8:
        from export.quantize import calibration_windows, quantize_int8

        onnx_bytes = quantize_int8(
            onnx_bytes, calibration_windows(dsp_params.ProcessingParams.from_dict(params))
        )
        quantization = {
            "method": "onnxruntime static",
            "format": "QDQ",
            "weights": "int8",
            "activations": "uint8",
        }
    card = model_card(
        name=name,
        window=win,
        total_parameters=meta["total_parameters"],
        framework_version=torch.__version__,
        opset=opset,
        processing=params,
        pretrained=meta["source"] == "seed",
        pretrained_source=SEED_SOURCE if meta["source"] == "seed" else None,
        training_data=meta.get("training_data"),
        metrics=meta.get("metrics") if metrics is None else metrics,
        **{
            "mlm:hyperparameters": dict(meta.get("hyperparameters") or {}),
            "pd:checkpoint": {
                "file": Path(checkpoint).name,
                "sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
                "source": meta["source"],
                "widths": list(meta["widths"]),
                "dilations": list(meta["dilations"]),
                "stem_kernel": meta["stem_kernel"],
                "stem_channels": meta["stem_channels"],
            },
            "pd:parity_max_abs_diff": worst,  # of the FP32 graph (before any quantisation)
            **({"pd:quantization": quantization} if quantization else {}),
            "onnxruntime_version": ort.__version__,
        },
    )
    written = repository.write_version(
        model_dir,
        onnx_bytes,
        version=version,
        card=card,
        processing=params,
        overwrite=overwrite,
        config_options=config_options,
    )
    return ExportResult(
        version=written,
        model_dir=model_dir,
        onnx_path=model_dir / str(written) / repository.MODEL_FILENAME,
        window=win,
        total_parameters=meta["total_parameters"],
        max_abs_diff=worst,
        parity=parity,
        onnx_size_bytes=len(onnx_bytes),
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pd-gateway export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="our checkpoint or seed best_model.pth")
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--version", type=int, default=None, help="default: next free version")
    p.add_argument("--window", type=int, default=None, help="default: the processing params' window")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--processing", type=Path, help="JSON file of ProcessingParams")
    src.add_argument("--profile", choices=["seed", "default"], help="gateway.dsp.params preset")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override one processing param")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--parity-tol", type=float, default=1e-4)
    p.add_argument(
        "--metrics", type=Path, help="an export.evaluate JSON report: its figures go into the card"
    )
    p.add_argument("--validation-metrics", type=Path, help="the validation run's export.evaluate JSON report")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--int8", action="store_true", help="write the graph INT8-quantised (export.quantize)")
    serving = p.add_argument_group("config.pbtxt (unset: keep the existing config's value, or the default)")
    serving.add_argument("--max-batch-size", type=int)
    serving.add_argument("--max-queue-delay-us", type=int)
    kind = serving.add_mutually_exclusive_group()
    kind.add_argument("--gpu", dest="instance_kind", action="store_const", const="KIND_GPU")
    kind.add_argument("--cpu", dest="instance_kind", action="store_const", const="KIND_CPU")
    serving.add_argument("--instances", dest="instance_count", type=int)
    serving.add_argument("--intra-op-threads", type=int)
    serving.add_argument("--inter-op-threads", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keys = (
        "max_batch_size",
        "max_queue_delay_us",
        "instance_kind",
        "instance_count",
        "intra_op_threads",
        "inter_op_threads",
    )
    options = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    processing = json.loads(args.processing.read_text()) if args.processing else None
    try:
        metrics = None
        if args.metrics:
            val = json.loads(args.validation_metrics.read_text()) if args.validation_metrics else None
            metrics = card_metrics(json.loads(args.metrics.read_text()), val)
        elif args.validation_metrics:
            raise ValueError("--validation-metrics needs --metrics")
        result = export_checkpoint(
            args.checkpoint,
            args.repo,
            name=args.name,
            version=args.version,
            window=args.window,
            processing=processing,
            profile=args.profile,
            opset=args.opset,
            parity_tol=args.parity_tol,
            overwrite=args.overwrite,
            config_options=options,
            overrides=dsp_params.parse_overrides(args.set or []),
            metrics=metrics,
            int8=args.int8,
        )
    except (ParityError, repository.RepositoryError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"export failed, nothing written: {e}", file=sys.stderr)
        return 1
    for case, diff in result.parity.items():
        print(f"parity {case:>24}: max abs diff {diff:.3g}")
    print(f"parity max abs diff {result.max_abs_diff:.3g} <= {args.parity_tol:g}")
    size_mb = result.onnx_size_bytes / 1e6
    print(f"params {result.total_parameters:,}; onnx {size_mb:.1f} MB; window {result.window}")
    print(f"wrote {result.onnx_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
