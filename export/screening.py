"""Calibrate window screening for a model version: the smallest window peak at which the model votes.

    python -m export.screening --repo model_repository --name pd_unet1d --version 1 [--write]

Runs the version (ONNX Runtime, its own processing params) on every window of simulator signals drawn
like the held-out set but from another seed (CALIBRATION_SEED), and records per window its peak
max |preprocessed x| and the model's largest probability. A window "votes" when that probability reaches
VOTE_FRACTION x the version's threshold (half of it by default: a window well below the threshold can
still move a stitched average). `screen_peak` = the smallest peak of any voting window / --margin.
It then runs the pipeline with and without that screen on the same signals and reports windows skipped
and regions changed. --write stores `screen_peak` in the version's processing params in config.pbtxt (a
running Triton serves it after the model is reloaded). Re-run it whenever the weights change.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.evaluate import heldout_set, ort_infer
from gateway import repository
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import make_windows, prepare, run_pipeline, window_peaks

CALIBRATION_SEED = 20261201  # not the held-out set's seed: calibration and evaluation stay apart
VOTE_FRACTION = 0.5
DEFAULT_MARGIN = 1.5


def window_votes(
    signals: Sequence[np.ndarray], params: ProcessingParams, infer: Any, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(peak max |x|, max probability) of every window of every valid signal, unscreened."""
    params = params.replace(screen_peak=None)
    peaks, votes = [], []
    for x in signals:
        prep = prepare([x], params)
        if not prep.valid[0]:
            continue
        win = make_windows(prep.pre[0], params)
        probs = np.concatenate([infer(win[i : i + batch, None, :]) for i in range(0, len(win), batch)])
        peaks.append(window_peaks(win))
        votes.append(probs.reshape(len(win), -1).max(axis=1))
    return np.concatenate(peaks), np.concatenate(votes)


def calibrate(peaks: np.ndarray, votes: np.ndarray, threshold: float, margin: float) -> float:
    """The screen: the smallest peak of a window voting >= VOTE_FRACTION x threshold, over `margin`."""
    voting = peaks[votes >= VOTE_FRACTION * threshold]
    if not voting.size:
        raise ValueError("no window ever voted: nothing to calibrate on (more or other signals?)")
    return float(voting.min()) / margin


def agreement(signals: Sequence[np.ndarray], params: ProcessingParams, infer: Any) -> dict[str, Any]:
    """Windows inferred and regions with the screen on vs off, signal by signal."""
    off = params.replace(screen_peak=None)
    n_all = n_sent = changed_signals = changed_regions = total_regions = 0
    for x in signals:
        (a,) = run_pipeline([x], off, infer)
        (b,) = run_pipeline([x], params, infer)
        n_all += a.n_windows
        n_sent += prepare([x], params).n_sent
        ra = {(r.start, r.end) for r in a.regions}
        rb = {(r.start, r.end) for r in b.regions}
        total_regions += len(ra)
        if ra != rb:
            changed_signals += 1
            changed_regions += len(ra ^ rb)
    return {
        "windows": n_all,
        "windows_inferred": n_sent,
        "fewer_windows_x": round(n_all / max(n_sent, 1), 2),
        "regions": total_regions,
        "regions_changed": changed_regions,
        "signals_changed": changed_signals,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.screening", description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--version", type=int, default=None, help="default: the latest version")
    p.add_argument("--n-signals", type=int, default=300, help="short simulator signals (4k-32k samples)")
    p.add_argument("--n-vsb-full", type=int, default=2, help="whole 800,000-sample VSB signals")
    p.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="screen = min voting peak / this")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--write", action="store_true", help="store screen_peak in config.pbtxt")
    p.add_argument("--out", type=Path, help="also write the report as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.margin < 1:
        raise SystemExit("--margin must be >= 1")
    model_dir = repository.model_path(args.repo, args.name)
    version = args.version or max(repository.list_versions(model_dir))
    config = repository.read_config(model_dir)
    data = repository.processing_params_from_config(config, version)
    if data is None:
        raise SystemExit(f"{model_dir}/config.pbtxt has no processing params for version {version}")
    params = ProcessingParams.from_dict(data)
    infer = ort_infer(str(model_dir / str(version) / repository.MODEL_FILENAME), args.threads)
    signals = [s.signal for s in heldout_set(args.n_signals, args.n_vsb_full, args.seed)]
    peaks, votes = window_votes(signals, params, infer)
    screen = calibrate(peaks, votes, params.threshold, args.margin)
    screened = params.replace(screen_peak=round(screen, 4))
    report = {
        "model": f"{args.name} version {version}",
        "signals": {"seed": args.seed, "n_short": args.n_signals, "n_vsb_full": args.n_vsb_full},
        "windows_seen": int(peaks.size),
        "windows_voting": int((votes >= VOTE_FRACTION * params.threshold).sum()),
        "min_voting_peak": round(screen * args.margin, 4),
        "margin": args.margin,
        "screen_peak": screened.screen_peak,
        "previous_screen_peak": params.screen_peak,
        "agreement": agreement(signals, screened, infer),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.write:
        repository.set_version_processing(config, version, screened.to_dict())
        print(f"wrote screen_peak={screened.screen_peak} to {repository.write_config(model_dir, config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
