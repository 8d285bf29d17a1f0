"""The protos are clean under buf lint (buf from npm @bufbuild/buf)."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = "@bufbuild/buf@1.75.0"


def test_buf_lint_is_clean():
    npx = shutil.which("npx")
    assert npx, "npx (Node.js) is needed to run buf"
    result = subprocess.run([npx, "--yes", BUF, "lint"], cwd=ROOT / "protos",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rpc_of_every_declared_service_has_an_http_route():
    """HTTP/JSON is derived from `option (google.api.http)` on each RPC: a service added
    without them would be gRPC-only. Add one per RPC (resource-style paths; see filing.proto
    and certificates.proto), then `make protos`."""
    from services.common.protos import service_proto
    from services.common.routes import all_routes, service_routes
    from services.common.spec import registry

    missing, seen = [], {}
    for name in registry():
        routed = {route.rpc for route in service_routes(name)}
        missing += [f"{name}: {m.full_name}" for m in service_proto(name).service_descriptor.methods
                    if m.name not in routed]
    assert missing == [], f"RPCs without a google.api.http route: {missing}"
    for route in all_routes(list(registry())):
        key = (route.verb, route.pattern.pattern)
        assert key not in seen, f"{route.full_method} and {seen[key]} share {route.template}"
        seen[key] = route.full_method


def test_the_openapi_document_built_from_the_protos_is_valid():
    import json

    from openapi_spec_validator import validate

    from services.common.http_gateway import OPENAPI
    from services.common.routes import all_routes
    from services.common.spec import registry

    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    validate(document)
    operations = {(verb, path) for path, item in document["paths"].items() for verb in item}
    assert operations == {(r.verb, r.openapi_path) for r in all_routes(list(registry()))}
    # The protos' comments are the descriptions.
    verify = document["paths"]["/v1/certificates/{certificate_number}:verify"]["get"]
    assert "verifies a certificate" in verify["description"]
