"""A small Python client of pd-gateway: numpy in, typed regions out, `.npy` on the wire.

    from gateway.client import GatewayClient

    with GatewayClient("http://127.0.0.1:8000", api_key=None) as gw:
        result = gw.detect(signals, sampling_rate_hz=40e6)      # 1-D or 2-D array, or a list of arrays
        for r in result.results[0].regions:
            print(r.start, r.end, r.phase_deg)

`AsyncGatewayClient` has the same methods as coroutines. Options are checked here first (the server's own
`DetectOptions`), so a typo fails before any request. A 503 (Triton down, model loading) is retried after
its `Retry-After` (at most `retries` times, each wait capped by `max_wait_s`); any other error status
raises `GatewayHTTPError` with the server's stable `code` and its request id.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np
from pydantic import BaseModel

from gateway.schemas import DetectResponse, ModelList, Readiness, parse_options

DEFAULT_URL = "http://127.0.0.1:8000"
M = TypeVar("M", bound=BaseModel)
Signals = np.ndarray | Sequence[np.ndarray] | Sequence[Sequence[float]]


class GatewayHTTPError(Exception):
    """The gateway answered with an error status; `code` is its stable error code."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    content: bytes | None = None
    content_type: str | None = None
    params: dict[str, str] | None = None


def encode_signals(signals: Signals) -> tuple[bytes, str]:
    """(body, content type): one `.npy` (1-D = one signal, 2-D = one per row); JSON only for ragged rows."""
    if isinstance(signals, np.ndarray):
        arr = signals
    else:
        rows = [np.asarray(s) for s in signals]
        if len({r.shape for r in rows}) > 1:  # rows of different lengths: no single array holds them
            return json.dumps(
                {"signals": [r.astype(float).tolist() for r in rows]}
            ).encode(), "application/json"
        arr = np.stack(rows) if rows else np.zeros((0,))
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue(), "application/x-npy"


def _query(options: dict[str, Any]) -> dict[str, str]:
    """Options as query parameters, validated by the server's own model (unknown names fail here)."""
    parsed = parse_options(options).model_dump(exclude_defaults=True)
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in parsed.items()}


def _detect_request(signals: Signals, options: dict[str, Any]) -> _Request:
    body, ctype = encode_signals(signals)
    return _Request("POST", "/v1/detect", body, ctype, _query(options))


def _error(response: httpx.Response) -> GatewayHTTPError:
    try:
        err = response.json()["error"]
        code, message, rid = str(err["code"]), str(err["message"]), err.get("request_id")
    except (ValueError, KeyError, TypeError):
        code, message, rid = "http_error", response.text[:200], response.headers.get("X-Request-ID")
    return GatewayHTTPError(response.status_code, code, message, rid)


class _Base:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_wait_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.max_wait_s = max_wait_s
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["X-API-Key"] = api_key
        self._timeout = httpx.Timeout(timeout_s)

    def _wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying `response`, or None when it is final."""
        if response.status_code != 503 or attempt >= self.retries:
            return None
        try:
            wait = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            wait = 1.0
        return min(max(wait, 0.0), self.max_wait_s)

    def _kwargs(self, req: _Request, request_id: str | None) -> dict[str, Any]:
        headers = dict(self._headers)
        if req.content_type:
            headers["Content-Type"] = req.content_type
        if request_id:
            headers["X-Request-ID"] = request_id
        return {"content": req.content, "params": req.params, "headers": headers}

    @staticmethod
    def _result(response: httpx.Response, model: type[M]) -> M:
        if response.status_code >= 400 and not (model is Readiness and response.status_code == 503):
            raise _error(response)
        return model.model_validate(response.json())


class GatewayClient(_Base):
    """Blocking client (httpx.Client); use it as a context manager or call `close()`."""

    def __init__(self, url: str = DEFAULT_URL, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._http = httpx.Client(base_url=self.url, timeout=self._timeout)

    def _send(self, req: _Request, request_id: str | None = None) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response = self._http.request(req.method, req.path, **self._kwargs(req, request_id))
            wait = self._wait_s(response, attempt)
            if wait is None:
                break
            time.sleep(wait)
        return response

    def detect(self, signals: Signals, *, request_id: str | None = None, **options: Any) -> DetectResponse:
        """PD regions of one signal (1-D) or many (2-D array or a list); options as keyword arguments."""
        return self._result(self._send(_detect_request(signals, options), request_id), DetectResponse)

    def models(self) -> ModelList:
        return self._result(self._send(_Request("GET", "/v1/models")), ModelList)

    def ready(self) -> Readiness:
        """/readyz (a 503 "not_ready" is an answer here, not an error; it is not retried either)."""
        return self._result(self._http.get("/readyz", headers=self._headers), Readiness)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGatewayClient(_Base):
    """The same client for asyncio (httpx.AsyncClient); `async with` it or `await aclose()`."""

    def __init__(self, url: str = DEFAULT_URL, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self._timeout)

    async def _send(self, req: _Request, request_id: str | None = None) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._http.request(req.method, req.path, **self._kwargs(req, request_id))
            wait = self._wait_s(response, attempt)
            if wait is None:
                return response
            attempt += 1
            await asyncio.sleep(wait)

    async def detect(
        self, signals: Signals, *, request_id: str | None = None, **options: Any
    ) -> DetectResponse:
        return self._result(await self._send(_detect_request(signals, options), request_id), DetectResponse)

    async def models(self) -> ModelList:
        return self._result(await self._send(_Request("GET", "/v1/models")), ModelList)

    async def ready(self) -> Readiness:
        return self._result(await self._http.get("/readyz", headers=self._headers), Readiness)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
