"""OpenTelemetry traces: one server span per HTTP request (FastAPI) and a child span per gRPC call to
Triton, each request's span tagged with the gateway's `request_id`. Exported over OTLP/HTTP.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing is instrumented at all, so tracing costs
nothing. The exporter reads the standard OTEL_EXPORTER_OTLP_* variables (headers, timeout, ...);
OTEL_SDK_DISABLED=true turns it off again. Health and metrics routes are not traced.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import FastAPI
from opentelemetry import trace  # the API only (FastAPI imports it anyway); the SDK loads when enabled
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__
from gateway.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

REQUEST_ID_ATTRIBUTE = "request_id"  # the same key as in the log lines
_UNTRACED_URLS = "/healthz,/readyz,/metrics"


class RequestIdSpanMiddleware:
    """Put the request id (set by the outer RequestIdMiddleware) on the request's server span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            rid = (scope.get("state") or {}).get("request_id")
            span = trace.get_current_span()
            if rid and span.is_recording():
                span.set_attribute(REQUEST_ID_ATTRIBUTE, rid)
        await self.app(scope, receive, send)


def install_tracing(app: FastAPI, settings: Settings, exporter: SpanExporter | None = None) -> bool:
    """Instrument `app` when an OTLP endpoint is configured or `exporter` is given (tests: in-memory).

    Call before the request-id middleware is added, so that the span middleware runs inside it.
    """
    if exporter is None and not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        app.state.tracer_provider = None
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({SERVICE_NAME: settings.OTEL_SERVICE_NAME, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    if exporter is None:
        # A base URL, as the OTel spec defines this variable: the traces path is appended.
        base = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=_UNTRACED_URLS, exclude_spans=["receive", "send"]
    )
    app.add_middleware(RequestIdSpanMiddleware)
    app.state.tracer_provider = provider
    return True


@contextlib.asynccontextmanager
async def tracing(app: FastAPI) -> AsyncIterator[None]:
    """In the lifespan, before the Triton client opens: trace gRPC channels made inside; flush on exit."""
    provider: TracerProvider | None = app.state.tracer_provider
    if provider is None:
        yield
        return
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    # Process-wide (it wraps grpc.aio.insecure_channel): one traced app per process, as in production.
    grpc_instrumentor = GrpcAioInstrumentorClient()
    grpc_instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        grpc_instrumentor.uninstrument()
        provider.shutdown()
