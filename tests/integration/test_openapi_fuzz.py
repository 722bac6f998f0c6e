"""/openapi.json is a valid OpenAPI document, and the gateway keeps to it under a schema-based fuzzer.

Schemathesis generates requests for every operation from the served document (valid and invalid ones,
fixed seed, bounded count) and sends them over HTTP to a real gateway (uvicorn on loopback) in front of
the session's real Triton and Redis. Every answer must be: no 5xx, a status the operation declares, a
body that matches the declared schema (the error body included), a declared content type.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton
from tests.integration.conftest import MODEL, live_server, make_settings

pytestmark = pytest.mark.integration

OPERATOR_KEY = "fuzz-operator-key-0123456789"
# At most this many per operation and generation mode (hypothesis stops early on small input spaces):
# about 1,100 requests in all, under a minute here.
EXAMPLES = int(os.environ.get("PDGW_FUZZ_EXAMPLES", "80"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def live_gateway(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> Iterator[str]:
    """The real app on a loopback port, with an operator key configured."""
    settings = make_settings(triton.grpc_url, redis_url, model_repo, API_KEYS=f"fuzz:operator:{OPERATOR_KEY}")
    with live_server(create_app(settings)) as url:
        yield url


def test_openapi_document_is_valid(live_gateway: str) -> None:
    spec = httpx.get(f"{live_gateway}/openapi.json", timeout=10).json()
    validate(spec)
    error_ref = "#/components/schemas/ErrorResponse"
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            statuses = set(op["responses"])
            assert statuses & {"200", "201", "202"}, (method, path)
            for status in statuses - {"200", "201", "202"}:
                if status.startswith("3"):  # GET / sends a browser to /ui: a redirect has no body
                    continue
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                if path not in ("/readyz", "/healthz"):  # their 503 carries their own status body
                    assert schema == {"$ref": error_ref}, (method, path, status)
    detect = spec["paths"]["/v1/detect"]["post"]
    assert {p["name"] for p in detect["parameters"]} >= {"sampling_rate_hz", "threshold", "profile"}
    ok = detect["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/DetectResponse"}


def _fuzz(case_strategy: Any, label: str, base_url: str, statuses: Counter[int], failures: list[str]) -> None:
    """Send up to EXAMPLES generated cases of one operation; record statuses and every failed check."""
    headers = {"X-API-Key": OPERATOR_KEY}

    @given(case=case_strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # a fixed seed: the same cases every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        # Never let the fuzzer load, unload or deploy the model the rest of the session serves.
        if case.method == "POST" and (case.path_parameters or {}).get("name") == MODEL:
            return
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as e:  # collect every distinct failure, not just the first
            failures.append(f"{label} -> {response.status_code}: {e}"[:600])

    run()


def test_fuzz_every_operation_keeps_to_the_schema(live_gateway: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_gateway}/openapi.json")
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            try:
                _fuzz(strategy, f"{operation.label} [{mode.value}]", live_gateway, statuses, failures)
            except Unsatisfiable:
                # No invalid request exists for an operation without inputs (GET /healthz).
                assert mode is GenerationMode.NEGATIVE, operation.label

    total = sum(statuses.values())
    print(f"fuzz: {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures[:10])
    assert total >= 10 * EXAMPLES
    assert not [s for s in statuses if s >= 500]
