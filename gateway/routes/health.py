"""Service info, liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import iter_route_contexts

from gateway import __version__
from gateway.deps import CacheDep, RegistryDep, SettingsDep, TritonDep
from gateway.errors import GatewayError
from gateway.metrics import latest_metrics
from gateway.routes.ui import prefers_html
from gateway.schemas import Health, Readiness, ServiceInfo

router = APIRouter(tags=["service"])


@router.get("/", response_model=ServiceInfo, responses={303: {"description": "a browser is sent to /ui"}})
async def root(request: Request, settings: SettingsDep, registry: RegistryDep) -> dict[str, Any] | Response:
    """What this gateway serves; model details are best effort (Triton may be down).

    A browser (Accept ranks text/html above JSON) is sent to the page, /ui; API clients get this JSON.
    """
    if prefers_html(request.headers.get("accept")):
        return RedirectResponse("/ui", status_code=303)
    info: dict[str, Any] = {
        "service": "pd-gateway",
        "version": __version__,
        "default_model": settings.DEFAULT_MODEL,
        "endpoints": endpoints(request.app),
    }
    try:
        mv = await registry.resolve(None, None)
        info["model"] = {"name": mv.name, "version": mv.version, "window": mv.params.window}
    except GatewayError as e:
        info["model"] = {"name": settings.DEFAULT_MODEL, "error": e.message}
    return info


def endpoints(app: FastAPI) -> list[str]:
    """The app's paths (each once, in registration order), the root itself left out."""
    paths = (ctx.path for ctx in iter_route_contexts(app.routes))
    return list(dict.fromkeys(p for p in paths if p and p != "/" and not p.endswith("oauth2-redirect")))


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers (200 + JSON, as seed 000's probes expect). Never touches Triton or
    Redis: /readyz says whether the model can serve.

    Under `pd-gateway serve` with an embedded Triton, 503 once that Triton cannot be brought back
    (gateway/embedded/supervisor.py), so the orchestrator restarts the pod.
    """
    liveness = getattr(request.app.state, "liveness", None)
    if liveness is None:
        return JSONResponse({"status": "ok"})
    body = {"status": "ok" if liveness.healthy() else "unhealthy", **liveness.status()}
    return JSONResponse(body, status_code=200 if liveness.healthy() else 503)


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(settings: SettingsDep, triton: TritonDep, cache: CacheDep) -> JSONResponse:
    """Readiness: Triton answers and the default model is ready (asked each time, not cached).

    Redis is reported but never gates readiness: without it requests still succeed.
    """
    live = await triton.is_live()
    ready = live and await triton.is_model_ready(settings.DEFAULT_MODEL)
    redis = (
        "disabled" if not cache.redis_enabled else "connected" if cache.listener_connected else "disconnected"
    )
    body = {
        "status": "ready" if ready else "not_ready",
        "triton_live": live,
        "model_ready": ready,
        "redis": redis,
    }
    return JSONResponse(
        body, status_code=200 if ready else 503, headers=None if ready else {"Retry-After": "5"}
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    data, content_type = latest_metrics()
    return Response(data, media_type=content_type)
