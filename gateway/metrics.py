"""Prometheus collectors of the gateway (module level, default registry) and the HTTP metrics middleware.

Label values stay few: routes are templates ("/v1/models/{name}/load"), never raw paths.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS_TOTAL = Counter(
    "pdgw_http_requests_total", "HTTP requests handled", ["route", "method", "status"]
)
HTTP_REQUEST_DURATION_SECONDS = Histogram(
    "pdgw_http_request_duration_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS
)
HTTP_REQUESTS_IN_FLIGHT = Gauge("pdgw_http_requests_in_flight", "HTTP requests being handled now")

TRITON_REQUEST_DURATION_SECONDS = Histogram(
    "pdgw_triton_request_duration_seconds",
    "Latency of calls from the gateway to Triton, errors included",
    ["model", "op"],
    buckets=_LATENCY_BUCKETS,
)
TRITON_ERRORS_TOTAL = Counter(
    "pdgw_triton_errors_total", "Failed Triton calls by gateway error code", ["op", "kind"]
)

WINDOWS_PER_REQUEST = Histogram(
    "pdgw_windows_per_request",
    "Model windows sent to Triton per detection request",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
)
SIGNALS_PROCESSED_TOTAL = Counter(
    "pdgw_signals_processed_total", "Signals processed, by whether they had valid samples", ["valid"]
)
REGIONS_FOUND_TOTAL = Counter("pdgw_regions_found_total", "PD regions returned to clients")

CACHE_HITS_TOTAL = Counter("pdgw_cache_hits_total", "Metadata cache hits", ["layer"])
CACHE_MISSES_TOTAL = Counter("pdgw_cache_misses_total", "Metadata cache misses", ["layer"])
CACHE_ERRORS_TOTAL = Counter(
    "pdgw_cache_redis_errors_total", "Redis failures tolerated (metadata cache, rate limiter)", ["op"]
)

# Protection (rate limit, load shedding, circuit breaker, key reloads). Every series exists from start-up
# at 0, so dashboards and alerts read 0 while healthy instead of "No data".
RATE_LIMITED_TOTAL = Counter(
    "pdgw_rate_limited_total", "Requests refused with 429 because their API key or address hit RATE_LIMIT"
)
SHED_TOTAL = Counter(
    "pdgw_shed_total", "Detection requests refused with 503 because the Triton queue was too deep"
)
TRITON_QUEUED_BATCHES = Gauge(
    "pdgw_triton_queued_batches", "Inference batches of this process waiting for a Triton call slot"
)
CIRCUIT_BREAKER_STATE = Gauge(
    "pdgw_circuit_breaker_state", "Breaker around Triton inference: 0 closed, 1 half-open, 2 open"
)
CIRCUIT_BREAKER_OPENED_TOTAL = Counter(
    "pdgw_circuit_breaker_opened_total", "Times the breaker around Triton inference opened"
)
CIRCUIT_BREAKER_REJECTED_TOTAL = Counter(
    "pdgw_circuit_breaker_rejected_total", "Requests answered 503 at once because the breaker was open"
)
API_KEY_RELOADS_TOTAL = Counter(
    "pdgw_api_key_reloads_total", "Re-reads of API_KEYS_FILE after it changed", ["result"]
)

# Streams (WS /v1/stream) and async jobs (/v1/jobs)
STREAMS_OPEN = Gauge("pdgw_streams_open", "WebSocket streams open now")
STREAM_SAMPLES_TOTAL = Counter("pdgw_stream_samples_total", "Samples received on streams")
STREAM_EVENTS_TOTAL = Counter("pdgw_stream_events_total", "PD events sent on streams")
STREAM_BUFFERED_SAMPLES = Gauge(
    "pdgw_stream_buffered_samples", "Samples received on streams whose events are not final yet"
)
STREAM_LAG_SECONDS = Histogram(
    "pdgw_stream_lag_seconds",
    "From the arrival of a block's last sample to its events being sent",
    buckets=_LATENCY_BUCKETS,
)
STREAM_CLOSED_TOTAL = Counter("pdgw_stream_closed_total", "Streams closed, by reason", ["reason"])
STREAM_CLOSE_REASONS = ("normal", "client_gone", "idle", "bad_frame", "bad_open", "error")
STREAM_REDIS_ERRORS_TOTAL = Counter(
    "pdgw_stream_redis_errors_total", "Event batches that could not be appended to Redis"
)
JOBS_QUEUED = Gauge("pdgw_jobs_queued", "Jobs waiting for a worker of this replica")
JOBS_RUNNING = Gauge("pdgw_jobs_running", "Jobs running on this replica")
JOBS_FINISHED_TOTAL = Counter("pdgw_jobs_finished_total", "Jobs finished on this replica", ["state"])
JOB_STATES_FINAL = ("succeeded", "failed", "cancelled")
JOBS_WORKER_LOST_TOTAL = Counter(
    "pdgw_jobs_worker_lost_total",
    "Jobs of a replica whose lease expired (killed) that this replica marked failed (worker_lost)",
)
JOB_DURATION_SECONDS = Histogram(
    "pdgw_job_duration_seconds",
    "From a job's start on a worker to its end, by final state",
    ["state"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The scrape is not traffic: it must not show up as a request in flight on every sample.
METRICS_PATH = "/metrics"

# Dashboards and alerts must read 0, not "No data", while nothing fails: the label sets known in advance
# exist from the start (Prometheus' advice for counters). Ops as used by triton_client.py and cache.py.
_ZERO_INIT_TRITON_ERRORS = [("infer", e.code) for e in (UpstreamUnavailable, UpstreamTimeout, UpstreamError)]
_ZERO_INIT_CACHE_OPS = ("get", "set", "invalidate", "subscribe", "rate_limit")  # + ratelimit.py
for _op, _kind in _ZERO_INIT_TRITON_ERRORS:
    TRITON_ERRORS_TOTAL.labels(_op, _kind)
for _op in _ZERO_INIT_CACHE_OPS:
    CACHE_ERRORS_TOTAL.labels(_op)
for _layer in ("local", "redis"):
    CACHE_HITS_TOTAL.labels(_layer)
    CACHE_MISSES_TOTAL.labels(_layer)
for _valid in ("true", "false"):
    SIGNALS_PROCESSED_TOTAL.labels(_valid)
for _result in ("ok", "error"):
    API_KEY_RELOADS_TOTAL.labels(_result)
for _reason in STREAM_CLOSE_REASONS:
    STREAM_CLOSED_TOTAL.labels(_reason)
for _state in JOB_STATES_FINAL:
    JOBS_FINISHED_TOTAL.labels(_state)
    JOB_DURATION_SECONDS.labels(_state)


def route_label(scope: Scope) -> str:
    """The matched route's template, or "unmatched" (404s must not create one series per URL)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def latest_metrics() -> tuple[bytes, str]:
    """Exposition body and content type for a `/metrics` route."""
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: request count, latency and in-flight gauge per route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before responding, Starlette's error middleware answers 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        in_flight = scope.get("path") != METRICS_PATH
        if in_flight:
            HTTP_REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if in_flight:
                HTTP_REQUESTS_IN_FLIGHT.dec()
            # The router writes scope["route"] into this same dict, so it is known only after the call.
            route = route_label(scope)
            HTTP_REQUEST_DURATION_SECONDS.labels(route).observe(time.perf_counter() - start)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            HTTP_REQUESTS_TOTAL.labels(route, method, str(status)).inc()
