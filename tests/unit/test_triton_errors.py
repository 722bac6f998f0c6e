"""Triton error → gateway error, on the status codes and messages Triton 2.51 was seen to send.

The messages below were recorded from the embedded Triton 2.51 (and INVALID_ARGUMENT for an unknown
name from newer servers' source); the real round trip is covered by the integration tests.
"""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from gateway.errors import (
    GatewayError,
    InvalidInput,
    ModelNotFound,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    VersionNotFound,
)
from gateway.triton_client import TritonClient, map_triton_error

CASES = [
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'nope' is not found", "infer", "", ModelNotFound),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'nope' is not found", "infer", "3", ModelNotFound),
    (
        "StatusCode.INVALID_ARGUMENT",
        "Request for unknown model: 'nope' is not found",
        "infer",
        "",
        ModelNotFound,
    ),
    (
        "StatusCode.NOT_FOUND",
        "Request for unknown model: 'm' version 7 is not found",
        "infer",
        "7",
        VersionNotFound,
    ),
    (
        "StatusCode.UNAVAILABLE",
        "Request for unknown model: 'm' version 1 is not at ready state",
        "infer",
        "1",
        VersionNotFound,
    ),
    (
        "StatusCode.NOT_FOUND",
        "Request for unknown model: 'm' has no available versions",
        "infer",
        "",
        ModelNotFound,
    ),
    (
        "StatusCode.INVALID_ARGUMENT",
        "unexpected shape for input 'signal' for model 'm'",
        "infer",
        "",
        UpstreamError,
    ),
    (
        "StatusCode.INVALID_ARGUMENT",
        "inference request batch-size must be <= 8 for 'm'",
        "infer",
        "",
        UpstreamError,
    ),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", "infer", "", UpstreamTimeout),
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", "model_config", "", UpstreamUnavailable),
    ("StatusCode.RESOURCE_EXHAUSTED", "Exceeds maximum queue size", "infer", "", UpstreamUnavailable),
    ("StatusCode.INTERNAL", "Failed to process the request(s) for model 'm'", "infer", "", UpstreamError),
    (
        "StatusCode.INTERNAL",
        "failed to load 'nope', failed to poll from model repository",
        "load_model",
        "",
        UpstreamError,
    ),
    (None, "model version must be a string", "infer", "", UpstreamError),
]


@pytest.mark.parametrize(("status", "message", "op", "version", "expected"), CASES)
def test_mapping(
    status: str | None, message: str, op: str, version: str, expected: type[GatewayError]
) -> None:
    err = map_triton_error(
        InferenceServerException(message, status=status), op=op, model="m", version=version
    )
    assert type(err) is expected


def test_load_failure_keeps_first_line_only() -> None:
    msg = (
        "load failed for model 'm': version 2 is at UNAVAILABLE state: Internal: IndexError\n\n"
        "At:\n  /x/model.py(80)"
    )
    exc = InferenceServerException(msg, status="StatusCode.INVALID_ARGUMENT")
    err = map_triton_error(exc, op="load_model", model="m")
    assert isinstance(err, UpstreamError)
    assert "IndexError" in err.message
    assert "model.py" not in err.message


def test_upstream_detail_is_not_in_client_message() -> None:
    exc = InferenceServerException("shape mismatch at /opt/secret/path", status="StatusCode.INVALID_ARGUMENT")
    assert "/opt/secret" not in map_triton_error(exc, op="infer", model="m").message


async def test_closed_client_never_raises_from_health_and_refuses_calls() -> None:
    client = TritonClient("127.0.0.1:1")
    assert await client.is_live() is False
    assert await client.is_model_ready("m") is False
    with pytest.raises(UpstreamUnavailable):
        await client.model_config("m")
    await client.close()


async def test_bad_config_override_is_invalid_input() -> None:
    client = TritonClient("127.0.0.1:1")
    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(InvalidInput):
            await client.load_model("m", bad)
