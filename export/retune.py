"""Change a version's region stage (threshold, region filters, rejection rules) without new weights.

    python -m export.retune --version 1 --set threshold=0.6 --set 'phase_window=[0,90]' \
        --chosen-by runs/sweep_phase_short.json --chosen-by runs/sweep_phase_family.json

`max_input_block` may change too: it leaves every signal no longer than its block as it was. Pick the
values with export.sweep on the VALIDATION set first; `--chosen-by` files (its JSON reports) are
recorded in the model card's `pd:retuned`, with the date and the changes, so the card says how the shipped
processing was chosen. Only region-stage keys may change: the network's input (preprocessing, window) must
stay what it was trained on. Evaluate afterwards (export.evaluate) and pass its report with --metrics (no
--set needed) to refresh the card's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from export.report import card_metrics
from export.sweep import REGION_STAGE
from gateway import repository
from gateway.dsp.params import ProcessingParams, parse_overrides

#: Input params that leave every signal up to the block length as it was and change only how a long
#: signal's cap is applied. Training also saw long int8 signals (131,072-800,000 samples, capped whole), but
#: the cap rarely triggers in them (1 of 32 whole validation signals, by 2 %); short training signals
#: (4,096-32,768 samples), where it often does, stay as trained only with a block of at least 32,768.
LONG_SIGNAL_INPUT = {"max_input_block"}
MIN_INPUT_BLOCK = 32_768


def retune(
    repo: Path,
    name: str,
    version: int,
    changes: dict[str, Any],
    chosen_by: list[Path],
    metrics: dict[str, Any] | None = None,
) -> ProcessingParams:
    """Write `changes` into version `version`'s processing (config.pbtxt) and model card."""
    bad = sorted(set(changes) - REGION_STAGE - LONG_SIGNAL_INPUT)
    block = changes.get("max_input_block")
    if block is not None and block < MIN_INPUT_BLOCK:
        bad.append(f"max_input_block below {MIN_INPUT_BLOCK} (it would rescale short training signals)")
    if bad:
        raise ValueError(f"only region-stage params may change without new weights: {', '.join(bad)}")
    model_dir = repository.model_path(repo, name)
    with repository.model_lock(model_dir):
        config = repository.read_config(model_dir)
        current = repository.processing_params_from_config(config, version)
        card = repository.read_model_card(model_dir, version)
        if current is None or card is None:
            raise ValueError(f"{name} v{version} has no processing params or no model card")
        before = ProcessingParams.from_dict(current)
        params = before.replace(**changes)
        new = params.to_dict()
        repository.set_version_processing(config, version, new)
        card["pd:processing"] = new
        # compared as params (1 equals 1.0, a default equals a missing key): a run that only refreshes the
        # figures adds no history entry
        changed = sorted(k for k in changes if getattr(before, k) != getattr(params, k))
        if changed:
            earlier = card.get("pd:retuned")
            history: list[Any] = earlier if isinstance(earlier, list) else []
            history.append(
                {
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "from": {k: current.get(k) for k in changed},
                    "to": {k: new[k] for k in changed},
                    "chosen_by": [str(p) for p in chosen_by],
                }
            )
            card["pd:retuned"] = history
        if metrics is not None:
            card["pd:metrics"] = metrics
        repository.write_config(model_dir, config)
        card_path = model_dir / str(version) / repository.CARD_FILENAME
        repository.write_atomic(card_path, repository.model_card_bytes(card))
    return params


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pd-gateway retune", description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--name", default="pd_unet1d")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    p.add_argument(
        "--chosen-by", action="append", type=Path, default=[], help="export.sweep JSON report (with --set)"
    )
    p.add_argument("--metrics", type=Path, help="an export.evaluate JSON report with the new processing")
    p.add_argument("--validation-metrics", type=Path, help="the validation run's export.evaluate JSON report")
    args = p.parse_args(argv)
    if not args.set and not args.metrics:
        p.error("nothing to do: give --set (with --chosen-by) and/or --metrics")
    if args.set and not args.chosen_by:
        p.error("--set needs --chosen-by: the export.sweep reports the values were chosen on")
    try:
        for path in args.chosen_by:
            json.loads(path.read_text())["rows"]  # an export.sweep report, or fail here
        metrics = None
        if args.metrics:
            val = json.loads(args.validation_metrics.read_text()) if args.validation_metrics else None
            metrics = card_metrics(json.loads(args.metrics.read_text()), val)
        params = retune(
            args.repo, args.name, args.version, parse_overrides(args.set), args.chosen_by, metrics
        )
    except (OSError, KeyError, TypeError, ValueError, repository.RepositoryError) as e:
        print(f"retune failed, nothing written: {e}", file=sys.stderr)
        return 1
    print(f"{args.name} v{args.version}: {params.to_json()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
