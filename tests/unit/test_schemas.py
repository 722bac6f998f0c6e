"""The typed contract: detect options (400 for every bad value, never a 500) and the OpenAPI document."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.decoding import Limits, decode_detect
from gateway.dsp.params import DEFAULT_PARAMS, SEED_PARAMS
from gateway.errors import InvalidInput
from gateway.routes.health import endpoints
from gateway.schemas import OPTION_NAMES, DetectOptions, option_query_parameters, parse_options
from gateway.settings import Settings

HUGE = 10**400  # json.loads reads it as an int; float() of it overflows


@pytest.mark.parametrize("name", ["sampling_rate_hz", "threshold", "power_frequency_hz"])
@pytest.mark.parametrize("value", [HUGE, -HUGE, str(HUGE), "1e400", "nan", "inf", "-1", 0, "abc", None])
def test_bad_numbers_are_invalid_input(name: str, value: object) -> None:
    if value is None and name != "power_frequency_hz":
        assert getattr(parse_options({name: value}), name) is None  # null = the version's own value
        return
    with pytest.raises(InvalidInput) as e:
        parse_options({name: value})
    assert name in e.value.message


def test_huge_integer_in_a_json_body_is_a_400() -> None:
    body = b'{"signal": [0.0, 1.0, 2.0], "sampling_rate_hz": 1' + b"0" * 400 + b"}"
    with pytest.raises(InvalidInput):  # refused by the JSON parser or by DetectOptions: a 400 either way
        decode_detect(body, "application/json", {}, Limits(10, 10, 1))


def test_options_from_query_strings_and_json_values() -> None:
    opts = parse_options(
        {"threshold": "0.25", "version": 2, "model": "", "profile": "", "include_probability": "yes"}
    )
    assert opts == DetectOptions(threshold=0.25, version="2", include_probability=True)
    assert opts.model is None and opts.profile == "model"
    assert parse_options({"sampling_rate_hz": "4e7"}).samples_per_cycle == pytest.approx(8e5)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"thresh": 0.3}, "unknown option(s): thresh; allowed: include_preprocessed, include_probability"),
        ({"normalisation": "max"}, "normalisation"),
        ({"profile": "old"}, "profile"),
        ({"threshold": 1.0}, "threshold"),
        ({"include_probability": "maybe"}, "include_probability"),
        ({"model": "m" * 65}, "model"),
        ({"sampling_rate_hz": 0.5}, "sampling_rate_hz"),
    ],
)
def test_invalid_options_name_the_problem(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_options(raw)
    assert fragment in e.value.message


def test_effective_params_applies_overrides_and_the_seed_profile() -> None:
    assert DetectOptions().effective_params(DEFAULT_PARAMS) is DEFAULT_PARAMS
    p = DetectOptions(threshold=0.7, normalisation="none").effective_params(DEFAULT_PARAMS)
    assert (p.threshold, p.normalisation, p.window) == (0.7, "none", DEFAULT_PARAMS.window)
    seed = DetectOptions(profile="seed").effective_params(DEFAULT_PARAMS.replace(window=2048, hop=1024))
    assert seed == SEED_PARAMS.replace(window=2048, hop=1024)


def test_a_request_threshold_holds_at_every_length() -> None:
    version = DEFAULT_PARAMS.replace(threshold=0.5, long_signal_threshold=0.9, long_signal_samples=1000)
    assert DetectOptions().effective_params(version).threshold_for(5000) == 0.9
    p = DetectOptions(threshold=0.7).effective_params(version)
    assert (p.threshold_for(999), p.threshold_for(1000), p.threshold_for(800_000)) == (0.7, 0.7, 0.7)
    block = DetectOptions().effective_params(version, signal_samples=5000)  # a stream's blocks
    assert (block.threshold_for(10), block.threshold_for(5000)) == (0.9, 0.9)
    assert DetectOptions().effective_params(version, signal_samples=999).threshold_for(5000) == 0.5


def test_openapi_document_declares_options_responses_and_errors() -> None:
    app = create_app(Settings(TRITON_GRPC_URL="127.0.0.1:1", LOG_LEVEL="error"))
    spec = app.openapi()
    validate(spec)
    detect = spec["paths"]["/v1/detect"]["post"]
    assert (
        [p["name"] for p in detect["parameters"]]
        == list(OPTION_NAMES)
        == [p["name"] for p in option_query_parameters()]
    )
    declared = {"200", "400", "401", "403", "404", "413", "415", "429", "502", "503", "504"}
    assert set(detect["responses"]) == declared
    json_body = detect["requestBody"]["content"]["application/json"]["schema"]
    assert {"signal", "signals", *OPTION_NAMES} <= set(json_body["properties"])
    region = spec["components"]["schemas"]["Region"]["properties"]
    assert {"start", "end", "duration", "peak_index", "phase_deg", "start_us"} <= set(region)
    # No operation keeps FastAPI's default 422 body: every error is the one ErrorResponse shape.
    assert "HTTPValidationError" not in json.dumps(spec)
    assert "/v1/detect" in endpoints(app) and "/metrics" in endpoints(app)
