"""The ops bundle for every declared service: Prometheus rules (checked and unit-tested with
promtool), Grafana dashboards (Grafana's own schema types, PromQL checked), the Kubernetes
overlays (development, production) with their namespace, autoscalers, disruption budgets,
network policies and the monitoring component, and metric names that fit the ecosystem.

Plain pytest: no broker, no cluster; promtool comes from `make tools`."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from services.common.spec import registry
from tests.deploy.tools import (
    COMPONENTS,
    DEPLOY,
    K8S,
    OVERLAYS,
    ROOT,
    kustomize,
    load_all,
    renderer,
    run_promtool,
    validate_strictly,
)

SPECS = list(registry().values())
RULES = DEPLOY / "prometheus" / "rules" / "vocreg.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "vocreg.test.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
# Labels Prometheus attaches to every target (the scrape configs and the PodMonitor add the
# last two): a metric's own label of that name would be renamed exported_<name> on scrape.
TARGET_LABELS = {"job", "instance", "service", "component", "namespace", "pod"}
# Names Prometheus itself provides, or the process collector every client exports.
BUILTIN = re.compile(r"^(up|ALERTS|process_\w+|vector)$")


# --- Prometheus rules --------------------------------------------------------------------


def test_rules_are_valid():
    assert "SUCCESS" in run_promtool("check", "rules", str(RULES))


def test_rules_behave_as_their_unit_tests_say():
    assert "SUCCESS" in run_promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_the_issue_asks_for_exists_and_says_what_to_do():
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert {"VocregWorkerDown", "VocregServiceNotServing", "VocregHighErrorRatio",
            "VocregOutboxBacklogGrowing", "VocregDeadLetters", "VocregReportEditionOverdue",
            "VocregEscrowConservationBreach"} <= set(alerts)
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert alert["annotations"]["summary"] and len(alert["annotations"]["description"]) > 60
        tested = RULE_TESTS.read_text()
        assert f"alertname: {name}" in tested, f"{name} has no promtool test"
    for rule in rules:
        if "record" in rule:  # level:metric:operations
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


# --- metrics: names and labels -----------------------------------------------------------


# What a vocreg process registers, read in a child process: the workers' modules import
# eventlet, which must never share this (grpcio) test process.
_EXPORTED = """
import json, sys
from prometheus_client import REGISTRY
import services.common.edge, services.common.entrypoints
from services.common.spec import registry
for spec in registry().values():  # a service registers its business metrics in its modules
    __import__(spec.module + ".handlers")
found = {}
for collector, names in list(REGISTRY._collector_to_names.items()):
    for name in names:
        found[name] = list(getattr(collector, "_labelnames", ()))
json.dump(found, sys.stdout)
"""


@cache
def exported_metrics() -> dict[str, tuple[str, ...]]:
    """Every metric a vocreg process registers: name -> its own label names."""
    result = subprocess.run([sys.executable, "-c", _EXPORTED], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return {name: tuple(labels) for name, labels in json.loads(result.stdout).items()}


# What the edge registers once it has loaded the reads it answers itself (SPEC edge_reads), as
# services/common/edge_reads.py loads them: without any service's handlers, nameko or eventlet.
_EDGE_EXPORTED = """
import json, sys
from prometheus_client import REGISTRY
import services.common.edge
from services.common.edge_reads import EdgeReads
from services.common.spec import registry
for spec in registry().values():
    if spec.edge_reads:
        EdgeReads(spec).close()
names = sorted(n for names in REGISTRY._collector_to_names.values() for n in names)
heavy = sorted(m for m in ("eventlet", "nameko", *(s.module + ".handlers"
               for s in registry().values())) if m in sys.modules)
