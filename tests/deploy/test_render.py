"""deploy/render.py: the committed deploy files are a fresh render of the declarations, and
adding (or removing) a service is one command.

Plain pytest: the renderer imports no eventlet and no nameko.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.spec import ServiceSpec, registry
from tests.deploy.tools import DEPLOY, K8S, ROOT, kustomize, load_all, renderer, validate_strictly

# A service as the next contributor would declare it (a name and port no real one will take).
EXAMPLE = ServiceSpec(name="example", proto="vocreg.example.v1.ExampleService",
                      service_class="ExampleService", aggregates=("Thing",), metrics_port=9190,
                      summary="an example")


def rendered_checkout(tmp: Path, specs) -> Path:
    """A copy of the hand-written deploy files in `tmp`, with `specs` rendered into it."""
    (tmp / "k8s" / "base").mkdir(parents=True)
    for name in ("namespace.yaml", "config.yaml", "network-policy.yaml"):
        shutil.copy(K8S / name, tmp / "k8s" / "base" / name)
    renderer().write(renderer().render(specs), tmp)
    return tmp


# --- the committed files -----------------------------------------------------------------------


def test_committed_deploy_files_equal_a_fresh_render():
    diffs = renderer().differences(renderer().render(), ROOT)
    assert not diffs, "stale deploy files: run `make deploy-files`\n" + "".join(diffs)


def test_render_check_runs_as_a_plain_script_without_eventlet():
    """What `make deploy-files` runs, from another directory: the checkout it lives in is read."""
    result = subprocess.run([sys.executable, str(DEPLOY / "render.py"), "--check"],
                            cwd="/", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = ("import runpy, sys; runpy.run_path(sys.argv[1])['render'](); "
             "assert not {'eventlet', 'nameko', 'mongoengine'} & set(sys.modules), "
             "sorted({'eventlet', 'nameko', 'mongoengine'} & set(sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, str(DEPLOY / "render.py")],
                            cwd="/", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_render_check_fails_on_a_stale_file_and_names_it(tmp_path):
    checkout = rendered_checkout(tmp_path, registry().values())
    assert renderer().differences(renderer().render(), checkout) == []
    manifest = checkout / "k8s" / "base" / "filing.yaml"
    manifest.write_text(manifest.read_text().replace("memory: 384Mi", "memory: 4Gi"))
    (diff,) = renderer().differences(renderer().render(), checkout)
    assert "b/k8s/base/filing.yaml" in diff and "+              memory: 384Mi" in diff
    (checkout / "deploy" / "prometheus" / "prometheus.yml").unlink()
    assert len(renderer().differences(renderer().render(), checkout)) == 2


# --- a new service is one command -----------------------------------------------------------


@pytest.fixture(scope="module")
def with_example(tmp_path_factory) -> Path:
    return rendered_checkout(tmp_path_factory.mktemp("checkout"),
                             [*registry().values(), EXAMPLE])


def test_a_new_service_gets_its_manifest_and_it_validates(with_example):
    path = with_example / "k8s" / "base" / "example.yaml"
    docs = {(d["kind"], d["metadata"]["name"]): d for d in load_all(path)}
    assert set(docs) == {("ServiceAccount", "example"), ("ConfigMap", "example-config"),
                         ("Deployment", "example-worker"), ("Deployment", "example-edge"),
                         ("Service", "example"), ("HorizontalPodAutoscaler", "example-edge"),
                         ("PodDisruptionBudget", "example-edge"),
                         ("PodDisruptionBudget", "example-worker"),
                         ("NetworkPolicy", "example-edge"), ("NetworkPolicy", "example-worker")}
    assert docs["ConfigMap", "example-config"]["data"]["MONGO_URI"].endswith("/vocreg_example")
    (edge,) = docs["Deployment", "example-edge"]["spec"]["template"]["spec"]["containers"]
    assert edge["readinessProbe"]["grpc"]["service"] == "vocreg.example.v1.ExampleService"
    assert "filing" not in path.read_text() and "certificates" not in path.read_text()
    validate_strictly(path)


def test_a_new_service_is_in_the_kustomization_compose_and_prometheus(with_example):
    names = {(d["kind"], d["metadata"]["name"]) for d in load_all(kustomize(with_example / "k8s" / "base"))}
    assert {("Deployment", "example-worker"), ("Deployment", "example-edge"),
            ("Service", "example"), ("Deployment", "filing-edge")} <= names
    compose = yaml.safe_load((with_example / "deploy" / "docker-compose.yml").read_text())
    assert compose["services"]["example-edge"]["ports"] == ["127.0.0.1:50140:50051"]
    assert compose["services"]["example-worker"]["environment"]["MONGO_URI"].endswith(
        "/vocreg_example")
    prometheus = (with_example / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert '"example-worker:9101"' in prometheus and '"example-edge:9100"' in prometheus
    board = (with_example / "deploy" / "grafana" / "dashboards" / "example.json").read_text()
    assert '"uid": "vocreg-example"' in board


def test_a_removed_service_leaves_no_rendered_file_behind(tmp_path):
    checkout = rendered_checkout(tmp_path, [*registry().values(), EXAMPLE])
    assert (checkout / "k8s" / "base" / "example.yaml").exists()
    touched = renderer().write(renderer().render(), checkout)
    assert "deleted k8s/base/example.yaml" in touched
    assert not (checkout / "k8s" / "base" / "example.yaml").exists()
    assert (checkout / "k8s" / "base" / "config.yaml").exists(), "hand-written files are never deleted"
    assert "example.yaml" not in (checkout / "k8s" / "base" / "kustomization.yaml").read_text()
    assert renderer().differences(renderer().render(), checkout) == []


# --- the renderer refuses what it cannot render -------------------------------------------------


def test_a_template_and_its_values_must_match():
    fill = renderer().fill
    assert fill("a {{x}} b {{y}}", x="1", y="2") == "a 1 b 2"
    with pytest.raises(KeyError, match="y"):
        fill("a {{x}} b {{y}}", x="1")
    with pytest.raises(KeyError, match="z"):
        fill("a {{x}}", x="1", z="2")


def test_services_whose_edges_would_share_a_host_port_are_refused():
    clash = ServiceSpec(name="example", proto="vocreg.example.v1.ExampleService",
                        service_class="ExampleService", aggregates=(), metrics_port=9101)
    assert registry()["filing"].metrics_port == 9101
    with pytest.raises(ValueError, match="sharing a port"):
        renderer().render([*registry().values(), clash])
    low = ServiceSpec(name="example", proto="vocreg.example.v1.ExampleService",
                      service_class="ExampleService", aggregates=(), metrics_port=30000)
    with pytest.raises(ValueError, match="no usable host gRPC port"):
        renderer().render([low])
    with pytest.raises(ValueError, match="no service is declared"):
        renderer().render([])
