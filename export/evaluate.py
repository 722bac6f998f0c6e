"""Evaluate the PD model (ONNX Runtime, gateway pre/post-processing) against the classic baseline.

    python -m export.evaluate --repo model_repository --name pd_unet1d --version 1 --out reports/eval
    python -m export.evaluate --checkpoint runs/w16/checkpoint.pt --out reports/eval_w16

The held-out set is simulated with its own seed (HELDOUT_SEED; training uses small seeds) and mixes
regimes, lengths, SNR, every interference kind and PD-free signals. Events are matched one-to-one within
COLLAR samples (export.sim.scoring). Detectors:
  model          the version's processing params (read from the repository config, as the gateway does)
  model_seedpp   the same network with seed 000's preprocessing (SEED_PARAMS: 0.4*fs high-pass,
                 batch-wide normalisation over requests of --request-size signals)
  baseline       export.sim.baseline.detect_baseline (high-pass + db4/MAD universal threshold)
With --ceiling it also reports export.ceiling: the event F1 a genie matched filter (true pulse shapes,
known noise level, no AC or interference) reaches on the same set, an optimistic bound for any detector,
and the same genie without the true shapes ("shape-blind"), per signal and with one threshold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from export.ceiling import ceilings
from export.cross_eval import CROSS_SEED, cross_markdown, evaluate_cross
from export.report import markdown
from export.sim import simulator
from export.sim.baseline import detect_baseline
from export.sim.scoring import Accumulator, regions_to_mask
from export.sim.simulator import SimulatedSignal, random_config, simulate
from gateway import repository
from gateway.dsp.params import SEED_PARAMS, ProcessingParams, parse_overrides
from gateway.dsp.processing import run_pipeline

HELDOUT_SEED = 20261123
COLLAR = 10  # samples: a few pulse widths of the short (few-sample) pulses
SNR_EDGES = (
    (-math.inf, 0.0, "snr<0"),
    (0.0, 10.0, "snr0-10"),
    (10.0, 20.0, "snr10-20"),
    (20.0, math.inf, "snr>=20"),
)
LONG_SIGNAL = 100_000
Infer = Callable[[np.ndarray], np.ndarray]


def heldout_item(
    index: int, seed: int = HELDOUT_SEED, *, vsb_full: bool = False, profile: str = "short"
) -> SimulatedSignal:
    """Signal `index` of the held-out set: regime, length (4k-32k) and AC speed drawn per item.

    profile "family" (the simulator's PD-family interference) makes a second own set, for validation.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, int(vsb_full))))
    u = rng.random()
    if vsb_full:  # a whole VSB measurement: 800,000 int8 samples, one 50 Hz cycle
        cfg = random_config(rng, regime="vsb", profile=profile)
    elif u < 0.2:
        cfg = random_config(rng, regime="seed", n_samples=int(rng.integers(4096, 32769)), profile=profile)
    elif u < 0.4:
        cfg = random_config(rng, regime="vsb", n_samples=int(rng.integers(4096, 32769)), profile=profile)
    else:  # AC no faster than 2,000 samples/cycle, which the 0.02 high-pass removes
        spc = math.exp(rng.uniform(math.log(2000.0), math.log(1e6)))
        cfg = random_config(
            rng,
            regime="mixed",
            n_samples=int(rng.integers(4096, 32769)),
            samples_per_cycle=spc,
            profile=profile,
        )
    return simulate(cfg, int(rng.integers(0, 2**63 - 1)))


def heldout_set(
    n: int, n_vsb_full: int = 0, seed: int = HELDOUT_SEED, profile: str = "short"
) -> list[SimulatedSignal]:
    return [heldout_item(i, seed, profile=profile) for i in range(n)] + [
        heldout_item(i, seed, vsb_full=True, profile=profile) for i in range(n_vsb_full)
    ]


def bucket_keys(sim: SimulatedSignal) -> list[str]:
    """SNR bucket, interference kinds (or none), regime and PD presence of one signal."""
    snr = sim.config.snr_db
    keys = ["snr:none" if snr is None else next(f"snr:{k}" for lo, hi, k in SNR_EDGES if lo <= snr < hi)]
    kinds = sorted(sim.kinds & {"spectral", "pair", "train", "bipolar", "impulsive"})
    keys += [f"interference:{k}" for k in kinds] or ["interference:none"]
    regime = sim.config.regime
    if regime == "vsb" and sim.config.n_samples >= 800_000:
        regime = "vsb_full"
    keys += [f"regime:{regime}", "pd:present" if sim.pulses else "pd:free"]
    return keys


def card_params(onnx: Path) -> ProcessingParams:
    """The processing params recorded in the model_card.json beside an exported model.onnx."""
    card = json.loads((onnx.parent / "model_card.json").read_text())
    return ProcessingParams.from_dict(card["pd:processing"])


def ort_infer(onnx_model: str | bytes, threads: int = 2) -> Infer:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run([repository.OUTPUT_NAME], {repository.INPUT_NAME: x})[0]


def _requests(signals: Sequence[SimulatedSignal], size: int) -> list[list[int]]:
    """Consecutive groups of up to `size` short signals; each long (VSB) signal is a request of its own."""
    long = [[i] for i, s in enumerate(signals) if s.signal.size > LONG_SIGNAL]
    short = [i for i, s in enumerate(signals) if s.signal.size <= LONG_SIGNAL]
    return [short[k : k + size] for k in range(0, len(short), size)] + long


def predict_model(
    signals: Sequence[SimulatedSignal], params: ProcessingParams, infer: Infer, request_size: int
) -> list[list[tuple[int, int]]]:
    """Regions found by run_pipeline (the gateway's steps), requests of `request_size` signals."""
    preds: list[list[tuple[int, int]]] = [[] for _ in signals]
    groups = _requests(signals, request_size)
    for group in tqdm(groups, desc="evaluate", unit="request", disable=not sys.stderr.isatty()):
        results = run_pipeline([signals[i].signal for i in group], params, infer)
        for i, res in zip(group, results, strict=True):
            preds[i] = [(r.start, r.end) for r in res.regions] if res.valid else []
    return preds


def score(
    signals: Sequence[SimulatedSignal], preds: Sequence[Sequence[tuple[int, int]]], collar: int
) -> dict[str, dict[str, float]]:
    acc = Accumulator(collar)
    for sim, pred in zip(signals, preds, strict=True):
        acc.add(bucket_keys(sim), sim.events, list(pred), sim.mask, regions_to_mask(pred, sim.signal.size))
    return acc.summary()


def evaluate(
    signals: Sequence[SimulatedSignal],
    params: ProcessingParams,
    infer: Infer | None,
    *,
    collar: int = COLLAR,
    request_size: int = 8,
    seed_params: bool = True,
    baseline: bool = True,
    ceiling: bool = False,
) -> dict[str, Any]:
    """{"detectors": {name: Accumulator summary}, "timing_s": {...}} for the chosen detectors."""
    detectors: dict[str, Any] = {}
    timing: dict[str, float] = {}
    runs: list[tuple[str, Callable[[], list]]] = []
    if infer is not None:
        runs.append(("model", lambda: predict_model(signals, params, infer, request_size)))
        if seed_params:
            seed_pp = SEED_PARAMS.replace(window=params.window, hop=params.window // 2)
            runs.append(("model_seedpp", lambda: predict_model(signals, seed_pp, infer, request_size)))
    if baseline:
        runs.append(("baseline", lambda: [detect_baseline(s.signal) for s in signals]))
    for name, run in runs:
        t0 = time.perf_counter()
        preds = run()
        timing[name] = round(time.perf_counter() - t0, 2)
        detectors[name] = score(signals, preds, collar)
    result: dict[str, Any] = {"detectors": detectors, "timing_s": timing}
    if ceiling:
        t0 = time.perf_counter()
        result["ceiling"], result["ceiling_blind"] = ceilings(signals, bucket_keys, collar)
        timing["ceiling"] = round(time.perf_counter() - t0, 2)
    return result


def _load_model(args: argparse.Namespace) -> tuple[str | bytes, ProcessingParams, str]:
    """ONNX model, its processing params and a description, from --repo, --onnx or --checkpoint."""
    if args.checkpoint:
        from export.export_onnx import to_onnx_bytes  # torch only on this path
        from export.model import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
        params = ProcessingParams.from_dict(meta["processing"])
        return to_onnx_bytes(model, params.window, 17), params, f"checkpoint {args.checkpoint}"
    if args.onnx:
        data = json.loads(Path(args.processing).read_text()) if args.processing else SEED_PARAMS.to_dict()
        return str(args.onnx), ProcessingParams.from_dict(data), f"onnx {args.onnx}"
    model_dir = repository.model_path(args.repo, args.name)
    version = args.version or max(repository.list_versions(model_dir))
    data = repository.processing_params_from_config(repository.read_config(model_dir), version)
    if data is None:
        raise SystemExit(f"{model_dir}/config.pbtxt has no processing params for version {version}")
    path = model_dir / str(version) / repository.MODEL_FILENAME
    return str(path), ProcessingParams.from_dict(data), f"{args.name} version {version} ({path})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pd-gateway evaluate", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--repo", type=Path, default=Path("model_repository"))
    src.add_argument("--onnx", type=Path, help="an ONNX file (with --processing, else seed params)")
    src.add_argument("--checkpoint", type=Path, help="a training checkpoint, exported in memory")
    p.add_argument("--processing", type=Path, help="JSON ProcessingParams for --onnx")
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--version", type=int, default=None, help="default: the latest version")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override one processing param")
    p.add_argument("--out", type=Path, required=True, help="writes <out>.json and <out>.md")
    p.add_argument("--n-signals", type=int, default=400)
    p.add_argument("--n-vsb-full", type=int, default=4, help="whole 800,000-sample VSB signals added")
    p.add_argument("--seed", type=int, default=HELDOUT_SEED)
    p.add_argument("--collar", type=int, default=COLLAR)
    p.add_argument("--request-size", type=int, default=8, help="signals per pipeline call (batch_max scope)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--no-seed-params", action="store_true")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--ceiling", action="store_true", help="also report the genie matched-filter bound")
    p.add_argument(
        "--cross",
        metavar="N_SHORT,N_LONG",
        help="also score the model on the cross-generator set (export.crossgen; evaluation only)",
    )
    p.add_argument("--cross-seed", type=int, default=CROSS_SEED)
    p.add_argument("--profile", choices=simulator.PROFILES, default="short", help="own set's interference")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    onnx_model, params, source = _load_model(args)
    params = params.replace(**parse_overrides(args.set or []))
    signals = heldout_set(args.n_signals, args.n_vsb_full, args.seed, args.profile)
    result = evaluate(
        signals,
        params,
        ort_infer(onnx_model, args.threads),
        collar=args.collar,
        request_size=args.request_size,
        seed_params=not args.no_seed_params,
        baseline=not args.no_baseline,
        ceiling=args.ceiling,
    )
    if args.cross:
        n_short, n_long = (int(v) for v in args.cross.split(","))
        t0 = time.perf_counter()
        result["cross"] = evaluate_cross(
            params, ort_infer(onnx_model, args.threads), n_short, n_long, seed=args.cross_seed
        )
        result["timing_s"]["cross"] = round(time.perf_counter() - t0, 2)
    report = {
        "model": source,
        "processing": params.to_dict(),
        "collar": args.collar,
        "heldout": {
            "seed": args.seed,
            "n_signals": len(signals),
            "n_vsb_full": args.n_vsb_full,
            "profile": args.profile,
        },
        "command": " ".join(["python -m export.evaluate", *(argv if argv is not None else sys.argv[1:])]),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    if "cross" in report:
        own = report["detectors"].get("model")
        md += "\n" + cross_markdown(report["cross"], own if own and "all" in own else None)
    Path(f"{args.out}.md").write_text(md)
    for name, summary in report["detectors"].items():
        if "all" not in summary:
            continue
        a = summary["all"]
        scores = "  ".join(f"{k} {a[k]:.3f}" for k in ("f1", "precision", "recall", "iou"))
        print(f"{name:>13}: {scores}")
    if "ceiling" in report:
        a = report["ceiling"]["buckets"]["all"]
        print(f"{'ceiling':>13}: f1 {a['f1']:.3f}  precision {a['precision']:.3f}  recall {a['recall']:.3f}")
        b = report["ceiling_blind"]["global"]
        scores = f"f1 {b['f1']:.3f}  precision {b['precision']:.3f}  recall {b['recall']:.3f}"
        print(f"{'blind, one T':>13}: {scores}")
    for regime in ("short", "long"):
        c = report.get("cross", {}).get(regime)
        if c:
            a, pair = c["scores"]["all"], c["interference"].get("pair", {"fraction": 0.0})
            print(
                f"{'cross ' + regime:>13}: f1 {a['f1']:.3f}  precision {a['precision']:.3f}  recall "
                f"{a['recall']:.3f}  false/PD-free {c['false_per_pd_free']:.2f}  pairs {pair['fraction']:.3f}"
            )
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
