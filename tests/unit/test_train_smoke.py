"""A few training steps of a tiny UNet1D: checkpoint format, train_args.json, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export import data, train
from export.model import load_checkpoint
from gateway.dsp.params import DEFAULT_PARAMS

TINY = [
    *("--widths", "4,8", "--dilations", "1,2", "--batch", "4", "--pool", "4", "--refresh", "2"),
    *("--refresh-count", "2", "--seed", "3", "--save-every", "3", "--quiet", "--threads", "1"),
]


def _run(out: Path, *extra: str) -> None:
    assert train.main(["--out", str(out), "--steps", "6", *TINY, *extra]) == 0


def test_checkpoint_and_args(tmp_path: Path) -> None:
    _run(tmp_path / "a")
    model, meta = load_checkpoint(tmp_path / "a" / train.CHECKPOINT)
    assert meta["source"] == "pd-gateway" and meta["step"] == 6 and meta["final"] is True
    assert meta["widths"] == (4, 8) and meta["dilations"] == (1, 2)
    assert meta["processing"] == DEFAULT_PARAMS.to_dict()
    args = json.loads((tmp_path / "a" / train.ARGS_FILE).read_text())
    assert args["steps"] == 6 and args["parameters"]["widths"] == [4, 8]
    assert "export.train" in args["command"] and "--steps 6" in args["command"]
    assert args["wall_time_s"] >= 0 and np.isfinite(args["final_loss_mean50"])
    with torch.inference_mode():
        y = model(torch.zeros(2, 1, DEFAULT_PARAMS.window))
    assert y.shape == (2, 1, DEFAULT_PARAMS.window)


def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    _run(tmp_path / "full")
    _run(tmp_path / "split", "--stop-after", "3")
    assert torch.load(tmp_path / "split" / train.CHECKPOINT, weights_only=True)["step"] == 3
    assert train.main(["--out", str(tmp_path / "split"), "--resume", "--quiet"]) == 0
    full = torch.load(tmp_path / "full" / train.CHECKPOINT, weights_only=True)
    split = torch.load(tmp_path / "split" / train.CHECKPOINT, weights_only=True)
    assert split["step"] == 6
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key


def test_device_is_checked_recorded_and_not_part_of_the_run(tmp_path: Path) -> None:
    """--device auto trains where it can and says where; a missing GPU is an error, not a CPU run."""
    _run(tmp_path / "auto", "--device", "auto")
    args = json.loads((tmp_path / "auto" / train.ARGS_FILE).read_text())
    assert args["device"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0))
    assert "device" not in args["parameters"]  # a resume may run elsewhere: the run is the same run
    for bad, match in (("xla", "only cpu and cuda"), ("gpu0", "not a device name")):
        with pytest.raises(ValueError, match=match):
            train.resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            _run(tmp_path / "cuda", "--device", "cuda")
        assert not (tmp_path / "cuda" / train.CHECKPOINT).exists()


def test_batches_are_biased_towards_pulses() -> None:
    items = [data.training_item(0, i, DEFAULT_PARAMS) for i in range(6)]
    assert any(it.centres.size for it in items)
    rng = np.random.default_rng(0)
    x, y = data.sample_batch(rng, items, 64, DEFAULT_PARAMS.window, event_fraction=1.0)
    with_pd = [it for it in items if it.mask.any()]
    assert x.shape == y.shape == (64, 1, DEFAULT_PARAMS.window) and with_pd
    assert np.isfinite(x).all() and set(np.unique(y)) <= {0.0, 1.0}
    _, y_random = data.sample_batch(np.random.default_rng(0), items, 64, DEFAULT_PARAMS.window, 0.0)
    assert y.sum() > y_random.sum()  # centring on pulses finds more PD samples than random windows


def test_unknown_processing_override_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_such_param"):
        _run(tmp_path / "bad", "--set", "no_such_param=1")
    with pytest.raises(ValueError, match="JSON"):
        _run(tmp_path / "bad", "--set", "threshold=oops")


def test_low_snr_oversampling_draws_noisy_items() -> None:
    """Fraction 1: every signal gets white noise in the low-SNR range. Fraction 0 changes nothing."""
    low = [data.training_item(0, i, DEFAULT_PARAMS, data.LowSnr(1.0, (-2.0, 1.0))) for i in range(8)]
    assert all(it.snr_db is not None and -2.0 <= it.snr_db <= 1.0 for it in low)
    plain = [data.training_item(0, i, DEFAULT_PARAMS) for i in range(8)]
    off = [data.training_item(0, i, DEFAULT_PARAMS, data.LowSnr(0.0)) for i in range(8)]
    assert all(np.array_equal(a.x, b.x) and a.snr_db == b.snr_db for a, b in zip(plain, off, strict=True))
    assert any(it.snr_db is None or not -2.0 <= it.snr_db <= 1.0 for it in plain)


def test_stem_and_low_snr_flags_reach_the_checkpoint(tmp_path: Path) -> None:
    _run(tmp_path / "s", "--stem-kernel", "5", "--stem-channels", "3", "--low-snr-fraction", "0.5")
    _, meta = load_checkpoint(tmp_path / "s" / train.CHECKPOINT)
    assert (meta["stem_kernel"], meta["stem_channels"]) == (5, 3)
    assert meta["hyperparameters"]["low_snr_fraction"] == 0.5


def test_fresh_noise_redraws_only_the_white_noise() -> None:
    params = DEFAULT_PARAMS.replace(normalisation="signal_mad", mad_scale=4.0, max_input=20.0)
    items = [
        data.training_item(0, i, params, data.LowSnr(1.0, (0.0, 5.0)), fresh_noise=True) for i in range(8)
    ]
    fresh = [it for it in items if it.clean is not None]
    assert fresh  # float signals with white noise keep their clean part (int8 ones cannot)
    for it in fresh:
        residual = it.x - it.clean  # the stored input is the clean part plus its own noise draw
        assert np.std(residual) == pytest.approx(it.noise_std, rel=0.05)
    for k, it in enumerate(fresh):  # one window: same position and label, a new noise draw
        a, ya = data.sample_batch(np.random.default_rng(k), [it], 1, params.window, 0.5, fresh_noise=True)
        b, yb = data.sample_batch(np.random.default_rng(k), [it], 1, params.window, 0.5, fresh_noise=False)
        assert np.array_equal(ya, yb) and not np.array_equal(a, b)
        assert np.std(a - b) == pytest.approx(np.sqrt(2) * it.noise_std, rel=0.15)
    for other in (params.replace(soft_clip=3.0), params.replace(carrier_threshold=8.0)):
        with pytest.raises(ValueError, match="fresh noise"):
            data.training_item(0, 3, other, data.LowSnr(1.0), fresh_noise=True)
    for bad in ((1.5, (0.0, 5.0)), (0.5, (5.0,)), (0.5, (5.0, 1.0))):
        with pytest.raises(ValueError, match="low-snr"):
            data.LowSnr(*bad)


SHIPPED = Path(__file__).resolve().parents[2] / "model_repository" / "pd_unet1d" / "1" / "model.onnx"


def test_distillation_follows_the_teacher_only_where_the_label_is_0() -> None:
    logits = torch.zeros(1, 1, 4, requires_grad=True)  # p = 0.5 everywhere
    target = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    teacher = torch.tensor([[[0.9, 0.1, 0.9, 0.1]]])
    base = train.loss_fn(logits, target, 3.0, 0.0)
    with_teacher = train.loss_fn(logits, target, 3.0, 0.0, teacher, 2.0)
    grad_base = torch.autograd.grad(base, logits)[0][0, 0]
    grad = torch.autograd.grad(with_teacher, logits)[0][0, 0] - grad_base
    # BCE's gradient is (p - soft) / n: the teacher's 0.9 pulls a negative sample up, its 0.1 down,
    # and on PD samples the label wins whatever the teacher says
    assert grad.tolist() == pytest.approx([2 * (0.5 - 0.9) / 4, 2 * (0.5 - 0.1) / 4, -1 / 4, -1 / 4])
    off = train.loss_fn(logits, target, 3.0, 0.0, teacher, 0.0)
    assert off.item() == pytest.approx(base.item())


WIDE = ("--widths", "8,16,32,64", "--dilations", "1,2,4,8")  # the shipped model's architecture
SMALL = [a for a in TINY if a not in ("--widths", "4,8", "--dilations", "1,2")]


def test_distillation_teacher_is_the_frozen_onnx_model_and_feeds_the_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} is not in this checkout")
    teacher_file = tmp_path / "teacher.onnx"
    teacher_file.write_bytes(SHIPPED.read_bytes())
    argv = ["--out", str(tmp_path / "d"), "--steps", "2", *SMALL, *WIDE, "--distill-onnx", str(teacher_file)]
    args = train._parser().parse_args([*argv, "--distill-weight", "1.5"])
    teacher = train.load_teacher(args, 1024)
    assert teacher is not None and not teacher.training
    assert all(not q.requires_grad for q in teacher.parameters())
    from export.onnx_init import parity

    x = np.random.default_rng(1).standard_normal((2, 1, 1024)).astype(np.float32)
    assert parity(teacher, SHIPPED, x) < 1e-4
    seen: list[tuple[bool, float]] = []
    real_loss = train.loss_fn

    def spy(*a: object) -> torch.Tensor:
        seen.append((a[4] is not None, float(a[5])))  # type: ignore[arg-type]
        return real_loss(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(train, "loss_fn", spy)
    assert train.main([*argv, "--distill-weight", "1.5"]) == 0
    assert seen == [(True, 1.5), (True, 1.5)]  # every step's loss got the teacher's probabilities
    _, meta = load_checkpoint(tmp_path / "d" / train.CHECKPOINT)
    data = meta["training_data"]
    assert (data["distill_onnx"], data["distill_weight"]) == (str(teacher_file), 1.5)
    assert data["distill_sha256"] == meta["hyperparameters"]["distill_sha256"]
    # a resume must meet the same teacher: a changed file is refused
    teacher_file.write_bytes(SHIPPED.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="not the file this run started with"):
        train.main(["--out", str(tmp_path / "d"), "--resume", "--steps", "4"])


def test_distillation_settings_are_checked(tmp_path: Path) -> None:
    _run(tmp_path / "off")
    _, meta = load_checkpoint(tmp_path / "off" / train.CHECKPOINT)
    assert meta["training_data"]["distill_onnx"] is None and meta["training_data"]["distill_weight"] == 0.0
    for extra in (
        ["--distill-weight", "1.0"],  # a weight without a teacher
        ["--distill-onnx", str(SHIPPED)],  # a teacher without a weight
        ["--distill-onnx", str(SHIPPED), "--distill-weight", "-1"],
    ):
        with pytest.raises(ValueError, match="go together"):
            _run(tmp_path / "bad", *extra)
    if SHIPPED.exists():  # the shipped file's tensors fit a UNet1D with other dilations; parity catches it
        with pytest.raises(ValueError, match="not a UNet1D of this run's architecture"):
            _run(
                tmp_path / "arch",
                *("--widths", "8,16,32,64", "--dilations", "1,1,1,1"),
                *("--distill-onnx", str(SHIPPED), "--distill-weight", "1"),
            )
