"""POST /v1/detect: decode the body, hand it to the inference service, return its result."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from gateway.decoding import Limits, body_limit, decode_detect, decode_inline
from gateway.deps import InferenceDep, SettingsDep
from gateway.errors import ClientClosedRequest, RequestTimeout, SignalTooLarge
from gateway.ratelimit import limit_inference
from gateway.schemas import (
    AUTH,
    UPSTREAM,
    DetectJsonBody,
    DetectResponse,
    error_responses,
    option_query_parameters,
)

router = APIRouter(tags=["inference"])

DETECT_OPENAPI = {  # also /v1/jobs: the same bodies and options
    "parameters": option_query_parameters(),
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DetectJsonBody.model_json_schema()},
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}


async def read_body(request: Request, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `max_bytes` (never buffered whole),
    408 if it has not all arrived within `timeout_s`, 499 if the client goes away meanwhile."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SignalTooLarge(f"body of {declared} bytes exceeds the limit of {max_bytes} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise SignalTooLarge(f"body exceeds the limit of {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise ClientClosedRequest() from None
    return b"".join(chunks)


@router.post(
    "/v1/detect",
    response_model=DetectResponse,
    responses=error_responses((400, *AUTH, 404, 413, 415, 429, *UPSTREAM)),
    openapi_extra=DETECT_OPENAPI,
    dependencies=[Depends(limit_inference)],
)
async def detect(request: Request, service: InferenceDep, settings: SettingsDep) -> JSONResponse:
    """Find PD regions in one or many signals (JSON, .npy or raw little-endian float32 body).

    Options (`DetectOptions`) go in the JSON body or the query string. `version` pins a model version;
    without it the highest ready version serves. Needs an API key only when keys are configured.
    The result is encoded directly (no response-model validation on the hot path).
    """
    t0 = time.perf_counter()
    content_type = request.headers.get("content-type")
    max_bytes = body_limit(content_type, settings.MAX_BODY_BYTES, settings.MAX_JSON_BODY_BYTES)
    body = await read_body(request, max_bytes, settings.BODY_READ_TIMEOUT_S)
    limits = Limits(settings.MAX_SIGNAL_SAMPLES, settings.MAX_TOTAL_SAMPLES, settings.MAX_SIGNALS_PER_REQUEST)
    # JSON parsing of a large body takes long enough to stall other requests: do it off the event loop.
    args = (body, content_type, dict(request.query_params), limits)
    payload = (
        decode_detect(*args)
        if decode_inline(body, content_type)
        else await asyncio.to_thread(decode_detect, *args)
    )
    decode_ms = round((time.perf_counter() - t0) * 1000.0, 3)
    result = await service.detect(payload.signals, payload.options)
    result["timings_ms"] = {"decode": decode_ms, **result["timings_ms"]}
    return JSONResponse(result)
