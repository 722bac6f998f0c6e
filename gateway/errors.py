"""The gateway's error hierarchy and the FastAPI handlers that turn every error into one JSON shape.

Body of every error response::

    {"error": {"code": "<stable code>", "message": "<text>", "request_id": "<id>"}}

(plus "details" where a class passes some). Clients branch on `code`, never on `message`.
No traceback or upstream debug string ever reaches a client; the catch-all handler logs it instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gateway.logging import outage_log

log = structlog.get_logger(__name__)

_MAX_VALIDATION_ITEMS = 20  # a malformed 64-signal body must not produce a megabyte of error text


class GatewayError(Exception):
    """Base class: HTTP 500, code "internal_error". Subclasses set `status_code`, `code`, `message`."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    message: str = "internal error"

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        if message is not None:
            self.message = message
        self.details = details
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error."""
        return {}


class InvalidInput(GatewayError):
    """400: the request body or a parameter is malformed (bad encoding, NaN-only signal, bad version)."""

    status_code = 400
    code = "invalid_input"
    message = "invalid input"


class Unauthorized(GatewayError):
    """401: no or wrong credentials for a protected (management) endpoint."""

    status_code = 401
    code = "unauthorized"
    message = "authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "ApiKey"}


class Forbidden(GatewayError):
    """403: credentials are valid but do not allow this operation."""

    status_code = 403
    code = "forbidden"
    message = "operation not allowed"


class ModelNotFound(GatewayError):
    """404: Triton does not know the model, or no version of it is loaded."""

    status_code = 404
    code = "model_not_found"
    message = "model not found"


class VersionNotFound(GatewayError):
    """404: the model exists but the requested version is not in the repository or not loaded."""

    status_code = 404
    code = "version_not_found"
    message = "model version not found"


class JobNotFound(GatewayError):
    """404: no job with this id (never existed, or its state expired after JOBS_TTL_S)."""

    status_code = 404
    code = "job_not_found"
    message = "job not found"


class TooManyJobs(GatewayError):
    """429 with `Retry-After`: this replica's job queue is full."""

    status_code = 429
    code = "too_many_jobs"
    message = "too many jobs"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class ExampleNotFound(GatewayError):
    """404: no bundled example of that name (GET /v1/examples lists them)."""

    status_code = 404
    code = "example_not_found"
    message = "example not found"


class SignalTooLarge(GatewayError):
    """413: body, signal length, signal count or total samples exceed the configured limits."""

    status_code = 413
    code = "payload_too_large"
    message = "payload too large"


class UnsupportedMediaType(GatewayError):
    """415: the Content-Type is none of the accepted encodings."""

    status_code = 415
    code = "unsupported_media_type"
    message = "unsupported media type"


class UpstreamError(GatewayError):
    """502: Triton answered with an error that is not the client's fault (model crash, contract mismatch)."""

    status_code = 502
    code = "upstream_error"
    message = "inference server error"


class UpstreamUnavailable(GatewayError):
    """503 with `Retry-After`: Triton is down, overloaded, or the model is (re)loading."""

    status_code = 503
    code = "upstream_unavailable"
    message = "inference server unavailable"

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 1, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = max(0, int(retry_after_s))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RateLimited(GatewayError):
    """429 with `Retry-After`: this API key (or client address, with auth off) is over RATE_LIMIT."""

    status_code = 429
    code = "rate_limited"
    message = "rate limit exceeded"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Overloaded(UpstreamUnavailable):
    """503 with `Retry-After`: the Triton queue is too deep; shed at once instead of waiting a deadline."""

    code = "overloaded"
    message = "inference queue is full"


class UpstreamTimeout(GatewayError):
    """504 with `Retry-After`: the Triton call did not finish within its deadline."""

    status_code = 504
    code = "upstream_timeout"
    message = "inference server timed out"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class RequestTimeout(GatewayError):
    """408: the client did not send its whole body within BODY_READ_TIMEOUT_S."""

    status_code = 408
    code = "request_timeout"
    message = "request body not received in time"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class ClientClosedRequest(GatewayError):
    """499 (nginx's convention): the client went away before the gateway answered. Not a server error:
    logged at info, counted under status 499, never in the 5xx series."""

    status_code = 499
    code = "client_closed_request"
    message = "client closed the request"


class ModelRejected(GatewayError):
    """422: the upload passed validation but Triton refused to load it; it was rolled back."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "model_rejected"
    message = "Triton could not load the model"


class RepositoryUnavailable(GatewayError):
    """503: this gateway cannot reach the model's directory (MODEL_REPOSITORY not mounted here)."""

    status_code: ClassVar[int] = 503
    code: ClassVar[str] = "repository_unavailable"
    message = "model repository not available"


class Conflict(GatewayError):
    """409: the operation contradicts the repository's state (version exists, params missing, busy)."""

    status_code = 409
    code = "conflict"
    message = "conflict with the model repository's state"


class InvalidModel(GatewayError):
    """422: the uploaded model failed validation; nothing was written."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "invalid_model"
    message = "invalid model"


# No "no valid signal" error on purpose: a signal without valid samples is reported per signal
# (valid=false) in a 200 response, so one bad channel does not fail a 64-signal request.


def _request_id(request: Request) -> str | None:
    """The id the request-id middleware stored; contextvars are already reset when the catch-all runs."""
    state = request.scope.get("state") or {}
    rid = state.get("request_id") if isinstance(state, dict) else None
    return rid if isinstance(rid, str) else None


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the one JSON error shape; also echoes X-Request-ID (the 500 path bypasses the middleware)."""
    rid = _request_id(request)
    body: dict[str, Any] = {"code": code, "message": message, "request_id": rid}
    if details is not None:
        body["details"] = details
    out_headers = dict(headers or {})
    if rid is not None:
        out_headers.setdefault("X-Request-ID", rid)
    return JSONResponse({"error": body}, status_code=status_code, headers=out_headers)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    if exc.status_code >= 500:
        # An outage fails every request the same way: one line per code per interval, with a count.
        outage_log.log(
            log,
            "warning",
            exc.code,
            "gateway_error",
            code=exc.code,
            status=exc.status_code,
            error=exc.message,
        )
    elif isinstance(exc, ClientClosedRequest):
        log.info("client_disconnected", path=request.url.path)
    return error_response(
        request, exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers()
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # Only location, message and type: pydantic's "input" would echo a possibly huge payload.
    items = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors[:_MAX_VALIDATION_ITEMS]
    ]
    summary = "; ".join(f"{'.'.join(i['loc'])}: {i['msg']}" for i in items[:3])
    if len(errors) > 3:
        summary += f" (and {len(errors) - 3} more)"
    return error_response(request, 422, "validation_error", summary or "invalid request", details=items)


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(request, exc.status_code, code, message, headers=exc.headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's ServerErrorMiddleware calls this after the request-id middleware has unwound,
    # so bind the id explicitly for the traceback log line.
    log.error(
        "unhandled_exception",
        request_id=_request_id(request),
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return error_response(request, 500, "internal_error", "internal server error")


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    """A body read that found the client gone (anywhere else than routes/detect.py's read_body)."""
    return await _gateway_error(request, ClientClosedRequest())


def register_error_handlers(app: FastAPI) -> None:
    """Install every handler on `app`; the catch-all for `Exception` is registered last."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
