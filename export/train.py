"""Train a UNet1D PD segmenter on simulated signals (CPU, seeded, resumable).

    python -m export.train --out runs/w16 --widths 16,32,64,128 --steps 3000 --seed 0
    python -m export.train --out runs/w16 --resume          # continue from runs/w16/checkpoint.pt

Data: signals from the one simulator (gateway.dsp.simulator), preprocessed WHOLE with the model's
ProcessingParams exactly like inference (preprocess_batch), then cut into random windows; the label is the
simulator's PD mask over the window. Windows are biased towards PD pulses and interference pulses so the
model sees enough pairs/trains to learn to reject them. A pool of signals slides along the signal index
every `--refresh` steps, so the pool at any step is a function of (seed, step) and a resume rebuilds it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export.model import UNet1D, save_checkpoint
from gateway.dsp.params import DEFAULT_PARAMS, ProcessingParams, parse_overrides
from gateway.dsp.processing import preprocess_batch
from gateway.dsp.simulator import random_config, simulate

CHECKPOINT = "checkpoint.pt"
ARGS_FILE = "train_args.json"
MIN_SAMPLES_PER_CYCLE = 2000.0  # a faster AC survives the 0.02 high-pass and would swamp the pulses


@dataclass
class Item:
    """One preprocessed training signal: model input, label, and centres of PD/interference pulses.

    With fresh noise, `clean` is the same input without its white noise and `noise_std` that noise's level
    in input units, so every window can be given a new noise draw.
    """

    x: np.ndarray
    mask: np.ndarray
    centres: np.ndarray
    snr_db: float | None = None
    clean: np.ndarray | None = None
    noise_std: float = 0.0


@dataclass(frozen=True)
class LowSnr:
    """Oversample hard signals: `fraction` of training signals get white noise at an SNR in `db`."""

    fraction: float = 0.0
    db: tuple[float, float] = (-3.0, 12.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0 or len(self.db) != 2 or self.db[0] > self.db[1]:
            raise ValueError(
                "--low-snr-fraction must be in [0, 1] and --low-snr-db two values lo,hi with lo <= hi"
            )


def training_item(
    seed: int, index: int, params: ProcessingParams, low_snr: LowSnr = LowSnr(), fresh_noise: bool = False
) -> Item:
    """Signal `index` of training stream `seed`: regime, length and AC speed drawn per item.

    fresh_noise: also keep the signal without its white noise (float signals only: int8 rounding mixes
    them), scaled exactly like the input. Only for preprocessing that is a filter and one scale factor.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    u = rng.random()
    n = int(rng.integers(8192, 32769))
    snr = None  # drawn by random_config, unless this item is one of the oversampled low-SNR ones
    if low_snr.fraction > 0 and rng.random() < low_snr.fraction:
        snr = float(rng.uniform(*low_snr.db))
    if u < 0.2:  # seed-like: the seed's ~3,300-sample AC period and its scale
        cfg = random_config(rng, regime="seed", n_samples=n, snr_db=snr)
    elif u < 0.35:  # a VSB-like slice: int8, 40 MS/s, 800,000 samples per cycle
        cfg = random_config(rng, regime="vsb", n_samples=n, snr_db=snr)
    else:
        spc = math.exp(rng.uniform(math.log(MIN_SAMPLES_PER_CYCLE), math.log(1e6)))
        cfg = random_config(rng, regime="mixed", n_samples=n, samples_per_cycle=spc, snr_db=snr)
    sim = simulate(cfg, int(rng.integers(0, 2**63 - 1)), return_components=fresh_noise)
    pre, _ = preprocess_batch([sim.signal], params)
    centres = [(p.start + p.end) // 2 for p in sim.pulses] + [
        (i.start + i.end) // 2 for i in sim.interference
    ]
    item = Item(pre[0], sim.mask, np.asarray(centres, dtype=np.int64), cfg.snr_db)
    if fresh_noise and sim.components is not None and sim.noise_std > 0 and not cfg.quantize_int8:
        if params.clip is not None or params.soft_clip is not None or params.carrier_threshold is not None:
            # carrier removal picks frequencies from the signal itself: clean and noisy inputs would differ
            raise ValueError("fresh noise needs preprocessing that is a filter and one scale factor")
        linear = params.replace(normalisation="none", max_input=None)
        (filtered,), _ = preprocess_batch([sim.signal], linear)
        (clean,), _ = preprocess_batch([sim.signal - sim.components["noise"]], linear)
        peak = float(np.max(np.abs(item.x)))
        if peak > 0:
            scale = float(np.max(np.abs(filtered))) / peak  # what the normalisation divided by
            item.clean, item.noise_std = (clean / scale).astype(np.float32), sim.noise_std / scale
    return item


