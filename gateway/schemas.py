"""The API's typed contract (pydantic v2): detect options, every response body, the error body.

Routes declare these as `response_model`/`responses`, so /openapi.json documents every field, option and
error status. The detect hot path still builds plain dicts and encodes them directly (no per-request
validation); the models describe those dicts, and the schema test plus the fuzzer keep them honest.

A new detect option is one field on `DetectOptions`; if it overrides a processing parameter, mark it
`ParamOverride` and name the field as in `gateway.dsp.params.ProcessingParams`.

Just over 300 lines on purpose: the whole contract of the API in one place, mostly declarations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from gateway.dsp.params import SEED_PARAMS, Normalisation, ProcessingParams
from gateway.errors import InvalidInput

# -- request options --------------------------------------------------------------------------------


class ParamOverride:
    """Marker: this option, when given, replaces the model version's processing parameter of that name."""


class DetectOptions(BaseModel):
    """Per-request options of POST /v1/detect, in the JSON body or the query string (the body wins).

    None means "use the model version's own parameter". profile "seed" swaps the version's pre/post-
    processing for seed 000's (0.4*fs high-pass, clip, batch-wide normalisation, its valid rule), keeping
    the version's window: it reproduces the old service's validity and signal statistics on the same data.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False, protected_namespaces=()
    )

    model: str | None = Field(None, max_length=64, description="model name (default: DEFAULT_MODEL)")
    version: str | None = Field(
        None, max_length=64, description="pin a model version (default: the highest ready one)"
    )
    sampling_rate_hz: float | None = Field(
        None, ge=1.0, le=1e12, description="gives durations in µs and the AC period for the phase fit"
    )
    power_frequency_hz: float = Field(50.0, ge=1.0, le=10_000.0, description="AC power frequency")
    threshold: Annotated[
        float | None,
        Field(
            None,
            gt=0.0,
            lt=1.0,
            description="probability above which a sample is PD, at every signal length (default: the "
            "version's threshold, and its stricter long-signal threshold for signals of at least "
            "`long_signal_samples`)",
        ),
        ParamOverride(),
    ]
    normalisation: Annotated[
        Normalisation | None,
        Field(None, description="input scaling (default: the version's)"),
        ParamOverride(),
    ]
    include_probability: bool = Field(False, description="add the per-sample probability to each result")
    include_preprocessed: bool = Field(
        False, description="add the preprocessed trace (what the model saw) to each result; the page plots it"
    )
    include_rejected: bool = Field(
        False,
        description="add the candidate regions the version's interference-rejection rules dropped "
        "(an opposite-polarity twin, a peak outside the PD phase window), each with its reason",
    )
    profile: Literal["model", "seed"] = Field(
        "model", description="`model`: the version's own processing; `seed`: seed 000's"
    )

    @field_validator("model", "version", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("profile", mode="before")
    @classmethod
    def _blank_profile(cls, value: Any) -> Any:
        return "model" if value in ("", None) else value

    @property
    def samples_per_cycle(self) -> float | None:
        if self.sampling_rate_hz is None:
            return None
        return self.sampling_rate_hz / self.power_frequency_hz

    def effective_params(
        self, params: ProcessingParams, signal_samples: int | None = None
    ) -> ProcessingParams:
        """The version's `params` with this request's profile and overrides applied; `signal_samples`
        fixes the threshold to the version's one for a signal that long (a stream's blocks)."""
        if self.profile == "seed":
            params = SEED_PARAMS.replace(window=params.window, hop=params.window // 2)
        changes = {k: getattr(self, k) for k in _OVERRIDES if getattr(self, k) is not None}
        if self.threshold is not None:  # the request's threshold holds at every length
            changes["long_signal_threshold"] = None
        elif signal_samples is not None and params.long_signal_threshold is not None:
            changes["threshold"] = params.threshold_for(signal_samples)
            changes["long_signal_threshold"] = None
        return params.replace(**changes) if changes else params


_OVERRIDES = tuple(
    name
    for name, field in DetectOptions.model_fields.items()
    if any(isinstance(m, ParamOverride) for m in field.metadata)
)
OPTION_NAMES = tuple(DetectOptions.model_fields)


def _loc(error: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ())) or "options"


def parse_options(raw: Mapping[str, Any]) -> DetectOptions:
    """Validate options (JSON body merged over the query string); any problem is a 400 invalid_input."""
    try:
        return DetectOptions.model_validate(dict(raw))
    except ValidationError as e:
        errors = e.errors(include_input=False, include_url=False)
        unknown = sorted(_loc(x) for x in errors if x["type"] == "extra_forbidden")
        if unknown:
            message = f"unknown option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(OPTION_NAMES))}"
        else:
            message = "; ".join(f"'{_loc(x)}': {x['msg']}" for x in errors[:3])
        raise InvalidInput(message) from None


def _param_schema(prop: Mapping[str, Any]) -> dict[str, Any]:
    """A property schema without its `null` branch (a query string cannot carry null)."""
    branches = [b for b in prop.get("anyOf", ()) if b.get("type") != "null"]
    schema = dict(branches[0]) if len(branches) == 1 else {k: v for k, v in prop.items() if k != "anyOf"}
    schema.pop("title", None)
    if "default" in prop:
        schema["default"] = prop["default"]
    return schema


def option_query_parameters() -> list[dict[str, Any]]:
    """The options as OpenAPI query parameters, generated from `DetectOptions`."""
    props = DetectOptions.model_json_schema()["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": p.get("description", ""),
            "schema": {k: v for k, v in _param_schema(p).items() if k != "description"},
        }
        for name, p in props.items()
    ]


# -- detect -----------------------------------------------------------------------------------------


_ONE_OF_SIGNAL_OR_SIGNALS: list[JsonValue] = [{"required": ["signal"]}, {"required": ["signals"]}]


class DetectJsonBody(DetectOptions):
    """The JSON body: exactly one of `signal` or `signals`, plus any option."""

    model_config = ConfigDict(title="DetectJsonBody", json_schema_extra={"oneOf": _ONE_OF_SIGNAL_OR_SIGNALS})

    signal: list[float] | None = Field(None, min_length=1, description="one signal")
    signals: list[list[float]] | None = Field(
        None, min_length=1, description="many signals (rows may differ in length)"
    )


class Region(BaseModel):
    start: int
    end: int = Field(description="exclusive")
    duration: int
    peak_index: int
    peak_amplitude: float = Field(description="preprocessed (normalised) units")
    mean_score: float
    phase_deg: float | None = Field(description="AC phase at the peak; null when no sinusoid fits")
    start_us: float | None = Field(None, description="only with sampling_rate_hz")
    duration_us: float | None = Field(None, description="only with sampling_rate_hz")


class RejectedRegion(Region):
    reason: Literal["twin", "phase"] = Field(
        description="twin: a near-equal opposite-polarity pulse within the version's twin_window (a pair); "
        "phase: the peak lies outside the version's PD phase window"
    )


class SignalStats(BaseModel):
    max_amplitude: float
    mean_amplitude: float
    std_amplitude: float


class AcFit(BaseModel):
    samples_per_cycle: float
    amplitude: float
    r2: float
    phase0_deg: float = Field(description="AC phase at sample 0 (0° = rising zero crossing)")


class SignalResult(BaseModel):
    sample_index: int
    n_samples: int
    valid: bool
    num_regions_detected: int = Field(description="exact, even when `regions` is truncated")
    regions: list[Region]
    signal_stats: SignalStats
    ac: AcFit | None
    regions_truncated: bool
    probability: list[float] | None = Field(None, description="only with include_probability")
    preprocessed: list[float] | None = Field(None, description="only with include_preprocessed")
    rejected: list[RejectedRegion] | None = Field(None, description="only with include_rejected")


class DetectResponse(BaseModel):
    model: str
    version: str
    total_samples_processed: int
    valid_samples_found: int
    total_regions: int
    windows: int
    windows_inferred: int = Field(description="windows sent to Triton (the rest were screened out)")
    results: list[SignalResult]
    timings_ms: dict[str, float] = Field(description="decode, preprocess, inference, postprocess, total")

    model_config = ConfigDict(protected_namespaces=())


# -- seed 000 compatibility (GET /test-text) ---------------------------------------------------------


class SeedRegion(BaseModel):
    start: int
    end: int
    duration: int


class SeedResult(BaseModel):
    sample_index: int
    num_regions_detected: int
    regions: list[SeedRegion]
    signal_stats: SignalStats


class SeedTestText(BaseModel):
    """Seed 000's /test-text shape (valid samples only); the last four are extras its clients ignore."""

    total_samples_processed: int
    valid_samples_found: int
    results: list[SeedResult]
    model: str
    version: str
    profile: str
    data: str

    model_config = ConfigDict(protected_namespaces=())


