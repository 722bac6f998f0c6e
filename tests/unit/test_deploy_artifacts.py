"""Deployment artefacts agree with the code: compose, Dockerfile, Prometheus, Grafana.

Fast and offline. Docker cannot run here, so the files are checked as data and by each ecosystem's own
tool: the Compose spec's JSON schema (check-jsonschema), hadolint, promtool (Debian package
`prometheus`, installed by scripts/system-deps.sh). Every environment variable exists in `Settings`,
every `pdgw_*` metric exists in gateway/metrics.py, every `nv_*` metric is one Triton documents, every
path a service mounts exists, every alert has a rule test, the lockfile matches pyproject.toml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "pd-gateway.json"
SETTINGS = set(Settings.model_fields)
# The protection feature (helper h14b: rate limit, load shedding, circuit breaker, tracing, key reloads)
# is wired into the chart, compose, the dashboard and the alerts ahead of its merge. Until Settings and
# gateway/metrics.py define these names they are "pending"; then the sets below are empty and the names
# are checked like every other (here, in test_helm_chart.py and against a real Prometheus).
PROTECTION_SETTINGS = {
    "RATE_LIMIT",
    "SHED_QUEUED_BATCHES",
    "CIRCUIT_BREAKER_FAILURES",
    "CIRCUIT_BREAKER_RESET_S",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
}
PENDING_SETTINGS = PROTECTION_SETTINGS - SETTINGS
PROTECTION_METRICS = {
    "pdgw_rate_limited_total",
    "pdgw_shed_total",
    "pdgw_triton_queued_batches",
    "pdgw_circuit_breaker_state",
    "pdgw_circuit_breaker_opened_total",
    "pdgw_circuit_breaker_rejected_total",
    "pdgw_api_key_reloads_total",
}
# Triton 2.51 on its metrics port (docs/user_guide/metrics.md; seen on the embedded server).
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_pending_request_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
    "nv_cpu_utilization",
    "nv_cpu_memory_total_bytes",
    "nv_cpu_memory_used_bytes",
}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def gateway_metric_names() -> set[str]:
    """Every series name the gateway's collectors expose (counter `_total`, histogram `_bucket`, ...)."""
    names: set[str] = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
    return names


def pending_metrics() -> set[str]:
    return PROTECTION_METRICS - gateway_metric_names()


def referenced(text: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\b({prefix}[A-Za-z0-9_]+)", text))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")


def test_every_yaml_file_parses() -> None:
    files = [
        *ROOT.glob("docker-compose*.yml"),
        *(ROOT / "deploy").rglob("*.yml"),
        ROOT / "helm" / "pd-gateway" / "Chart.yaml",
        ROOT / "helm" / "pd-gateway" / "values.yaml",
    ]
    assert len(files) >= 8
    for path in files:
        assert isinstance(load_yaml(path), dict), path


def test_gateway_metric_names_are_known() -> None:
    names = gateway_metric_names()
    assert {"pdgw_http_requests_total", "pdgw_http_request_duration_seconds_bucket"} <= names
    assert "pdgw_http_requests" not in names  # a counter is only exposed with its _total suffix


