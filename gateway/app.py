"""Assemble the FastAPI app: clients are made in the lifespan, inside the running loop, and closed on exit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from gateway import __version__
from gateway.apikeys import KeyRing, load_api_keys
from gateway.cache import MetadataCache
from gateway.errors import register_error_handlers
from gateway.examples import Examples
from gateway.keyreload import watch_api_keys
from gateway.logging import (
    RequestIdMiddleware,
    configure_logging,
    outage_log,
    register_secrets,
    secrets_of_url,
)
from gateway.metrics import MetricsMiddleware
from gateway.ratelimit import RateLimiter
from gateway.routes import detect, health, jobs, models, seed000, stream, ui
from gateway.seed000 import log_seed000_env
from gateway.services.events import EventPublisher
from gateway.services.inference import InferenceService
from gateway.services.jobs import JobService
from gateway.services.management import ModelManager
from gateway.services.models import ModelRegistry
from gateway.settings import Settings, get_settings, redis_url
from gateway.tracing import install_tracing, tracing
from gateway.triton_client import TritonClient

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    cache = MetadataCache.from_settings(settings)
    # OpenBLAS threads, process-wide while the app serves (restored on exit)
    with threadpool_limits(limits=settings.BLAS_THREADS, user_api="blas"):
        async with (
            tracing(app),  # first: the Triton channel is made inside it
            TritonClient.from_settings(settings) as triton,
            RateLimiter.from_settings(settings) as limiter,
            watch_api_keys(app, settings),
        ):
            app.state.limiter = limiter
            await cache.start_listener()
            registry = ModelRegistry(triton, cache, settings.DEFAULT_MODEL)
            app.state.triton = triton
            app.state.cache = cache
            app.state.registry = registry
            app.state.inference = InferenceService(triton, registry, settings.MAX_REGIONS_PER_SIGNAL)
            manager = ModelManager(
                triton,
                registry,
                settings.MODEL_REPOSITORY,
                unload_timeout_s=settings.MODEL_UNLOAD_TIMEOUT_S,
                # Long enough for another replica's load (its deadline) plus its settling wait.
                lock_timeout_s=settings.TRITON_STARTUP_TIMEOUT_S + settings.MODEL_UNLOAD_TIMEOUT_S,
            )
            app.state.manager = manager
            app.state.events = EventPublisher.from_settings(settings)
            app.state.jobs = JobService.from_settings(settings, app.state.inference)
            await app.state.jobs.start()
            log.info(
                "gateway_started",
                triton=triton.url,
                redis=cache.redis_enabled,
                default_model=settings.DEFAULT_MODEL,
                rate_limit=settings.RATE_LIMIT or "off",
                tracing=app.state.tracer_provider is not None,
            )
            try:
                yield
            finally:
                for step, close in (
                    ("jobs", app.state.jobs.close),
                    ("events", app.state.events.close),
                    ("cache", cache.close),
                ):
                    await _bounded(step, close)
                log.info("gateway_stopped")


_SHUTDOWN_STEP_S = 5.0


async def _bounded(step: str, close: Callable[[], Awaitable[None]]) -> None:
    """One shutdown step with a deadline: a client that will not close must not keep the process up."""
    try:
        async with asyncio.timeout(_SHUTDOWN_STEP_S):
            await close()
    except TimeoutError:
        log.warning("shutdown_step_timed_out", step=step, timeout_s=_SHUTDOWN_STEP_S)


def create_app(settings: Settings | None = None, *, span_exporter: SpanExporter | None = None) -> FastAPI:
    """The gateway app; `settings` defaults to the environment (tests pass their own, and may pass a
    span exporter to trace without an OTLP collector)."""
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)
    outage_log.interval_s = settings.ERROR_LOG_INTERVAL_S
    app = FastAPI(
        title="pd-gateway",
        version=__version__,
        summary="Partial-discharge detection served by NVIDIA Triton",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served offline by routes/ui.py
        redoc_url=None,
    )
    app.state.settings = settings
    raw_keys: list[str] = []
    keys = KeyRing(load_api_keys(settings.API_KEYS.get_secret_value(), settings.API_KEYS_FILE, raw_keys))
    redis_password = secrets_of_url(redis_url(settings) or "")
    register_secrets([*raw_keys, *redis_password])  # blanked in every log line
    del raw_keys
    app.state.keys = keys
    # Names only: the keys themselves never reach a log line.
    log.info("api_keys_loaded", names=keys.names, inference_open=not keys.configured)
    if not keys.has_operator:
        log.warning("model_management_closed", reason="no operator API key configured (API_KEYS)")
    log_seed000_env(os.environ)
    app.state.examples = Examples(settings.SEED_TEST_DATA)
    register_error_handlers(app)
    for module in (health, detect, models, stream, jobs, ui, seed000):
        app.include_router(module.router)
    app.include_router(models.admin)
    install_tracing(app, settings, span_exporter)
    # Outermost last: the request id must exist before metrics and handlers run.
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