# -- errors -----------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable; clients branch on it, never on `message`")
    message: str
    request_id: str | None
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


_STATUS_TEXT = {
    400: "invalid_input",
    401: "unauthorized (WWW-Authenticate set)",
    403: "forbidden",
    404: "model_not_found / version_not_found / not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error / invalid_model / model_rejected",
    429: "rate_limited / too_many_jobs (Retry-After set)",
    502: "upstream_error",
    503: "upstream_unavailable / overloaded / repository_unavailable (Retry-After may be set)",
    504: "upstream_timeout",
}


def error_responses(statuses: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the one error body (and `Retry-After` on 429/503)."""
    out: dict[int | str, dict[str, Any]] = {}
    for s in statuses:
        out[s] = {"model": ErrorResponse, "description": _STATUS_TEXT.get(s, "error")}
        if s in (429, 503):
            out[s]["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
    return out


AUTH = (401, 403)
UPSTREAM = (502, 503, 504)


# -- models -----------------------------------------------------------------------------------------


class VersionState(BaseModel):
    version: str
    state: str = Field(description="Triton's: READY, LOADING, UNLOADING, UNAVAILABLE, ...")
    reason: str = Field(description="first line of Triton's reason")


class ModelEntry(BaseModel):
    name: str
    default: bool
    versions: list[VersionState]
    serving_version: str | None = Field(description="the version an unpinned request gets")
    state: str | None = Field(None, description="the model's own state when Triton lists no version")


class ModelList(BaseModel):
    models: list[ModelEntry]


class VersionInfo(VersionState):
    in_repository: bool
    window: int | None


class VersionListing(BaseModel):
    name: str
    serving_version: str | None
    served: list[str]
    versions: list[VersionInfo]


class VersionDetail(VersionInfo):
    processing: dict[str, Any] | None = Field(description="the version's processing parameters")
    model_card: dict[str, Any] | None = Field(description="STAC MLM-style model card")


class ModelDescription(VersionListing):
    default: bool
    config: dict[str, Any] | None = Field(description="config summary; null when not mounted here")
    versions: list[VersionDetail]  # type: ignore[assignment]


class DeployResult(VersionListing):
    version: str = Field(description="the version written")
    loaded: bool
    processing: dict[str, Any]
    validation: dict[str, Any]


# -- service ----------------------------------------------------------------------------------------


class ServiceInfo(BaseModel):
    service: str
    version: str
    default_model: str
    endpoints: list[str]
    model: dict[str, Any] = Field(description="name, version, window; or name and error")


class Health(BaseModel):
    status: Literal["ok", "unhealthy"]
    embedded_triton: str | None = Field(None, description="under `serve` with an embedded Triton: its state")
    restarts: int | None = None
    pid: int | None = None


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    triton_live: bool
    model_ready: bool
    redis: Literal["disabled", "connected", "disconnected"]
