"""Seed 000's endpoints, so its clients switch without changes: GET /test-text (JSON) and GET /test (page).

Both analyse the same data: seed 000's test file (`SEED_TEST_DATA`, else ../shared/data/) when present,
else a bundled simulated file of the same shape; computed by the real pipeline (Triton), like /v1/detect.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from gateway import examples as ex
from gateway.auth import require_inference
from gateway.deps import ExamplesDep, InferenceDep
from gateway.routes.ui import page_response
from gateway.schemas import AUTH, UPSTREAM, SeedTestText, error_responses, parse_options
from gateway.seed000 import seed_test_text_body

ERROR_REF = "#/components/schemas/ErrorResponse"
router = APIRouter(tags=["seed 000 compatibility"])


@router.get(
    "/test-text",
    response_model=SeedTestText,
    responses=error_responses((400, *AUTH, 404, 422, *UPSTREAM)),
    dependencies=[Depends(require_inference)],
)
async def test_text(request: Request, service: InferenceDep, examples: ExamplesDep) -> dict[str, Any]:
    """Seed 000's text analysis of its test data: valid samples only, with their regions and statistics.

    Query options as for /v1/detect (`profile=seed` for seed 000's preprocessing; default: the served
    version's own processing; `model`, `version`, `threshold`).
    """
    options = parse_options(dict(request.query_params))
    example = examples.test_data()
    data = await asyncio.to_thread(ex.array, example)
    signals = [data] if data.ndim == 1 else list(data)
    result = await service.detect(signals, options)
    return seed_test_text_body(result, example.name, options.profile)


@router.get(
    "/test",
    response_class=HTMLResponse,
    # The page is HTML; its errors are the JSON error body (FastAPI would label them text/html).
    responses={
        400: {"content": {"application/json": {"schema": {"$ref": ERROR_REF}}}, "description": "bad option"}
    },
)
async def testpage_response(request: Request, examples: ExamplesDep) -> HTMLResponse:
    """Seed 000's visual analysis: the page, on the same data as /test-text, one plot per valid sample
    (raw, filtered and detected regions). `?profile=seed` as for /test-text."""
    return page_response(request, autoload=examples.test_data().name, mode="test")