# --- docker-compose ----------------------------------------------------------------------------------


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"triton", "gateway", "redis", "prometheus", "grafana"} <= set(services)
    triton = services["triton"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    cmd = triton["command"]
    assert cmd[0] == "tritonserver"
    required = {"--model-repository=/models", "--model-control-mode=explicit", "--load-model=pd_unet1d"}
    assert required <= set(cmd)
    assert {"8000", "8001", "8002"} == set(triton["expose"]) and "ports" not in triton  # internal only
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert (ROOT / services["gateway"]["build"]["dockerfile"]).is_file()


def test_compose_gateway_env_is_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["gateway"]["environment"]
    assert set(env) <= SETTINGS | PENDING_SETTINGS, f"not in Settings: {set(env) - SETTINGS}"
    assert PROTECTION_SETTINGS - {
        "CIRCUIT_BREAKER_FAILURES",
        "CIRCUIT_BREAKER_RESET_S",
        "OTEL_SERVICE_NAME",
    } <= set(env)
    known = {k: v for k, v in env.items() if "${" not in str(v) and k not in PENDING_SETTINGS}
    settings = Settings(**known)  # validates the values
    host, port = settings.TRITON_GRPC_URL.split(":")
    assert host in services and "--grpc-port=" + port in services["triton"]["command"]
    assert settings.REDIS_URL is not None and settings.REDIS_URL.get_secret_value().startswith(
        "redis://redis:6379"
    )
    assert services["gateway"]["ports"] == [f"8080:{settings.PORT}"]
    assert settings.HOST == "0.0.0.0"
    assert "--load-model=" + settings.DEFAULT_MODEL in services["triton"]["command"]


def test_compose_model_repository_is_shared_and_seeded(compose: dict[str, Any]) -> None:
    services = compose["services"]
    repo = services["gateway"]["environment"]["MODEL_REPOSITORY"]
    assert f"model-repository:{repo}" in services["gateway"]["volumes"], "the gateway writes new versions"
    assert f"model-repository:{repo}:ro" in services["triton"]["volumes"], "Triton only reads"
    assert "model-repository" in compose["volumes"]
    # Seeded by the same step as the chart's initContainer, before Triton starts.
    init = services["model-init"]
    assert init["entrypoint"][:3] == ["python", "-m", "gateway.seed"]
    assert init["entrypoint"][init["entrypoint"].index("--dest") + 1] == repo
    assert services["triton"]["depends_on"]["model-init"]["condition"] == "service_completed_successfully"


def _check_jsonschema(*args: str) -> None:
    cli = Path(sys.executable).with_name("check-jsonschema")
    proc = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_files_match_the_compose_spec(tmp_path: Path) -> None:
    _check_jsonschema("--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml"))
    # The GPU overlay, merged as `docker compose -f a -f b` merges mappings.
    merged = load_yaml(ROOT / "docker-compose.yml")
    merged["services"]["triton"].update(load_yaml(ROOT / "docker-compose.gpu.yml")["services"]["triton"])
    (tmp_path / "merged.yml").write_text(yaml.safe_dump(merged))
    _check_jsonschema("--builtin-schema", "vendor.compose-spec", str(tmp_path / "merged.yml"))


def test_compose_is_locked_down(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} must be published on loopback only: {port}"
    assert "--web.enable-lifecycle" not in services["prometheus"]["command"]
    for name in ("gateway", "model-init", "redis"):
        assert services[name]["read_only"] is True, f"{name}: read-only root filesystem"
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    for key in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", grafana[key]), f"{key} must come from the environment"
    assert re.fullmatch(r"\$\{PDGW_API_KEYS:\?[^}]+\}", services["gateway"]["environment"]["API_KEYS"])
    # An exact release: major.minor.patch, or NGC's monthly release (YY.MM) for Triton; never latest
    # or a floating major/minor tag such as redis:7.4-alpine.
    exact = {
        "triton": r"\d\d\.\d\d-py3",
        "gateway": r"\$\{PDGW_TAG:-[\d.]+\}",
        "model-init": r"\$\{PDGW_TAG:-[\d.]+\}",
    }
    for name, service in services.items():
        tag = service["image"].split(":", 1)[1]
        assert re.fullmatch(exact.get(name, r"v?\d+\.\d+\.\d+(-alpine)?"), tag), f"{name}: {service['image']}"


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    grafana_mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "pd-gateway.yml")
    assert provider["providers"][0]["options"]["path"] == grafana_mounts["./deploy/grafana/dashboards"]


