"""API-key dependencies for routes: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

- Operator endpoints always need an operator key. With no operator key configured they are closed:
  every request gets 401 (no key could be valid), never an open door.
- Inference endpoints need a key (inference or operator role) only when any key is configured.
- Missing or unknown key: 401 with `WWW-Authenticate`; a valid key of too low a role: 403.

The key's NAME is bound to the request's log context (`api_key=<name>`); the key itself is never logged
nor echoed in an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.apikeys import ApiKey, KeyRing, Role
from gateway.errors import Forbidden, Unauthorized

log = structlog.get_logger(__name__)

API_KEY_HEADER = "X-API-Key"
# auto_error=False: a missing header must become our own 401 body, not FastAPI's default 403.
_header_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API key")
_bearer_scheme = HTTPBearer(auto_error=False, description="API key as a bearer token")


def _keyring(request: Request) -> KeyRing:
    return request.app.state.keys


def _authenticate(ring: KeyRing, presented: str | None, need: Role, path: str) -> ApiKey:
    if not presented:
        log.info("auth_rejected", reason="missing_key", need=need, path=path)
        raise Unauthorized(
            f"this endpoint needs an API key with role '{need}' in the {API_KEY_HEADER} header"
        )
    key = ring.identify(presented)
    if key is None:
        log.info("auth_rejected", reason="unknown_key", need=need, path=path)
        raise Unauthorized("invalid API key")
    structlog.contextvars.bind_contextvars(api_key=key.name)
    if not key.allows(need):
        log.info("auth_rejected", reason="role", api_key=key.name, role=key.role, need=need, path=path)
        raise Forbidden(f"API key '{key.name}' has role '{key.role}'; this endpoint needs '{need}'")
    return key


def _presented(header: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    if header:
        return header
    return bearer.credentials if bearer is not None else None


# async on purpose: a sync dependency runs in a worker thread, and its log-context binding would be lost.
async def require_operator(
    request: Request,
    header: Annotated[str | None, Security(_header_scheme)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)] = None,
) -> ApiKey:
    """An operator key, whatever the configuration (401 missing/unknown, 403 inference key)."""
    return _authenticate(_keyring(request), _presented(header, bearer), "operator", request.url.path)


async def require_inference(
    request: Request,
    header: Annotated[str | None, Security(_header_scheme)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)] = None,
) -> ApiKey | None:
    """Any configured key when keys are configured; None (open) when none are."""
    ring = _keyring(request)
    if not ring.configured:
        return None
    return _authenticate(ring, _presented(header, bearer), "inference", request.url.path)


def inference_key_for(ring: KeyRing, headers: Mapping[str, str], path: str) -> ApiKey | None:
    """`require_inference` for a WebSocket handshake: same headers, same rules, same errors."""
    if not ring.configured:
        return None
    presented = headers.get(API_KEY_HEADER.lower())
    if not presented:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        presented = token.strip() if scheme.lower() == "bearer" else None
    return _authenticate(ring, presented, "inference", path)


OperatorKey = Annotated[ApiKey, Depends(require_operator)]
InferenceKey = Annotated[ApiKey | None, Depends(require_inference)]
