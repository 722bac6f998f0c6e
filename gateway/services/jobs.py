"""Async detection jobs: accepted by one replica, run by its bounded worker pool, visible from every replica.

State and results live in Redis (hash `pd:job:{id}`, string `pd:job:{id}:result`, both with a TTL), so
any replica answers GET and DELETE. The signals never go to Redis: the replica that accepted a job runs
it. Each replica holds a lease key (`pd:jobs:replica:{id}`, renewed every JOBS_HEARTBEAT_S, expiring
after JOBS_LEASE_S); a queued or running job whose owner's lease has expired is marked `failed`
(`worker_lost`) by whichever replica reads it first, so a killed replica never leaves a job "running".
Cancellation sets the state in Redis; the owner sees it within one heartbeat (at once when the DELETE
reaches the owner itself) and cancels the job's task, which cancels its Triton calls.

Plain Redis rather than arq or taskiq: both run jobs from a shared queue in a separate worker process
and keep the arguments in Redis (here up to a gigabyte of samples per job), neither reports progress,
and arq re-queues a dead worker's job only after its whole timeout; the contract here (any replica
answers, a dead replica's job fails within a lease) is a hash, a lease key and two small Lua scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import metrics
from gateway.errors import GatewayError, InvalidInput, JobNotFound, TooManyJobs, UpstreamUnavailable
from gateway.schemas import DetectOptions
from gateway.services.inference import InferenceService
from gateway.services.stream import retrying
from gateway.settings import Settings, redis_url

log = structlog.get_logger(__name__)
_CLOSE_WAIT_S = 3.0  # how long close() waits for the workers and heartbeat to stop

ACTIVE = ("queued", "running")

# KEYS[1] job hash. ARGV: from-states (comma separated), new state, ttl ms, field, value, ...
# Returns {1, old} when the state changed, {0, old} when it was not one of the from-states.
_TRANSITION = """
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return {0, ''} end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == old then
    redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 4))
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {1, old}
  end
end
return {0, old}
"""
# KEYS[1] job hash, KEYS[2] lease key of its owner (read first). ARGV: now, ttl ms. Returns the state
# found, or 'worker_lost' when it has just marked the job failed.
_FAIL_ORPHAN = """
local st = redis.call('HGET', KEYS[1], 'state')
if (st ~= 'queued' and st ~= 'running') or redis.call('EXISTS', KEYS[2]) == 1 then return st end
redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error_code', 'worker_lost',
  'error_message', 'the gateway replica running this job stopped before it finished')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 'worker_lost'