def test_compose_gpu_override() -> None:
    triton = load_yaml(ROOT / "docker-compose.gpu.yml")["services"]["triton"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


# --- Dockerfile --------------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = (ROOT / "docker" / "gateway.Dockerfile").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in code and len(re.findall(r"^FROM ", code, re.M)) >= 2
    assert re.search(r"^USER (?!0|root)\S+", code, re.M), "the runtime stage must not run as root"
    assert 'ENTRYPOINT ["pd-gateway"]' in code and 'CMD ["serve"]' in code
    assert "HEALTHCHECK" in code and "/healthz" in code
    assert not re.search(r"pip install [^\n]*(torch|\[train)", code)
    env_names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", code.split("FROM ${PYTHON_IMAGE} AS runtime")[1]))
    app_env = env_names - {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "UID", "GID"}
    assert app_env and app_env <= SETTINGS, f"not in Settings: {app_env - SETTINGS}"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {"!gateway", "!pyproject.toml", "!requirements.lock", "!model_repository"} <= set(ignore)
    assert "pip install --no-deps --require-hashes -r requirements.lock" in code


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "docker" / "gateway.Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lockfile_pins_every_runtime_dependency() -> None:
    """requirements.lock (`make lock`) pins, with hashes, a version of every runtime dependency that
    satisfies pyproject.toml; stale after a dependency change until `make lock` runs again."""
    text = (ROOT / "requirements.lock").read_text()
    pins = {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", text, re.M)
    }
    assert len(pins) == text.count("==") and text.count("--hash=sha256:") >= len(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for dep in [*project["project"]["dependencies"], *project["build-system"]["requires"]]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} vs {req}"
    assert "torch" not in pins and "nvidia-pytriton" not in pins


# --- Prometheus --------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_compose_services(compose: dict[str, Any]) -> None:
    config = load_yaml(PROM_DIR / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (PROM_DIR / rule_file).is_file()
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    services = compose["services"]
    assert targets["pd-gateway"] == f"gateway:{services['gateway']['environment']['PORT']}"
    assert f"--metrics-port={targets['triton'].split(':')[1]}" in services["triton"]["command"]


def test_alert_rules_use_existing_metrics() -> None:
    rules = [r for g in load_yaml(PROM_DIR / "alerts.yml")["groups"] for r in g["rules"]]
    exprs = "\n".join(r["expr"] for r in rules)
    assert referenced(exprs, "pdgw_") <= gateway_metric_names() | pending_metrics()
    assert referenced(exprs, "nv_") <= TRITON_METRICS
    names = {r["alert"] for r in rules}
    assert {"PdGatewayCircuitBreakerOpen", "PdGatewayShedding"} <= names
    assert {"PdGatewayHigh5xxRatio", "PdGatewayHighLatencyP95", "TritonDown", "TritonModelNotReady"} <= names
    assert any("pdgw_cache_redis_errors_total" in r["expr"] for r in rules)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: run scripts/system-deps.sh (Debian package `prometheus`)")
    return path


def _run(*args: str, cwd: Path = PROM_DIR) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_check_config_and_rules() -> None:
    promtool = _promtool()
    _run(promtool, "check", "config", "prometheus.yml")
    _run(promtool, "check", "rules", "alerts.yml")


def test_promtool_alert_unit_tests() -> None:
    _run(_promtool(), "test", "rules", "alerts_test.yml")


def test_every_alert_has_a_rule_test() -> None:
    """Each alert is tested firing (expected alerts) and quiet (no alert) by alerts_test.yml."""
    alerts = {r["alert"] for g in load_yaml(PROM_DIR / "alerts.yml")["groups"] for r in g["rules"]}
    cases = [c for t in load_yaml(PROM_DIR / "alerts_test.yml")["tests"] for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"


# --- Grafana -----------------------------------------------------------------------------------------


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_dashboard_is_valid_and_uses_existing_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "pd-gateway" and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    datasource = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    for panel in doc["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == datasource["uid"]
    text = "\n".join(dashboard_exprs())
    pdgw = referenced(text, "pdgw_")
    known = gateway_metric_names() | pending_metrics()
    assert pdgw <= known, f"unknown: {pdgw - known}"
    assert pdgw >= PROTECTION_METRICS, "the protection row shows every protection metric"
    assert referenced(text, "nv_") <= TRITON_METRICS
    # What the dashboard is for: latency quantiles, batching, Triton's own queue and compute time.
    assert {
        "pdgw_http_request_duration_seconds_bucket",
        "pdgw_triton_request_duration_seconds_bucket",
        "pdgw_windows_per_request_bucket",
        "pdgw_regions_found_total",
        "pdgw_cache_hits_total",
        "pdgw_cache_misses_total",
    } <= pdgw
    assert {
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_exec_count",
        "nv_inference_count",
    } <= referenced(text, "nv_")


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule promtool must accept."""
    promtool = _promtool()
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".*", "$model": ".*"}
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for var, value in fill.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:panel_query_{i}", "expr": expr})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", "rules.yml", cwd=tmp_path)
