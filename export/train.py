"""Train a UNet1D PD segmenter on simulated signals (CPU, seeded, resumable).

    python -m export.train --out runs/w16 --widths 16,32,64,128 --steps 3000 --seed 0
    python -m export.train --out runs/w16 --resume          # continue from runs/w16/checkpoint.pt

Data (export/data.py): signals from the one simulator (export.sim.simulator), preprocessed WHOLE with the
model's ProcessingParams exactly like inference (preprocess_batch), then cut into random windows; the label
is the simulator's PD mask over the window. Windows are biased towards PD pulses and interference pulses so
the model sees enough pairs/trains to learn to reject them. A pool of signals slides along the signal index
every `--refresh` steps, so the pool at any step is a function of (seed, step) and a resume rebuilds it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export.data import LowSnr, Mix, Pool, sample_batch
from export.model import UNet1D, save_checkpoint
from export.sim import simulator
from gateway.dsp.params import DEFAULT_PARAMS, ProcessingParams, parse_overrides

CHECKPOINT = "checkpoint.pt"
ARGS_FILE = "train_args.json"


def loss_fn(
    logits: torch.Tensor,
    target: torch.Tensor,
    pos_weight: float,
    dice_weight: float,
    teacher: torch.Tensor | None = None,
    distill_weight: float = 0.0,
) -> torch.Tensor:
    """BCE with pos_weight (PD samples are rare) + batch-level soft Dice (defined on PD-free windows too).

    teacher: probabilities of a reference model on the same windows (learning without forgetting): with
    distill_weight > 0 a second BCE pulls the output towards max(label, teacher), i.e. the teacher's
    answer wherever the label says "no PD" and the label wherever it says PD. A fine-tune then learns new
    pulses from the labels without drifting from the reference model's answers on everything else.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight))
    p = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    loss = bce + dice_weight * dice
    if teacher is not None and distill_weight > 0:
        soft = torch.maximum(target, teacher)
        loss = loss + distill_weight * F.binary_cross_entropy_with_logits(logits, soft)
    return loss


def _network(args: argparse.Namespace) -> UNet1D:
    """The run's UNet1D (the student, and the teacher's architecture) from its parameters."""
    return UNet1D(
        1,
        1,
        args.widths,
        args.dilations,
        stem_kernel=getattr(args, "stem_kernel", 0),
        stem_channels=getattr(args, "stem_channels", 0),
    )


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_teacher(args: argparse.Namespace, window: int) -> torch.nn.Module | None:
    """The frozen reference model of --distill-onnx (eval mode: the ONNX file's outputs), or None.

    Checked, not trusted: the network built from the run's widths/dilations/stem must reproduce the ONNX
    file (parity), and on a resume the file must be the one the run started with (its sha256, recorded in
    the run's parameters as `distill_sha256`).
    """
    path = getattr(args, "distill_onnx", None)
    weight = float(getattr(args, "distill_weight", 0.0) or 0.0)
    if weight < 0 or bool(path) != (weight > 0):
        raise ValueError("--distill-onnx and a --distill-weight > 0 go together (neither: no distillation)")
    if not path:
        return None
    from export.onnx_init import load_checked

    digest, expected = _sha256(path), getattr(args, "distill_sha256", None)
    if expected and digest != expected:
        raise ValueError(f"{path} is not the file this run started with (sha256 {expected[:12]}...)")
    args.distill_sha256 = digest
    teacher = _network(args)
    load_checked(teacher, path, window, "this run's architecture")  # BN statistics: eval mode only
    teacher.eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    return teacher


def resolve_device(name: str) -> torch.device:
    """`name` as a torch device; a CUDA device that is not there is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name!r}: not a device name (cpu, cuda, cuda:N, auto)") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: torch sees no CUDA device here (torch {torch.__version__})")
    return device


def device_name(device: torch.device) -> str:
    """What the summary records: 'cpu', or the GPU's name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _processing(args: argparse.Namespace) -> ProcessingParams:
    params = DEFAULT_PARAMS
    if args.processing:
        params = ProcessingParams.from_dict(json.loads(Path(args.processing).read_text()))
    return params.replace(**parse_overrides(args.set or []))


def one_cycle_lr(fraction: float, max_lr: float, pct_start: float = 0.15) -> float:
    """torch's OneCycle (cosine, div 25, final div 1e4) as a function of the fraction of the run done."""
    f = min(max(fraction, 0.0), 1.0)
    low = max_lr / 25.0
    if f < pct_start:
        return low + (max_lr - low) * (1.0 - math.cos(math.pi * f / pct_start)) / 2.0
    final = low / 1e4
    return final + (max_lr - final) * (1.0 + math.cos(math.pi * (f - pct_start) / (1.0 - pct_start))) / 2.0


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()}


