"""Issue 11: the twin rule (interference rejection after thresholding) and fine-tuning from ONNX weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.dsp.params import ProcessingParams
from gateway.dsp.regions import find_region_arrays, has_twin

MODEL = Path(__file__).resolve().parents[2] / "model_repository" / "pd_unet1d" / "1" / "model.onnx"


def _pulse(n: int, at: int, amp: float, width: float = 3.0) -> np.ndarray:
    t = np.arange(n) - at
    return amp * np.where(t >= 0, np.exp(-np.clip(t, 0, None) / width), 0.0)


def test_twin_rule_drops_the_pair_and_keeps_a_unipolar_pulse() -> None:
    n = 400
    x = (
        _pulse(n, 100, 5.0, 1.0) - _pulse(n, 104, 4.5, 1.0) + _pulse(n, 300, 5.0)
    )  # a pair at 100, a PD at 300
    prob = np.zeros(n, np.float32)
    prob[98:112] = prob[298:310] = 0.9
    off = ProcessingParams(min_region_samples=3)
    on = off.replace(twin_window=8, twin_ratio=0.8)
    assert find_region_arrays(prob, x, off).start.tolist() == [98, 298]
    assert find_region_arrays(prob, x, on).start.tolist() == [298]  # default off: versions unchanged
    # a twin beyond the window, or smaller than the ratio, is not a twin
    assert not has_twin(x, np.array([300]), 8, 0.8)[0]
    assert has_twin(x, np.array([100]), 8, 0.8)[0] and not has_twin(x, np.array([100]), 2, 0.8)[0]
    assert not has_twin(x, np.array([100]), 8, 0.95)[0]


def test_twin_params_are_validated() -> None:
    with pytest.raises(ValueError, match="twin"):
        ProcessingParams(twin_window=-1)
    with pytest.raises(ValueError, match="twin"):
        ProcessingParams(twin_ratio=1.5)
    with pytest.raises(ValueError, match="wrong type"):
        ProcessingParams.from_dict({"twin_window": 2.5})


def test_onnx_weights_load_back_into_the_torch_model_exactly() -> None:
    torch = pytest.importorskip("torch")
    from export.model import UNet1D
    from export.onnx_init import load_onnx_weights, parity

    torch.manual_seed(0)
    model = UNet1D(1, 1, (8, 16, 32, 64), (1, 2, 4, 8))
    calib = torch.randn(16, 1, 1024)
    load_onnx_weights(model, MODEL, calib)
    x = np.random.default_rng(0).standard_normal((4, 1, 1024)).astype(np.float32)
    assert parity(model, MODEL, x) < 1e-4
    # training-mode BatchNorm on the calibration batch itself gives the same function
    model.train()
    with torch.no_grad():
        train_out = torch.sigmoid(model(calib))
    model.eval()
    with torch.no_grad():
        eval_out = torch.sigmoid(model(calib))
    assert float(torch.max(torch.abs(train_out - eval_out))) < 1e-3
