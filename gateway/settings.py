"""Gateway configuration: one pydantic-settings class read from environment variables (no prefix).

Units are in the names (`_S` seconds, `_BYTES`, `_SAMPLES`). A bad value fails at start-up, before the
gateway serves anything.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.apikeys import load_api_keys

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(BaseSettings):
    """Every tunable of the gateway; each field is read from the environment variable of the same name."""

    # No .env file on purpose: tests and deployments see exactly the process environment.
    # hide_input_in_errors: a bad value must not print API keys or a Redis password at start-up.
    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # Triton
    TRITON_GRPC_URL: str = ""  # "" = the gateway starts an embedded Triton itself
    TRITON_TIMEOUT_S: PositiveFloat = 30.0  # gRPC deadline of every infer call
    TRITON_CONTROL_TIMEOUT_S: PositiveFloat = 5.0  # health, metadata, config, index, load/unload
    TRITON_STARTUP_TIMEOUT_S: PositiveFloat = 120.0  # embedded server start; deadline of load_model calls
    MAX_CONCURRENT_TRITON_CALLS: PositiveInt = 8  # in-flight infer calls per gateway process
    DEFAULT_MODEL: Annotated[str, Field(min_length=1)] = "pd_unet1d"
    MODEL_REPOSITORY: Path = Path("model_repository")

    # Metadata cache
    REDIS_URL: SecretStr | None = None  # None = in-process cache only; secret: it may carry a password
    REDIS_TIMEOUT_S: PositiveFloat = 0.5
    CACHE_TTL_S: PositiveFloat = 300.0  # Redis layer
    LOCAL_CACHE_TTL_S: PositiveFloat = 5.0  # in-process layer; bounds staleness if pub/sub is lost

    # Request limits
    MAX_SIGNAL_SAMPLES: PositiveInt = 2_000_000  # per signal
    MAX_TOTAL_SAMPLES: PositiveInt = 8_000_000  # summed over the signals of one request
    MAX_SIGNALS_PER_REQUEST: PositiveInt = 64
    MAX_REGIONS_PER_SIGNAL: PositiveInt = 10_000  # regions listed per signal; the count is always exact
    # OpenBLAS threads of the gateway process (threadpoolctl, set in the lifespan): its numpy work is many
    # small calls per request (the AC fit's least squares), which extra BLAS threads only make contend
    BLAS_THREADS: PositiveInt = 1
    MAX_BODY_BYTES: PositiveInt = 64 * 1024 * 1024
    MAX_UPLOAD_BYTES: PositiveInt = 512 * 1024 * 1024  # a model upload (multipart body) to /versions

    # Model management and API keys (see gateway/apikeys.py for the formats)
    API_KEYS: SecretStr = SecretStr("")  # "name:role:key,..." or a JSON list; roles operator, inference
    API_KEYS_FILE: Path | None = None  # same formats, one entry per line allowed; merged with API_KEYS
    MODEL_UNLOAD_TIMEOUT_S: PositiveFloat = 30.0  # wait for Triton to finish unloading before answering

    # Protection: rate limit, load shedding, circuit breaker, tracing (README "Protection")
    # per API key name (per client address with auth off): "100/second", "600/minute;20/second"; "" = off
    RATE_LIMIT: str = ""
    SHED_QUEUED_BATCHES: Annotated[int, Field(ge=0)] = 64  # 503 new detections at this queue; 0 = off
    CIRCUIT_BREAKER_FAILURES: PositiveInt = 5  # consecutive UNAVAILABLE/deadline errors that open it
    CIRCUIT_BREAKER_RESET_S: PositiveFloat = 1.0  # open this long, then calls go through half-open
    OTEL_EXPORTER_OTLP_ENDPOINT: str = ""  # OTLP/HTTP collector, e.g. http://otel:4318; "" = tracing off
    OTEL_SERVICE_NAME: str = "pd-gateway"

    # Streams (WS /v1/stream) and async jobs (/v1/jobs), issue 15; see README "Streams and jobs"
    STREAM_BLOCK_SAMPLES: PositiveInt = 262_144  # re-blocking stride (rounded up to the model's hop)
    STREAM_MAX_BLOCK_SAMPLES: PositiveInt = 4_000_000  # upper bound of a stream's own block_samples
    STREAM_MARGIN_SAMPLES: PositiveInt = 4096  # context on each side of a block (>= 2 windows, hop multiple)
    STREAM_MAX_FRAME_BYTES: PositiveInt = 4 * 1024 * 1024  # one binary frame (uvicorn's ws_max_size: 16 MiB)
    # samples received and not yet blocked (as float32); a full buffer stops reading the socket
    STREAM_BUFFER_BYTES: PositiveInt = 8 * 1024 * 1024
    STREAM_IDLE_TIMEOUT_S: PositiveFloat = 30.0  # no frame for this long closes the stream (4408)
    STREAM_STATS_INTERVAL_S: PositiveFloat = 5.0  # a "stats" message this often
    STREAM_MAX_OPEN: PositiveInt = 64  # streams per gateway process; more are refused (1013)
    STREAM_EVENTS_MAXLEN: PositiveInt = 100_000  # approximate cap of each pd:events:{channel} stream
    JOBS_WORKERS: PositiveInt = 2  # jobs run concurrently per gateway process
    JOBS_MAX_QUEUED: PositiveInt = 16  # jobs accepted and waiting per process; more get 429
    JOBS_MAX_BODY_BYTES: PositiveInt = 1024 * 1024 * 1024
    JOBS_MAX_SIGNAL_SAMPLES: PositiveInt = 20_000_000
    JOBS_MAX_TOTAL_SAMPLES: PositiveInt = 64_000_000
    JOBS_MAX_SIGNALS: PositiveInt = 4096
    JOBS_TTL_S: PositiveFloat = 3600.0  # job state and result kept in Redis this long after the last change
    JOBS_LEASE_S: PositiveFloat = 10.0  # a replica silent this long has its queued/running jobs failed
    JOBS_HEARTBEAT_S: PositiveFloat = 0.5  # lease renewal and cancel polling period
    JOBS_REDIS_TIMEOUT_S: PositiveFloat = 5.0  # deadline of job-state calls (results can be large)

    # Hardening against slow or hostile clients (issue 9; see README "Reliability")
    MAX_JSON_BODY_BYTES: PositiveInt = 8 * 1024 * 1024  # JSON costs ~10x its size in RAM: binary for big
    HEADER_READ_TIMEOUT_S: PositiveFloat = 10.0  # a connection must send complete headers within this
    BODY_READ_TIMEOUT_S: PositiveFloat = 30.0  # the whole body must arrive within this (else 408)
    KEEP_ALIVE_TIMEOUT_S: PositiveFloat = 5.0  # idle keep-alive connections are closed after this
    MAX_CONNECTIONS: PositiveInt = 512  # concurrent connections per process; beyond it requests get 503
    MAX_HEADER_BYTES: PositiveInt = 32 * 1024  # request line + headers (h11's incomplete-event limit)
    ERROR_LOG_INTERVAL_S: PositiveFloat = 10.0  # a repeated upstream error is logged once per interval
    EMBEDDED_TRITON_MAX_RESTARTS: PositiveInt = 5  # `serve`: restarts within 10 minutes before giving up

    # HTTP server and logs
    HOST: str = "127.0.0.1"
    PORT: Annotated[int, Field(gt=0, lt=65536)] = 8000
    LOG_LEVEL: LogLevel = "info"
    LOG_JSON: bool = True

    # Page, examples and seed 000 compatibility (/ui, /v1/examples, /test, /test-text; gateway/seed000.py)
    SEED_TEST_DATA: Path | None = None  # seed 000's test file; None = ../shared/data/seed_test_dataa.npy
    # Seed 000's variables, still accepted: WORKER_THREADS sets MAX_CONCURRENT_TRITON_CALLS when that is
    # unset; the others have no gateway equivalent (start-up logs what replaces each, gateway/seed000.py).
    WORKER_THREADS: PositiveInt | None = None
    MAX_BATCH_SIZE: PositiveInt | None = None
    TORCH_NUM_THREADS: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed000_worker_threads(cls, data: object) -> object:
        if (
            isinstance(data, dict)
            and data.get("WORKER_THREADS")
            and not data.get("MAX_CONCURRENT_TRITON_CALLS")
        ):
            data["MAX_CONCURRENT_TRITON_CALLS"] = data["WORKER_THREADS"]
        return data

    @field_validator("SEED_TEST_DATA", mode="before")
    @classmethod
    def _empty_seed_file_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("TRITON_GRPC_URL", mode="before")
    @classmethod
    def _strip_url(cls, v: object) -> object:
        return v.strip() if isinstance(v, str) else v

    @field_validator("REDIS_URL", mode="before")
    @classmethod
    def _empty_redis_is_none(cls, v: object) -> object:
        # REDIS_URL="" in a compose file means "no Redis", not an invalid URL.
        if isinstance(v, str) and not v.strip():
            return None
        return v.strip() if isinstance(v, str) else v

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return v

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("API_KEYS_FILE", mode="before")
    @classmethod
    def _empty_file_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("RATE_LIMIT")
    @classmethod
    def _rate_limit_parses(cls, v: str) -> str:
        if v.strip():
            try:
                limits.parse_many(v)
            except ValueError:
                raise ValueError('RATE_LIMIT must look like "100/second" or "600/minute;20/second"') from None
        return v.strip()

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.MAX_TOTAL_SAMPLES < self.MAX_SIGNAL_SAMPLES:
            raise ValueError("MAX_TOTAL_SAMPLES must be >= MAX_SIGNAL_SAMPLES")
        return self

    @model_validator(mode="after")
    def _jobs_lease(self) -> Settings:
        if self.JOBS_HEARTBEAT_S * 3 > self.JOBS_LEASE_S:
            raise ValueError("JOBS_LEASE_S must be at least 3 x JOBS_HEARTBEAT_S")
        return self

    @model_validator(mode="after")
    def _api_keys_parse(self) -> Settings:
        # Parsed here only to fail at start-up; the app builds its KeyRing with the same function.
        load_api_keys(self.API_KEYS.get_secret_value(), self.API_KEYS_FILE)
        return self


def redis_url(settings: Settings) -> str | None:
    """REDIS_URL in clear, for the clients that connect with it (never for a log line)."""
    return settings.REDIS_URL.get_secret_value() if settings.REDIS_URL is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (`get_settings.cache_clear()` in tests)."""
    return Settings()