def calibration_batch(
    args: argparse.Namespace, params: ProcessingParams, model: torch.nn.Module
) -> torch.Tensor:
    """Training-like windows (another seed's signals) to set BatchNorm statistics when fine-tuning."""
    mix = Mix(getattr(args, "profile", "short"), 0.0)
    items = Pool(args.seed + 10_000, params, 48, 0, mix=mix).at_round(0)
    x, _ = sample_batch(
        np.random.default_rng(args.seed + 10_000), items, 256, params.window, args.event_fraction
    )
    return torch.from_numpy(x)


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
                "device": args.device,  # the machine may have changed: this invocation's device
            }
        )
    if args.steps is None:
        args.steps = 3000
    params = _processing(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = resolve_device(getattr(args, "device", "cpu"))
    model = _network(args)
    if params.window % model.min_length:
        raise ValueError(f"window {params.window} must be a multiple of {model.min_length}")
    step, wall_before = 0, 0.0
    init_onnx = getattr(args, "init_onnx", None)
    if init_onnx and resume is None:  # fine-tune: start from a shipped ONNX file's weights
        from export.onnx_init import load_onnx_weights

        load_onnx_weights(model, init_onnx, calibration_batch(args, params, model))
    # before a resume restores the RNG state: building the teacher draws from torch's
    teacher = load_teacher(args, params.window)
    distill_weight = float(args.distill_weight) if teacher is not None else 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
    # built on the CPU (ONNX weights, BN calibration, the teacher's parity check), trained on `device`
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.15)
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])  # moves its state to the parameters' device
        sched.load_state_dict(resume["scheduler"])
        step, wall_before = int(resume["step"]), float(resume.get("wall_time_s", 0.0))
        rng.bit_generator.state = json.loads(resume["rng"]["numpy"])
        torch.set_rng_state(resume["rng"]["torch"])
    hyper = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if k not in ("resume", "resumed_argv", "time_limit_s", "stop_after", "device")
    }
    low_snr = LowSnr(getattr(args, "low_snr_fraction", 0.0), tuple(getattr(args, "low_snr_db", LowSnr().db)))
    fresh = bool(getattr(args, "fresh_noise", False))
    mix = Mix(getattr(args, "profile", "short"), getattr(args, "long_fraction", 0.0))
    pool = Pool(args.seed, params, args.pool, args.refresh_count, low_snr, fresh, mix)
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
                "simulator": "export.sim.simulator",
                "profile": mix.profile,
                "long_fraction": mix.long_fraction,
                "init_onnx": str(init_onnx) if init_onnx else None,
                "distill_onnx": getattr(args, "distill_onnx", None),  # None unless distilling (checked)
                "distill_sha256": getattr(args, "distill_sha256", None),
                "distill_weight": distill_weight,
                "seed": args.seed,
                "signals_seen": (step // args.refresh) * args.refresh_count + args.pool,
                "windows_seen": step * args.batch,
                "window": params.window,
            },
        )

    model.train()
    bar = tqdm(total=args.steps, initial=step, desc=f"train w{args.widths[0]}", disable=args.quiet)
    budget = float(getattr(args, "time_budget_s", 0.0) or 0.0)
    while step < args.steps:
        if budget:  # the schedule runs on wall time: the LR anneals to ~0 exactly when the budget is spent
            done = (wall_before + time.monotonic() - t0) / budget
            if done >= 1.0:
                save(final=True)
                break
            for group in opt.param_groups:
                group["lr"] = one_cycle_lr(done, args.lr)
        stop_after = getattr(args, "stop_after", 0)
        if (args.time_limit_s and time.monotonic() - t0 > args.time_limit_s) or (
            stop_after and step - start_step >= stop_after
        ):
            save(final=False)  # stop early; --resume continues exactly here
            break
        if step % args.refresh == 0 and step:
            items = pool.at_round(step // args.refresh)
        x, y = sample_batch(rng, items, args.batch, params.window, args.event_fraction, fresh)
        xt = torch.from_numpy(x).to(device)
        soft = None
        if teacher is not None:
            with torch.no_grad():
                soft = torch.sigmoid(teacher(xt))
        yt = torch.from_numpy(y).to(device)
        loss = loss_fn(model(xt), yt, args.pos_weight, args.dice_weight, soft, distill_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not budget:
            sched.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
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
        "device": device_name(device),
    }
    (out / ARGS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pd-gateway train", description=__doc__.split("\n")[0])
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
    p.add_argument(
        "--profile", choices=(*simulator.PROFILES, "both"), default="short", help="interference profile"
    )
    p.add_argument("--long-fraction", type=float, default=0.0, help="share of long int8 VSB-format signals")
    p.add_argument("--init-onnx", help="fine-tune: start from this ONNX model's weights (same widths)")
    p.add_argument(
        "--distill-onnx",
        help="reference model (same widths) whose answers the fine-tune keeps where the label is 0",
    )
    p.add_argument("--distill-weight", type=float, default=0.0, help="weight of that term (0: off)")
    p.add_argument("--pool", type=int, default=96, help="signals held in memory")
    p.add_argument("--refresh", type=int, default=25, help="steps between pool refreshes")
    p.add_argument("--refresh-count", type=int, default=12, help="signals replaced per refresh")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or auto (cuda when one is visible); the checkpoint loads on any device",
    )
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--processing", help="JSON file of ProcessingParams (default: DEFAULT_PARAMS)")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override one processing param")
    p.add_argument("--time-limit-s", type=float, default=0.0, help="save and stop after this long (0 = off)")
    p.add_argument(
        "--time-budget-s",
        type=float,
        default=0.0,
        help="OneCycle over wall time: the run ends, annealed, after this long (--steps is then a cap)",
    )
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
