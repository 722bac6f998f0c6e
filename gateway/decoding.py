"""Turn a /v1/detect HTTP body (JSON, .npy or raw float32) into signals + options. Knows no Triton.

Every failure raises a `GatewayError` subclass with a message a client can act on.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.dsp.params import NORMALISATIONS
from gateway.errors import InvalidInput, SignalTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json",)
NPY_TYPES = ("application/x-npy", "application/npy")
RAW_TYPES = ("application/octet-stream",)


@dataclass(frozen=True)
class DetectOptions:
    """Per-request options; None means "use the model version's own parameter".

    profile "seed" swaps the version's pre/post-processing for seed 000's (0.4*fs high-pass, clip,
    batch-wide normalisation, its valid rule), keeping the version's window: it reproduces the old
    service's validity and signal statistics on the same data.
    """

    model: str | None = None
    version: str | None = None
    sampling_rate_hz: float | None = None
    power_frequency_hz: float = 50.0
    threshold: float | None = None
    normalisation: str | None = None
    include_probability: bool = False
    profile: str = "model"

    @property
    def samples_per_cycle(self) -> float | None:
        if self.sampling_rate_hz is None:
            return None
        return self.sampling_rate_hz / self.power_frequency_hz


@dataclass(frozen=True)
class Limits:
    max_signal_samples: int
    max_total_samples: int
    max_signals: int


@dataclass(frozen=True)
class DetectPayload:
    signals: list[np.ndarray]
    options: DetectOptions


_OPTION_KEYS = {
    "model",
    "version",
    "sampling_rate_hz",
    "power_frequency_hz",
    "threshold",
    "normalisation",
    "include_probability",
    "profile",
}
PROFILES = ("model", "seed")


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"'{name}' must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise InvalidInput(f"'{name}' must be a finite number > 0, got {value!r}")
    return v


def parse_options(raw: Mapping[str, Any]) -> DetectOptions:
    """Validate options from a JSON body merged with the query string (the body wins)."""
    unknown = sorted(set(raw) - _OPTION_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(_OPTION_KEYS))}"
        )
    opts: dict[str, Any] = {}
    for key in ("model", "version"):
        if raw.get(key) not in (None, ""):
            value = str(raw[key])
            if len(value) > 64:
                raise InvalidInput(f"'{key}' is too long")
            opts[key] = value
    if raw.get("sampling_rate_hz") is not None:
        opts["sampling_rate_hz"] = _positive("sampling_rate_hz", raw["sampling_rate_hz"])
    if raw.get("power_frequency_hz") is not None:
        opts["power_frequency_hz"] = _positive("power_frequency_hz", raw["power_frequency_hz"])
    if raw.get("threshold") is not None:
        t = _positive("threshold", raw["threshold"])
        if t >= 1:
            raise InvalidInput(f"'threshold' must be in (0, 1), got {raw['threshold']!r}")
        opts["threshold"] = t
    if raw.get("normalisation") is not None:
        if raw["normalisation"] not in NORMALISATIONS:
            raise InvalidInput(f"'normalisation' must be one of {', '.join(NORMALISATIONS)}")
        opts["normalisation"] = raw["normalisation"]
    if raw.get("include_probability") is not None:
        flag = raw["include_probability"]
        if isinstance(flag, str):
            flag = flag.lower() in ("1", "true", "yes")
        opts["include_probability"] = bool(flag)
    if raw.get("profile") not in (None, ""):
        if raw["profile"] not in PROFILES:
            raise InvalidInput(f"'profile' must be one of {', '.join(PROFILES)}")
        opts["profile"] = raw["profile"]
    return DetectOptions(**opts)


_FLOAT32_MAX = float(np.finfo(np.float32).max)  # signals are processed as float32


def _check_signal(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.size == 0:
        raise InvalidInput(f"signal {index} is empty")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"signal {index} contains NaN or Inf")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and float(np.max(np.abs(arr))) > _FLOAT32_MAX:
        raise InvalidInput(f"signal {index} has values beyond the float32 range (|x| > {_FLOAT32_MAX:.3g})")
    return arr


def _from_json(body: bytes) -> tuple[list[np.ndarray], dict[str, Any]]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidInput('JSON body must be an object: {"signal": [...]} or {"signals": [[...], ...]}')
    has_one, has_many = "signal" in doc, "signals" in doc
    if has_one == has_many:
        raise InvalidInput(
            'JSON body needs exactly one of "signal" (one array) or "signals" (array of arrays)'
        )
    rows = [doc.pop("signal")] if has_one else doc.pop("signals")
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('"signals" must be a non-empty array of arrays')
    signals = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(f"signal {i} must be an array of numbers")
        if any(isinstance(v, (bool, str, list, dict)) or v is None for v in row):
            raise InvalidInput(
                f"signal {i} must be a flat array of numbers (no nesting, strings, bools or nulls)"
            )
        try:
            arr = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(f"signal {i} must contain only numbers") from None
        signals.append(arr)
    return signals, doc


def _from_npy(body: bytes) -> list[np.ndarray]:
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/EOFError/OSError/UnpicklingError for bad files
        raise InvalidInput(f"body is not a valid .npy file: {type(e).__name__}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise InvalidInput(".npy array must hold integers or floats")
    if arr.ndim not in (1, 2):
        raise InvalidInput(
            f".npy array must be 1-D (one signal) or 2-D (one signal per row), got {arr.ndim}-D"
        )
    return [arr] if arr.ndim == 1 else list(arr)


def _from_raw(body: bytes) -> list[np.ndarray]:
    if len(body) % 4:
        raise InvalidInput(
            "application/octet-stream body must be little-endian float32: length not a multiple of 4"
        )
    return [np.frombuffer(body, dtype="<f4")]


def decode_detect(
    body: bytes, content_type: str | None, query: Mapping[str, Any], limits: Limits
) -> DetectPayload:
    """Decode and validate a detect request body of any supported content type."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    options: dict[str, Any] = dict(query)
    if media in JSON_TYPES:
        signals, extra = _from_json(body)
        options.update(extra)
    elif media in NPY_TYPES:
        signals = _from_npy(body)
    elif media in RAW_TYPES:
        signals = _from_raw(body)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {media!r}; "
            "use application/json, application/x-npy or application/octet-stream"
        )
    if len(signals) > limits.max_signals:
        raise SignalTooLarge(f"{len(signals)} signals in one request; the limit is {limits.max_signals}")
    total = 0
    for i, s in enumerate(signals):
        if s.size > limits.max_signal_samples:
            raise SignalTooLarge(f"signal {i} has {s.size} samples; the limit is {limits.max_signal_samples}")
        total += s.size
    if total > limits.max_total_samples:
        raise SignalTooLarge(f"{total} samples in one request; the limit is {limits.max_total_samples}")
    signals = [_check_signal(s, i) for i, s in enumerate(signals)]
    return DetectPayload(signals=signals, options=parse_options(options))
