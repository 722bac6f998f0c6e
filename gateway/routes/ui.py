"""The page (/ui, and / for browsers), its example signals, and offline /docs + /redoc.

Every asset is served from this origin: the page's own files from gateway/ui/, plotly.js from the
installed `plotly` wheel, Swagger UI and ReDoc from the installed `fastapi-offline` wheel. Nothing is
fetched from the internet, so the page and the docs work on an isolated machine.
"""

from __future__ import annotations

import asyncio
import html
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException

from gateway import examples as ex
from gateway.deps import ExamplesDep
from gateway.schemas import error_responses

router = APIRouter(tags=["page"])

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
_VENDOR_HEADERS = {"Cache-Control": "public, max-age=86400"}
# Pages may load and call only this origin: the browser itself refuses anything else (ReDoc's footer
# links a logo from its CDN; Swagger UI and ReDoc pages carry inline start-up scripts).
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)


def _package_dir(name: str) -> Path:
    """An installed package's directory, found without importing it (plotly's import is slow)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def vendor_files() -> dict[str, Path]:
    """The third-party files this gateway serves under /ui/vendor/, by name (nothing else is reachable)."""
    docs = _package_dir("fastapi_offline") / "static"
    return {
        "plotly.min.js": _package_dir("plotly") / "package_data" / "plotly.min.js",
        "swagger-ui-bundle.js": docs / "swagger-ui-bundle.js",
        "swagger-ui.css": docs / "swagger-ui.css",
        "redoc.standalone.js": docs / "redoc.standalone.js",
        "favicon.png": docs / "favicon.png",
    }


_OWN_FILES = {"app.js": "text/javascript", "app.css": "text/css"}


def prefers_html(accept: str | None) -> bool:
    """True when an Accept header ranks text/html above application/json (a browser, not curl or a client)."""
    if not accept:
        return False
    q: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        weight = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    weight = float(p[2:])
                except ValueError:
                    weight = 0.0
        q[media.lower()] = max(weight, q.get(media.lower(), 0.0))
    html_q = q.get("text/html", 0.0)
    json_q = q.get("application/json", q.get("application/*", q.get("*/*", 0.0)))
    return html_q > json_q


def page_response(request: Request, *, autoload: str = "", mode: str = "ui") -> HTMLResponse:
    template = (UI_DIR / "index.html").read_text(encoding="utf-8")
    keys = request.app.state.keys
    values = {
        "{{KEYS_REQUIRED}}": "true" if keys.configured else "false",
        "{{AUTOLOAD}}": html.escape(autoload, quote=True),
        "{{MODE}}": mode,
        "{{TITLE}}": "seed 000 test data" if mode == "test" else "PD viewer",
    }
    for key, value in values.items():
        template = template.replace(key, value)
    return HTMLResponse(template, headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP})


def _with_csp(resp: HTMLResponse) -> HTMLResponse:
    resp.headers["Content-Security-Policy"] = CSP
    return resp


@router.get("/ui", response_class=HTMLResponse)
async def ui(request: Request) -> HTMLResponse:
    """The page: load signals, run /v1/detect, see raw and preprocessed traces, PD regions and PRPD."""
    return page_response(request)


@router.get("/ui/assets/{name}", include_in_schema=False)
async def ui_asset(name: str) -> Response:
    if name not in _OWN_FILES:
        raise HTTPException(404, "no such asset")
    return FileResponse(UI_DIR / name, media_type=_OWN_FILES[name], headers={"Cache-Control": "no-cache"})


@router.get("/ui/vendor/{name}", include_in_schema=False)
async def ui_vendor(name: str) -> Response:
    files = vendor_files()
    if name not in files:
        raise HTTPException(404, "no such asset")
    return FileResponse(files[name], headers=_VENDOR_HEADERS)


@router.get("/v1/examples")
async def list_examples(examples: ExamplesDep) -> dict[str, Any]:
    """Example signals for the page: simulated ones of both regimes, and seed 000's test file if present."""
    items = await asyncio.to_thread(lambda: [examples.describe(e) for e in examples.all()])
    return {"examples": items}


@router.get(
    "/v1/examples/{name}",
    responses={
        200: {"content": {"application/x-npy": {}}, "description": "the example as a .npy file"},
        **error_responses((404, 422)),
    },
)
async def get_example(name: str, examples: ExamplesDep) -> Response:
    """One example as a .npy file (1-D or 2-D, one signal per row): post it to /v1/detect as it is."""
    example = examples.get(name)
    body = await asyncio.to_thread(ex.npy_bytes, example)
    return Response(
        body,
        media_type="application/x-npy",
        headers={"Content-Disposition": f'attachment; filename="{example.name}.npy"', **_VENDOR_HEADERS},
    )


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    return _with_csp(
        get_swagger_ui_html(
            openapi_url=request.app.openapi_url or "/openapi.json",
            title="pd-gateway - Swagger UI",
            swagger_js_url="/ui/vendor/swagger-ui-bundle.js",
            swagger_css_url="/ui/vendor/swagger-ui.css",
            swagger_favicon_url="/ui/vendor/favicon.png",
        )
    )


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    return _with_csp(
        get_redoc_html(
            openapi_url=request.app.openapi_url or "/openapi.json",
            title="pd-gateway - ReDoc",
            redoc_js_url="/ui/vendor/redoc.standalone.js",
            redoc_favicon_url="/ui/vendor/favicon.png",
            with_google_fonts=False,
        )
    )