json.dump({"names": names, "heavy": heavy}, sys.stdout)
"""

# Metrics exported by a process other than the one a reader would expect from their module:
# the public verification counter is counted by whichever process answers, the edge for the
# public (it answers VerifyCertificate itself) and the worker for callers on the bus.
EXPORTED_BY_EDGE_TOO = {"vocreg_certificate_verifications_total": "certificates"}


def test_the_edge_exports_the_metrics_of_the_reads_it_answers_itself():
    result = subprocess.run([sys.executable, "-c", _EDGE_EXPORTED], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["heavy"] == [], "the edge must not load a worker's modules"
    declared = {spec.name for spec in SPECS if spec.edge_reads}
    for metric, owner in EXPORTED_BY_EDGE_TOO.items():
        if owner in declared:
            assert metric in found["names"], f"the edge does not export {metric}"
            assert metric in exported_metrics(), f"the {owner} worker does not export {metric}"


def test_no_metric_carries_a_label_prometheus_attaches_to_its_target():
    clashing = {name: labels for name, labels in exported_metrics().items()
                if TARGET_LABELS & set(labels)}
    assert not clashing, clashing


def test_the_edge_exports_the_grpc_ecosystem_s_names():
    metrics = exported_metrics()
    assert metrics["grpc_server_handled_total"] == (
        "grpc_type", "grpc_service", "grpc_method", "grpc_code")
    assert metrics["grpc_server_handling_seconds_bucket"] == (
        "grpc_type", "grpc_service", "grpc_method")
    assert metrics["grpc_server_started_total"] == ("grpc_type", "grpc_service", "grpc_method")
    # One spelling of outcomes: the workers count theirs as gRPC codes too.
    assert "grpc_code" in metrics["vocreg_worker_handled_total"]


def referenced_metrics(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    functions = {"sum", "by", "rate", "max", "min", "count", "or", "and", "histogram_quantile",
                 "deriv", "increase", "le", "grpc_method", "grpc_code", "entrypoint",
                 "event_type", "document", "service", "component", "instance", "grpc_service",
                 "bool", "on", "ignoring", "without", "offset", "vector"}
    durations = re.compile(r"\d+[smhd]|[smhd]")  # the [5m] of a range, once split
    return {w for w in words - functions if not w.isdigit() and not durations.fullmatch(w)}


def all_expressions() -> list[str]:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    exprs = [r["expr"] for r in rules]
    for path in sorted(DASHBOARDS.glob("*.json")):
        exprs += renderer().dashboards.expressions(path.read_text(encoding="utf-8"))
    return exprs


# Metrics a single service exports, and its name: an alert on them is written with the rules,
# and must read a metric that exists once that service is declared (before, it cannot fire).
OWNED_BY = {"vocreg_escrow_conservation_breaches": "escrow",
            "vocreg_report_editions_overdue": "reporting"}


def test_rules_and_dashboards_read_only_metrics_that_exist():
    """A renamed metric must not leave an alert that can never fire or an empty panel."""
    declared = {spec.name for spec in SPECS}
    exported = set(exported_metrics()) | {m for m, owner in OWNED_BY.items()
                                          if owner not in declared}
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"] if "record" in r}
    known = exported | recorded
    unknown = {name for expr in all_expressions() for name in referenced_metrics(expr)
               if name not in known and not BUILTIN.match(name)}
    assert not unknown, f"not exported by any vocreg process: {sorted(unknown)}"


# --- Grafana dashboards ------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_every_service_has_its_dashboard(spec):
    board = json.loads((DASHBOARDS / f"{spec.name}.json").read_text(encoding="utf-8"))
    assert board["uid"] == f"vocreg-{spec.name}" and spec.proto in board["description"]
    assert all(f'service="{spec.name}"' in e
               for e in renderer().dashboards.expressions(json.dumps(board)))


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.name)
def test_dashboard_fits_grafana_s_dashboard_schema(path):
    """Parsed with the types generated from Grafana's dashboard schema and written back: a key
    Grafana does not know would be dropped, a wrong type would fail, so equality holds only for
    a dashboard in the schema."""
    data = json.loads(path.read_text(encoding="utf-8"))
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert again == data
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasource["datasources"]}
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids and panel["targets"], panel["title"]


def test_every_dashboard_query_is_valid_promql():
    exprs = [e for path in sorted(DASHBOARDS.glob("*.json"))
             for e in renderer().dashboards.expressions(path.read_text(encoding="utf-8"))]
    group = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:n{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboards.yml"
        path.write_text(yaml.safe_dump(group), encoding="utf-8")
        assert f"SUCCESS: {len(exprs)} rules found" in run_promtool("check", "rules", str(path))


def test_compose_provisions_prometheus_rules_and_grafana():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in compose["prometheus"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/vocreg:ro" in compose["grafana"]["volumes"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    for job in scrape["scrape_configs"]:
        for target in job["static_configs"]:
            assert set(target["labels"]) == {"service", "component"}


# --- Kubernetes: namespace, autoscaling, budgets, policies, overlays ----------------------


@pytest.fixture(scope="module", params=["development", "production"])
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, load_all(kustomize(OVERLAYS / request.param))


def of_kind(docs, kind) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_overlay_validates_strictly_and_keeps_everything_in_the_namespace(overlay):
    name, docs = overlay
    plain = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(plain), encoding="utf-8")
        validate_strictly(path)
    [namespace] = of_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "vocreg", (doc["kind"], doc["metadata"])


def pod_labels(docs, deployment: str) -> dict:
    [found] = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == deployment]
    return found["spec"]["template"]["metadata"]["labels"]


def container_ports(docs, deployment: str) -> set[str]:
    [found] = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == deployment]
    return {p["name"] for c in found["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])}


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_each_service_has_an_edge_autoscaler_budgets_and_policies(spec):
    docs = load_all(kustomize(K8S))
    [hpa] = [d for d in of_kind(docs, "HorizontalPodAutoscaler")
             if d["spec"]["scaleTargetRef"]["name"] == f"{spec.name}-edge"]
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    for role in ("worker", "edge"):
        labels = pod_labels(docs, f"{spec.name}-{role}")
        budgets = [d for d in of_kind(docs, "PodDisruptionBudget")
                   if d["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(budgets) == 1 and budgets[0]["spec"]["maxUnavailable"] == 1
        policies = [d for d in of_kind(docs, "NetworkPolicy")
                    if d["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        own = [p for p in policies if p["metadata"]["name"] == f"{spec.name}-{role}"]
        assert len(own) == 1, "each pod has its own policy"
        assert any(p["metadata"]["name"] == "vocreg-default-deny" for p in policies)
        ports = container_ports(docs, f"{spec.name}-{role}")
        for rule in own[0]["spec"]["ingress"]:
            for port in rule["ports"]:
                assert port["port"] in ports, f"{spec.name}-{role}: no port {port['port']}"
        egress_ports = {p["port"] for rule in own[0]["spec"]["egress"] for p in rule["ports"]}
        assert 5672 in egress_ports and 53 in egress_ports
        # The worker reaches the database, and the edge only when it answers some reads
        # itself (SPEC edge_reads); only the edge takes calls from anywhere.
        assert (27017 in egress_ports) == (role == "worker" or bool(spec.edge_reads))
        open_to_all = [r for r in own[0]["spec"]["ingress"] if "from" not in r]
        assert bool(open_to_all) == (role == "edge")
        if role == "edge":
            assert {p["port"] for p in open_to_all[0]["ports"]} == {"grpc", "probe"}


def test_development_runs_small_and_production_pins_scales_and_monitors(overlay):
    name, docs = overlay
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    workers = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-worker")]
    images = {c["image"] for d in of_kind(docs, "Deployment")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert len(hpas) == len(SPECS) and len(workers) == len(SPECS)
    if name == "development":
        assert {h["spec"]["minReplicas"] for h in hpas} == {1}
        assert images == {"vocreg:dev"}
        assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    else:
        assert {h["spec"]["minReplicas"] for h in hpas} == {2}
        assert {w["spec"]["replicas"] for w in workers} == {2}
        assert len(images) == 1 and re.fullmatch(r"vocreg:\d+\.\d+\.\d+", images.pop())
        [monitor] = of_kind(docs, "PodMonitor")
        ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
        assert ports == {"worker-metrics", "edge-metrics"}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            targets = {r["targetLabel"] for r in endpoint["relabelings"]}
            assert {"service", "component"} <= targets
        for spec in SPECS:
            for role in ("worker", "edge"):
                assert monitor["spec"]["selector"]["matchLabels"].items() <= \
                    pod_labels(docs, f"{spec.name}-{role}").items()
        [rule] = of_kind(docs, "PrometheusRule")
        assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_monitoring_component_is_only_what_the_operator_reads():
    component = yaml.safe_load((COMPONENTS / "monitoring" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    for name in component["resources"]:
        for doc in load_all(COMPONENTS / "monitoring" / name):
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
