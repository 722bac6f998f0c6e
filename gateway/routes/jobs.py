"""/v1/jobs: detection too big for one request, run in the background; state readable from any replica."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.auth import require_inference
from gateway.decoding import Limits, decode_detect
from gateway.deps import SettingsDep
from gateway.ratelimit import limit_inference
from gateway.routes.detect import DETECT_OPENAPI, read_body
from gateway.schemas import AUTH, error_responses
from gateway.services.jobs import JobService

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_inference)])


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


JobsDep = Annotated[JobService, Depends(_jobs)]


@router.post(
    "/v1/jobs",
    status_code=202,
    openapi_extra=DETECT_OPENAPI,
    dependencies=[Depends(limit_inference)],
    responses=error_responses((400, *AUTH, 413, 415, 429, 503)),
)
async def submit_job(request: Request, jobs: JobsDep, settings: SettingsDep) -> JSONResponse:
    """Accept the same bodies and options as /v1/detect (larger limits); 202 with the job's id."""
    body = await read_body(request, settings.JOBS_MAX_BODY_BYTES)
    limits = Limits(
        settings.JOBS_MAX_SIGNAL_SAMPLES, settings.JOBS_MAX_TOTAL_SAMPLES, settings.JOBS_MAX_SIGNALS
    )
    payload = await asyncio.to_thread(
        decode_detect, body, request.headers.get("content-type"), dict(request.query_params), limits
    )
    job = await jobs.submit(payload.signals, payload.options)
    url = f"/v1/jobs/{job['job_id']}"
    return JSONResponse({**job, "status_url": url}, status_code=202, headers={"Location": url})


@router.get("/v1/jobs/{job_id}", responses=error_responses((*AUTH, 404, 422, 503)))
async def get_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    """State (queued, running, succeeded, failed, cancelled), progress, and the result once succeeded."""
    return await jobs.get(job_id)


@router.delete("/v1/jobs/{job_id}", responses=error_responses((*AUTH, 404, 422, 503)))
async def cancel_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    """Cancel a queued or running job (its work stops within one heartbeat); a finished job is unchanged."""
    return await jobs.cancel(job_id)
