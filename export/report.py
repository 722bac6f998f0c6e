"""The Markdown report of an evaluation (export.evaluate): overall, per bucket, and the genie ceilings."""

from __future__ import annotations

from typing import Any


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """Overall table, then per-bucket F1/P/R/IoU for every detector side by side."""
    dets = {k: v for k, v in report["detectors"].items() if "all" in v}  # an empty own set has none
    names = list(dets)
    lines = [
        f"Held-out set: seed {report['heldout']['seed']}, {report['heldout']['n_signals']} signals; "
        f"collar {report['collar']} samples; IoU = micro mask IoU.",
        "",
        "| detector | precision | recall | F1 | IoU | signal MCC | true | pred |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        a = dets[name]["all"]
        lines.append(
            f"| {name} | {_fmt(a['precision'])} | {_fmt(a['recall'])} | {_fmt(a['f1'])} | {_fmt(a['iou'])} "
            f"| {_fmt(a['signal_mcc'])} | {a['n_true']} | {a['n_pred']} |"
        )
    keys = sorted({k for d in dets.values() for k in d if k != "all"})
    head = " | ".join(f"{n} F1 | {n} P | {n} R | {n} IoU" for n in names)
    lines += ["", f"| bucket | signals | true events | {head} |", "|---" * (3 + 4 * len(names)) + "|"]
    for key in keys:
        first = next(d[key] for d in dets.values() if key in d)
        cells = []
        for n in names:
            b = dets[n].get(key)
            cells.append(
                " | ".join(_fmt(b[m]) for m in ("f1", "precision", "recall", "iou"))
                if b
                else " | ".join("-" * 4)
            )
        lines.append(f"| {key} | {first['n_signals']} | {first['n_true']} | {' | '.join(cells)} |")
    lines += [
        "",
        "PD-free signals (bucket pd:free) have no true events: any region found there is a false positive.",
    ]
    if "ceiling" in report:
        lines += _ceiling_lines(report["ceiling"], report.get("ceiling_blind"), dets.get("model"))
    return "\n".join(lines) + "\n"


def _ceiling_lines(
    ceil: dict[str, Any], blind: dict[str, Any] | None, model: dict[str, Any] | None
) -> list[str]:
    """The genie matched-filter bounds per bucket, next to the model's F1."""
    g = ceil["global"]
    lines = [
        "",
        "## Ceiling: genie matched filter (export.ceiling)",
        "",
        "The genie knows each pulse's true shape and the noise level, sees only PD + white noise (no AC, "
        "carriers, interference or int8 rounding), is never charged for side lobes, and picks the best "
        "threshold for each signal after the fact. No detector should be expected above it. With one "
        f"threshold for the whole set (T = {g['threshold']}) it reaches F1 {_fmt(g['f1'])}.",
    ]
    if blind is None:
        blind = {"buckets": {}, "global_buckets": {}, "global": {}}
    else:
        bg = blind["global"]
        lines += [
            "",
            "The shape-blind genie is the same detector without each pulse's true waveform: it searches only "
            "the generic bank of the simulator's pulse family. Per signal it is a bound; with one "
            f"z-threshold for the whole set (T = {bg['threshold']}) it is a reference for an ideal "
            f"fixed-threshold detector: F1 {_fmt(bg['f1'])} "
            f"(P {_fmt(bg['precision'])}, R {_fmt(bg['recall'])}).",
        ]
    lines += [
        "",
        "| bucket | true events | genie F1 | shape-blind F1 | shape-blind, one T: F1 | P | R | model F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ["all", *sorted(k for k in ceil["buckets"] if k != "all")]:
        cells = [_fmt(ceil["buckets"][key]["f1"])]
        b, bg = blind["buckets"].get(key), blind["global_buckets"].get(key)
        cells.append(_fmt(b["f1"]) if b else "-")
        cells += [_fmt(bg[k]) for k in ("f1", "precision", "recall")] if bg else ["-"] * 3
        cells.append(_fmt(model[key]["f1"]) if model and key in model else "-")
        lines.append(f"| {key} | {ceil['buckets'][key]['n_true']} | {' | '.join(cells)} |")
    return lines


def _rounded(scores: dict[str, Any], keys: tuple[str, ...] = ("f1", "iou", "precision", "recall")) -> dict:
    return {k: round(float(scores[k]), 4) for k in keys if k in scores}


def card_metrics(report: dict[str, Any], validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model card's `pd:metrics` from an evaluation report (and a validation one): overall figures only.

    `report` and `validation` are export.evaluate JSON reports; the model's own row must be in `report`.
    """
    dets = report.get("detectors", {})
    if "model" not in dets:
        raise ValueError("the evaluation report has no 'model' detector")
    out: dict[str, Any] = {
        "collar_samples": report["collar"],
        "event_f1": round(float(dets["model"]["all"]["f1"]), 4),
        "heldout_seed": report["heldout"]["seed"],
        "heldout_signals": report["heldout"]["n_signals"],
        "model": _rounded(dets["model"]["all"]),
        "report": "docs/model.md",
    }
    if "baseline" in dets:
        out["baseline"] = _rounded(dets["baseline"]["all"])
    if "model_seedpp" in dets:
        out["model_with_seed_preprocessing"] = _rounded(dets["model_seedpp"]["all"])
    if "ceiling" in report:
        out["ceiling_genie_matched_filter"] = _rounded(report["ceiling"]["buckets"]["all"])
    if "ceiling_blind" in report:
        g = report["ceiling_blind"]["global"]
        out["ceiling_shape_blind_one_threshold"] = {**_rounded(g), "threshold": g["threshold"]}
    if "cross" in report:  # the cross-generator set (export.crossgen), per regime
        cross = report["cross"]
        out["cross_generator"] = {"seed": cross["seed"], "collar_samples": cross["collar"]}
        for regime in ("short", "long"):
            if regime in cross:
                r = cross[regime]
                pair = r["interference"].get("pair", {"fraction": 0.0})
                out["cross_generator"][regime] = {
                    **_rounded(r["scores"]["all"]),
                    "signals": r["n_signals"],
                    "false_regions_per_pd_free_signal": round(float(r["false_per_pd_free"]), 3),
                    "pairs_with_a_region": round(float(pair["fraction"]), 4),
                }
    if validation is not None:
        v = validation["detectors"]["model"]["all"]
        out["validation"] = {
            "f1": round(float(v["f1"]), 4),
            "seed": validation["heldout"]["seed"],
            "signals": validation["heldout"]["n_signals"],
        }
    return out