"""


def job_key(job_id: str) -> str:
    return f"pd:job:{job_id}"


def lease_key(replica: str) -> str:
    return f"pd:jobs:replica:{replica}"


@dataclass
class Job:
    id: str
    signals: list[np.ndarray]
    options: DetectOptions
    cancelled: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _redis_errors(fn: Any) -> Any:
    """Redis failures become 503s for the client (the job store is unavailable), never tracebacks."""

    async def wrapper(*args: Any, **kw: Any) -> Any:
        try:
            return await fn(*args, **kw)
        except (RedisError, OSError) as e:
            raise UpstreamUnavailable(f"the job store (Redis) is unavailable: {type(e).__name__}") from None

    return wrapper


class JobService:
    """Submit, read and cancel jobs; a pool of `workers` tasks runs this replica's jobs."""

    def __init__(self, redis: Redis | None, inference: InferenceService, settings: Settings) -> None:
        self._redis = redis
        self._inference = inference
        self._s = settings
        self.replica = uuid.uuid4().hex[:12]
        self._ttl_ms = int(settings.JOBS_TTL_S * 1000)
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._jobs: dict[str, Job] = {}  # this replica's queued and running jobs
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Settings, inference: InferenceService) -> JobService:
        redis = None
        url = redis_url(settings)
        if url:
            t = settings.JOBS_REDIS_TIMEOUT_S
            redis = Redis.from_url(url, socket_timeout=t, socket_connect_timeout=t, decode_responses=True)
        return cls(redis, inference, settings)

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    def _store(self) -> Redis:
        if self._redis is None:
            raise UpstreamUnavailable("async jobs need Redis: REDIS_URL is not set on this gateway")
        return self._redis

    async def start(self) -> None:
        if self._redis is None:
            return
        self._tasks = [asyncio.create_task(self._heartbeat())]
        self._tasks += [asyncio.create_task(self._worker()) for _ in range(self._s.JOBS_WORKERS)]

    async def close(self) -> None:
        """Stop the workers; this replica's unfinished jobs are marked failed (best effort)."""
        self._closing = True
        unfinished = list(self._jobs)
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a cancellation swallowed in a Redis call must not hang shutdown
            await asyncio.wait(self._tasks, timeout=_CLOSE_WAIT_S)
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                for job_id in unfinished:
                    await self._transition(
                        job_id,
                        ACTIVE,
                        "failed",
                        error_code="replica_stopped",
                        error_message="the gateway replica stopped",
                    )
                await self._redis.delete(lease_key(self.replica))
            await self._redis.aclose()

    # -- client operations -------------------------------------------------------------------------

    @_redis_errors
    async def submit(self, signals: list[np.ndarray], options: DetectOptions) -> dict[str, Any]:
        redis = self._store()
        if options.include_probability:
            raise InvalidInput("include_probability is not available for jobs (results would be huge)")
        if len(self._jobs) >= self._s.JOBS_MAX_QUEUED + self._s.JOBS_WORKERS:
            raise TooManyJobs(f"this gateway holds {len(self._jobs)} unfinished jobs; retry later")
        job = Job(uuid.uuid4().hex, signals, options)
        now = time.time()
        await redis.hset(
            job_key(job.id),
            mapping={
                "state": "queued",
                "owner": self.replica,
                "total": len(signals),
                "done": 0,
                "created_at": now,
            },
        )
        await redis.pexpire(job_key(job.id), self._ttl_ms)
        self._jobs[job.id] = job
        self._queue.put_nowait(job)
        metrics.JOBS_QUEUED.inc()
        return {"job_id": job.id, "state": "queued", "progress": {"done": 0, "total": len(signals)}}

    @_redis_errors
    async def get(self, job_id: str) -> dict[str, Any]:
        redis = self._store()
        h = {str(k): str(v) for k, v in (await redis.hgetall(job_key(job_id))).items()}
        if not h:
            raise JobNotFound(f"no job {job_id!r} (unknown, or expired after {self._s.JOBS_TTL_S:g} s)")
        if h["state"] in ACTIVE and h["owner"] != self.replica:
            state = await redis.eval(
                _FAIL_ORPHAN, 2, job_key(job_id), lease_key(h["owner"]), time.time(), self._ttl_ms
            )
            if state == "worker_lost":  # marked now by this replica (not an earlier failure)
                metrics.JOBS_WORKER_LOST_TOTAL.inc()
                h = {str(k): str(v) for k, v in (await redis.hgetall(job_key(job_id))).items()}
        out: dict[str, Any] = {
            "job_id": job_id,
            "state": h["state"],
            "progress": {"done": int(h["done"]), "total": int(h["total"])},
            **{k: float(h[k]) if k in h else None for k in ("created_at", "started_at", "finished_at")},
            "error": {"code": h["error_code"], "message": h["error_message"]} if "error_code" in h else None,
        }
        if h["state"] == "succeeded":
            result = await redis.get(job_key(job_id) + ":result")
            out["result"] = json.loads(result) if result else None
        return out

    @_redis_errors
    async def cancel(self, job_id: str) -> dict[str, Any]:
        changed, _ = await self._transition(job_id, ACTIVE, "cancelled")
        job = self._jobs.get(job_id)
        if changed and job is not None:
            self._cancel_local(job)
        return await self.get(job_id)

    # -- internals ---------------------------------------------------------------------------------

    async def _transition(
        self, job_id: str, from_states: tuple[str, ...], to: str, **fields: Any
    ) -> tuple[bool, str]:
        fields.setdefault("finished_at" if to not in ACTIVE else "started_at", time.time())
        flat = [str(x) for kv in fields.items() for x in kv]
        changed, old = await self._store().eval(
            _TRANSITION, 1, job_key(job_id), ",".join(from_states), to, self._ttl_ms, *flat
        )
        if not old:
            raise JobNotFound(f"no job {job_id!r}")
        return bool(changed), str(old)

    def _cancel_local(self, job: Job) -> None:
        job.cancelled = True
        job.signals = []  # a queued job's samples are not needed any more
        if job.task is not None:
            job.task.cancel()

    async def _heartbeat(self) -> None:
        """Renew this replica's lease; cancel local jobs that another replica cancelled."""
        redis = self._store()
        lease_ms = int(self._s.JOBS_LEASE_S * 1000)
        while not self._closing:
            try:
                await redis.set(lease_key(self.replica), "1", px=lease_ms)
                running = [j for j in self._jobs.values() if j.task is not None and not j.cancelled]
                if running:
                    states = await asyncio.gather(*(redis.hget(job_key(j.id), "state") for j in running))
                    for job, state in zip(running, states, strict=True):
                        if state not in ACTIVE:
                            self._cancel_local(job)
            except (RedisError, OSError) as e:
                log.warning("jobs_heartbeat_failed", error=type(e).__name__)
            await asyncio.sleep(self._s.JOBS_HEARTBEAT_S)

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            metrics.JOBS_QUEUED.dec()
            try:
                if not job.cancelled:
                    job.task = asyncio.create_task(self._run(job))
                    await asyncio.wait({job.task})  # the worker itself is cancelled only at shutdown
            finally:
                if job.task is not None and not job.task.done():
                    job.task.cancel()
                self._jobs.pop(job.id, None)

    async def _run(self, job: Job) -> None:
        try:
            changed, _ = await self._transition(job.id, ("queued",), "running")
        except (RedisError, OSError, JobNotFound):
            log.warning("job_start_failed", job_id=job.id)
            return
        if not changed:
            return  # cancelled (or failed) while queued
        metrics.JOBS_RUNNING.inc()
        t0, state = time.monotonic(), "failed"
        try:
            result = await self._execute(job)
            await self._store().set(job_key(job.id) + ":result", json.dumps(result), px=self._ttl_ms)
            changed, _ = await self._transition(job.id, ("running",), "succeeded")
            state = "succeeded" if changed else "cancelled"
        except asyncio.CancelledError:
            if self._closing and not job.cancelled:
                raise  # close() marks it failed
            state = "cancelled"
        except GatewayError as e:
            await self._fail(job, e.code, e.message)
        except Exception:
            log.exception("job_failed", job_id=job.id)
            await self._fail(job, "internal_error", "internal error")
        finally:
            metrics.JOBS_RUNNING.dec()
            metrics.JOB_DURATION_SECONDS.labels(state).observe(time.monotonic() - t0)
            metrics.JOBS_FINISHED_TOTAL.labels(state).inc()
            log.info("job_finished", job_id=job.id, state=state, seconds=round(time.monotonic() - t0, 3))

    async def _fail(self, job: Job, code: str, message: str) -> None:
        with contextlib.suppress(RedisError, OSError, JobNotFound):
            await self._transition(job.id, ("running",), "failed", error_code=code, error_message=message)

    async def _execute(self, job: Job) -> dict[str, Any]:
        """Detection signal by signal (progress, prompt cancel); batch-wide normalisation runs as one call."""
        mv = await self._inference.registry.resolve(job.options.model, job.options.version)
        options = job.options.model_copy(update={"model": mv.name, "version": mv.version})  # one version
        batch_wide = (
            options.profile == "seed" or (options.normalisation or mv.params.normalisation) == "batch_max"
        )
        groups = [job.signals] if batch_wide else [[s] for s in job.signals]
        t0 = time.perf_counter()
        results: list[dict[str, Any]] = []
        totals = {"valid_samples_found": 0, "total_regions": 0, "windows": 0}
        redis = self._store()
        detect = retrying(self._inference.detect, self._s.TRITON_TIMEOUT_S)  # shed batches wait, not fail
        for group in groups:
            part = await detect(group, options)
            for item in part["results"]:
                item["sample_index"] = len(results)
                results.append(item)
            for key in totals:
                totals[key] += part[key]
            await redis.hset(job_key(job.id), "done", len(results))
        return {
            "model": mv.name,
            "version": mv.version,
            "total_samples_processed": len(results),
            **totals,
            "results": results,
            "timings_ms": {"total": round((time.perf_counter() - t0) * 1000.0, 3)},
        }
