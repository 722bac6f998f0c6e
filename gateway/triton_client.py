"""The gateway's only door to Triton: one gRPC aio client, a deadline on every call, errors mapped once.

Open it inside the running event loop (FastAPI lifespan) and share it between requests::

    async with TritonClient.from_settings(settings) as triton:
        probs = await triton.infer("pd_unet1d", "", batch)

Over 300 lines on purpose: every Triton call, its channel options and its one error mapping belong together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import structlog
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from gateway.breaker import CircuitBreaker
from gateway.errors import (
    GatewayError,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    VersionNotFound,
)
from gateway.logging import outage_log
from gateway.metrics import (
    SHED_TOTAL,
    TRITON_ERRORS_TOTAL,
    TRITON_QUEUED_BATCHES,
    TRITON_REQUEST_DURATION_SECONDS,
)
from gateway.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Triton prefixes every failed model lookup with "Request for unknown model" (ModelRepositoryManager::
# GetModel). 2.51 answers NOT_FOUND for an unknown name or version, UNAVAILABLE for a version that is
# not ready; newer servers answer INVALID_ARGUMENT for an unknown name, which the status code alone
# cannot tell from a rejected tensor, hence this marker as a second key.
_UNKNOWN_MODEL_MARKER = "unknown model"
_LOAD_FAILURES = frozenset(
    {"StatusCode.INVALID_ARGUMENT", "StatusCode.INTERNAL", "StatusCode.NOT_FOUND", "StatusCode.UNKNOWN"}
)
_MAX_MODEL_LABELS = 32  # model names come from URLs; cap the metric series they can create
_MAX_MESSAGE_BYTES = 2**31 - 1  # tritonclient's own default; a channel_args list replaces its defaults
# gRPC's default reconnect backoff grows to 120 s: after an outage the first request could wait that long
# for the channel to try again. Capped at 0.5 s, the channel is back within ~0.5 s of Triton.
CHANNEL_ARGS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    # Keepalive pings only while calls are in flight (Triton refuses idle pings more often than 5 min),
    # so a long call on a silently dead connection fails after ~35 s, not at its full deadline.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
]
PROBE_INTERVAL_S = 0.2  # while Triton is unreachable, ask it this often whether it is back
_MAX_REASON_CHARS = 300

ModelStates = dict[int, tuple[str, str]]  # version -> (Triton state, one-line reason)


def reason_line(text: str | None) -> str:
    """Triton's reasons carry the backend's Python stack: keep the first line only."""
    text = (text or "").strip()
    return text.splitlines()[0][:_MAX_REASON_CHARS] if text else ""


def states_from_index(rows: Iterable[Mapping[str, Any]], name: str) -> ModelStates | None:
    """{version: (state, reason)} of `name` in Triton's index rows, or None when it lists no such model."""
    mine = [r for r in rows if r.get("name") == name]
    if not mine:
        return None
    return {
        int(r["version"]): (str(r.get("state", "UNKNOWN")), reason_line(r.get("reason")))
        for r in mine
        if str(r.get("version", "")).isdigit()
    }


def map_triton_error(
    exc: InferenceServerException, *, op: str, model: str = "", version: str = "", timeout_s: float = 0.0
) -> GatewayError:
    """Translate a tritonclient error into the gateway hierarchy, primarily by its gRPC status code."""
    status = exc.status() or ""
    msg = exc.message() or ""
    what = f"model '{model}'" + (f" version {version}" if version else "")
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return UpstreamTimeout(f"Triton did not complete {op} for {what} within {timeout_s:g} s")
    if op == "load_model" and status in _LOAD_FAILURES:
        # Triton answers INTERNAL for a missing model directory and INVALID_ARGUMENT for a backend that
        # failed to initialize. The operator needs the reason: its first line, never the backend's stack.
        reason = reason_line(msg) or status
        return UpstreamError(f"Triton could not load model '{model}': {reason}")
    unknown_model = _UNKNOWN_MODEL_MARKER in msg
    if status == "StatusCode.NOT_FOUND" or (unknown_model and status != "StatusCode.INTERNAL"):
        # "... 'm' version 3 is not found" / "is not at ready state" vs "'m' is not found".
        if version and f"version {version}" in msg:
            return VersionNotFound(f"{what} is not loaded")
        return ModelNotFound(f"model '{model}' is not loaded")
    if status == "StatusCode.INVALID_ARGUMENT":
        # The gateway built this request from the model's own config: a rejection is a contract mismatch.
        return UpstreamError(f"Triton rejected the {op} request for {what}")
    if status in ("StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.CANCELLED"):
        return UpstreamUnavailable("inference server unavailable or overloaded", retry_after_s=1)
    return UpstreamError(f"inference server failed on {op} for {what}")


