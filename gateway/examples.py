"""Example signals for the page (`/v1/examples`) and seed 000's `/test-text`: small, seeded, made on request.

The serving package does not ship the training simulator (`export/sim`); these few signals only need to look
like the two regimes the model serves (seed 000's 7,920-sample records and 800,000-sample VSB records), with
damped PD pulses in the rising quarters of the AC cycle. Same name, same bytes, every time.
Seed 000's own test file is listed too when it is present (`SEED_TEST_DATA` or `../shared/data/`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import ExampleNotFound

# The project's checkout sits beside `shared/` (seed files) in development and CI.
DEFAULT_SEED_TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_test_dataa.npy"
SEED_FILE_EXAMPLE = "seed000-test-file"
SIMULATED_TEST_EXAMPLE = "seed-regime"


def _pd_signals(
    seed: int,
    n_signals: int,
    n_samples: int,
    samples_per_cycle: float,
    ac_amplitude: float,
    noise: float,
    pulses: list[int],
    pulse_amplitude: tuple[float, float],
    *,
    quantize_int8: bool = False,
) -> np.ndarray:
    """AC sinusoid + white noise + damped oscillatory pulses at phases 10-80 deg (positive) and 190-260 deg
    (negative); `pulses[i]` pulses in signal i (0 = PD-free). float32 [n_signals, n_samples]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples, dtype=np.float64)
    out = np.empty((n_signals, n_samples), np.float32)
    k = np.arange(48, dtype=np.float64)
    cycles = max(1, int(n_samples // samples_per_cycle))
    for i in range(n_signals):
        phase0 = rng.uniform(0.0, 2.0 * math.pi)
        x = ac_amplitude * np.sin(2.0 * math.pi * t / samples_per_cycle + phase0)
        x += rng.normal(0.0, noise, n_samples)
        for _ in range(pulses[i]):
            positive = rng.random() < 0.5
            theta = math.radians(rng.uniform(10.0, 80.0) + (0.0 if positive else 180.0))
            frac = ((theta - phase0) / (2.0 * math.pi)) % 1.0
            start = int((frac + rng.integers(0, cycles)) * samples_per_cycle)
            if n_samples < samples_per_cycle:  # a slice of a cycle: anywhere in it
                start = int(rng.integers(0, n_samples - k.size))
            if start + k.size >= n_samples:
                continue
            shape = np.exp(-k / rng.uniform(3.0, 8.0)) * np.cos(k / rng.uniform(1.5, 3.0))
            amp = rng.uniform(*pulse_amplitude) * (1.0 if positive else -1.0)
            x[start : start + k.size] += amp * shape
        if quantize_int8:
            x = np.clip(np.round(x), -128, 127)
        out[i] = x
    return out


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    description: str
    make: Callable[[], np.ndarray]
    sampling_rate_hz: float | None = None
    power_frequency_hz: float = 50.0


_SIMULATED = (
    Example(
        SIMULATED_TEST_EXAMPLE,
        "Seed regime, 7 x 7,920 samples",
        "Seed 000's record length (about 2.4 AC cycles): five signals with PD pulses, two PD-free.",
        lambda: _pd_signals(1, 7, 7920, 3333.3, 7.2e5, 800.0, [6, 3, 0, 9, 4, 0, 2], (2.0e4, 1.5e5)),
    ),
    Example(
        "vsb-800k",
        "VSB regime, 1 x 800,000 samples (int8, 40 MHz)",
        "One full 50 Hz cycle from an int8 digitiser at 40 MHz with about 30 PD pulses: zoom in to see them.",
        lambda: _pd_signals(2, 1, 800_000, 800_000.0, 30.0, 1.5, [30], (12.0, 40.0), quantize_int8=True),
        sampling_rate_hz=40e6,
    ),
    Example(
        "vsb-slices",
        "VSB regime, 4 x 50,000 samples (int8, 40 MHz)",
        "Four 1.25 ms slices of VSB records: three with PD pulses, one PD-free.",
        lambda: _pd_signals(
            3, 4, 50_000, 800_000.0, 30.0, 1.5, [40, 25, 0, 60], (12.0, 40.0), quantize_int8=True
        ),
        sampling_rate_hz=40e6,
    ),
)


class Examples:
    """The examples this gateway offers: the simulated ones, and seed 000's file when it exists."""

    def __init__(self, seed_test_data: Path | None) -> None:
        self.seed_file = seed_test_data or DEFAULT_SEED_TEST_DATA
        self._by_name = {e.name: e for e in _SIMULATED}

    def _seed_example(self) -> Example | None:
        if not self.seed_file.is_file():
            return None
        return Example(
            SEED_FILE_EXAMPLE,
            "Seed 000's test file (7 x 7,920)",
            "The file seed 000's /test and /test-text analysed; profile=seed reproduces its results.",
            lambda: _load_npy(self.seed_file),
        )

    def all(self) -> list[Example]:
        seed = self._seed_example()
        return ([seed] if seed else []) + list(self._by_name.values())

    def get(self, name: str) -> Example:
        for ex in self.all():
            if ex.name == name:
                return ex
        raise ExampleNotFound(f"no example named {name[:64]!r}; GET /v1/examples lists them")

    def test_data(self) -> Example:
        """What seed 000's /test and /test-text analyse: its own file when present, else the seed regime."""
        return self._seed_example() or self._by_name[SIMULATED_TEST_EXAMPLE]

    def describe(self, ex: Example) -> dict[str, Any]:
        data = array(ex)
        rows, n = (1, data.shape[0]) if data.ndim == 1 else data.shape
        return {
            "name": ex.name,
            "title": ex.title,
            "description": ex.description,
            "n_signals": int(rows),
            "n_samples": int(n),
            "dtype": str(data.dtype),
            "sampling_rate_hz": ex.sampling_rate_hz,
            "power_frequency_hz": ex.power_frequency_hz,
            "url": f"/v1/examples/{ex.name}",
        }


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


@lru_cache(maxsize=8)
def _simulated(name: str) -> np.ndarray:
    data = next(e for e in _SIMULATED if e.name == name).make()
    data.setflags(write=False)
    return data


def array(ex: Example) -> np.ndarray:
    """The example's signals: simulated ones made once per process (read-only), the file read each time."""
    return ex.make() if ex.name == SEED_FILE_EXAMPLE else _simulated(ex.name)


def npy_bytes(ex: Example) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array(ex), allow_pickle=False)
    return buf.getvalue()
