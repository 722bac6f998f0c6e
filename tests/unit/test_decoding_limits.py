"""gateway/decoding.py: limits enforced from the .npy header and the JSON structure before arrays exist."""

from __future__ import annotations

import io

import numpy as np
import pytest

from gateway.decoding import Limits, body_limit, decode_detect, decode_inline
from gateway.errors import InvalidInput, SignalTooLarge

LIMITS = Limits(max_signal_samples=100_000, max_total_samples=200_000, max_signals=8)


def npy(arr: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, arr)
    return f.getvalue()


def header_only(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue()


def test_npy_is_decoded_in_place_with_the_same_values() -> None:
    x = np.random.default_rng(0).normal(size=(3, 500))
    for arr in (x, x.astype("<f4"), np.asfortranarray(x), x[0], (x * 100).astype(np.int16)):
        signals = decode_detect(npy(arr), "application/x-npy", {}, LIMITS).signals
        assert np.array_equal(np.vstack(signals) if arr.ndim == 2 else signals[0], arr)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (header_only((10**9, 0)), InvalidInput),
        (header_only((0, 7920)), InvalidInput),
        (header_only((0, 0)), InvalidInput),
        (header_only((0,)), InvalidInput),
        (header_only((9, 10)), SignalTooLarge),  # too many signals
        (header_only((1, 100_001)), SignalTooLarge),  # one signal too long
        (header_only((8, 30_000)), SignalTooLarge),  # too many samples in total
        (header_only((2**62, 2**62)), SignalTooLarge),
        (header_only((2, 10)) + b"\0" * 79, InvalidInput),  # truncated
        (header_only((2, 10)) + b"\0" * 81, InvalidInput),  # trailing bytes
        (header_only((2, 10), "|O") + b"\0" * 160, InvalidInput),  # objects
        (header_only((2, 2, 2)) + b"\0" * 32, InvalidInput),  # 3-D
        (b"\x93NUMPY\x03\x00" + b"\0" * 100, InvalidInput),  # unsupported format version
        (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f" + b"{" * 100, InvalidInput),  # a 2 GB header length
    ],
)
def test_hostile_npy_headers(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_detect(body, "application/x-npy", {}, LIMITS)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"signal": [1e400]}',
        b'{"signal": [1, 2], "threshold": ' + b"9" * 400 + b"}",
        b'{"signals": []}',
        b'{"signals": [[]]}',
        b'{"signals": [[1, 2], 3]}',
        b'{"signal": [NaN]}',
    ],
)
def test_malformed_json_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_detect(body, "application/json", {}, LIMITS)


def test_json_rows_checked_before_conversion() -> None:
    body = b'{"signals": [' + b",".join([b"[1,2]"] * 9) + b"]}"
    with pytest.raises(SignalTooLarge, match="9 signals"):
        decode_detect(body, "application/json", {}, LIMITS)


def test_json_has_its_own_body_limit() -> None:
    assert body_limit("application/json; charset=utf-8", 64, 8) == 8
    assert body_limit(None, 64, 8) == 8  # no content type = JSON
    assert body_limit("application/x-npy", 64, 8) == 64
    assert body_limit("application/json", 4, 8) == 4


def test_only_small_bodies_decode_on_the_event_loop() -> None:
    """JSON costs per value (and options per key), so only small JSON stays inline; binary bodies are viewed
    in place and stay inline up to 1 MiB."""
    small_json, big_json = b"{}" * 8 * 1024, b"{}" * 17 * 1024  # 16 KiB, 34 KiB
    assert decode_inline(small_json, "application/json") and decode_inline(small_json, None)
    assert not decode_inline(big_json, "application/json; charset=utf-8")
    npy_7920 = b"\0" * (7920 * 4 + 128)
    assert decode_inline(npy_7920, "application/x-npy") and decode_inline(
        big_json, "application/octet-stream"
    )
    assert not decode_inline(b"\0" * (1024 * 1024 + 1), "application/x-npy")
