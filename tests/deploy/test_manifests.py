"""Deployment artefacts keep their shape: the Kubernetes manifests validate against the API
schema and keep the hardening rules; the compose stack and the Dockerfile keep theirs.

Plain pytest: no broker, no eventlet, no cluster, no Docker engine. The checks iterate over
whatever is in k8s/, so a service copied from filing.yaml is held to the same rules.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DEPLOY = ROOT / "deploy"

# The oldest Kubernetes the manifests promise to run on, and the newest schema that
# kubernetes-validate 1.37.0 ships (so a field removed upstream shows up too).
K8S_VERSIONS = ("1.30.0", "1.37.0")
APP_UID = 10001
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# kustomization.yaml configures kustomize; it is not a Kubernetes resource.
MANIFESTS = sorted(p for p in K8S.rglob("*.y*ml") if p.name != "kustomization.yaml")
RESOURCES = [(path, doc) for path in MANIFESTS for doc in load_all(path)]


def kind(doc_kind: str) -> list[dict]:
    return [doc for _, doc in RESOURCES if doc.get("kind") == doc_kind]


def pod_workloads() -> list[tuple[str, dict, dict]]:
    """(name, workload, pod spec) for everything here that runs pods."""
    found = []
    for _, doc in RESOURCES:
        if doc.get("kind") in POD_OWNERS:
            found.append((doc["metadata"]["name"], doc, doc["spec"]["template"]["spec"]))
        elif doc.get("kind") == "CronJob":
            spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            found.append((doc["metadata"]["name"], doc, spec))
    return found


WORKLOADS = pod_workloads()
CONTAINERS = [
    pytest.param(pod, container, id=f"{name}/{container['name']}")
    for name, _, pod in WORKLOADS
    for container in pod.get("initContainers", []) + pod["containers"]
]


def role_containers(module: str) -> list:
    return [p for p in CONTAINERS if module in " ".join(p.values[1].get("command", []))]


EDGES = role_containers("services.common.edge")
WORKERS = role_containers("services.common.worker")


def effective(pod: dict, container: dict, key: str):
    """A container's securityContext field, falling back to the pod's, as the kubelet does."""
    own = container.get("securityContext") or {}
    return own[key] if key in own else (pod.get("securityContext") or {}).get(key)


# --- schema ------------------------------------------------------------------------------


def test_there_is_something_to_check():
    assert MANIFESTS and WORKLOADS and EDGES and WORKERS


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_strictly(path):
    exe = Path(sys.executable).parent / "kubernetes-validate"
    assert exe.exists(), f"{exe} missing: install the test extras (pip install '.[test]')"
    cmd = [str(exe), "--strict"]
    for version in K8S_VERSIONS:
        cmd += ["-k", version]
    result = subprocess.run(cmd + [str(path)], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An unknown kind or apiVersion is only a WARN with exit 0, so a typo there would
    # otherwise pass unchecked: every resource must have been validated, against each version.
    assert "WARN" not in output and "ERROR" not in output, output
    assert output.count(" passed for resource ") == len(load_all(path)) * len(K8S_VERSIONS), output


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed == {str(p.relative_to(K8S)) for p in MANIFESTS}


# --- hardening, per container ---------------------------------------------------------------


@pytest.mark.parametrize(("pod", "container"), CONTAINERS)
def test_container_runs_unprivileged(pod, container):
    assert effective(pod, container, "runAsNonRoot") is True
    assert effective(pod, container, "runAsUser") == APP_UID
    own = container.get("securityContext") or {}
    assert own.get("readOnlyRootFilesystem") is True
    assert own.get("allowPrivilegeEscalation") is False
    assert own.get("privileged") is not True
    assert "ALL" in (own.get("capabilities") or {}).get("drop", [])
    assert not (own.get("capabilities") or {}).get("add")
    seccomp = effective(pod, container, "seccompProfile") or {}
    assert seccomp.get("type") == "RuntimeDefault"


@pytest.mark.parametrize(("pod", "container"), CONTAINERS)
def test_container_has_resource_requests_and_limits(pod, container):
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(bound) or {}), f"{bound}: {resources}"


@pytest.mark.parametrize(("pod", "container"), CONTAINERS)
def test_container_has_probes(pod, container):
    assert container.get("readinessProbe"), "no readinessProbe"
    assert container.get("livenessProbe"), "no livenessProbe"


@pytest.mark.parametrize(("pod", "container"), EDGES)
def test_edge_uses_native_grpc_probes(pod, container):
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe].get("grpc", {}).get("port") == 50051, probe


@pytest.mark.parametrize(("pod", "container"), WORKERS)
def test_worker_probes_its_metrics_endpoint(pod, container):
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe].get("httpGet") or {}
        assert http.get("path") == "/metrics", probe
        assert ports.get(http.get("port"), http.get("port")) == 9101, probe


@pytest.mark.parametrize(("pod", "container"), CONTAINERS)
def test_no_secret_is_a_literal(pod, container):
    for var in container.get("env", []):
        if SECRET_NAME.search(var["name"]):
            assert "value" not in var, f"{var['name']} is a literal"
            assert "secretKeyRef" in (var.get("valueFrom") or {}), (
                f"{var['name']} not from a Secret"
            )


@pytest.mark.parametrize(("pod", "container"), CONTAINERS)
def test_jwt_secret_comes_from_the_secret_and_is_required(pod, container):
    env = {var["name"]: var for var in container.get("env", [])}
    ref = env["VOCREG_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("vocreg-secrets", "jwt-secret")
    # Optional would let the process fall back to the public development secret.
    assert ref.get("optional") is not True


# --- hardening, per pod and resource --------------------------------------------------------


@pytest.mark.parametrize(("name", "workload", "pod"), WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_pod_has_own_service_account_without_token(name, workload, pod):
    assert pod.get("automountServiceAccountToken") is False
    accounts = {sa["metadata"]["name"] for sa in kind("ServiceAccount")}
    assert pod.get("serviceAccountName") in accounts
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host), host


@pytest.mark.parametrize(("name", "workload", "pod"), WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_worker_and_edge_share_one_image(name, workload, pod):
    assert len({c["image"] for c in pod["containers"]}) == 1


def test_no_secret_object_is_committed():
    assert not kind("Secret"), "create vocreg-secrets with kubectl (k8s/README.md)"


def test_shared_config_has_no_secrets_and_points_at_the_cluster_services():
    (config,) = [cm for cm in kind("ConfigMap") if cm["metadata"]["name"] == "vocreg-config"]
    data = config["data"]
    assert not [key for key in data if SECRET_NAME.search(key)]
    assert {"AMQP_URI", "MONGO_URI", "PROVINCE_CODE", "LOG_LEVEL"} <= set(data)
    assert re.match(r"amqp://([^@/]*@)?rabbitmq(:5672)?/", data["AMQP_URI"])
    assert re.match(r"mongodb://([^@/]*@)?mongodb(:27017)?/vocreg_filing\b", data["MONGO_URI"])


def test_every_service_routes_to_declared_container_ports():
    pods = {}
    for _, workload, pod in WORKLOADS:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ports = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])}
        pods[tuple(sorted(labels.items()))] = ports | {
            p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])
        }
    for service in kind("Service"):
        selector = service["spec"]["selector"].items()
        targets = [ports for labels, ports in pods.items() if selector <= dict(labels).items()]
        assert targets, f"service {service['metadata']['name']} selects no pod here"
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in targets[0], port
        grpc = [p for p in service["spec"]["ports"] if p.get("name") == "grpc"]
        assert grpc and grpc[0]["port"] == 50051


# --- compose and prometheus -----------------------------------------------------------------

COMPOSE_SERVICES = {"rabbitmq", "mongodb", "filing-worker", "filing-edge", "prometheus"}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_names_the_five_services():
    services = compose()["services"]
    assert COMPOSE_SERVICES <= set(services)
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert services["mongodb"]["image"] == "mongo:7"
    assert any(str(p).endswith(":50051") for p in services["filing-edge"]["ports"])


def test_compose_takes_the_jwt_secret_from_the_environment():
    services = compose()["services"]
    for name in ("filing-worker", "filing-edge"):
        value = services[name]["environment"]["VOCREG_JWT_SECRET"]
        assert value.startswith("${VOCREG_JWT_SECRET"), f"{name}: {value}"


def test_prometheus_scrapes_worker_and_edge():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {
        t
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
        for t in group["targets"]
    }
    assert {"filing-worker:9101", "filing-edge:9100"} <= targets


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_and_runs_as_a_numeric_non_root_user():
    instructions = dockerfile_instructions((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    assert sum(keyword == "FROM" for keyword, _ in instructions) >= 2
    users = [args for keyword, args in runtime_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, users[-1]
    assert int(user) == APP_UID  # what the manifests' runAsUser expects


def test_dockerfile_runtime_stage_is_lean_and_signal_friendly():
    stage = runtime_stage()
    text = " ".join(args for _, args in stage)
    assert not re.search(r"apt-get install|build-essential|\bgcc\b", text)
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "PYTHONUNBUFFERED=1" in text
    exposed = {port for keyword, args in stage if keyword == "EXPOSE" for port in args.split()}
    assert {"50051", "9100", "9101"} <= exposed
    (cmd,) = [args for keyword, args in stage if keyword == "CMD"]
    assert cmd.startswith("["), "shell-form CMD puts sh at PID 1, which does not pass SIGTERM on"


def test_dockerignore_keeps_local_build_output_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "services/gen"} <= set(ignored)
