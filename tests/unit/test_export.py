"""ONNX export: a seed-format checkpoint goes through strict load, export, parity and an atomic write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

torch = pytest.importorskip("torch")

from export.export_onnx import ParityError, export_checkpoint, main  # noqa: E402
from export.model import UNet1D, save_checkpoint  # noqa: E402
from export.quantize import calibration_windows  # noqa: E402
from gateway import repository as r  # noqa: E402
from gateway.dsp.params import DEFAULT_PARAMS  # noqa: E402


def _informative(model: UNet1D) -> UNet1D:
    """Random weights give logits ~0 (p ~ 0.5, where float error hides); make every part matter."""
    torch.manual_seed(0)
    with torch.no_grad():
        model.attention.gamma.fill_(0.7)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        logits = model.eval()(torch.randn(4, 1, 256))
        scale = 3.0 / float(logits.std())  # logits centred on 0 with std ~3
        model.final_conv.weight.mul_(scale)
        model.final_conv.bias.sub_(float(logits.mean())).mul_(scale)
    return model


@pytest.fixture(scope="module")
def seed_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised seed-width model saved the way the seed saved best_model.pth."""
    path = tmp_path_factory.mktemp("seed") / "best_model.pth"
    torch.save(_informative(UNet1D()).state_dict(), path)
    return path


def test_seed_checkpoint_exports_with_parity(seed_checkpoint: Path, tmp_path: Path) -> None:
    result = export_checkpoint(seed_checkpoint, tmp_path / "repo", window=256, profile="seed")
    model_dir = tmp_path / "repo" / "pd_unet1d"
    assert result.version == 1 and result.onnx_path == model_dir / "1" / "model.onnx"
    assert result.total_parameters == 12_130_242
    assert result.max_abs_diff <= 1e-4
    assert {"random_b1", "random_b16", "simulated_b4", "random_len512_b2"} <= set(result.parity)

    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.backend == "onnxruntime" and list(config.input[0].dims) == [1, 256]
    processing = r.processing_params_from_config(config, 1)
    assert processing is not None and (processing["window"], processing["hop"]) == (256, 128)
    assert processing["normalisation"] == "batch_max"  # the seed profile
    card = json.loads((model_dir / "1" / "model_card.json").read_text())
    assert card["mlm:total_parameters"] == 12_130_242 and card["mlm:pretrained"] is True
    assert card["pd:processing"] == processing and card["pd:onnx_opset"] == 17

    # The written file is what Triton serves: batch axis dynamic, probabilities in [0, 1], not constant.
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("signal", "probability")
    probs = session.run(None, {"signal": np.random.default_rng(1).standard_normal((3, 1, 256), np.float32)})[
        0
    ]
    assert probs.shape == (3, 1, 256) and probs.min() >= 0.0 and probs.max() <= 1.0
    assert probs.std() > 0.05


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    ckpt = tmp_path / "best_model.pth"
    torch.save(_informative(UNet1D(widths=(8, 16, 32, 64))).state_dict(), ckpt)
    with pytest.raises(ParityError, match="max abs diff"):
        export_checkpoint(ckpt, tmp_path / "repo", window=256, profile="seed", parity_tol=1e-12)
    model_dir = tmp_path / "repo" / "pd_unet1d"
    assert not model_dir.exists() or list(model_dir.iterdir()) == []