class Pool:
    """Signals [r*refresh_count, r*refresh_count + size) at refresh round r; items are cached by index."""

    def __init__(
        self,
        seed: int,
        params: ProcessingParams,
        size: int,
        refresh_count: int,
        low_snr: LowSnr = LowSnr(),
        fresh_noise: bool = False,
    ) -> None:
        self.seed, self.params, self.size, self.refresh_count = seed, params, size, refresh_count
        self.low_snr, self.fresh_noise = low_snr, fresh_noise
        self.items: dict[int, Item] = {}

    def at_round(self, r: int) -> list[Item]:
        wanted = range(r * self.refresh_count, r * self.refresh_count + self.size)
        self.items = {
            i: self.items.get(i) or training_item(self.seed, i, self.params, self.low_snr, self.fresh_noise)
            for i in wanted
        }
        return list(self.items.values())


def sample_batch(
    rng: np.random.Generator,
    items: list[Item],
    batch: int,
    window: int,
    event_fraction: float,
    fresh_noise: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """[batch, 1, W] inputs and labels; `event_fraction` of windows hold a PD or interference pulse.

    fresh_noise: items that keep their clean signal get a new white-noise draw at their own level in every
    window, so the network never sees the same noise twice and cannot learn it by heart.
    """
    xs = np.zeros((batch, 1, window), np.float32)
    ys = np.zeros((batch, 1, window), np.float32)
    for b in range(batch):
        item = items[int(rng.integers(len(items)))]
        n = item.x.size
        hi = max(n - window, 0)
        if item.centres.size and rng.random() < event_fraction:
            c = int(item.centres[int(rng.integers(item.centres.size))])
            start = int(np.clip(c - int(rng.integers(16, window - 16)), 0, hi))
        else:
            start = int(rng.integers(hi + 1))
        seg = slice(start, start + window)
        m = item.x[seg].size
        xs[b, 0, :m], ys[b, 0, :m] = item.x[seg], item.mask[seg]
        if fresh_noise and item.clean is not None:
            xs[b, 0, :m] = item.clean[seg] + item.noise_std * rng.standard_normal(m)
    return xs, ys


def loss_fn(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float, dice_weight: float
) -> torch.Tensor:
    """BCE with pos_weight (PD samples are rare) + batch-level soft Dice (defined on PD-free windows too)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight))
    p = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + dice_weight * dice


def _parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _processing(args: argparse.Namespace) -> ProcessingParams:
    params = DEFAULT_PARAMS
    if args.processing:
        params = ProcessingParams.from_dict(json.loads(Path(args.processing).read_text()))
    return params.replace(**parse_overrides(args.set or []))


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()}


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) training; returns the summary also written to train_args.json."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    resume = None
    if args.resume and ckpt_path.exists():
        resume = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        # The stored run's parameters win (the schedule's length included): a resume continues that run.
        stored = resume["hyperparameters"]
        args = argparse.Namespace(
            **{
                **stored,
                "out": args.out,  # the run directory may have been moved since
                "resume": True,
                "resumed_argv": args.argv,
                "time_limit_s": args.time_limit_s,
                "stop_after": args.stop_after,
            }
        )
    if args.steps is None:
        args.steps = 3000
    params = _processing(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = UNet1D(
        1,
        1,
        args.widths,
        args.dilations,
        stem_kernel=getattr(args, "stem_kernel", 0),
        stem_channels=getattr(args, "stem_channels", 0),
    )
    if params.window % model.min_length:
        raise ValueError(f"window {params.window} must be a multiple of {model.min_length}")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.15)
    step, wall_before = 0, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        step, wall_before = int(resume["step"]), float(resume.get("wall_time_s", 0.0))
        rng.bit_generator.state = json.loads(resume["rng"]["numpy"])
        torch.set_rng_state(resume["rng"]["torch"])
    hyper = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if k not in ("resume", "resumed_argv", "time_limit_s", "stop_after")
    }
    low_snr = LowSnr(getattr(args, "low_snr_fraction", 0.0), tuple(getattr(args, "low_snr_db", LowSnr().db)))
    fresh = bool(getattr(args, "fresh_noise", False))
    pool = Pool(args.seed, params, args.pool, args.refresh_count, low_snr, fresh)
    t0, losses, start_step = time.monotonic(), [], step
    items = pool.at_round(step // args.refresh)

    def save(final: bool) -> None:
        wall = wall_before + time.monotonic() - t0
        save_checkpoint(
            ckpt_path,
            model,
            processing=params.to_dict(),
            step=step,
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            rng=_rng_state(rng),
            hyperparameters=hyper,
            wall_time_s=wall,
            final=final,
            training_data={
                "simulator": "gateway.dsp.simulator",
                "seed": args.seed,
                "signals_seen": (step // args.refresh) * args.refresh_count + args.pool,
                "windows_seen": step * args.batch,
                "window": params.window,
            },
        )

    model.train()
    bar = tqdm(total=args.steps, initial=step, desc=f"train w{args.widths[0]}", disable=args.quiet)
    while step < args.steps:
        stop_after = getattr(args, "stop_after", 0)
        if (args.time_limit_s and time.monotonic() - t0 > args.time_limit_s) or (
            stop_after and step - start_step >= stop_after
        ):
            save(final=False)  # stop early; --resume continues exactly here
            break
        if step % args.refresh == 0 and step:
            items = pool.at_round(step // args.refresh)
        x, y = sample_batch(rng, items, args.batch, params.window, args.event_fraction, fresh)
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y), args.pos_weight, args.dice_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if step % args.save_every == 0 or step == args.steps:
            save(final=step == args.steps)
    bar.close()
    wall = wall_before + time.monotonic() - t0
    summary = {
        "command": shlex.join([sys.executable, "-m", "export.train", *args.argv]),
        "resumed_with": getattr(args, "resumed_argv", None),
        "parameters": hyper,
        "processing": params.to_dict(),
        "steps": step,
        "final_loss_mean50": float(np.mean(losses[-50:])) if losses else None,
        "wall_time_s": round(wall, 1),
        "torch_version": torch.__version__,
    }
    (out / ARGS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="run directory (checkpoint.pt, train_args.json)")
    p.add_argument("--widths", type=_parse_ints, default=(16, 32, 64, 128))
    p.add_argument("--dilations", type=_parse_ints, default=(1, 2, 4, 8))
    p.add_argument("--stem-kernel", type=int, default=0, help="taps of the optional long-filter front end")
    p.add_argument("--stem-channels", type=int, default=0, help="filters in that front end (0 = no stem)")
    p.add_argument("--steps", type=int, default=None, help="total steps (default 3000)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="OneCycle peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--pos-weight", type=float, default=3.0, help="BCE weight of PD samples")
    p.add_argument("--dice-weight", type=float, default=1.0)
    p.add_argument("--event-fraction", type=float, default=0.65, help="windows centred on a pulse")
    p.add_argument("--low-snr-fraction", type=float, default=0.0, help="share of low-SNR signals")
    p.add_argument("--low-snr-db", type=_parse_floats, default=LowSnr().db, help="low SNR range, dB: lo,hi")
    p.add_argument("--fresh-noise", action="store_true", help="a new white-noise draw in every window")
    p.add_argument("--pool", type=int, default=96, help="signals held in memory")
    p.add_argument("--refresh", type=int, default=25, help="steps between pool refreshes")
    p.add_argument("--refresh-count", type=int, default=12, help="signals replaced per refresh")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--processing", help="JSON file of ProcessingParams (default: DEFAULT_PARAMS)")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override one processing param")
    p.add_argument("--time-limit-s", type=float, default=0.0, help="save and stop after this long (0 = off)")
    p.add_argument("--stop-after", type=int, default=0, help="save and stop after this many steps (0 = off)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    summary = train(args)
    print(json.dumps({k: summary[k] for k in ("steps", "final_loss_mean50", "wall_time_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
