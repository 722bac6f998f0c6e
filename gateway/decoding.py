"""Turn a /v1/detect HTTP body (JSON, .npy or raw float32) into signals + options. Knows no Triton.

Every failure raises a `GatewayError` subclass with a message a client can act on.

Memory is bounded before anything is allocated: a .npy body's header (shape, dtype, declared size) is
checked against the limits and the body's length first, then the data is viewed in place (no copy);
JSON has its own, smaller body limit (a parsed JSON number costs ~8x its text) and is parsed by orjson,
which refuses nesting deeper than 1,024 levels and numbers beyond the float64 range with an error.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from gateway.errors import InvalidInput, SignalTooLarge, UnsupportedMediaType
from gateway.schemas import DetectOptions, parse_options

JSON_TYPES = ("application/json",)
NPY_TYPES = ("application/x-npy", "application/npy")
RAW_TYPES = ("application/octet-stream",)
#: Binary bodies up to this size are decoded on the event loop: a .npy or raw body is viewed in place and
#: checked in one pass (262,144 samples: well under a millisecond), less than the hand-off to a worker
#: thread and back under load. JSON costs per value in Python (and options per key in pydantic), so only
#: small JSON bodies stay on the loop.
INLINE_DECODE_BYTES = {"binary": 1024 * 1024, "json": 32 * 1024}


def decode_inline(body: bytes, content_type: str | None) -> bool:
    """Is this body cheap enough to decode on the event loop (see INLINE_DECODE_BYTES)?"""
    kind = "json" if _media(content_type) in JSON_TYPES else "binary"
    return len(body) <= INLINE_DECODE_BYTES[kind]


@dataclass(frozen=True)
class Limits:
    max_signal_samples: int
    max_total_samples: int
    max_signals: int

    def check(self, rows: int, samples_per_row: list[int] | int) -> None:
        """413 if `rows` signals of these lengths exceed a limit (before any array is built)."""
        if rows > self.max_signals:
            raise SignalTooLarge(f"{rows} signals in one request; the limit is {self.max_signals}")
        lengths = [samples_per_row] * rows if isinstance(samples_per_row, int) else samples_per_row
        total = 0
        for i, n in enumerate(lengths):
            if n > self.max_signal_samples:
                raise SignalTooLarge(f"signal {i} has {n} samples; the limit is {self.max_signal_samples}")
            total += n
        if total > self.max_total_samples:
            raise SignalTooLarge(f"{total} samples in one request; the limit is {self.max_total_samples}")


@dataclass(frozen=True)
class DetectPayload:
    signals: list[np.ndarray]
    options: DetectOptions


_FLOAT32_MAX = float(np.finfo(np.float32).max)  # signals are processed as float32


def _check_signal(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.size == 0:
        raise InvalidInput(f"signal {index} is empty")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"signal {index} contains NaN or Inf")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and float(np.max(np.abs(arr))) > _FLOAT32_MAX:
        raise InvalidInput(f"signal {index} has values beyond the float32 range (|x| > {_FLOAT32_MAX:.3g})")
    return arr


def _from_json(body: bytes, limits: Limits) -> tuple[list[np.ndarray], dict[str, Any]]:
    try:
        doc = orjson.loads(body)  # depth <= 1024 and finite numbers, else JSONDecodeError
    except orjson.JSONDecodeError as e:
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
    if any(not isinstance(row, list) for row in rows):
        i = next(i for i, row in enumerate(rows) if not isinstance(row, list))
        raise InvalidInput(f"signal {i} must be an array of numbers")
    limits.check(len(rows), [len(row) for row in rows])  # before any array is built
    signals = []
    for i, row in enumerate(rows):
        if any(isinstance(v, (bool, str, list, dict)) or v is None for v in row):
            raise InvalidInput(
                f"signal {i} must be a flat array of numbers (no nesting, strings, bools or nulls)"
            )
        try:
            arr = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(f"signal {i} must contain only numbers") from None
        signals.append(arr)
        rows[i] = None  # free each list of Python floats as soon as its array exists
    return signals, doc


_NPY_MAX_HEADER = 4096  # numpy writes 64-byte aligned headers of ~128 bytes; a big one is hostile
_NPY_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _npy_header(body: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Shape, fortran order, dtype and data offset from a .npy header, without reading the data."""
    f = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(f)
        # Version 3 only adds utf-8 field names (structured dtypes), which are refused anyway.
        reader: Any = _NPY_READERS.get(version)  # numpy's stubs lack max_header_size
        if reader is None:
            raise ValueError(f"format version {version}")
        shape, fortran, dtype = reader(f, max_header_size=_NPY_MAX_HEADER)
    except Exception as e:  # ValueError for a bad magic/header, EOFError/OSError for a truncated one
        raise InvalidInput(f"body is not a valid .npy file ({type(e).__name__})") from None
    return tuple(int(d) for d in shape), bool(fortran), dtype, f.tell()


def _from_npy(body: bytes, limits: Limits) -> list[np.ndarray]:
    shape, fortran, dtype, offset = _npy_header(body)
    if dtype.hasobject or dtype.kind not in "iuf" or dtype.subdtype is not None:
        raise InvalidInput(".npy array must hold integers or floats")
    if len(shape) not in (1, 2):
        raise InvalidInput(
            f".npy array must be 1-D (one signal) or 2-D (one signal per row), got {len(shape)}-D"
        )
    rows, n = (1, shape[0]) if len(shape) == 1 else shape
    if rows == 0 or n == 0:
        raise InvalidInput(f".npy array of shape {shape} holds no samples")
    limits.check(rows, n)  # before anything the size of the shape is allocated
    declared = rows * n * dtype.itemsize
    if len(body) - offset != declared:
        raise InvalidInput(
            f".npy header declares {declared} data bytes for shape {shape}, the body has {len(body) - offset}"
        )
    # A read-only view of the body: no copy until preprocessing casts to float32.
    arr = np.frombuffer(body, dtype=dtype, count=rows * n, offset=offset)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    if fortran and arr.ndim == 2:
        arr = np.ascontiguousarray(arr)  # rows of a Fortran array are strided; one copy, body-sized
    return [arr] if arr.ndim == 1 else list(arr)


def _from_raw(body: bytes) -> list[np.ndarray]:
    if len(body) % 4:
        raise InvalidInput(
            "application/octet-stream body must be little-endian float32: length not a multiple of 4"
        )
    return [np.frombuffer(body, dtype="<f4")]


def body_limit(content_type: str | None, max_body_bytes: int, max_json_body_bytes: int) -> int:
    """The byte limit of a /v1/detect body: JSON has its own smaller one (binary is the way for big data)."""
    return min(max_body_bytes, max_json_body_bytes) if _media(content_type) in JSON_TYPES else max_body_bytes


def _media(content_type: str | None) -> str:
    return (content_type or "application/json").split(";")[0].strip().lower()


def decode_detect(
    body: bytes, content_type: str | None, query: Mapping[str, Any], limits: Limits
) -> DetectPayload:
    """Decode and validate a detect request body of any supported content type."""
    media = _media(content_type)
    options: dict[str, Any] = dict(query)
    if media in JSON_TYPES:
        signals, extra = _from_json(body, limits)
        options.update(extra)
    elif media in NPY_TYPES:
        signals = _from_npy(body, limits)
    elif media in RAW_TYPES:
        signals = _from_raw(body)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {media!r}; "
            "use application/json, application/x-npy or application/octet-stream"
        )
    limits.check(len(signals), [s.size for s in signals])
    signals = [_check_signal(s, i) for i, s in enumerate(signals)]
    return DetectPayload(signals=signals, options=parse_options(options))