def test_window_must_fit_the_pooling(seed_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        export_checkpoint(seed_checkpoint, tmp_path / "repo", window=200, profile="seed")


def test_cli_uses_the_checkpoint_processing_and_serving_flags(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "ckpt.pt"
    processing = DEFAULT_PARAMS.replace(window=128, hop=96, halo=16).to_dict()
    save_checkpoint(
        ckpt, _informative(UNet1D(widths=(8, 16, 32))), processing=processing, metrics={"f1": 0.8}
    )
    repo = tmp_path / "repo"
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--gpu", "--instances", "2"]) == 0
    assert "parity max abs diff" in capsys.readouterr().out
    model_dir = repo / "pd_unet1d"
    config = r.read_config(model_dir)
    assert (config.instance_group[0].kind, config.instance_group[0].count) == (
        mc.ModelInstanceGroup.KIND_GPU,
        2,
    )
    assert r.processing_params_from_config(config, 1) == processing
    assert r.read_model_card(model_dir, 1)["pd:metrics"] == {"f1": 0.8}

    # A second export becomes version 2 and keeps the existing serving settings.
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--window", "256"]) == 0
    config = r.read_config(model_dir)
    assert r.list_versions(model_dir) == [1, 2]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert list(config.input[0].dims) == [1, -1]  # versions 1 and 2 differ in window
    v2 = r.processing_params_from_config(config, 2)
    assert v2 is not None and (v2["window"], v2["hop"], v2["halo"]) == (256, 192, 32)

    # --set overrides single params of the checkpoint's processing for this version only.
    sets = ["--set", "align_last_window=true", "--set", "carrier_threshold=8.0"]
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), *sets]) == 0
    v3 = r.processing_params_from_config(r.read_config(model_dir), 3)
    assert v3 == {**processing, "align_last_window": True, "carrier_threshold": 8.0}

    # Refusals exit non-zero and write nothing.
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--set", "no_such=1"]) == 1
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--set", "threshold=oops"]) == 1
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--version", "2"]) == 1
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--parity-tol", "1e-12"]) == 1
    assert r.list_versions(model_dir) == [1, 2, 3]

    # --metrics puts an evaluation report's figures into the card instead of the checkpoint's own.
    report = {
        "collar": 10,
        "heldout": {"seed": 5, "n_signals": 2},
        "detectors": {"model": {"all": {"f1": 0.5, "precision": 0.25, "recall": 1.0, "iou": 0.1}}},
    }
    (tmp_path / "eval.json").write_text(json.dumps(report))
    flags = ["--metrics", str(tmp_path / "eval.json"), "--version", "3", "--overwrite"]
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), *flags]) == 0
    card = r.read_model_card(model_dir, 3)["pd:metrics"]
    assert card["event_f1"] == 0.5 and card["model"]["precision"] == 0.25 and "validation" not in card
    assert main(["--checkpoint", str(ckpt), "--repo", str(repo), "--validation-metrics", "x.json"]) == 1
    (tmp_path / "bad.json").write_text(json.dumps({"collar": 10}))
    assert (
        main(["--checkpoint", str(ckpt), "--repo", str(repo), "--metrics", str(tmp_path / "bad.json")]) == 1
    )
    assert r.list_versions(model_dir) == [1, 2, 3]


def test_int8_export_writes_a_quantised_graph_close_to_fp32(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    processing = DEFAULT_PARAMS.replace(window=128, hop=96, halo=16).to_dict()
    save_checkpoint(ckpt, _informative(UNet1D(widths=(8, 16, 32))), processing=processing)
    repo = tmp_path / "repo"
    fp32 = export_checkpoint(ckpt, repo)
    int8 = export_checkpoint(ckpt, repo, int8=True)
    graph = r.model_path(repo, "pd_unet1d") / str(int8.version) / r.MODEL_FILENAME
    ops = {n.op_type for n in onnx.load(str(graph)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    card = r.read_model_card(r.model_path(repo, "pd_unet1d"), int8.version)
    assert card["pd:quantization"]["format"] == "QDQ"
    x = calibration_windows(DEFAULT_PARAMS.replace(window=128, hop=96, halo=16), 4, seed=1)[:64]
    run = [ort.InferenceSession(str(p.onnx_path)).run(None, {"signal": x})[0] for p in (fp32, int8)]
    assert run[1].shape == run[0].shape and np.all((run[1] >= 0) & (run[1] <= 1))
    # 8-bit activations on random weights: near, not equal (the real model's F1: export.quantize)
    assert float(np.mean(np.abs(run[0] - run[1]))) < 0.15
