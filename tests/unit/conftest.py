"""Unit-test fixtures: the shipped pd_unet1d v1 run through the gateway's own pipeline by ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.sim.simulator import SimConfig, SimulatedSignal, simulate
from gateway import repository
from gateway.dsp.params import ProcessingParams
from gateway.dsp.processing import run_pipeline

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "pd_unet1d"


@pytest.fixture(scope="session")
def detect() -> Callable[[np.ndarray], list[tuple[int, int]]]:
    """Regions [start, end) the shipped v1 finds in one signal, with the version's own processing params."""
    data = repository.processing_params_from_config(repository.read_config(MODEL_DIR), 1)
    assert data is not None
    params = ProcessingParams.from_dict(data)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL_DIR / "1" / "model.onnx"), opts)

    def run(x: np.ndarray) -> list[tuple[int, int]]:
        (res,) = run_pipeline([x], params, lambda w: session.run(None, {"signal": w})[0])
        return [(r.start, r.end) for r in res.regions]

    return run


def clean_pd_signal(seed: int, **changes: object) -> SimulatedSignal:
    """A clean 20 dB test signal: 8,192 samples, 6 PD pulses of amplitude 1 in the rising quarters of a
    3,333-sample AC, no interference; `changes` override SimConfig fields (e.g. the pulse-model mix)."""
    cfg = SimConfig(
        n_samples=8192,
        samples_per_cycle=3333.0,
        ac_amplitude=20.0,
        ac_phase_deg=0.0,
        n_pd=6,
        pd_amplitude=1.0,
        snr_db=20.0,
        **changes,  # type: ignore[arg-type]
    )
    return simulate(cfg, seed)
