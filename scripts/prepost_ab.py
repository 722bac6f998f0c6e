"""Pre + post CPU time per 800k signal of one code tree, for A/B runs against an older commit.

    git worktree add /tmp/old f219c12                        # the code before issue 12
    python scripts/prepost_ab.py --save /tmp/ab               # the bench's 4 signals and v1's params, once
    for i in 1 2 3; do for t in /tmp/old .; do
        taskset -c 1 python scripts/prepost_ab.py --tree $t --load /tmp/ab; done; done

Each run imports `gateway` from --tree and times, on one thread, `run_pipeline` with a zero model plus the
AC fit (the gateway's own work per signal; the model excluded) after one untimed pass: median thread CPU ms
over the signals x 3, and per signal (the bench's third signal is the one with carriers). Params the older
tree does not know are dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


def save(out: Path) -> None:
    from export.bench import make_signals
    from gateway import repository

    out.mkdir(parents=True, exist_ok=True)
    cfg = repository.processing_params_from_config(
        repository.read_config(Path("model_repository/pd_unet1d")), 1
    )
    (out / "params.json").write_text(json.dumps(cfg))
    np.save(out / "signals.npy", np.stack(make_signals("800k", 4)))  # the bench's own 800k signals


def run(tree: Path, load: Path) -> dict[str, object]:
    sys.path.insert(0, str(tree.resolve()))
    from gateway.dsp import params as p
    from gateway.dsp.phase import estimate_ac_phase
    from gateway.dsp.processing import run_pipeline

    known = {f.name for f in dataclasses.fields(p.ProcessingParams)}
    cfg = json.loads((load / "params.json").read_text())
    params = p.ProcessingParams(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in known}
    )
    signals = list(np.load(load / "signals.npy"))

    def zero(w: np.ndarray) -> np.ndarray:
        return np.zeros(w.shape, np.float32)

    run_pipeline([signals[0]], params, zero)
    estimate_ac_phase(signals[0])
    times = []
    for _ in range(3):
        for x in signals:
            t0 = time.thread_time()
            run_pipeline([x], params, zero)
            estimate_ac_phase(x)
            times.append(time.thread_time() - t0)
    per_signal = np.median(np.reshape(times, (3, len(signals))), axis=0)
    return {
        "tree": str(tree),
        "median_ms": round(1000 * float(np.median(times)), 1),
        "n": len(times),
        "per_signal_ms": [round(1000 * float(t), 1) for t in per_signal],
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--save", type=Path, help="write the signals and params here, then exit")
    ap.add_argument("--tree", type=Path, default=Path("."), help="code tree to import gateway from")
    ap.add_argument("--load", type=Path, help="directory written by --save")
    a = ap.parse_args()
    if a.save:
        save(a.save)
    elif a.load:
        print(json.dumps(run(a.tree, a.load)))
    else:
        ap.error("--save DIR or --load DIR")
