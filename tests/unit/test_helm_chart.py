"""The Helm chart, checked by Helm's own engine and the Kubernetes schemas, not as text.

`helm_python` (the `helm-python-sdk` wheel: Helm's Go SDK, no binary) lints and renders the chart for
the default values (plus the API-key Secret they require), the GPU values and production-like values
(helm/pd-gateway/ci/); `kubernetes-validate --strict` checks every rendered object against two
Kubernetes versions' schemas; the assertions below read the rendered objects.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as hp
import pytest
import yaml

from gateway.app import create_app
from gateway.seed import DEFAULT_SOURCE
from gateway.settings import Settings
from tests.unit.test_deploy_artifacts import PENDING_SETTINGS, PROTECTION_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pd-gateway"
SETTINGS = set(Settings.model_fields)
KUBE_VERSIONS = ("1.30.0", "1.34.0")
# Custom resources: no built-in schema (checked by the assertions below instead).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
KEYS = {"auth": {"existingSecret": "pd-api-keys"}}
VALUE_SETS = {
    "default": KEYS,
    "gpu": yaml.safe_load((CHART / "ci" / "gpu-values.yaml").read_text()),
    "production": yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text()),
}
RELEASE = "pd"


@pytest.fixture(scope="module")
def chart() -> Iterator[hp.Chart]:
    hp.disable_logging()  # the INFO lines about files/ linking to deploy/
    yield hp.Chart.load(str(CHART))


def render(chart: hp.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = chart.render(values=values, name=RELEASE, namespace="pd", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@pytest.fixture(scope="module")
def rendered(chart: hp.Chart) -> dict[str, list[dict[str, Any]]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return by_kind(docs, kind)[f"{RELEASE}-pd-gateway-{name}"]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: d["spec"]["template"] for name, d in by_kind(docs, "Deployment").items()}


# --- Helm's engine and the Kubernetes schemas ----------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(name: str) -> None:
    for version in KUBE_VERSIONS:
        report = hp.lint(str(CHART), values=VALUE_SETS[name], strict=True, kube_version=f"v{version}")
        assert report["errors"] == [], report
        # severity 1 is INFO ("icon is recommended"); 2 and above are warnings and errors.
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_validates_strictly(version: str, rendered: dict[str, Any], tmp_path: Path) -> None:
    paths = []
    for name, docs in rendered.items():
        objects = [d for d in docs if d["kind"] not in CRD_KINDS]
        kinds = {d["kind"] for d in objects}
        assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds, name
        assert {"NetworkPolicy", "ServiceAccount", "PersistentVolumeClaim"} <= kinds, name
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump_all(objects))
    cli = Path(sys.executable).with_name("kubernetes-validate")
    proc = subprocess.run(
        [str(cli), "--strict", "--quiet", "-k", version, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"Kubernetes {version}:\n{proc.stdout}{proc.stderr}"


def test_install_without_keys_fails_clearly(chart: hp.Chart) -> None:
    with pytest.raises(hp.HelmError, match=r"auth: no API keys\. Set auth\.existingSecret"):
        render(chart, {})


def test_anonymous_only_when_asked(chart: hp.Chart) -> None:
    docs = render(chart, {"auth": {"allowAnonymous": True}})
    gateway = component(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    env = {e["name"] for e in gateway["containers"][0]["env"]}
    assert "API_KEYS_FILE" not in env and "API_KEYS" not in env
    assert "api-keys" not in {v["name"] for v in gateway["volumes"]}


@pytest.mark.parametrize(
    "values",
    [
        {"gateway": {"podSecurityContext": {"runAsNonRoot": False}}},
        {"triton": {"replicaCount": 0}},
        {"modelRepository": {"mountPath": "models"}},
        {"surprise": True},
    ],
    ids=["root", "no-replicas", "relative-path", "unknown-key"],
)
def test_values_schema_rejects(chart: hp.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(hp.HelmError, match="schema"):
        render(chart, {**KEYS, **values})


# --- what the rendered objects say ----------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_non_root_with_a_read_only_root(name: str, rendered: dict[str, Any]) -> None:
    docs = rendered[name]
    service_accounts = by_kind(docs, "ServiceAccount")
    assert all(sa["automountServiceAccountToken"] is False for sa in service_accounts.values())
    pods = pod_specs(docs)
    assert len(pods) == 3  # gateway, Triton, Redis
    for pod_name, template in pods.items():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, pod_name
        assert spec["securityContext"]["runAsUser"] > 0, pod_name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        assert spec["automountServiceAccountToken"] is False, pod_name
        assert spec["serviceAccountName"] in service_accounts, pod_name
        for container in spec.get("initContainers", []) + spec["containers"]:
            ctx = container["securityContext"]
            where = f"{pod_name}/{container['name']}"
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx.get("runAsUser", 1) != 0, where
            assert container["resources"]["limits"] and container["resources"]["requests"], where


@pytest.mark.parametrize("name", VALUE_SETS)
def test_probes_hit_real_routes(name: str, rendered: dict[str, Any]) -> None:
    app = create_app(Settings(TRITON_GRPC_URL="127.0.0.1:1"))
    routes = set(app.openapi()["paths"])
    # Triton's KServe v2 health routes; tests/integration/test_seed_and_observability.py calls them on
    # a real Triton.
    triton_routes = {"/v2/health/live", "/v2/health/ready"}
    pods = pod_specs(rendered[name])
    for component_name, known in (("gateway", routes), ("triton", triton_routes)):
        container = pods[f"{RELEASE}-pd-gateway-{component_name}"]["spec"]["containers"][0]
        ports = {p["name"] for p in container["ports"]}
        probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        for kind, probe in probes.items():
            assert probe["path"] in known, f"{component_name} {kind} {probe['path']}"
            assert probe["port"] in ports, f"{component_name} {kind}"
        assert probes["readinessProbe"]["path"] != probes["livenessProbe"]["path"]
    gateway = pods[f"{RELEASE}-pd-gateway-gateway"]["spec"]
    assert gateway["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    prestop = int(gateway["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    graceful = int(
        gateway["containers"][0]["args"][gateway["containers"][0]["args"].index("--graceful-timeout-s") + 1]
    )
    assert gateway["terminationGracePeriodSeconds"] > prestop + graceful


@pytest.mark.parametrize("name", VALUE_SETS)
def test_disruption_budgets_and_spread(name: str, rendered: dict[str, Any]) -> None:
    docs = rendered[name]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for component_name in ("gateway", "triton"):
        template = component(docs, "Deployment", component_name)["spec"]["template"]
        labels = template["metadata"]["labels"]
        pdb = pdbs[f"{RELEASE}-pd-gateway-{component_name}"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["minAvailable"] >= 1
        hpa = component(docs, "HorizontalPodAutoscaler", component_name)
        # The PDB must leave room to evict: the HPA never goes below minAvailable + 1.
        assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"], component_name
        constraints = template["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, component_name
        for c in constraints:
            assert c["labelSelector"]["matchLabels"].items() <= labels.items()
            assert c["matchLabelKeys"] == ["pod-template-hash"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_only_the_gateway_reaches_triton_and_redis(name: str, rendered: dict[str, Any]) -> None:
    docs = rendered[name]
    gateway_labels = component(docs, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    policies = by_kind(docs, "NetworkPolicy")
    for target, ports in (("triton", {"grpc", "http"}), ("redis", {"redis"})):
        policy = policies[f"{RELEASE}-pd-gateway-{target}"]["spec"]
        pod_labels = component(docs, "Deployment", target)["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["policyTypes"] == ["Ingress"]
        for rule in policy["ingress"]:
            rule_ports = {p["port"] for p in rule["ports"]}
            if rule_ports & ports:
                assert rule_ports == ports
                (peer,) = rule["from"]
                assert set(peer) == {"podSelector"}, "only pods of this namespace, selected by label"
                assert peer["podSelector"]["matchLabels"].items() <= gateway_labels.items()
            else:
                assert rule_ports == {"metrics"}, "anything else reaches only Triton's metrics port"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_triton_is_seeded_before_it_starts(name: str, rendered: dict[str, Any]) -> None:
    docs = rendered[name]
    triton = component(docs, "Deployment", "triton")["spec"]["template"]["spec"]
    gateway = component(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    (seed,) = triton["initContainers"]  # init containers finish before Triton's container starts
    server = triton["containers"][0]
    assert seed["image"] == gateway["containers"][0]["image"], "the seed is the gateway image's copy"
    assert seed["command"][:3] == ["python", "-m", "gateway.seed"]
    args = dict(zip(seed["command"][3::2], seed["command"][4::2], strict=True))
    dockerfile = (ROOT / "docker" / "gateway.Dockerfile").read_text()
    assert re.search(rf"^COPY .*model_repository {re.escape(args['--source'])}$", dockerfile, re.M)
    assert args["--source"] == str(DEFAULT_SOURCE)
    mounts = {m["name"]: m for m in seed["volumeMounts"]}
    assert mounts["model-repository"]["mountPath"] == args["--dest"]
    assert not mounts["model-repository"].get("readOnly")
    triton_mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert triton_mounts["model-repository"] == args["--dest"]
    assert f"--model-repository={args['--dest']}" in server["args"]
    assert "--model-control-mode=explicit" in server["args"] and "--load-model=pd_unet1d" in server["args"]
    # The seeder writes as the gateway's user, which writes new versions into the same volume later.
    assert seed["securityContext"]["runAsUser"] == gateway["securityContext"]["runAsUser"]
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in triton["volumes"] if "persistentVolumeClaim" in v
    }
    gateway_claims = {
        v["persistentVolumeClaim"]["claimName"] for v in gateway["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == gateway_claims == set(by_kind(docs, "PersistentVolumeClaim"))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_gateway_env_and_api_keys_file(name: str, rendered: dict[str, Any]) -> None:
    docs = rendered[name]
    spec = component(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= SETTINGS | PENDING_SETTINGS, f"not in Settings: {set(env) - SETTINGS}"
    assert set(env) >= PROTECTION_SETTINGS
    # Valid values (API_KEYS_FILE names a file that exists only in the pod).
    Settings(**{k: e["value"] for k, e in env.items() if k != "API_KEYS_FILE" and k not in PENDING_SETTINGS})
    assert env["TRITON_GRPC_URL"]["value"] == f"{RELEASE}-pd-gateway-triton:8001"
    assert env["REDIS_URL"]["value"] == f"redis://{RELEASE}-pd-gateway-redis:6379/0"
    # Keys are a file from a Secret volume (no subPath, so the kubelet updates it on rotation).
    keys_file = Path(env["API_KEYS_FILE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "api-keys"]
    assert mount["mountPath"] == str(keys_file.parent) and mount["readOnly"] and "subPath" not in mount
    (volume,) = [v for v in spec["volumes"] if v["name"] == "api-keys"]
    secret = volume["secret"]
    assert secret["items"] == [{"key": keys_file.name, "path": keys_file.name}]
    secrets = by_kind(docs, "Secret")
    if name == "gpu":  # auth.create
        assert set(secrets[secret["secretName"]]["data"]) == {keys_file.name}
    else:
        assert secret["secretName"] == VALUE_SETS[name]["auth"]["existingSecret"] and not secrets
    # Rotation needs no restart: nothing hashes the Secret into the pod template.
    assert not any(
        "checksum" in k
        for k in component(docs, "Deployment", "gateway")["spec"]["template"]["metadata"].get(
            "annotations", {}
        )
    )


def test_redis_is_locked_down(rendered: dict[str, Any]) -> None:
    redis = component(rendered["default"], "Deployment", "redis")["spec"]["template"]["spec"]
    (container,) = redis["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data"}
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine", container["image"].split(":")[1]), "an exact release tag"


def test_triton_scales_on_its_own_signal(rendered: dict[str, Any]) -> None:
    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["external"]}
    for name in VALUE_SETS:
        docs = rendered[name]
        deployment = component(docs, "Deployment", "triton")
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        hpa = component(docs, "HorizontalPodAutoscaler", "triton")["spec"]
        assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        kinds = [m["type"] for m in hpa["metrics"]]
        assert kinds[-1] == "Resource" and hpa["metrics"][-1]["resource"]["name"] == "cpu"  # fallback
        external = [m["external"] for m in hpa["metrics"] if m["type"] == "External"]
        if name == "production":
            assert {m["metric"]["name"] for m in external} == served
            for m in external:
                assert m["metric"]["selector"]["matchLabels"] == {"service": deployment["metadata"]["name"]}
        else:
            assert external == []


def test_gpu_values(rendered: dict[str, Any]) -> None:
    triton = component(rendered["gpu"], "Deployment", "triton")["spec"]["template"]["spec"]
    assert triton["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in triton["tolerations"]
    assert "--allow-gpu-metrics=true" in triton["containers"][0]["args"]


def test_monitoring_objects_are_the_deploy_files(rendered: dict[str, Any]) -> None:
    docs = rendered["production"]
    (rule,) = by_kind(docs, "PrometheusRule").values()
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    (dashboard,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "pd-gateway.json").read_text())
    assert json.loads(dashboard["data"]["pd-gateway.json"]) == source
    monitors = by_kind(docs, "ServiceMonitor")
    services = by_kind(docs, "Service")
    assert len(monitors) == 2
    for monitor in monitors.values():
        (endpoint,) = monitor["spec"]["endpoints"]
        (service,) = [
            s
            for s in services.values()
            if s["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
            and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
        ]
        # The job label the alerts and the dashboard select on.
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] in {"pd-gateway", "triton"}
    assert by_kind(rendered["default"], "PrometheusRule") == {}
