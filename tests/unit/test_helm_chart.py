"""The Helm chart agrees with the gateway: env names exist in Settings, probes hit the right routes.

Without the `helm` binary the templates are checked as text (balanced actions and blocks, every
`.Values` path defined in values.yaml, every `include` defined); with it, `helm lint` and
`helm template` run and the rendered manifests are checked too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import Settings

CHART = Path(__file__).resolve().parents[2] / "helm" / "pd-gateway"
TEMPLATES = [*sorted((CHART / "templates").glob("*.yaml")), CHART / "templates" / "NOTES.txt"]
ALL_FILES = [*TEMPLATES, CHART / "templates" / "_helpers.tpl"]
SETTINGS = set(Settings.model_fields)
# API_KEYS is wired (optional Secret) ahead of the API-key feature; once Settings has it, it is checked.
PENDING_SETTINGS = {"API_KEYS"} - SETTINGS
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_OPENERS = ("if", "range", "with", "define", "block")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _resolve(values: dict[str, Any], path: str) -> bool:
    node: Any = values
    for key in path.strip(".").split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "pd-gateway"
    assert chart["version"] and chart["appVersion"]
    assert (CHART / "templates" / "_helpers.tpl").is_file()


@pytest.mark.parametrize("template", ALL_FILES, ids=lambda p: p.name)
def test_template_actions_balanced(template: Path) -> None:
    text = template.read_text()
    assert text.count("{{") == text.count("}}"), "unbalanced {{ }}"
    depth = 0
    for action in _ACTION.findall(text):
        if action.startswith("/*"):
            continue
        word = action.split()[0] if action.split() else ""
        if word in _OPENERS:
            depth += 1
        elif word == "end":
            depth -= 1
            assert depth >= 0, "`end` without an opening block"
    assert depth == 0, "a block is not closed"


def test_every_values_reference_exists(values: dict[str, Any]) -> None:
    missing = []
    for template in ALL_FILES:
        text = template.read_text()
        aliases = dict(re.findall(r"\$(\w+)\s*:=\s*\.Values((?:\.\w+)+)", text))
        refs = re.findall(r"\.Values((?:\.\w+)+)", text)
        for alias, base in aliases.items():
            refs += [base + rest for rest in re.findall(rf"\${alias}((?:\.\w+)+)", text)]
        missing += [f"{template.name}: .Values{ref}" for ref in refs if not _resolve(values, ref)]
    assert not missing, missing


def test_every_include_is_defined() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    defined = set(re.findall(r'define\s+"([^"]+)"', helpers))
    for template in ALL_FILES:
        used = set(re.findall(r'include\s+"([^"]+)"', template.read_text()))
        assert used <= defined, f"{template.name}: undefined {used - defined}"


def test_gateway_env_names_are_settings(values: dict[str, Any]) -> None:
    env = values["gateway"]["env"]
    assert set(env) <= SETTINGS, f"values gateway.env not in Settings: {set(env) - SETTINGS}"
    assert all(isinstance(v, str) for v in env.values()), "env values must be strings"
    Settings(**env)  # the defaults the chart ships are valid settings
    deployment = (CHART / "templates" / "gateway-deployment.yaml").read_text()
    named = set(re.findall(r"-\s+name:\s+([A-Z][A-Z0-9_]*)\s*$", deployment, re.M))
    assert {"TRITON_GRPC_URL", "REDIS_URL", "MODEL_REPOSITORY", "HOST", "PORT", "API_KEYS"} <= named
    assert named <= SETTINGS | PENDING_SETTINGS, f"not in Settings: {named - SETTINGS - PENDING_SETTINGS}"
    api_keys = deployment.split("name: API_KEYS", 1)[1].split("- name:", 1)[0]
    assert "secretKeyRef" in api_keys and "optional: true" in api_keys, "the API_KEYS Secret must be optional"


def test_probes_and_shutdown(values: dict[str, Any]) -> None:
    gw, triton = values["gateway"], values["triton"]
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gw["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # The pod must outlive the preStop sleep plus uvicorn's drain, or in-flight requests are cut.
    assert gw["terminationGracePeriodSeconds"] > gw["preStopSleepSeconds"] + gw["gracefulTimeoutS"]
    assert gw["podSecurityContext"]["runAsNonRoot"] is True and gw["podSecurityContext"]["runAsUser"] != 0
    assert values["modelRepository"]["accessMode"] == "ReadWriteMany"
    assert triton["image"]["repository"] == "nvcr.io/nvidia/tritonserver"
    assert "pd_unet1d" in triton["models"]


def test_triton_template_essentials() -> None:
    text = (CHART / "templates" / "triton-deployment.yaml").read_text()
    assert "--model-control-mode=explicit" in text
    assert '"nvidia.com/gpu"' in text and "$t.gpu.enabled" in text
    gateway = (CHART / "templates" / "gateway-deployment.yaml").read_text()
    assert "preStop" in gateway and "terminationGracePeriodSeconds" in gateway
    assert "prometheus.io/scrape" in gateway


# --- with the helm binary ----------------------------------------------------------------------------


def _helm() -> str:
    path = shutil.which("helm")
    if path is None:
        pytest.skip("helm is not installed (not packaged by Debian 12): templates checked as text only")
    return path


def _render(helm: str, *sets: str) -> list[dict[str, Any]]:
    args = [helm, "template", "rel", str(CHART)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_helm_lint() -> None:
    args = [_helm(), "lint", "--strict", str(CHART)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm_template_renders() -> None:
    helm = _helm()
    docs = _render(helm)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert {"rel-pd-gateway-gateway", "rel-pd-gateway-triton", "rel-pd-gateway-redis"} <= set(deployments)
    gateway = deployments["rel-pd-gateway-gateway"]
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert set(env) <= SETTINGS | PENDING_SETTINGS
    assert env["TRITON_GRPC_URL"]["value"] == "rel-pd-gateway-triton:8001"
    assert env["API_KEYS"]["valueFrom"]["secretKeyRef"]["optional"] is True

    gpu = _render(
        helm,
        "triton.gpu.enabled=true",
        "apiKeys.create=true",
        "apiKeys.keys=ci:operator:0123456789abcdef0123",
    )
    triton = next(
        d for d in gpu if d["kind"] == "Deployment" and d["metadata"]["name"] == "rel-pd-gateway-triton"
    )
    limits = triton["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert any(d["kind"] == "Secret" for d in gpu)
