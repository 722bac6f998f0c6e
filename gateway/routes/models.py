"""/v1/models: the model list (inference role) and model management (operator role).

Routes parse and delegate: every operation lives in `gateway.services.management.ModelManager`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field, PositiveInt
from starlette.datastructures import UploadFile

from gateway.auth import OperatorKey
from gateway.deps import ManagerDep, SettingsDep
from gateway.errors import InvalidInput, SignalTooLarge, UnsupportedMediaType
from gateway.ratelimit import limit_inference
from gateway.schemas import (
    AUTH,
    UPSTREAM,
    DeployResult,
    ModelDescription,
    ModelList,
    VersionListing,
    error_responses,
)

router = APIRouter(tags=["models"])
admin = APIRouter(tags=["model management"])

_UPLOAD_FIELDS = {"model", "processing", "card", "version", "load"}
_MAX_JSON_FIELD_BYTES = 1024 * 1024


class VersionsBody(BaseModel):
    """Versions to serve (load) or to stop serving (unload); omitted = the persisted policy / all."""

    versions: list[PositiveInt] | None = Field(default=None, max_length=64, examples=[[1, 2]])


_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {
                        "model": {"type": "string", "format": "binary", "description": "the .onnx file"},
                        "processing": {"type": "string", "description": "JSON; overrides the latest params"},
                        "card": {"type": "string", "description": "model card JSON (default: generated)"},
                        "version": {"type": "integer", "description": "default: the next free version"},
                        "load": {"type": "boolean", "default": True},
                    },
                }
            }
        },
    }
}


_READ = error_responses((400, *AUTH, 404, 422, *UPSTREAM))
_CHANGE = error_responses((400, *AUTH, 404, 409, 422, *UPSTREAM))


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=error_responses((*AUTH, 429, *UPSTREAM)),
    dependencies=[Depends(limit_inference)],
)
async def list_models(manager: ManagerDep) -> dict[str, Any]:
    """Every model in the repository with its versions and their states (asked from Triton, uncached)."""
    return await manager.list_models()


@admin.get("/v1/models/{name}", response_model=ModelDescription, responses=_READ)
async def describe_model(name: str, manager: ManagerDep, key: OperatorKey) -> dict[str, Any]:
    """Config summary, version states, and each version's processing parameters and model card."""
    return await manager.describe(name)


@admin.get("/v1/models/{name}/versions", response_model=VersionListing, responses=_READ)
async def list_versions(name: str, manager: ManagerDep, key: OperatorKey) -> dict[str, Any]:
    """Version states (Triton) merged with the version directories of the repository."""
    return await manager.versions(name)


@admin.post("/v1/models/{name}/load", response_model=VersionListing, responses=_CHANGE)
async def load_model(
    name: str, manager: ManagerDep, key: OperatorKey, body: Annotated[VersionsBody | None, Body()] = None
) -> dict[str, Any]:
    """Serve exactly these versions (Triton load API with a version-policy override)."""
    return await manager.load(name, body.versions if body else None, actor=key.name)


@admin.post("/v1/models/{name}/unload", response_model=VersionListing, responses=_CHANGE)
async def unload_model(
    name: str, manager: ManagerDep, key: OperatorKey, body: Annotated[VersionsBody | None, Body()] = None
) -> dict[str, Any]:
    """Stop serving these versions (the rest stay), or the whole model without a body."""
    return await manager.unload(name, body.versions if body else None, actor=key.name)


@admin.post(
    "/v1/models/{name}/versions",
    status_code=201,
    response_model=DeployResult,
    responses=error_responses((400, *AUTH, 404, 409, 413, 415, 422, *UPSTREAM)),
    openapi_extra=_UPLOAD_DOC,
)
async def deploy_version(
    name: str, request: Request, manager: ManagerDep, key: OperatorKey, settings: SettingsDep
) -> dict[str, Any]:
    """Upload an ONNX model as the next version: validated, written atomically, loaded unless load=false."""
    fields = await _read_upload(request, settings.MAX_UPLOAD_BYTES)
    model = fields.get("model")
    if not isinstance(model, bytes):
        raise InvalidInput("the upload needs a 'model' file field holding the .onnx file")
    result = await manager.deploy(
        name,
        model,
        processing=_json_object(fields, "processing"),
        card=_json_object(fields, "card"),
        version=_text(fields, "version"),
        load=_flag(fields, "load", default=True),
        actor=key.name,
    )
    return result


async def _read_upload(request: Request, max_bytes: int) -> dict[str, bytes | str]:
    """The multipart fields, refused with 413 as soon as the body exceeds `max_bytes` (streamed)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("upload the model as multipart/form-data with a 'model' file field")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SignalTooLarge(f"upload of {declared} bytes exceeds MAX_UPLOAD_BYTES ({max_bytes})")
    receive, seen = request.receive, 0

    async def limited() -> Any:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > max_bytes:
            raise SignalTooLarge(f"upload exceeds MAX_UPLOAD_BYTES ({max_bytes})")
        return message

    form = await Request(request.scope, limited).form(max_files=3, max_fields=8)
    try:
        unknown = sorted(set(form.keys()) - _UPLOAD_FIELDS)
        if unknown:
            raise InvalidInput(
                f"unknown upload field(s) {', '.join(unknown)}; allowed: {sorted(_UPLOAD_FIELDS)}"
            )
        out: dict[str, bytes | str] = {}
        for field, value in form.multi_items():
            if field in out:
                raise InvalidInput(f"upload field '{field}' given twice")
            if isinstance(value, UploadFile):
                data = await value.read()
                out[field] = data if field == "model" else data.decode("utf-8", errors="replace")
            else:
                out[field] = value if field != "model" else value.encode()
        return out
    finally:
        await form.close()


def _text(fields: dict[str, bytes | str], name: str) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value.strip() if isinstance(value, str) else value.decode("utf-8", errors="replace").strip()


def _json_object(fields: dict[str, bytes | str], name: str) -> dict[str, Any] | None:
    text = _text(fields, name)
    if text is None:
        return None
    if len(text) > _MAX_JSON_FIELD_BYTES:
        raise InvalidInput(f"'{name}' is larger than {_MAX_JSON_FIELD_BYTES} bytes")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"'{name}' is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"'{name}' must be a JSON object")
    return value


def _flag(fields: dict[str, bytes | str], name: str, *, default: bool) -> bool:
    text = _text(fields, name)
    if text is None:
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"'{name}' must be true or false, got {text[:20]!r}")