class TritonClient:
    """Async Triton client for one gateway process; `close()` may be called more than once."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        control_timeout_s: float = 5.0,
        load_timeout_s: float = 120.0,
        max_concurrent_infer: int = 8,
        shed_queued_batches: int = 0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        # tritonclient wants "host:port"; accept a grpc:// scheme for convenience.
        self.url = url.removeprefix("grpc://")
        self.timeout_s = timeout_s
        self.control_timeout_s = control_timeout_s
        self.load_timeout_s = load_timeout_s
        self.max_concurrent_infer = max_concurrent_infer
        self.shed_queued_batches = shed_queued_batches  # 0 = never shed
        self.breaker = breaker
        self._queued = 0  # infer batches waiting for a slot
        self._client: InferenceServerClient | None = None
        self._infer_slots: asyncio.Semaphore | None = None
        self._model_labels: set[str] = set()
        self._probe: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> TritonClient:
        """A client configured from `settings`; `url` overrides TRITON_GRPC_URL (e.g. embedded server)."""
        return cls(
            url if url is not None else settings.TRITON_GRPC_URL,
            timeout_s=settings.TRITON_TIMEOUT_S,
            control_timeout_s=settings.TRITON_CONTROL_TIMEOUT_S,
            load_timeout_s=settings.TRITON_STARTUP_TIMEOUT_S,
            max_concurrent_infer=settings.MAX_CONCURRENT_TRITON_CALLS,
            shed_queued_batches=settings.SHED_QUEUED_BATCHES,
            breaker=CircuitBreaker(settings.CIRCUIT_BREAKER_FAILURES, settings.CIRCUIT_BREAKER_RESET_S),
        )

    async def open(self) -> TritonClient:
        """Create the gRPC channel; must run inside the event loop that will use it."""
        if not self.url:
            raise ValueError("Triton gRPC URL is empty")
        if self._client is None:
            self._client = InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
            self._infer_slots = asyncio.Semaphore(self.max_concurrent_infer)
        return self

    async def close(self) -> None:
        """Close the channel; in-flight calls fail, later calls raise UpstreamUnavailable."""
        client, self._client = self._client, None
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
        if client is not None:
            # Bounded: shutdown must not hang on a channel that will not close.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.control_timeout_s):
                    await client.close()

    async def __aenter__(self) -> TritonClient:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- health: never raise (a dead Triton is an answer, not an error) --------------------------------

    async def is_live(self) -> bool:
        """True if Triton answers its liveness RPC within the control deadline."""
        try:
            return bool(await self._call("is_live", "", lambda c, t: c.is_server_live(client_timeout=t)))
        except Exception:
            return False

    async def is_model_ready(self, name: str, version: str = "") -> bool:
        """True if `name` (and `version`, "" = any) is loaded and ready; False on any failure."""
        try:
            return bool(
                await self._call(
                    "is_model_ready", name, lambda c, t: c.is_model_ready(name, version, client_timeout=t)
                )
            )
        except Exception:
            return False

    # -- metadata and model control ---------------------------------------------------------------

    async def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """The model's config as JSON (the inner "config" object; int64 fields arrive as strings)."""
        resp = await self._call(
            "model_config",
            name,
            lambda c, t: c.get_model_config(name, version, as_json=True, client_timeout=t),
            version=version,
        )
        return dict(resp.get("config", {}))

    async def repository_index(self) -> list[dict[str, Any]]:
        """One entry per model (and loaded version): name, version, state, reason."""
        resp = await self._call(
            "repository_index", "", lambda c, t: c.get_model_repository_index(as_json=True, client_timeout=t)
        )
        return list(resp.get("models", []))

    async def model_states(self, name: str) -> ModelStates | None:
        """{version: (state, one-line reason)} of `name`; None when Triton's index lists no such model."""
        return states_from_index(await self.repository_index(), name)

    async def load_model(self, name: str, config_json: str | None = None) -> None:
        """Load or reload `name` (explicit mode); waits until loaded, up to `load_timeout_s`.

        `config_json` REPLACES the repository's config.pbtxt for this load (Triton does not merge it):
        pass `model_config()` with e.g. its version_policy changed. Raises InvalidInput if it is not a
        JSON object, UpstreamError with Triton's one-line reason if the load fails.
        """
        if config_json is not None:
            try:
                parsed = json.loads(config_json)
            except ValueError as e:
                raise InvalidInput(f"model config override is not valid JSON: {e}") from e
            if not isinstance(parsed, dict):
                raise InvalidInput("model config override must be a JSON object")
        await self._call(
            "load_model",
            name,
            lambda c, t: c.load_model(name, config=config_json, client_timeout=t),
            timeout_s=self.load_timeout_s,
        )

    async def unload_model(self, name: str) -> None:
        """Unload every version of `name`."""
        await self._call("unload_model", name, lambda c, t: c.unload_model(name, client_timeout=t))

    # -- inference ----------------------------------------------------------------------------------

    @property
    def queued_batches(self) -> int:
        """Infer batches of this process waiting for a call slot now."""
        return self._queued

    async def admit(self) -> None:
        """Refuse a new detection at once (503) while the breaker is open or the queue is too deep.

        Batches of requests already admitted still queue: shedding never fails half a request.
        """
        if self.breaker is not None:
            await self.breaker.raise_if_open()
        if self.shed_queued_batches and self._queued >= self.shed_queued_batches:
            SHED_TOTAL.inc()
            raise Overloaded(
                f"{self._queued} inference batches are already waiting for Triton; retry later",
                retry_after_s=1,
            )

    async def infer(
        self,
        name: str,
        version: str,
        batch: np.ndarray,
        input_name: str = "signal",
        output_name: str = "probability",
        request_id: str = "",
    ) -> np.ndarray:
        """Run one batch [N, 1, W] float32 (N <= the model's max_batch_size); returns the output tensor.

        At most `max_concurrent_infer` calls are in flight; waiting for a slot counts against the same
        TRITON_TIMEOUT_S deadline, and a full wait raises UpstreamUnavailable. `request_id` defaults to the
        gateway's request id (log context), so Triton's logs and traces join the gateway's.
        """
        if batch.ndim != 3 or batch.shape[0] < 1:
            raise ValueError(f"batch must have shape [N, 1, W] with N >= 1, got {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        request_id = request_id or str(structlog.contextvars.get_contextvars().get("request_id", ""))
        inp = InferInput(input_name, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        outputs = [InferRequestedOutput(output_name)]

        deadline = time.monotonic() + self.timeout_s
        slots = self._infer_slots
        if slots is None:
            raise UpstreamUnavailable("inference client is closed")
        self._queued += 1
        TRITON_QUEUED_BATCHES.inc()
        try:
            await asyncio.wait_for(slots.acquire(), self.timeout_s)
        except TimeoutError:
            TRITON_ERRORS_TOTAL.labels("infer", UpstreamUnavailable.code).inc()
            raise UpstreamUnavailable("too many concurrent inference calls", retry_after_s=1) from None
        finally:
            self._queued -= 1
            TRITON_QUEUED_BATCHES.dec()
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            result = await self._call(
                "infer",
                name,
                lambda c, t: c.infer(
                    name,
                    [inp],
                    model_version=version,
                    outputs=outputs,
                    request_id=request_id,
                    client_timeout=t,
                ),
                version=version,
                timeout_s=remaining,
            )
        finally:
            slots.release()
        out = result.as_numpy(output_name)
        if out is None or out.shape[0] != batch.shape[0]:
            TRITON_ERRORS_TOTAL.labels("infer", UpstreamError.code).inc()
            raise UpstreamError(f"model '{name}' returned no '{output_name}' output for every window")
        return out

    # -- internals ----------------------------------------------------------------------------------

    async def _guarded(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` inside the circuit breaker; health probes bypass it (readiness must see Triton
        come back)."""
        if self.breaker is None or op.startswith("is_"):
            return await call()
        async with self.breaker.guard():
            return await call()

    def _on_failure(self, err: GatewayError) -> None:
        """After an "unavailable" error, probe Triton until it answers (one probe task at a time)."""
        idle = self._probe is None or self._probe.done()
        if isinstance(err, UpstreamUnavailable) and self._client is not None and idle:
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_live())

    async def _probe_until_live(self) -> None:
        """Keep the channel connecting while Triton is down (an idle channel would not try until the next
        request), so the first request after Triton returns finds it connected."""
        start = time.monotonic()
        while (client := self._client) is not None:
            try:
                if await client.is_server_live(client_timeout=max(PROBE_INTERVAL_S, 0.5)):
                    log.info("triton_reachable_again", after_s=round(time.monotonic() - start, 2))
                    return
            except InferenceServerException:
                pass
            await asyncio.sleep(PROBE_INTERVAL_S)

    def _model_label(self, name: str) -> str:
        if not name:
            return "_server"
        if name in self._model_labels or len(self._model_labels) < _MAX_MODEL_LABELS:
            self._model_labels.add(name)
            return name
        return "_other"

    async def _call(
        self,
        op: str,
        model: str,
        fn: Callable[[InferenceServerClient, float], Awaitable[T]],
        *,
        version: str = "",
        timeout_s: float | None = None,
    ) -> T:
        """Run one RPC with its deadline, time it, and map its error."""
        client = self._client
        if client is None:
            raise UpstreamUnavailable("inference client is closed")
        timeout = self.control_timeout_s if timeout_s is None else timeout_s
        start = time.perf_counter()
        try:
            return await self._guarded(op, lambda: fn(client, timeout))
        except InferenceServerException as e:
            err = map_triton_error(e, op=op, model=model, version=version, timeout_s=timeout)
            TRITON_ERRORS_TOTAL.labels(op, err.code).inc()
            fields = {
                "op": op,
                "model": model,
                "version": version,
                "status": e.status(),
                "error": e.message(),
            }
            if op.startswith("is_"):
                # Health probes poll a possibly dead server every few seconds: keep them out of warnings.
                log.debug("triton_error", **fields)
            else:
                # During an outage every call fails alike: one line per op and status per interval.
                outage_log.log(log, "warning", f"triton:{op}:{e.status()}", "triton_error", **fields)
            self._on_failure(err)
            raise err from e
        finally:
            TRITON_REQUEST_DURATION_SECONDS.labels(self._model_label(model), op).observe(
                time.perf_counter() - start
            )
