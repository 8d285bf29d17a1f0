"""Deployment artefacts keep their shape: the Kubernetes manifests validate against the API
schema and keep the hardening rules; every declared service is deployed (k8s, compose,
Prometheus); the compose stack and the Dockerfile keep their shape.

Plain pytest: no broker, no eventlet, no cluster, no Docker engine. The checks iterate over
whatever is in k8s/ and over the registry of declared services (services/*/__init__.py), so a
service declared but not rendered (`make deploy-files`) fails here, and a rendered one is held
to the same rules. That the files equal a fresh render is tests/deploy/test_render.py's check.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import yaml

from services.common.spec import registry
from tests.deploy.tools import DEPLOY, K8S, ROOT, kustomize, load_all, validate_strictly

APP_UID = 10001
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SPECS = list(registry().values())
SERVICE_IDS = [spec.name for spec in SPECS]


# kustomization.yaml configures kustomize; it is not a Kubernetes resource.
MANIFESTS = sorted(p for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")
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
    validate_strictly(path)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed == {str(p.relative_to(K8S)) for p in MANIFESTS}


# --- every declared service is deployed -------------------------------------------------------


def named(doc_kind: str, name: str, docs: list[dict] | None = None) -> dict:
    found = [doc for doc in (docs if docs is not None else [d for _, d in RESOURCES])
             if doc.get("kind") == doc_kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {doc_kind} named {name!r}"
    return found[0]


def selects(selector: dict, workload: dict) -> bool:
    return selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("spec", SPECS, ids=SERVICE_IDS)
def test_declared_service_has_a_worker_an_edge_and_a_service_in_k8s(spec):
    assert (K8S / f"{spec.name}.yaml").exists(), "run `make deploy-files`"
    worker = named("Deployment", f"{spec.name}-worker")
    edge = named("Deployment", f"{spec.name}-edge")
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    (edge_container,) = edge["spec"]["template"]["spec"]["containers"]
    assert worker_container["command"] == ["python", "-m", "services.common.worker", spec.name]
    assert edge_container["command"] == [
        "python", "-m", "services.common.edge", "--services", spec.name]
    # The edge is ready only while the service's worker answers; it is alive while it runs.
    assert edge_container["readinessProbe"]["grpc"].get("service") == spec.proto
    assert not edge_container["livenessProbe"]["grpc"].get("service")
    service = named("Service", spec.name)
    assert selects(service["spec"]["selector"], edge)
    assert not selects(service["spec"]["selector"], worker), "the workers take no traffic"


@pytest.mark.parametrize("spec", SPECS, ids=SERVICE_IDS)
def test_declared_service_worker_owns_its_database(spec):
    """MONGO_URI as the kubelet resolves it: the envFrom ConfigMaps in order (the later wins),
    then env; the optional secret key, when present, holds the same database with credentials."""
    configmaps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in kind("ConfigMap")}
    pod = named("Deployment", f"{spec.name}-worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    resolved = {}
    for source in container.get("envFrom", []):
        resolved.update(configmaps[source["configMapRef"]["name"]])
    assert resolved.get("MONGO_URI") == f"mongodb://mongodb:27017/vocreg_{spec.name}"
    env = {var["name"]: var for var in container["env"]}
    ref = env["MONGO_URI"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref.get("optional")) == (
        "vocreg-secrets", f"{spec.name}-mongo-uri", True)


@pytest.mark.parametrize("spec", SPECS, ids=SERVICE_IDS)
def test_the_edge_sees_a_database_only_for_the_reads_it_answers_itself(spec):
    """An edge forwards every call over the bus and never sees a database, unless its service
    declares reads the edge answers itself (SPEC edge_reads): then it gets exactly the
    worker's database (the same ConfigMap and secret key) and, optionally, a read-only user's
    URI of its own (config.read_mongo_uri), and nothing of any other service."""
    configmaps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in kind("ConfigMap")}
    pod = named("Deployment", f"{spec.name}-edge")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    resolved = {}
    for source in container.get("envFrom", []):
        resolved.update(configmaps[source["configMapRef"]["name"]])
    env = {var["name"]: var for var in container.get("env", [])}
    database_vars = {name for name in {*resolved, *env} if "MONGO" in name}
    if not spec.edge_reads:
        assert database_vars == set(), "the edge never touches the database"
        return
    assert database_vars == {"MONGO_URI", f"{spec.name.upper()}_READ_MONGO_URI"}
    assert resolved["MONGO_URI"] == f"mongodb://mongodb:27017/vocreg_{spec.name}"
    refs = {name: env[name]["valueFrom"]["secretKeyRef"] for name in database_vars}
    assert {name: (r["name"], r["key"], r.get("optional")) for name, r in refs.items()} == {
        "MONGO_URI": ("vocreg-secrets", f"{spec.name}-mongo-uri", True),
        f"{spec.name.upper()}_READ_MONGO_URI":
            ("vocreg-secrets", f"{spec.name}-read-mongo-uri", True)}


def test_no_two_workloads_select_the_same_pods():
    for _, first, _ in WORKLOADS:
        for _, second, _ in WORKLOADS:
            if first is not second:
                assert not selects(first["spec"]["selector"]["matchLabels"], second), (
                    first["metadata"]["name"], second["metadata"]["name"])


@pytest.mark.parametrize(("name", "workload", "pod"), WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_pod_advertises_its_metrics_port_for_prometheus(name, workload, pod):
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    ports = {p["containerPort"]: p.get("name") for c in pod["containers"]
             for p in c.get("ports", [])}
    assert ports.get(int(annotations["prometheus.io/port"], 10), "").endswith("-metrics")


@pytest.fixture(scope="module")
def kustomized() -> list[dict]:
    return load_all(kustomize(K8S))


def test_kustomization_renders_every_declared_service(kustomized):
    for spec in SPECS:
        for role in ("worker", "edge"):
            named("Deployment", f"{spec.name}-{role}", kustomized)
        named("Service", spec.name, kustomized)
        named("ConfigMap", f"{spec.name}-config", kustomized)
    named("ConfigMap", "vocreg-config", kustomized)
    # The image pin of the kustomization reaches every container.
    images = {c["image"] for doc in kustomized if doc["kind"] == "Deployment"
              for c in doc["spec"]["template"]["spec"]["containers"]}
    assert images == {"vocreg:0.1.0"}


def test_kustomization_output_validates_strictly(kustomized):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kustomized.yaml"
        path.write_text(yaml.safe_dump_all(kustomized), encoding="utf-8")
        validate_strictly(path)


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
def test_edge_uses_native_grpc_probes_on_its_plaintext_probe_port(pod, container):
    """The kubelet's gRPC probes cannot speak TLS: the edge serves health alone, plaintext,
    on EDGE_PROBE_PORT, whether or not 50051 serves TLS."""
    env = {var["name"]: var.get("value") for var in container.get("env", [])}
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert env.get("EDGE_PROBE_PORT") == "50052" and ports.get("probe") == 50052
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe].get("grpc", {}).get("port") == 50052, probe


@pytest.mark.parametrize("spec", SPECS, ids=SERVICE_IDS)
def test_edge_mounts_its_optional_tls_secret_read_only(spec):
    pod = named("Deployment", f"{spec.name}-edge")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["tls"]["secret"]
    assert (secret["secretName"], secret["optional"]) == (f"{spec.name}-edge-tls", True)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/vocreg/tls", "readOnly": True}
    shared = yaml.safe_load((K8S / "config.yaml").read_text())
    assert "EDGE_TLS_CERT_FILE" in (K8S / "config.yaml").read_text()  # how to turn it on
    assert "EDGE_TLS_CERT_FILE" not in shared["data"]  # off until a certificate is issued


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


def test_every_container_runs_the_one_image():
    # One image, two roles: the kustomization's `images` pin then reaches every container.
    assert {p.values[1]["image"] for p in CONTAINERS} == {"vocreg"}


def test_no_secret_object_is_committed():
    assert not kind("Secret"), "create vocreg-secrets with kubectl (k8s/README.md)"


def test_shared_config_has_no_secrets_and_points_at_the_cluster_services():
    (config,) = [cm for cm in kind("ConfigMap") if cm["metadata"]["name"] == "vocreg-config"]
    data = config["data"]
    assert not [key for key in data if SECRET_NAME.search(key)]
    assert {"AMQP_URI", "PROVINCE_CODE", "LOG_LEVEL"} <= set(data)
    assert re.match(r"amqp://([^@/]*@)?rabbitmq(:5672)?/", data["AMQP_URI"])
    # Each service names its own database (its <svc>-config); a shared one would be inherited.
    assert "MONGO_URI" not in data


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
        assert len(targets) == 1, f"service {service['metadata']['name']} selects {len(targets)} workloads"
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in targets[0], port
        grpc = [p for p in service["spec"]["ports"] if p.get("name") == "grpc"]
        assert grpc and grpc[0]["port"] == 50051


# --- compose and prometheus -----------------------------------------------------------------

INFRASTRUCTURE = {"rabbitmq", "mongodb", "prometheus", "grafana"}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def vocreg_containers() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items() if name not in INFRASTRUCTURE}


def test_compose_names_the_infrastructure_and_a_worker_and_an_edge_per_service():
    services = compose()["services"]
    expected = {f"{spec.name}-{role}" for spec in SPECS for role in ("worker", "edge")}
    assert set(services) == INFRASTRUCTURE | expected
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert services["mongodb"]["image"] == "mongo:7"
    assert any(str(p).endswith(":50051") for p in services["filing-edge"]["ports"])
    assert set(services["prometheus"]["depends_on"]) == expected


@pytest.mark.parametrize("spec", SPECS, ids=SERVICE_IDS)
def test_compose_runs_the_declared_service(spec):
    services = compose()["services"]
    worker, edge = services[f"{spec.name}-worker"], services[f"{spec.name}-edge"]
    assert worker["command"] == ["python", "-m", "services.common.worker", spec.name]
    assert edge["command"] == ["python", "-m", "services.common.edge", "--services", spec.name]
    assert worker["environment"]["MONGO_URI"] == f"mongodb://mongodb:27017/vocreg_{spec.name}"
    if spec.edge_reads:  # the reads it answers itself, from the worker's own database
        assert edge["environment"]["MONGO_URI"] == worker["environment"]["MONGO_URI"]
        assert edge["depends_on"]["mongodb"] == {"condition": "service_healthy"}
    else:
        assert "MONGO_URI" not in edge["environment"], "the edge never touches the database"
    assert edge["depends_on"][f"{spec.name}-worker"] == {"condition": "service_healthy"}
    assert spec.proto in " ".join(edge["healthcheck"]["test"])


def test_compose_publishes_each_edge_on_its_own_local_port_only():
    published = []
    for name, service in vocreg_containers().items():
        ports = [str(p) for p in service.get("ports", [])]
        if name.endswith("-worker"):
            assert not ports, f"{name}: a worker takes no network traffic"
            continue
        (port,) = ports
        host, host_port, container_port = port.split(":")
        assert (host, container_port) == ("127.0.0.1", "50051"), f"{name}: {port}"
        published.append(host_port)
    assert len(set(published)) == len(published) == len(SPECS)


def test_compose_containers_keep_the_kubernetes_restrictions():
    for name, service in vocreg_containers().items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["image"] == "vocreg:dev", name
        assert service.get("healthcheck"), name


def test_compose_takes_the_jwt_secret_from_the_environment():
    for name, service in vocreg_containers().items():
        value = service["environment"]["VOCREG_JWT_SECRET"]
        assert value.startswith("${VOCREG_JWT_SECRET"), f"{name}: {value}"


def scrape_targets() -> dict[str, set[str]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    return {
        job["job_name"]: {
            t for group in job.get("static_configs", []) for t in group["targets"]}
        for job in config["scrape_configs"]
    }


@pytest.mark.parametrize("spec", SPECS, ids=SERVICE_IDS)
def test_prometheus_scrapes_worker_and_edge(spec):
    targets = scrape_targets()
    assert f"{spec.name}-worker:9101" in targets["vocreg-worker"]
    assert f"{spec.name}-edge:9100" in targets["vocreg-edge"]


def test_prometheus_scrapes_only_what_compose_runs():
    services = compose()["services"]
    for target in set().union(*scrape_targets().values()):
        assert target.split(":")[0] in services, target


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
